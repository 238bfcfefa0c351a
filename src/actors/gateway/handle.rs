//! [`GatewayHandle`]: how the rest of the daemon calls the backend.

use std::time::Duration;

use actix::{Addr, MailboxError};

use crate::backend::{Operation, Outcome, Processed};

use super::{AwaitRequest, Call, Cancel, Gateway, GatewayError, Health};

/// A cheap, cloneable way to the [`Gateway`] actor. Each method sends one message with a
/// [`Cancel`] signal and keeps its guard for as long as it waits: dropping the returned future
/// (the caller gave up) cancels the call in the gateway.
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    addr: Addr<Gateway>,
}

impl GatewayHandle {
    /// A handle to a running gateway.
    pub fn from_addr(addr: Addr<Gateway>) -> Self {
        Self { addr }
    }

    /// The actor's address (for liveness checks).
    pub fn addr(&self) -> &Addr<Gateway> {
        &self.addr
    }

    /// Performs one operation with rate limiting and retries; see
    /// [`GatewayClient::call`](super::GatewayClient::call).
    pub async fn call(&self, op: Operation) -> Result<Outcome, GatewayError> {
        let endpoint = op.endpoint();
        let (_guard, cancel) = Cancel::pair();
        self.addr
            .send(Call { op, cancel })
            .await
            .map_err(|e| stopped(endpoint, e))?
    }

    /// Polls an asynchronous request until it is processed; see
    /// [`GatewayClient::await_request`](super::GatewayClient::await_request).
    pub async fn await_request(
        &self,
        request_id: &str,
        deadline: Duration,
    ) -> Result<Processed, GatewayError> {
        let (_guard, cancel) = Cancel::pair();
        let msg = AwaitRequest {
            request_id: request_id.to_owned(),
            deadline,
            cancel,
        };
        self.addr
            .send(msg)
            .await
            .map_err(|e| stopped("request_status", e))?
    }

    /// Pings the configured heartbeat; see
    /// [`GatewayClient::health`](super::GatewayClient::health).
    pub async fn health(&self) -> Result<(), GatewayError> {
        let (_guard, cancel) = Cancel::pair();
        self.addr
            .send(Health { cancel })
            .await
            .map_err(|e| stopped("heartbeat", e))?
    }
}

/// The actor could not take the message, or dropped it unanswered: it never started the call.
fn stopped(endpoint: &'static str, err: MailboxError) -> GatewayError {
    GatewayError::Stopped {
        endpoint,
        reason: format!("the gateway is not running ({err})"),
    }
}
