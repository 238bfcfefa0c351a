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
//! target/release/examples/loadtest --sweep --repeat 3
//! ```
//!
//! One run: start the fakes; create `--backlog` requests that already have their alerts (plugin
//! data and alert exactly as the daemon leaves them); start the daemon and wait until it has
//! read every backlog request's plugin data (the resync), then note its memory; create
//! `--requests` requests at `--rate` per second (0: all at once); approve each request once its
//! alert id is stored (with `--backend-limit`, once every alert exists, so that closes do not
//! compete with the creates being measured), as `--approval` says; approve the backlog; wait
//! until every alert is closed. Then print one JSON line of figures. `--sweep` runs the standard
//! set and prints a final line with the targets; `--repeat N` runs each case N times and reports
//! the median of each figure, with `_min` and `_max` beside it (targets read the medians).
//!
//! The rate-limit target compares the `Alert`-domain calls per second (creates, request
//! status polls, notes, closes: what Opsgenie and the daemon's limiter meter together,
//! opsgenie-api.md §8) with the configured limit. It used to compare creates alone, which since
//! every create is confirmed by a status poll in the same domain can only reach about half of
//! the limit however well the daemon uses it; the creates' share is still reported
//! (`create_ratio`).

// It measures a real process in real time: a wall clock is what it means.
#![allow(clippy::disallowed_methods)]

mod process;
mod run;
mod stats;

/// The fakes serve the daemon from this process: with glibc's allocator, the memory a 100,000
/// backlog run freed stayed fragmented in the process, and every later run of a sweep served
/// the same calls about 20 % slower than the first. The daemon keeps the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use teleport_opsgenie::config::LogConfig;

use crate::run::{run, Approval, RunSpec};
use crate::stats::median_line;

/// How the requests of a custom run are approved (see [`Approval`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ApprovalArg {
    /// `tctl request approve`: the state is set, no review.
    Tctl,
    /// One approving review by a human reviewer.
    Review,
    /// Auto-approval: the requester is on call.
    Auto,
}

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
    /// `alert.per_second` (which meters every Alert-domain call); 0 is unlimited.
    #[arg(long, default_value_t = 0)]
    backend_limit: u32,
    /// How long the fake Opsgenie takes to process an accepted request.
    #[arg(long, default_value_t = 0)]
    processing_delay_ms: u64,
    /// Requests that already have their alerts before the daemon starts.
    #[arg(long, default_value_t = 0)]
    backlog: usize,
    /// How the requests are approved.
    #[arg(long, value_enum, default_value_t = ApprovalArg::Tctl)]
    approval: ApprovalArg,
    /// Run the standard set of runs and check the targets.
    #[arg(long)]
    sweep: bool,
    /// Run each case this many times and report medians (with `_min` and `_max`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    repeat: u32,
    /// The daemon binary (default: `../teleport-opsgenie` next to this executable).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
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
    let repeat = args.repeat as usize;
    runtime.block_on(async move {
        if args.sweep {
            return sweep(&daemon, timeout, repeat).await;
        }
        let spec = RunSpec {
            name: "custom",
            requests: args.requests,
            rate: args.rate,
            backend_limit: args.backend_limit,
            processing_delay_ms: args.processing_delay_ms,
            backlog: args.backlog,
            approval: match args.approval {
                ApprovalArg::Tctl => Approval::Tctl,
                ApprovalArg::Review => Approval::Review,
                ApprovalArg::Auto => Approval::Auto,
            },
        };
        match repeated(&daemon, &spec, timeout, repeat).await {
            Some((line, true)) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Some((line, false)) => {
                println!("{line}");
                ExitCode::FAILURE
            }
            None => ExitCode::FAILURE,
        }
    })
}

/// Runs `spec` `repeat` times, printing each run's line; with more than one, prints nothing
/// more but returns the median line (marked `median_of`). `None` if a run failed; the flag
/// says whether every run was correct.
async fn repeated(
    daemon: &Path,
    spec: &RunSpec,
    timeout: Duration,
    repeat: usize,
) -> Option<(Value, bool)> {
    let mut lines = Vec::with_capacity(repeat);
    let mut all_correct = true;
    for attempt in 0..repeat {
        match run(daemon, spec, timeout).await {
            Ok(line) => {
                all_correct &= correct(&line);
                if repeat > 1 {
                    let mut shown = line.clone();
                    shown["attempt"] = json!(attempt + 1);
                    println!("{shown}");
                }
                lines.push(line);
            }
            Err(err) => {
                eprintln!("loadtest: run {} failed: {err}", spec.name);
                return None;
            }
        }
    }
    if repeat == 1 {
        return lines.pop().map(|line| (line, all_correct));
    }
    let mut line = median_line(&lines);
    line["median_of"] = json!(repeat);
    Some((line, all_correct))
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
        && line["timed_out"].as_bool() == Some(false)
}

