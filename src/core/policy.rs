//! The auto-approval policy: whether a request may be approved without a human, and how its
//! requester is recognised among the users on call. Pure: the on-call answers are looked up by
//! the caller and handed in, so every rule here is a plain function with table-driven tests.
//!
//! The policy errs towards declining. A request is approved only when every check passes and
//! the requester is positively found on call; a failed lookup is never read as "not on call" (nor
//! as "on call"), it is reported as a failure so the caller can retry.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::core::model::{AccessRequest, SCHEDULES_ANNOTATION};

/// How many schedules one decision consults by default (`auto_approval.max_schedules`).
pub const DEFAULT_MAX_SCHEDULES: usize = 10;

/// What the policy needs to know: a plain copy of the auto-approval settings, so that the core
/// depends on nothing outside it (the configuration converts into this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// Whether auto-approval is on at all.
    pub enabled: bool,
    /// Schedules checked when a request names none in `teleport.dev/schedules`.
    pub default_schedules: Vec<String>,
    /// Appended as `@domain` to Teleport user names that have no `@`.
    pub user_domain: Option<String>,
    /// Explicit Teleport user → on-call user map.
    pub users: BTreeMap<String, String>,
    /// Roles that may be auto-approved (exact names or `*` globs); empty allows all.
    pub allowed_roles: Vec<String>,
    /// Roles that are never auto-approved.
    pub denied_roles: Vec<String>,
    /// Longest access that may be auto-approved; unlimited when `None`.
    pub max_duration: Option<Duration>,
    /// Whether requests for specific resources may be auto-approved.
    pub allow_resource_requests: bool,
    /// Failed on-call lookups retried before declining.
    pub lookup_retries: u32,
    /// Most schedules consulted for one decision, after duplicates are dropped; the rest are
    /// not looked up, and a decline says so.
    pub max_schedules: usize,
    /// What the end of the requester's shift does to an approval (`core::shift_policy`).
    pub shift_end: crate::core::shift_policy::ShiftEndMode,
    /// How long past the shift's end an approved access may last.
    pub shift_grace: Duration,
}

impl Default for PolicySettings {
    /// The same defaults as the configuration's.
    fn default() -> Self {
        Self {
            enabled: false,
            default_schedules: Vec::new(),
            user_domain: None,
            users: BTreeMap::new(),
            allowed_roles: Vec::new(),
            denied_roles: Vec::new(),
            max_duration: None,
            allow_resource_requests: false,
            lookup_retries: 3,
            max_schedules: DEFAULT_MAX_SCHEDULES,
            shift_end: Default::default(),
            shift_grace: Duration::ZERO,
        }
    }
}

/// Why a request is not auto-approved before anyone is looked up. `Display` gives the reason
/// in words meant for the alert's readers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Declined {
    /// Auto-approval is switched off.
    #[error("auto-approval is disabled")]
    Disabled,
    /// Neither the request nor the configuration names a schedule to check.
    #[error(
        "no on-call schedule to check (set the `teleport.dev/schedules` annotation or auto_approval.default_schedules)"
    )]
    NoSchedules,
    /// A requested role matches `denied_roles`.
    #[error("role `{role}` is denied by auto_approval.denied_roles")]
    RoleDenied {
        /// The requested role.
        role: String,
    },
    /// A requested role matches none of `allowed_roles`.
    #[error("role `{role}` is not in auto_approval.allowed_roles")]
    RoleNotAllowed {
        /// The requested role.
        role: String,
    },
    /// The access would last longer than `max_duration`.
    #[error("access of {} exceeds the maximum of {}", human(*.requested), human(*.max))]
    TooLong {
        /// How long the access would last.
        requested: Duration,
        /// The configured maximum.
        max: Duration,
    },
    /// `max_duration` is set but the request says nothing about when its access would end, so
    /// the limit cannot be checked.
    #[error(
        "the requested access has no known end, so auto_approval.max_duration cannot be checked"
    )]
    UnknownDuration,
    /// The request names specific resources and `allow_resource_requests` is off.
    #[error("requests for specific resources need a human reviewer")]
    ResourceRequest,
}

