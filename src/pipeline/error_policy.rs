//! The error policy: what the request pipeline does about a failed step. A plain function of the
//! typed error, decided here once and nowhere else (the request actor only carries it out, the
//! reconcile step asks it whether an outcome is unknown), so that no retry decision ever parses a
//! string.
//!
//! | error                                                        | class      | action |
//! |--------------------------------------------------------------|------------|--------|
//! | lost compare-and-swap                                        | conflict   | re-read and plan again at once |
//! | Teleport unavailable, timeouts, 5xx/408/429 retries exhausted, a write the backend processed and failed (`isSuccess:false` for no reason the step handles), a write not sent because the claim ran out | transient | retry after backoff |
//! | unparseable 2xx, 5xx or timeout after a write was sent, a write not confirmed in time, a step cut short | maybe done | retry after backoff, verifying first |
//! | 401, 403, 422, a 404 for what does not exist, bad configuration, a refused review | refused | wait for the request to change (or a restart) |
//! | the request and its progress are gone from Teleport          | gone       | give up, saying why |
//!
//! "Maybe done" is never parked: the next attempt first finds out whether the write happened
//! (see `pipeline::reconcile`, "Unknown outcomes") and then records it or does it again.

use crate::actors::gateway::GatewayError;
use crate::actors::oncall::OnCallError;
use crate::pipeline::effect_error::EffectError;
use crate::teleport::error::TeleportError;

/// What kind of failure an error is, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Someone else moved first (a lost compare-and-swap): not a failure.
    Conflict,
    /// Nothing happened, and trying again later may work.
    Transient,
    /// A write may or may not have taken effect: find out before doing it again.
    MaybeDone,
    /// A final answer: the same call will be refused again until something is changed.
    Refused,
    /// The request no longer exists: nothing is left to do.
    Gone,
}

/// What to do after a failed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Re-read the progress and plan again at once.
    Reread,
    /// Try the step again after the backoff's next delay. With `verify`, the step's outcome is
    /// unknown and the next attempt checks the backend before acting again.
    Retry {
        /// The outcome is unknown; verify before redoing.
        verify: bool,
    },
    /// Retrying will not help: wait until Teleport reports a change to the request (or the
    /// daemon restarts, e.g. with a fixed configuration).
    WaitForChange {
        /// What was refused, for the log.
        reason: String,
    },
    /// Nothing can or needs to be done for this request any more.
    GiveUp {
        /// Why, for the log.
        reason: String,
    },
}

/// Classifies an error of the pipeline's effects.
pub fn classify(err: &EffectError) -> Class {
    match err {
        EffectError::Conflict => Class::Conflict,
        EffectError::Teleport(err) => teleport(err),
        EffectError::Backend(err) => backend(err),
        EffectError::OnCall { source, .. } => on_call(source),
        // Processed and failed for a reason the step cannot act on: nothing happened, so doing
        // it again is safe, and the backend may well succeed next time.
        EffectError::LookupsFailed { .. } | EffectError::Rejected { .. } => Class::Transient,
        // Fenced by the claim: nothing was sent (an earlier write it could not settle stays
        // recorded as unconfirmed by the attempt).
        EffectError::ClaimRanOut { .. } => Class::Transient,
        // Refused now, but the access must still end: retried with backoff until the rule or
        // the identity is fixed (the alert says how, once).
        EffectError::LockRefused { .. } => Class::Transient,
        EffectError::StepTimedOut { .. }
        | EffectError::Cancelled
        | EffectError::NotConfirmedYet { .. } => Class::MaybeDone,
        EffectError::ReviewRefused { .. } | EffectError::Unexpected { .. } => Class::Refused,
    }
}

/// How a Teleport error is classified.
pub fn teleport(err: &TeleportError) -> Class {
    match err {
        TeleportError::CompareFailed { .. } => Class::Conflict,
        TeleportError::NotFound { .. } => Class::Gone,
        err if err.is_retryable() => Class::Transient,
        _ => Class::Refused,
    }
}

/// How a gateway error is classified.
pub fn backend(err: &GatewayError) -> Class {
    match err {
        // `Stopped`: the gateway never ran the call, so nothing happened.
        GatewayError::Exhausted { .. } | GatewayError::Stopped { .. } => Class::Transient,
        // Accepted but not confirmed: whether it took effect is unknown.
        GatewayError::UnknownOutcome { .. }
        | GatewayError::Timeout { .. }
        | GatewayError::UnknownRequest { .. } => Class::MaybeDone,
        GatewayError::Permanent { .. }
        | GatewayError::RequestFailed { .. }
        | GatewayError::Config(_) => Class::Refused,
    }
}

/// How a failed on-call lookup is classified: a refusal (403, an unknown schedule) is final, the
/// rest is worth another try. A lookup writes nothing, so it is never "maybe done".
pub fn on_call(err: &OnCallError) -> Class {
    match err {
        OnCallError::Stopped => Class::Transient,
        OnCallError::Lookup(err) => match backend(err) {
            Class::MaybeDone => Class::Transient,
            class => class,
        },
    }
}

