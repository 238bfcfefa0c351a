//! When does the requester's shift end? A pure function of a schedule's final timeline (one
//! window of it, as the backend answered), the person, "now" and the requested access end
//! (opsgenie-api.md §13), plus the deterministic name of the lock that ends an access request
//! at shift end (teleport-wire.md §9).
//!
//! Groundwork for issue 12: nothing calls this yet. The caller (the on-call actor, later) fetches
//! the timeline window containing "now", asks [`shift_end`], and on
//! [`ShiftEnd::ContinuesPastWindow`] fetches the window starting at that instant and asks again
//! with `now` set to it, until an end is known or the access end is covered.

use std::time::SystemTime;

/// Who a timeline period names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientKind {
    /// A person: the only kind whose shift end the timeline tells.
    User,
    /// A team: its members are not in the timeline, so a member's shift end is unknowable.
    Team,
    /// An escalation: same as a team.
    Escalation,
    /// Anything else the backend says (`none`/`noone` for an empty slot, or a kind added later):
    /// nobody we can match.
    Other(String),
}

/// One final-timeline period: `[start, end)` during which `identity` is on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Inclusive start.
    pub start: SystemTime,
    /// Exclusive end.
    pub end: SystemTime,
    /// What kind of recipient the period names.
    pub kind: RecipientKind,
    /// The recipient as the backend names people: the username (e-mail) on Opsgenie, the
    /// Atlassian accountId on JSM; a team's or escalation's name (or id) otherwise.
    pub identity: String,
    /// The rotation the period belongs to, for messages.
    pub rotation: String,
}

/// One window of a schedule's final timeline (overrides and forwarding applied), all rotations'
/// periods together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The window's start (the answer's `startDate`).
    pub window_start: SystemTime,
    /// The window's end (the answer's `endDate`): periods are cut here, so a period ending here
    /// may go on in the next window.
    pub window_end: SystemTime,
    /// Every period of every rotation, in any order.
    pub periods: Vec<Period>,
}

/// The answer of [`shift_end`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShiftEnd {
    /// The person's shift ends at this instant, before the access would end.
    EndsAt(SystemTime),
    /// The shift lasts at least until the access ends: nothing needs to be done at shift end.
    CoversAccess,
    /// The shift runs to the end of this window, which is before the access end: fetch the
    /// window starting at `at` and ask again with `now = at`.
    ContinuesPastWindow {
        /// The window's end, which is where the next window must start.
        at: SystemTime,
    },
    /// The person is on call at "now" only through a team or an escalation, whose members the
    /// timeline does not list, so no end can be known.
    Unknowable {
        /// Which recipients cover "now", for the alert and the log.
        reason: String,
    },
    /// The timeline names nobody matching the person at "now" (not as a user, and no team or
    /// escalation either).
    NotOnCall,
}

/// The timeline cannot answer the question. Never retryable with the same answer: the caller
/// must fetch the right window (or report the backend's answer as unusable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShiftError {
    /// "now" is not inside the window the backend answered; guessing would be wrong.
    #[error("the timeline window {start} to {end} does not contain now ({now}): fetch the window with `date` set to now")]
    NowOutsideWindow {
        /// The window's start (RFC 3339).
        start: String,
        /// The window's end (RFC 3339).
        end: String,
        /// "now" (RFC 3339).
        now: String,
    },
    /// The window ends at or before it starts.
    #[error("the timeline window is empty or reversed ({start} to {end}): the backend's answer is unusable")]
    EmptyWindow {
        /// The window's start (RFC 3339).
        start: String,
        /// The window's end (RFC 3339).
        end: String,
    },
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Whether a period's recipient is the person. Backends compare usernames case-insensitively
/// (the on-call match does the same, `core::policy`); accountIds are opaque but never differ
/// only in case, so one rule fits both.
fn names(period: &Period, person: &str) -> bool {
    period.kind == RecipientKind::User && period.identity.trim().eq_ignore_ascii_case(person.trim())
}

