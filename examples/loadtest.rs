//! The load test: measures the daemon's performance figures against the fakes.
//!
//! The fake Teleport and the fake Opsgenie run in this process (on a multi-threaded tokio
//! runtime); the daemon runs as its own process, the release binary `teleport-opsgenie start -c
//! <generated config>`, so that its memory (`/proc/<pid>/status` VmHWM, VmRSS) and CPU
//! (`/proc/<pid>/stat`, and per-thread `schedstat` for short intervals) are its own.
//!
//! The binary is looked for next to this example's own executable (`target/release/examples/
//! loadtest` -> `target/release/teleport-opsgenie`), or given with `--daemon`. Build both with
//!
//! ```text
//! cargo build --release --features sim --examples --bins
//! target/release/examples/loadtest --sweep
//! ```
//!
//! One run: start the fakes; create `--backlog` requests that already have their alerts (plugin
//! data and alert exactly as the daemon leaves them); start the daemon and wait until it has
//! read every backlog request's plugin data (the resync); create `--requests` requests at
//! `--rate` per second (0: all at once); approve each request once its alert id is stored (with
//! `--backend-limit`, once every alert exists, so that closes do not compete with the creates
//! being measured); approve the backlog; wait until every alert is closed. Then print one JSON
//! line of figures. `--sweep` runs the standard set and prints a final line with the targets.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::{json, Value};
use teleport_opsgenie::config::{Limit, LogConfig};
use teleport_opsgenie::core::plugin_data::PluginData;
use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::pb::types::RequestState;
use teleport_opsgenie::sim::opsgenie::{AlertStatus, FakeOpsgenieOptions, FakeRateLimits};
use teleport_opsgenie::sim::teleport::FakeTeleportOptions;
use teleport_opsgenie::sim::world::{World, WorldOptions, REQUESTER};

/// The requested role of every load-test request (the guide's requester may ask for it).
const ROLE: &str = "editor";

#[derive(Parser, Debug, Clone)]
#[command(about = "Load test of teleport-opsgenie against the fakes")]
struct Args {
    /// Requests created during the run.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Requests created per second; 0 creates them all at once.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Alert creations per second the fake Opsgenie accepts, and the daemon's configured
    /// `alert.per_second`; 0 is unlimited.
    #[arg(long, default_value_t = 0)]
    backend_limit: u32,
    /// How long the fake Opsgenie takes to process an accepted request.
    #[arg(long, default_value_t = 0)]
    processing_delay_ms: u64,
    /// Requests that already have their alerts before the daemon starts.
    #[arg(long, default_value_t = 0)]
    backlog: usize,
    /// Run the standard set of runs and check the targets.
    #[arg(long)]
    sweep: bool,
    /// The daemon binary (default: `../teleport-opsgenie` next to this executable).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
}

