//! The Gateway: the only code that talks HTTP to the on-call backend.
//!
//! [`GatewayClient`] does the work in plain async functions over shared state (`Arc`), so it can
//! be tested, and used, without actix. Reconcile steps call it directly, so a step cut short also
//! cancels its call. [`Gateway`] is the thin actix shell for the rest (on-call lookups, the
//! orphan sweep, the readiness heartbeat): each handler clones the client into a
//! `ResponseFuture`, so no actor state is held across an await and a slow, rate-limited call
//! never blocks the mailbox.
//!
//! One call ([`GatewayClient::call`]):
//!
//! 1. waits, FIFO per API domain, for a slot in that domain's rate limits
//!    ([`Limiter`](crate::backend::limiter::Limiter)) and for one of `max_concurrency` permits;
//! 2. sends the request the backend's [`Codec`](crate::backend::Codec) built, with `Authorization: GenieKey <key>`;
//! 3. reads the answer with the codec, or classifies the failure ([`retry::classify`](crate::backend::retry::classify)):
//!    - 429: pauses the **whole domain** for `X-RateLimit-Period-In-Sec` / `Retry-After`
//!      (default 1 s) and tries again, at most [`RetryPolicy::max_throttles`] times;
//!    - 5xx, 408, timeouts, connection failures: tries again after the crate's backoff
//!      ([`Backoff`](crate::backend::backoff::Backoff), from [`RetryPolicy::backoff_base`] up to [`RetryPolicy::backoff_cap`], 30 s
//!      by default), for at most [`RetryPolicy::max_attempts`] attempts in all, but only when
//!      sending again is safe ([`Operation::retry_blind`]: reads and the alias-de-duplicated
//!      create). A note or close that may have reached the backend (a 5xx, a timeout, a broken
//!      connection after sending) is not sent again here: it fails with
//!      [`GatewayError::UnknownOutcome`], and the step verifies before sending it again;
//!    - a 2xx whose body cannot be read: for a write, [`GatewayError::UnknownOutcome`] (it may
//!      well have been accepted); for a read, a transient failure like a 5xx;
//!    - anything else: fails at once with a hint that names the fix.
//!
//!    No retry starts after [`RetryPolicy::deadline`] (2 min by default) since the first attempt;
//!    running out of attempts or time gives [`GatewayError::Exhausted`], which is retryable
//!    later.
//!
//! Metrics: every attempt is reported to an optional [`BackendCallObserver`] as a [`CallEvent`]
//! (endpoint, domain, status, duration, attempt, throttled, delay before the next attempt) and
//! logged as a `tracing` debug event with the same fields (target
//! `teleport_opsgenie::backend_call`), so a `/metrics` exposition can count and time calls.
//!
//! The API key lives only in a sensitive header value inside the HTTP client; it is never
//! formatted into an error, a log line or `Debug` output.

mod client;
mod error;
mod observe;
mod verdict;

use actix::{Actor, Context, Handler, Message, ResponseFuture};

use crate::backend::{Operation, Outcome};

pub use client::{
    GatewayClient, RetryPolicy, CONNECT_TIMEOUT, MAX_RESPONSE_BODY, POLL_FIRST_DELAY,
    POLL_MAX_DELAY, USER_AGENT,
};
pub use error::GatewayError;
pub use observe::{BackendCallObserver, CallEvent};

/// The gateway actor: a thin shell around [`GatewayClient`].
#[derive(Debug, Clone)]
pub struct Gateway {
    client: GatewayClient,
}

impl Gateway {
    /// A gateway around a client.
    pub fn from_client(client: GatewayClient) -> Self {
        Self { client }
    }
}

impl Actor for Gateway {
    type Context = Context<Self>;
}

/// Performs one operation; see [`GatewayClient::call`].
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Outcome, GatewayError>")]
pub struct Call(pub Operation);

/// Pings the heartbeat; see [`GatewayClient::health`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), GatewayError>")]
pub struct Health;

impl Handler<Call> for Gateway {
    type Result = ResponseFuture<Result<Outcome, GatewayError>>;

    fn handle(&mut self, msg: Call, _ctx: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        Box::pin(async move { client.call(msg.0).await })
    }
}

impl Handler<Health> for Gateway {
    type Result = ResponseFuture<Result<(), GatewayError>>;

    fn handle(&mut self, _msg: Health, _ctx: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        Box::pin(async move { client.health().await })
    }
}

#[cfg(test)]
mod tests;
