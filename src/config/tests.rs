//! Tests of loading and validation.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::tree::collect_paths;
use super::typo::closest;
use super::validate::check_host_port;
use super::*;
use crate::config::{BackendKind, LogFormat};

/// Writing files into a test's temporary directory.
trait WriteFiles {
    fn write(&self, name: &str, contents: &str) -> PathBuf;
    fn shown(&self, name: &str) -> String;
}

impl WriteFiles for TempDir {
    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        fs::write(&path, contents).unwrap();
        path
    }

    fn shown(&self, name: &str) -> String {
        self.path().join(name).display().to_string()
    }
}

/// A directory with an identity file and an API key file, and env vars pointing at them.
fn creds() -> (TempDir, HashMap<String, String>) {
    let dir = TempDir::new().unwrap();
    let identity = dir.write("auth.pem", "not parsed here\n");
    let key = dir.write("api-key", "  s3cr3t-key-value\n");
    let env = env(&[
        (
            "TELEPORT_OPSGENIE__TELEPORT__IDENTITY",
            &identity.display().to_string(),
        ),
        (
            "TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE",
            &key.display().to_string(),
        ),
    ]);
    (dir, env)
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_with(file: Option<PathBuf>, env: HashMap<String, String>) -> Result<Config, ConfigError> {
    load(&Sources {
        files: file.into_iter().collect(),
        require_files: true,
        env: Some(env),
        ..Sources::default()
    })
}

/// Whether some problem concerns `path` (a dotted key path).
fn mentions(err: &ConfigError, path: &str) -> bool {
    err.problems.iter().any(|p| p.path == path)
}

fn problem<'a>(err: &'a ConfigError, path: &str) -> &'a ConfigProblem {
    err.problems
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem at {path} in:\n{err}"))
}

#[test]
fn defaults_plus_credentials_load_and_the_key_file_is_read() {
    let (_dir, env) = creds();
    let config = load_with(None, env).unwrap();
    assert_eq!(config.teleport.addr, "localhost:3025");
    assert_eq!(
        config.opsgenie.api_key.as_ref().map(Secret::expose),
        Some("s3cr3t-key-value")
    );
}

#[test]
fn env_overrides_file_and_nests_with_double_underscores() {
    let (dir, mut env) = creds();
    let file = dir.write(
        "c.yaml",
        "teleport:\n  addr: file.example.com:3025\n  refresh_identity: true\nopsgenie:\n  priority: P1\n  rate_limits:\n    alert:\n      per_second: 3\n",
    );
    let token = dir.write("jsm-token", "jsm-token\n").display().to_string();
    env.extend(self::env(&[
        ("TELEPORT_OPSGENIE__TELEPORT__ADDR", "env.example.com:443"),
        ("teleport_opsgenie__teleport__refresh_identity", "false"),
        (
            "TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__ALERT__PER_SECOND",
            "7",
        ),
        ("TELEPORT_OPSGENIE__OPSGENIE__MAX_CONCURRENCY", " 4 "),
        ("TELEPORT_OPSGENIE__DAEMON__CLAIM_TTL", "2m"),
        ("TELEPORT_OPSGENIE__LOG__FORMAT", "json"),
        ("TELEPORT_OPSGENIE__OPSGENIE__BACKEND", "jsm"),
        (
            "TELEPORT_OPSGENIE__OPSGENIE__JSM__EMAIL",
            "ops-bot@example.com",
        ),
        ("TELEPORT_OPSGENIE__OPSGENIE__JSM__API_TOKEN_FILE", &token),
        (
            "TELEPORT_OPSGENIE__OPSGENIE__JSM__SITE",
            "example.atlassian.net",
        ),
        ("TELEPORT_OPSGENIE__AUTO_APPROVAL__MAX_DURATION", "8h"),
        ("TELEPORT_OPSGENIE__HTTP__LISTEN", "0.0.0.0:9000"),
        ("UNRELATED", "ignored"),
    ]));
    let config = load_with(Some(file), env).unwrap();
    assert_eq!(config.teleport.addr, "env.example.com:443");
    assert!(!config.teleport.refresh_identity);
    assert_eq!(config.opsgenie.rate_limits.alert.per_second, 7);
    // Untouched file and default values survive next to the overrides.
    assert_eq!(config.opsgenie.rate_limits.alert.per_minute, 300);
    assert_eq!(config.opsgenie.priority, "P1");
    assert_eq!(config.opsgenie.max_concurrency, 4);
    assert_eq!(config.daemon.claim_ttl, Duration::from_secs(120));
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.opsgenie.backend, BackendKind::Jsm);
    // Both JSM credentials from the environment; the token file is read like the key file.
    assert_eq!(
        config.opsgenie.jsm.api_token.as_ref().map(|t| t.expose()),
        Some("jsm-token")
    );
    assert_eq!(
        config.opsgenie.jsm.site_url().as_deref(),
        Some("https://example.atlassian.net")
    );
    assert_eq!(
        config.auto_approval.max_duration,
        Some(Duration::from_secs(8 * 3600))
    );
    assert_eq!(config.http.listen.port(), 9000);
}