#[derive(Debug, Clone)]
struct RunSpec {
    name: &'static str,
    requests: usize,
    rate: f64,
    backend_limit: u32,
    processing_delay_ms: u64,
    backlog: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let daemon = match daemon_binary(args.daemon.clone()) {
        Ok(path) => path,
        Err(err) => {
            eprintln!("loadtest: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("loadtest: cannot start a tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The fakes log at warn at most; the daemon's own log goes to a file per run.
    let _ = teleport_opsgenie::telemetry::init_logging(&LogConfig {
        level: "warn".into(),
        ..Default::default()
    });
    let timeout = Duration::from_secs(args.timeout_s);
    runtime.block_on(async move {
        if args.sweep {
            return sweep(&daemon, timeout).await;
        }
        let spec = RunSpec {
            name: "custom",
            requests: args.requests,
            rate: args.rate,
            backend_limit: args.backend_limit,
            processing_delay_ms: args.processing_delay_ms,
            backlog: args.backlog,
        };
        match run(&daemon, &spec, timeout).await {
            Ok(line) => {
                println!("{line}");
                if correct(&line) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(err) => {
                eprintln!("loadtest: {err}");
                ExitCode::FAILURE
            }
        }
    })
}

fn daemon_binary(given: Option<PathBuf>) -> Result<PathBuf, String> {
    let path = match given {
        Some(path) => path,
        None => {
            let exe =
                std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
            // target/<profile>/examples/loadtest -> target/<profile>/teleport-opsgenie
            exe.parent()
                .and_then(Path::parent)
                .map(|dir| dir.join("teleport-opsgenie"))
                .ok_or("cannot find the target folder")?
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the daemon binary {} is missing: run `cargo build --release --features sim \
             --examples --bins` first (with the same CARGO_TARGET_DIR), or pass --daemon <path>",
            path.display()
        ))
    }
}

/// Whether a run kept every correctness guarantee.
fn correct(line: &Value) -> bool {
    ["duplicate_alerts", "lost", "unclosed"]
        .iter()
        .all(|k| line[k].as_u64() == Some(0))
}

async fn sweep(daemon: &Path, timeout: Duration) -> ExitCode {
    let base = RunSpec {
        name: "",
        requests: 0,
        rate: 0.0,
        backend_limit: 0,
        processing_delay_ms: 0,
        backlog: 0,
    };
    let specs = [
        RunSpec {
            name: "1000_at_once",
            requests: 1000,
            ..base.clone()
        },
        RunSpec {
            name: "10000_at_once",
            requests: 10_000,
            ..base.clone()
        },
        RunSpec {
            name: "2000_limit_200",
            requests: 2000,
            backend_limit: 200,
            ..base.clone()
        },
        RunSpec {
            name: "200_at_20_per_s_delay_500",
            requests: 200,
            rate: 20.0,
            processing_delay_ms: 500,
            ..base.clone()
        },
        RunSpec {
            name: "backlog_1000",
            backlog: 1000,
            ..base.clone()
        },
        RunSpec {
            name: "backlog_10000",
            backlog: 10_000,
            ..base.clone()
        },
        RunSpec {
            name: "backlog_100000",
            backlog: 100_000,
            ..base.clone()
        },
    ];
    let mut lines: HashMap<&str, Value> = HashMap::new();
    let mut all_correct = true;
    for spec in &specs {
        match run(daemon, spec, timeout).await {
            Ok(line) => {
                println!("{line}");
                all_correct &= correct(&line);
                lines.insert(spec.name, line);
            }
            Err(err) => {
                eprintln!("loadtest: run {} failed: {err}", spec.name);
                all_correct = false;
            }
        }
    }
    let get = |run: &str, path: &[&str]| -> Option<f64> {
        let mut v = lines.get(run)?;
        for key in path {
            v = v.get(key)?;
        }
        v.as_f64()
    };
    let le = |v: Option<f64>, max: f64| v.is_some_and(|v| v <= max);
    let ge = |v: Option<f64>, min: f64| v.is_some_and(|v| v >= min);
    let flat = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => Some(b / a),
        _ => None,
    };
    let cpu_growth = flat(
        get("1000_at_once", &["cpu_us_per_request"]),
        get("10000_at_once", &["cpu_us_per_request"]),
    );
    let resync_growth = flat(
        get("backlog_1000", &["resync_cpu_us_per_request"]),
        get("backlog_100000", &["resync_cpu_us_per_request"]),
    );
    let within = |r: Option<f64>| r.is_some_and(|r| (0.8..=1.2).contains(&r));
    let targets = [
        (
            "event_to_create_p99_le_5ms",
            le(
                get("200_at_20_per_s_delay_500", &["event_to_create_ms", "p99"]),
                5.0,
            ),
        ),
        (
            "throughput_ge_1000_per_s",
            ge(get("10000_at_once", &["e2e_throughput_per_s"]), 1000.0),
        ),
        (
            "throughput_ratio_ge_0.95_no_429",
            ge(get("2000_limit_200", &["throughput_ratio"]), 0.95)
                && get("2000_limit_200", &["http_429"]) == Some(0.0),
        ),
        (
            "alert_id_p99_le_750ms",
            le(
                get("200_at_20_per_s_delay_500", &["alert_id_ms", "p99"]),
                750.0,
            ),
        ),
        (
            "resync_10000_le_5s_no_writes",
            le(get("backlog_10000", &["resync_s"]), 5.0)
                && get("backlog_10000", &["resync_writes"]) == Some(0.0),
        ),
        (
            "peak_rss_10000_le_64mib",
            le(get("10000_at_once", &["peak_rss_mib"]), 64.0),
        ),
        (
            "idle_rss_le_20mib",
            le(get("10000_at_once", &["idle_rss_mib"]), 20.0),
        ),
        ("cpu_per_request_flat_1k_10k", within(cpu_growth)),
        ("resync_cost_flat_1k_100k", within(resync_growth)),
        (
            "every_run_correct",
            all_correct && lines.len() == specs.len(),
        ),
    ];
    let met = targets.iter().all(|(_, ok)| *ok);
    let summary = json!({
        "summary": true,
        "event_to_create_p99_ms": get("200_at_20_per_s_delay_500", &["event_to_create_ms", "p99"]),
        "throughput_per_s_10000": get("10000_at_once", &["e2e_throughput_per_s"]),
        "create_throughput_per_s_10000": get("10000_at_once", &["create_throughput_per_s"]),
        "throughput_ratio_limit_200": get("2000_limit_200", &["throughput_ratio"]),
        "http_429_limit_200": get("2000_limit_200", &["http_429"]),
        "alert_id_p99_ms_delay_500": get("200_at_20_per_s_delay_500", &["alert_id_ms", "p99"]),
        "resync_s_10000": get("backlog_10000", &["resync_s"]),
        "resync_s_100000": get("backlog_100000", &["resync_s"]),
        "resync_writes_10000": get("backlog_10000", &["resync_writes"]),
        "peak_rss_mib_10000": get("10000_at_once", &["peak_rss_mib"]),
        "idle_rss_mib": get("10000_at_once", &["idle_rss_mib"]),
        "cpu_us_per_request_1000": get("1000_at_once", &["cpu_us_per_request"]),
        "cpu_us_per_request_10000": get("10000_at_once", &["cpu_us_per_request"]),
        "cpu_per_request_ratio_10k_1k": cpu_growth,
        "resync_cpu_us_per_request_1000": get("backlog_1000", &["resync_cpu_us_per_request"]),
        "resync_cpu_us_per_request_100000": get("backlog_100000", &["resync_cpu_us_per_request"]),
        "resync_cost_ratio_100k_1k": resync_growth,
        "targets": targets.iter().map(|(k, ok)| (k.to_string(), json!(ok))).collect::<serde_json::Map<_, _>>(),
        "targets_met": met,
    });
    println!("{summary}");
    if met {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The daemon process; stopped (TERM, then KILL) when dropped.
struct DaemonProcess {
    child: Child,
}

impl DaemonProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    async fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What `/proc` says about the daemon.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    /// utime + stime of the process (all threads, dead ones too), seconds.
    cpu_s: f64,
    /// Sum of the live threads' on-CPU time from `schedstat` (nanosecond precision), seconds.
    sched_s: f64,
    rss_mib: f64,
    hwm_mib: f64,
}

fn usage(pid: u32) -> Usage {
    let mut u = Usage::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            if let (Some(ut), Some(st)) = (ticks(11), ticks(12)) {
                u.cpu_s = (ut + st) / clock_ticks();
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            let kib = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            };
            if line.starts_with("VmRSS:") {
                u.rss_mib = kib(line).unwrap_or(0.0) / 1024.0;
            } else if line.starts_with("VmHWM:") {
                u.hwm_mib = kib(line).unwrap_or(0.0) / 1024.0;
            }
        }
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                if let Some(ns) = s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    u.sched_s += ns / 1e9;
                }
            }
        }
    }
    u
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

