//! Why a gateway call failed.

use std::time::Duration;

/// Why a gateway call failed. `pipeline::error_policy` decides what each means for a step.
///
/// Transient (worth trying again later, [`GatewayError::is_retryable`]): `Exhausted`,
/// `Stopped`. Maybe done
/// (also retryable, after verifying): `UnknownOutcome`, `Timeout`, `UnknownRequest`. Final:
/// `Permanent` (fix the configuration or report a bug), `RequestFailed` (the backend processed
/// the request and said no) and `Config`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The backend refused the call, or cannot do it; trying again will not help.
    #[error("{endpoint} failed{}: {message}; {hint}", .status.map(|s| format!(" with HTTP {s}")).unwrap_or_default())]
    Permanent {
        /// The HTTP status, if there was an answer.
        status: Option<u16>,
        /// The operation's label (`create_alert`, ...).
        endpoint: &'static str,
        /// What the backend said.
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// Transient failures (5xx, timeouts, 429s) went on for all allowed attempts or time.
    #[error("{endpoint} still failing after {attempts} attempts: {last}")]
    Exhausted {
        /// The operation's label.
        endpoint: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The gateway actor did not run the call: it was not taking messages (the system is
    /// shutting down), so nothing was sent; or the caller gave up, and nobody reads the answer.
    #[error("{endpoint} was not run by the gateway: {reason}")]
    Stopped {
        /// The operation's label.
        endpoint: &'static str,
        /// Why.
        reason: String,
    },
    /// A write may have taken effect, or not: the answer was lost or unreadable (a 5xx or a
    /// timeout after it was sent, a 2xx whose body is not the API's).
    #[error("{endpoint} may or may not have taken effect: {reason}")]
    UnknownOutcome {
        /// The operation's label.
        endpoint: &'static str,
        /// What happened to the answer.
        reason: String,
    },
    /// A deadline passed, e.g. while waiting for an asynchronous request to be processed.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// The backend does not know the request id (a plain 404 to a request-status poll: a wrong
    /// region or account, or the status expired). Whether the write happened is found by a read.
    #[error("the backend does not know request {request_id} (wrong region or account, or its status expired)")]
    UnknownRequest {
        /// The id asked about.
        request_id: String,
    },
    /// The backend processed an asynchronous request and reports that it failed.
    #[error("request {request_id} was processed but failed: {status}")]
    RequestFailed {
        /// The request id.
        request_id: String,
        /// The backend's status text, e.g. "Alert does not exist".
        status: String,
    },
    /// The gateway could not be set up from the configuration.
    #[error("invalid backend configuration: {0}")]
    Config(String),
}

impl GatewayError {
    /// Whether the same call may succeed later (possibly after verifying what the last one did).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Exhausted { .. }
                | Self::Stopped { .. }
                | Self::Timeout { .. }
                | Self::UnknownOutcome { .. }
                | Self::UnknownRequest { .. }
        )
    }
}
