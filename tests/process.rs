//! The real binary as a child process against a World: JSON logs that carry the request, no
//! secret anywhere, and a graceful SIGTERM during a burst that loses and duplicates nothing.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use teleport_opsgenie::actors::gateway::GatewayClient;
use teleport_opsgenie::config::{self, Secret, Sources};
use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::sim::world::{World, REQUESTER, REVIEWERS};
use teleport_opsgenie::teleport::identity::Identity;

use common::child::{spawn, write_config};
use common::http::{until_metric, until_status};
use common::{alert_id_recorded, closed, has_alert_id, world, WAIT};

fn request(world: &World, reason: &str) -> String {
    common::request(world, REQUESTER, reason)
}

/// The secrets of `world`: the API key, and every long line of the plugin's private key.
fn secrets(world: &World) -> Vec<String> {
    let mut secrets = vec![world.opsgenie.api_key()];
    let identity = std::fs::read_to_string(&world.plugin_identity).expect("identity file");
    let mut in_key = false;
    for line in identity.lines() {
        if line.contains("PRIVATE KEY-----") {
            in_key = line.contains("BEGIN");
            continue;
        }
        if in_key && line.trim().len() >= 16 {
            secrets.push(line.trim().to_owned());
        }
    }
    assert!(secrets.len() >= 2, "the identity holds a private key");
    secrets
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} contains a secret ({}...):\n{text}",
            &secret[..8.min(secret.len())]
        );
    }
}

#[actix_rt::test]
async fn secrets_never_appear_in_errors_debug_or_logs() {
    let world = world().await;
    let secrets = secrets(&world);
    let key = world.opsgenie.api_key();

    // Configuration errors around the key: wrong types, a typo'd key name, bad characters.
    let dir = world.dir.join("bad-configs");
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = [
        ("list.yaml", format!("opsgenie:\n  api_key: [\"{key}\"]\n")),
        (
            "map.yaml",
            format!("opsgenie:\n  api_key: {{ k: \"{key}\" }}\n"),
        ),
        ("typo.yaml", format!("opsgenie:\n  api_kee: \"{key}\"\n")),
        (
            "both.yaml",
            format!("opsgenie:\n  api_key: \"{key}\"\n  api_key_file: /nonexistent\n"),
        ),
        (
            "newline.yaml",
            format!("opsgenie:\n  api_key: \"{key}\\n{key}\"\n"),
        ),
        (
            "broken.yaml",
            format!("opsgenie:\n  api_key: \"{key}\n  : : :\n"),
        ),
        ("toml.toml", format!("[opsgenie]\napi_key = [\"{key}\"]\n")),
        ("broken.toml", format!("[opsgenie]\napi_key = \"{key}\n")),
    ];
    for (name, text) in &bad {
        let file = dir.join(name);
        std::fs::write(&file, text).expect("write");
        let err = config::load(&Sources::file(file, HashMap::new())).expect_err(name);
        assert_no_secret(name, &format!("{err}\n{err:?}"), &secrets);
    }
    let mut env = HashMap::new();
    env.insert(
        "TELEPORT_OPSGENIE__OPSGENIE__API_KEY".to_owned(),
        format!("{key}\u{7}"),
    );
    env.insert(
        "TELEPORT_OPSGENIE__OPSGENIE__API_KEYS".to_owned(),
        key.clone(),
    );
    if let Err(err) = config::load(&Sources {
        env: Some(env),
        ..Sources::default()
    }) {
        assert_no_secret("env", &format!("{err}\n{err:?}"), &secrets);
    }

    // Debug of a loaded configuration, the identity and the gateway.
    let config = world.config();
    assert_no_secret("Config Debug", &format!("{config:?}"), &secrets);
    let identity = Identity::load(&config.teleport).expect("identity loads");
    assert_no_secret("Identity Debug", &format!("{identity:?}"), &secrets);
    let client = GatewayClient::new(&config.opsgenie, Secret::new(key.clone())).expect("client");
    assert_no_secret("GatewayClient Debug", &format!("{client:?}"), &secrets);

    // A 401 for a wrong key: the error names neither key.
    let wrong = format!("{key}-but-wrong");
    let client = GatewayClient::new(&config.opsgenie, Secret::new(wrong.clone())).expect("client");
    let err = client.health().await.expect_err("a wrong key is refused");
    let text = format!("{err}\n{err:?}");
    assert!(!text.contains(&wrong), "{text}");
    assert_no_secret("401 error", &text, &secrets);

    // `check` with the wrong key, as a user would run it.
    let file = write_config(&world, "debug", "5s");
    let wrong_file = dir.join("wrong-key");
    std::fs::write(&wrong_file, &wrong).expect("write");
    let text = std::fs::read_to_string(&file).expect("read").replace(
        &world.dir.join("api-key").display().to_string(),
        &wrong_file.display().to_string(),
    );
    let wrong_config = dir.join("wrong.yaml");
    std::fs::write(&wrong_config, text).expect("write");
    let mut check = spawn(&["check"], &wrong_config);
    let (status, _) = check.wait_exit(WAIT).await;
    assert!(!status.success());
    let output = format!(
        "{}\n{}",
        check.logs().join("\n"),
        check.stdout.lock().unwrap().join("\n")
    );
    assert!(!output.contains(&wrong), "{output}");
    assert_no_secret("check output", &output, &secrets);

    // A whole run at debug level with JSON logs.
    let mut daemon = spawn(&["start"], &file);
    let addr = daemon.http_addr().await;
    until_status(addr, "/readyz", 200).await;
    let id = request(&world, "logs");
    let a = alias(&id);
    alert_id_recorded(&world, &id).await;
    world
        .teleport
        .review(&id, REVIEWERS[0], true, "ok")
        .expect("review");
    closed(&world, &id).await;
    daemon
        .wait_log("the close logged", |l| l.contains("Closed the alert."))
        .await;
    daemon.signal("TERM");
    let (status, _) = daemon.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0));

    let logs = daemon.logs();
    assert!(logs.len() > 5, "{logs:?}");
    let mut about_request = 0;
    for line in &logs {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        assert!(
            v["message"].is_string() || v["fields"].is_object(),
            "{line}"
        );
        let top = v["request_id"].as_str();
        let in_span = v["span"]["request_id"].as_str();
        if line.contains(&id) {
            // Any line that names the request says which request it is about.
            assert!(
                top == Some(id.as_str()) || in_span == Some(id.as_str()),
                "a line about {id} without request_id: {line}"
            );
            about_request += 1;
        }
        if in_span.is_some() {
            assert_eq!(v["span"]["alias"].as_str(), Some(a.as_str()), "{line}");
        }
    }
    for message in [
        "Created the alert.",
        "Posted a review note.",
        "Closed the alert.",
    ] {
        assert!(
            logs.iter()
                .any(|l| l.contains(message) && l.contains(&format!("\"request_id\":\"{id}\""))),
            "no {message:?} line with the request id"
        );
    }
    assert!(about_request >= 3);
    assert_no_secret("daemon logs", &logs.join("\n"), &secrets);
}

