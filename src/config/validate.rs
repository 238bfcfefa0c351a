//! What the values mean: credentials, addresses, limits. Runs on the typed configuration.

use std::time::Duration;

use super::files::{check_readable, read_api_key_file};
use super::problem::ConfigProblem;
use super::ranges::check_ranges;
use super::safe;
use super::{Config, Secret};

/// Opsgenie's limits on alert tags.
pub(super) const MAX_TAGS: usize = 20;
pub(super) const MAX_TAG_CHARS: usize = 50;
/// Opsgenie's limit on an alert's `source`.
pub(super) const MAX_SOURCE_CHARS: usize = 100;

/// Accepted `log.level` values.
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// Checks what the values mean; fills `opsgenie.api_key` from `opsgenie.api_key_file`.
pub(super) fn check_semantics(mut config: Config) -> (Config, Vec<ConfigProblem>) {
    let mut problems = Vec::new();
    check_teleport(&config, &mut problems);
    check_opsgenie(&mut config, &mut problems);
    super::jsm_checks::check_jsm(&mut config, &mut problems);
    check_auto_approval(&config, &mut problems);
    check_log_and_daemon(&config, &mut problems);
    // Every duration and count against its range (ranges.rs), including those above.
    check_ranges(&config, &mut problems);
    (config, problems)
}

pub(super) fn check_teleport(config: &Config, problems: &mut Vec<ConfigProblem>) {
    let t = &config.teleport;
    if let Some(problem) = check_host_port("teleport.addr", &t.addr) {
        problems.push(problem);
    }

    let trio = [
        ("teleport.client_key", &t.client_key),
        ("teleport.client_crt", &t.client_crt),
        ("teleport.root_cas", &t.root_cas),
    ];
    let set: Vec<&str> = trio
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| *k)
        .collect();
    let missing: Vec<&str> = trio
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    let quoted = |keys: &[&str]| {
        keys.iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (&t.identity, set.len()) {
        (Some(_), 0) => {}
        (Some(_), _) => problems.push(
            ConfigProblem::new(
                "teleport.identity",
                format!("cannot be combined with {}", quoted(&set)),
            )
            .hint("use either an identity file or the key, certificate and CAs, not both"),
        ),
        (None, 0) => problems.push(
            ConfigProblem::new(
                "teleport.identity",
                "no credentials: set `teleport.identity`, or all of `teleport.client_key`, `teleport.client_crt` and `teleport.root_cas`",
            )
            .hint("tctl auth sign --user=access-plugin --out=auth.pem --ttl=2190h writes an identity file"),
        ),
        (None, 3) => {}
        (None, _) => problems.push(
            ConfigProblem::new(
                "teleport",
                format!(
                    "{} {} set but {} {} missing",
                    quoted(&set),
                    if set.len() == 1 { "is" } else { "are" },
                    quoted(&missing),
                    if missing.len() == 1 { "is" } else { "are" },
                ),
            )
            .hint("tctl auth sign --format=tls writes the three files together; or use `teleport.identity`"),
        ),
    }
    if let Some(path) = &t.identity {
        check_readable("teleport.identity", path, problems);
    }
    for (key, value) in trio {
        if let Some(path) = value {
            check_readable(key, path, problems);
        }
    }
    if t.cluster_name
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        problems.push(
            ConfigProblem::new("teleport.cluster_name", "is empty")
                .hint("remove it to read the cluster name from the identity"),
        );
    }
    if let Some(addr) = &t.web_proxy_addr {
        if let Some(problem) = check_web_proxy_addr(addr) {
            problems.push(problem);
        }
    }
    if t.plugin_name.trim().is_empty() {
        problems.push(ConfigProblem::new("teleport.plugin_name", "is empty"));
    } else if t.plugin_name.chars().any(char::is_whitespace) {
        problems.push(ConfigProblem::new(
            "teleport.plugin_name",
            "must not contain whitespace",
        ));
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub(super) fn check_host_port(key: &str, addr: &str) -> Option<ConfigProblem> {
    let hint =
        "e.g. teleport.example.com:443 for the Proxy or auth.example.com:3025 for the Auth Service";
    if addr.contains("://") {
        return Some(
            ConfigProblem::new(
                key,
                format!("expected host:port, not a URL: {}", safe::show(addr)),
            )
            .hint("drop the scheme, e.g. teleport.example.com:443"),
        );
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Some(
            ConfigProblem::new(key, format!("{} has no port", safe::show(addr)))
                .hint("the Auth Service listens on 3025, the Proxy on 443 or 3080"),
        );
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Some(
            ConfigProblem::new(
                key,
                format!("{} has no valid host before the port", safe::show(addr)),
            )
            .hint(hint),
        );
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Some(
            ConfigProblem::new(
                key,
                format!("{}: an IPv6 address needs brackets", safe::show(addr)),
            )
            .hint("e.g. [::1]:3025"),
        );
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => None,
        _ => Some(
            ConfigProblem::new(
                key,
                format!("{} has no valid port (1 to 65535)", safe::show(addr)),
            )
            .hint(hint),
        ),
    }
}

pub(super) fn check_web_proxy_addr(addr: &str) -> Option<ConfigProblem> {
    let key = "teleport.web_proxy_addr";
    let trimmed = addr.trim();
    if trimmed.is_empty() {
        return Some(
            ConfigProblem::new(key, "is empty").hint("remove it to leave links out of alerts"),
        );
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("https://{trimmed}")
    };
    match url::Url::parse(&with_scheme) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => None,
        Ok(_) => Some(
            ConfigProblem::new(key, "must be a host name or an https:// URL")
                .hint("e.g. teleport.example.com or https://teleport.example.com:443"),
        ),
        Err(e) => Some(
            ConfigProblem::new(key, format!("is not a valid address: {e}"))
                .hint("e.g. teleport.example.com or https://teleport.example.com:443"),
        ),
    }
}