#[test]
fn env_lists_are_comma_separated_and_maps_take_pairs() {
    let (_dir, mut env) = creds();
    env.extend(self::env(&[
        (
            "TELEPORT_OPSGENIE__OPSGENIE__TAGS",
            "teleport, access ,,prod",
        ),
        ("TELEPORT_OPSGENIE__OPSGENIE__DEFAULT_TEAMS", ""),
        (
            "TELEPORT_OPSGENIE__AUTO_APPROVAL__DENIED_ROLES",
            "admin*,root",
        ),
        (
            "TELEPORT_OPSGENIE__AUTO_APPROVAL__USERS",
            "alice=alice@example.com, bob = bob@example.com",
        ),
        (
            "TELEPORT_OPSGENIE__AUTO_APPROVAL__USERS__CAROL",
            "carol@example.com",
        ),
    ]));
    let config = load_with(None, env).unwrap();
    assert_eq!(config.opsgenie.tags, ["teleport", "access", "prod"]);
    assert!(config.opsgenie.default_teams.is_empty());
    assert_eq!(config.auto_approval.denied_roles, ["admin*", "root"]);
    let users: Vec<(&str, &str)> = config
        .auto_approval
        .users
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        users,
        [
            ("alice", "alice@example.com"),
            ("bob", "bob@example.com"),
            ("carol", "carol@example.com")
        ]
    );
}

#[test]
fn empty_env_value_clears_an_optional_key() {
    let (dir, mut env) = creds();
    let file = dir.write("c.yaml", "teleport:\n  cluster_name: from-file\n");
    env.insert(
        "TELEPORT_OPSGENIE__TELEPORT__CLUSTER_NAME".into(),
        String::new(),
    );
    let config = load_with(Some(file), env).unwrap();
    assert_eq!(config.teleport.cluster_name, None);
}

#[test]
fn unknown_keys_are_reported_with_suggestions() {
    let (dir, mut env) = creds();
    let file = dir.write(
        "c.yaml",
        "teleprt:\n  addr: x:1\nopsgenie:\n  api_kye: abc\n  rate_limits:\n    alert_writes:\n      per_second: 1\n    heartbeat:\n      per_secnod: 1\nteleport:\n  api_key_file: /x\nnonsense_entirely: 1\n",
    );
    env.insert("TELEPORT_OPSGENIE__OPSGENIE__PRIORTY".into(), "P2".into());
    env.insert("TELEPORT_OPSGENIE__NOPE".into(), "1".into());
    let err = load_with(Some(file), env).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("opsgenie.api_kye: unknown key (did you mean \"api_key\"?; set in file `"),
        "{text}"
    );
    assert_eq!(
        problem(&err, "teleprt").hint.as_deref(),
        Some("did you mean \"teleport\"?")
    );
    assert_eq!(
        problem(&err, "opsgenie.rate_limits.alert_writes")
            .hint
            .as_deref(),
        Some("did you mean \"alert\"?")
    );
    assert_eq!(
        problem(&err, "opsgenie.rate_limits.heartbeat.per_secnod")
            .hint
            .as_deref(),
        Some("did you mean \"per_second\"?")
    );
    // The right key in the wrong section.
    assert_eq!(
        problem(&err, "teleport.api_key_file").hint.as_deref(),
        Some("did you mean \"opsgenie.api_key_file\"?")
    );
    assert_eq!(problem(&err, "nonsense_entirely").hint, None);
    let from_env = problem(&err, "opsgenie.priorty");
    assert!(from_env
        .message
        .contains("TELEPORT_OPSGENIE__OPSGENIE__PRIORTY"));
    assert_eq!(from_env.hint.as_deref(), Some("did you mean \"priority\"?"));
    assert!(mentions(&err, "nope"));
    // The secret-looking value of the unknown key is not echoed.
    assert!(!text.contains("abc"));
}

