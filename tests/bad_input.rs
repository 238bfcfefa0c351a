//! Bad input of every kind: malformed identity files, malformed configurations (through the real
//! binary), odd access requests through the fake Teleport and the daemon, and property tests of
//! the identity parser, the plugin-data codec and the alert renderer. Nothing may panic; every
//! alert must stay within Opsgenie's limits (the fake Opsgenie answers 422 otherwise).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use teleport_opsgenie::core::model::{AccessRequest, NOTIFY_SERVICES_ANNOTATION, TEAMS_ANNOTATION};
use teleport_opsgenie::core::plugin_data::{Claim, Decision, PluginData, Resolution};
use teleport_opsgenie::core::render::{self, limits, AlertSettings};
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::sim::pki::{KeyKind, Pki};
use teleport_opsgenie::teleport::identity::{Identity, IdentityError};

const KINDS: [KeyKind; 3] = [KeyKind::EcdsaP256, KeyKind::Ed25519, KeyKind::Rsa2048];
const DAY: Duration = Duration::from_secs(24 * 3600);

fn pki() -> Pki {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Pki::new("bad-input.example").expect("pki")
}

/// The PEM blocks of an identity file, in order (key, certificate, CA), without the SSH lines.
fn blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = &mut current {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ") {
            out.extend(current.take());
        }
    }
    out
}

// ----- identity files -----

#[test]
fn valid_identities_of_each_key_kind_parse() {
    let pki = pki();
    for kind in KINDS {
        let text = pki.identity_file("access-plugin", DAY, kind).expect("file");
        let id = Identity::parse(&text).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(id.username, "access-plugin");
        id.check_validity(SystemTime::now()).expect("valid now");
    }
}

#[test]
fn truncated_identities_are_refused_precisely() {
    let pki = pki();
    for kind in KINDS {
        let text = pki.identity_file("access-plugin", DAY, kind).expect("file");
        let parts = blocks(&text);
        // Cut inside each block: the cut-short block is reported, never a panic.
        for (i, block) in parts.iter().enumerate() {
            let start = text.find(block.as_str()).expect("block in file");
            let cut = &text[..start + block.len() / 2];
            match Identity::parse(cut) {
                Err(IdentityError::Truncated { .. }) => {}
                other => panic!("{kind:?} cut in block {i}: {other:?}"),
            }
        }
        // Cut at every 97th byte: always an error (or, past the last block's end, a success).
        for at in (0..text.len()).step_by(97) {
            if text.is_char_boundary(at) {
                let _ = Identity::parse(&text[..at]);
            }
        }
        // Only the key: the certificate is missing.
        assert!(matches!(
            Identity::parse(&parts[0]),
            Err(IdentityError::Missing { .. })
        ));
        // Key and certificate without the CA.
        assert!(matches!(
            Identity::parse(&format!("{}{}", parts[0], parts[1])),
            Err(IdentityError::NoCa { .. })
        ));
        assert!(matches!(
            Identity::parse(""),
            Err(IdentityError::Missing { .. })
        ));
    }
}

