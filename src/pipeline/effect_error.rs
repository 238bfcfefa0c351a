//! What an effect can fail with, typed to the edge. What each means for the step (retry, re-read,
//! give up, verify first) is decided in one place, [`super::error_policy`]; this file only says
//! what happened.

use std::time::Duration;

use crate::actors::gateway::GatewayError;
use crate::actors::oncall::OnCallError;
use crate::teleport::error::TeleportError;

/// What an effect can fail with. Errors keep their type until a person reads them;
/// [`super::error_policy`] decides what each means for the step.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// Plugin data changed since it was read (a lost compare-and-swap). Re-read and re-plan at
    /// once; not a failure.
    #[error("plugin data was changed by someone else")]
    Conflict,
    /// A Teleport call failed.
    #[error(transparent)]
    Teleport(TeleportError),
    /// A backend call failed.
    #[error(transparent)]
    Backend(GatewayError),
    /// An on-call lookup failed.
    #[error("could not look up who is on call in {schedule:?}: {source}")]
    OnCall {
        /// The schedule.
        schedule: String,
        /// Why.
        #[source]
        source: OnCallError,
    },
    /// On-call lookups failed; the decision is retried (the failure count is kept).
    #[error("{reason}")]
    LookupsFailed {
        /// The text the decision note will carry if the retries run out.
        reason: String,
    },
    /// Teleport refused the approving review for good.
    #[error("{fix} (Teleport said: {source})")]
    ReviewRefused {
        /// What to do about it.
        fix: &'static str,
        /// Teleport's refusal.
        #[source]
        source: TeleportError,
    },
    /// Teleport refused the lock that ends an access at shift end (a missing `lock` rule,
    /// admin-action MFA). Retried with backoff, never dropped: the access must end.
    #[error("Teleport refused the lock ({source}); fix: {fix}")]
    LockRefused {
        /// What to do about it.
        fix: &'static str,
        /// Teleport's refusal.
        #[source]
        source: TeleportError,
    },
    /// The backend processed a write and says it failed, for a reason this step cannot act on.
    #[error("the backend could not {action}: {status}")]
    Rejected {
        /// What was asked (`create the alert`, ...).
        action: &'static str,
        /// The backend's status text.
        status: String,
    },
    /// The backend answered with something this operation never answers (a bug).
    #[error("the backend answered {endpoint} with an unexpected result: {outcome}")]
    Unexpected {
        /// The operation's label.
        endpoint: &'static str,
        /// The answer.
        outcome: String,
    },
    /// The step took longer than its claim allows and was cut short; what it sent is
    /// unconfirmed.
    #[error("the step took longer than its claim allows ({budget:?}); it is retried")]
    StepTimedOut {
        /// The time it had.
        budget: Duration,
    },
    /// The step's claim ran out (less its margin) before a write could be sent, so it was not
    /// sent: another replica may take the request over from now on.
    #[error(
        "the claim on {step} ran out before its write was sent; nothing was sent, it is retried"
    )]
    ClaimRanOut {
        /// The step's key.
        step: String,
    },
    /// Shutdown cut the step short; what it sent is unconfirmed.
    #[error("the step was cut short by shutdown")]
    Cancelled,
    /// An unconfirmed write of step `step` cannot be told done or not yet.
    #[error("whether the last attempt of {step} took effect is not known yet")]
    NotConfirmedYet {
        /// The step's key.
        step: String,
    },
}

impl From<TeleportError> for EffectError {
    fn from(err: TeleportError) -> Self {
        match err {
            TeleportError::CompareFailed { .. } => Self::Conflict,
            err => Self::Teleport(err),
        }
    }
}

impl From<GatewayError> for EffectError {
    fn from(err: GatewayError) -> Self {
        Self::Backend(err)
    }
}