#[test]
fn env_vars_naming_sections_or_going_too_deep_are_errors() {
    let (_dir, mut env) = creds();
    env.extend(self::env(&[
        ("TELEPORT_OPSGENIE__OPSGENIE", "x"),
        ("TELEPORT_OPSGENIE__LOG__LEVEL__X", "x"),
        ("TELEPORT_OPSGENIE__LOG____LEVEL", "x"),
    ]));
    let err = load_with(None, env).unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
    assert!(problem(&err, "opsgenie")
        .message
        .contains("names a section"));
    assert!(mentions(&err, "log.level.x"));
    assert!(mentions(&err, "log..level"));
}

#[test]
fn type_errors_are_reported_per_key() {
    let (dir, mut env) = creds();
    let file = dir.write(
        "c.yaml",
        "teleport:\n  refresh_identity: maybe\n  dial_timeout: 5 parsecs\n  mode: sideways\nopsgenie:\n  max_concurrency: -1\n  tags: just-one\n  api_key: 12345\nhttp:\n  listen: nowhere\nlog: loud\n",
    );
    env.insert(
        "TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__HEARTBEAT__PER_MINUTE".into(),
        "lots".into(),
    );
    env.remove("TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE");
    let err = load_with(Some(file), env).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            "teleport.refresh_identity: expected a boolean, got \"maybe\" (write true or false; set in file `"
        ),
        "{text}"
    );
    assert!(problem(&err, "teleport.dial_timeout")
        .hint
        .as_deref()
        .is_some_and(|h| h.contains("duration")));
    assert!(problem(&err, "teleport.mode")
        .message
        .contains("expected one of `auto`, `auth`, `proxy`, got \"sideways\""));
    assert!(problem(&err, "opsgenie.max_concurrency")
        .message
        .contains("got -1"));
    assert!(problem(&err, "opsgenie.tags")
        .message
        .starts_with("expected a list"));
    assert!(mentions(&err, "http.listen"));
    assert!(problem(&err, "log").message.contains("expected a section"));
    let from_env = problem(&err, "opsgenie.rate_limits.heartbeat.per_minute");
    assert!(from_env.message.contains("got \"lots\""), "{text}");
    assert_eq!(
        from_env.origin.as_deref(),
        Some(
            "environment variable TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__HEARTBEAT__PER_MINUTE"
        )
    );
    // The secret is described, not echoed; and no semantic "no API key" noise on top.
    assert_eq!(
        problem(&err, "opsgenie.api_key").message,
        "expected a string, got a number"
    );
    assert!(!text.contains("12345"));
    assert_eq!(err.problems.len(), 9, "{text}");
}

