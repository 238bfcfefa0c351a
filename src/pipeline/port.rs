//! The outside world as the request pipeline sees it: the [`Effects`] it acts through (Teleport's
//! plugin data and reviews, the backend through the gateway, the on-call cache, the clock), and
//! the typed [`EffectError`] they fail with. The daemon's implementation is
//! `pipeline::effects::LiveEffects`; tests substitute their own.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::actors::gateway::GatewayError;
use crate::actors::oncall::OnCallError;
use crate::backend::{Operation, Outcome, Processed};
use crate::core::plugin_data::{Encoded, PluginData};
use crate::pipeline::error_policy::{self, Action};
use crate::teleport::error::TeleportError;

/// What an effect can fail with. Errors keep their type until a person reads them;
/// [`error_policy`] decides what each means for the step.
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

impl EffectError {
    /// Whether the step should be tried again later (see [`error_policy::action`]).
    pub fn is_retryable(&self) -> bool {
        matches!(
            error_policy::action(self),
            Action::Retry { .. } | Action::Reread
        )
    }
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

/// What submitting the daemon's approving review achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewResult {
    /// The review was recorded now.
    Submitted,
    /// Nothing was recorded now, and nothing needs to be: Teleport says the daemon already
    /// reviewed the request (a repeat after a crash), or the request is already resolved.
    AlreadyDone,
}

/// What Teleport says when the daemon's identity needs MFA for admin actions, and how to fix it.
pub const MFA_REQUIRED_FIX: &str = "Teleport requires MFA for admin actions: run the plugin with a Machine ID (tbot) identity, or sign its identity with `tctl auth sign` on the Auth host";

/// The outside world, as one request's reconcile sees it. The daemon's implementation talks to
/// Teleport and the gateway; tests can substitute their own.
pub trait Effects {
    /// Reads the request's plugin data (default when there is none).
    fn read(&self, request_id: &str) -> impl Future<Output = Result<PluginData, EffectError>>;
    /// Compare-and-swap on the request's plugin data.
    fn write(
        &self,
        request_id: &str,
        set: Encoded,
        expect: Encoded,
    ) -> impl Future<Output = Result<(), EffectError>>;
    /// One backend call through the gateway.
    fn call(&self, op: Operation) -> impl Future<Output = Result<Outcome, EffectError>>;
    /// Waits until the backend has processed the asynchronous request with this id; what it
    /// says (`GatewayError::Timeout` past the deadline).
    fn await_request(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Processed, EffectError>>;
    /// Who is on call now in `schedule` (through the on-call cache). Any error means "unknown",
    /// never "nobody".
    fn on_call(&self, schedule: &str) -> impl Future<Output = Result<Vec<String>, EffectError>>;
    /// Submits the daemon's approving review of the request, with `reason`. A repeated review
    /// or an already resolved request is [`ReviewResult::AlreadyDone`]; an admin-action MFA
    /// refusal is [`EffectError::ReviewRefused`] with [`MFA_REQUIRED_FIX`]. In dry-run mode they
    /// submit nothing and answer [`ReviewResult::Submitted`].
    fn submit_review(
        &self,
        request_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<ReviewResult, EffectError>>;
    /// The time now.
    fn now(&self) -> SystemTime;
}
