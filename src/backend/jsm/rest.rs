//! Decoders for the answers of the JSM Operations REST API (`/jsm/ops/api/{cloudId}/v1`), the
//! Jira platform user API and `_edge/tenant_info`: plain functions from bytes to typed values,
//! no I/O (opsgenie-api.md §9.3, §9.6, §13; shapes checked against Atlassian's published JSM
//! Operations OpenAPI document).
//!
//! Timelines are read by [`crate::backend::timeline::decode_jsm`], shared with Opsgenie's.
//!
//! What sets these answers apart from Opsgenie's:
//! - bare objects, no `{data: …}` envelope;
//! - lists page with `{values, links: {next}}` (alerts add `count`); `next` is a path relative to
//!   the API root, which [`Page::next`] checks before anyone follows it;
//! - users are Atlassian accountIds; an e-mail comes only from the user API, and only when the
//!   user's profile shows it;
//! - errors come in several shapes ([`error_message`]).

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Deepest nesting of on-call participants read (escalation → team → user is three).
pub const MAX_PARTICIPANT_DEPTH: usize = 8;

/// An answer that does not have the shape the API documents. Not retryable: the same bytes
/// would fail again; the base URL or the API version is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not read the JSM answer to {what}: {message}")]
pub struct DecodeError {
    /// Which answer (`request status`, `on-calls`, ...).
    pub what: &'static str,
    /// What was wrong.
    pub message: String,
}

fn json<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError {
        what,
        message: e.to_string(),
    })
}

/// The human-readable message of an error answer, whichever of Atlassian's shapes it has:
/// `{errors: [{title}]}` (REST), `{code, message}` (gateway 401), `{message}` (Opsgenie-derived
/// alert endpoints), `{errorMessages: […]}` (Jira). `None` when it has none of them.
pub fn error_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Any {
        #[serde(default)]
        errors: Option<serde_json::Value>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        error_messages: Vec<String>,
    }
    let any: Any = serde_json::from_slice(body).ok()?;
    let titles: Vec<String> = any
        .errors
        .as_ref()
        .and_then(|e| e.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|e| e.get("title").and_then(|t| t.as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let parts: Vec<String> = titles
        .into_iter()
        .chain(any.message)
        .chain(any.error_messages)
        .filter(|m| !m.trim().is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The outcome of an asynchronous write (`GET /v1/alerts/requests/{id}`, 200).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestStatus {
    /// `Create`, `Close`, `AddNote`, `Acknowledge`.
    #[serde(default)]
    pub action: String,
    /// Whether it did what was asked.
    pub is_success: bool,
    /// The backend's words, e.g. "Created alert", "Alert does not exist".
    #[serde(default)]
    pub status: String,
    /// The alert it acted on (empty on failure).
    #[serde(default)]
    pub alert_id: String,
    /// That alert's alias.
    #[serde(default)]
    pub alias: String,
}

/// Reads a request status: a bare object, unlike Opsgenie's `{data: …}`.
pub fn request_status(body: &[u8]) -> Result<RequestStatus, DecodeError> {
    json("request status", body)
}

/// One page of a list, and where the next one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// The total, where the API gives one (alerts).
    pub count: Option<u64>,
    next: Option<String>,
}

impl<T> Page<T> {
    /// The path and query of the next page, relative to the API root (e.g.
    /// `/v1/alerts?offset=100&size=100`), or `None` on the last page. A link that is not a
    /// plain `/v1/…` path (an absolute URL, another host, `..`) is refused as the end of the
    /// list rather than followed: paging must never take credentials elsewhere.
    pub fn next(&self) -> Option<&str> {
        self.next.as_deref().filter(|next| {
            next.starts_with("/v1/")
                && !next.contains("://")
                && !next.contains("..")
                && !next.contains('\\')
                && !next.chars().any(char::is_control)
        })
    }
}

#[derive(Deserialize)]
struct RawPage<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    next: Option<String>,
}

fn page<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<Page<T>, DecodeError> {
    let raw: RawPage<T> = json(what, body)?;
    Ok(Page {
        items: raw.values,
        count: raw.count,
        next: raw.links.and_then(|l| l.next).filter(|n| !n.is_empty()),
    })
}

/// An alert as the REST API lists it (the fields the daemon needs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertSummary {
    /// The alert id: what every REST alert path takes.
    pub id: String,
    /// The alias.
    #[serde(default)]
    pub alias: String,
    /// `open`, `acked`, `resolved`, `snoozed` or `closed`.
    #[serde(default)]
    pub status: String,
}

impl AlertSummary {
    /// Whether the alert is still open in any sense (everything but `closed` and `resolved`).
    pub fn is_open(&self) -> bool {
        !matches!(self.status.as_str(), "closed" | "resolved")
    }
}

/// One page of `GET /v1/alerts`.
pub fn alert_page(body: &[u8]) -> Result<Page<AlertSummary>, DecodeError> {
    page("alert list", body)
}

/// `GET /v1/alerts/{id}` or `GET /v1/alerts/alias?alias=…`.
pub fn alert(body: &[u8]) -> Result<AlertSummary, DecodeError> {
    json("alert", body)
}

/// A note on an alert.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertNote {
    /// The note's id.
    #[serde(default)]
    pub id: String,
    /// The text.
    pub note: String,
    /// Who added it.
    #[serde(default)]
    pub owner: String,
}

