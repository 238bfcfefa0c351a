//! The fake JSM's state: alerts and their notes, the queue of accepted Integration Events
//! writes, schedules (on-calls and timelines), users, teams, and the record of every call.
//!
//! Writes through the Integration Events API are asynchronous as on the real service: each is
//! answered 202 with a `requestId`, queued, and applied once its processing delay has passed (in
//! order of receipt). Until then the alert does not exist and the REST request status answers
//! 404 "request is not found", as JSM does for a request it has not processed yet.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

/// An alert's state, as the REST API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    /// Open, not acknowledged.
    Open,
    /// Open and acknowledged (`acked`).
    Acked,
    /// Closed.
    Closed,
}

impl AlertStatus {
    /// The REST API's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acked => "acked",
            Self::Closed => "closed",
        }
    }
}

/// One note on an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The note's id (a numeric string, as JSM's are).
    pub id: String,
    /// The text.
    pub note: String,
    /// Who wrote it (the integration, for Integration Events writes).
    pub owner: String,
    /// When it was added.
    pub created_at: SystemTime,
}

/// One alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The alert id.
    pub id: String,
    /// The short id.
    pub tiny_id: String,
    /// The alias (empty if none was given).
    pub alias: String,
    /// The message.
    pub message: String,
    /// The description.
    pub description: String,
    /// The state.
    pub status: AlertStatus,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom properties (`details` on Integration Events, `extraProperties` on REST).
    pub details: BTreeMap<String, String>,
    /// `P1`..`P5`.
    pub priority: String,
    /// The source.
    pub source: String,
    /// The entity.
    pub entity: String,
    /// Responders as sent.
    pub responders: Vec<Value>,
    /// How many creates were de-duplicated into it (1 for a fresh alert).
    pub count: u32,
    /// Notes, oldest first.
    pub notes: Vec<Note>,
    /// When it was created.
    pub created_at: SystemTime,
}

/// What an Integration Events write asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create (or de-duplicate into the open alert with the same alias).
    Create(Box<Alert>),
    /// Close, with an optional note.
    Close {
        /// Which alert.
        target: Target,
        /// The note, if any.
        note: Option<String>,
    },
    /// Add a note.
    AddNote {
        /// Which alert.
        target: Target,
        /// The note.
        note: String,
    },
    /// Acknowledge, with an optional note.
    Acknowledge {
        /// Which alert.
        target: Target,
        /// The note, if any.
        note: Option<String>,
    },
}

impl Action {
    /// The request status's `action` for it.
    fn name(&self) -> &'static str {
        match self {
            Self::Create(_) => "Create",
            Self::Close { .. } => "Close",
            Self::AddNote { .. } => "AddNote",
            Self::Acknowledge { .. } => "Acknowledge",
        }
    }
}

/// How an Integration Events path names an alert (`identifierType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// By id (the default).
    Id(String),
    /// By alias.
    Alias(String),
    /// By tiny id.
    Tiny(String),
}

/// The result of a processed request, as the REST request status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `Create`, `Close`, `AddNote`, `Acknowledge`.
    pub action: &'static str,
    /// Whether it did what was asked.
    pub is_success: bool,
    /// e.g. "Created alert", "Alert does not exist".
    pub status: String,
    /// The alert it acted on (empty when none).
    pub alert_id: String,
    /// That alert's alias.
    pub alias: String,
    /// When it was processed.
    pub processed_at: SystemTime,
}

/// An accepted write.
#[derive(Debug, Clone)]
pub struct Request {
    /// The `requestId` answered.
    pub id: String,
    /// What it asks.
    pub action: Action,
    /// When it is applied.
    pub ready_at: Instant,
}

/// One on-call period of a timeline rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Start (inclusive).
    pub start: SystemTime,
    /// End (exclusive).
    pub end: SystemTime,
    /// `base`, `override`, `forwarding` or `historical`.
    pub kind: String,
    /// `user`, `team`, `escalation` or `noone`.
    pub responder_type: String,
    /// The responder's id (an accountId for users; empty for `noone`).
    pub responder_id: String,
}

/// One rotation of a schedule's final timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its periods.
    pub periods: Vec<Period>,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its team, if any.
    pub team_id: Option<String>,
    /// AccountIds on call now, when it has no timeline.
    pub on_call: Vec<String>,
    /// Its final timeline; when set, on-calls at a time are the users of the periods holding it.
    pub timeline: Vec<Rotation>,
}

impl Schedule {
    /// The accountIds on call at `at`: from the timeline if it has one, else the fixed list.
    pub fn on_call_at(&self, at: SystemTime) -> Vec<String> {
        if self.timeline.is_empty() {
            return self.on_call.clone();
        }
        let mut users = Vec::new();
        for period in self.timeline.iter().flat_map(|r| &r.periods) {
            if period.responder_type == "user"
                && period.start <= at
                && at < period.end
                && !users.contains(&period.responder_id)
            {
                users.push(period.responder_id.clone());
            }
        }
        users
    }
}

/// A Jira user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The Atlassian accountId.
    pub account_id: String,
    /// The display name.
    pub display_name: String,
    /// The e-mail address.
    pub email: String,
    /// Whether the profile lets others see the e-mail; when not, `emailAddress` is absent.
    pub email_visible: bool,
}

