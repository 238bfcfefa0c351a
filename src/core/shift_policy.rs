//! `auto_approval.shift_end`: what the end of the requester's on-call shift means for an
//! approval. Pure: the caller looks the shift end up (`core::shift`, through the timeline cache)
//! and hands in the answer; this decides and writes the words for the alert.
//!
//! The trust behind an auto-approval is "this person is on call now". It ends with the shift,
//! so:
//!
//! - `decline` approves only access that ends by the shift's end plus `shift_grace`;
//! - `revoke` approves, and plans a lock of the request at shift end plus `shift_grace`;
//! - `ignore` approves as if shifts never ended.
//!
//! An end that cannot be known (on call only through a team or an escalation, a timeline that
//! does not show the person, a lookup that kept failing) is never taken as "fine": under
//! `decline` and `revoke` the request is left to a human, and the alert says why.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::core::model::AccessRequest;
use crate::core::shift::ShiftEnd;

/// What the end of the requester's shift does to an auto-approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShiftEndMode {
    /// Approve only access that ends within the shift (plus the grace); decline the rest.
    #[default]
    Decline,
    /// Approve, and lock the request in Teleport when the shift ends (plus the grace).
    Revoke,
    /// Approve whatever the shift (the behaviour before shifts were looked at).
    Ignore,
}

impl ShiftEndMode {
    /// The configured word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decline => "decline",
            Self::Revoke => "revoke",
            Self::Ignore => "ignore",
        }
    }
}

/// What the shift says about an approval the rest of the policy would make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShiftVerdict {
    /// Approve; nothing to do at shift end. The text is appended to the approval's reason.
    Approve(String),
    /// Approve, and lock the request at `at` (shift end plus grace), the lock expiring at
    /// `access_end`. The text is appended to the approval's reason.
    ApproveAndRevoke {
        /// When to lock.
        at: SystemTime,
        /// When the access ends (the lock's expiry).
        access_end: SystemTime,
        /// For the approval's reason.
        text: String,
    },
    /// Do not approve; the full text for the alert (starts with "Not auto-approved:").
    Decline(String),
}

/// When the requested access ends: its max duration, else its access expiry (the same rule as
/// `auto_approval.max_duration`).
pub fn access_end(request: &AccessRequest) -> Option<SystemTime> {
    request.max_duration.or(request.access_expiry)
}

/// RFC 3339, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The grace in words, or nothing when there is none.
fn with_grace(grace: Duration) -> String {
    if grace.is_zero() {
        String::new()
    } else {
        format!(" plus auto_approval.shift_grace of {}", human(grace))
    }
}

/// Judges an approval by the requester's shift end in `schedule`. `answer` is the shift end
/// found, or why it could not be found (after the lookup's retries). Never called under
/// [`ShiftEndMode::Ignore`], which looks nothing up.
pub fn judge(
    mode: ShiftEndMode,
    grace: Duration,
    user: &str,
    schedule: &str,
    access_end: Option<SystemTime>,
    answer: Result<ShiftEnd, String>,
) -> ShiftVerdict {
    let setting = format!("auto_approval.shift_end: {}", mode.as_str());
    let unknown = |why: String| {
        ShiftVerdict::Decline(format!(
            "Not auto-approved: {user} is on call in \"{schedule}\", but when the shift ends is unknown ({why}), and with {setting} access is only approved when it can be kept within the shift"
        ))
    };
    if mode == ShiftEndMode::Ignore {
        return ShiftVerdict::Approve(String::new());
    }
    let Some(access_end) = access_end else {
        return unknown("the request says nothing about when its access ends".into());
    };
    let end = match answer {
        Err(why) => return unknown(format!("the schedule's timeline could not be read: {why}")),
        // The usual case says nothing more than the approval already does.
        Ok(ShiftEnd::CoversAccess) => return ShiftVerdict::Approve(String::new()),
        Ok(ShiftEnd::Unknowable { reason }) => return unknown(reason),
        Ok(ShiftEnd::NotOnCall) => {
            return unknown("the schedule's timeline does not show them on call now".into())
        }
        Ok(ShiftEnd::ContinuesPastWindow { at }) => {
            return unknown(format!(
                "the timeline was not followed past {}",
                rfc3339(at)
            ))
        }
        Ok(ShiftEnd::EndsAt(end)) => end,
    };
    let until = end.checked_add(grace).unwrap_or(end);
    if access_end <= until {
        return ShiftVerdict::Approve(format!(
            "; the access ends at {}, within the shift (which ends at {}{})",
            rfc3339(access_end),
            rfc3339(end),
            with_grace(grace)
        ));
    }
    match mode {
        ShiftEndMode::Revoke => ShiftVerdict::ApproveAndRevoke {
            at: until,
            access_end,
            text: format!(
                "; the shift ends at {}, before the access (until {}), so the access will be revoked at {} ({setting}{})",
                rfc3339(end),
                rfc3339(access_end),
                rfc3339(until),
                with_grace(grace)
            ),
        },
        _ => ShiftVerdict::Decline(format!(
            "Not auto-approved: {user}'s on-call shift in \"{schedule}\" ends at {}{}, but the access would last until {} ({setting})",
            rfc3339(end),
            with_grace(grace),
            rfc3339(access_end)
        )),
    }
}

/// What a revocation's re-check at its due time concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// Lock now.
    Lock,
    /// The shift was extended (an override): lock at this later time instead.
    MoveTo(SystemTime),
    /// The shift now lasts at least until the access ends: no lock is needed.
    NotNeeded,
}

/// Whether the revocation due at `due` is still wanted at `now`, given the shift end found
/// again at `now` (`Err`: it could not be looked up, and the known end stands). Only a positive
/// answer that the person is still on call postpones the lock: anything unknown locks.
pub fn recheck(now: SystemTime, grace: Duration, answer: Result<ShiftEnd, String>) -> Recheck {
    match answer {
        Ok(ShiftEnd::CoversAccess) => Recheck::NotNeeded,
        Ok(ShiftEnd::EndsAt(end)) => {
            let until = end.checked_add(grace).unwrap_or(end);
            if until > now {
                Recheck::MoveTo(until)
            } else {
                Recheck::Lock
            }
        }
        _ => Recheck::Lock,
    }
}

#[cfg(test)]
#[path = "shift_policy_tests.rs"]
mod tests;