#[actix_rt::test]
async fn sigterm_during_a_burst_exits_cleanly_and_a_restart_loses_nothing() {
    let world = world().await;
    // Slow answers, so that the burst is still in flight when the signal arrives.
    world
        .opsgenie
        .faults()
        .set_fixed_latency(Duration::from_millis(150));
    let file = write_config(&world, "info", "10s");
    let mut daemon = spawn(&["start"], &file);
    let addr = daemon.http_addr().await;
    until_status(addr, "/readyz", 200).await;

    const BURST: usize = 40;
    let ids: Vec<String> = (0..BURST)
        .map(|i| request(&world, &format!("burst {i}")))
        .collect();
    world
        .opsgenie
        .wait_until(WAIT, "a few alerts created", |o| o.alerts().len() >= 3)
        .await
        .expect("work started");
    daemon.signal("TERM");
    // Requests made while it drains: no new step starts, so the restart has work even when
    // every run in flight (creation and alert id under one claim) finished before the exit.
    let mut ids = ids;
    ids.extend((0..5).map(|i| request(&world, &format!("late {i}"))));
    let (status, took) = daemon.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "{}", daemon.logs().join("\n"));
    assert!(took < Duration::from_secs(10), "{took:?}");
    let logs = daemon.logs();
    assert!(
        logs.iter().any(|l| l.contains("Stopped cleanly.")),
        "steps in flight did not finish: {}",
        logs.join("\n")
    );
    let done_before = ids
        .iter()
        .filter(|id| has_alert_id(&world.teleport, id))
        .count();
    assert!(
        done_before < ids.len(),
        "the burst finished before the signal; nothing was tested"
    );

    // The restart picks up the rest from its resync.
    world.opsgenie.faults().clear_latency();
    let mut daemon = spawn(&["start"], &file);
    let _ = daemon.http_addr().await;
    world
        .teleport
        .wait_until(WAIT, "every alert id recorded", |t| {
            ids.iter().all(|id| has_alert_id(t, id))
        })
        .await
        .expect("every request alerted after the restart");

    // Exactly one alert, and exactly one creation, per request.
    let aliases: Vec<String> = ids.iter().map(|id| alias(id)).collect();
    let alerts = world.opsgenie.alerts();
    for a in &aliases {
        assert_eq!(alerts.iter().filter(|x| &x.alias == a).count(), 1, "{a}");
    }
    assert_eq!(alerts.len(), ids.len());
    let mut creations: HashMap<String, usize> = HashMap::new();
    for call in world.opsgenie.calls() {
        if call.method == "POST" && call.api_path == "/v2/alerts" {
            let alias = call
                .body
                .as_ref()
                .and_then(|b| b["alias"].as_str())
                .unwrap_or_default()
                .to_owned();
            *creations.entry(alias).or_default() += 1;
        }
    }
    let wanted: BTreeSet<&String> = aliases.iter().collect();
    let got: BTreeSet<&String> = creations.keys().collect();
    assert_eq!(wanted, got);
    assert!(
        creations.values().all(|n| *n == 1),
        "duplicate creations: {creations:?}"
    );

    daemon.signal("TERM");
    let (status, _) = daemon.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0));
}