#[test]
fn several_semantic_problems_are_reported_together() {
    let dir = TempDir::new().unwrap();
    let file = dir.write(
        "c.yaml",
        r#"
teleport:
  addr: "https://teleport.example.com"
  client_key: /nonexistent/auth.key
  plugin_name: ""
opsgenie:
  api_key: inline-secret
  api_key_file: /nonexistent/key
  api_url: "ftp://example.com"
  priority: p2
  tags: ["", "this-tag-is-far-too-long-for-opsgenie-to-accept-it-at-all"]
  max_concurrency: 0
  default_teams: [ops, " "]
auto_approval:
  user_domain: "@example.com"
  allowed_roles: [""]
  default_schedules: [""]
  users:
    alice: alice
log:
  level: loud
daemon:
  retry_min_delay: 10s
  retry_max_delay: 1s
"#,
    );
    let err = load_with(Some(file), HashMap::new()).unwrap_err();
    let text = err.to_string();
    for path in [
        "teleport.addr",
        "teleport",
        "teleport.client_key",
        "teleport.plugin_name",
        "opsgenie.api_key",
        "opsgenie.api_url",
        "opsgenie.priority",
        "opsgenie.tags",
        "opsgenie.max_concurrency",
        "opsgenie.default_teams",
        "auto_approval.user_domain",
        "auto_approval.allowed_roles",
        "auto_approval.default_schedules",
        "auto_approval.users.alice",
        "log.level",
        "daemon.retry_max_delay",
    ] {
        assert!(mentions(&err, path), "{path} missing from:\n{text}");
    }
    assert!(text.contains(
        "teleport: `teleport.client_key` is set but `teleport.client_crt`, `teleport.root_cas` are missing"
    ));
    assert!(problem(&err, "teleport.client_key")
        .message
        .contains("/nonexistent/auth.key"));
    assert_eq!(
        problem(&err, "opsgenie.priority").hint.as_deref(),
        Some("write P2")
    );
    assert_eq!(
        problem(&err, "auto_approval.allowed_roles").message,
        "contains an empty role pattern"
    );
    assert_eq!(
        problem(&err, "opsgenie.default_teams").message,
        "contains an empty name"
    );
    assert!(!mentions(&err, "opsgenie.default_schedules"));
    assert!(!text.contains("inline-secret"));
}

#[test]
fn credential_rules() {
    let dir = TempDir::new().unwrap();
    let key = dir.write("key", "k");
    let crt = dir.write("crt", "c");
    let cas = dir.write("cas", "a");
    let id = dir.write("id", "i");
    let api = dir.write("api", "secret");
    let base = |pairs: &[(&str, &Path)]| {
        let mut env = HashMap::new();
        env.insert(
            "TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE".to_owned(),
            api.display().to_string(),
        );
        for (k, v) in pairs {
            env.insert(
                format!("TELEPORT_OPSGENIE__TELEPORT__{k}"),
                v.display().to_string(),
            );
        }
        env
    };

    // The full trio works, and refresh_identity (true by default) is ignored.
    let config = load_with(
        None,
        base(&[
            ("CLIENT_KEY", &key),
            ("CLIENT_CRT", &crt),
            ("ROOT_CAS", &cas),
        ]),
    )
    .unwrap();
    assert!(config.teleport.identity.is_none());

    // Two of three.
    let err = load_with(None, base(&[("CLIENT_KEY", &key), ("CLIENT_CRT", &crt)])).unwrap_err();
    assert_eq!(
        problem(&err, "teleport").message,
        "`teleport.client_key`, `teleport.client_crt` are set but `teleport.root_cas` is missing"
    );

    // Identity and trio together.
    let err = load_with(None, base(&[("IDENTITY", &id), ("ROOT_CAS", &cas)])).unwrap_err();
    assert!(problem(&err, "teleport.identity")
        .message
        .contains("`teleport.root_cas`"));

    // Nothing at all.
    let err = load_with(None, base(&[])).unwrap_err();
    assert!(problem(&err, "teleport.identity")
        .message
        .starts_with("no credentials"));

    // A directory is not a file; tbot's destination folder gets the file inside it named.
    let err = load_with(None, base(&[("IDENTITY", dir.path())])).unwrap_err();
    let dir_problem = problem(&err, "teleport.identity");
    assert!(dir_problem.message.contains("is a directory"));
    let hint = dir_problem.hint.as_deref().unwrap_or_default();
    assert!(hint.contains("tbot's destination folder"), "{hint}");
    std::fs::write(dir.path().join("identity"), "x").unwrap();
    let err = load_with(None, base(&[("IDENTITY", dir.path())])).unwrap_err();
    let hint = problem(&err, "teleport.identity")
        .hint
        .clone()
        .unwrap_or_default();
    let inside = dir.path().join("identity");
    assert!(
        hint.contains("set `teleport.identity: ") && hint.contains(&*inside.to_string_lossy()),
        "{hint}"
    );
}

