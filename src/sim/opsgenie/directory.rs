//! The fake account's directory: schedules (with who is on call), teams and users, each known
//! by id and by name.
//!
//! Opsgenie resolves a responder given by name to the object's id when it processes a create,
//! and its alert answers name responders by `{type, id}` only (`Responder` in the official
//! definitions requires both). The fake does the same, so a client that reads responders back
//! meets ids, and a responder naming nothing that exists is dropped from the alert instead of
//! being echoed back as if it had been paged.

use std::collections::HashMap;

use uuid::Uuid;

use super::timeline_data::StoredTimeline;
use super::validate::Responder;

/// An on-call schedule.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub id: String,
    pub name: String,
    pub on_call: Vec<String>,
    /// The final timeline tests set (`timeline.rs`).
    pub timeline: StoredTimeline,
}

/// Something a responder can name: its id and name.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub id: String,
    pub name: String,
}

/// A responder as Opsgenie resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedResponder {
    /// `team`, `user`, `escalation` or `schedule`.
    pub kind: String,
    /// The object's id.
    pub id: String,
    /// The object's name (username for users).
    pub name: String,
}

/// Schedules, teams and users.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub schedules: Vec<Schedule>,
    sched_by_id: HashMap<String, usize>,
    sched_by_name: HashMap<String, usize>,
    teams: Vec<Entry>,
    team_by_id: HashMap<String, usize>,
    team_by_name: HashMap<String, usize>,
    /// Stable user ids, made up on first sight: the fake keeps no user list, so any username
    /// is a user (a schedule's on-call list names them too).
    user_ids: HashMap<String, String>,
}

impl Directory {
    /// Adds or replaces (by name) a schedule; returns its id.
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
            timeline: StoredTimeline::default(),
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

    /// Adds or replaces (by name) a team; returns its id.
    pub(crate) fn add_team(&mut self, name: &str, id: Option<&str>) -> String {
        let id = id.map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
        let entry = Entry {
            id: id.clone(),
            name: name.to_owned(),
        };
        if let Some(&i) = self.team_by_name.get(name) {
            let old = std::mem::replace(&mut self.teams[i], entry);
            self.team_by_id.remove(&old.id);
            self.team_by_id.insert(id.clone(), i);
        } else {
            let i = self.teams.len();
            self.teams.push(entry);
            self.team_by_id.insert(id.clone(), i);
            self.team_by_name.insert(name.to_owned(), i);
        }
        id
    }

    /// The id of a team given by name.
    pub(crate) fn team_id(&self, name: &str) -> Option<String> {
        self.team_by_name
            .get(name)
            .map(|&i| self.teams[i].id.clone())
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

    /// Resolves a responder as sent (by id, name or username) to the object it names; `None`
    /// when nothing of that kind has that id or name. Escalations are not modelled, so they
    /// never resolve.
    pub(crate) fn resolve(&mut self, r: &Responder) -> Option<ResolvedResponder> {
        let found = |kind: &str, e: &Entry| ResolvedResponder {
            kind: kind.to_owned(),
            id: e.id.clone(),
            name: e.name.clone(),
        };
        match r.kind.as_str() {
            "schedule" => {
                let i = match (&r.id, &r.name) {
                    (Some(id), _) if !id.is_empty() => self.schedule(id, false),
                    (_, Some(name)) => self.schedule(name, true),
                    _ => None,
                }?;
                let s = &self.schedules[i];
                Some(found(
                    "schedule",
                    &Entry {
                        id: s.id.clone(),
                        name: s.name.clone(),
                    },
                ))
            }
            "team" => {
                let i = match (&r.id, &r.name) {
                    (Some(id), _) if !id.is_empty() => self.team_by_id.get(id),
                    (_, Some(name)) => self.team_by_name.get(name),
                    _ => None,
                }?;
                Some(found("team", &self.teams[*i]))
            }
            "user" => {
                if let Some(id) = r.id.as_deref().filter(|id| !id.is_empty()) {
                    let name = self
                        .user_ids
                        .iter()
                        .find(|(_, v)| v.as_str() == id)
                        .map(|(k, _)| k.clone())?;
                    return Some(ResolvedResponder {
                        kind: "user".into(),
                        id: id.to_owned(),
                        name,
                    });
                }
                let username = r.username.clone()?;
                Some(ResolvedResponder {
                    kind: "user".into(),
                    id: self.user_id(&username),
                    name: username,
                })
            }
            _ => None,
        }
    }
}
