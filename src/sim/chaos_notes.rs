//! The chaos run's account of a duplicated note: which request and marker, how many copies,
//! and every call to the fake Opsgenie that carried the text, so a duplicate can be traced to
//! the writes (and the faults) that made it.

use serde::Serialize;

use crate::sim::world::World;

/// One note found more than once on an alert.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DuplicateNote {
    /// The access request.
    pub request_id: String,
    /// The alert.
    pub alert_id: String,
    /// The note's last line (the daemon's step marker, `[teleport-opsgenie: review-2]`).
    pub marker: String,
    /// How many times the text is on the alert.
    pub copies: usize,
    /// Every call to the fake whose body carried the text, oldest first.
    pub calls: Vec<NoteCall>,
}

/// One call that carried a duplicated note.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NoteCall {
    /// Milliseconds since the Unix epoch at receipt.
    pub at_ms: u128,
    /// The path called.
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// The fault injected into the call, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The request id the fake answered with.
    pub request_id: String,
}

/// Fills in, for each duplicated note, the calls to the fake that carried its text.
pub(super) fn trace_duplicates(world: &World, details: &mut [DuplicateNote]) {
    if details.is_empty() {
        return;
    }
    if let Some(jsm) = &world.jsm {
        trace_on_jsm(jsm, details);
        return;
    }
    let alerts = world.opsgenie.alerts();
    let calls = world.opsgenie.calls();
    for detail in details.iter_mut() {
        let Some(alert) = alerts.iter().find(|a| a.id == detail.alert_id) else {
            continue;
        };
        let Some(text) = marked(alert.notes.iter().map(|n| n.text.as_str()), &detail.marker) else {
            continue;
        };
        detail.calls = calls
            .iter()
            .filter(|c| carried(detail, &c.path, c.body.as_ref(), text))
            .map(|c| NoteCall {
                at_ms: c
                    .received_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0),
                path: c.path.clone(),
                status: c.status,
                fault: c.fault.clone(),
                request_id: c.request_id.clone(),
            })
            .collect();
    }
}

/// The same account on the fake JSM, whose record keeps no wall-clock time, fault or request
/// id: `at_ms` is then the milliseconds since the earliest call that carried the note.
fn trace_on_jsm(jsm: &crate::sim::jsm::FakeJsm, details: &mut [DuplicateNote]) {
    let alerts = jsm.alerts();
    let calls = jsm.calls();
    for detail in details.iter_mut() {
        let Some(alert) = alerts.iter().find(|a| a.id == detail.alert_id) else {
            continue;
        };
        let Some(text) = marked(alert.notes.iter().map(|n| n.note.as_str()), &detail.marker) else {
            continue;
        };
        let with_text: Vec<_> = calls
            .iter()
            .filter(|c| carried(detail, &c.path, c.body.as_ref(), text))
            .collect();
        let Some(first) = with_text.iter().map(|c| c.received).min() else {
            continue;
        };
        detail.calls = with_text
            .iter()
            .map(|c| NoteCall {
                at_ms: c.received.duration_since(first).as_millis(),
                path: c.path.clone(),
                status: c.status,
                fault: None,
                request_id: String::new(),
            })
            .collect();
    }
}

/// The note among `notes` whose last line is `marker`.
fn marked<'a>(mut notes: impl Iterator<Item = &'a str>, marker: &str) -> Option<&'a str> {
    notes.find(|t| t.lines().last() == Some(marker))
}

/// Whether a call to `path` with `body`, made for the duplicate's request or alert, carried
/// `text` as its note (an add-note or a close, on either fake).
fn carried(
    detail: &DuplicateNote,
    path: &str,
    body: Option<&serde_json::Value>,
    text: &str,
) -> bool {
    (path.contains(&detail.alert_id) || path.contains(&detail.request_id))
        && body.and_then(|b| b.get("note")).and_then(|n| n.as_str()) == Some(text)
}
