//! Crash, fault and replica safety, measured: the fake Teleport and the fake Opsgenie run in
//! this process, the daemon runs as real child processes (`teleport-opsgenie start -c <file>`).
//! Requests are created, reviewed, approved, denied and deleted throughout; replicas are killed
//! with SIGKILL and restarted; faults are injected into both fakes. At the end faults are turned
//! off, the run waits for quiescence and prints one JSON line.
//!
//! ```text
//! cargo run --release --example chaos -- --replicas 3 --requests 300 --kills 20 --faults --seed 1
//! ```
//!
//! Options: `--replicas K` (default 3), `--requests N` (default 100), `--kills M` (default 0),
//! `--faults`, `--seed S` (default 1; every choice the run makes comes from it, though thread
//! timing still varies), `--bin PATH` (the daemon binary).
//!
//! The daemon binary: without `--bin`, the example runs `cargo build --bin teleport-opsgenie`
//! in the profile it was built with (a no-op when up to date; `cargo run` tells it where cargo
//! is), and falls back to `teleport-opsgenie` next to the example's folder
//! (`target/<profile>/teleport-opsgenie`).
//!
//! The JSON line holds `requests, alerts, duplicate_alerts, lost, unclosed, duplicate_notes,
//! duplicate_reviews, kills, faults_injected, repeated_creates, quiescent, ok`, defined
//! precisely in `teleport_opsgenie::sim::chaos`:
//!
//! - `duplicate_alerts`: alerts beyond one per request alias (a de-duplicated create that only
//!   raises the fake's `Alert.count` is not one; those are `repeated_creates`);
//! - `lost`: requests pending at the end with no open alert;
//! - `unclosed`: resolved or deleted requests whose alert is open;
//! - `duplicate_notes`: notes with identical text on the same alert, beyond the first;
//! - `duplicate_reviews`: reviews beyond the first by one author on one request.
//!
//! - `duplicate_note_details` (only when there are some): for the first duplicated notes, the
//!   request, the note's marker, its copies and every call to the fake that carried it.
//!
//! Exits 0 only when `duplicate_alerts`, `duplicate_notes`, `lost`, `unclosed` and
//! `duplicate_reviews` are 0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use teleport_opsgenie::config::BackendKind;
use teleport_opsgenie::sim::chaos::{run, ChaosOptions};

fn usage() -> ExitCode {
    eprintln!(
        "usage: chaos [--replicas K] [--requests N] [--kills M] [--faults] [--seed S] [--bin PATH] [--backend opsgenie|jsm]"
    );
    ExitCode::from(64)
}

fn main() -> ExitCode {
    let mut replicas = 3usize;
    let mut requests = 100usize;
    let mut kills = 0usize;
    let mut faults = false;
    let mut seed = 1u64;
    let mut bin: Option<PathBuf> = None;
    let mut backend = BackendKind::Opsgenie;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next();
        let ok = match arg.as_str() {
            "--replicas" => value().and_then(|v| v.parse().ok()).map(|v| replicas = v),
            "--requests" => value().and_then(|v| v.parse().ok()).map(|v| requests = v),
            "--kills" => value().and_then(|v| v.parse().ok()).map(|v| kills = v),
            "--seed" => value().and_then(|v| v.parse().ok()).map(|v| seed = v),
            "--bin" => value().map(|v| bin = Some(PathBuf::from(v))),
            "--backend" => match value().as_deref() {
                Some("opsgenie") => Some(BackendKind::Opsgenie),
                Some("jsm") => Some(BackendKind::Jsm),
                _ => None,
            }
            .map(|b| backend = b),
            "--faults" => {
                faults = true;
                Some(())
            }
            _ => None,
        };
        if ok.is_none() {
            return usage();
        }
    }
    let bin = match bin.map(Ok).unwrap_or_else(daemon_binary) {
        Ok(bin) => bin,
        Err(err) => {
            eprintln!("chaos: {err}");
            return ExitCode::from(69);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let options = ChaosOptions {
        replicas,
        requests,
        kills,
        faults,
        seed,
        backend,
        ..ChaosOptions::new(bin)
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("chaos: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            );
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("chaos: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon binary of the same profile as this example: built by cargo when cargo is at
/// hand, else whatever is next to the example's folder.
fn daemon_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    // target/<profile>/examples/chaos -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the example is not in a cargo target folder")?
        .to_path_buf();
    let bin = profile_dir.join(format!("teleport-opsgenie{}", std::env::consts::EXE_SUFFIX));
    if let Ok(cargo) = std::env::var("CARGO") {
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "--bin", "teleport-opsgenie"])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        if let Some(target) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        match cmd.status() {
            Ok(status) if status.success() => {}
            Ok(status) => return Err(format!("building the daemon failed ({status})")),
            Err(err) => eprintln!(
                "chaos: could not run cargo ({err}); using {}",
                bin.display()
            ),
        }
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no daemon binary at {}: run `cargo build --release` (same profile as the example) or pass --bin",
            bin.display()
        ))
    }
}
