//! The fake account's state: alerts, asynchronous requests, schedules and the call log.
//!
//! Everything lives behind one mutex in [`super::FakeOpsgenie`]; every lookup the hot path needs
//! (alert by id, tiny id or alias; request by id; schedule by id or name) is a hash-map hit so
//! the load test's thousands of calls stay cheap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

use super::validate::{ActionPayload, CreatePayload, Responder};

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
    /// Responders as sent.
    pub responders: Vec<Responder>,
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
    /// Status the fake answered.
    pub status: u16,
    /// Wall-clock time of receipt.
    pub received_at: SystemTime,
    /// Tokio time of receipt (follows a paused test clock).
    pub received_instant: Instant,
    /// The `X-Request-ID` / `requestId` the fake answered with.
    pub request_id: String,
}

/// `identifierType` of the alert endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdKind {
    Id,
    Alias,
    Tiny,
}

impl IdKind {
    pub(crate) fn parse(s: Option<&str>) -> Option<IdKind> {
        match s {
            None | Some("id") => Some(IdKind::Id),
            Some("alias") => Some(IdKind::Alias),
            Some("tiny") => Some(IdKind::Tiny),
            Some(_) => None,
        }
    }
}

/// What a queued request will do when processed.
#[derive(Debug)]
pub(crate) enum Action {
    Create(Box<CreatePayload>),
    AddNote(ActionPayload),
    Close(ActionPayload),
    Acknowledge(ActionPayload),
}

/// An accepted (202) request waiting for its processing time.
#[derive(Debug)]
pub(crate) struct Pending {
    pub request_id: String,
    pub ready_at: Instant,
    /// Target alert for actions other than create.
    pub target: Option<(String, IdKind)>,
    pub action: Action,
}

/// The result the request-status endpoint reports once a request is processed.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub action: &'static str,
    pub success: bool,
    pub status: String,
    pub alert_id: String,
    pub alias: String,
    pub processed_at: SystemTime,
}

/// An on-call schedule.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub id: String,
    pub name: String,
    pub on_call: Vec<String>,
}

/// The whole mutable state of the fake account.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub alerts: Vec<Alert>,
    by_id: HashMap<String, usize>,
    by_tiny: HashMap<String, usize>,
    /// The open alert carrying an alias (the de-duplication key).
    open_by_alias: HashMap<String, usize>,
    /// The newest alert carrying an alias, open or closed.
    latest_by_alias: HashMap<String, usize>,
    /// Request id → outcome (`None` while queued).
    pub requests: HashMap<String, Option<Outcome>>,
    /// FIFO of accepted requests; processed in order of receipt, like a queue.
    pub pending: VecDeque<Pending>,
    pub schedules: Vec<Schedule>,
    sched_by_id: HashMap<String, usize>,
    sched_by_name: HashMap<String, usize>,
    /// Stable user ids for the nested on-call answer.
    user_ids: HashMap<String, String>,
    pub calls: Vec<Call>,
    next_tiny: u64,
}