#[test]
fn api_key_rules() {
    let (dir, env) = creds();
    let mut both = env.clone();
    both.insert(
        "TELEPORT_OPSGENIE__OPSGENIE__API_KEY".into(),
        "inline".into(),
    );
    let err = load_with(None, both).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert!(problem(&err, "opsgenie.api_key")
        .message
        .starts_with("both"));

    let blank = dir.write("blank", " \n\t\n");
    let mut env_blank = env.clone();
    env_blank.insert(
        "TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE".into(),
        blank.display().to_string(),
    );
    let err = load_with(None, env_blank).unwrap_err();
    assert!(problem(&err, "opsgenie.api_key_file")
        .message
        .ends_with("is empty"));

    let mut env_missing = env.clone();
    env_missing.insert(
        "TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE".into(),
        dir.shown("absent"),
    );
    let err = load_with(None, env_missing).unwrap_err();
    assert!(problem(&err, "opsgenie.api_key_file")
        .message
        .contains(&dir.shown("absent")));

    let mut neither = env.clone();
    neither.remove("TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE");
    let err = load_with(None, neither).unwrap_err();
    assert!(problem(&err, "opsgenie.api_key_file")
        .message
        .starts_with("no API key"));

    let mut inline = env;
    inline.remove("TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE");
    inline.insert(
        "TELEPORT_OPSGENIE__OPSGENIE__API_KEY".into(),
        " padded \n".into(),
    );
    let config = load_with(None, inline).unwrap();
    assert_eq!(
        config.opsgenie.api_key.as_ref().map(Secret::expose),
        Some("padded")
    );
    // Debug output never shows the key.
    assert!(!format!("{config:?}").contains("padded"));
}

