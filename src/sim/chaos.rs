//! The chaos run: the fake Teleport and fake Opsgenie in this process, the daemon as real child
//! processes (`teleport-opsgenie start -c <file>`), requests created, reviewed, approved, denied
//! and deleted throughout, replicas killed with SIGKILL and restarted, faults injected into both
//! fakes. At the end faults are turned off, the run waits for quiescence and counts what went
//! wrong. `examples/chaos.rs` and `tests/chaos.rs` both drive [`run`].
//!
//! # What is counted
//!
//! Only requests this run created are looked at, and only alerts whose alias is
//! `teleport-access-request/<id>`.
//!
//! - `requests`: requests created.
//! - `alerts`: alerts the fake Opsgenie holds for those requests, open or closed.
//! - `duplicate_alerts`: alerts beyond one per alias. The backend de-duplicates creates on the
//!   alias while an alert is open, so a second alert means the daemon created again after the
//!   first was closed. A de-duplicated create (the fake's `Alert::count > 1`) is a repeated
//!   create of the same alert, not a duplicate alert; it is reported as `repeated_creates`.
//! - `lost`: requests still pending at the end that have no open alert.
//! - `unclosed`: requests resolved (approved, denied, promoted) or deleted whose alert is open.
//! - `duplicate_notes`: notes beyond the first with identical text on the same alert. A note
//!   whose answer was lost (`errors_after_effect`, a garbled 2xx) or whose replica was killed
//!   mid-step is verified before it is posted again (its marker among the alert's notes), so
//!   this must stay zero.
//! - `duplicate_reviews`: reviews beyond the first by the same author on the same request
//!   (requests that still exist at the end; Teleport refuses a second review by one author, so
//!   this stays zero unless the fake or the daemon misbehave).
//! - `kills`: SIGKILLs sent to replicas.
//! - `faults_injected`: fault events (dropped watch streams, UNAVAILABLE bursts, 429 bursts,
//!   latency spikes, switches of the lost-answer mode); the constant rates (30% 5xx, 5% garbled
//!   2xx answers, 5% writes failing after acceptance) count once.
//! - `ok`: `duplicate_alerts`, `duplicate_notes`, `lost`, `unclosed` and `duplicate_reviews` are
//!   all zero.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tonic::Code;

use crate::config::BackendKind;
use crate::core::render::alias;
use crate::pb::types::RequestState;
use crate::sim::world::{World, ON_CALL_REQUESTER, REQUESTER, REVIEWERS, TEAM_REQUESTER};

#[path = "chaos_backend.rs"]
mod backend;
#[path = "chaos_notes.rs"]
mod notes;

use notes::trace_duplicates;
pub use notes::{DuplicateNote, NoteCall};

/// How to run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// Daemon processes running at once.
    pub replicas: usize,
    /// Requests to create.
    pub requests: usize,
    /// Kill events (each SIGKILLs one random replica, and one of them, when there are at least
    /// three, takes every replica down at once and deletes requests meanwhile).
    pub kills: usize,
    /// Inject faults while requests are made.
    pub faults: bool,
    /// Seed of every random choice the run makes.
    pub seed: u64,
    /// The `teleport-opsgenie` binary.
    pub bin: PathBuf,
    /// Mean pause between two actions on requests.
    pub pace: Duration,
    /// How long to wait for quiescence at the end.
    pub settle: Duration,
    /// The daemon's claim TTL: how long a killed replica blocks a request it held.
    pub claim_ttl: Duration,
    /// The daemon's orphan sweep interval.
    pub sweep_interval: Duration,
    /// The backend the replicas talk to (its fake).
    pub backend: BackendKind,
}

impl ChaosOptions {
    /// Defaults for `bin`: one replica, ten requests, no kills, no faults, seed 1.
    pub fn new(bin: PathBuf) -> Self {
        ChaosOptions {
            replicas: 1,
            requests: 10,
            kills: 0,
            faults: false,
            seed: 1,
            bin,
            pace: Duration::from_millis(10),
            settle: Duration::from_secs(60),
            claim_ttl: Duration::from_secs(4),
            sweep_interval: Duration::from_secs(2),
            backend: BackendKind::Opsgenie,
        }
    }
}