fn ms_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

fn percentiles(mut v: Vec<f64>, ps: &[(&str, f64)]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mut out = serde_json::Map::new();
    for (name, p) in ps {
        let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
        out.insert((*name).into(), json!(round(v[rank - 1], 3)));
    }
    Value::Object(out)
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

async fn run(daemon_bin: &Path, spec: &RunSpec, timeout: Duration) -> Result<Value, String> {
    let limit = spec.backend_limit;
    let world = World::start(WorldOptions {
        opsgenie: FakeOpsgenieOptions {
            processing_delay: Duration::from_millis(spec.processing_delay_ms),
            rate_limits: FakeRateLimits {
                create_per_second: (limit > 0).then_some(limit),
                ..Default::default()
            },
            ..Default::default()
        },
        // Approving a 100,000 backlog at once emits that many events back to back; the
        // watcher must not be dropped for lagging behind them.
        teleport: FakeTeleportOptions {
            event_buffer: (spec.requests + spec.backlog).max(65_536) * 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut config = world.config();
    let plugin = config.teleport.plugin_name.clone();

    // The backlog: requests the daemon already handled before this start.
    let backlog_started = Instant::now();
    let mut backlog_ids = Vec::with_capacity(spec.backlog);
    for i in 0..spec.backlog {
        let req = world
            .teleport
            .create_request(REQUESTER, &[ROLE], "load test backlog")
            .map_err(|s| format!("creating a backlog request: {}", s.message()))?;
        let id = req.metadata.map(|m| m.name).unwrap_or_default();
        let spec_v3 = req.spec.unwrap_or_default();
        let alert_id = world.opsgenie.insert_alert(&alias(&id), "backlog");
        let data = PluginData {
            alert_id,
            alert_request_id: format!("backlog-{i}"),
            user: spec_v3.user,
            roles: spec_v3.roles,
            created: spec_v3
                .created
                .map(|t| UNIX_EPOCH + Duration::from_secs(t.seconds.max(0) as u64)),
            request_reason: spec_v3.request_reason,
            ..Default::default()
        };
        world
            .teleport
            .set_plugin_data(&id, &plugin, data.encode())
            .map_err(|s| format!("writing backlog plugin data: {}", s.message()))?;
        backlog_ids.push(id);
    }
    let backlog_setup_s = backlog_started.elapsed().as_secs_f64();
    world.teleport.track_plugin_data_key("alert_id");
    world.teleport.track_plugin_data_key("resolution");

    // The daemon's configuration: the world's, quiet, with the backend limit.
    config.log.level = "warn".into();
    config.opsgenie.rate_limits.alert = Limit::new(limit, 0);
    let config_file = world
        .write_config_file(config, "teleport-opsgenie.yaml")
        .map_err(|e| e.to_string())?;
    let log_file = world.dir.join("daemon.log");
    let log = std::fs::File::create(&log_file).map_err(|e| e.to_string())?;

    let started = Instant::now();
    let child = Command::new(daemon_bin)
        .arg("start")
        .arg("-c")
        .arg(&config_file)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", daemon_bin.display()))?;
    let mut daemon = DaemonProcess { child };
    let pid = daemon.pid();
    let deadline = started + timeout;
    let died = |d: &mut DaemonProcess| {
        d.exited().map(|status| {
            format!(
                "the daemon exited ({status}); its log: {}",
                log_file.display()
            )
        })
    };

    // Connected: the watch is open.
    while world.teleport.watchers() == 0 {
        if let Some(e) = died(&mut daemon) {
            return Err(e);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the daemon did not connect; its log: {}",
                log_file.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let connected = usage(pid);
    let connect_s = started.elapsed().as_secs_f64();
    // Writes before this point belong to start-up (the permission probe writes nothing, but it
    // is an UpdatePluginData call), not to the resync.
    let writes_at_connect = world.teleport.count_calls("UpdatePluginData")
        + world.teleport.count_calls("SubmitAccessReview")
        + world.opsgenie.count_calls("POST", "/v2/alerts");

    // The resync: every backlog request's plugin data read.
    while world.teleport.count_calls("GetPluginData") < spec.backlog {
        if let Some(e) = died(&mut daemon) {
            return Err(e);
        }
        if Instant::now() > deadline {
            return Err("the resync did not finish".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let resync_s = started.elapsed().as_secs_f64();
    let resynced = usage(pid);
    // Writes caused by the resync would follow the reads at once; give them time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backend_writes = |w: &World| w.opsgenie.count_calls("POST", "/v2/alerts");
    let teleport_writes = |w: &World| {
        w.teleport.count_calls("UpdatePluginData") + w.teleport.count_calls("SubmitAccessReview")
    };
    let resync_writes =
        (teleport_writes(&world) + backend_writes(&world)).saturating_sub(writes_at_connect);
    let before_load = usage(pid);

    // The load.
    let load_started = Instant::now();
    let load_started_at = SystemTime::now();
    let mut created_at: HashMap<String, SystemTime> = HashMap::with_capacity(spec.requests);
    let mut order: Vec<String> = Vec::with_capacity(spec.requests);
    let mut alert_id_at: HashMap<String, SystemTime> = HashMap::new();
    let mut resolved_at: HashMap<String, SystemTime> = HashMap::new();
    let mut approved: HashSet<String> = HashSet::new();
    let mut awaiting_approval: Vec<String> = Vec::new();
    let mut cursor = 0usize;
    let backlog_set: HashSet<&str> = backlog_ids.iter().map(String::as_str).collect();
    let mut backlog_closed = 0usize;
    let approve = |w: &World, id: &str| {
        w.teleport
            .set_state(id, RequestState::Approved, "load test")
            .map_err(|s| format!("approving {id}: {}", s.message()))
    };
    // The backlog's alerts exist already: approve those requests at once.
    for id in &backlog_ids {
        approve(&world, id)?;
    }
    let mut timed_out = false;
    loop {
        // Create what is due.
        let due = if spec.rate > 0.0 {
            ((load_started.elapsed().as_secs_f64() * spec.rate).floor() as usize + 1)
                .min(spec.requests)
        } else {
            spec.requests
        };
        while order.len() < due {
            let at = SystemTime::now();
            let req = world
                .teleport
                .create_request(REQUESTER, &[ROLE], "load test")
                .map_err(|s| format!("creating a request: {}", s.message()))?;
            let id = req.metadata.map(|m| m.name).unwrap_or_default();
            created_at.insert(id.clone(), at);
            order.push(id);
        }
        // What the daemon stored since the last look.
        let news = world.teleport.first_set_since(cursor);
        cursor += news.len();
        for (id, key, at) in news {
            match key.as_str() {
                "alert_id" => {
                    alert_id_at.entry(id.clone()).or_insert(at);
                    if created_at.contains_key(&id) {
                        awaiting_approval.push(id);
                    }
                }
                "resolution" => {
                    if backlog_set.contains(id.as_str()) {
                        backlog_closed += 1;
                    } else {
                        resolved_at.entry(id).or_insert(at);
                    }
                }
                _ => {}
            }
        }
        // With a backend limit, closes wait until every alert exists, so that they do not
        // compete with the creations being measured for the same write budget.
        let all_created = order.len() == spec.requests
            && awaiting_approval.len() + approved.len() >= spec.requests;
        if limit == 0 || all_created {
            for id in awaiting_approval.drain(..) {
                if approved.insert(id.clone()) {
                    approve(&world, &id)?;
                }
            }
        }
        if order.len() == spec.requests
            && resolved_at.len() >= spec.requests
            && backlog_closed >= spec.backlog
        {
            break;
        }
        if let Some(e) = died(&mut daemon) {
            return Err(e);
        }
        if Instant::now() > deadline {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Closes are applied by the fake after its processing delay: let it catch up before
    // counting closed alerts.
    let _ = world
        .opsgenie
        .wait_until(
            Duration::from_millis(spec.processing_delay_ms) + Duration::from_secs(10),
            "every accepted request to be processed",
            |o| o.pending_requests() == 0,
        )
        .await;
    let load_s = load_started.elapsed().as_secs_f64();
    let end = usage(pid);
    daemon.stop().await;

    // Figures, from what the fakes saw.
    let alias_to_id: HashMap<String, &str> = order
        .iter()
        .chain(backlog_ids.iter())
        .map(|id| (alias(id), id.as_str()))
        .collect();
    let mut create_received: HashMap<&str, SystemTime> = HashMap::new();
    let mut create_posts = 0usize;
    for call in world.opsgenie.calls() {
        if call.method == "POST" && call.api_path == "/v2/alerts" {
            create_posts += 1;
            let id = call
                .body
                .as_ref()
                .and_then(|b| b.get("alias"))
                .and_then(Value::as_str)
                .and_then(|a| alias_to_id.get(a).copied());
            if let Some(id) = id {
                let t = create_received.entry(id).or_insert(call.received_at);
                *t = (*t).min(call.received_at);
            }
        }
    }
    let mut alerts_per_id: HashMap<&str, (usize, bool)> = HashMap::new();
    for alert in world.opsgenie.alerts() {
        if let Some(id) = alias_to_id.get(&alert.alias) {
            let e = alerts_per_id.entry(id).or_insert((0, true));
            e.0 += 1;
            e.1 &= alert.status == AlertStatus::Closed;
        }
    }
    let load_alerts: usize = order
        .iter()
        .filter_map(|id| alerts_per_id.get(id.as_str()))
        .map(|(n, _)| n)
        .sum();
    let duplicate_alerts: usize = alerts_per_id
        .values()
        .map(|(n, _)| n.saturating_sub(1))
        .sum();
    let all_ids = || order.iter().chain(backlog_ids.iter());
    let lost = all_ids()
        .filter(|id| !alerts_per_id.contains_key(id.as_str()))
        .count();
    let closed = all_ids()
        .filter(|id| alerts_per_id.get(id.as_str()).is_some_and(|(_, c)| *c))
        .count();
    let unclosed = all_ids().count() - closed;

    let e2c: Vec<f64> = order
        .iter()
        .filter_map(|id| {
            Some(ms_between(
                created_at[id],
                *create_received.get(id.as_str())?,
            ))
        })
        .collect();
    let aid: Vec<f64> = order
        .iter()
        .filter_map(|id| {
            Some(ms_between(
                *create_received.get(id.as_str())?,
                *alert_id_at.get(id)?,
            ))
        })
        .collect();
    let first_created = order
        .first()
        .map(|id| created_at[id])
        .unwrap_or(load_started_at);
    let last_create = create_received
        .iter()
        .filter(|(id, _)| created_at.contains_key(**id))
        .map(|(_, t)| *t)
        .max();
    let create_throughput = last_create
        .map(|t| ms_between(first_created, t) / 1e3)
        .filter(|s| *s > 0.0)
        .map(|s| {
            create_received
                .iter()
                .filter(|(id, _)| created_at.contains_key(**id))
                .count() as f64
                / s
        });
    let last_resolved = resolved_at.values().max().copied();
    let e2e_throughput = last_resolved
        .map(|t| ms_between(first_created, t) / 1e3)
        .filter(|s| *s > 0.0)
        .map(|s| resolved_at.len() as f64 / s);
    let handled = (spec.requests + spec.backlog).max(1) as f64;
    let load_cpu = (end.sched_s - before_load.sched_s).max(0.0);
    let resync_cpu = (resynced.sched_s - connected.sched_s).max(0.0);
    let mib = |v: f64| round(v, 1);

    Ok(json!({
        "run": spec.name,
        "requests": spec.requests,
        "rate_per_s": spec.rate,
        "processing_delay_ms": spec.processing_delay_ms,
        "backlog": spec.backlog,
        "alerts_created": load_alerts,
        "create_posts": create_posts,
        "duplicate_alerts": duplicate_alerts,
        "lost": lost,
        "closed": closed,
        "unclosed": unclosed,
        "timed_out": timed_out,
        "http_429": world.opsgenie.throttled_count(),
        "create_throughput_per_s": create_throughput.map(|v| round(v, 1)),
        "e2e_throughput_per_s": e2e_throughput.map(|v| round(v, 1)),
        "backend_limit_per_s": limit,
        "throughput_ratio": create_throughput.filter(|_| limit > 0).map(|v| round(v / f64::from(limit), 3)),
        "event_to_create_ms": percentiles(e2c, &[("p50", 0.5), ("p95", 0.95), ("p99", 0.99)]),
        "alert_id_ms": percentiles(aid, &[("p50", 0.5), ("p99", 0.99)]),
        "connect_s": round(connect_s, 3),
        "resync_s": round(resync_s, 3),
        "resync_writes": resync_writes,
        "resync_cpu_s": round(resync_cpu, 4),
        "resync_cpu_us_per_request": (spec.backlog > 0).then(|| round(resync_cpu * 1e6 / spec.backlog as f64, 1)),
        "backlog_setup_s": round(backlog_setup_s, 2),
        "load_s": round(load_s, 3),
        "idle_rss_mib": mib(before_load.rss_mib),
        "end_rss_mib": mib(end.rss_mib),
        "peak_rss_mib": mib(end.hwm_mib),
        "cpu_s": round(end.cpu_s, 2),
        "load_cpu_s": round(load_cpu, 3),
        "cpu_us_per_request": round(load_cpu * 1e6 / handled, 1),
    }))
}
