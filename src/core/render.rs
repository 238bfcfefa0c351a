//! What the alert and its notes say. Every field is kept within Opsgenie's documented limits by
//! truncating, never by rejecting: an alert that says less is better than no alert.
//!
//! Opsgenie is a Java service, and Java strings count UTF-16 code units: a character outside
//! the Basic Multilingual Plane (most emoji) is two. The limits are counted that way here, and
//! cuts fall on character boundaries, so a field within them is within them whichever way the
//! server counts (characters, code points or UTF-16 units; never more units than that).

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::core::alert::{AlertPayload, Responder};
use crate::core::model::{
    AccessRequest, RequestState, Review, NOTIFY_SERVICES_ANNOTATION, TEAMS_ANNOTATION,
};
use crate::core::plugin_data::Resolution;

/// Opsgenie's documented field limits, in UTF-16 code units (see the module docs).
pub mod limits {
    /// `message`.
    pub const MESSAGE: usize = 130;
    /// `alias`.
    pub const ALIAS: usize = 512;
    /// `description`.
    pub const DESCRIPTION: usize = 15_000;
    /// Number of `responders`.
    pub const RESPONDERS: usize = 50;
    /// Number of `tags`.
    pub const TAGS: usize = 20;
    /// Length of one tag.
    pub const TAG: usize = 50;
    /// `details`, keys and values together.
    pub const DETAILS: usize = 8_000;
    /// `entity`.
    pub const ENTITY: usize = 512;
    /// `source`.
    pub const SOURCE: usize = 100;
    /// A note.
    pub const NOTE: usize = 25_000;
}

/// The longest part of the description given to the requester's reason, so that the rest of
/// the description (roles, link) always fits.
const REASON_SHARE: usize = 8_000;
/// The longest part of the description given to the list of roles or of resources.
const LIST_SHARE: usize = 2_500;
/// The longest part of the details given to the list of roles.
const DETAILS_ROLES_SHARE: usize = 4_000;

/// Settings that shape every alert.
#[derive(Debug, Clone, Default)]
pub struct AlertSettings {
    /// Web UI base URL (`https://host[:port]`), for the link to the request.
    pub web_proxy_url: Option<String>,
    /// Teleport cluster name.
    pub cluster: String,
    /// `P1` to `P5`.
    pub priority: String,
    /// Tags for every alert.
    pub tags: Vec<String>,
    /// Schedules used when the request names none.
    pub default_schedules: Vec<String>,
    /// Teams used when the request names none.
    pub default_teams: Vec<String>,
    /// `source` of alerts and notes.
    pub source: String,
}

/// The prefix of every alias the daemon creates, followed by the request id.
pub const ALIAS_PREFIX: &str = "teleport-access-request/";

/// The alias of a request's alert: the key on which the backend de-duplicates.
pub fn alias(request_id: &str) -> String {
    truncate(&format!("{ALIAS_PREFIX}{request_id}"), limits::ALIAS)
}

/// The link to a request in Teleport's web UI.
pub fn request_link(web_proxy_url: &str, request_id: &str) -> String {
    format!(
        "{}/web/requests/{}",
        web_proxy_url.trim_end_matches('/'),
        request_id
    )
}

/// Normalises a configured web proxy address (`host`, `host:port` or a URL) to a base URL.
pub fn web_proxy_url(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    if addr.starts_with("https://") || addr.starts_with("http://") {
        addr.to_owned()
    } else {
        format!("https://{addr}")
    }
}

/// The alert for a pending request.
pub fn alert(request: &AccessRequest, settings: &AlertSettings) -> AlertPayload {
    AlertPayload {
        message: truncate(
            &format!("Access request from {}", one_line(&request.user)),
            limits::MESSAGE,
        ),
        alias: alias(&request.id),
        description: description(request, settings),
        responders: responders(request, settings),
        tags: tags(&settings.tags),
        details: details(request, &settings.cluster),
        entity: truncate(
            &if settings.cluster.is_empty() {
                "teleport".to_owned()
            } else {
                format!("teleport/{}", settings.cluster)
            },
            limits::ENTITY,
        ),
        source: truncate(&settings.source, limits::SOURCE),
        priority: settings.priority.clone(),
    }
}

