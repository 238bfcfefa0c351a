//! Connecting to Teleport the ways real clusters need: directly to Auth and through the Proxy's
//! TLS routing, with every key kind; failures that each get their own actionable message; an
//! identity file rewritten mid-run; a watch that goes silent.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use teleport_opsgenie::check;
use teleport_opsgenie::config::{Config, ConnectMode};
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::pb::types::RequestState;
use teleport_opsgenie::sim::pki::{KeyKind, Pki};
use teleport_opsgenie::sim::world::{World, PLUGIN_USER, REQUESTER};

use common::{alert, alert_id_recorded, closed, creates, world, WAIT};

async fn start(config: Config) -> Daemon {
    Daemon::start(config, RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("daemon starts: {e}"))
}

async fn start_err(config: Config) -> String {
    match Daemon::start(config, RunOptions::default()).await {
        Ok(daemon) => {
            daemon.shutdown().await;
            panic!("the daemon started");
        }
        Err(err) => err.to_string(),
    }
}

fn request(world: &World, reason: &str) -> String {
    common::request(world, REQUESTER, reason)
}

/// Request -> alert -> approval -> closed alert.
async fn full_flow(world: &World) {
    let id = request(world, "flow");
    alert(world, &id).await;
    world
        .teleport
        .set_state(&id, RequestState::Approved, "fine")
        .expect("approve");
    closed(world, &id).await;
}

#[actix_rt::test]
async fn direct_to_auth_full_flow() {
    let world = world().await;
    let daemon = start(world.config()).await;
    full_flow(&world).await;
    assert_eq!(creates(&world), 1);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn through_the_proxy_full_flow_in_proxy_and_auto_mode() {
    let world = world().await;
    let proxy = world.start_proxy().await.expect("proxy");
    for mode in [ConnectMode::Proxy, ConnectMode::Auto] {
        let mut config = world.config();
        config.teleport.addr = proxy.addr().to_string();
        config.teleport.mode = mode;
        let routed_before = proxy.routed();
        let daemon = start(config).await;
        full_flow(&world).await;
        assert!(proxy.routed() > routed_before, "{mode:?} went through");
        let hello = proxy.last_hello().expect("a hello");
        let hex: String = world
            .teleport
            .cluster_name()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hello.server_name,
            Some(format!("{hex}.teleport.cluster.local"))
        );
        assert_eq!(
            hello.alpn,
            vec![
                format!("teleport-auth@{hex}.teleport.cluster.local"),
                "h2".to_owned()
            ]
        );
        daemon.shutdown().await;
    }
    // Auto tried the direct route first and was refused by the Proxy's router.
    assert!(proxy.refused() >= 1);
    assert_eq!(creates(&world), 2);
}

#[actix_rt::test]
async fn rsa_and_ed25519_identities_work_end_to_end() {
    let world = world().await;
    for kind in [KeyKind::Rsa2048, KeyKind::Ed25519] {
        world
            .teleport
            .pki()
            .write_identity_file(
                &world.plugin_identity,
                PLUGIN_USER,
                Duration::from_secs(3600),
                kind,
            )
            .expect("identity");
        let daemon = start(world.config()).await;
        let id = request(&world, "key kinds");
        alert(&world, &id).await;
        daemon.shutdown().await;
    }
}

/// Writes an identity file (key, certificate, CA) by hand, for certificates the helpers do not
/// make: expired ones, or from another cluster.
fn write_identity(path: &Path, pki: &Pki, user: &str, not_after: SystemTime) {
    let now = SystemTime::now();
    let (cert, key) = pki
        .client_cert(
            user,
            now - Duration::from_secs(7 * 86_400),
            not_after,
            KeyKind::EcdsaP256,
        )
        .expect("cert");
    let text = format!(
        "{}\n{}\n{}\n",
        key.trim_end(),
        cert.trim_end(),
        pki.ca_pem().trim_end()
    );
    std::fs::write(path, text).expect("write identity");
}

#[actix_rt::test]
async fn an_expired_identity_is_refused_with_its_expiry_date() {
    let world = world().await;
    let expired_at = SystemTime::now() - Duration::from_secs(2 * 86_400);
    write_identity(
        &world.plugin_identity,
        world.teleport.pki(),
        PLUGIN_USER,
        expired_at,
    );
    let message = start_err(world.config()).await;
    let day = humantime::format_rfc3339_seconds(expired_at).to_string()[..10].to_owned();
    assert!(message.contains("expired"), "{message}");
    assert!(message.contains(&day), "{day} missing from: {message}");
    assert!(message.contains("tctl auth sign"), "{message}");
}