/// The action for `err`.
pub fn action(err: &EffectError) -> Action {
    match classify(err) {
        Class::Conflict => Action::Reread,
        Class::Transient => Action::Retry { verify: false },
        Class::MaybeDone => Action::Retry { verify: true },
        Class::Refused => Action::WaitForChange {
            reason: err.to_string(),
        },
        Class::Gone => Action::GiveUp {
            reason: format!("the request is gone from Teleport: {err}"),
        },
    }
}

impl EffectError {
    /// Whether the step should be tried again later (see [`action`]).
    pub fn is_retryable(&self) -> bool {
        matches!(action(self), Action::Retry { .. } | Action::Reread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teleport::error::Operation as TOp;
    use std::time::Duration;

    fn permanent(status: u16) -> GatewayError {
        GatewayError::Permanent {
            status: Some(status),
            endpoint: "on_call",
            message: format!("HTTP {status}"),
            hint: "fix it".into(),
        }
    }

    #[test]
    fn the_table() {
        let unavailable = TeleportError::Unavailable {
            operation: TOp::UpdatePluginData,
            message: "down".into(),
        };
        let cases: Vec<(&str, EffectError, Action)> = vec![
            ("conflict", EffectError::Conflict, Action::Reread),
            (
                "lost CAS from Teleport",
                EffectError::Teleport(TeleportError::CompareFailed {
                    operation: TOp::UpdatePluginData,
                    message: "expectations not met".into(),
                }),
                Action::Reread,
            ),
            (
                "Teleport unavailable",
                EffectError::Teleport(unavailable),
                Action::Retry { verify: false },
            ),
            (
                "5xx retries exhausted",
                EffectError::Backend(GatewayError::Exhausted {
                    endpoint: "create_alert",
                    attempts: 5,
                    last: "HTTP 503".into(),
                }),
                Action::Retry { verify: false },
            ),
            (
                "unparseable 2xx",
                EffectError::Backend(GatewayError::UnknownOutcome {
                    endpoint: "create_alert",
                    reason: "HTTP 202 with an HTML body".into(),
                }),
                Action::Retry { verify: true },
            ),
            (
                "write not confirmed in time",
                EffectError::Backend(GatewayError::Timeout {
                    what: "request rq to be processed".into(),
                    after: Duration::from_secs(30),
                }),
                Action::Retry { verify: true },
            ),
            (
                "request id unknown to the backend",
                EffectError::Backend(GatewayError::UnknownRequest {
                    request_id: "rq".into(),
                }),
                Action::Retry { verify: true },
            ),
            (
                "step cut short",
                EffectError::StepTimedOut {
                    budget: Duration::from_secs(48),
                },
                Action::Retry { verify: true },
            ),
            (
                "shutdown",
                EffectError::Cancelled,
                Action::Retry { verify: true },
            ),
            (
                "processed and failed",
                EffectError::Rejected {
                    action: "add the note",
                    status: "Could not process the request".into(),
                },
                Action::Retry { verify: false },
            ),
            (
                "claim ran out before the write was sent",
                EffectError::ClaimRanOut {
                    step: "review-0".into(),
                },
                Action::Retry { verify: false },
            ),
            (
                "lookups failing, progress kept",
                EffectError::LookupsFailed {
                    reason: "HTTP 503".into(),
                },
                Action::Retry { verify: false },
            ),
        ];
        for (name, err, want) in cases {
            assert_eq!(action(&err), want, "{name}");
        }
        for status in [401, 402, 403, 404, 422] {
            let err = EffectError::Backend(permanent(status));
            assert!(
                matches!(action(&err), Action::WaitForChange { .. }),
                "{status}"
            );
            assert!(!err.is_retryable(), "{status}");
        }
        let gone = EffectError::Teleport(TeleportError::NotFound {
            operation: TOp::UpdatePluginData,
            message: "access request \"r1\" not found".into(),
        });
        assert!(matches!(action(&gone), Action::GiveUp { reason } if reason.contains("gone")));
    }

    #[test]
    fn a_refused_lookup_is_final_and_a_failing_one_is_not() {
        let refused = OnCallError::Lookup(permanent(403));
        assert_eq!(on_call(&refused), Class::Refused);
        let missing = OnCallError::Lookup(permanent(404));
        assert_eq!(on_call(&missing), Class::Refused);
        let failing = OnCallError::Lookup(GatewayError::Exhausted {
            endpoint: "on_call",
            attempts: 5,
            last: "HTTP 502".into(),
        });
        assert_eq!(on_call(&failing), Class::Transient);
        let timed_out = OnCallError::Lookup(GatewayError::UnknownOutcome {
            endpoint: "on_call",
            reason: "timed out".into(),
        });
        assert_eq!(on_call(&timed_out), Class::Transient);
        assert_eq!(on_call(&OnCallError::Stopped), Class::Transient);
    }
}
