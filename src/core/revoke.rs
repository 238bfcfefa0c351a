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

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::model::{RequestState, Snapshot};
use crate::core::plan::Step;
use crate::core::plugin_data::{millis, PluginData};
use crate::core::shift_policy::rfc3339;

/// Where a planned revocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeState {
    /// Waiting for its due time (or for a refused lock to be accepted).
    Planned,
    /// The lock exists; the note is next.
    Locked,
    /// Done: locked and noted.
    Noted,
    /// The shift was extended past the access's end: nothing to revoke.
    NotNeeded,
}

impl RevokeState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Locked => "locked",
            Self::Noted => "noted",
            Self::NotNeeded => "not-needed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => Self::Planned,
            "locked" => Self::Locked,
            "noted" => Self::Noted,
            "not-needed" => Self::NotNeeded,
            _ => return None,
        })
    }
}

/// A revocation planned at approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// When to lock (shift end plus grace), in whole milliseconds.
    pub due: SystemTime,
    /// When the access ends: the lock's expiry.
    pub access_end: SystemTime,
    /// The schedule the requester was on call in.
    pub schedule: String,
    /// The requester as the schedule names them (the on-call username).
    pub person: String,
    /// Where it stands.
    pub state: RevokeState,
    /// Why Teleport last refused the lock, with the fix; empty when it never did.
    pub refusal: String,
    /// Whether the refusal was written on the alert (once, however often it is retried).
    pub refusal_noted: bool,
}

const STATE: &str = "shift_revoke_state";
const DUE: &str = "shift_revoke_at";
const ACCESS_END: &str = "shift_access_end";
const SCHEDULE: &str = "shift_schedule";
const PERSON: &str = "shift_oncall_user";
const REFUSAL: &str = "shift_lock_refusal";
const REFUSAL_NOTED: &str = "shift_lock_refusal_noted";

/// The plugin-data keys of a revocation (all empty when none is planned). Additive: data
/// written before them reads as "no revocation".
pub const KEYS: [&str; 7] = [
    STATE,
    DUE,
    ACCESS_END,
    SCHEDULE,
    PERSON,
    REFUSAL,
    REFUSAL_NOTED,
];

fn from_ms(text: &str) -> Option<SystemTime> {
    text.parse::<u64>()
        .ok()
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

fn millis_up(t: SystemTime) -> u64 {
    let ms = millis(t);
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.subsec_nanos() % 1_000_000 != 0 => ms + 1,
        _ => ms,
    }
}

/// Writes `revocation` (or empties) under [`KEYS`].
pub fn encode(revocation: Option<&Revocation>, map: &mut BTreeMap<String, String>) {
    let values: [String; 7] = match revocation {
        None => Default::default(),
        Some(r) => [
            r.state.as_str().to_owned(),
            millis(r.due).to_string(),
            // Rounded up, so the lock never stops applying before the access ends.
            millis_up(r.access_end).to_string(),
            r.schedule.clone(),
            r.person.clone(),
            r.refusal.clone(),
            if r.refusal_noted {
                "yes".into()
            } else {
                String::new()
            },
        ],
    };
    for (key, value) in KEYS.iter().zip(values) {
        map.insert((*key).to_owned(), value);
    }
}

/// Reads a revocation; `None` when none is planned or the stored one is unreadable (which
/// leaves the access as Teleport granted it, and is logged by nobody: only this daemon writes
/// these keys).
pub fn decode(map: &BTreeMap<String, String>) -> Option<Revocation> {
    let get = |key: &str| map.get(key).map(String::as_str).unwrap_or("");
    Some(Revocation {
        state: RevokeState::parse(get(STATE))?,
        due: from_ms(get(DUE))?,
        access_end: from_ms(get(ACCESS_END))?,
        schedule: get(SCHEDULE).to_owned(),
        person: get(PERSON).to_owned(),
        refusal: get(REFUSAL).to_owned(),
        refusal_noted: !get(REFUSAL_NOTED).is_empty(),
    })
}

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
