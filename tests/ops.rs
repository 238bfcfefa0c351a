//! Operability, in process: `/healthz`, `/readyz` and `/metrics` of a real daemon against the
//! fakes, through the watch dropping and recovering.

mod common;

use std::time::Duration;

use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::sim::world::{REQUESTER, REVIEWERS};
use tonic::Code;

use common::http::{get, scrape, until_metric, until_status};
use common::prom::{parse, value};
use common::{alert_id_recorded, closed, request, world};

#[actix_rt::test]
async fn probes_follow_the_watch_and_metrics_follow_the_work() {
    let world = world().await;
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
    let id = request(&world, REQUESTER, "metrics");
    alert_id_recorded(&world, &id).await;
    world
        .teleport
        .review(&id, REVIEWERS[0], true, "fine")
        .expect("review");
    closed(&world, &id).await;
    // The close is recorded after the backend answered; wait for the count, not a sleep.
    let after = until_metric(addr, "teleport_opsgenie_alerts_closed_total", &[], 1.0).await;
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
    let world = world().await;
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

#[test]
fn parser_accepts_good_and_rejects_bad_text() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"2\"} 3\n\
                # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n";
    let s = parse(good).unwrap();
    assert_eq!(value(&s, "a_total", &[("x", "1\"2")]), Some(3.0));
    assert_eq!(value(&s, "h_count", &[]), Some(1.0));
    assert!(parse("a_total 1\n").is_err());
    assert!(parse("# HELP a A.\n# TYPE a counter\na{x=1} 1\n").is_err());
    assert!(parse("# HELP a A.\n# TYPE a gauge\na one\n").is_err());
}