pub(crate) fn epoch_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl State {
    /// Finds an alert; an alias prefers the open alert, else the newest one with that alias.
    pub(crate) fn resolve(&self, ident: &str, kind: IdKind) -> Option<usize> {
        match kind {
            IdKind::Id => self.by_id.get(ident).copied(),
            IdKind::Tiny => self.by_tiny.get(ident).copied(),
            IdKind::Alias => self
                .open_by_alias
                .get(ident)
                .or_else(|| self.latest_by_alias.get(ident))
                .copied(),
        }
    }

    pub(crate) fn newest_by_alias(&self, alias: &str) -> Option<&Alert> {
        self.latest_by_alias.get(alias).map(|&i| &self.alerts[i])
    }

    /// Applies every queued request whose time has come. Returns true if anything changed.
    pub(crate) fn process_due(&mut self, now: Instant) -> bool {
        let mut changed = false;
        while self.pending.front().is_some_and(|p| p.ready_at <= now) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let outcome = self.apply(p.target, p.action);
            self.requests.insert(p.request_id, Some(outcome));
            changed = true;
        }
        changed
    }

    fn apply(&mut self, target: Option<(String, IdKind)>, action: Action) -> Outcome {
        let now = SystemTime::now();
        let outcome = |action, success, status: &str, alert: Option<&Alert>| Outcome {
            action,
            success,
            status: status.to_owned(),
            alert_id: alert.map(|a| a.id.clone()).unwrap_or_default(),
            alias: alert.map(|a| a.alias.clone()).unwrap_or_default(),
            processed_at: now,
        };
        let (name, p) = match action {
            Action::Create(c) => return self.create(*c, now),
            Action::AddNote(p) => ("AddNote", p),
            Action::Close(p) => ("Close", p),
            Action::Acknowledge(p) => ("Acknowledge", p),
        };
        let idx = target.and_then(|(ident, kind)| self.resolve(&ident, kind));
        let Some(idx) = idx else {
            return outcome(name, false, "Alert does not exist", None);
        };
        let alert = &mut self.alerts[idx];
        let status = match name {
            "Close" if alert.status == AlertStatus::Closed => {
                // Idempotent: nothing changes, but the caller's goal (closed) holds.
                return outcome(name, true, "Alert is already closed", Some(alert));
            }
            "Close" => {
                alert.status = AlertStatus::Closed;
                alert.closed_at = Some(now);
                alert.closed_by = p.user.clone();
                if self.open_by_alias.get(&alert.alias) == Some(&idx) {
                    self.open_by_alias.remove(&alert.alias);
                }
                "Closed alert"
            }
            "Acknowledge" => {
                alert.acknowledged = true;
                "Acknowledged alert"
            }
            _ => "Added note",
        };
        if let Some(text) = p.note {
            alert.notes.push(Note {
                text,
                user: p.user,
                source: p.source,
                added_at: now,
            });
        }
        alert.updated_at = now;
        outcome(name, true, status, Some(alert))
    }

    /// Applies a create at once; the alert id.
    pub(crate) fn insert_created(&mut self, c: CreatePayload) -> String {
        self.create(c, SystemTime::now()).alert_id
    }

    fn create(&mut self, c: CreatePayload, now: SystemTime) -> Outcome {
        if let Some(&idx) = c.alias.as_ref().and_then(|a| self.open_by_alias.get(a)) {
            let alert = &mut self.alerts[idx];
            alert.count += 1;
            alert.last_occurred_at = now;
            alert.updated_at = now;
            return Outcome {
                action: "Create",
                success: true,
                status: "Alert with the same alias is open, count increased".into(),
                alert_id: alert.id.clone(),
                alias: alert.alias.clone(),
                processed_at: now,
            };
        }
        self.next_tiny += 1;
        let id = format!("{}-{}", Uuid::new_v4(), epoch_ms(now));
        let alias = c.alias.unwrap_or_else(|| id.clone());
        let notes = c
            .note
            .map(|text| Note {
                text,
                user: c.user.clone(),
                source: c.source.clone(),
                added_at: now,
            })
            .into_iter()
            .collect();
        let alert = Alert {
            id: id.clone(),
            tiny_id: self.next_tiny.to_string(),
            alias: alias.clone(),
            message: c.message,
            description: c.description,
            responders: c.responders,
            visible_to: c.visible_to,
            actions: c.actions,
            tags: c.tags,
            details: c.details,
            priority: c.priority,
            entity: c.entity,
            source: c.source.unwrap_or_default(),
            user: c.user,
            status: AlertStatus::Open,
            acknowledged: false,
            count: 1,
            notes,
            created_at: now,
            updated_at: now,
            last_occurred_at: now,
            closed_at: None,
            closed_by: None,
        };
        let idx = self.alerts.len();
        self.by_id.insert(id.clone(), idx);
        self.by_tiny.insert(alert.tiny_id.clone(), idx);
        self.open_by_alias.insert(alias.clone(), idx);
        self.latest_by_alias.insert(alias.clone(), idx);
        self.alerts.push(alert);
        Outcome {
            action: "Create",
            success: true,
            status: "Created alert".into(),
            alert_id: id,
            alias,
            processed_at: now,
        }
    }

    /// Adds or replaces a schedule; returns its id.
    pub(crate) fn add_schedule(
        &mut self,
        name: &str,
        id: Option<&str>,
        on_call: &[&str],
    ) -> String {
        let id = id.map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
        let schedule = Schedule {
            id: id.clone(),
            name: name.to_owned(),
            on_call: on_call.iter().map(|s| (*s).to_owned()).collect(),
        };
        if let Some(&i) = self.sched_by_name.get(name) {
            let old = std::mem::replace(&mut self.schedules[i], schedule);
            self.sched_by_id.remove(&old.id);
            self.sched_by_id.insert(id.clone(), i);
        } else {
            let i = self.schedules.len();
            self.schedules.push(schedule);
            self.sched_by_id.insert(id.clone(), i);
            self.sched_by_name.insert(name.to_owned(), i);
        }
        id
    }

    /// Finds a schedule by the given identifier type.
    pub(crate) fn schedule(&self, ident: &str, by_name: bool) -> Option<usize> {
        if by_name {
            self.sched_by_name.get(ident).copied()
        } else {
            self.sched_by_id.get(ident).copied()
        }
    }

    /// Finds a schedule by name, then by id (for the test helpers).
    pub(crate) fn schedule_any(&self, ident: &str) -> Option<usize> {
        self.schedule(ident, true)
            .or_else(|| self.schedule(ident, false))
    }

    pub(crate) fn user_id(&mut self, username: &str) -> String {
        self.user_ids
            .entry(username.to_owned())
            .or_insert_with(|| Uuid::new_v4().to_string())
            .clone()
    }
}

impl Outcome {
    pub(crate) fn to_json(&self, integration_id: &str) -> Value {
        json!({
            "success": self.success,
            "isSuccess": self.success,
            "action": self.action,
            "status": self.status,
            "alertId": self.alert_id,
            "alias": self.alias,
            "processedAt": rfc3339(self.processed_at),
            "integrationId": integration_id,
        })
    }
}

fn recipients_json(rs: &[Responder]) -> Value {
    rs.iter()
        .map(|r| {
            let mut o = serde_json::Map::new();
            o.insert("type".into(), r.kind.clone().into());
            for (k, v) in [("id", &r.id), ("name", &r.name), ("username", &r.username)] {
                if let Some(v) = v {
                    o.insert(k.into(), v.clone().into());
                }
            }
            Value::Object(o)
        })
        .collect()
}

impl Alert {
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
            "responders": recipients_json(&self.responders),
            "integration": {"id": integration_id, "name": "Fake API integration", "type": "API"},
            "report": match (&self.closed_at, &self.closed_by) {
                (Some(t), by) => json!({
                    "closeTime": epoch_ms(*t).saturating_sub(epoch_ms(self.created_at)),
                    "closedBy": by.clone().unwrap_or_default(),
                }),
                _ => json!({}),
            },
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
                o.insert("visibleTo".into(), recipients_json(&self.visible_to));
            }
        }
        v
    }
}
