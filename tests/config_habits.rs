//! Teleport access-plugin habits: their key names are read with a warning naming ours, or
//! refused with the exact replacement; and other common slips get a message with a fix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use teleport_opsgenie::config::{self, ConfigError, Loaded, Sources};

/// A folder with an identity and an API key file, and the keys naming them.
fn setup() -> (TempDir, String) {
    let dir = TempDir::new().expect("temp dir");
    std::fs::write(dir.path().join("identity"), "read, not parsed").unwrap();
    std::fs::write(dir.path().join("api-key"), "0123").unwrap();
    let creds = format!(
        "teleport:\n  identity: {}\nopsgenie:\n  api_url: http://127.0.0.1:1\n  api_key_file: {}\n",
        dir.path().join("identity").display(),
        dir.path().join("api-key").display()
    );
    (dir, creds)
}

fn load(dir: &Path, name: &str, text: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    config::load_with_warnings(&Sources::file(
        path,
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
    ))
}

fn warning(loaded: &Loaded, path: &str) -> String {
    loaded
        .warnings
        .iter()
        .find(|w| w.path == path)
        .unwrap_or_else(|| panic!("no warning at {path}: {:?}", loaded.warnings))
        .to_string()
}

#[test]
fn teleport_plugin_keys_are_read_with_a_warning_naming_ours() {
    let (dir, creds) = setup();
    let text = creds.replace(
        "teleport:\n",
        "teleport:\n  auth_server: auth.example.com:3025\n",
    ) + "log:\n  severity: WARNING\n  output: stderr\n";
    let loaded = load(dir.path(), "c.yaml", &text, &[]).unwrap();
    assert_eq!(loaded.config.teleport.addr, "auth.example.com:3025");
    assert_eq!(loaded.config.log.level, "warn");
    assert!(warning(&loaded, "teleport.auth_server").contains("`teleport.addr`"));
    assert!(warning(&loaded, "log.severity").contains("`log.level`"));
    assert!(warning(&loaded, "log.output").contains("standard error"));

    let toml = format!(
        "[teleport]\nidentity = \"{}\"\n[opsgenie]\napi_key_file = \"{}\"\naddr = \"http://127.0.0.1:1\"\nalert_tags = [\"a\", \"b\"]\n",
        dir.path().join("identity").display(),
        dir.path().join("api-key").display()
    );
    let loaded = load(dir.path(), "c.toml", &toml, &[]).unwrap();
    assert_eq!(
        loaded.config.opsgenie.api_url.as_deref(),
        Some("http://127.0.0.1:1")
    );
    assert_eq!(loaded.config.opsgenie.tags, ["a", "b"]);
    assert!(warning(&loaded, "opsgenie.addr").contains("`opsgenie.api_url`"));
    assert!(warning(&loaded, "opsgenie.alert_tags").contains("`opsgenie.tags`"));
}

#[test]
fn teleport_plugin_keys_we_cannot_honour_are_refused_with_the_replacement() {
    let (dir, creds) = setup();
    let cases = [
        (
            "log:\n  output: /var/log/plugin.log\n",
            "log.output",
            "standard error",
        ),
        (
            "role_to_recipients:\n  \"*\": [ops]\n",
            "role_to_recipients",
            "opsgenie.default_schedules",
        ),
        (
            "teleport:\n  addr: a.example.com:3025\n  auth_server: b.example.com:3025\n",
            "teleport.auth_server",
            "keep only `teleport.addr`",
        ),
    ];
    for (extra, key, replacement) in cases {
        let text = if extra.starts_with("teleport:") {
            creds.replace("teleport:\n", extra)
        } else {
            format!("{creds}{extra}")
        };
        let err = load(dir.path(), "c.yaml", &text, &[]).unwrap_err();
        let problem = err
            .problems
            .iter()
            .find(|p| p.path == key)
            .unwrap_or_else(|| panic!("{key} not in {err}"));
        assert!(problem.to_string().contains(replacement), "{problem}");
        assert_eq!(err.problems.len(), 1, "{err}");
    }
}

#[test]
fn an_api_key_holding_a_file_path_points_to_api_key_file() {
    let (dir, creds) = setup();
    let text = creds.replace("  api_key_file:", "  api_key: /etc/opsgenie/key\n  x:");
    let text = text.replace("  x: ", "#");
    let err = load(dir.path(), "c.yaml", &text, &[]).unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.problems.len(), 1, "{shown}");
    assert_eq!(err.problems[0].path, "opsgenie.api_key");
    assert!(shown.contains("`api_key_file`"), "{shown}");
    assert!(!shown.contains("/etc/opsgenie/key"), "{shown}");
}

#[test]
fn environment_variables_with_one_underscore_or_an_old_name_are_warned_about() {
    let (dir, creds) = setup();
    let loaded = load(
        dir.path(),
        "c.yaml",
        &creds,
        &[
            ("TELEPORT_OPSGENIE_OPSGENIE__REGION", "eu"),
            (
                "TELEPORT_OPSGENIE__TELEPORT__AUTH_SERVER",
                "env.example.com:3025",
            ),
        ],
    )
    .unwrap();
    assert!(warning(&loaded, "TELEPORT_OPSGENIE_OPSGENIE__REGION")
        .contains("rename it to TELEPORT_OPSGENIE__OPSGENIE__REGION"));
    assert!(warning(&loaded, "TELEPORT_OPSGENIE__TELEPORT__AUTH_SERVER")
        .contains("TELEPORT_OPSGENIE__TELEPORT__ADDR"));
    assert_eq!(loaded.config.teleport.addr, "env.example.com:3025");
    // The ignored variable really is ignored.
    assert_eq!(loaded.config.opsgenie.base_url(), "http://127.0.0.1:1");
}

#[test]
fn listen_addresses_that_are_not_ip_and_port_get_a_working_example() {
    let (dir, creds) = setup();
    for (listen, example) in [
        (":9489", "0.0.0.0:9489"),
        ("localhost:9489", "127.0.0.1:9489"),
    ] {
        let text = format!("{creds}http:\n  listen: \"{listen}\"\n");
        let err = load(dir.path(), "c.yaml", &text, &[]).unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.problems[0].path, "http.listen", "{shown}");
        assert!(shown.contains(example), "{listen}: {shown}");
    }
}

#[test]
fn a_toml_syntax_error_is_the_only_error() {
    let (dir, _) = setup();
    let err = load(dir.path(), "c.toml", "[teleport\naddr = 1\n", &[]).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert!(
        err.problems[0]
            .message
            .starts_with("invalid TOML at line 1"),
        "{err}"
    );
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_teleport-opsgenie")
}

/// `check` prints the warning; `start` logs it (through tracing) before it fails on the
/// identity, which is not a real one.
#[test]
fn check_and_start_tell_the_operator_that_auth_server_is_teleport_addr() {
    let (dir, creds) = setup();
    let path: PathBuf = dir.path().join("c.yaml");
    let text = creds.replace("teleport:\n", "teleport:\n  auth_server: 127.0.0.1:1\n");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir(dir.path().join("empty.d")).unwrap();
    for command in ["check", "start"] {
        let out = Command::new(bin())
            .arg(command)
            .arg("-c")
            .arg(&path)
            .arg("--config-dir")
            .arg(dir.path().join("empty.d"))
            .output()
            .expect("run");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            all.contains("teleport.auth_server") && all.contains("`teleport.addr`"),
            "{command}: {all}"
        );
        assert!(out.status.code().is_some(), "{command} was killed: {all}");
        assert!(!all.contains("panicked"), "{all}");
    }
}
