//! Small chaos runs against real daemon processes (the binary cargo built for these tests):
//! replicas, SIGKILLs, faults. The example `chaos` runs the same scenario at full size.

use std::path::PathBuf;
use std::time::Duration;

use teleport_opsgenie::sim::chaos::{run, ChaosOptions, ChaosReport};

fn options(replicas: usize, requests: usize, kills: usize, faults: bool) -> ChaosOptions {
    ChaosOptions {
        replicas,
        requests,
        kills,
        faults,
        seed: 7,
        // An upper bound: the run ends as soon as the state settles. Generous, because a loaded
        // 2-core CI machine slows every replica and retry.
        settle: Duration::from_secs(45),
        claim_ttl: Duration::from_secs(2),
        sweep_interval: Duration::from_secs(1),
        ..ChaosOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_teleport-opsgenie")))
    }
}

fn check(report: &ChaosReport) {
    eprintln!("{}", serde_json::to_string(report).unwrap_or_default());
    assert!(report.ok, "{report:?}");
    assert_eq!(report.duplicate_alerts, 0, "{report:?}");
    // Every note exactly once, faults or not: a note whose outcome is unknown is looked for on
    // the alert (by its marker) before it is posted again.
    assert_eq!(report.duplicate_notes, 0, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.unclosed, 0, "{report:?}");
    assert_eq!(report.duplicate_reviews, 0, "{report:?}");
    assert!(report.alerts > 0, "{report:?}");
}

#[tokio::test]
async fn two_replicas_fifty_requests() {
    let report = run(options(2, 50, 0, false)).await.expect("chaos run");
    check(&report);
    assert_eq!(report.requests, 50);
}

#[tokio::test]
async fn three_kills_during_fifty_requests() {
    let report = run(options(2, 50, 3, false)).await.expect("chaos run");
    check(&report);
    assert!(report.kills >= 3, "{report:?}");
}

#[tokio::test]
async fn faults_during_fifty_requests() {
    let report = run(options(2, 50, 0, true)).await.expect("chaos run");
    check(&report);
    assert!(report.faults_injected > 1, "{report:?}");
}

#[tokio::test]
async fn three_replicas_with_kills_and_faults_make_no_duplicate_note() {
    // Lost answers (5xx after the effect, garbled 2xx), writes failing after acceptance and
    // replicas killed mid-step: the cases where a blind retry would post a note twice.
    let report = run(options(3, 60, 4, true)).await.expect("chaos run");
    check(&report);
    assert!(report.kills >= 4, "{report:?}");
    assert!(report.faults_injected > 3, "{report:?}");
}