/// Which API a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/jsm/ops/integration/...` (GenieKey).
    IntegrationEvents,
    /// `/jsm/ops/api/{cloudId}/v1/...` (Basic auth).
    Rest,
    /// The Jira platform user API (`/rest/api/3/user...`, on the site or under
    /// `/ex/jira/{cloudId}`).
    JiraUsers,
    /// `/_edge/tenant_info`.
    TenantInfo,
    /// Anything else.
    Unknown,
}

/// One call the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Path as received, without the query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Which API it went to.
    pub api: Api,
    /// The documented operation it matched (`create_alert`, `get_on_calls`, ...), or `None`
    /// for a path no Atlassian document describes: such calls are answered 404.
    pub operation: Option<&'static str>,
    /// Whether its credential was accepted.
    pub auth_ok: bool,
    /// Its JSON body, if any.
    pub body: Option<Value>,
    /// The status answered.
    pub status: u16,
    /// Tokio time of receipt (follows a paused test clock).
    pub received: Instant,
}

/// Everything the fake knows.
#[derive(Debug, Default)]
pub struct State {
    /// Alerts in creation order.
    pub alerts: Vec<Alert>,
    /// Writes accepted, not yet applied (oldest first).
    pub pending: VecDeque<Request>,
    /// Outcomes of applied writes, by request id.
    pub outcomes: BTreeMap<String, Outcome>,
    /// Schedules.
    pub schedules: Vec<Schedule>,
    /// Users by accountId.
    pub users: BTreeMap<String, User>,
    /// Team ids (heartbeats are team-scoped).
    pub teams: Vec<String>,
    /// Heartbeat pings received, as (team id, name).
    pub pings: Vec<(String, String)>,
    /// Every call, in order of completion.
    pub calls: Vec<Call>,
    next_tiny: u64,
    next_note: u64,
}

impl State {
    /// Applies every queued write due at `now`; whether anything changed.
    pub fn process_due(&mut self, now: Instant) -> bool {
        let mut changed = false;
        while self.pending.front().is_some_and(|r| r.ready_at <= now) {
            if let Some(request) = self.pending.pop_front() {
                let outcome = self.apply(request.action);
                self.outcomes.insert(request.id, outcome);
                changed = true;
            }
        }
        changed
    }

    /// The index of the alert `target` names; by alias, the open one (else the newest).
    pub fn find(&self, target: &Target) -> Option<usize> {
        match target {
            Target::Id(id) => self.alerts.iter().position(|a| a.id == *id),
            Target::Tiny(tiny) => self.alerts.iter().position(|a| a.tiny_id == *tiny),
            Target::Alias(alias) => self
                .alerts
                .iter()
                .rposition(|a| a.alias == *alias && a.status != AlertStatus::Closed)
                .or_else(|| self.alerts.iter().rposition(|a| a.alias == *alias)),
        }
    }

    /// A new note with the next id.
    pub fn note(&mut self, text: String, owner: &str) -> Note {
        self.next_note += 1;
        Note {
            id: format!("{}", 1_700_000_000_000_000_000u64 + self.next_note),
            note: text,
            owner: owner.to_owned(),
            created_at: SystemTime::now(),
        }
    }

    /// Adds a created alert (fresh, or de-duplicated into the open one with its alias).
    /// Returns its id and whether it was fresh.
    pub fn insert_created(&mut self, mut alert: Alert) -> (String, bool) {
        if !alert.alias.is_empty() {
            if let Some(i) = self
                .alerts
                .iter()
                .position(|a| a.alias == alert.alias && a.status != AlertStatus::Closed)
            {
                self.alerts[i].count += 1;
                return (self.alerts[i].id.clone(), false);
            }
        }
        self.next_tiny += 1;
        alert.id = Uuid::new_v4().to_string();
        alert.tiny_id = self.next_tiny.to_string();
        alert.count = 1;
        let id = alert.id.clone();
        self.alerts.push(alert);
        (id, true)
    }

    fn apply(&mut self, action: Action) -> Outcome {
        let name = action.name();
        let done = |ok: bool, status: &str, alert: Option<&Alert>| Outcome {
            action: name,
            is_success: ok,
            status: status.to_owned(),
            alert_id: alert.map(|a| a.id.clone()).unwrap_or_default(),
            alias: alert.map(|a| a.alias.clone()).unwrap_or_default(),
            processed_at: SystemTime::now(),
        };
        let (target, note) = match action {
            Action::Create(alert) => {
                let (id, _) = self.insert_created(*alert);
                let alert = self.alerts.iter().find(|a| a.id == id);
                return done(true, "Created alert", alert);
            }
            Action::Close { target, note } => (target, (note, AlertStatus::Closed)),
            Action::Acknowledge { target, note } => (target, (note, AlertStatus::Acked)),
            Action::AddNote { target, note } => (target, (Some(note), AlertStatus::Open)),
        };
        let Some(i) = self.find(&target) else {
            return done(false, "Alert does not exist", None);
        };
        let (text, to) = note;
        if to == AlertStatus::Acked && self.alerts[i].status == AlertStatus::Closed {
            return done(false, "Alert is already closed", Some(&self.alerts[i]));
        }
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            let note = self.note(text, "API");
            self.alerts[i].notes.push(note);
        }
        let status = match (name, self.alerts[i].status) {
            ("Close", _) => {
                self.alerts[i].status = AlertStatus::Closed;
                "Closed alert"
            }
            ("Acknowledge", _) => {
                self.alerts[i].status = AlertStatus::Acked;
                "Acknowledged alert"
            }
            _ => "Added note",
        };
        done(true, status, Some(&self.alerts[i]))
    }
}