#[test]
fn config_files_missing_or_malformed() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("absent.yaml");
    let err = load_with(Some(missing.clone()), HashMap::new()).unwrap_err();
    let p = problem(&err, &missing.display().to_string());
    assert_eq!(p.message, "configuration file not found");

    // The default path may be absent: then only the usual credential problems remain.
    let err = load(&Sources {
        files: vec![missing],
        env: Some(HashMap::new()),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(mentions(&err, "teleport.identity"));

    let ini = dir.write("c.ini", "x=1");
    let err = load_with(Some(ini), HashMap::new()).unwrap_err();
    assert!(err.problems[0].message.contains("unsupported"));

    let bad_toml = dir.write("bad.toml", "[opsgenie]\napi_key = \"unterminated-secret\n");
    let err = load_with(Some(bad_toml), HashMap::new()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("invalid TOML at line 2"), "{text}");
    assert!(!text.contains("unterminated-secret"), "{text}");

    let bad_yaml = dir.write("bad.yaml", "teleport:\n  addr: [unclosed\n");
    let err = load_with(Some(bad_yaml), HashMap::new()).unwrap_err();
    assert!(err.to_string().contains("invalid YAML"));

    let list = dir.write("list.yaml", "- a\n- b\n");
    let err = load_with(Some(list), HashMap::new()).unwrap_err();
    assert!(err.problems[0].message.contains("top level"));
}

#[test]
fn toml_file_loads() {
    let (dir, env) = creds();
    let file = dir.write(
        "c.toml",
        "[teleport]\naddr = \"auth.example.com:3025\"\nrefresh_identity_interval = \"5m\"\n\n[opsgenie]\nregion = \"eu\"\ntags = [\"a\", \"b\"]\n\n[opsgenie.rate_limits.heartbeat]\nper_minute = 2\n\n[auto_approval.users]\nalice = \"alice@example.com\"\n",
    );
    let config = load_with(Some(file), env).unwrap();
    assert_eq!(config.teleport.addr, "auth.example.com:3025");
    assert_eq!(
        config.teleport.refresh_identity_interval,
        Duration::from_secs(300)
    );
    assert_eq!(config.opsgenie.base_url(), "https://api.eu.opsgenie.com");
    assert_eq!(config.opsgenie.tags, ["a", "b"]);
    assert_eq!(config.opsgenie.rate_limits.heartbeat.per_minute, 2);
    assert_eq!(config.auto_approval.users["alice"], "alice@example.com");
}

#[test]
fn empty_sections_and_files_are_fine() {
    let (dir, env) = creds();
    let file = dir.write("c.yaml", "# only a comment\n");
    load_with(Some(file), env.clone()).unwrap();
    let file = dir.write("d.yaml", "teleport:\nopsgenie:\n");
    load_with(Some(file), env).unwrap();
}

#[test]
fn host_port_checks() {
    for ok in [
        "a:1",
        "teleport.example.com:443",
        "[::1]:3025",
        "10.0.0.1:3025",
    ] {
        assert!(check_host_port("k", ok).is_none(), "{ok}");
    }
    for bad in [
        "a",
        ":443",
        "a:0",
        "a:70000",
        "::1:3025",
        "https://a:443",
        "a b:1",
    ] {
        assert!(check_host_port("k", bad).is_some(), "{bad}");
    }
}

#[test]
fn typos_are_suggested_by_edit_distance() {
    // One transposition is one edit.
    assert_eq!(
        closest("api_kye", ["api_key", "api_url"].into_iter()),
        Some("api_key")
    );
    assert_eq!(
        closest("Priorty", ["priority", "tags"].into_iter()),
        Some("priority")
    );
    assert_eq!(closest("xyz", ["log", "http"].into_iter()), None);
}

/// Points the sample's file paths at real files and checks it validates.
fn sample_env() -> (TempDir, HashMap<String, String>) {
    creds()
}

#[test]
fn yaml_sample_parses_and_validates() {
    let (dir, env) = sample_env();
    let file = dir.write("sample.yaml", SAMPLE_YAML);
    let config = load_with(Some(file.clone()), env).unwrap();
    assert_eq!(config.teleport.addr, "teleport.example.com:443");

    // Without the overrides the sample names its real paths, which do not exist here.
    let err = load_with(Some(file), HashMap::new()).unwrap_err();
    assert!(problem(&err, "teleport.identity")
        .message
        .contains("/var/lib/teleport/plugins/opsgenie/auth.pem"));
    assert!(mentions(&err, "opsgenie.api_key_file"));
}

#[test]
fn yaml_sample_matches_the_defaults_and_mentions_every_key() {
    let sample: serde_json::Value = serde_yaml::from_str(SAMPLE_YAML).unwrap();
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let mut paths = Vec::new();
    collect_paths(&defaults, &mut Vec::new(), &mut paths);
    for path in paths {
        let segments: Vec<&str> = path.split('.').collect();
        let leaf = segments[segments.len() - 1];
        // Every key is either set or shown in a comment.
        assert!(
            SAMPLE_YAML.contains(&format!("{leaf}:")),
            "sample does not mention {path}"
        );
    }
    // The values the sample sets are the defaults, except those it must fill in.
    let mut from_sample: Config = serde_json::from_value(sample).unwrap();
    let default = Config::default();
    from_sample.teleport.addr = default.teleport.addr.clone();
    from_sample.teleport.identity = None;
    from_sample.opsgenie.api_key_file = None;
    assert_eq!(
        serde_json::to_value(from_sample).unwrap(),
        serde_json::to_value(default).unwrap()
    );
}

#[test]
fn toml_sample_parses_and_validates() {
    let (dir, env) = sample_env();
    let file = dir.write("sample.toml", SAMPLE_TOML);
    let config = load_with(Some(file), env).unwrap();
    assert_eq!(config.opsgenie.priority, "P3");
}

#[test]
fn role_files_are_valid_yaml() {
    let files = [
        include_str!("../../config/access-plugin.yaml"),
        include_str!("../../config/requester.yaml"),
        include_str!("../../config/reviewer.yaml"),
        include_str!("../../config/editor.yaml"),
    ];
    for text in files {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
            assert!(value["version"].as_str().is_some());
            assert!(value["kind"].as_str().is_some());
        }
    }
    let requester: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../config/requester.yaml")).unwrap();
    let annotations = &requester["spec"]["allow"]["request"]["annotations"];
    assert_eq!(
        annotations["teleport.dev/notify-services"][0].as_str(),
        Some("teleport-access-request-notifications")
    );
    assert_eq!(
        annotations["teleport.dev/teams"][0].as_str(),
        Some("teleport-team")
    );
    assert_eq!(
        annotations["teleport.dev/schedules"][0].as_str(),
        Some("teleport-access-alert-schedules")
    );
}

