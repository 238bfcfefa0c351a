//! Unknown outcomes: finding out whether a write already took effect before doing it again.
//!
//! A write whose answer was lost or unreadable, or that was not confirmed before its step ended,
//! is recorded as [`Unconfirmed`] when the step releases its claim (and a claim left behind by a
//! replica that died means the same). The next attempt of the step asks the backend first:
//!
//! - **create**: read the alert by alias. Found: record its id; the create happened. Not found:
//!   create (again); a create still queued is de-duplicated by the alias anyway.
//! - **note** (review notes and the decision's note): every note ends with a stable marker naming
//!   its step ([`with_marker`]). With the write's request id, its request status says what
//!   happened; without one, the alert's notes are read, looking for the marker. A note not found
//!   is posted again only once [`NOTE_SETTLE`] has passed since the unconfirmed attempt, so that
//!   one accepted but not yet processed is not doubled.
//! - **close**: with the write's request id, its request status says what happened; without
//!   one, the alert is read. Closed (or gone): record it. Open: closed again, but only once
//!   [`NOTE_SETTLE`] has passed since the unconfirmed attempt. A close carries the resolution's
//!   note, and a close still queued would otherwise be followed by a second one; whether the
//!   backend adds the note of a close that finds the alert already closed is not documented (on
//!   JSM it is assumed to, the pessimistic reading), so a repeat is never sent early.

use std::time::Duration;

use crate::actors::gateway::GatewayError;
use crate::backend::{AlertRef, Operation, Outcome};
use crate::core::plugin_data::{millis, Unconfirmed};
use crate::core::render;
use crate::pipeline::port::{EffectError, Effects};

/// How long after an unconfirmed note was sent a note not found among the alert's notes is taken
/// for not posted. Opsgenie applies accepted writes within about a second; this leaves a wide
/// margin, and only applies to writes whose answer was lost (a write with a request id is
/// followed through its request status instead).
pub const NOTE_SETTLE: Duration = Duration::from_secs(10);

/// Pages of an alert's notes read at most when looking for a marker (100 notes a page).
pub const MAX_NOTE_PAGES: usize = 20;

/// The marker that ends the note of step `key`.
pub fn marker(key: &str) -> String {
    format!("[teleport-opsgenie: {key}]")
}

/// `note` with its step's marker on a line of its own at the end, within the backend's limit.
pub fn with_marker(note: &str, key: &str) -> String {
    let marker = marker(key);
    let room = render::limits::NOTE.saturating_sub(marker.chars().count() + 2);
    format!("{}\n\n{marker}", render::truncate(note, room))
}

/// What the backend says about an unconfirmed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// It took effect (for a create: the alert, by id); record it.
    Done(Option<String>),
    /// It did not: do it (again).
    NotDone,
    /// The alert it was for does not exist any more (deleted in the backend).
    AlertGone,
}

/// Whether the alert with `alias` exists: its id if so.
pub async fn created<E: Effects>(fx: &E, alias: &str) -> Result<Found, EffectError> {
    match fx
        .call(Operation::GetAlert {
            alert: AlertRef::Alias(alias.to_owned()),
        })
        .await?
    {
        Outcome::Alert { id, .. } => Ok(Found::Done(Some(id))),
        Outcome::NoSuchAlert => Ok(Found::NotDone),
        other => Err(unexpected("get_alert", &other)),
    }
}

/// Whether the close of step `key` took effect, given what is known of its last attempt.
/// [`EffectError::NotConfirmedYet`] when it cannot be told yet (still queued, or too recent to
/// be sure it is not).
pub async fn closed<E: Effects>(
    fx: &E,
    alert: AlertRef,
    key: &str,
    attempt: &Unconfirmed,
) -> Result<Found, EffectError> {
    match by_request_status(fx, key, attempt).await? {
        // A close that failed when processed changed nothing, but the alert may be closed all
        // the same ("already closed"): its state says whether the close is still to do.
        Some(Found::NotDone) | None => {}
        Some(found) => return Ok(found),
    }
    match fx.call(Operation::GetAlert { alert }).await? {
        Outcome::Alert { open: false, .. } => Ok(Found::Done(None)),
        Outcome::Alert { open: true, .. } => settled(fx, key, attempt),
        Outcome::NoSuchAlert => Ok(Found::AlertGone),
        other => Err(unexpected("get_alert", &other)),
    }
}

