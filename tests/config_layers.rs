//! Layered configuration: several `-c` files (later wins), the drop-in folder, the environment,
//! and errors that name the file each bad value came from. Through the library and through the
//! real binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use teleport_opsgenie::config::{self, Level, Sources};
use teleport_opsgenie::sim::pki::{KeyKind, Pki};

const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// A folder with an identity and an API key file, and a base file naming them (and loopback
/// addresses only).
fn setup() -> (TempDir, PathBuf) {
    let dir = TempDir::new().expect("temp dir");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let identity = dir.path().join("identity");
    Pki::new("layers.example")
        .expect("pki")
        .write_identity_file(&identity, "access-plugin", DAY, KeyKind::EcdsaP256)
        .expect("identity");
    let key = write(dir.path(), "api-key", "0123\n");
    let base = write(
        dir.path(),
        "base.yaml",
        &format!(
            "teleport:\n  addr: 127.0.0.1:1\n  identity: {}\nopsgenie:\n  api_url: http://127.0.0.1:1\n  api_key_file: {}\n  priority: P1\n  source: from-base\n",
            identity.display(),
            key.display()
        ),
    );
    (dir, base)
}

fn sources(files: Vec<PathBuf>, dir: Option<PathBuf>, env: &[(&str, &str)]) -> Sources {
    Sources {
        files,
        require_files: true,
        require_dir: dir.is_some(),
        dir,
        env: Some(
            env.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
    }
}

#[test]
fn a_key_set_in_two_files_takes_the_later_value() {
    let (dir, base) = setup();
    let over = write(dir.path(), "override.yaml", "opsgenie:\n  priority: P2\n");
    let config = config::load(&sources(vec![base.clone(), over.clone()], None, &[])).unwrap();
    assert_eq!(config.opsgenie.priority, "P2");
    // What only the first file sets survives.
    assert_eq!(config.opsgenie.source, "from-base");
    // The other order: the base wins.
    let config = config::load(&sources(vec![over, base], None, &[])).unwrap();
    assert_eq!(config.opsgenie.priority, "P1");
}

#[test]
fn an_error_in_the_second_file_names_that_file() {
    let (dir, base) = setup();
    let over = write(
        dir.path(),
        "override.yaml",
        "opsgenie:\n  priority: P9\ndaemon:\n  claim_ttl: soon\n",
    );
    let err = config::load(&sources(vec![base, over.clone()], None, &[])).unwrap_err();
    let shown = over.display().to_string();
    for key in ["opsgenie.priority", "daemon.claim_ttl"] {
        let problem = err
            .problems
            .iter()
            .find(|p| p.path == key)
            .unwrap_or_else(|| panic!("{key} not in {err}"));
        assert_eq!(
            problem.origin.as_deref(),
            Some(format!("file `{shown}`").as_str())
        );
        assert!(problem.to_string().contains(&shown), "{problem}");
    }
}

#[test]
fn an_empty_section_in_a_later_file_keeps_the_earlier_values() {
    let (dir, base) = setup();
    let over = write(dir.path(), "override.yaml", "opsgenie:\n");
    let config = config::load(&sources(vec![base, over], None, &[])).unwrap();
    assert_eq!(config.opsgenie.priority, "P1");
}

#[test]
fn the_drop_in_folder_comes_after_the_files_in_name_order() {
    let (dir, base) = setup();
    let drop_in = dir.path().join("conf.d");
    std::fs::create_dir(&drop_in).unwrap();
    write(&drop_in, "20-site.toml", "[opsgenie]\npriority = \"P5\"\n");
    write(
        &drop_in,
        "10-host.yaml",
        "opsgenie:\n  priority: P4\n  source: from-drop-in\n",
    );
    write(&drop_in, "30-notes.txt", "not a configuration file");
    let config = config::load(&sources(vec![base.clone()], Some(drop_in.clone()), &[])).unwrap();
    assert_eq!(config.opsgenie.priority, "P5");
    assert_eq!(config.opsgenie.source, "from-drop-in");

    // The environment comes last of all.
    let config = config::load(&sources(
        vec![base.clone()],
        Some(drop_in),
        &[("TELEPORT_OPSGENIE__OPSGENIE__PRIORITY", "P3")],
    ))
    .unwrap();
    assert_eq!(config.opsgenie.priority, "P3");

    // A folder named explicitly must exist; the default one is read only when it does.
    let missing = dir.path().join("absent.d");
    let err = config::load(&sources(vec![base.clone()], Some(missing.clone()), &[])).unwrap_err();
    assert_eq!(err.problems[0].path, missing.display().to_string());
    let mut optional = sources(vec![base], Some(missing), &[]);
    optional.require_dir = false;
    config::load(&optional).unwrap();
}

#[test]
fn the_default_file_not_found_is_said() {
    let (dir, _) = setup();
    let absent = dir.path().join("teleport-opsgenie.yaml");
    let loaded = config::load_with_warnings(&Sources {
        files: vec![absent.clone()],
        require_files: false,
        env: Some(HashMap::from([
            (
                "TELEPORT_OPSGENIE__TELEPORT__IDENTITY".to_owned(),
                dir.path().join("identity").display().to_string(),
            ),
            (
                "TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE".to_owned(),
                dir.path().join("api-key").display().to_string(),
            ),
        ])),
        ..Sources::default()
    })
    .unwrap();
    let note = loaded
        .warnings
        .iter()
        .find(|w| w.path == absent.display().to_string())
        .expect("a note about the default file");
    assert_eq!(note.level, Level::Info);
    assert!(note
        .message
        .contains("using the built-in defaults and the environment"));
}

#[test]
fn every_file_that_does_not_parse_is_named_and_nothing_else_is_reported() {
    let (dir, base) = setup();
    let bad_toml = write(
        dir.path(),
        "bad.toml",
        "[opsgenie]\napi_key = \"unterminated\n",
    );
    let bad_yaml = write(dir.path(), "bad.yaml", "teleport: [\n");
    let err = config::load(&sources(
        vec![base, bad_toml.clone(), bad_yaml.clone()],
        None,
        &[],
    ))
    .unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            bad_toml.display().to_string(),
            bad_yaml.display().to_string()
        ],
        "{err}"
    );
    assert!(err.problems[0]
        .message
        .starts_with("invalid TOML at line 2"));
    assert!(!err.to_string().contains("unterminated"));
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_teleport-opsgenie")
}