/// The result line (see the module docs for what each number means).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ChaosReport {
    /// Requests created.
    pub requests: usize,
    /// Alerts for them.
    pub alerts: usize,
    /// Alerts beyond one per alias.
    pub duplicate_alerts: usize,
    /// Pending requests without an open alert.
    pub lost: usize,
    /// Resolved or deleted requests with an open alert.
    pub unclosed: usize,
    /// Notes beyond the first with the same text on one alert.
    pub duplicate_notes: usize,
    /// Reviews beyond the first by one author on one request.
    pub duplicate_reviews: usize,
    /// SIGKILLs sent.
    pub kills: usize,
    /// Fault events injected.
    pub faults_injected: usize,
    /// De-duplicated creates of an open alert (`Alert::count - 1`, summed).
    pub repeated_creates: u64,
    /// Whether the end state was reached before the settle deadline.
    pub quiescent: bool,
    /// The first [`MAX_DETAILS`] duplicated notes: which request, which step's marker, how many
    /// copies, and every call that carried the note's text (to trace who sent what, when).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duplicate_note_details: Vec<DuplicateNote>,
    /// No duplicate alerts or notes, lost or unclosed requests, or duplicate reviews.
    pub ok: bool,
}

/// Duplicated notes reported in detail at most.
pub const MAX_DETAILS: usize = 20;

/// Why the run could not be carried out (as opposed to finding problems, which the report
/// says).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The world, a file or a child process could not be set up.
    #[error("{0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> ChaosError + '_ {
    move |e| ChaosError::Setup(format!("{what}: {e}"))
}

/// One daemon process.
struct Replica {
    child: Option<Child>,
    restart_at: Option<Instant>,
    log: PathBuf,
}

struct Fleet {
    bin: PathBuf,
    config: PathBuf,
    replicas: Vec<Replica>,
    kills: usize,
}

impl Fleet {
    fn start(&mut self, i: usize) -> Result<(), ChaosError> {
        let replica = &mut self.replicas[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&replica.log)
            .map_err(setup("opening a replica's log"))?;
        let child = Command::new(&self.bin)
            .arg("start")
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(setup("starting the daemon"))?;
        replica.child = Some(child);
        replica.restart_at = None;
        Ok(())
    }

    async fn kill(&mut self, i: usize, restart_at: Instant) {
        if let Some(mut child) = self.replicas[i].child.take() {
            // `start_kill` sends SIGKILL on Unix: no shutdown, no release of claims.
            let _ = child.start_kill();
            let _ = child.wait().await;
            self.kills += 1;
        }
        self.replicas[i].restart_at = Some(restart_at);
    }