/// The end of `person`'s current on-call period in `timeline`.
///
/// Periods of the same person that touch or overlap count as one shift, across rotations (a
/// handover to oneself, or a primary and an override). The search never goes past
/// `access_end`: a shift lasting that long is [`ShiftEnd::CoversAccess`], however much longer it
/// is, so a permanent one-person rotation costs one window, not endless lookups.
///
/// A user period naming the person wins over a team or escalation covering "now" (the user
/// period's end is known; the team's is not).
pub fn shift_end(
    timeline: &Timeline,
    person: &str,
    now: SystemTime,
    access_end: SystemTime,
) -> Result<ShiftEnd, ShiftError> {
    if timeline.window_end <= timeline.window_start {
        return Err(ShiftError::EmptyWindow {
            start: rfc3339(timeline.window_start),
            end: rfc3339(timeline.window_end),
        });
    }
    if now < timeline.window_start || now >= timeline.window_end {
        return Err(ShiftError::NowOutsideWindow {
            start: rfc3339(timeline.window_start),
            end: rfc3339(timeline.window_end),
            now: rfc3339(now),
        });
    }
    let covers = |p: &Period| p.start <= now && now < p.end;
    let mut mine: Vec<&Period> = timeline
        .periods
        .iter()
        .filter(|p| p.start < p.end && names(p, person))
        .collect();
    let Some(current) = mine.iter().filter(|p| covers(p)).map(|p| p.end).max() else {
        return Ok(not_on_call_as_user(timeline, now));
    };
    mine.sort_by_key(|p| p.start);
    // Grow the shift through every period that starts no later than its current end; sorted by
    // start, one pass suffices.
    let mut end = current;
    for p in mine {
        if p.start <= end && p.end > end {
            end = p.end;
        }
    }
    // Periods are cut at the window's end: one ending there may go on.
    let end = end.min(timeline.window_end);
    Ok(if end >= access_end {
        ShiftEnd::CoversAccess
    } else if end >= timeline.window_end {
        ShiftEnd::ContinuesPastWindow { at: end }
    } else {
        ShiftEnd::EndsAt(end)
    })
}

/// The person has no user period at "now": a team or escalation covering "now" makes the end
/// unknowable, otherwise they are not on call.
fn not_on_call_as_user(timeline: &Timeline, now: SystemTime) -> ShiftEnd {
    let groups: Vec<String> = timeline
        .periods
        .iter()
        .filter(|p| p.start <= now && now < p.end)
        .filter_map(|p| {
            let kind = match p.kind {
                RecipientKind::Team => "team",
                RecipientKind::Escalation => "escalation",
                _ => return None,
            };
            Some(format!(
                "{kind} {:?} (rotation {:?}, until {})",
                p.identity,
                p.rotation,
                rfc3339(p.end)
            ))
        })
        .collect();
    if groups.is_empty() {
        ShiftEnd::NotOnCall
    } else {
        ShiftEnd::Unknowable {
            reason: format!(
                "on call only through {}, whose members the schedule's timeline does not list",
                groups.join(", ")
            ),
        }
    }
}

/// Prefix of every lock this daemon creates, so an operator can find (or delete) them.
pub const LOCK_NAME_PREFIX: &str = "opsgenie-shift-end-";

/// The name of the lock that ends `request_id`'s access at shift end. Deterministic, so that
/// every replica, and every retry after a lost answer, upserts the same lock (teleport-wire.md
/// §9). Characters outside `[A-Za-z0-9-]` (never in a Teleport request id, a UUID) become `-`,
/// so a hostile id cannot shape the name.
pub fn lock_name(request_id: &str) -> String {
    let safe: String = request_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{LOCK_NAME_PREFIX}{safe}")
}

#[cfg(test)]
#[path = "shift_tests.rs"]
mod tests;
