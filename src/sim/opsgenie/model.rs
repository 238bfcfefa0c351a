//! What the fake holds and shows: alerts, notes and the call log, and their wire forms
//! (`BaseAlert`, `Alert` and `AlertNote` of the official definitions).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::time::Instant;

use super::directory::ResolvedResponder;
use super::validate::Responder;

/// Whether an alert is open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    /// Open (the initial state).
    Open,
    /// Closed; a create with the same alias now makes a new alert.
    Closed,
}

impl AlertStatus {
    /// The wire form, `open` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Closed => "closed",
        }
    }
}

/// A note on an alert (added by `/notes`, or as the `note` of a create, close or acknowledge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The note text.
    pub text: String,
    /// `user` of the call, if any.
    pub user: Option<String>,
    /// `source` of the call, if any.
    pub source: Option<String>,
    /// When the note was applied.
    pub added_at: SystemTime,
}

/// One alert as the fake holds it.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Full id, `<uuid>-<epoch ms>` like the real service.
    pub id: String,
    /// Short decimal id (`identifierType=tiny`).
    pub tiny_id: String,
    /// Client alias, or the id when the client sent none.
    pub alias: String,
    /// Message (title).
    pub message: String,
    /// Description, if any.
    pub description: Option<String>,
    /// Responders as the create sent them (by id, name or username).
    pub responders: Vec<Responder>,
    /// The responders Opsgenie resolved them to, in order; those naming nothing known are
    /// left out. Alert answers list these, by `{type, id}`.
    pub routed_to: Vec<ResolvedResponder>,
    /// `visibleTo` as sent.
    pub visible_to: Vec<Responder>,
    /// Custom actions.
    pub actions: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Extra properties.
    pub details: BTreeMap<String, String>,
    /// `P1`..`P5` (default `P3`).
    pub priority: String,
    /// Entity, if any.
    pub entity: Option<String>,
    /// Source (default: the caller's IP address).
    pub source: String,
    /// `user` of the create (shown as the owner).
    pub user: Option<String>,
    /// Open or closed.
    pub status: AlertStatus,
    /// Set by `/acknowledge`.
    pub acknowledged: bool,
    /// 1, plus one per de-duplicated create with the same alias while open.
    pub count: u64,
    /// Notes in the order they were applied.
    pub notes: Vec<Note>,
    /// When the create was processed.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
    /// Last (de-duplicated) create.
    pub last_occurred_at: SystemTime,
    /// When it was acknowledged, if it was.
    pub acknowledged_at: Option<SystemTime>,
    /// `user` of the acknowledge call, if any.
    pub acknowledged_by: Option<String>,
    /// When it was closed, if it is.
    pub closed_at: Option<SystemTime>,
    /// `user` of the close call, if any.
    pub closed_by: Option<String>,
}

/// One HTTP call the fake received.
///
/// The API key is deliberately not recorded (it is a secret); `auth_ok` says whether it was
/// accepted.
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Raw path as received, e.g. `/jsm/ops/integration/v2/alerts`.
    pub path: String,
    /// Path without the JSM prefix, e.g. `/v2/alerts`.
    pub api_path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Whether the key was valid (false also for a missing or malformed key).
    pub auth_ok: bool,
    /// Parsed JSON body, if the body was non-empty JSON.
    pub body: Option<Value>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body as received (lossy UTF-8; empty when there was none or it was too large).
    pub raw_body: String,
    /// Status the fake answered.
    pub status: u16,
    /// The body the fake answered, exactly as sent.
    pub response_body: String,
    /// The fault injected into this call, if any (e.g. `garbled answer (html), applied`,
    /// `fails after acceptance: …`, `503 instead of the call`).
    pub fault: Option<String>,
    /// Wall-clock time of receipt.
    pub received_at: SystemTime,
    /// Tokio time of receipt (follows a paused test clock).
    pub received_instant: Instant,
    /// The `X-Request-ID` / `requestId` the fake answered with.
    pub request_id: String,
}

pub(crate) fn epoch_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn responders_json(rs: &[ResolvedResponder]) -> Value {
    rs.iter()
        .map(|r| json!({"type": r.kind, "id": r.id}))
        .collect()
}

impl Alert {
    /// `AlertReport`: times in milliseconds since creation, and who acted.
    fn report(&self) -> Value {
        let since = |t: SystemTime| epoch_ms(t).saturating_sub(epoch_ms(self.created_at));
        let mut o = serde_json::Map::new();
        if let Some(t) = self.acknowledged_at {
            o.insert("ackTime".into(), json!(since(t)));
            o.insert(
                "acknowledgedBy".into(),
                json!(self.acknowledged_by.clone().unwrap_or_default()),
            );
        }
        if let Some(t) = self.closed_at {
            o.insert("closeTime".into(), json!(since(t)));
            o.insert(
                "closedBy".into(),
                json!(self.closed_by.clone().unwrap_or_default()),
            );
        }
        Value::Object(o)
    }

    /// The wire form: `BaseAlert` for lists, the full `Alert` for get.
    pub(crate) fn to_json(&self, full: bool, integration_id: &str) -> Value {
        let mut v = json!({
            "id": self.id,
            "tinyId": self.tiny_id,
            "alias": self.alias,
            "message": self.message,
            "status": self.status.as_str(),
            "acknowledged": self.acknowledged,
            "isSeen": false,
            "tags": self.tags,
            "snoozed": false,
            "count": self.count,
            "lastOccurredAt": rfc3339(self.last_occurred_at),
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
            "source": self.source,
            "owner": self.user.clone().unwrap_or_default(),
            "priority": self.priority,
            "responders": responders_json(&self.routed_to),
            "integration": {"id": integration_id, "name": "Fake API integration", "type": "API"},
            "report": self.report(),
        });
        if full {
            if let Some(o) = v.as_object_mut() {
                o.insert("actions".into(), json!(self.actions));
                o.insert(
                    "entity".into(),
                    json!(self.entity.clone().unwrap_or_default()),
                );
                o.insert(
                    "description".into(),
                    json!(self.description.clone().unwrap_or_default()),
                );
                o.insert("details".into(), json!(self.details));
            }
        }
        v
    }
}