/// What the request status of an accepted write says; `None` when there is none to read (the
/// write was never accepted, or the backend no longer knows it), so the backend's state is read
/// instead.
async fn by_request_status<E: Effects>(
    fx: &E,
    key: &str,
    attempt: &Unconfirmed,
) -> Result<Option<Found>, EffectError> {
    if attempt.request_id.is_empty() {
        return Ok(None);
    }
    match fx.await_request(&attempt.request_id).await {
        Ok(p) if p.success => Ok(Some(Found::Done(None))),
        Ok(p) if p.alert_missing() => Ok(Some(Found::AlertGone)),
        Ok(_) => Ok(Some(Found::NotDone)),
        Err(EffectError::Backend(GatewayError::Timeout { .. })) => {
            Err(EffectError::NotConfirmedYet { step: key.into() })
        }
        // The status is gone (expired, or never known): read the backend's state instead.
        Err(EffectError::Backend(GatewayError::UnknownRequest { .. })) => Ok(None),
        Err(err) => Err(err),
    }
}

/// A write not seen in the backend's state is taken for not done only once [`NOTE_SETTLE`] has
/// passed since the last moment it can have been sent.
fn settled<E: Effects>(fx: &E, key: &str, attempt: &Unconfirmed) -> Result<Found, EffectError> {
    let since = millis(fx.now()).saturating_sub(attempt.at_ms);
    if since < NOTE_SETTLE.as_millis() as u64 {
        return Err(EffectError::NotConfirmedYet { step: key.into() });
    }
    Ok(Found::NotDone)
}

/// Whether the note of step `key` is on the alert, given what is known of its last attempt.
/// [`EffectError::NotConfirmedYet`] when it cannot be told yet (still queued, or too recent to
/// be sure it is not).
pub async fn noted<E: Effects>(
    fx: &E,
    alert_id: &str,
    key: &str,
    attempt: &Unconfirmed,
) -> Result<Found, EffectError> {
    if let Some(found) = by_request_status(fx, key, attempt).await? {
        return Ok(found);
    }
    let marker = marker(key);
    let mut offset = None;
    for _ in 0..MAX_NOTE_PAGES {
        let op = Operation::ListNotes {
            alert_id: alert_id.to_owned(),
            offset: offset.take(),
        };
        match fx.call(op).await? {
            Outcome::Notes { texts, next } => {
                if texts.iter().any(|t| t.ends_with(&marker)) {
                    return Ok(Found::Done(None));
                }
                match next {
                    Some(next) => offset = Some(next),
                    None => break,
                }
            }
            Outcome::NoSuchAlert => return Ok(Found::AlertGone),
            other => return Err(unexpected("list_notes", &other)),
        }
    }
    settled(fx, key, attempt)
}

pub(crate) fn unexpected(endpoint: &'static str, outcome: &Outcome) -> EffectError {
    EffectError::Unexpected {
        endpoint,
        outcome: format!("{outcome:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_survives_truncation() {
        let long = "x".repeat(30_000);
        let note = with_marker(&long, "review-3");
        assert!(note.chars().count() <= render::limits::NOTE);
        assert!(
            note.ends_with("\n\n[teleport-opsgenie: review-3]"),
            "{}",
            &note[note.len() - 40..]
        );
        assert_eq!(
            with_marker("Alice approved.", "decision"),
            "Alice approved.\n\n[teleport-opsgenie: decision]"
        );
    }
}