#[test]
fn blocks_in_the_wrong_order_are_refused() {
    let pki = pki();
    for kind in KINDS {
        let text = pki.identity_file("access-plugin", DAY, kind).expect("file");
        let p = blocks(&text);
        for order in [[1, 0, 2], [2, 1, 0], [1, 2, 0], [0, 2, 0]] {
            let shuffled: String = order.iter().map(|&i| p[i].as_str()).collect();
            match Identity::parse(&shuffled) {
                Err(IdentityError::WrongOrder { .. } | IdentityError::KeyMismatch { .. }) => {}
                other => panic!("{kind:?} order {order:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn key_and_certificate_that_do_not_match_are_refused() {
    let pki = pki();
    for kind in KINDS {
        let a = blocks(&pki.identity_file("access-plugin", DAY, kind).expect("a"));
        let b = blocks(&pki.identity_file("access-plugin", DAY, kind).expect("b"));
        let mixed = format!("{}{}{}", a[0], b[1], a[2]);
        match Identity::parse(&mixed) {
            Err(IdentityError::KeyMismatch { .. }) => {}
            other => panic!("{kind:?}: {other:?}"),
        }
    }
    // A key of another kind than the certificate's.
    let ec = blocks(&pki.identity_file("u", DAY, KeyKind::EcdsaP256).expect("ec"));
    let ed = blocks(&pki.identity_file("u", DAY, KeyKind::Ed25519).expect("ed"));
    assert!(matches!(
        Identity::parse(&format!("{}{}{}", ed[0], ec[1], ec[2])),
        Err(IdentityError::KeyMismatch { .. })
    ));
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let pki = pki();
    let now = SystemTime::now();
    for kind in KINDS {
        let (cert, key) = pki
            .client_cert("access-plugin", now - 2 * DAY, now - DAY, kind)
            .expect("expired cert");
        let id = Identity::from_parts(&key, &cert, &pki.ca_pem()).expect("parses");
        assert!(matches!(
            id.check_validity(now),
            Err(IdentityError::Expired { .. })
        ));
        let (cert, key) = pki
            .client_cert("access-plugin", now + DAY, now + 2 * DAY, kind)
            .expect("future cert");
        let id = Identity::from_parts(&key, &cert, &pki.ca_pem()).expect("parses");
        assert!(matches!(
            id.check_validity(now),
            Err(IdentityError::NotYetValid { .. })
        ));
    }
}

#[test]
fn damaged_base64_is_refused() {
    let pki = pki();
    let text = pki
        .identity_file("access-plugin", DAY, KeyKind::EcdsaP256)
        .expect("file");
    let p = blocks(&text);
    let lines: Vec<&str> = p[1].lines().collect();
    let mut damaged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    damaged[2] = damaged[2].replace(|c: char| c.is_ascii_alphanumeric(), "!");
    let text = format!("{}{}\n{}", p[0], damaged.join("\n"), p[2]);
    assert!(Identity::parse(&text).is_err());
}

// ----- configurations, through the binary -----

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_teleport-opsgenie")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "teleport-opsgenie-bad-input-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `start -c` on `yaml`; returns the exit code and stderr.
fn start_with(dir: &Path, yaml: &str) -> (i32, String) {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = Command::new(bin())
        .args(["start", "-c"])
        .arg(&path)
        .output()
        .expect("run the binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_configurations_exit_78_and_unreadable_files_69_naming_the_key() {
    let dir = temp_dir("config");
    let pki = pki();
    let identity = dir.join("identity");
    pki.write_identity_file(&identity, "access-plugin", DAY, KeyKind::EcdsaP256)
        .expect("identity");
    let key = dir.join("api-key");
    std::fs::write(&key, "0123").expect("key");
    let good = format!(
        "teleport:\n  addr: 127.0.0.1:1\n  identity: {}\nopsgenie:\n  api_key_file: {}\n",
        identity.display(),
        key.display()
    );
    let cases: Vec<(String, &str)> = vec![
        (good.replace("  addr:", "  adr:"), "teleport.adr"),
        (
            format!("{good}daemon:\n  claim_ttl: soon\n"),
            "daemon.claim_ttl",
        ),
        (
            good.replace("opsgenie:\n", "opsgenie:\n  priority: P9\n"),
            "opsgenie.priority",
        ),
        (
            good.replace("opsgenie:\n", "opsgenie:\n  tags: []\n"),
            "opsgenie.tags",
        ),
        (
            good.replace(&format!("  api_key_file: {}\n", key.display()), ""),
            "opsgenie.api_key",
        ),
        (format!("{good}teleport: [\n"), "config.yaml"),
        (
            format!("{good}http:\n  listen: not-an-address\n"),
            "http.listen",
        ),
    ];
    for (yaml, names) in cases {
        let (code, stderr) = start_with(&dir, &yaml);
        // A named file that cannot be read is 69 (worth a restart once the file is there), as
        // in `check`; every other problem is the configuration's, 78.
        let expected = if names == "teleport.identity" { 69 } else { 78 };
        assert_eq!(code, expected, "{names}: {stderr}");
        assert!(stderr.contains(names), "{names} not named in: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // A named file that cannot be read is 69, not 78 (README, exit codes; `check` agrees).
    let missing = good.replace(&identity.display().to_string(), "/nonexistent/identity");
    let (code, stderr) = start_with(&dir, &missing);
    assert_eq!(code, 69, "{stderr}");
    assert!(stderr.contains("teleport.identity"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_identity_files_exit_78_naming_the_file() {
    let dir = temp_dir("identity");
    let pki = pki();
    let key = dir.join("api-key");
    std::fs::write(&key, "0123").expect("key");
    let now = SystemTime::now();
    let good = pki
        .identity_file("access-plugin", DAY, KeyKind::Ed25519)
        .expect("file");
    let p = blocks(&good);
    let (cert, expired_key) = pki
        .client_cert("access-plugin", now - 2 * DAY, now - DAY, KeyKind::Rsa2048)
        .expect("expired");
    let other = blocks(
        &pki.identity_file("access-plugin", DAY, KeyKind::Ed25519)
            .expect("other"),
    );
    let files = [
        ("truncated", good[..good.len() / 2].to_owned()),
        ("wrong-order", format!("{}{}{}", p[1], p[0], p[2])),
        ("mismatch", format!("{}{}{}", p[0], other[1], p[2])),
        ("expired", format!("{expired_key}{cert}{}", pki.ca_pem())),
        (
            "garbage",
            "\u{0}\u{1b}[31m not an identity \u{202e}".to_owned(),
        ),
    ];
    for (name, text) in files {
        let identity = dir.join(format!("identity-{name}"));
        std::fs::write(&identity, text).expect("write identity");
        let yaml = format!(
            "teleport:\n  addr: 127.0.0.1:1\n  identity: {}\nopsgenie:\n  api_key_file: {}\n",
            identity.display(),
            key.display()
        );
        let (code, stderr) = start_with(&dir, &yaml);
        assert_eq!(code, 78, "{name}: {stderr}");
        assert!(
            stderr.contains(&identity.display().to_string()),
            "{name}: the file is not named: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- odd requests through the fake Teleport and the daemon -----

const ODD_ROLE_ANNOTATIONS: usize = 1_000;

fn odd_role() -> String {
    let mut yaml = String::from(
        "kind: role\nversion: v7\nmetadata:\n  name: odd-requester\nspec:\n  allow:\n    request:\n      roles: ['*']\n      annotations:\n",
    );
    yaml.push_str("        teleport.dev/notify-services: [");
    let schedules: Vec<String> = (0..200).map(|i| format!("'schedule-{i}'")).collect();
    yaml.push_str(&schedules.join(", "));
    yaml.push_str("]\n        teleport.dev/teams: ['team-a', 'team-b']\n");
    for i in 0..ODD_ROLE_ANNOTATIONS - 2 {
        yaml.push_str(&format!(
            "        example.com/annotation-{i}: ['value {i}']\n"
        ));
    }
    yaml
}

#[actix_rt::test]
async fn odd_requests_give_alerts_within_limits() {
    let world = common::world().await;
    world.teleport.add_role_yaml(&odd_role()).expect("role");
    let long_user = "u".repeat(500);
    let rtl_user = "\u{202e}مستخدم\u{200f}@example.com";
    let control_user = "ctl\u{1b}[31m\u{7}user";
    for user in ["odd", long_user.as_str(), rtl_user, control_user] {
        world.teleport.add_user(user, ["odd-requester"]);
    }
    let many_roles: Vec<String> = (0..10_000).map(|i| format!("role-{i:05}")).collect();
    // Teleport refuses reasons over 4096 bytes; this is the most it accepts, in multi-byte
    // characters so that byte and character counts differ.
    let max_reason = "€".repeat(4096 / 3);
    let cases: Vec<(&str, Vec<String>, String)> = vec![
        ("odd", vec!["editor".into()], String::new()),
        ("odd", vec!["editor".into()], max_reason),
        ("odd", many_roles, "ten thousand roles".into()),
        (
            "odd",
            vec!["editor".into()],
            "escapes \\x00 \\u{ffff} %s %n \u{0}\u{1b}[2J\u{7f}\r\n\t\u{fffd}".into(),
        ),
        (
            "odd",
            vec!["editor".into()],
            "\u{202e}سبب الطلب\u{202c} right-to-left \u{200f}".into(),
        ),
        (&long_user, vec!["editor".into()], "long user".into()),
        (rtl_user, vec!["editor".into()], "rtl user".into()),
        (control_user, vec!["editor".into()], "control user".into()),
    ];
    let daemon = Daemon::start(world.config(), RunOptions::default())
        .await
        .expect("daemon");
    let mut ids = Vec::new();
    for (user, roles, reason) in &cases {
        let request = world
            .teleport
            .create_request(user, roles, reason)
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        ids.push(request.metadata.expect("metadata").name);
    }
    for id in &ids {
        let alert = common::alert(&world, id).await;
        assert!(alert.message.chars().count() <= limits::MESSAGE);
        assert!(alert.description.as_deref().unwrap_or("").chars().count() <= limits::DESCRIPTION);
        assert!(alert.responders.len() <= limits::RESPONDERS);
    }
    let refused = world
        .opsgenie
        .calls()
        .iter()
        .filter(|c| c.status == 422)
        .count();
    assert_eq!(
        refused, 0,
        "the fake Opsgenie refused an alert as too large"
    );
    assert_eq!(daemon.permanent_failures(), 0);
    // Resolve them all: the review notes and closes also stay within limits.
    for id in &ids {
        world
            .teleport
            .set_state(
                id,
                teleport_opsgenie::pb::types::RequestState::Denied,
                &"n".repeat(4000),
            )
            .expect("deny");
    }
    for id in &ids {
        common::closed(&world, id).await;
    }
    assert!(daemon.shutdown().await);
}

#[test]
fn a_megabyte_reason_is_truncated() {
    let mut request = sample_request();
    request.request_reason = "x".repeat(1 << 20);
    request.user = "y".repeat(100_000);
    request.roles = (0..10_000).map(|i| format!("role-{i}")).collect();
    let alert = render::alert(&request, &settings());
    check_limits(&alert);
}

// ----- property tests -----

fn sample_request() -> AccessRequest {
    AccessRequest {
        created: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        ..AccessRequest::example("6c1c4a8e-7a34-4f3e-9d7b-0d9b2f4b8a11", "alice", &["editor"])
    }
}

fn settings() -> AlertSettings {
    AlertSettings {
        web_proxy_url: Some("https://teleport.example.com".into()),
        cluster: "example.com".into(),
        priority: "P3".into(),
        tags: vec!["teleport-access-request".into()],
        default_schedules: vec!["Default".into()],
        default_teams: vec![],
        source: "teleport-opsgenie".into(),
    }
}

fn check_limits(alert: &teleport_opsgenie::backend::AlertPayload) {
    let chars = |s: &str| s.chars().count();
    assert!(chars(&alert.message) <= limits::MESSAGE, "message");
    assert!(chars(&alert.alias) <= limits::ALIAS, "alias");
    assert!(
        chars(&alert.description) <= limits::DESCRIPTION,
        "description"
    );
    assert!(alert.responders.len() <= limits::RESPONDERS, "responders");
    assert!(alert.tags.len() <= limits::TAGS, "tags");
    assert!(alert.tags.iter().all(|t| chars(t) <= limits::TAG), "tag");
    let details: usize = alert.details.iter().map(|(k, v)| chars(k) + chars(v)).sum();
    assert!(details <= limits::DETAILS, "details");
    assert!(chars(&alert.entity) <= limits::ENTITY, "entity");
    assert!(chars(&alert.source) <= limits::SOURCE, "source");
}

/// Role names as Teleport allows them: non-empty, no commas (the codec joins roles with `,`, so
/// this is the domain in which the round trip is exact).
fn role_name() -> impl Strategy<Value = String> {
    "[^,]{1,40}"
}

fn plugin_data() -> impl Strategy<Value = PluginData> {
    (
        (
            ".{0,40}",
            ".{0,40}",
            ".{0,60}",
            prop::collection::vec(role_name(), 0..8),
            prop::option::of(0u64..4_000_000_000),
            ".{0,200}",
        ),
        (
            0usize..1000,
            prop::option::of(prop_oneof![
                Just(Resolution::Approved),
                Just(Resolution::Denied),
                Just(Resolution::Promoted),
                Just(Resolution::Expired),
            ]),
            ".{0,60}",
            prop::option::of(prop_oneof![
                Just(Decision::Approved),
                Just(Decision::Declined)
            ]),
            any::<u32>(),
            prop::option::of((".{1,40}", any::<u64>())),
        ),
    )
        .prop_map(
            |(
                (alert_id, alert_request_id, user, roles, created, request_reason),
                (reviews_count, resolution, resolve_reason, decision, lookup_failures, claim),
            )| PluginData {
                alert_id,
                alert_request_id,
                user,
                roles,
                created: created.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
                request_reason,
                reviews_count,
                resolution,
                decision_note: resolve_reason.clone(),
                resolve_reason,
                decision,
                lookup_failures,
                unconfirmed: None,
                claim: claim.map(|(holder, until_ms)| Claim { holder, until_ms }),
                revocation: None,
            },
        )
}

fn access_request() -> impl Strategy<Value = AccessRequest> {
    (
        "\\PC{0,300}|.{0,600}",
        prop::collection::vec(".{0,80}", 0..200),
        ".{0,20000}",
        prop::collection::vec(".{0,80}", 0..80),
        prop::collection::vec(".{0,80}", 0..10),
    )
        .prop_map(|(user, roles, reason, schedules, teams)| {
            let mut request = sample_request();
            request.user = user;
            request.roles = roles;
            request.request_reason = reason;
            request
                .system_annotations
                .insert(NOTIFY_SERVICES_ANNOTATION.into(), schedules);
            request
                .system_annotations
                .insert(TEAMS_ANNOTATION.into(), teams);
            request
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn identity_parser_never_panics(text in ".{0,2000}") {
        let _ = Identity::parse(&text);
    }

    #[test]
    fn identity_parser_never_panics_on_damaged_files(cut in 0usize..2000, at in 0usize..2000, with in any::<char>()) {
        let text = IDENTITY.with(|t| t.clone());
        let mut chars: Vec<char> = text.chars().collect();
        if !chars.is_empty() {
            let at = at % chars.len();
            chars[at] = with;
        }
        let damaged: String = chars.into_iter().collect();
        let end = damaged.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(damaged.len());
        let _ = Identity::parse(&damaged[..end]);
        let _ = Identity::parse(&damaged);
    }

    #[test]
    fn plugin_data_round_trips(data in plugin_data()) {
        prop_assert_eq!(PluginData::decode(&data.encode()), data);
    }

    #[test]
    fn plugin_data_decode_never_panics(map in prop::collection::btree_map(".{0,20}", ".{0,40}", 0..20)) {
        let data = PluginData::decode(&map);
        // What was decoded encodes and decodes to itself.
        prop_assert_eq!(PluginData::decode(&data.encode()), data);
    }

    #[test]
    fn rendered_alerts_stay_within_limits(request in access_request()) {
        check_limits(&render::alert(&request, &settings()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn generated_identities_round_trip(user in "[a-z][a-z0-9@._-]{0,40}", kind in 0usize..3) {
        let text = PKI.with(|p| p.identity_file(&user, DAY, KINDS[kind])).expect("file");
        let id = Identity::parse(&text).expect("parses");
        prop_assert_eq!(&id.username, &user);
        prop_assert!(id.check_validity(SystemTime::now()).is_ok());
    }
}

thread_local! {
    static PKI: Pki = pki();
    static IDENTITY: String = PKI.with(|p| p.identity_file("access-plugin", DAY, KeyKind::EcdsaP256)).expect("identity");
}

// ----- configurations: ranges, hostile values and structure (the config helper's block) -----

/// Runs `command -c <yaml>` (`check` or `start`); returns the exit code (`None` when killed by
/// a signal, e.g. an abort) and stderr.
fn run_config(dir: &Path, command: &str, yaml: &str) -> (Option<i32>, String) {
    let path = dir.join(format!("{command}.yaml"));
    std::fs::write(&path, yaml).expect("write config");
    let out = Command::new(bin())
        .args([command, "-c"])
        .arg(&path)
        .arg("--config-dir")
        .arg(dir.join("no-drop-ins.d"))
        .output()
        .expect("run the binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A valid configuration in `dir` (real identity, API key file, loopback addresses only).
fn good_config(dir: &Path) -> String {
    let pki = pki();
    let identity = dir.join("identity");
    pki.write_identity_file(&identity, "access-plugin", DAY, KeyKind::EcdsaP256)
        .expect("identity");
    let key = dir.join("api-key");
    std::fs::write(&key, "0123").expect("key");
    std::fs::create_dir_all(dir.join("no-drop-ins.d")).expect("drop-in dir");
    format!(
        "teleport:\n  addr: 127.0.0.1:1\n  identity: {}\nopsgenie:\n  api_url: http://127.0.0.1:1\n  api_key_file: {}\n",
        identity.display(),
        key.display()
    )
}

#[test]
fn out_of_range_durations_and_counts_exit_78_naming_the_key_and_range() {
    let dir = temp_dir("ranges");
    let good = good_config(&dir);
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "daemon",
            "claim_ttl",
            "500000000000y",
            "Range: 10ms to 1day.",
        ),
        (
            "daemon",
            "orphan_sweep_interval",
            "500000000000y",
            "Range: 0s (off), or 10ms to 7days.",
        ),
        (
            "auto_approval",
            "cache_ttl",
            "500000000000y",
            "Range: 0s (off), or 1ms to 1day.",
        ),
        (
            "daemon",
            "shutdown_timeout",
            "500000000000y",
            "Range: 0s (off), or 1ms to 1h.",
        ),
        ("opsgenie", "request_timeout", "0s", "Range: 1ms to 1h."),
        (
            "opsgenie",
            "max_concurrency",
            "4611686018427387904",
            "Range: 1 to 1024.",
        ),
        (
            "auto_approval",
            "lookup_retries",
            "4000000000",
            "Range: 0 to 100.",
        ),
    ];
    for (section, key, value, range) in cases {
        let yaml = if good.contains(&format!("{section}:\n")) {
            good.replace(
                &format!("{section}:\n"),
                &format!("{section}:\n  {key}: {value}\n"),
            )
        } else {
            format!("{good}{section}:\n  {key}: {value}\n")
        };
        for command in ["check", "start"] {
            let (code, stderr) = run_config(&dir, command, &yaml);
            assert_eq!(code, Some(78), "{command} {section}.{key}: {stderr}");
            assert!(
                stderr.contains(&format!("{section}.{key}: ")) && stderr.contains(range),
                "{command} {section}.{key}: key or range not named in: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_errors_cut_long_values_escape_control_characters_and_never_echo_keys() {
    let dir = temp_dir("safe-errors");
    let good = good_config(&dir);
    let genie_key = "6f1c2f4e-8a3b-4c2d-9e1f-0a1b2c3d4e5f";
    let pem = "-----BEGIN PRIVATE KEY-----\\nMC4CAQAwBQYDK2VwBCIEIBzNSuDYXx1Ncwl3mWbBY4pM4S4p0RpIgSa5Lq6TqD5m\\n-----END PRIVATE KEY-----";
    // Files are refused past 1 MiB, and the environment holds at most 128 KiB per variable, so
    // this is about the longest value that can reach validation.
    let huge = "x".repeat(900_000);
    let cases: Vec<(String, &str, Vec<&str>)> = vec![
        // A key pasted where a path belongs.
        (
            good.replace(
                "api_key_file: ",
                &format!("api_key_file: {genie_key}\n  x_was: "),
            ),
            "opsgenie.api_key_file",
            vec![genie_key],
        ),
        (
            good.replace("  identity: ", &format!("  identity: \"{pem}\"\n  x_was: ")),
            "teleport.identity",
            vec![
                "MC4CAQAwBQYDK2VwBCIEIBzNSuDYXx1Ncwl3mWbBY4pM4S4p0RpIgSa5Lq6TqD5m",
                "PRIVATE KEY-----",
            ],
        ),
        // A key in a field that is no secret, and as a key name.
        (
            good.replace(
                "opsgenie:\n",
                &format!("opsgenie:\n  priority: {genie_key}\n"),
            ),
            "opsgenie.priority",
            vec![genie_key],
        ),
        (
            format!("{good}\"{genie_key}\": 1\n"),
            "<hidden>",
            vec![genie_key],
        ),
        // Control and bidi characters in a key name.
        (
            format!("{good}\"te\\u001b[31mst\\u202e\": 1\n"),
            "te\\u{1b}[31mst\\u{202e}",
            vec!["\u{1b}", "\u{202e}"],
        ),
        // A 900,000-character value is cut, with its length.
        (
            good.replace("opsgenie:\n", &format!("opsgenie:\n  priority: {huge}\n")),
            "(900000 characters)",
            vec![&huge[..100]],
        ),
    ];
    for (yaml, named, never) in &cases {
        for command in ["check", "start"] {
            let (code, stderr) = run_config(&dir, command, yaml);
            let out = stderr;
            assert!(
                matches!(code, Some(69 | 78)),
                "{command} {named}: exit {code:?}: {}",
                &out[..out.len().min(2000)]
            );
            assert!(out.contains(named), "{command}: {named} not in {out}");
            for secret in never {
                assert!(!out.contains(secret), "{command} {named}: echoed in {out}");
            }
            assert!(
                out.len() < 4096,
                "{command} {named}: {} bytes of errors",
                out.len()
            );
            assert!(!out.contains("panicked"), "{out}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_structure_exits_78_naming_the_file() {
    let dir = temp_dir("structure");
    std::fs::create_dir_all(dir.join("no-drop-ins.d")).expect("drop-in dir");
    let deep = format!("teleport: {}\n", "[".repeat(100_000));
    for command in ["check", "start"] {
        let (code, stderr) = run_config(&dir, command, &deep);
        assert_eq!(code, Some(78), "{command}: {stderr}");
        assert!(stderr.contains(&format!("{command}.yaml")), "{stderr}");
        assert!(stderr.contains("nested deeper than 32 levels"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- identity dates and file modes (the Teleport side's cases) -----

/// Runs the binary with `args` and the config file `path`; the exit code, stdout and stderr.
/// A child killed by a signal (an abort) has no code, which fails every assertion below.
fn run_with(args: &[&str], path: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(bin())
        .args(args)
        .arg(path)
        .output()
        .expect("run the binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `check -c config` and `start -c config`, each on the blocking pool (the fakes share
/// this test's thread and must keep answering); each command with its exit code, stdout and
/// stderr.
async fn check_and_start(config: &Path) -> Vec<(&'static str, Option<i32>, String, String)> {
    let mut runs = Vec::new();
    for command in ["check", "start"] {
        let path = config.to_path_buf();
        let (code, stdout, stderr) =
            tokio::task::spawn_blocking(move || run_with(&[command, "-c"], &path))
                .await
                .expect("joined");
        runs.push((command, code, stdout, stderr));
    }
    runs
}

#[actix_rt::test]
async fn identities_dated_before_1970_exit_78_naming_the_file_in_check_and_start() {
    // A real (fake) backend, so that the identity is the only thing that fails.
    let world = common::world().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let pki = pki();
    let year = 365 * DAY;
    let now = SystemTime::now();
    let cases = [
        (
            "all-before-1970",
            UNIX_EPOCH - 10 * year,
            UNIX_EPOCH - 5 * year,
        ),
        ("starts-before-1970", UNIX_EPOCH - 10 * year, now + DAY),
    ];
    for (name, from, to) in cases {
        let (cert, private) = pki
            .client_cert("access-plugin", from, to, KeyKind::EcdsaP256)
            .expect("cert");
        let identity = dir.join(format!("identity-{name}"));
        std::fs::write(&identity, format!("{private}{cert}{}", pki.ca_pem())).expect("write");
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "teleport:\n  addr: 127.0.0.1:1\n  identity: {}\nopsgenie:\n  api_url: {}\n  api_key: {}\n",
                identity.display(),
                world.opsgenie.url(),
                world.opsgenie.api_key(),
            ),
        )
        .expect("config");
        let shown = identity.display().to_string();
        for (command, code, stdout, stderr) in check_and_start(&config).await {
            assert_eq!(code, Some(78), "{command} {name}: {stdout}{stderr}");
            let out = if command == "check" { &stdout } else { &stderr };
            assert!(out.contains(&shown), "{command} {name}: {out}");
            assert!(out.contains("1970..9999"), "{command} {name}: {out}");
            assert!(!stdout.contains("panicked") && !stderr.contains("panicked"));
        }
    }
}

#[cfg(unix)]
#[actix_rt::test]
async fn secret_files_readable_by_others_are_warned_about_once_with_the_chmod() {
    use std::os::unix::fs::PermissionsExt as _;
    let world = common::world().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let identity = tmp.path().join("identity");
    std::fs::copy(&world.plugin_identity, &identity).expect("copy identity");
    let key = tmp.path().join("api-key");
    std::fs::write(&key, world.opsgenie.api_key()).expect("key");
    for (path, mode) in [(&identity, 0o644), (&key, 0o640)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let config = tmp.path().join("config.yaml");
    // Teleport unreachable: `start` warns, then stops at the connection.
    std::fs::write(
        &config,
        format!(
            "teleport:\n  addr: 127.0.0.1:1\n  identity: {}\nopsgenie:\n  api_url: {}\n  api_key_file: {}\n",
            identity.display(),
            world.opsgenie.url(),
            key.display(),
        ),
    )
    .expect("config");
    for (command, code, stdout, stderr) in check_and_start(&config).await {
        // Not a failure of its own: the unreachable Teleport decides the code.
        assert_eq!(code, Some(69), "{command}: {stdout}{stderr}");
        let out = format!("{stdout}{stderr}");
        for file in [&identity, &key] {
            let fix = format!("chmod 600 {}", file.display());
            assert_eq!(out.matches(&fix).count(), 1, "{command}: {fix} in {out}");
        }
    }
}

#[actix_rt::test]
async fn the_api_key_file_given_as_identity_is_not_advised_to_be_overwritten() {
    let world = common::world().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let key = tmp.path().join("api-key");
    std::fs::write(&key, world.opsgenie.api_key()).expect("key");
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "teleport:\n  addr: 127.0.0.1:1\n  identity: {}\nopsgenie:\n  api_url: {}\n  api_key_file: {}\n",
            key.display(),
            world.opsgenie.url(),
            key.display(),
        ),
    )
    .expect("config");
    let shown = key.display().to_string();
    for (command, code, stdout, stderr) in check_and_start(&config).await {
        assert_eq!(code, Some(78), "{command}: {stdout}{stderr}");
        let out = format!("{stdout}{stderr}");
        assert!(
            out.contains(&format!("identity file {shown}")),
            "{command}: {out}"
        );
        assert!(
            out.contains("not a Teleport identity file"),
            "{command}: {out}"
        );
        assert!(!out.contains(&format!("--out={shown}")), "{command}: {out}");
    }
}
