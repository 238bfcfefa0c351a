//! Revocation at shift end (`auto_approval.shift_end: revoke`), the pure part: the planned
//! revocation as plugin data stores it, which step it calls for, and what the alert and the
//! locked-out user are told. The step itself is `pipeline::revoke`.
//!
//! The plan lives in the request's plugin data, so whichever replica holds the request when it
//! falls due (after any restart) performs it, under the request's claim, once:
//!
//! 1. `Planned`, due: look again whether the person is still on call (an override may have
//!    extended the shift: the due time moves), then lock the request (`Locked`). A refused lock
//!    is recorded, noted on the alert once with its fix, and retried with backoff.
//! 2. `Locked`: the note on the alert (`Noted`).

use crate::core::model::{RequestState, Snapshot};
use crate::core::plugin_data::PluginData;
pub use crate::core::revocation::{decode, encode, Revocation, RevokeState, KEYS};
use crate::core::shift_policy::rfc3339;
use crate::core::step::Step;

/// The step a revocation calls for once the request's alert is closed, or
/// [`Step::Finished`]. Only an approved request's access can be revoked: a denied, promoted or
/// deleted one has none left (Teleport deletes a request when its access expires).
pub fn next(snapshot: &Snapshot, data: &PluginData) -> Step {
    let (Some(r), Snapshot::Present(request)) = (&data.revocation, snapshot) else {
        return Step::Finished;
    };
    if request.state != RequestState::Approved {
        return Step::Finished;
    }
    match r.state {
        RevokeState::Planned if !r.refusal.is_empty() && !r.refusal_noted => Step::NoteLockRefused,
        RevokeState::Planned => Step::Revoke { due: r.due },
        RevokeState::Locked => Step::NoteRevoked,
        RevokeState::Noted | RevokeState::NotNeeded => Step::Finished,
    }
}

/// What the locked-out user is shown.
pub fn lock_message(request_id: &str, schedule: &str) -> String {
    format!(
        "The access granted by request {request_id} ended with your on-call shift in \"{schedule}\" (teleport-opsgenie, auto_approval.shift_end: revoke)."
    )
}

/// The note once the lock exists (`r.due` is then when the lock was made).
pub fn revoked_note(user: &str, r: &Revocation, lock: &str) -> String {
    format!(
        "Access revoked at the end of the shift: {user} was auto-approved because they were on call in \"{}\" as {}, and that shift has ended. Teleport lock `{lock}` has blocked this request's access since {}; it expires with the access at {}. (auto_approval.shift_end: revoke; delete the lock to give the access back.)",
        r.schedule,
        r.person,
        rfc3339(r.due),
        rfc3339(r.access_end)
    )
}

/// The note when Teleport refuses the lock.
pub fn refused_note(refusal: &str) -> String {
    format!(
        "Could not revoke the access at the end of the shift: {refusal}. The access stays until this is fixed; teleport-opsgenie keeps retrying the lock."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::AccessRequest;
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    fn planned() -> Revocation {
        Revocation {
            due: UNIX_EPOCH + Duration::from_millis(1_796_083_200_000),
            access_end: UNIX_EPOCH + Duration::from_millis(1_796_090_400_000),
            schedule: "Primary".into(),
            person: "alice@example.com".into(),
            state: RevokeState::Planned,
            refusal: String::new(),
            refusal_noted: false,
        }
    }

    #[test]
    fn round_trips_and_absent_reads_as_none() {
        let mut map = BTreeMap::new();
        let refused = Revocation {
            refusal: "no lock rule".into(),
            refusal_noted: true,
            state: RevokeState::Locked,
            ..planned()
        };
        for r in [planned(), refused] {
            encode(Some(&r), &mut map);
            assert_eq!(decode(&map), Some(r));
        }
        encode(None, &mut map);
        assert_eq!(map.len(), KEYS.len());
        assert!(map.values().all(String::is_empty));
        assert_eq!(decode(&map), None);
        assert_eq!(
            decode(&BTreeMap::new()),
            None,
            "data from before revocations"
        );
    }

    #[test]
    fn steps_follow_the_state_for_approved_requests_only() {
        let approved = Snapshot::Present(AccessRequest {
            state: RequestState::Approved,
            ..AccessRequest::example("r1", "alice", &["editor"])
        });
        let with = |r: Revocation| PluginData {
            revocation: Some(r),
            ..PluginData::default()
        };
        let due = planned().due;
        assert_eq!(next(&approved, &with(planned())), Step::Revoke { due });
        let refused = Revocation {
            refusal: "x".into(),
            ..planned()
        };
        assert_eq!(
            next(&approved, &with(refused.clone())),
            Step::NoteLockRefused
        );
        let noted = Revocation {
            refusal_noted: true,
            ..refused
        };
        assert_eq!(next(&approved, &with(noted)), Step::Revoke { due });
        let locked = Revocation {
            state: RevokeState::Locked,
            ..planned()
        };
        assert_eq!(next(&approved, &with(locked)), Step::NoteRevoked);
        for state in [RevokeState::Noted, RevokeState::NotNeeded] {
            let r = Revocation { state, ..planned() };
            assert_eq!(next(&approved, &with(r)), Step::Finished);
        }
        assert_eq!(next(&approved, &PluginData::default()), Step::Finished);
        let denied = Snapshot::Present(AccessRequest {
            state: RequestState::Denied,
            ..AccessRequest::example("r1", "alice", &["editor"])
        });
        assert_eq!(next(&denied, &with(planned())), Step::Finished);
        let gone = Snapshot::Gone { id: "r1".into() };
        assert_eq!(next(&gone, &with(planned())), Step::Finished);
    }

    #[test]
    fn the_texts_name_the_lock_the_times_and_the_setting() {
        let locked = Revocation {
            due: planned().due + Duration::from_secs(5),
            state: RevokeState::Locked,
            ..planned()
        };
        let note = revoked_note("alice", &locked, "opsgenie-shift-end-r1");
        assert!(
            note.starts_with("Access revoked at the end of the shift"),
            "{note}"
        );
        assert!(note.contains("opsgenie-shift-end-r1"), "{note}");
        assert!(note.contains("2026-12-01T00:00:05Z"), "{note}");
        assert!(note.contains("2026-12-01T02:00:00Z"), "{note}");
        assert!(note.contains("shift_end: revoke"), "{note}");
        assert!(refused_note("no `lock` rule; fix: add it").contains("keeps retrying"));
        assert!(lock_message("r1", "Primary").contains("\"Primary\""));
    }
}