fn description(request: &AccessRequest, settings: &AlertSettings) -> String {
    let mut lines = vec![format!(
        "{} requested the roles: {}.",
        request.user,
        truncate(&request.roles.join(", "), LIST_SHARE)
    )];
    if !request.resources.is_empty() {
        let resources: Vec<String> = request.resources.iter().map(ToString::to_string).collect();
        lines.push(format!(
            "Resources: {}",
            truncate(&resources.join(", "), LIST_SHARE)
        ));
    }
    if let Some(url) = &settings.web_proxy_url {
        lines.push(format!(
            "Review it in Teleport: {}",
            request_link(url, &request.id)
        ));
    }
    lines.push(format!("Request ID: {}", request.id));
    if let Some(created) = request.created {
        lines.push(format!("Requested at: {}", timestamp(created)));
    }
    lines.push(if request.request_reason.trim().is_empty() {
        "Reason: none given".to_owned()
    } else {
        format!(
            "Reason: {}",
            truncate(request.request_reason.trim(), REASON_SHARE)
        )
    });
    truncate(&lines.join("\n"), limits::DESCRIPTION)
}

fn responders(request: &AccessRequest, settings: &AlertSettings) -> Vec<Responder> {
    let pick = |key: &str, defaults: &[String]| {
        let named = request.annotation(key);
        if named.is_empty() {
            defaults.to_vec()
        } else {
            named
        }
    };
    let schedules = pick(NOTIFY_SERVICES_ANNOTATION, &settings.default_schedules);
    let teams = pick(TEAMS_ANNOTATION, &settings.default_teams);
    schedules
        .iter()
        .map(|s| responder("schedule", s))
        .chain(teams.iter().map(|t| responder("team", t)))
        .take(limits::RESPONDERS)
        .collect()
}

/// A responder of `kind`, named by id when `value` is a UUID and by name otherwise.
pub fn responder(kind: &str, value: &str) -> Responder {
    let by_id = is_uuid(value);
    Responder {
        kind: kind.to_owned(),
        id: by_id.then(|| value.to_owned()),
        name: (!by_id).then(|| value.to_owned()),
    }
}

