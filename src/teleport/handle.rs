//! The shared, replaceable Teleport client.

use std::cell::RefCell;
use std::rc::Rc;

use crate::teleport::client::TeleportClient;

/// The Teleport client in use, shared by the effects and the event source, and replaced when
/// the identity file changes (see `actors::identity`). Calls already in flight finish on the
/// client they started with.
#[derive(Debug, Clone)]
pub struct ClientHandle(Rc<RefCell<TeleportClient>>);

impl ClientHandle {
    /// A handle holding `client`.
    pub fn new(client: TeleportClient) -> Self {
        Self(Rc::new(RefCell::new(client)))
    }
    /// The current client (a cheap clone sharing its connection).
    pub fn get(&self) -> TeleportClient {
        self.0.borrow().clone()
    }
    /// Makes every later call use `client`.
    pub fn replace(&self, client: TeleportClient) {
        *self.0.borrow_mut() = client;
    }
}
