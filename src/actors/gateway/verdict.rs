//! How failures that are not the codec's business become a [`Verdict`] or a [`GatewayError`]:
//! transport failures, oversized answers, and codec errors.

use crate::backend::retry::Verdict;
use crate::backend::BackendError;

use super::GatewayError;

/// Transport failures: timeouts and connection failures are transient; a request that could
/// not even be built is permanent.
pub(super) fn transport_verdict(e: &reqwest::Error, product: &str) -> Verdict {
    if e.is_builder() {
        return Verdict::Permanent {
            message: e.to_string(),
            hint: "check `opsgenie.api_url`".into(),
        };
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    Verdict::Transient {
        reason: format!("{what} talking to {product}: {e}"),
        // Only a connection that was never made proves that nothing was sent.
        maybe_done: !e.is_connect(),
    }
}

/// Why one attempt got no usable answer. Both kinds are transient: the attempt is retried.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// No answer: timeout, connection failure, or a request that could not be built.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// The answer's body was over [`MAX_RESPONSE_BODY`](super::MAX_RESPONSE_BODY); it was not read further.
    #[error(
        "the answer (HTTP {status}) is larger than the {} MiB limit on backend answers",
        .limit / (1024 * 1024)
    )]
    TooLarge {
        /// The answer's HTTP status.
        status: u16,
        /// The limit, [`MAX_RESPONSE_BODY`](super::MAX_RESPONSE_BODY).
        limit: usize,
    },
}

impl SendError {
    /// The HTTP status, when an answer began.
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            Self::Transport(e) => e.status().map(|s| s.as_u16()),
            Self::TooLarge { status, .. } => Some(*status),
        }
    }

    /// What to do about it. An oversized answer is retried like a 5xx: a proxy or a backend
    /// in trouble may answer properly next time, and the work must not be lost meanwhile. An
    /// answer did arrive, so a write may have taken effect: maybe done, verify before redoing.
    pub(super) fn verdict(&self, product: &str) -> Verdict {
        match self {
            Self::Transport(e) => transport_verdict(e, product),
            Self::TooLarge { .. } => Verdict::Transient {
                reason: format!("{product}: {self}"),
                maybe_done: true,
            },
        }
    }
}

pub(super) fn backend_error(e: BackendError, product: &str, status: Option<u16>) -> GatewayError {
    let hint = match &e {
        BackendError::Decode { .. } => format!(
            "the answer is not {product}'s API: check `opsgenie.backend` and `opsgenie.api_url`"
        ),
        BackendError::UnknownRequest { .. } => {
            "the request id is unknown: wrong id, region or account, or it expired".into()
        }
        BackendError::Unsupported { .. } => "see the message".into(),
        BackendError::Status { status } => format!("unexpected HTTP status {status}"),
    };
    let endpoint = match &e {
        BackendError::Decode { endpoint, .. } | BackendError::Unsupported { endpoint, .. } => {
            endpoint
        }
        BackendError::UnknownRequest { .. } => "request_status",
        BackendError::Status { .. } => "backend",
    };
    GatewayError::Permanent {
        status,
        endpoint,
        message: e.to_string(),
        hint,
    }
}