pub(super) fn check_opsgenie(config: &mut Config, problems: &mut Vec<ConfigProblem>) {
    let sweep_enabled = !config.daemon.orphan_sweep_interval.is_zero();
    let o = &mut config.opsgenie;

    match (&o.api_key, &o.api_key_file) {
        (Some(_), Some(_)) => problems.push(
            ConfigProblem::new(
                "opsgenie.api_key",
                "both `opsgenie.api_key` and `opsgenie.api_key_file` are set",
            )
            .hint("keep only `api_key_file`, so the key stays out of the config and the environment"),
        ),
        (Some(key), None) => {
            let trimmed = key.expose().trim();
            if trimmed.is_empty() {
                problems.push(ConfigProblem::new("opsgenie.api_key", "is empty"));
            } else if looks_like_a_path(trimmed) {
                // Teleport's plugins read `api_key` from a file when it starts with '/'; here
                // the file has its own key. The value is not shown: it sits in a secret field.
                problems.push(
                    ConfigProblem::new(
                        "opsgenie.api_key",
                        "holds a file path, not a key (Teleport's plugins read a key file named there; teleport-opsgenie has `opsgenie.api_key_file` for that)",
                    )
                    .hint("rename `api_key` to `api_key_file`"),
                );
            } else if trimmed.len() != key.expose().len() {
                // Keys pasted with a trailing newline are common; whitespace is never part of one.
                o.api_key = Some(Secret::new(trimmed));
            }
        }
        (None, Some(path)) => match read_api_key_file(path).map_err(ConfigProblem::about_a_file) {
            Ok(key) => o.api_key = Some(key),
            Err(problem) => problems.push(problem),
        },
        (None, None) => problems.push(
            ConfigProblem::new(
                "opsgenie.api_key_file",
                "no API key: set `opsgenie.api_key_file` or `opsgenie.api_key`",
            )
            .hint("create an API integration in Opsgenie and store its key in a file readable only by the daemon"),
        ),
    }

    if let Some(url) = &o.api_url {
        match url::Url::parse(url) {
            Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => problems.push(
                ConfigProblem::new("opsgenie.api_url", "must be an http:// or https:// URL")
                    .hint("e.g. https://api.eu.opsgenie.com"),
            ),
            Ok(parsed) if parsed.host().is_none() => {
                problems.push(ConfigProblem::new("opsgenie.api_url", "has no host"))
            }
            Ok(_) => {}
            Err(e) => problems.push(
                ConfigProblem::new("opsgenie.api_url", format!("is not a valid URL: {e}"))
                    .hint("e.g. https://api.eu.opsgenie.com; remove it to use `region`"),
            ),
        }
    }

    if !matches!(o.priority.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") {
        let problem = ConfigProblem::new(
            "opsgenie.priority",
            format!(
                "expected one of P1, P2, P3, P4, P5, got {}",
                safe::show(&o.priority)
            ),
        );
        let upper = o.priority.trim().to_ascii_uppercase();
        problems.push(
            if matches!(upper.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") {
                problem.hint(format!("write {upper}"))
            } else {
                problem
            },
        );
    }

    if o.tags.len() > MAX_TAGS {
        problems.push(ConfigProblem::new(
            "opsgenie.tags",
            format!(
                "has {} tags; Opsgenie allows at most {MAX_TAGS}",
                o.tags.len()
            ),
        ));
    }
    for tag in &o.tags {
        if tag.trim().is_empty() {
            problems.push(ConfigProblem::new("opsgenie.tags", "contains an empty tag"));
        } else if tag.chars().count() > MAX_TAG_CHARS {
            problems.push(ConfigProblem::new(
                "opsgenie.tags",
                format!(
                    "tag {} has {} characters; Opsgenie allows at most {MAX_TAG_CHARS}",
                    safe::show(tag),
                    tag.chars().count()
                ),
            ));
        }
    }
    if o.tags.is_empty() && sweep_enabled {
        problems.push(
            ConfigProblem::new(
                "opsgenie.tags",
                "is empty, but the orphan sweep finds the daemon's alerts by the first tag",
            )
            .hint("add a tag, or set daemon.orphan_sweep_interval to 0s"),
        );
    }
    for (key, names) in [
        ("opsgenie.default_schedules", &o.default_schedules),
        ("opsgenie.default_teams", &o.default_teams),
    ] {
        problems.extend(blank_entry(key, names, "name"));
    }
    if o.source.trim().is_empty() {
        problems.push(ConfigProblem::new("opsgenie.source", "is empty"));
    } else if o.source.chars().count() > MAX_SOURCE_CHARS {
        problems.push(ConfigProblem::new(
            "opsgenie.source",
            format!("is longer than Opsgenie's limit of {MAX_SOURCE_CHARS} characters"),
        ));
    }
    if o.heartbeat_name.trim().is_empty() {
        problems.push(ConfigProblem::new("opsgenie.heartbeat_name", "is empty"));
    }
}

