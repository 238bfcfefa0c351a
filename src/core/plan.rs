//! What to do next for one request, given what Teleport says about it and what plugin data says
//! was already done. Pure: the request actor performs the step and records it, then asks again.
//!
//! The order of steps is what makes the alert read like a story: it is created, its id is
//! learnt, the auto-approval decision is explained, each review becomes a note in order, and the
//! alert is closed last.
//!
//! With auto-approval on, the decision comes *first*: an on-call requester's access must not
//! wait for the backend (its processing delay, or its throttling and failures during an
//! incident), so a pending request that nothing was sent for yet is decided before its alert is
//! created, and the decision's note waits in the progress (`decision_note`) until the alert's id
//! is known. A request approved that way gets its alert all the same, with the note, and then
//! closed. When the first decision fails (the on-call lookups failed), the alert is created
//! first and the decision retried after, as before.
//!
//! The order is also what lets one claim cover several steps (`pipeline::reconcile`, "Writes to
//! Teleport"): after each step the planner is asked again, and the steps that write to the
//! backend ([`Step::key`]) and learning the alert id follow each other under the claim already
//! held. Creation, id and decision are one run; a resolving review's note and the close are
//! another. Replicas whose snapshots differ in age may plan different steps for the same stored
//! progress (only a pending request is decided; only a resolved one is closed), which is why a
//! record never clears another step's unconfirmed mark (`plugin_data::Unconfirmed::merge`).

use std::time::SystemTime;

use crate::core::model::{AccessRequest, RequestState, Snapshot};
use crate::core::plugin_data::{PluginData, Resolution};

pub use crate::core::step::Step;

/// What the planner needs to know besides the request and its progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Whether auto-approval is switched on.
    pub auto_approval: bool,
}

/// The next step for `snapshot`, given its stored progress.
pub fn next_step(snapshot: &Snapshot, data: &PluginData, options: PlanOptions) -> Step {
    if data.is_closed() {
        // A revocation planned at approval outlives the alert (`core::revoke`).
        return crate::core::revoke::next(snapshot, data);
    }
    match snapshot {
        // A deleted request has no reviews left to note: only the close remains.
        Snapshot::Gone { .. } => closing(
            data,
            0,
            Step::Close {
                resolution: Resolution::Expired,
                reason: String::new(),
            },
            false,
        ),
        Snapshot::Present(request) => match request.state {
            RequestState::Pending => pending(request, data, options),
            RequestState::Approved | RequestState::Denied | RequestState::Promoted => {
                resolved(request, data)
            }
            RequestState::None => Step::Wait,
        },
    }
}

fn pending(request: &AccessRequest, data: &PluginData, options: PlanOptions) -> Step {
    if !data.alert_created() {
        if decides_first(data, options) {
            Step::Decide
        } else {
            Step::CreateAlert
        }
    } else if data.alert_id.is_empty() {
        Step::ResolveAlertId
    } else if options.auto_approval && data.decision.is_none() {
        Step::Decide
    } else if !data.decision_note.is_empty() {
        Step::NoteDecision
    } else if data.reviews_count < request.reviews.len() {
        Step::NoteReview {
            index: data.reviews_count,
        }
    } else {
        Step::Wait
    }
}

/// Whether the decision comes before the alert: auto-approval is on, nothing was decided,
/// nothing was sent for the request yet (an alert that may exist without its decision gets the
/// decision after it, as a note), and no lookup has failed (a failing lookup must not hold the
/// alert back).
fn decides_first(data: &PluginData, options: PlanOptions) -> bool {
    options.auto_approval
        && data.decision.is_none()
        && data.lookup_failures == 0
        && !data.create_attempted()
}

fn resolved(request: &AccessRequest, data: &PluginData) -> Step {
    let resolution = match request.state {
        RequestState::Denied => Resolution::Denied,
        RequestState::Promoted => Resolution::Promoted,
        _ => Resolution::Approved,
    };
    let close = Step::Close {
        resolution,
        reason: request.resolve_reason.clone(),
    };
    closing(data, request.reviews.len(), close, true)
}

/// The way to `close` a request that is over, with `reviews` reviews to note first.
/// `can_create`: the request still exists, so an alert it never got can be made from it.
fn closing(data: &PluginData, reviews: usize, close: Step, can_create: bool) -> Step {
    if !data.alert_created() && can_create && data.decision.is_some() {
        // Decided (and maybe approved) before its alert existed: the on-call team is still
        // told what happened, on an alert that is then closed.
        return Step::CreateAlert;
    }
    if !data.alert_created() {
        // Never attempted (for example resolved while the daemon was down): nobody to tell,
        // nothing to close. Attempted but not recorded (the answer was lost, or the step was
        // cut short): the alert may exist, so close it by alias; closing nothing is harmless.
        return if data.create_attempted() {
            close
        } else {
            Step::Finished
        };
    }
    if data.alert_id.is_empty() {
        return Step::ResolveAlertId;
    }
    if !data.decision_note.is_empty() {
        return Step::NoteDecision;
    }
    if data.reviews_count < reviews {
        return Step::NoteReview {
            index: data.reviews_count,
        };
    }
    close
}

