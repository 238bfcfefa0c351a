//! The routes the fake knows, parsed from the method and the path.

use axum::http::Method;

use super::limits::Domain;
use super::write_faults::Write;

/// The routes the fake knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    CreateAlert,
    ListAlerts,
    CountAlerts,
    RequestStatus(String),
    GetAlert(String),
    AddNote(String),
    ListNotes(String),
    Close(String),
    Acknowledge(String),
    OnCalls(String),
    Timeline(String),
    Heartbeat,
    GetHeartbeat(String),
    MethodNotAllowed,
    NotFound,
}

impl Route {
    pub(super) fn domain(&self) -> Domain {
        match self {
            Route::CreateAlert
            | Route::RequestStatus(_)
            | Route::GetAlert(_)
            | Route::AddNote(_)
            | Route::ListNotes(_)
            | Route::Close(_)
            | Route::Acknowledge(_) => Domain::Alert,
            Route::ListAlerts | Route::CountAlerts => Domain::Search,
            Route::OnCalls(_) => Domain::ScheduleOnCalls,
            // A schedule API, so the configuration domain (opsgenie-api.md §13).
            Route::Timeline(_) => Domain::Configuration,
            Route::Heartbeat | Route::GetHeartbeat(_) => Domain::Heartbeat,
            Route::MethodNotAllowed | Route::NotFound => Domain::None,
        }
    }

    /// Which alert write this is, if it is one.
    pub(super) fn write(&self) -> Option<Write> {
        match self {
            Route::CreateAlert => Some(Write::Create),
            Route::AddNote(_) => Some(Write::AddNote),
            Route::Close(_) => Some(Write::Close),
            Route::Acknowledge(_) => Some(Write::Acknowledge),
            _ => None,
        }
    }

    /// Whether the route reads a JSON body (so another content type gets 415).
    pub(super) fn takes_body(&self) -> bool {
        self.is_alert_write()
    }

    pub(super) fn is_alert_write(&self) -> bool {
        self.write().is_some()
    }
}

/// Decodes `%XX` escapes of one path segment (`+` stays `+` in paths).
pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn route(method: &Method, api_path: &str) -> Route {
    let segs: Vec<String> = api_path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (get, post) = (method == Method::GET, method == Method::POST);
    let pick = |ok: bool, r: Route| if ok { r } else { Route::MethodNotAllowed };
    match segs.as_slice() {
        ["v2", "alerts"] if post => Route::CreateAlert,
        ["v2", "alerts"] => pick(get, Route::ListAlerts),
        ["v2", "alerts", "count"] => pick(get, Route::CountAlerts),
        ["v2", "alerts", "requests", id] => pick(get, Route::RequestStatus((*id).to_owned())),
        ["v2", "alerts", id] => pick(get, Route::GetAlert((*id).to_owned())),
        ["v2", "alerts", id, "notes"] if get => Route::ListNotes((*id).to_owned()),
        ["v2", "alerts", id, "notes"] => pick(post, Route::AddNote((*id).to_owned())),
        ["v2", "alerts", id, "close"] => pick(post, Route::Close((*id).to_owned())),
        ["v2", "alerts", id, "acknowledge"] => pick(post, Route::Acknowledge((*id).to_owned())),
        ["v2", "schedules", id, "on-calls"] => pick(get, Route::OnCalls((*id).to_owned())),
        ["v2", "schedules", id, "timeline"] => pick(get, Route::Timeline((*id).to_owned())),
        ["v2", "heartbeats", _, "ping"] => pick(
            matches!(
                *method,
                Method::GET | Method::POST | Method::PUT | Method::PATCH
            ),
            Route::Heartbeat,
        ),
        ["v2", "heartbeats", name] => pick(get, Route::GetHeartbeat((*name).to_owned())),
        _ => Route::NotFound,
    }
}
