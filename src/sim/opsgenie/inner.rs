//! The server's shared state, behind every clone of the handle and every call in flight. A leaf
//! of the fake: the handlers read it through `Ctx`, the server builds it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::faults::Faults;
use super::heartbeats::Heartbeats;
use super::limits::Limiter;
use super::state::State;

/// What the server shares.
pub(super) struct Inner {
    pub(super) addr: SocketAddr,
    pub(super) first_key: String,
    pub(super) api_keys: HashSet<String>,
    pub(super) config_only: Mutex<HashSet<String>>,
    pub(super) processing_delay: Mutex<Duration>,
    pub(super) integration_id: String,
    pub(super) faults: Faults,
    pub(super) limiter: Mutex<Limiter>,
    pub(super) state: Mutex<State>,
    pub(super) heartbeats: Heartbeats,
    /// Woken on every state change or recorded call (for `wait_until`).
    pub(super) changed: Notify,
    /// Woken when work is queued (for the processor task).
    pub(super) work: Notify,
    pub(super) throttled: AtomicUsize,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) tasks: Mutex<Vec<JoinHandle<()>>>,
}