#[test]
fn check_layers_two_files_given_with_c() {
    let (dir, base) = setup();
    let empty = dir.path().join("empty.d");
    std::fs::create_dir(&empty).unwrap();
    // The base's priority would be refused (78); the override's is fine, so check gets past the
    // configuration and fails only on Teleport being unreachable (69).
    let bad_base = write(
        dir.path(),
        "bad-base.yaml",
        &std::fs::read_to_string(&base).unwrap().replace("P1", "P9"),
    );
    let good_override = write(dir.path(), "override.yaml", "opsgenie:\n  priority: P2\n");
    let out = Command::new(bin())
        .arg("check")
        .arg("-c")
        .arg(&bad_base)
        .arg("-c")
        .arg(&good_override)
        .arg("--config-dir")
        .arg(&empty)
        .env_remove("TELEPORT_OPSGENIE__OPSGENIE__PRIORITY")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stdout}\n{stderr}");
    assert!(stdout.contains("[ok  ] configuration"), "{stdout}");

    // An error in the second file: 78, naming the file and the key.
    let bad_override = write(
        dir.path(),
        "bad-override.yaml",
        "opsgenie:\n  priority: P7\n",
    );
    let out = Command::new(bin())
        .arg("check")
        .arg("-c")
        .arg(&base)
        .arg("-c")
        .arg(&bad_override)
        .arg("--config-dir")
        .arg(&empty)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("opsgenie.priority"), "{stderr}");
    assert!(
        stderr.contains(&bad_override.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
