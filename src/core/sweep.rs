//! The orphan sweep's decision: which open alerts belong to requests that no longer exist.
//!
//! A request deleted (or expired) while no replica was watching leaves its alert open: the
//! deletion event is gone for good, and a resync only lists requests that still exist. The sweep
//! lists the daemon's open alerts and closes those whose request is gone. This module is the
//! pure part: given the open alerts and the ids of the requests that exist, which to close
//! ([`orphans`]), and who closes each ([`handling`]).

use std::collections::HashSet;
use std::time::SystemTime;

use crate::core::plugin_data::PluginData;
use crate::core::render::ALIAS_PREFIX;

/// An alert to close because its request no longer exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The alert's alias, `teleport-access-request/<id>`.
    pub alias: String,
    /// The alert's id, as listed.
    pub alert_id: String,
    /// The request id taken from the alias.
    pub request_id: String,
}

/// Who closes an orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// A replica holds the request's claim (a step is in flight, e.g. a create being retried):
    /// leave it alone; the step's own pipeline closes it, or the next sweep looks again.
    Leave,
    /// The request's progress says the alert is open: hand the request to the pipeline as
    /// deleted, which closes the alert under a claim and records it, like any other step.
    Pipeline,
    /// No step will ever act on it (no progress at all, or progress that is closed for another
    /// alert, e.g. a second alert that a race once opened): close it directly, by id.
    Close,
}

/// Who closes `orphan`, given its request's progress (`None`: there is none) at `now`. Steps and
/// the sweep must agree on who acts on a request; the claim decides: a live one is left alone,
/// and the pipeline takes a claim before it closes anything.
pub fn handling(orphan: &Orphan, data: Option<&PluginData>, now: SystemTime) -> Handling {
    let Some(data) = data else {
        // Every step claims before it acts, and a claim can only be written while the request
        // exists or already has progress: with neither, nobody can be acting on it.
        return Handling::Close;
    };
    if data.claim.as_ref().is_some_and(|c| c.is_live(now)) {
        return Handling::Leave;
    }
    if data.is_closed() {
        // The recorded close was confirmed for the recorded alert: if that is the one listed,
        // the listing is older than the close. Another alert with the alias is left over.
        return if data.alert_id == orphan.alert_id {
            Handling::Leave
        } else {
            Handling::Close
        };
    }
    Handling::Pipeline
}

/// The request id an alias of ours names, or `None` for an alias the daemon did not make
/// (another integration's alert that happens to carry our tag must never be touched).
pub fn request_id_of(alias: &str) -> Option<&str> {
    let id = alias.strip_prefix(ALIAS_PREFIX)?;
    // Request ids are UUIDs; anything with a separator or blank is not ours.
    let plausible = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    plausible.then_some(id)
}

/// The open alerts to close: those with an alias of ours whose request id is not in `existing`.
///
/// `open` holds the (alias, id) pairs of the open alerts as listed by the backend. `existing` must be the ids of
/// every request Teleport holds, listed *after* the alerts: a request created after the alert
/// listing cannot have an alert in it, so an alert whose request is missing from the later list
/// really is an orphan. Each alias appears at most once in the result, in the order first seen.
pub fn orphans(open: &[(String, String)], existing: &HashSet<String>) -> Vec<Orphan> {
    let mut seen = HashSet::new();
    open.iter()
        .filter_map(|(alias, alert_id)| {
            let id = request_id_of(alias)?;
            (!existing.contains(id) && seen.insert(alert_id.as_str())).then(|| Orphan {
                alias: alias.clone(),
                alert_id: alert_id.clone(),
                request_id: id.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Open alerts with these aliases, each with its own id.
    fn open(aliases: &[&str]) -> Vec<(String, String)> {
        aliases
            .iter()
            .enumerate()
            .map(|(i, a)| (a.to_string(), format!("alert-{i}")))
            .collect()
    }

    fn ids(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn closes_only_alerts_of_missing_requests() {
        let got = orphans(
            &open(&[
                "teleport-access-request/a-1",
                "teleport-access-request/b-2",
                "teleport-access-request/c-3",
            ]),
            &ids(&["b-2"]),
        );
        let aliases: Vec<&str> = got.iter().map(|o| o.alias.as_str()).collect();
        assert_eq!(
            aliases,
            ["teleport-access-request/a-1", "teleport-access-request/c-3"]
        );
        assert_eq!(got[0].request_id, "a-1");
    }

    #[test]
    fn never_touches_foreign_aliases() {
        let got = orphans(
            &open(&[
                "someone-else/a-1",
                "teleport-access-request/",
                "teleport-access-request/x/y",
                "teleport-access-request/with space",
                "TELEPORT-ACCESS-REQUEST/a-1",
                "",
            ]),
            &ids(&[]),
        );
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn reads_back_the_aliases_the_daemon_renders() {
        let id = "6c1c4a8e-7a34-4f3e-9d7b-0d9b2f4b8a11";
        assert_eq!(request_id_of(&crate::core::render::alias(id)), Some(id));
    }

    #[test]
    fn each_alert_once() {
        let a = (
            "teleport-access-request/a".to_string(),
            "alert-a".to_string(),
        );
        let got = orphans(&[a.clone(), a.clone()], &ids(&[]));
        assert_eq!(got.len(), 1);
        // Two alerts with one alias (a second alert) are both orphans.
        let b = (a.0.clone(), "alert-b".to_string());
        assert_eq!(orphans(&[a, b], &ids(&[])).len(), 2);
    }

    #[test]
    fn who_closes_an_orphan() {
        use crate::core::plugin_data::{Claim, Resolution};
        use std::time::{Duration, UNIX_EPOCH};
        let orphan = Orphan {
            alias: "teleport-access-request/a".into(),
            alert_id: "alert-1".into(),
            request_id: "a".into(),
        };
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let claimed = |until_s: u64| PluginData {
            alert_request_id: "rq".into(),
            claim: Some(Claim {
                holder: "other".into(),
                until_ms: until_s * 1000,
            }),
            ..PluginData::default()
        };
        let closed = |alert_id: &str| PluginData {
            alert_id: alert_id.into(),
            resolution: Some(Resolution::Expired),
            ..PluginData::default()
        };
        let open = PluginData {
            alert_id: "alert-1".into(),
            ..PluginData::default()
        };
        let cases = [
            ("no progress at all", None, Handling::Close),
            ("a step in flight", Some(claimed(160)), Handling::Leave),
            (
                "a dead holder's claim",
                Some(claimed(90)),
                Handling::Pipeline,
            ),
            ("progress says open", Some(open), Handling::Pipeline),
            (
                "closed, listing older",
                Some(closed("alert-1")),
                Handling::Leave,
            ),
            (
                "closed, another alert",
                Some(closed("alert-0")),
                Handling::Close,
            ),
        ];
        for (name, data, want) in cases {
            assert_eq!(handling(&orphan, data.as_ref(), now), want, "{name}");
        }
    }

    #[test]
    fn nothing_to_close_when_every_request_exists() {
        let got = orphans(
            &open(&["teleport-access-request/a", "teleport-access-request/b"]),
            &ids(&["a", "b", "c"]),
        );
        assert!(got.is_empty());
    }
}
