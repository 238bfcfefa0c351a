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

/// `GET path` on a fresh connection with `Connection: close`; the status line and the body.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

/// Reads from `stream` until the server closes it; panics if it is still open at `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "still open after {limit:?}; read so far: {got:?}"
    );
    got
}

/// A bare listener with `limits`, serving `/healthz` and a `/stall` that never answers.
async fn bare_listener(limits: teleport_opsgenie::http::Limits) -> std::net::SocketAddr {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/stall", get(futures::future::pending::<&'static str>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    actix_rt::spawn(teleport_opsgenie::http::listener::serve(
        listener, app, limits,
    ));
    addr
}

#[actix_rt::test]
async fn slow_heads_idle_connections_and_slow_handlers_are_cut() {
    use tokio::io::AsyncWriteExt;
    let limits = teleport_opsgenie::http::Limits {
        header_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        max_connections: 16,
    };
    let addr = bare_listener(limits).await;
    let margin = Duration::from_secs(3);

    // Slowloris: a head that is never finished is cut by the header timeout (hyper answers
    // 408 as it closes).
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let got = closed_within(&mut slow, margin).await;
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"), "{got:?}");

    // A connection that never sends anything, and one idle after a request (keep-alive), are
    // closed too.
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    closed_within(&mut silent, margin).await;
    let mut kept = tokio::net::TcpStream::connect(addr).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let got = closed_within(&mut kept, margin).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200 OK"),
        "{got:?}"
    );

    // A handler that never answers gets a 503 at the request timeout.
    let answer = tokio::time::timeout(margin, raw_get(addr, "/stall"))
        .await
        .expect("an answer before the margin");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("no answer within 0.3s"), "{answer}");

    // A head larger than the cap is refused, not buffered.
    let mut huge = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(teleport_opsgenie::http::listener::MAX_HEAD_BYTES * 2)
    );
    let _ = huge.write_all(header.as_bytes()).await;
    let got = closed_within(&mut huge, margin).await;
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"), "{got:?}");
}

#[actix_rt::test]
async fn at_the_connection_cap_idle_connections_make_room_and_busy_ones_stay() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Timeouts far longer than the test: only eviction can free a slot here.
    let limits = teleport_opsgenie::http::Limits {
        header_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(60),
        max_connections: 4,
    };
    let addr = bare_listener(limits).await;
    let mut busy = tokio::net::TcpStream::connect(addr).await.expect("connect");
    busy.write_all(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    // Let the stalled request reach its handler before the flood, so it counts as busy.
    let answer = tokio::time::timeout(Duration::from_secs(5), raw_get(addr, "/healthz"))
        .await
        .expect("healthz before the flood");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Ten times the cap in idle connections, then a probe: answered at once.
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    let answer = tokio::time::timeout(Duration::from_secs(5), raw_get(addr, "/healthz"))
        .await
        .expect("healthz answers under the flood");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // All but the newest few idle connections were closed to make room.
    let mut closed = 0;
    for stream in &mut flood {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 40 - 4,
        "only {closed} of 40 idle connections were closed"
    );
    // The connection inside a request was never chosen.
    let mut buf = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(200), busy.read(&mut buf)).await;
    assert!(
        still_open.is_err(),
        "the busy connection was closed: {still_open:?}"
    );
}

/// Open descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .expect("/proc/<pid>/fd is readable")
}

#[actix_rt::test]
async fn a_flood_of_idle_connections_leaves_healthz_answering_and_descriptors_bounded() {
    let world = world().await;
    let file = common::child::write_config(&world, "info", "5s");
    let mut daemon = common::child::spawn(&["start"], &file);
    let pid = daemon.child.id();
    let addr = daemon.http_addr().await;
    until_status(addr, "/healthz", 200).await;
    let baseline = descriptors(pid);

    // Far more idle connections than the cap (and than systemd's default soft limit of 1,024).
    let cap = teleport_opsgenie::http::Limits::default().max_connections;
    let mut flood = Vec::new();
    for _ in 0..1_200 {
        flood.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    // Well inside the 5 s header timeout, so only the cap can be what keeps it answering.
    let started = tokio::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(3), raw_get(addr, "/healthz"))
        .await
        .unwrap_or_else(|_| panic!("/healthz did not answer under a flood of {}", flood.len()));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
    let open = descriptors(pid);
    // The cap, the evictions still closing (16) and a little slack for the daemon's own.
    let bound = baseline + cap + 16 + 8;
    assert!(
        open <= bound,
        "{open} descriptors open under the flood (baseline {baseline}, bound {bound})"
    );
    eprintln!(
        "flood of {}: /healthz in {:?}, {open} descriptors (baseline {baseline})",
        flood.len(),
        started.elapsed()
    );
    drop(flood);
    daemon.signal("TERM");
    let (status, _) = daemon.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));
}

#[actix_rt::test]
async fn the_exposition_passes_promtool_check_metrics() {
    // promtool comes with Debian's `prometheus` package, which .ci/run installs; without CI it
    // may be absent on a developer's machine, and the test says so instead of failing.
    let promtool = std::process::Command::new("promtool")
        .arg("--version")
        .output();
    if promtool.is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing in CI: .ci/run installs Debian's prometheus package"
        );
        eprintln!("promtool not installed: `apt-get install prometheus` to run this check");
        return;
    }
    let world = world().await;
    let mut config = world.config();
    config.http.enabled = true;
    config.http.listen = "127.0.0.1:0".parse().expect("address");
    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon starts");
    let addr = daemon.http_addr().expect("listening");
    until_status(addr, "/readyz", 200).await;
    let id = request(&world, REQUESTER, "promtool");
    alert_id_recorded(&world, &id).await;
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    parse(&text).expect("the exposition reads back");
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).await.expect("write");
    }
    let out = child.wait_with_output().await.expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    daemon.shutdown().await;
}