#[actix_rt::test]
async fn an_identity_from_another_cluster_names_the_unknown_ca() {
    let world = world().await;
    let other = Pki::new("elsewhere.example").expect("pki");
    write_identity(
        &world.plugin_identity,
        &other,
        PLUGIN_USER,
        SystemTime::now() + Duration::from_secs(3600),
    );
    for mode in [ConnectMode::Auth, ConnectMode::Auto] {
        let mut config = world.config();
        config.teleport.mode = mode;
        let message = start_err(config).await;
        assert!(
            message.contains("not signed by the identity's CAs"),
            "{mode:?}: {message}"
        );
        assert!(!message.contains("neither direct"), "{mode:?}: {message}");
    }
}

#[actix_rt::test]
async fn a_wrong_cluster_or_port_gets_its_own_message() {
    let world = world().await;
    let proxy = world.start_proxy().await.expect("proxy");
    // The Proxy does not know this cluster, so it drops the connection.
    let mut config = world.config();
    config.teleport.addr = proxy.addr().to_string();
    config.teleport.mode = ConnectMode::Proxy;
    config.teleport.cluster_name = Some("wrong.example".into());
    let message = start_err(config).await;
    assert!(message.contains("teleport.cluster_name"), "{message}");
    assert!(message.contains("proxy routing"), "{message}");
    // `mode: auth` against the Proxy: refused for want of an application protocol.
    let mut config = world.config();
    config.teleport.addr = proxy.addr().to_string();
    config.teleport.mode = ConnectMode::Auth;
    let message = start_err(config).await;
    assert!(message.contains("did not agree on h2"), "{message}");
}

#[actix_rt::test]
async fn a_missing_permission_names_the_role_rule_at_start_and_in_check() {
    let world = world().await;
    world
        .teleport
        .add_role_yaml(
            r#"
kind: role
version: v7
metadata:
  name: watch-only
spec:
  allow:
    rules:
      - resources: ['access_request']
        verbs: ['list', 'read']
"#,
        )
        .expect("role");
    world.teleport.add_user("watch-only-plugin", ["watch-only"]);
    world
        .teleport
        .write_identity(&world.plugin_identity, "watch-only-plugin")
        .expect("identity");
    let message = start_err(world.config()).await;
    assert!(message.contains("permission denied"), "{message}");
    assert!(
        message.contains("`access_plugin_data` with verb `update`"),
        "{message}"
    );
    let (report, code) = check::report(&world.config()).await;
    assert_ne!(code, 0, "{report}");
    assert!(report.contains("[ok  ] list access requests"), "{report}");
    assert!(report.contains("[FAIL] write plugin data"), "{report}");
    assert!(report.contains("access_plugin_data"), "{report}");
}

#[actix_rt::test]
async fn check_passes_against_auth_and_through_the_proxy() {
    let world = world().await;
    let proxy = world.start_proxy().await.expect("proxy");
    let (report, code) = check::report(&world.config()).await;
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("directly to the Auth Service"), "{report}");
    assert!(report.contains(world.teleport.cluster_name()), "{report}");
    assert!(report.contains("version 17.4.2"), "{report}");
    assert!(
        report.contains("user access-plugin, valid until"),
        "{report}"
    );
    assert!(report.contains("[ok  ] write plugin data"), "{report}");
    let mut config = world.config();
    config.teleport.addr = proxy.addr().to_string();
    config.teleport.mode = ConnectMode::Auto;
    let (report, code) = check::report(&config).await;
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("through the Proxy (TLS routing)"),
        "{report}"
    );
}

#[actix_rt::test]
async fn the_check_command_exits_zero_through_the_proxy() {
    let world = world().await;
    let proxy = world.start_proxy().await.expect("proxy");
    let identity = world.plugin_identity.display().to_string();
    let yaml = format!(
        "teleport:\n  addr: {}\n  mode: proxy\n  identity: {identity}\nopsgenie:\n  api_url: {}\n  api_key: {}\n",
        proxy.addr(),
        world.opsgenie.url(),
        world.opsgenie.api_key(),
    );
    let path = world.dir.join("check.yaml");
    std::fs::write(&path, yaml).expect("config");
    // On the blocking pool: the fakes share this test's thread and must keep answering.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_teleport-opsgenie"))
            .arg("check")
            .arg("-c")
            .arg(&path)
            .output()
    })
    .await
    .expect("joined")
    .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("through the Proxy"), "{stdout}");
}

