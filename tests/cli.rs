//! The command line, run as a user would: the real binary as a child process.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use teleport_opsgenie::sim::world::World;

const BIN: &str = env!("CARGO_BIN_EXE_teleport-opsgenie");

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "teleport-opsgenie-cli-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Runs the binary with no `TELEPORT_OPSGENIE__` variables from the test's environment.
async fn run(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("TELEPORT_OPSGENIE__") {
            cmd.env_remove(key);
        }
    }
    cmd.output().await.expect("binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[actix_rt::test]
async fn version_and_usage_errors() {
    let out = run(&["version"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains(env!("CARGO_PKG_VERSION")));
    let out = run(&["frobnicate"]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let out = run(&["start", "--no-such-flag"]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
}

#[actix_rt::test]
async fn the_sample_parses_and_check_reports_each_failure_with_a_fix_when_nothing_is_reachable() {
    let out = run(&["configure"]).await;
    assert_eq!(out.status.code(), Some(0));
    let sample = temp("sample.yaml");
    std::fs::write(&sample, &out.stdout).expect("write sample");
    let out = run(&["check", "-c", sample.to_str().expect("path")]).await;
    let report = text(&out);
    assert_eq!(out.status.code(), Some(69), "{report}");
    assert!(report.contains("[ok  ] configuration"), "{report}");
    assert!(report.contains("teleport.identity"), "{report}");
    assert!(report.contains("opsgenie.api_key_file"), "{report}");
    assert!(report.contains("fix:"), "{report}");
}

async fn expect_config_error(yaml: &str, key: &str) {
    let file = temp("bad.yaml");
    std::fs::write(&file, yaml).expect("write");
    for command in ["start", "check"] {
        let out = run(&[command, "-c", file.to_str().expect("path")]).await;
        let report = text(&out);
        assert_eq!(
            out.status.code(),
            Some(78),
            "{command} with {yaml:?}: {report}"
        );
        assert!(
            report.contains(key),
            "{command}: {key} not named in: {report}"
        );
    }
}

#[actix_rt::test]
async fn each_kind_of_bad_config_names_its_key_and_exits_78() {
    let key_file = temp("key");
    std::fs::write(&key_file, "11111111-2222-3333-4444-555555555555").expect("key");
    let identity = temp("identity");
    std::fs::write(&identity, "not really").expect("identity");
    let good = format!(
        "teleport:\n  addr: localhost:3025\n  identity: {}\nopsgenie:\n  api_key_file: {}\n",
        identity.display(),
        key_file.display()
    );
    // Unknown key, with a suggestion.
    expect_config_error(&good.replace("addr:", "adr:"), "teleport.adr").await;
    // Wrong type.
    expect_config_error(&format!("{good}http:\n  enabled: maybe\n"), "http.enabled").await;
    // Bad value.
    expect_config_error(&format!("{good}  priority: P9\n"), "opsgenie.priority").await;
    // Both a key and a key file.
    expect_config_error(&format!("{good}  api_key: abc\n"), "opsgenie.api_key").await;
    // Half of the key/cert/CAs trio together with an identity.
    expect_config_error(
        &good.replace("  identity:", "  client_key: /tmp/k\n  identity:"),
        "teleport.client_key",
    )
    .await;
    // Not YAML at all.
    expect_config_error("teleport: [unclosed\n", "bad.yaml").await;
    // A file named but missing.
    let out = run(&["start", "-c", "/no/such/file.yaml"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("/no/such/file.yaml"));
}

#[actix_rt::test]
async fn several_problems_are_reported_at_once() {
    let file = temp("many.yaml");
    std::fs::write(
        &file,
        "teleport:\n  adr: x\nopsgenie:\n  priority: P0\n  max_concurrency: 0\nlog:\n  level: loud\n",
    )
    .expect("write");
    let out = run(&["start", "-c", file.to_str().expect("path")]).await;
    let report = text(&out);
    assert_eq!(out.status.code(), Some(78));
    for key in [
        "teleport.adr",
        "opsgenie.priority",
        "opsgenie.max_concurrency",
        "log.level",
    ] {
        assert!(report.contains(key), "{key} missing from: {report}");
    }
}

fn write_config(world: &World, path: &Path) {
    let key_file = world.dir.join("api-key");
    std::fs::write(&key_file, world.opsgenie.api_key()).expect("key");
    std::fs::write(
        path,
        format!(
            "teleport:\n  addr: \"{}\"\n  mode: auth\n  identity: \"{}\"\nopsgenie:\n  api_url: \"{}\"\n  api_key_file: \"{}\"\nhttp:\n  enabled: false\n",
            world.teleport.addr(),
            world.plugin_identity.display(),
            world.opsgenie.url(),
            key_file.display()
        ),
    )
    .expect("config");
}

#[actix_rt::test]
async fn check_against_the_fakes_passes_and_reports_what_it_found() {
    let world = common::world().await;
    let config = world.dir.join("check.yaml");
    write_config(&world, &config);
    let out = run(&["check", "-c", config.to_str().expect("path")]).await;
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("cluster sandbox.teleport.example, version 17.4.2"),
        "{report}"
    );
    assert!(report.contains("directly to the Auth Service"), "{report}");
    assert!(
        report.contains("user access-plugin, valid until"),
        "{report}"
    );
    assert!(report.contains("[ok  ] list access requests"), "{report}");
    assert!(report.contains("[ok  ] write plugin data"), "{report}");
    assert!(report.contains("[ok  ] read plugin data"), "{report}");
    assert!(report.contains("accepts the API key"), "{report}");
    assert!(
        report.contains("[ok  ] heartbeat              `teleport-access-heartbeat` exists"),
        "{report}"
    );
}

#[actix_rt::test]
async fn check_fails_on_a_heartbeat_that_does_not_exist_and_names_the_fix() {
    let world = common::world().await;
    let config = world.dir.join("check.yaml");
    write_config(&world, &config);
    world
        .opsgenie
        .delete_heartbeat(teleport_opsgenie::sim::opsgenie::DEFAULT_HEARTBEAT);
    let out = run(&["check", "-c", config.to_str().expect("path")]).await;
    let report = text(&out);
    assert_eq!(out.status.code(), Some(78), "{report}");
    assert!(
        report.contains(
            "[FAIL] heartbeat              no heartbeat named `teleport-access-heartbeat`"
        ),
        "{report}"
    );
    assert!(report.contains("fix: create it in Opsgenie"), "{report}");
    assert!(report.contains("`opsgenie.heartbeat_name`"), "{report}");
    // The ping alone still passes: it is the lookup that tells.
    assert!(report.contains("accepts the API key"), "{report}");

    // Another name that exists passes.
    world.opsgenie.create_heartbeat("ops-heartbeat");
    let text_config = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text_config.replace(
            "opsgenie:\n",
            "opsgenie:\n  heartbeat_name: ops-heartbeat\n",
        ),
    )
    .expect("config");
    let out = run(&["check", "-c", config.to_str().expect("path")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("`ops-heartbeat` exists"));
}

#[actix_rt::test]
async fn check_and_start_fail_alike_when_the_listen_port_is_taken() {
    let world = common::world().await;
    let config = world.dir.join("check.yaml");
    write_config(&world, &config);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let text_config = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text_config.replace(
            "http:\n  enabled: false\n",
            &format!("http:\n  enabled: true\n  listen: \"{addr}\"\n"),
        ),
    )
    .expect("config");
    let out = run(&["check", "-c", config.to_str().expect("path")]).await;
    let report = text(&out);
    assert_eq!(out.status.code(), Some(69), "{report}");
    assert!(report.contains("[FAIL] http.listen"), "{report}");
    assert!(report.contains(&addr.to_string()), "{report}");
    assert!(
        report.contains("fix: another process listens there"),
        "{report}"
    );
    // `start` exits with the same code for the same cause.
    let out = run(&["start", "-c", config.to_str().expect("path")]).await;
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    // Once the port is free, the check passes.
    drop(taken);
    let out = run(&["check", "-c", config.to_str().expect("path")]).await;
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains(&format!("[ok  ] http.listen            {addr} is free")),
        "{report}"
    );
}

#[actix_rt::test]
async fn check_names_a_rejected_api_key() {
    let world = common::world().await;
    let config = world.dir.join("check.yaml");
    write_config(&world, &config);
    std::fs::write(
        world.dir.join("api-key"),
        "99999999-2222-3333-4444-555555555555",
    )
    .expect("key");
    let out = run(&["check", "-c", config.to_str().expect("path")]).await;
    let report = text(&out);
    assert_eq!(out.status.code(), Some(78), "{report}");
    assert!(
        report.contains("region"),
        "the hint names the region: {report}"
    );
    assert!(
        !report.contains("99999999-2222"),
        "the key never appears: {report}"
    );
}

#[actix_rt::test]
async fn a_missing_identity_file_is_69_in_start_and_check_alike() {
    let key_file = temp("key");
    std::fs::write(&key_file, "11111111-2222-3333-4444-555555555555").expect("key");
    let missing = temp("identity");
    let file = temp("missing-identity.yaml");
    std::fs::write(
        &file,
        format!(
            "teleport:\n  addr: 127.0.0.1:9\n  identity: {}\nopsgenie:\n  api_url: http://127.0.0.1:9\n  api_key_file: {}\nhttp:\n  enabled: false\n",
            missing.display(),
            key_file.display()
        ),
    )
    .expect("write");
    for command in ["start", "check"] {
        let out = run(&[command, "-c", file.to_str().expect("path")]).await;
        let report = text(&out);
        assert_eq!(out.status.code(), Some(69), "{command}: {report}");
        assert!(
            report.contains(&missing.display().to_string()),
            "{command} names the file: {report}"
        );
    }
}

#[actix_rt::test]
async fn the_toml_sample_checks_like_the_yaml_one_and_debug_goes_anywhere() {
    let out = run(&["configure", "--format=toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(stdout, teleport_opsgenie::config::SAMPLE_TOML);
    let sample = temp("sample.toml");
    std::fs::write(&sample, &out.stdout).expect("write sample");
    let path = sample.to_str().expect("path");
    // Parsed and valid; only the files it names are missing here: 69, not 78.
    for args in [
        vec!["check", "-c", path],
        vec!["-d", "check", "-c", path],
        vec!["check", "--debug", "-c", path],
    ] {
        let out = run(&args).await;
        let report = text(&out);
        assert_eq!(out.status.code(), Some(69), "{args:?}: {report}");
        assert!(report.contains("[ok  ] configuration"), "{report}");
    }
    let out = run(&["configure", "--format=yaml"]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        teleport_opsgenie::config::SAMPLE_YAML
    );
    let out = run(&["configure", "--format=json"]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
}
