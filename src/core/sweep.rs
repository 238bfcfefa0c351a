//! The orphan sweep's decision: which open alerts belong to requests that no longer exist.
//!
//! A request deleted (or expired) while no replica was watching leaves its alert open: the
//! deletion event is gone for good, and a resync only lists requests that still exist. The sweep
//! lists the daemon's open alerts and closes those whose request is gone. This module is the
//! pure part: given the open alerts and the ids of the requests that exist, which to close.

use std::collections::HashSet;

use crate::core::render::ALIAS_PREFIX;

/// An alert to close because its request no longer exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The alert's alias, `teleport-access-request/<id>`.
    pub alias: String,
    /// The request id taken from the alias.
    pub request_id: String,
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
/// `open` holds the aliases of the open alerts as listed by the backend. `existing` must be the ids of
/// every request Teleport holds, listed *after* the alerts: a request created after the alert
/// listing cannot have an alert in it, so an alert whose request is missing from the later list
/// really is an orphan. Each alias appears at most once in the result, in the order first seen.
pub fn orphans(open: &[String], existing: &HashSet<String>) -> Vec<Orphan> {
    let mut seen = HashSet::new();
    open.iter()
        .filter_map(|alias| {
            let id = request_id_of(alias)?;
            (!existing.contains(id) && seen.insert(alias.as_str())).then(|| Orphan {
                alias: alias.clone(),
                request_id: id.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(aliases: &[&str]) -> Vec<String> {
        aliases.iter().map(|a| a.to_string()).collect()
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
    fn each_alias_once() {
        let got = orphans(
            &open(&["teleport-access-request/a", "teleport-access-request/a"]),
            &ids(&[]),
        );
        assert_eq!(got.len(), 1);
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