pub(super) fn check_auto_approval(config: &Config, problems: &mut Vec<ConfigProblem>) {
    let a = &config.auto_approval;
    let jsm = config.opsgenie.backend == super::BackendKind::Jsm;
    if let Some(domain) = &a.user_domain {
        if domain.trim().is_empty() {
            problems.push(ConfigProblem::new("auto_approval.user_domain", "is empty"));
        } else if domain.contains('@') {
            problems.push(
                ConfigProblem::new("auto_approval.user_domain", "must not contain '@'").hint(
                    format!(
                        "write {}; the '@' is added",
                        safe::show(domain.trim_start_matches('@'))
                    ),
                ),
            );
        } else if domain.chars().any(char::is_whitespace) {
            problems.push(ConfigProblem::new(
                "auto_approval.user_domain",
                "must not contain whitespace",
            ));
        }
    }
    for (user, email) in &a.users {
        let key = format!("auto_approval.users.{user}");
        if user.trim().is_empty() {
            problems.push(ConfigProblem::new(key, "has an empty Teleport user name"));
        } else if jsm && !email.contains('@') {
            // On JSM an entry may name the Atlassian accountId instead, which is the only way
            // to match a user whose profile hides their e-mail.
            if !is_account_id(email.trim()) {
                problems.push(
                    ConfigProblem::new(
                        key,
                        format!(
                            "{} is neither an e-mail address nor an Atlassian accountId",
                            safe::show(email)
                        ),
                    )
                    .hint("an accountId looks like 5b2b0e011b3a756623f4e25e or 557058:f58131cb-b67d-43c7-b30d-6b58d40bd077 (the end of the user's profile URL)"),
                );
            }
        } else if !email.contains('@') {
            problems.push(
                ConfigProblem::new(
                    key,
                    format!("{} is not an e-mail address", safe::show(email)),
                )
                .hint("Opsgenie identifies users by their e-mail address"),
            );
        }
    }
    for (key, items, what) in [
        (
            "auto_approval.allowed_roles",
            &a.allowed_roles,
            "role pattern",
        ),
        (
            "auto_approval.denied_roles",
            &a.denied_roles,
            "role pattern",
        ),
        (
            "auto_approval.default_schedules",
            &a.default_schedules,
            "name",
        ),
    ] {
        problems.extend(blank_entry(key, items, what));
    }
}

pub(super) fn check_log_and_daemon(config: &Config, problems: &mut Vec<ConfigProblem>) {
    let level = config.log.level.trim().to_ascii_lowercase();
    if !LOG_LEVELS.contains(&level.as_str()) {
        problems.push(
            ConfigProblem::new(
                "log.level",
                format!(
                    "expected one of {}, got {}",
                    LOG_LEVELS.join(", "),
                    safe::show(&config.log.level)
                ),
            )
            .hint("RUST_LOG takes full filter directives and overrides log.level"),
        );
    }
    let d = &config.daemon;
    if !d.retry_min_delay.is_zero() && d.retry_max_delay < d.retry_min_delay {
        problems.push(ConfigProblem::new(
            "daemon.retry_max_delay",
            format!(
                "({}) is shorter than daemon.retry_min_delay ({})",
                fmt_duration(d.retry_max_delay),
                fmt_duration(d.retry_min_delay)
            ),
        ));
    }
}

/// A problem at `key` if one of `items` is blank; `what` names an item in the message.
pub(super) fn blank_entry(key: &str, items: &[String], what: &str) -> Option<ConfigProblem> {
    items
        .iter()
        .any(|item| item.trim().is_empty())
        .then(|| ConfigProblem::new(key, format!("contains an empty {what}")))
}

pub(super) fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Whether an `api_key` value is a file path rather than a key: no key starts with `/`, `./`,
/// `../` or `~/`.
fn looks_like_a_path(value: &str) -> bool {
    ["/", "./", "../", "~/"]
        .iter()
        .any(|start| value.starts_with(start))
}

/// Whether `value` has the shape of an Atlassian accountId: letters, digits, `:` and `-`.
fn is_account_id(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-')
}
