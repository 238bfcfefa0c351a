//! Operability, in process: `/healthz`, `/readyz` and `/metrics` of a real daemon against the
//! fakes, through the watch dropping and recovering.

mod common;

use std::time::Duration;

use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::sim::opsgenie::AlertStatus;
use teleport_opsgenie::sim::world::{World, WorldOptions, REQUESTER, REVIEWERS};
use tonic::Code;

use common::prom::{parse, value};

const WAIT: Duration = Duration::from_secs(20);

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("HTTP answer");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Polls `path` until it answers `status`; the body.
async fn until_status(addr: std::net::SocketAddr, path: &str, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (got, body) = get(addr, path).await;
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} still answers {got} ({body:?}), expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scrape(addr: std::net::SocketAddr) -> Vec<common::prom::Sample> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    parse(&body).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{body}"))
}

#[actix_rt::test]
async fn probes_follow_the_watch_and_metrics_follow_the_work() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let world = World::start(WorldOptions::default())
        .await
        .expect("world starts");
    let mut config = world.config();
    config.http.enabled = true;
    config.http.listen = "127.0.0.1:0".parse().expect("address");
    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon starts");
    // No await since the start: the watch has not been opened yet, so this keeps it down.
    world.teleport.fail_next(u32::MAX, Code::Unavailable);
    let addr = daemon.http_addr().expect("listening");

    // Before the first resync: alive, not ready.
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
    let (status, reason) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("watch"), "{reason}");
    let before = scrape(addr).await;
    assert_eq!(
        value(&before, "teleport_opsgenie_watch_ready", &[]),
        Some(0.0)
    );

    // Teleport comes back: the watch resyncs and the daemon is ready.
    world.teleport.fail_next(0, Code::Unavailable);
    until_status(addr, "/readyz", 200).await;
    let start = scrape(addr).await;
    assert_eq!(
        value(&start, "teleport_opsgenie_watch_ready", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&start, "teleport_opsgenie_backend_up", &[]),
        Some(1.0)
    );
    assert!(value(&start, "teleport_opsgenie_watch_resyncs_total", &[]) >= Some(1.0));
    assert!(
        value(
            &start,
            "teleport_opsgenie_identity_expiry_timestamp_seconds",
            &[]
        ) > Some(1e9)
    );
    assert_eq!(
        value(&start, "teleport_opsgenie_alerts_created_total", &[]),
        Some(0.0)
    );

    // A request is alerted, reviewed and closed: the counters move.
    let id = world
        .teleport
        .create_request(REQUESTER, &["editor"], "metrics")
        .expect("request")
        .metadata
        .expect("metadata")
        .name;
    world
        .teleport
        .wait_until(WAIT, "alert id recorded", |t| {
            t.plugin_data(&id, "opsgenie")
                .is_some_and(|d| d.get("alert_id").is_some_and(|v| !v.is_empty()))
        })
        .await
        .expect("alert id recorded");
    world
        .teleport
        .review(&id, REVIEWERS[0], true, "fine")
        .expect("review");
    let a = alias(&id);
    world
        .opsgenie
        .wait_until(WAIT, "alert closed", |o| {
            o.alert_by_alias(&a)
                .is_some_and(|x| x.status == AlertStatus::Closed)
        })
        .await
        .expect("closed");
    // The close is recorded after the backend answered; wait for the count, not a sleep.
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        let s = scrape(addr).await;
        if value(&s, "teleport_opsgenie_alerts_closed_total", &[]).unwrap_or(0.0) >= 1.0 {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "close never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        value(&after, "teleport_opsgenie_alerts_created_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "teleport_opsgenie_notes_posted_total",
            &[("kind", "review")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &after,
            "teleport_opsgenie_requests_observed_total",
            &[("state", "pending")]
        ) >= Some(1.0)
    );
    assert!(
        value(
            &after,
            "teleport_opsgenie_requests_observed_total",
            &[("state", "approved")]
        ) >= Some(1.0)
    );
    assert!(
        value(
            &after,
            "teleport_opsgenie_backend_calls_total",
            &[("endpoint", "create_alert")]
        ) >= Some(1.0)
    );
    assert!(
        value(
            &after,
            "teleport_opsgenie_backend_call_duration_seconds_count",
            &[("endpoint", "create_alert")]
        ) >= Some(1.0)
    );
    assert!(value(&after, "teleport_opsgenie_watch_events_total", &[]) >= Some(2.0));
    assert_eq!(
        value(&after, "teleport_opsgenie_steps_in_flight", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "teleport_opsgenie_watch_reconnects_total", &[]),
        Some(0.0)
    );

    // The stream drops and Teleport stays away for a while: not ready, still alive.
    world.teleport.fail_next(u32::MAX, Code::Unavailable);
    world.teleport.drop_watchers();
    let reason = until_status(addr, "/readyz", 503).await;
    assert!(reason.contains("watch"), "{reason}");
    assert_eq!(get(addr, "/healthz").await.0, 200);
    world.teleport.fail_next(0, Code::Unavailable);
    until_status(addr, "/readyz", 200).await;
    let recovered = scrape(addr).await;
    assert!(value(&recovered, "teleport_opsgenie_watch_reconnects_total", &[]) >= Some(1.0));
    assert!(value(&recovered, "teleport_opsgenie_watch_resyncs_total", &[]) >= Some(2.0));

    assert!(daemon.shutdown().await);
}

#[actix_rt::test]
async fn readyz_needs_a_recent_backend_check() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let world = World::start(WorldOptions::default())
        .await
        .expect("world starts");
    let mut config = world.config();
    config.http.enabled = true;
    config.http.listen = "127.0.0.1:0".parse().expect("address");
    config.http.ready_backend_window = Duration::from_millis(1500);
    config.opsgenie.rate_limits.heartbeat.per_second = 0;
    config.opsgenie.rate_limits.heartbeat.per_minute = 0;
    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon starts");
    let addr = daemon.http_addr().expect("listening");
    until_status(addr, "/readyz", 200).await;

    // The backend starts failing every call: its health checks fail, the last success ages
    // past the window, and readiness goes.
    world.opsgenie.faults().set_error_rate(1.0);
    let reason = until_status(addr, "/readyz", 503).await;
    assert!(reason.contains("on-call backend"), "{reason}");
    assert_eq!(get(addr, "/healthz").await.0, 200);
    world.opsgenie.faults().set_error_rate(0.0);
    until_status(addr, "/readyz", 200).await;
    daemon.shutdown().await;
}