/// The schedules one decision consults, and how many more it does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedules {
    /// At most `max_schedules`, in the order given, without duplicates.
    pub consulted: Vec<String>,
    /// Distinct schedules past the cap: not looked up.
    pub skipped: usize,
}

/// The schedules whose on-call users may be auto-approved for `request`: its
/// `teleport.dev/schedules` annotation, else the configured defaults; trimmed, without
/// duplicates (names compared ignoring case, schedule ids exactly), and at most
/// `max_schedules` of them, so that a request naming hundreds cannot make a decision cost
/// hundreds of lookups.
pub fn schedules(request: &AccessRequest, cfg: &PolicySettings) -> Schedules {
    let annotated = request.annotation(SCHEDULES_ANNOTATION);
    let given: Vec<&str> = if annotated.is_empty() {
        cfg.default_schedules.iter().map(|s| s.trim()).collect()
    } else {
        annotated.iter().map(|s| s.trim()).collect()
    };
    let mut seen: Vec<String> = Vec::new();
    let mut distinct: Vec<String> = Vec::new();
    for schedule in given.into_iter().filter(|s| !s.is_empty()) {
        let key = if is_schedule_id(schedule) {
            schedule.to_owned()
        } else {
            schedule.to_lowercase()
        };
        if !seen.contains(&key) {
            seen.push(key);
            distinct.push(schedule.to_owned());
        }
    }
    let skipped = distinct.len().saturating_sub(cfg.max_schedules);
    distinct.truncate(cfg.max_schedules);
    Schedules {
        consulted: distinct,
        skipped,
    }
}

/// The schedules consulted for `request` (see [`schedules`]).
pub fn approval_schedules(request: &AccessRequest, cfg: &PolicySettings) -> Vec<String> {
    schedules(request, cfg).consulted
}

/// Whether `schedule` is an Opsgenie schedule id (a UUID) rather than a name.
pub fn is_schedule_id(schedule: &str) -> bool {
    let groups: Vec<&str> = schedule.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Everything that can be checked without asking who is on call. On success, the schedules to
/// look up, in order.
pub fn precheck(
    request: &AccessRequest,
    cfg: &PolicySettings,
    now: SystemTime,
) -> Result<Vec<String>, Declined> {
    if !cfg.enabled {
        return Err(Declined::Disabled);
    }
    if !request.resources.is_empty() && !cfg.allow_resource_requests {
        return Err(Declined::ResourceRequest);
    }
    for role in &request.roles {
        if cfg.denied_roles.iter().any(|p| glob_match(p, role)) {
            return Err(Declined::RoleDenied { role: role.clone() });
        }
        if !cfg.allowed_roles.is_empty() && !cfg.allowed_roles.iter().any(|p| glob_match(p, role)) {
            return Err(Declined::RoleNotAllowed { role: role.clone() });
        }
    }
    if let Some(max) = cfg.max_duration {
        let end = request
            .max_duration
            .or(request.access_expiry)
            .ok_or(Declined::UnknownDuration)?;
        let start = request.created.unwrap_or(now);
        let requested = end.duration_since(start).unwrap_or_default();
        if requested > max {
            return Err(Declined::TooLong { requested, max });
        }
    }
    let schedules = approval_schedules(request, cfg);
    if schedules.is_empty() {
        return Err(Declined::NoSchedules);
    }
    Ok(schedules)
}

use crate::core::oncall_user::{self, Found, Rules};
pub use crate::core::oncall_user::{Email, Match, MatchRule, OnCallUser};

/// Finds `teleport_user` among the users `on_call` (Opsgenie usernames, or
/// [`OnCallUser`]s with JSM's accountIds): explicit map, then user name, then user name plus
/// domain; the rules are [`oncall_user::find`]'s.
///
/// An explicit mapping is authoritative: when `auto_approval.users` names the Teleport user,
/// only the mapped user counts, so a different account that happens to share the Teleport
/// name cannot approve on the requester's behalf.
pub fn match_user<U: Clone + Into<OnCallUser>>(
    teleport_user: &str,
    on_call: &[U],
    cfg: &PolicySettings,
) -> Option<Match> {
    match find(teleport_user, on_call, cfg) {
        Found::Yes(matched) => Some(matched),
        _ => None,
    }
}

fn find<U: Clone + Into<OnCallUser>>(
    teleport_user: &str,
    on_call: &[U],
    cfg: &PolicySettings,
) -> Found {
    let users: Vec<OnCallUser> = on_call.iter().cloned().map(Into::into).collect();
    oncall_user::find(
        teleport_user,
        &users,
        Rules {
            users: &cfg.users,
            user_domain: cfg.user_domain.as_deref(),
        },
    )
}

/// What the policy concluded for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Approve: the requester is on call in `schedule`.
    Approve {
        /// The schedule the requester is on call in.
        schedule: String,
        /// How the requester was recognised.
        matched: Match,
    },
    /// Do not approve; the text says why (starts with "Not auto-approved:").
    Decline(String),
    /// Nobody matched and some lookups failed: the answer is unknown, not "no".
    LookupFailed {
        /// `(schedule, error)` for every failed lookup.
        errors: Vec<(String, String)>,
    },
}