    /// Indexes of the replicas running now.
    fn live(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|&i| self.replicas[i].child.is_some())
            .collect()
    }

    fn restart_due(&mut self, now: Instant) -> Result<(), ChaosError> {
        for i in 0..self.replicas.len() {
            if self.replicas[i].restart_at.is_some_and(|at| at <= now) {
                self.start(i)?;
            }
        }
        Ok(())
    }

    /// Fails if a replica exited on its own (a crash, or a bad configuration). Exit code 69
    /// ("Teleport or the backend unavailable at start", which faults cause on purpose) is
    /// restarted, as systemd or Kubernetes would.
    fn check_alive(&mut self) -> Result<(), ChaosError> {
        for replica in &mut self.replicas {
            if let Some(child) = &mut replica.child {
                if let Ok(Some(status)) = child.try_wait() {
                    if status.code() == Some(i32::from(crate::daemon::exit::UNAVAILABLE)) {
                        replica.child = None;
                        replica.restart_at = Some(Instant::now() + Duration::from_millis(200));
                        continue;
                    }
                    let tail = std::fs::read_to_string(&replica.log)
                        .map(|t| {
                            let lines: Vec<&str> = t.lines().collect();
                            lines[lines.len().saturating_sub(20)..].join("\n")
                        })
                        .unwrap_or_default();
                    return Err(ChaosError::Setup(format!(
                        "a replica exited on its own ({status}); log {}:\n{tail}",
                        replica.log.display()
                    )));
                }
            }
        }
        Ok(())
    }

    async fn stop_all(&mut self) {
        for replica in &mut self.replicas {
            if let Some(mut child) = replica.child.take() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

/// Writes the daemon's configuration for `world` to `config.yaml` in its folder.
fn write_config(world: &World, options: &ChaosOptions) -> Result<PathBuf, ChaosError> {
    let mut config = world.config();
    config.auto_approval.enabled = true;
    config.daemon.claim_ttl = options.claim_ttl;
    config.daemon.orphan_sweep_interval = options.sweep_interval;
    config.daemon.shutdown_timeout = Duration::from_secs(2);
    config.log.level = std::env::var("CHAOS_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    world
        .write_config_file(config, "config.yaml")
        .map_err(|e| ChaosError::Setup(e.to_string()))
}

/// Runs the whole scenario. Must be called inside a tokio runtime.
pub async fn run(options: ChaosOptions) -> Result<ChaosReport, ChaosError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut world = World::start(backend::world_options(options.backend, options.seed))
        .await
        .map_err(setup("starting the fakes"))?;
    backend::put_on_call(&world);
    let config = write_config(&world, &options)?;
    let replicas = options.replicas.max(1);
    let mut fleet = Fleet {
        bin: options.bin.clone(),
        config,
        replicas: (0..replicas)
            .map(|i| Replica {
                child: None,
                restart_at: None,
                log: world.dir.join(format!("replica-{i}.log")),
            })
            .collect(),
        kills: 0,
    };
    for i in 0..replicas {
        fleet.start(i)?;
    }
    let result = drive(&world, &options, &mut fleet).await;
    fleet.stop_all().await;
    let report = result?;
    if report.ok {
        let _ = std::fs::remove_dir_all(&world.dir);
    } else {
        world.keep_dir();
        tracing::warn!(dir = %world.dir.display(), "Chaos run failed; replica logs are kept.");
    }
    Ok(report)
}

async fn drive(
    world: &World,
    options: &ChaosOptions,
    fleet: &mut Fleet,
) -> Result<ChaosReport, ChaosError> {
    let replicas = fleet.replicas.len();
    let start_deadline = Instant::now() + Duration::from_secs(30);
    while world.teleport.watchers() < replicas {
        fleet.check_alive()?;
        if Instant::now() > start_deadline {
            return Err(ChaosError::Setup(
                "the replicas did not start watching within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut rng = StdRng::seed_from_u64(options.seed);
    // Kill moments are measured in requests created, so every one of them happens.
    let span = options.requests.max(1);
    let mut kill_at: Vec<usize> = (0..options.kills)
        .map(|_| rng.random_range(0..span))
        .collect();
    kill_at.sort_unstable();
    let blackout = (options.kills >= 3).then(|| kill_at[options.kills / 2]);

    let mut ids: Vec<String> = Vec::new();
    let mut faults_injected = 0usize;
    let mut next_fault = Instant::now();
    let mut latency_on = false;
    if options.faults {
        faults_injected += backend::faults_on(world);
    }

    let mut kill_idx = 0usize;
    while ids.len() < options.requests {
        let now = Instant::now();
        fleet.restart_due(now)?;
        while kill_idx < kill_at.len() && kill_at[kill_idx] <= ids.len() {
            let restart_at = now + Duration::from_millis(rng.random_range(50..500));
            if blackout == Some(kill_at[kill_idx]) {
                for i in 0..replicas {
                    fleet.kill(i, restart_at).await;
                }
                // Deleted while nobody watches: only the orphan sweep can close these alerts.
                for _ in 0..3 {
                    if let Some(id) = pick_pending(world, &ids, &mut rng) {
                        let _ = world.teleport.delete_request(&id);
                    }
                }
            } else {
                // A live replica; when all are down, one that is just starting up.
                let mut live = fleet.live();
                if live.is_empty() {
                    let i = rng.random_range(0..replicas);
                    fleet.start(i)?;
                    live.push(i);
                }
                let i = live[rng.random_range(0..live.len())];
                fleet.kill(i, restart_at).await;
            }
            kill_idx += 1;
        }
        if options.faults && now >= next_fault {
            faults_injected += inject_fault(world, &mut rng, &mut latency_on);
            next_fault = now + Duration::from_millis(rng.random_range(200..500));
        }
        act(world, &mut ids, &mut rng);
        let pause = options.pace.as_micros() as u64;
        if pause > 0 {
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..=2 * pause))).await;
        }
        fleet.check_alive()?;
    }

    // The end: faults off, everyone up, wait for the state to settle.
    backend::faults_off(world);
    world.teleport.fail_next(0, Code::Unavailable);
    world.teleport.set_latency(Duration::ZERO);
    for i in 0..replicas {
        if fleet.replicas[i].child.is_none() {
            fleet.start(i)?;
        }
    }
    let deadline = Instant::now() + options.settle;
    let mut report = assess(world, &ids);
    while !(report.lost == 0 && report.unclosed == 0 && backend::pending_requests(world) == 0) {
        if Instant::now() > deadline {
            break;
        }
        fleet.check_alive()?;
        fleet.restart_due(Instant::now())?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = assess(world, &ids);
    }
    report.quiescent = report.lost == 0 && report.unclosed == 0;
    trace_duplicates(world, &mut report.duplicate_note_details);
    report.kills = fleet.kills;
    report.faults_injected = faults_injected;
    report.ok = report.duplicate_alerts == 0
        && report.duplicate_notes == 0
        && report.lost == 0
        && report.unclosed == 0
        && report.duplicate_reviews == 0;
    Ok(report)
}

/// A random request of this run that is still pending.
fn pick_pending(world: &World, ids: &[String], rng: &mut StdRng) -> Option<String> {
    let pending: Vec<&String> = ids
        .iter()
        .filter(|id| world.teleport.request_state(id) == Some(RequestState::Pending))
        .collect();
    if pending.is_empty() {
        return None;
    }
    Some(pending[rng.random_range(0..pending.len())].clone())
}

/// One action on requests: mostly creations, then reviews, direct approvals and denials, and
/// deletions. Refusals (e.g. a review of a request that just got resolved) are part of the game.
fn act(world: &World, ids: &mut Vec<String>, rng: &mut StdRng) {
    let roll = rng.random_range(0..10);
    if roll < 5 || ids.is_empty() {
        let user = match rng.random_range(0..4) {
            0 => TEAM_REQUESTER,
            1 => ON_CALL_REQUESTER,
            _ => REQUESTER,
        };
        let reason = format!("chaos request {}", ids.len());
        if let Ok(request) = world.teleport.create_request(user, &["editor"], &reason) {
            if let Some(meta) = request.metadata {
                ids.push(meta.name);
            }
        }
        return;
    }
    let Some(id) = pick_pending(world, ids, rng) else {
        return;
    };
    match roll {
        5..=6 => {
            let reviewer = REVIEWERS[rng.random_range(0..REVIEWERS.len())];
            let _ = world
                .teleport
                .review(&id, reviewer, rng.random_bool(0.7), "chaos review");
        }
        7 => {
            let state = if rng.random_bool(0.5) {
                RequestState::Approved
            } else {
                RequestState::Denied
            };
            let _ = world.teleport.set_state(&id, state, "chaos decision");
        }
        _ => {
            let _ = world.teleport.delete_request(&id);
        }
    }
}

/// Injects one fault; returns how many fault events that was.
fn inject_fault(world: &World, rng: &mut StdRng, latency_on: &mut bool) -> usize {
    if *latency_on {
        backend::clear_latency(world);
        world.teleport.set_latency(Duration::ZERO);
        *latency_on = false;
    }
    match rng.random_range(0..6) {
        0 | 1 => world.teleport.drop_watchers(),
        2 => world
            .teleport
            .fail_next(rng.random_range(1..6), Code::Unavailable),
        3 => backend::throttle(world, rng),
        4 => {
            backend::latency(world);
            world
                .teleport
                .set_latency(Duration::from_millis(rng.random_range(20..150)));
            *latency_on = true;
        }
        _ => backend::errors_after_effect(world, rng.random_bool(0.5)),
    }
    1
}

/// Counts what is wrong now (see the module docs).
pub fn assess(world: &World, ids: &[String]) -> ChaosReport {
    let mut by_alias: HashMap<String, Vec<backend::Seen>> = HashMap::new();
    for alert in backend::alerts(world) {
        by_alias.entry(alert.alias.clone()).or_default().push(alert);
    }
    let mut report = ChaosReport {
        requests: ids.len(),
        ..Default::default()
    };
    for id in ids {
        let alerts = by_alias.get(&alias(id)).map(Vec::as_slice).unwrap_or(&[]);
        report.alerts += alerts.len();
        report.duplicate_alerts += alerts.len().saturating_sub(1);
        for extra in alerts.iter().skip(1) {
            tracing::warn!(alias = %extra.alias, alert_id = %extra.id, "Duplicate alert.");
        }
        let open = alerts.iter().filter(|a| a.open).count();
        for alert in alerts {
            report.repeated_creates += alert.count.saturating_sub(1);
            let mut texts: BTreeMap<&str, usize> = BTreeMap::new();
            for note in &alert.notes {
                *texts.entry(note.as_str()).or_default() += 1;
            }
            report.duplicate_notes += texts.values().map(|n| n - 1).sum::<usize>();
            for (text, &copies) in texts.iter().filter(|(_, n)| **n > 1) {
                if report.duplicate_note_details.len() < MAX_DETAILS {
                    report.duplicate_note_details.push(DuplicateNote {
                        request_id: id.clone(),
                        alert_id: alert.id.clone(),
                        marker: text.lines().last().unwrap_or("").to_owned(),
                        copies,
                        calls: Vec::new(),
                    });
                }
            }
        }
        match world.teleport.request(id) {
            Some(request) => {
                let spec = request.spec.unwrap_or_default();
                if spec.state == RequestState::Pending as i32 {
                    if open == 0 {
                        report.lost += 1;
                    }
                } else if open > 0 {
                    report.unclosed += 1;
                }
                let mut authors: BTreeMap<String, usize> = BTreeMap::new();
                for review in spec.reviews {
                    *authors.entry(review.author).or_default() += 1;
                }
                report.duplicate_reviews += authors.values().map(|n| n - 1).sum::<usize>();
            }
            None if open > 0 => report.unclosed += 1,
            None => {}
        }
    }
    report
}