/// Whether another replica holds the request at `now`, and until when.
pub fn held_by_other(data: &PluginData, me: &str, now: SystemTime) -> Option<SystemTime> {
    data.claim
        .as_ref()
        .filter(|c| c.holder != me && c.is_live(now))
        .map(|c| c.until())
}

/// Whether `newer` should replace `current` as the snapshot to act on. Teleport's order of
/// events and of a resync listing can interleave, so a snapshot that is provably older (a pending
/// state after a resolved one, fewer reviews in the same state, anything after deletion) is
/// dropped rather than acted on.
pub fn supersedes(newer: &Snapshot, current: &Snapshot) -> bool {
    match (current, newer) {
        (Snapshot::Gone { .. }, _) => false,
        (_, Snapshot::Gone { .. }) => true,
        (Snapshot::Present(cur), Snapshot::Present(new)) => {
            if cur.state.is_resolved() && !new.state.is_resolved() {
                false
            } else if cur.state == new.state {
                new.reviews.len() >= cur.reviews.len()
            } else {
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plugin_data::{Claim, Decision};
    use std::time::{Duration, UNIX_EPOCH};

    fn req(state: RequestState, reviews: usize) -> Snapshot {
        Snapshot::Present(AccessRequest {
            state,
            resolve_reason: "because".into(),
            ..AccessRequest::example("r1", "alice", &["editor"]).with_approvals(reviews)
        })
    }

    fn created() -> PluginData {
        PluginData {
            alert_request_id: "rq".into(),
            ..Default::default()
        }
    }

    fn with_id() -> PluginData {
        PluginData {
            alert_id: "a".into(),
            ..created()
        }
    }

    const OFF: PlanOptions = PlanOptions {
        auto_approval: false,
    };
    const ON: PlanOptions = PlanOptions {
        auto_approval: true,
    };

    #[test]
    fn pending_request_table() {
        use RequestState::Pending;
        let cases = [
            (
                req(Pending, 0),
                PluginData::default(),
                OFF,
                Step::CreateAlert,
            ),
            (req(Pending, 0), created(), OFF, Step::ResolveAlertId),
            (req(Pending, 0), with_id(), OFF, Step::Wait),
            (req(Pending, 0), with_id(), ON, Step::Decide),
            (
                req(Pending, 2),
                with_id(),
                OFF,
                Step::NoteReview { index: 0 },
            ),
            (
                req(Pending, 2),
                PluginData {
                    reviews_count: 1,
                    decision: Some(Decision::Declined),
                    ..with_id()
                },
                ON,
                Step::NoteReview { index: 1 },
            ),
            (
                req(Pending, 2),
                PluginData {
                    reviews_count: 2,
                    ..with_id()
                },
                OFF,
                Step::Wait,
            ),
            (req(RequestState::None, 0), with_id(), OFF, Step::Wait),
        ];
        for (i, (snapshot, data, options, want)) in cases.into_iter().enumerate() {
            assert_eq!(next_step(&snapshot, &data, options), want, "case {i}");
        }
    }

    #[test]
    fn resolved_request_notes_reviews_then_closes() {
        use RequestState::{Approved, Denied, Promoted};
        assert_eq!(
            next_step(&req(Approved, 1), &PluginData::default(), OFF),
            Step::Finished
        );
        assert_eq!(
            next_step(&req(Approved, 1), &created(), OFF),
            Step::ResolveAlertId
        );
        assert_eq!(
            next_step(&req(Approved, 1), &with_id(), OFF),
            Step::NoteReview { index: 0 }
        );
        let noted = PluginData {
            reviews_count: 1,
            ..with_id()
        };
        for (state, resolution) in [
            (Approved, Resolution::Approved),
            (Denied, Resolution::Denied),
            (Promoted, Resolution::Promoted),
        ] {
            assert_eq!(
                next_step(&req(state, 1), &noted, ON),
                Step::Close {
                    resolution,
                    reason: "because".into()
                }
            );
        }
    }

    #[test]
    fn the_decision_comes_before_the_alert_unless_something_was_sent() {
        use RequestState::{Approved, Pending};
        let fresh = PluginData::default();
        assert_eq!(next_step(&req(Pending, 0), &fresh, ON), Step::Decide);
        assert_eq!(next_step(&req(Pending, 0), &fresh, OFF), Step::CreateAlert);
        // A failed lookup must not hold the alert back; a creation that may have happened
        // gets the decision after it, as a note.
        let failed_once = PluginData {
            lookup_failures: 1,
            ..PluginData::default()
        };
        assert_eq!(
            next_step(&req(Pending, 0), &failed_once, ON),
            Step::CreateAlert
        );
        let attempted = PluginData {
            user: "alice".into(),
            ..PluginData::default()
        };
        assert_eq!(
            next_step(&req(Pending, 0), &attempted, ON),
            Step::CreateAlert
        );
        // Decided first: the alert is created, its id learnt, then the note waiting for it.
        let decided = PluginData {
            user: "alice".into(),
            decision: Some(Decision::Approved),
            decision_note: "Auto-approved: alice is on call".into(),
            ..PluginData::default()
        };
        assert_eq!(next_step(&req(Pending, 0), &decided, ON), Step::CreateAlert);
        let with_note = |base: PluginData| PluginData {
            decision: Some(Decision::Approved),
            decision_note: "Auto-approved: alice is on call".into(),
            ..base
        };
        assert_eq!(
            next_step(&req(Pending, 0), &with_note(created()), ON),
            Step::ResolveAlertId
        );
        assert_eq!(
            next_step(&req(Pending, 1), &with_note(with_id()), ON),
            Step::NoteDecision
        );
        // Approved (by that decision) before the alert existed: it is still created, noted
        // and closed. A deleted one can no longer be rendered: closed by alias if attempted.
        assert_eq!(
            next_step(&req(Approved, 1), &decided, ON),
            Step::CreateAlert
        );
        assert_eq!(
            next_step(&req(Approved, 1), &with_note(with_id()), ON),
            Step::NoteDecision
        );
        assert_eq!(
            next_step(&Snapshot::Gone { id: "r1".into() }, &decided, ON),
            Step::Close {
                resolution: Resolution::Expired,
                reason: String::new()
            }
        );
    }

    #[test]
    fn an_attempted_but_unrecorded_creation_is_closed_by_alias() {
        let attempted = PluginData {
            user: "alice".into(),
            ..PluginData::default()
        };
        assert_eq!(
            next_step(&req(RequestState::Denied, 0), &attempted, OFF),
            Step::Close {
                resolution: Resolution::Denied,
                reason: "because".into()
            }
        );
        assert_eq!(
            next_step(&Snapshot::Gone { id: "r1".into() }, &attempted, OFF),
            Step::Close {
                resolution: Resolution::Expired,
                reason: String::new()
            }
        );
        assert_eq!(
            next_step(&req(RequestState::Pending, 0), &attempted, OFF),
            Step::CreateAlert
        );
    }

    #[test]
    fn deletion_closes_as_expired_and_closed_alerts_are_finished() {
        let gone = Snapshot::Gone { id: "r1".into() };
        assert_eq!(
            next_step(&gone, &PluginData::default(), OFF),
            Step::Finished
        );
        assert_eq!(next_step(&gone, &created(), OFF), Step::ResolveAlertId);
        assert_eq!(
            next_step(&gone, &with_id(), OFF),
            Step::Close {
                resolution: Resolution::Expired,
                reason: String::new()
            }
        );
        let closed = PluginData {
            resolution: Some(Resolution::Expired),
            ..with_id()
        };
        assert_eq!(next_step(&gone, &closed, OFF), Step::Finished);
        assert_eq!(
            next_step(&req(RequestState::Pending, 3), &closed, ON),
            Step::Finished
        );
    }

    #[test]
    fn claims_of_others_hold_until_they_expire() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let data = PluginData {
            claim: Some(Claim {
                holder: "other".into(),
                until_ms: 101_000,
            }),
            ..Default::default()
        };
        assert_eq!(
            held_by_other(&data, "me", now),
            Some(UNIX_EPOCH + Duration::from_secs(101))
        );
        assert_eq!(held_by_other(&data, "other", now), None);
        assert_eq!(
            held_by_other(&data, "me", now + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn stale_snapshots_do_not_replace_newer_ones() {
        use RequestState::{Approved, Pending};
        let gone = Snapshot::Gone { id: "r1".into() };
        assert!(supersedes(&req(Pending, 1), &req(Pending, 0)));
        assert!(supersedes(&req(Pending, 1), &req(Pending, 1)));
        assert!(!supersedes(&req(Pending, 0), &req(Pending, 1)));
        assert!(supersedes(&req(Approved, 0), &req(Pending, 2)));
        assert!(!supersedes(&req(Pending, 5), &req(Approved, 1)));
        assert!(supersedes(&gone, &req(Approved, 1)));
        assert!(!supersedes(&req(Pending, 0), &gone));
    }
}