#[actix_rt::test]
async fn a_rewritten_identity_file_is_used_without_losing_or_repeating_alerts() {
    let world = world().await;
    world.teleport.add_user(
        "access-plugin-renewed",
        ["access-plugin", "access-plugin-approver"],
    );
    let mut config = world.config();
    config.teleport.refresh_identity_interval = Duration::from_millis(100);
    let daemon = start(config).await;
    let before = request(&world, "before");
    alert(&world, &before).await;
    let connects = daemon.watch_health().connects();

    // A broken file: the old connection stays in use.
    std::fs::write(&world.plugin_identity, "not an identity\n").expect("write");
    let broken = request(&world, "while the file is broken");
    alert(&world, &broken).await;

    // tbot's renewal, here for another user so the switch shows in the server's records.
    world
        .teleport
        .write_identity(&world.plugin_identity, "access-plugin-renewed")
        .expect("identity");
    let during = request(&world, "during the switch");
    world
        .teleport
        .wait_until(WAIT, "the watch reopened as the renewed user", |t| {
            t.calls()
                .iter()
                .any(|c| c.method == "WatchEvents" && c.caller == "access-plugin-renewed")
        })
        .await
        .expect("reconnected with the new identity");
    let after = request(&world, "after");
    for id in [&during, &after] {
        alert(&world, id).await;
    }
    world
        .teleport
        .wait_until(WAIT, "plugin data written as the renewed user", |t| {
            t.calls()
                .iter()
                .any(|c| c.method == "UpdatePluginData" && c.caller == "access-plugin-renewed")
        })
        .await
        .expect("writes use the new identity");
    assert_eq!(daemon.identity_reloads().await, 1);
    assert!(daemon.watch_health().connects() > connects);
    // Every request has exactly one alert.
    for id in [&before, &broken, &during, &after] {
        alert_id_recorded(&world, id).await;
    }
    assert_eq!(creates(&world), 4);
    assert_eq!(world.opsgenie.alerts().len(), 4);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn a_silent_watch_is_reopened_and_nothing_is_missed() {
    let world = world().await;
    let mut config = world.config();
    config.teleport.watch_silence_timeout = Duration::from_millis(800);
    let daemon = start(config).await;
    // Ready means the first resync is done, so the request below can only arrive by an event.
    tokio::time::timeout(WAIT, async {
        while !daemon.watch_health().is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the watch is ready");
    let watches = world.teleport.count_calls("WatchEvents");
    world.teleport.stall_watchers();
    let id = request(&world, "while silent");
    alert(&world, &id).await;
    assert!(world.teleport.count_calls("WatchEvents") > watches);
    assert_eq!(creates(&world), 1);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn check_reads_the_review_and_lock_rules_from_the_identitys_own_roles() {
    let world = world().await;
    let mut config = world.config();
    config.auto_approval.enabled = true;
    // The guide's plugin user may review `editor` requests, and has no lock rule.
    let (report, code) = check::report(&config).await;
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("[ok  ] review rule            may review requests for `editor`"),
        "{report}"
    );
    assert!(report.contains("[ok  ] lock rule"), "{report}");
    assert!(
        report.contains("`auto_approval.shift_end` is not `revoke`"),
        "{report}"
    );

    // Without `review_requests`, auto-approval would decline everything: a failure, with the
    // fix; the lock rule, present here, is reported as such.
    world
        .teleport
        .add_role_yaml(
            r#"
kind: role
version: v7
metadata:
  name: plugin-without-review
spec:
  allow:
    rules:
      - resources: ['access_request']
        verbs: ['list', 'read']
      - resources: ['access_plugin_data']
        verbs: ['update']
      - resources: ['lock']
        verbs: ['create', 'update']
"#,
        )
        .expect("role");
    world
        .teleport
        .add_user("no-review-plugin", ["plugin-without-review"]);
    world
        .teleport
        .write_identity(&world.plugin_identity, "no-review-plugin")
        .expect("identity");
    let (report, code) = check::report(&config).await;
    assert_eq!(code, 78, "{report}");
    assert!(report.contains("[FAIL] review rule"), "{report}");
    assert!(report.contains("config/access-plugin.yaml"), "{report}");
    assert!(
        report.contains("[ok  ] lock rule              may create and update locks"),
        "{report}"
    );
    // Off, the missing rule is only information.
    config.auto_approval.enabled = false;
    let (report, code) = check::report(&config).await;
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("not needed while auto-approval is off"),
        "{report}"
    );
    // Nothing was created to find out.
    assert_eq!(world.teleport.request_count(), 0);
}