/// Decides on `request`, given the on-call lookups made so far as `(schedule, users or error)`.
/// The caller may stop looking up at the first match; schedules not looked up do not count.
pub fn decide<U: Clone + Into<OnCallUser>>(
    request: &AccessRequest,
    cfg: &PolicySettings,
    now: SystemTime,
    lookups: &[(String, Result<Vec<U>, String>)],
) -> Verdict {
    let schedules = match precheck(request, cfg, now) {
        Ok(schedules) => schedules,
        Err(declined) => return Verdict::Decline(format!("Not auto-approved: {declined}")),
    };
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut hidden: Vec<OnCallUser> = Vec::new();
    for (schedule, answer) in lookups {
        match answer.as_ref().map(|users| find(&request.user, users, cfg)) {
            Ok(Found::Yes(matched)) => {
                return Verdict::Approve {
                    schedule: schedule.clone(),
                    matched,
                }
            }
            Ok(Found::No { hidden: more }) => {
                for user in more {
                    if !hidden.iter().any(|h| h.id == user.id) {
                        hidden.push(user);
                    }
                }
            }
            // Users whose e-mail could not be read: "not on call" cannot be told.
            Ok(Found::Unknown(reasons)) => errors.push((schedule.clone(), reasons.join("; "))),
            Err(e) => errors.push((schedule.clone(), e.clone())),
        }
    }
    if !errors.is_empty() {
        return Verdict::LookupFailed { errors };
    }
    let checked: Vec<&String> = if lookups.is_empty() {
        schedules.iter().collect()
    } else {
        lookups.iter().map(|(s, _)| s).collect()
    };
    let skipped = self::schedules(request, cfg).skipped;
    let unchecked = match skipped {
        0 => String::new(),
        n => format!(
            " ({n} more schedule{} not checked: auto_approval.max_schedules is {})",
            if n == 1 { " was" } else { "s were" },
            cfg.max_schedules
        ),
    };
    Verdict::Decline(format!(
        "Not auto-approved: {} is not on call in {}{unchecked}{}",
        request.user,
        quoted_list(&checked),
        oncall_user::hidden_hint(&request.user, &hidden)
    ))
}