#[actix_rt::test]
async fn a_second_signal_stops_at_once() {
    let world = world().await;
    let file = write_config(&world, "info", "30s");
    let mut daemon = spawn(&["start"], &file);
    let addr = daemon.http_addr().await;
    until_status(addr, "/readyz", 200).await;
    // Answers so slow that steps in flight cannot finish within the shutdown timeout.
    world
        .opsgenie
        .faults()
        .set_fixed_latency(Duration::from_secs(20));
    for i in 0..5 {
        request(&world, &format!("slow {i}"));
    }
    // Wait until steps are in flight (they will not finish: the backend takes 20 s).
    until_metric(addr, "teleport_opsgenie_steps_in_flight", &[], 1.0).await;
    daemon.signal("TERM");
    daemon
        .wait_log("shutdown begun", |l| l.contains("Shutting down."))
        .await;
    // The second signal; repeated in case the first copy arrives before the daemon listens
    // for it again.
    let start = tokio::time::Instant::now();
    let status = loop {
        let _ = std::process::Command::new("kill")
            .arg("-INT")
            .arg(daemon.child.id().to_string())
            .status();
        if let Some(status) = daemon.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after the second signal"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(status.code(), Some(0));
    daemon.drained().await;
    assert!(daemon.logs().iter().any(|l| l.contains("Second signal")));
}

#[actix_rt::test]
async fn debug_flag_before_the_subcommand_shows_the_daemons_lines_not_its_libraries() {
    let world = world().await;
    // The file says `info`; `-d` raises the daemon's own lines to debug.
    let file = write_config(&world, "info", "5s");
    let mut daemon = spawn(&["-d", "start"], &file);
    let addr = daemon.http_addr().await;
    until_status(addr, "/readyz", 200).await;
    let id = request(&world, "debug lines");
    alert_id_recorded(&world, &id).await;
    daemon.signal("TERM");
    let (status, _) = daemon.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));
    let lines: Vec<serde_json::Value> = daemon
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let debug_targets: BTreeSet<String> = lines
        .iter()
        .filter(|l| l["level"] == "DEBUG")
        .filter_map(|l| l["target"].as_str().map(str::to_owned))
        .collect();
    assert!(
        debug_targets
            .iter()
            .any(|t| t.starts_with("teleport_opsgenie")),
        "no debug line of the daemon's own: {debug_targets:?}"
    );
    // gRPC over h2, TLS by rustls, HTTP by hyper and reqwest all ran; none of their debug
    // lines got through.
    for target in &debug_targets {
        assert!(
            target.starts_with("teleport_opsgenie"),
            "a library's debug line got through: {target}"
        );
    }
}
