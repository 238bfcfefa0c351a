//! The planned revocation at shift end as stored in plugin data: its state, its times, its
//! keys, and how it is written and read. Plain data; `revoke` plans the steps around it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 before it): how times are stored in plugin data.
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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