/// The reason given with an approving review and on the alert.
pub fn approval_reason(teleport_user: &str, schedule: &str, matched: &Match) -> String {
    let as_user = if same_name(teleport_user, &matched.opsgenie_user) {
        String::new()
    } else {
        format!(" as {}", matched.opsgenie_user)
    };
    format!(
        "Auto-approved: {teleport_user} is on call in Opsgenie schedule \"{schedule}\"{as_user} (matched by {})",
        matched.rule.as_str()
    )
}

/// The text for failed lookups. `gave_up_after` is `None` while the lookup will be retried, and
/// the number of attempts made once retries are exhausted: then the request is declined and the
/// text says so.
pub fn lookup_failed_reason(errors: &[(String, String)], gave_up_after: Option<u32>) -> String {
    let details = errors
        .iter()
        .map(|(schedule, error)| {
            format!("could not look up who is on call in \"{schedule}\": {error}")
        })
        .collect::<Vec<_>>()
        .join("; ");
    match gave_up_after {
        None => format!("Not auto-approved yet: {details}"),
        Some(1) => format!("Not auto-approved: {details} (no retries configured)"),
        Some(n) => format!("Not auto-approved: {details} (gave up after {n} attempts)"),
    }
}

fn quoted_list(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

use crate::core::oncall_user::same_name;

/// A duration in whole seconds, as humantime writes it (`12h`, `1h 30m`).
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (including none)
/// and every other character matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it is currently assumed to stretch to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            // Let the last `*` swallow one more character and try again after it.
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::ResourceId;
    use std::time::UNIX_EPOCH;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn request(user: &str, roles: &[&str]) -> AccessRequest {
        AccessRequest {
            created: Some(t0()),
            access_expiry: Some(t0() + 4 * HOUR),
            ..AccessRequest::example("r1", user, roles)
        }
    }

    fn cfg() -> PolicySettings {
        PolicySettings {
            enabled: true,
            default_schedules: vec!["Primary".into()],
            ..Default::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn glob_table() {
        let cases = [
            ("editor", "editor", true),
            ("editor", "editors", false),
            ("*", "", true),
            ("*", "anything", true),
            ("db-*", "db-admin", true),
            ("db-*", "db-", true),
            ("db-*", "xdb-admin", false),
            ("*-admin", "db-admin", true),
            ("*-admin", "db-admin-ro", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "abcabc", true),
            ("a*b*c", "acb", false),
            ("**", "x", true),
            ("", "", true),
            ("", "x", false),
            ("prod-*-ro", "prod-db-ro", true),
            ("prod-*-ro", "prod-db-rw", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(glob_match(pattern, name), want, "{pattern:?} vs {name:?}");
        }
    }

    #[test]
    fn schedules_come_from_the_annotation_else_the_defaults() {
        let c = PolicySettings {
            default_schedules: strings(&["D1", " D1 ", "", "D2"]),
            ..cfg()
        };
        let mut req = request("alice", &["editor"]);
        assert_eq!(approval_schedules(&req, &c), vec!["D1", "D2"]);
        req.system_annotations
            .insert(SCHEDULES_ANNOTATION.into(), strings(&["S1", "S2"]));
        assert_eq!(approval_schedules(&req, &c), vec!["S1", "S2"]);
    }

    #[test]
    fn precheck_table() {
        let now = t0() + Duration::from_secs(60);
        let base = request("alice", &["editor"]);
        let with = |f: &dyn Fn(&mut AccessRequest, &mut PolicySettings)| {
            let mut r = base.clone();
            let mut c = cfg();
            f(&mut r, &mut c);
            precheck(&r, &c, now)
        };
        let primary = Ok(strings(&["Primary"]));
        let cases: Vec<(&str, Result<Vec<String>, Declined>)> = vec![
            ("plain", with(&|_, _| {})),
            ("disabled", with(&|_, c| c.enabled = false)),
            ("no schedules", with(&|_, c| c.default_schedules.clear())),
            (
                "annotation schedules",
                with(&|r, c| {
                    c.default_schedules.clear();
                    r.system_annotations
                        .insert(SCHEDULES_ANNOTATION.into(), strings(&["S1"]));
                }),
            ),
            (
                "denied by glob",
                with(&|r, c| {
                    r.roles = strings(&["editor", "db-admin"]);
                    c.denied_roles = strings(&["db-*"]);
                }),
            ),
            (
                "denied wins over allowed",
                with(&|r, c| {
                    r.roles = strings(&["db-admin"]);
                    c.allowed_roles = strings(&["*"]);
                    c.denied_roles = strings(&["db-admin"]);
                }),
            ),
            (
                "not allowed",
                with(&|r, c| {
                    r.roles = strings(&["editor", "auditor"]);
                    c.allowed_roles = strings(&["editor"]);
                }),
            ),
            (
                "all allowed",
                with(&|r, c| {
                    r.roles = strings(&["editor", "viewer-prod"]);
                    c.allowed_roles = strings(&["editor", "viewer-*"]);
                }),
            ),
            (
                "resource request",
                with(&|r, _| {
                    r.resources = vec![ResourceId {
                        cluster: "c".into(),
                        kind: "node".into(),
                        name: "web-1".into(),
                        sub_resource: String::new(),
                    }]
                }),
            ),
            (
                "resource request allowed",
                with(&|r, c| {
                    c.allow_resource_requests = true;
                    r.resources = vec![ResourceId {
                        cluster: "c".into(),
                        kind: "node".into(),
                        name: "web-1".into(),
                        sub_resource: String::new(),
                    }]
                }),
            ),
            (
                "access expiry too long",
                with(&|r, c| {
                    c.max_duration = Some(8 * HOUR);
                    r.access_expiry = Some(t0() + 12 * HOUR);
                }),
            ),
            (
                "max duration wins over access expiry",
                with(&|r, c| {
                    c.max_duration = Some(8 * HOUR);
                    r.access_expiry = Some(t0() + 30 * HOUR);
                    r.max_duration = Some(t0() + 8 * HOUR);
                }),
            ),
            (
                "no creation time: measured from now",
                with(&|r, c| {
                    c.max_duration = Some(8 * HOUR);
                    r.created = None;
                    r.access_expiry = Some(t0() + 8 * HOUR);
                }),
            ),
            (
                "unknown end",
                with(&|r, c| {
                    c.max_duration = Some(8 * HOUR);
                    r.access_expiry = None;
                }),
            ),
            (
                "unknown end without a limit",
                with(&|r, _| r.access_expiry = None),
            ),
        ];
        let want: Vec<Result<Vec<String>, Declined>> = vec![
            primary.clone(),
            Err(Declined::Disabled),
            Err(Declined::NoSchedules),
            Ok(strings(&["S1"])),
            Err(Declined::RoleDenied {
                role: "db-admin".into(),
            }),
            Err(Declined::RoleDenied {
                role: "db-admin".into(),
            }),
            Err(Declined::RoleNotAllowed {
                role: "auditor".into(),
            }),
            primary.clone(),
            Err(Declined::ResourceRequest),
            primary.clone(),
            Err(Declined::TooLong {
                requested: 12 * HOUR,
                max: 8 * HOUR,
            }),
            primary.clone(),
            primary.clone(),
            Err(Declined::UnknownDuration),
            primary,
        ];
        assert_eq!(cases.len(), want.len());
        for ((name, got), want) in cases.into_iter().zip(want) {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn decline_texts() {
        assert_eq!(
            Declined::RoleDenied {
                role: "db-admin".into()
            }
            .to_string(),
            "role `db-admin` is denied by auto_approval.denied_roles"
        );
        assert_eq!(
            Declined::TooLong {
                requested: 12 * HOUR,
                max: 8 * HOUR
            }
            .to_string(),
            "access of 12h exceeds the maximum of 8h"
        );
        assert_eq!(
            Declined::TooLong {
                requested: 90 * 60 * Duration::from_secs(1) + Duration::from_millis(5),
                max: HOUR
            }
            .to_string(),
            "access of 1h 30m exceeds the maximum of 1h"
        );
        assert_eq!(
            Declined::ResourceRequest.to_string(),
            "requests for specific resources need a human reviewer"
        );
    }

    #[test]
    fn match_user_table() {
        let c = PolicySettings {
            user_domain: Some("example.com".into()),
            users: BTreeMap::from([
                ("Bob".to_string(), "robert@corp.example".to_string()),
                ("carol".to_string(), "carol@other.example".to_string()),
            ]),
            ..cfg()
        };
        let on_call = strings(&[
            "Alice@Example.com",
            "robert@corp.example",
            "carol@example.com",
            "dave",
        ]);
        let m = |user: &str, rule| {
            Some(Match {
                opsgenie_user: user.into(),
                backend_id: user.into(),
                rule,
            })
        };
        let cases = [
            (
                "alice@example.com",
                m("Alice@Example.com", MatchRule::Username),
            ),
            ("ALICE", m("Alice@Example.com", MatchRule::UserDomain)),
            ("bob", m("robert@corp.example", MatchRule::ExplicitMap)),
            // The explicit map is authoritative: carol's mapped account is not on call, and
            // carol@example.com (found by user_domain) must not stand in for it.
            ("carol", None),
            ("Dave", m("dave", MatchRule::Username)),
            ("eve", None),
            // Names with '@' never get the domain appended.
            ("alice@elsewhere", None),
        ];
        for (user, want) in cases {
            assert_eq!(match_user(user, &on_call, &c), want, "{user}");
        }
        let no_domain = PolicySettings {
            user_domain: Some("  ".into()),
            ..cfg()
        };
        assert_eq!(match_user("alice", &on_call, &no_domain), None);
        assert_eq!(
            match_user("alice", &on_call, &cfg()),
            None,
            "no user_domain"
        );
    }

    #[test]
    fn rule_names() {
        assert_eq!(MatchRule::ExplicitMap.as_str(), "explicit map");
        assert_eq!(MatchRule::Username.as_str(), "username");
        assert_eq!(MatchRule::UserDomain.as_str(), "user_domain");
    }

    #[test]
    fn decide_table() {
        let now = t0();
        let req = request("alice@example.com", &["editor"]);
        let ok = |s: &str, users: &[&str]| (s.to_string(), Ok(strings(users)));
        let err = |s: &str, e: &str| (s.to_string(), Err(e.to_string()));
        let c = cfg();

        assert_eq!(
            decide(
                &req,
                &c,
                now,
                &[ok("S1", &["bob"]), ok("S2", &["alice@example.com"])]
            ),
            Verdict::Approve {
                schedule: "S2".into(),
                matched: Match {
                    opsgenie_user: "alice@example.com".into(),
                    backend_id: "alice@example.com".into(),
                    rule: MatchRule::Username
                }
            }
        );
        // A match wins over another schedule's failure.
        assert!(matches!(
            decide(
                &req,
                &c,
                now,
                &[err("S1", "503"), ok("S2", &["alice@example.com"])]
            ),
            Verdict::Approve { .. }
        ));
        assert_eq!(
            decide(&req, &c, now, &[ok("S1", &["bob"]), ok("S2", &[])]),
            Verdict::Decline(
                "Not auto-approved: alice@example.com is not on call in \"S1\", \"S2\"".into()
            )
        );
        // A failure is never read as "not on call".
        assert_eq!(
            decide(&req, &c, now, &[ok("S1", &["bob"]), err("S2", "timeout")]),
            Verdict::LookupFailed {
                errors: vec![("S2".into(), "timeout".into())]
            }
        );
        // Policy declines come first, whatever the lookups say.
        let denied = PolicySettings {
            denied_roles: strings(&["edit*"]),
            ..cfg()
        };
        assert_eq!(
            decide(&req, &denied, now, &[ok("S1", &["alice@example.com"])]),
            Verdict::Decline(
                "Not auto-approved: role `editor` is denied by auto_approval.denied_roles".into()
            )
        );
        assert_eq!(
            decide::<String>(&req, &c, now, &[]),
            Verdict::Decline(
                "Not auto-approved: alice@example.com is not on call in \"Primary\"".into()
            )
        );
    }

    #[test]
    fn reason_texts() {
        let m = Match {
            opsgenie_user: "alice@example.com".into(),
            backend_id: "alice@example.com".into(),
            rule: MatchRule::Username,
        };
        assert_eq!(
            approval_reason("alice@example.com", "Primary", &m),
            "Auto-approved: alice@example.com is on call in Opsgenie schedule \"Primary\" (matched by username)"
        );
        let mapped = Match {
            opsgenie_user: "robert@corp.example".into(),
            backend_id: "robert@corp.example".into(),
            rule: MatchRule::ExplicitMap,
        };
        assert_eq!(
            approval_reason("bob", "Primary", &mapped),
            "Auto-approved: bob is on call in Opsgenie schedule \"Primary\" as robert@corp.example (matched by explicit map)"
        );
        let errors = vec![("S1".to_string(), "HTTP 503".to_string())];
        assert_eq!(
            lookup_failed_reason(&errors, None),
            "Not auto-approved yet: could not look up who is on call in \"S1\": HTTP 503"
        );
        assert_eq!(
            lookup_failed_reason(&errors, Some(4)),
            "Not auto-approved: could not look up who is on call in \"S1\": HTTP 503 (gave up after 4 attempts)"
        );
    }

    #[test]
    fn schedules_are_deduplicated_and_capped() {
        const ID: &str = "6f1c2f4e-8a3b-4c2d-9e1f-0a1b2c3d4e5f";
        const ID_UPPER: &str = "6F1C2F4E-8A3B-4C2D-9E1F-0A1B2C3D4E5F";
        let many: Vec<String> = (0..500).map(|i| format!("S{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        // (case, schedules named, max_schedules, consulted, skipped)
        type Case<'a> = (&'a str, Vec<&'a str>, usize, Vec<&'a str>, usize);
        let cases: Vec<Case<'_>> = vec![
            (
                "names ignore case",
                vec!["Primary", "primary", " PRIMARY "],
                10,
                vec!["Primary"],
                0,
            ),
            (
                "ids are exact",
                vec![ID, ID_UPPER, ID],
                10,
                vec![ID, ID_UPPER],
                0,
            ),
            ("order is kept", vec!["b", "a", "B"], 10, vec!["b", "a"], 0),
            ("blanks dropped", vec!["", " ", "a"], 10, vec!["a"], 0),
            ("capped", vec!["a", "b", "c", "d"], 2, vec!["a", "b"], 2),
            (
                "duplicates do not count towards the cap",
                vec!["a", "A", "b"],
                2,
                vec!["a", "b"],
                0,
            ),
            ("500 named", many.clone(), 10, many[..10].to_vec(), 490),
        ];
        for (name, given, cap, consulted, skipped) in cases {
            let mut req = request("alice", &["dev"]);
            req.system_annotations
                .insert(SCHEDULES_ANNOTATION.into(), strings(&given));
            let c = PolicySettings {
                max_schedules: cap,
                ..cfg()
            };
            assert_eq!(
                schedules(&req, &c),
                Schedules {
                    consulted: strings(&consulted),
                    skipped
                },
                "{name}"
            );
        }
    }

    #[test]
    fn a_decline_says_which_schedules_were_not_checked() {
        let mut req = request("alice", &["dev"]);
        req.system_annotations
            .insert(SCHEDULES_ANNOTATION.into(), strings(&["a", "b", "c", "d"]));
        let c = PolicySettings {
            max_schedules: 2,
            ..cfg()
        };
        let cases: Vec<(usize, &str)> = vec![
            (
                2,
                " (2 more schedules were not checked: auto_approval.max_schedules is 2)",
            ),
            (
                3,
                " (1 more schedule was not checked: auto_approval.max_schedules is 3)",
            ),
            (4, ""),
        ];
        for (cap, tail) in cases {
            let c = PolicySettings {
                max_schedules: cap,
                ..c.clone()
            };
            let consulted = approval_schedules(&req, &c);
            assert_eq!(consulted.len(), cap);
            let lookups: Vec<(String, Result<Vec<String>, String>)> = consulted
                .iter()
                .map(|s| (s.clone(), Ok(vec!["bob".to_owned()])))
                .collect();
            let Verdict::Decline(text) = decide(&req, &c, t0(), &lookups) else {
                panic!("cap {cap}: not a decline");
            };
            let checked = consulted
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ");
            assert_eq!(
                text,
                format!("Not auto-approved: alice is not on call in {checked}{tail}")
            );
        }
        // An approval is unaffected by the schedules left out.
        let lookups = vec![("a".to_owned(), Ok(vec!["alice".to_owned()]))];
        assert!(matches!(
            decide(&req, &c, t0(), &lookups),
            Verdict::Approve { .. }
        ));
    }

    fn jsm_user(id: &str, email: Email) -> OnCallUser {
        OnCallUser {
            id: id.into(),
            email,
            display_name: "Alice A.".into(),
        }
    }

    #[test]
    fn jsm_hidden_email_declines_naming_the_entry_and_unreadable_ones_are_failures() {
        let req = request("alice", &["editor"]);
        let c = PolicySettings {
            user_domain: Some("example.com".into()),
            ..cfg()
        };
        let hidden = vec![(
            "Primary".to_owned(),
            Ok(vec![jsm_user("acc-1", Email::Hidden)]),
        )];
        let Verdict::Decline(text) = decide(&req, &c, t0(), &hidden) else {
            panic!("not a decline")
        };
        assert_eq!(
            text,
            "Not auto-approved: alice is not on call in \"Primary\"; Alice A. (accountId acc-1) is on call but their Atlassian profile hides the e-mail: if that is alice, add `auto_approval.users: {\"alice\": \"acc-1\"}`"
        );
        // With the entry, approved, and the reason names the accountId.
        let mapped = PolicySettings {
            users: [("alice".to_owned(), "acc-1".to_owned())].into(),
            ..c.clone()
        };
        let Verdict::Approve { schedule, matched } = decide(&req, &mapped, t0(), &hidden) else {
            panic!("not approved")
        };
        assert_eq!(
            approval_reason("alice", &schedule, &matched),
            "Auto-approved: alice is on call in Opsgenie schedule \"Primary\" as acc-1 (matched by explicit map)"
        );
        // A visible e-mail matches by the domain rule.
        let visible = vec![(
            "Primary".to_owned(),
            Ok(vec![jsm_user(
                "acc-1",
                Email::Known("alice@example.com".into()),
            )]),
        )];
        assert!(matches!(
            decide(&req, &c, t0(), &visible),
            Verdict::Approve {
                matched: Match {
                    rule: MatchRule::UserDomain,
                    ..
                },
                ..
            }
        ));
        // An e-mail that could not be read is a failed lookup, never "not on call".
        let unreadable = vec![(
            "Primary".to_owned(),
            Ok(vec![jsm_user("acc-2", Email::Unknown("HTTP 503".into()))]),
        )];
        let Verdict::LookupFailed { errors } = decide(&req, &c, t0(), &unreadable) else {
            panic!("not a failure")
        };
        assert_eq!(errors[0].0, "Primary");
        assert!(errors[0].1.contains("acc-2"), "{errors:?}");
    }
}
