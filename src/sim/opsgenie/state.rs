//! The fake account's mutable state: alerts, asynchronous requests, the directory and the call
//! log, and how a queued request is applied.
//!
//! Everything lives behind one mutex in [`super::FakeOpsgenie`]; every lookup the hot path needs
//! (alert by id, tiny id or alias; request by id; schedule by id or name) is a hash-map hit so
//! the load test's thousands of calls stay cheap.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

use super::directory::Directory;
use super::model::{epoch_ms, rfc3339, Alert, AlertStatus, Call, Note};
use super::validate::{ActionPayload, CreatePayload};

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

impl Action {
    /// The `action` of the request status.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Action::Create(_) => "Create",
            Action::AddNote(_) => "AddNote",
            Action::Close(_) => "Close",
            Action::Acknowledge(_) => "Acknowledge",
        }
    }
}

/// An accepted (202) request waiting for its processing time.
#[derive(Debug)]
pub(crate) struct Pending {
    pub request_id: String,
    pub ready_at: Instant,
    /// Target alert for actions other than create.
    pub target: Option<(String, IdKind)>,
    pub action: Action,
    /// Injected by [`super::Faults::fail_next`]: the request fails with this status text
    /// when processed, and changes nothing.
    pub fail_with: Option<String>,
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
    /// Schedules, teams and users.
    pub directory: Directory,
    /// Whether closing an already closed alert reports `isSuccess:false` (the docs do not say
    /// what Opsgenie reports; see [`super::FakeOpsgenie::set_close_of_closed_fails`]).
    pub close_of_closed_fails: bool,
    pub calls: Vec<Call>,
    next_tiny: u64,
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
            let outcome = match p.fail_with {
                Some(status) => Outcome {
                    action: p.action.name(),
                    success: false,
                    status,
                    alert_id: String::new(),
                    alias: String::new(),
                    processed_at: SystemTime::now(),
                },
                None => self.apply(p.target, p.action),
            };
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
                // Nothing changes either way; whether Opsgenie calls it a failure is not
                // documented, so a knob picks (default: the caller's goal holds, success).
                let ok = !self.close_of_closed_fails;
                return outcome(name, ok, "Alert is already closed", Some(alert));
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
                if !alert.acknowledged {
                    alert.acknowledged_at = Some(now);
                    alert.acknowledged_by = p.user.clone();
                }
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
            routed_to: c
                .responders
                .iter()
                .filter_map(|r| self.directory.resolve(r))
                .collect(),
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
            acknowledged_at: None,
            acknowledged_by: None,
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