/// One page of `GET /v1/alerts/{id}/notes`.
pub fn note_page(body: &[u8]) -> Result<Page<AlertNote>, DecodeError> {
    page("alert notes", body)
}

/// A schedule as a search lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRef {
    /// Its id: what on-call and timeline paths take.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it is enabled.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// One page of `GET /v1/schedules?query=…`.
pub fn schedule_page(body: &[u8]) -> Result<Page<ScheduleRef>, DecodeError> {
    page("schedule search", body)
}

/// The id of the schedule named `name` on a search page: the one whose name equals it ignoring
/// case, as the search matches. A prefix search (`name*`) can list others; they are not it.
pub fn schedule_id<'a>(page: &'a Page<ScheduleRef>, name: &str) -> Option<&'a str> {
    let wanted = name.trim().to_lowercase();
    page.items
        .iter()
        .find(|s| s.name.trim().to_lowercase() == wanted)
        .map(|s| s.id.as_str())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Participant {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    on_call_participants: Vec<Participant>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnCalls {
    #[serde(default)]
    on_call_users: Option<Vec<String>>,
    #[serde(default)]
    on_call_participants: Option<Vec<Participant>>,
}

fn collect_users(
    list: &[Participant],
    depth: usize,
    out: &mut Vec<String>,
) -> Result<(), DecodeError> {
    if depth > MAX_PARTICIPANT_DEPTH {
        return Err(DecodeError {
            what: "on-calls",
            message: format!("participants nested deeper than {MAX_PARTICIPANT_DEPTH}"),
        });
    }
    for p in list {
        if p.kind == "user" && !p.id.is_empty() && !out.contains(&p.id) {
            out.push(p.id.clone());
        }
        collect_users(&p.on_call_participants, depth + 1, out)?;
    }
    Ok(())
}

/// The accountIds on call, from `GET /v1/schedules/{id}/on-calls`: `flat=true` answers
/// `{onCallUsers}`; without it, the participant tree is walked for its users (teams and
/// escalations are not people). An answer with neither key is not an on-call answer: an
/// error, never "nobody".
pub fn on_call_users(body: &[u8]) -> Result<Vec<String>, DecodeError> {
    let answer: OnCalls = json("on-calls", body)?;
    match (answer.on_call_users, answer.on_call_participants) {
        (Some(users), _) => {
            let mut out = Vec::with_capacity(users.len());
            for u in users {
                if !u.is_empty() && !out.contains(&u) {
                    out.push(u);
                }
            }
            Ok(out)
        }
        (None, Some(participants)) => {
            let mut out = Vec::new();
            collect_users(&participants, 0, &mut out)?;
            Ok(out)
        }
        (None, None) => Err(DecodeError {
            what: "on-calls",
            message: "neither onCallUsers nor onCallParticipants".into(),
        }),
    }
}

/// A Jira user (`GET /rest/api/3/user?accountId=…`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JiraUser {
    /// The accountId.
    pub account_id: String,
    /// The display name.
    #[serde(default)]
    pub display_name: String,
    /// The e-mail: `None` when the user's profile hides it, which is normal, not an error.
    #[serde(default)]
    pub email_address: Option<String>,
    /// Whether the account is active.
    #[serde(default = "yes")]
    pub active: bool,
}

/// Reads one user.
pub fn jira_user(body: &[u8]) -> Result<JiraUser, DecodeError> {
    let mut user: JiraUser = json("user", body)?;
    user.email_address = user.email_address.filter(|e| !e.trim().is_empty());
    Ok(user)
}

/// One page of `GET /rest/api/3/user/bulk` (Jira's own paging: `startAt`, `isLast`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    /// The users on this page.
    pub users: Vec<JiraUser>,
    /// Where the next page starts, or `None` on the last one.
    pub next_start: Option<u64>,
}

/// Reads a bulk user page.
pub fn jira_user_page(body: &[u8]) -> Result<UserPage, DecodeError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        #[serde(default)]
        values: Vec<JiraUser>,
        #[serde(default)]
        start_at: u64,
        #[serde(default)]
        is_last: Option<bool>,
        #[serde(default)]
        total: Option<u64>,
    }
    let raw: Raw = json("user list", body)?;
    let after = raw.start_at.saturating_add(raw.values.len() as u64);
    // `isLast` decides; without it, the total does; without both, an empty page ends the list.
    let more = match (raw.is_last, raw.total) {
        (Some(last), _) => !last,
        (None, Some(total)) => after < total,
        (None, None) => !raw.values.is_empty(),
    };
    let users = raw
        .values
        .into_iter()
        .map(|mut u| {
            u.email_address = u.email_address.filter(|e| !e.trim().is_empty());
            u
        })
        .collect();
    Ok(UserPage {
        users,
        next_start: (more && after > raw.start_at).then_some(after),
    })
}

/// The cloudId from `GET https://<site>.atlassian.net/_edge/tenant_info`.
pub fn tenant_cloud_id(body: &[u8]) -> Result<String, DecodeError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        cloud_id: String,
    }
    let raw: Raw = json("tenant info", body)?;
    let id = raw.cloud_id.trim();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(DecodeError {
            what: "tenant info",
            message: "cloudId is empty or not an id".into(),
        });
    }
    Ok(id.to_owned())
}

#[cfg(test)]
#[path = "rest_tests.rs"]
mod tests;
