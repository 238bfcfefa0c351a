//! The Gateway: the only code that talks HTTP to the on-call backend.
//!
//! The [`Gateway`] actor owns the one [`GatewayClient`] of the daemon, and with it the rate
//! limiter and the concurrency bound: every backend call (reconcile steps, on-call lookups, the
//! orphan sweep, the readiness heartbeat) is a message to it, sent through a [`GatewayHandle`].
//! Each handler clones the client into a `ResponseFuture`, so no actor state is held across an
//! await and a slow, rate-limited call never blocks the mailbox.
//!
//! A call is cancelled with the caller that asked for it: the handle sends a [`Cancel`] signal
//! with every message and fires it when the caller's future is dropped (a step cut short, a
//! heartbeat past its patience, an aborted on-call lookup). The handler's future stops there:
//! no further retries, no more waiting for a rate-limit slot or a permit. Without that, an
//! abandoned step's call would go on retrying for minutes, spending the rate limit on answers
//! nobody reads, and a write could land after the step gave up on it.
//!
//! The actor runs under an `actix::Supervisor` ([`Gateway::start_supervised`]); if it stops it is
//! restarted with the same client (limiter state included), and messages already queued are
//! answered by the restarted actor. A message the actor can no longer take (the system is
//! shutting down) is answered [`GatewayError::Stopped`], which is retryable: nothing was sent.
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
mod handle;
mod observe;
mod verdict;

use std::future::Future;
use std::time::Duration;

use actix::{Actor, Context, Handler, Message, ResponseFuture, Supervised, Supervisor};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::backend::{Operation, Outcome, Processed};

pub use client::{
    GatewayClient, RetryPolicy, CONNECT_TIMEOUT, JSM_NOT_FOUND_GRACE, MAX_RESPONSE_BODY,
    POLL_FIRST_DELAY, POLL_MAX_DELAY, USER_AGENT,
};
pub use error::GatewayError;
pub use handle::GatewayHandle;
pub use observe::{BackendCallObserver, CallEvent};

/// The gateway actor: owns the [`GatewayClient`] (HTTP client, rate limiter, concurrency bound).
#[derive(Debug)]
pub struct Gateway {
    client: GatewayClient,
    /// Times the supervisor restarted it, for the log.
    restarts: u32,
}

impl Gateway {
    /// A gateway around a client.
    pub fn from_client(client: GatewayClient) -> Self {
        Self {
            client,
            restarts: 0,
        }
    }

    /// Starts the gateway under a supervisor and returns the handle callers use. The client is
    /// moved in: from here on the actor is its only holder.
    pub fn start_supervised(client: GatewayClient) -> GatewayHandle {
        GatewayHandle::from_addr(Supervisor::start(move |_| Self::from_client(client)))
    }
}

impl Actor for Gateway {
    type Context = Context<Self>;
}

impl Supervised for Gateway {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts = self.restarts.saturating_add(1);
        tracing::warn!(
            restarts = self.restarts,
            "The gateway stopped; restarting it."
        );
    }
}

/// The caller's side of a call's cancellation: dropping it cancels the call.
#[derive(Debug)]
pub struct CancelGuard {
    /// Never sent on: dropping it is the signal.
    _fires_on_drop: oneshot::Sender<()>,
}

/// The gateway's side: fires when the caller's [`CancelGuard`] is dropped. It also carries the
/// caller's tracing span, so the call's log lines stay under the step that asked for it.
#[derive(Debug)]
pub struct Cancel {
    gave_up: oneshot::Receiver<()>,
    span: tracing::Span,
}

impl Cancel {
    /// A linked guard and signal, under the current span.
    pub fn pair() -> (CancelGuard, Cancel) {
        let (tx, rx) = oneshot::channel();
        (
            CancelGuard { _fires_on_drop: tx },
            Cancel {
                gave_up: rx,
                span: tracing::Span::current(),
            },
        )
    }

    /// Runs `work` until it finishes or the caller gives up, whichever is first. The caller's
    /// giving up is checked first, so a message queued after its sender left does nothing.
    async fn run<T>(
        self,
        endpoint: &'static str,
        work: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        let Cancel { gave_up, span } = self;
        tokio::select! {
            biased;
            // Nobody reads this answer: the caller has gone.
            _ = gave_up => Err(GatewayError::Stopped {
                endpoint,
                reason: "its caller gave up".into(),
            }),
            result = work.instrument(span) => result,
        }
    }
}

/// Performs one operation; see [`GatewayClient::call`].
#[derive(Debug, Message)]
#[rtype(result = "Result<Outcome, GatewayError>")]
pub struct Call {
    /// What to do.
    pub op: Operation,
    /// Cancels the call when its caller gives up.
    pub cancel: Cancel,
}

/// Polls an asynchronous request until it is processed; see [`GatewayClient::await_request`].
#[derive(Debug, Message)]
#[rtype(result = "Result<Processed, GatewayError>")]
pub struct AwaitRequest {
    /// The backend's request id.
    pub request_id: String,
    /// How long to poll at most.
    pub deadline: Duration,
    /// Cancels the polls when their caller gives up.
    pub cancel: Cancel,
}

/// Pings the heartbeat; see [`GatewayClient::health`].
#[derive(Debug, Message)]
#[rtype(result = "Result<(), GatewayError>")]
pub struct Health {
    /// Cancels the ping when its caller gives up.
    pub cancel: Cancel,
}

impl Handler<Call> for Gateway {
    type Result = ResponseFuture<Result<Outcome, GatewayError>>;

    fn handle(&mut self, msg: Call, _ctx: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let endpoint = msg.op.endpoint();
        Box::pin(
            msg.cancel
                .run(endpoint, async move { client.call(msg.op).await }),
        )
    }
}

impl Handler<AwaitRequest> for Gateway {
    type Result = ResponseFuture<Result<Processed, GatewayError>>;

    fn handle(&mut self, msg: AwaitRequest, _ctx: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let AwaitRequest {
            request_id,
            deadline,
            cancel,
        } = msg;
        Box::pin(cancel.run("request_status", async move {
            client.await_request(&request_id, deadline).await
        }))
    }
}

impl Handler<Health> for Gateway {
    type Result = ResponseFuture<Result<(), GatewayError>>;

    fn handle(&mut self, msg: Health, _ctx: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        Box::pin(
            msg.cancel
                .run("heartbeat", async move { client.health().await }),
        )
    }
}

#[cfg(test)]
mod actor_tests;
#[cfg(test)]
mod tests;