/// The standard set of cases.
fn standard_runs() -> Vec<RunSpec> {
    let base = RunSpec::empty();
    vec![
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
        // A request's ordinary life, counted call by call: created, one approving review by a
        // human reviewer (threshold one), closed.
        RunSpec {
            name: "lifecycle_200_review",
            requests: 200,
            rate: 50.0,
            approval: Approval::Review,
            ..base.clone()
        },
        RunSpec {
            name: "approve_200_at_20_per_s_delay_500",
            requests: 200,
            rate: 20.0,
            processing_delay_ms: 500,
            approval: Approval::Auto,
            ..base.clone()
        },
        RunSpec {
            name: "approve_200_at_20_per_s_delay_2000",
            requests: 200,
            rate: 20.0,
            processing_delay_ms: 2000,
            approval: Approval::Auto,
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
            ..base
        },
    ]
}

async fn sweep(daemon: &Path, timeout: Duration, repeat: usize) -> ExitCode {
    let specs = standard_runs();
    let mut lines: HashMap<&str, Value> = HashMap::new();
    let mut all_correct = true;
    for spec in &specs {
        match repeated(daemon, spec, timeout, repeat).await {
            Some((line, correct)) => {
                println!("{line}");
                all_correct &= correct;
                lines.insert(spec.name, line);
            }
            None => all_correct = false,
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
    let writes = get("lifecycle_200_review", &["teleport_writes_per_request"]);
    let approve_500 = get("approve_200_at_20_per_s_delay_500", &["approve_ms", "p99"]);
    let approve_2000 = get("approve_200_at_20_per_s_delay_2000", &["approve_ms", "p99"]);
    let peak_100k = get("backlog_100000", &["resync_peak_rss_mib"]);
    let idle_100k = get("backlog_100000", &["idle_rss_mib"]);
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
            // Alert-domain calls per second against the configured limit (see the module docs).
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
            "resync_100000_le_3s_no_writes",
            le(get("backlog_100000", &["resync_s"]), 3.0)
                && get("backlog_100000", &["resync_writes"]) == Some(0.0),
        ),
        (
            "peak_rss_10000_le_64mib",
            le(get("10000_at_once", &["peak_rss_mib"]), 64.0),
        ),
        (
            "idle_rss_le_20mib",
            le(get("10000_at_once", &["idle_rss_mib"]), 20.0),
        ),
        ("peak_rss_backlog_100000_le_64mib", le(peak_100k, 64.0)),
        ("idle_rss_backlog_100000_le_24mib", le(idle_100k, 24.0)),
        ("teleport_writes_per_request_le_4", le(writes, 4.0)),
        ("approve_p99_delay_500_le_50ms", le(approve_500, 50.0)),
        ("approve_p99_delay_2000_le_50ms", le(approve_2000, 50.0)),
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
        "median_of": repeat,
        "event_to_create_p99_ms": get("200_at_20_per_s_delay_500", &["event_to_create_ms", "p99"]),
        "throughput_per_s_10000": get("10000_at_once", &["e2e_throughput_per_s"]),
        "create_throughput_per_s_10000": get("10000_at_once", &["create_throughput_per_s"]),
        "throughput_ratio_limit_200": get("2000_limit_200", &["throughput_ratio"]),
        "alert_calls_per_s_limit_200": get("2000_limit_200", &["alert_calls_per_s"]),
        "create_ratio_limit_200": get("2000_limit_200", &["create_ratio"]),
        "http_429_limit_200": get("2000_limit_200", &["http_429"]),
        "alert_id_p99_ms_delay_500": get("200_at_20_per_s_delay_500", &["alert_id_ms", "p99"]),
        "teleport_writes_per_request": writes,
        "teleport_reads_per_request": get("lifecycle_200_review", &["teleport_reads_per_request"]),
        "backend_calls_per_request": get("lifecycle_200_review", &["backend_calls_per_request"]),
        "approve_p50_ms_delay_500": get("approve_200_at_20_per_s_delay_500", &["approve_ms", "p50"]),
        "approve_p99_ms_delay_500": approve_500,
        "approve_p50_ms_delay_2000": get("approve_200_at_20_per_s_delay_2000", &["approve_ms", "p50"]),
        "approve_p99_ms_delay_2000": approve_2000,
        "resync_s_10000": get("backlog_10000", &["resync_s"]),
        "resync_s_100000": get("backlog_100000", &["resync_s"]),
        "resync_writes_10000": get("backlog_10000", &["resync_writes"]),
        "resync_writes_100000": get("backlog_100000", &["resync_writes"]),
        "peak_rss_mib_backlog_100000": peak_100k,
        "idle_rss_mib_backlog_100000": idle_100k,
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