/// Whether `value` is a hyphenated UUID, 8-4-4-4-12 hex digits (how Opsgenie writes ids).
pub fn is_uuid(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn tags(configured: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in configured {
        let tag = truncate(tag.trim(), limits::TAG);
        if !tag.is_empty() && !out.contains(&tag) {
            out.push(tag);
        }
    }
    out.truncate(limits::TAGS);
    out
}

fn details(request: &AccessRequest, cluster: &str) -> BTreeMap<String, String> {
    let mut details = BTreeMap::from([
        ("request_id".to_owned(), truncate(&request.id, 100)),
        ("user".to_owned(), truncate(&request.user, 500)),
        (
            "roles".to_owned(),
            truncate(&request.roles.join(","), DETAILS_ROLES_SHARE),
        ),
    ]);
    if !cluster.is_empty() {
        details.insert("cluster".to_owned(), truncate(cluster, 500));
    }
    details
}

/// The note for one review.
pub fn review_note(review: &Review) -> String {
    let verdict = match review.proposed_state {
        RequestState::Approved => "approved",
        RequestState::Denied => "denied",
        _ => "reviewed",
    };
    let mut note = format!("{} {verdict} the request", review.author);
    if let Some(created) = review.created {
        note.push_str(&format!(" at {}", timestamp(created)));
    }
    note.push('.');
    if !review.reason.trim().is_empty() {
        note.push_str(&format!("\nReason: {}", review.reason.trim()));
    }
    truncate(&note, limits::NOTE)
}

/// The closing note of a request that is gone.
pub const DELETED_NOTE: &str =
    "Access request was deleted (by a user, or by Teleport once it expired).";

/// The note that closes the alert.
pub fn resolution_note(resolution: Resolution, reason: &str) -> String {
    let mut note = match resolution {
        Resolution::Approved => "Access request approved.".to_owned(),
        Resolution::Denied => "Access request denied.".to_owned(),
        Resolution::Promoted => "Access request promoted to an access list.".to_owned(),
        // Teleport cannot tell a deletion from an expiry (it deletes expired requests), so the
        // note says what is known: the request was deleted. The stored tag stays `expired`.
        Resolution::Expired => DELETED_NOTE.to_owned(),
    };
    if !reason.trim().is_empty() {
        note.push_str(&format!("\nReason: {}", reason.trim()));
    }
    truncate(&note, limits::NOTE)
}

/// RFC 3339, whole seconds, UTC.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The length of `text` as Opsgenie counts it: UTF-16 code units.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// `text` cut to at most `max` UTF-16 code units, at a character boundary, ending with `…`
/// (one unit) when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if utf16_len(text) <= max {
        return text.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let budget = max - 1;
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        used += c.len_utf16();
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::ResourceId;
    use std::time::{Duration, UNIX_EPOCH};

    fn request() -> AccessRequest {
        AccessRequest {
            created: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            request_reason: "incident 42".into(),
            system_annotations: BTreeMap::from([
                (
                    NOTIFY_SERVICES_ANNOTATION.to_owned(),
                    vec![
                        "Primary".to_owned(),
                        "bb4d9938-c3c2-455d-aaab-727aa701c0d8".to_owned(),
                    ],
                ),
                (TEAMS_ANNOTATION.to_owned(), vec!["sre".to_owned()]),
            ]),
            ..AccessRequest::example(
                "6c1c4a8e-7a34-4f3e-9d7b-0d9b2f4b8a11",
                "alice",
                &["editor", "db-admin"],
            )
        }
    }

    fn settings() -> AlertSettings {
        AlertSettings {
            web_proxy_url: Some(web_proxy_url("teleport.example.com:443")),
            cluster: "example.com".into(),
            priority: "P2".into(),
            tags: vec!["teleport-access-request".into()],
            default_schedules: vec!["Default".into()],
            default_teams: vec!["fallback-team".into()],
            source: "teleport-opsgenie".into(),
        }
    }

    #[test]
    fn renders_the_alert() {
        let a = alert(&request(), &settings());
        assert_eq!(a.message, "Access request from alice");
        assert_eq!(
            a.alias,
            "teleport-access-request/6c1c4a8e-7a34-4f3e-9d7b-0d9b2f4b8a11"
        );
        assert_eq!(
            a.description,
            "alice requested the roles: editor, db-admin.\n\
             Review it in Teleport: https://teleport.example.com:443/web/requests/6c1c4a8e-7a34-4f3e-9d7b-0d9b2f4b8a11\n\
             Request ID: 6c1c4a8e-7a34-4f3e-9d7b-0d9b2f4b8a11\n\
             Requested at: 2023-11-14T22:13:20Z\n\
             Reason: incident 42"
        );
        assert_eq!(
            a.responders,
            vec![
                responder("schedule", "Primary"),
                Responder {
                    kind: "schedule".into(),
                    id: Some("bb4d9938-c3c2-455d-aaab-727aa701c0d8".into()),
                    name: None
                },
                Responder {
                    kind: "team".into(),
                    id: None,
                    name: Some("sre".into())
                },
            ]
        );
        assert_eq!(a.priority, "P2");
        assert_eq!(a.entity, "teleport/example.com");
        assert_eq!(a.details["roles"], "editor,db-admin");
        assert_eq!(a.details["cluster"], "example.com");
    }

    #[test]
    fn defaults_apply_per_kind_when_the_request_names_none() {
        let mut req = request();
        req.system_annotations.remove(TEAMS_ANNOTATION);
        let a = alert(&req, &settings());
        assert_eq!(
            a.responders.last(),
            Some(&responder("team", "fallback-team"))
        );
        req.system_annotations.clear();
        let a = alert(&req, &settings());
        assert_eq!(
            a.responders,
            vec![
                responder("schedule", "Default"),
                responder("team", "fallback-team")
            ]
        );
    }

    #[test]
    fn no_link_without_a_web_proxy_and_resources_are_listed() {
        let mut req = request();
        req.resources.push(ResourceId {
            cluster: "example.com".into(),
            kind: "node".into(),
            name: "web-1".into(),
            sub_resource: String::new(),
        });
        let mut s = settings();
        s.web_proxy_url = None;
        let a = alert(&req, &s);
        assert!(!a.description.contains("/web/requests/"));
        assert!(a.description.contains("Resources: /example.com/node/web-1"));
    }

    #[test]
    fn huge_inputs_are_truncated_within_limits() {
        let mut req = request();
        req.user = "u".repeat(500);
        req.request_reason = "é".repeat(1_000_000);
        req.roles = (0..10_000).map(|i| format!("role-{i}")).collect();
        req.system_annotations.insert(
            NOTIFY_SERVICES_ANNOTATION.into(),
            (0..100).map(|i| format!("s{i}")).collect(),
        );
        let mut s = settings();
        s.tags = (0..30).map(|i| format!("{i}-{}", "t".repeat(60))).collect();
        let a = alert(&req, &s);
        assert_eq!(utf16_len(&a.message), limits::MESSAGE);
        assert!(utf16_len(&a.description) <= limits::DESCRIPTION);
        assert!(a.description.contains("Request ID:"), "the link survives");
        assert_eq!(a.responders.len(), limits::RESPONDERS);
        assert_eq!(a.tags.len(), limits::TAGS);
        assert!(a.tags.iter().all(|t| utf16_len(t) <= limits::TAG));
        let details_len: usize = a
            .details
            .iter()
            .map(|(k, v)| utf16_len(k) + utf16_len(v))
            .sum();
        assert!(details_len <= limits::DETAILS);
    }

    #[test]
    fn notes() {
        let review = Review {
            author: "bob".into(),
            proposed_state: RequestState::Approved,
            reason: "looks fine".into(),
            created: Some(UNIX_EPOCH),
        };
        assert_eq!(
            review_note(&review),
            "bob approved the request at 1970-01-01T00:00:00Z.\nReason: looks fine"
        );
        assert_eq!(
            resolution_note(Resolution::Denied, "not now"),
            "Access request denied.\nReason: not now"
        );
        assert_eq!(
            resolution_note(Resolution::Expired, ""),
            "Access request was deleted (by a user, or by Teleport once it expired)."
        );
        // Each resolution reads as what happened, never one for another.
        let table = [
            (Resolution::Approved, "Access request approved."),
            (Resolution::Denied, "Access request denied."),
            (
                Resolution::Promoted,
                "Access request promoted to an access list.",
            ),
            (Resolution::Expired, DELETED_NOTE),
        ];
        for (resolution, want) in table {
            assert_eq!(resolution_note(resolution, ""), want, "{resolution:?}");
        }
        assert!(!DELETED_NOTE.contains("closed as expired"));
    }

    #[test]
    fn truncation_counts_utf16_units_and_cuts_at_char_boundaries() {
        let grin = "\u{1F600}"; // outside the BMP: two UTF-16 units, four UTF-8 bytes
        let table: [(&str, usize, &str); 12] = [
            ("ééé", 3, "ééé"),
            ("éééé", 3, "éé…"),
            ("", 0, ""),
            ("abc", 0, ""),
            ("abc", 1, "…"),
            ("abc", 3, "abc"),
            ("\u{1F600}\u{1F600}", 4, "\u{1F600}\u{1F600}"),
            ("\u{1F600}\u{1F600}", 3, "\u{1F600}…"),
            // The emoji does not fit beside the ellipsis: cut before it, never inside it.
            ("\u{1F600}\u{1F600}", 2, "…"),
            ("a\u{1F600}b", 3, "a…"),
            ("a\u{1F600}b", 4, "a\u{1F600}b"),
            // Combining marks are characters of their own (BMP, one unit each).
            ("e\u{301}e\u{301}", 3, "e\u{301}…"),
        ];
        for (text, max, want) in table {
            let got = truncate(text, max);
            assert_eq!(got, want, "truncate({text:?}, {max})");
            assert!(utf16_len(&got) <= max, "{got:?} within {max}");
        }
        assert_eq!(utf16_len(&grin.repeat(130)), 260);
    }

    #[test]
    fn every_field_limit_holds_in_utf16_units() {
        // 130 emoji are 260 units: each limited field is cut to its limit, with room for
        // the ellipsis, and what is left is still valid UTF-8 (a String).
        let emoji = "\u{1F680}".repeat(30_000);
        let mut req = request();
        req.user = emoji.clone();
        req.request_reason = emoji.clone();
        req.roles = vec![emoji.clone()];
        let mut s = settings();
        s.cluster = emoji.clone();
        s.source = emoji.clone();
        s.tags = vec![emoji.clone()];
        let a = alert(&req, &s);
        let table: [(&str, &str, usize); 5] = [
            ("message", &a.message, limits::MESSAGE),
            ("description", &a.description, limits::DESCRIPTION),
            ("entity", &a.entity, limits::ENTITY),
            ("source", &a.source, limits::SOURCE),
            ("tag", &a.tags[0], limits::TAG),
        ];
        for (field, value, max) in table {
            let units = utf16_len(value);
            assert!(units <= max, "{field}: {units} > {max}");
            assert!(
                units >= max - 2,
                "{field}: cut no shorter than needed ({units} of {max})"
            );
            assert!(value.ends_with('…'), "{field}");
        }
        let details_len: usize = a
            .details
            .iter()
            .map(|(k, v)| utf16_len(k) + utf16_len(v))
            .sum();
        assert!(details_len <= limits::DETAILS);
        let review = Review {
            author: emoji.clone(),
            proposed_state: RequestState::Approved,
            reason: emoji.clone(),
            created: None,
        };
        assert!(utf16_len(&review_note(&review)) <= limits::NOTE);
        assert!(utf16_len(&resolution_note(Resolution::Denied, &emoji)) <= limits::NOTE);
        assert!(utf16_len(&alias(&emoji)) <= limits::ALIAS);
    }
}