#[test]
fn validate_resolves_the_key_file_for_configs_built_in_code() {
    let (dir, _) = creds();
    let mut config = Config::default();
    config.teleport.identity = Some(dir.path().join("auth.pem"));
    config.opsgenie.api_key_file = Some(dir.path().join("api-key"));
    let config = validate(config).unwrap();
    assert_eq!(
        config.opsgenie.api_key.as_ref().map(Secret::expose),
        Some("s3cr3t-key-value")
    );
}

#[test]
fn hostile_structure_fails_fast_with_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let deep = 100_000;
    let cases = [
        ("flow.yaml", format!("teleport: {}", "[".repeat(deep))),
        ("maps.yaml", format!("teleport: {}", "{a: ".repeat(deep))),
        (
            "dashes.yaml",
            format!("teleport:\n  {}x\n", "- ".repeat(deep)),
        ),
        (
            "flow.toml",
            format!("[teleport]\naddr = {}", "[".repeat(deep)),
        ),
        ("keys.toml", format!("[{}]\n", vec!["a"; deep].join("."))),
        ("anchors.yaml", {
            // A billion laughs: each alias doubles the size.
            let mut text = String::from("a0: &a0 [x, x]\n");
            for i in 1..40 {
                text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}]\n", p = i - 1));
            }
            text
        }),
    ];
    for (name, text) in cases {
        let file = dir.write(name, &text);
        // It took 68 s (quadratic) before the limits; they are checked on the raw tree before
        // the schema walk, so the only problem reported is the limit (speed belongs in the load
        // test, not here).
        let err = load_with(Some(file), HashMap::new()).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{name}: {err}");
        let message = &err.problems[0].message;
        assert!(
            message.contains("nested deeper than")
                || message.contains("more than")
                || message.contains("limit exceeded"),
            "{name}: {message}"
        );
    }
}

#[test]
fn old_rate_limit_names_are_read_as_the_new_domains_with_a_warning() {
    let (dir, mut env) = creds();
    let file = dir.write(
        "c.yaml",
        "opsgenie:\n  rate_limits:\n    alert_write:\n      per_second: 3\n    alert_read:\n      per_minute: 7\n",
    );
    env.insert(
        "TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__ALERT_WRITE__PER_MINUTE".into(),
        "40".into(),
    );
    let loaded = load_with_warnings(&Sources::file(file, env)).unwrap();
    let limits = &loaded.config.opsgenie.rate_limits;
    assert_eq!(limits.alert, crate::config::Limit::new(3, 40));
    // Values the old section does not set keep the new section's defaults.
    assert_eq!(limits.search, crate::config::Limit::new(10, 7));
    let texts: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    let find = |path: &str| {
        texts
            .iter()
            .find(|t| t.starts_with(&format!("{path}: ")))
            .unwrap_or_else(|| panic!("no warning for {path}: {texts:?}"))
            .clone()
    };
    assert!(find("opsgenie.rate_limits.alert_write").contains("`opsgenie.rate_limits.alert`"));
    let read = find("opsgenie.rate_limits.alert_read");
    assert!(read.contains("`opsgenie.rate_limits.search`"), "{read}");
    assert!(
        read.contains("request status now counts under `opsgenie.rate_limits.alert`"),
        "{read}"
    );
    assert!(
        find("TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__ALERT_WRITE__PER_MINUTE")
            .contains("TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__ALERT__PER_MINUTE")
    );

    // Old and new together: which wins would be a guess, so it is refused.
    let both = dir.write(
        "both.yaml",
        "opsgenie:\n  rate_limits:\n    alert_write:\n      per_second: 3\n    alert:\n      per_second: 4\n",
    );
    let (_, env) = creds();
    let err = load_with(Some(both), env).unwrap_err();
    assert_eq!(
        problem(&err, "opsgenie.rate_limits.alert_write")
            .hint
            .as_deref(),
        Some("keep only `opsgenie.rate_limits.alert`")
    );
}
