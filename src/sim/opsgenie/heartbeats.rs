//! The fake's heartbeats: which names exist, and `GET /v2/heartbeats/{name}` as the real API
//! answers it (200 with the heartbeat under `data`, 404 when no heartbeat has that name). The
//! ping (`/v2/heartbeats/{name}/ping`) answers 202 whether the heartbeat exists or not, as the
//! real one does, so only this lookup can tell.

use std::collections::BTreeSet;
use std::sync::Mutex;

use axum::http::StatusCode;
use serde_json::json;

use super::lock;
use super::reply::Reply;

/// The heartbeat a new fake account has: the daemon's default `opsgenie.heartbeat_name`.
pub const DEFAULT_HEARTBEAT: &str = "teleport-access-heartbeat";

/// Heartbeat names that exist.
#[derive(Debug)]
pub(crate) struct Heartbeats(Mutex<BTreeSet<String>>);

impl Default for Heartbeats {
    fn default() -> Self {
        Self(Mutex::new(BTreeSet::from([DEFAULT_HEARTBEAT.to_owned()])))
    }
}

impl Heartbeats {
    pub(crate) fn create(&self, name: &str) {
        lock(&self.0).insert(name.to_owned());
    }

    pub(crate) fn delete(&self, name: &str) {
        lock(&self.0).remove(name);
    }

    /// The answer to `GET /v2/heartbeats/{name}`.
    pub(crate) fn get(&self, name: &str) -> Reply {
        if !lock(&self.0).contains(name) {
            return Reply::message(
                StatusCode::NOT_FOUND,
                &format!("Heartbeat with name [{name}] does not exist"),
            );
        }
        Reply::json(
            StatusCode::OK,
            json!({ "data": {
                "name": name,
                "description": "",
                "interval": 10,
                "intervalUnit": "minutes",
                "enabled": true,
                "expired": false,
                "ownerTeam": {},
                "alertMessage": format!("{name} is expired"),
                "alertTags": [],
                "alertPriority": "P3",
            }}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_finds_existing_heartbeats_only() {
        let heartbeats = Heartbeats::default();
        let found = heartbeats.get(DEFAULT_HEARTBEAT);
        assert_eq!(found.status, StatusCode::OK);
        assert_eq!(found.body["data"]["name"], DEFAULT_HEARTBEAT);
        assert_eq!(found.body["data"]["enabled"], true);
        assert_eq!(heartbeats.get("other").status, StatusCode::NOT_FOUND);
        heartbeats.create("other");
        assert_eq!(heartbeats.get("other").status, StatusCode::OK);
        heartbeats.delete(DEFAULT_HEARTBEAT);
        let missing = heartbeats.get(DEFAULT_HEARTBEAT);
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(missing.body["message"]
            .as_str()
            .is_some_and(|m| m.contains(DEFAULT_HEARTBEAT)));
    }
}
