//! The whole system on loopback: a fake Teleport, a fake Opsgenie and the real daemon in one
//! process, playing the paths of Teleport's guide "Access Requests with Opsgenie".
//!
//! `cargo run --example sandbox` plays the scenario, prints a timeline and one JSON summary line,
//! and exits 0 only if every expectation held.
//!
//! `cargo run --example sandbox -- --serve` keeps the fakes running instead, and prints their
//! addresses and a configuration file, so that `teleport-opsgenie start -c <file>` can run
//! against them from another terminal while `cargo run --example request -- ...` plays the
//! guide's `tctl request` steps.
//!
//! `--serve` writes its files to the folder named by `TELEPORT_OPSGENIE_SANDBOX_DIR`, by default
//! `teleport-opsgenie-sandbox` in the temporary folder, and holds it with a lock file while it
//! runs: a second `--serve` on the same folder refuses and says how to give it its own.
//! `examples/request.rs` reads the same variable to find the sandbox.

#[path = "sandbox/backend.rs"]
mod backend;
#[path = "sandbox/shift.rs"]
mod shift;
#[path = "sandbox/show.rs"]
mod show;

use backend::{Backend, Fake};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::pb::types::RequestState;
use teleport_opsgenie::sim::jsm::{Period, Rotation};
use teleport_opsgenie::sim::opsgenie::{Alert, AlertStatus, TimelinePeriod, TimelineRecipient};
use teleport_opsgenie::sim::world::{
    World, WorldOptions, APPROVAL_SCHEDULE, HIDDEN_REQUESTER, ON_CALL_ACCOUNT, ON_CALL_REQUESTER,
    REQUESTER, REVIEWERS, TEAM_REQUESTER,
};

/// The variable naming the folder of a `--serve` sandbox; `examples/request.rs` reads it too.
const DIR_VAR: &str = "TELEPORT_OPSGENIE_SANDBOX_DIR";

/// Where `--serve` writes its files: `$TELEPORT_OPSGENIE_SANDBOX_DIR`, or
/// `teleport-opsgenie-sandbox` in the temporary folder.
fn serve_dir() -> PathBuf {
    std::env::var_os(DIR_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(default_dir)
}

fn default_dir() -> PathBuf {
    std::env::temp_dir().join("teleport-opsgenie-sandbox")
}

/// A `--serve` sandbox's hold on its folder: a lock file with its process id, removed (with
/// the state file `examples/request.rs` reads) when the sandbox stops.
struct DirLock {
    lock: PathBuf,
    state: PathBuf,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let lock = dir.join("sandbox.lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(mut f) => {
                    use std::io::Write as _;
                    writeln!(f, "{}", std::process::id())
                        .map_err(|e| format!("writing {}: {e}", lock.display()))?;
                    return Ok(DirLock {
                        lock,
                        state: dir.join("sandbox.json"),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&lock).unwrap_or_default();
                    let pid = pid.trim();
                    if is_stale(pid) {
                        // Left by a sandbox that was killed: take the folder over.
                        let _ = std::fs::remove_file(&lock);
                        continue;
                    }
                    return Err(format!(
                        "{} is in use by another sandbox (process {pid}). Stop that one, or give \
                         this one its own folder:\n  {DIR_VAR}=$(mktemp -d) cargo run --example \
                         sandbox -- --serve\n(if no sandbox runs, delete {})",
                        dir.display(),
                        lock.display()
                    ));
                }
                Err(e) => return Err(format!("creating {}: {e}", lock.display())),
            }
        }
        Err(format!("could not take {} over", lock.display()))
    }
}

/// Whether the process that wrote a lock is gone. Only decidable where `/proc` exists; elsewhere
/// a lock is taken as live, and the message says which file to delete.
fn is_stale(pid: &str) -> bool {
    let proc = Path::new("/proc");
    match pid.parse::<u32>() {
        Ok(pid) => proc.is_dir() && !proc.join(pid.to_string()).exists(),
        // Unreadable or empty: a sandbox died while writing it.
        Err(_) => true,
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.state);
        let _ = std::fs::remove_file(&self.lock);
    }
}

const WAIT: Duration = Duration::from_secs(20);

struct Timeline {
    start: Instant,
    failures: Vec<String>,
}

impl shift::Report for Timeline {
    fn say(&self, what: &str) {
        Timeline::say(self, what);
    }
    fn check(&mut self, ok: bool, what: &str) {
        Timeline::check(self, ok, what);
    }
}

impl Timeline {
    fn say(&self, what: &str) {
        println!("[{:>7.3}s] {what}", self.start.elapsed().as_secs_f64());
    }
    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            self.say(&format!("ok: {what}"));
        } else {
            self.say(&format!("FAILED: {what}"));
            self.failures.push(what.to_owned());
        }
    }
}

#[actix_rt::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The daemon's own log lines go to stderr; RUST_LOG=info shows them all.
    let _ = teleport_opsgenie::telemetry::init_logging(&teleport_opsgenie::config::LogConfig {
        level: "warn".into(),
        ..Default::default()
    });
    let serve = std::env::args().any(|a| a == "--serve");
    let backend = match Backend::from_args() {
        Ok(backend) => backend,
        Err(err) => {
            eprintln!("sandbox: {err}");
            return std::process::ExitCode::from(64);
        }
    };
    let result = if serve {
        serve_forever(backend).await
    } else {
        play(backend).await
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(err) => {
            eprintln!("sandbox: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

// The timeline shows real elapsed time.
#[allow(clippy::disallowed_methods)]
async fn play(backend: Backend) -> Result<bool, Box<dyn std::error::Error>> {
    let mut t = Timeline {
        start: Instant::now(),
        failures: vec![],
    };
    let world = World::start(backend.world_options(WorldOptions::default())).await?;
    let fake = Fake::of(&world);
    t.say(&format!(
        "fake Teleport on {}, fake {} on {}",
        world.teleport.addr(),
        fake.product(),
        fake.url()
    ));
    show::users();
    let mut config = world.config();
    backend::put_on_call(&world, &mut config);
    config.auto_approval.enabled = true;
    let daemon = Daemon::start(config, RunOptions::default()).await?;
    t.say(&format!(
        "daemon started; auto-approval on, {ON_CALL_REQUESTER} is on call in {APPROVAL_SCHEDULE}"
    ));

    // 1. Approved by a reviewer: the review becomes a note, then the alert closes.
    let approved = create(&world, &fake, &mut t, REQUESTER, "deploy hotfix for INC-1").await?;
    world
        .teleport
        .review(&approved, REVIEWERS[0], true, "go ahead")?;
    t.say(&format!("{} approved {approved}", REVIEWERS[0]));
    let a = closed(&fake, &approved).await;
    t.check(
        a.as_ref().is_some_and(|a| {
            a.notes
                .iter()
                .any(|n| n.text.contains("approved the request"))
                && a.notes
                    .iter()
                    .any(|n| n.text.starts_with("Access request approved"))
        }),
        "approved request: review note and closing note, alert closed",
    );
    if let Some(a) = &a {
        t.say("the approved request's alert, as the on-call engineer sees it:");
        show::alert(a);
    }

    // 2. Denied by a reviewer.
    let denied = create(&world, &fake, &mut t, REQUESTER, "curious").await?;
    world
        .teleport
        .review(&denied, REVIEWERS[1], false, "not without a ticket")?;
    t.say(&format!("{} denied {denied}", REVIEWERS[1]));
    let a = closed(&fake, &denied).await;
    t.check(
        a.as_ref().is_some_and(|a| {
            a.notes
                .iter()
                .any(|n| n.text.contains("Reason: not without a ticket"))
        }),
        "denied request: alert closed with the reason",
    );

    // 3. Two approvals needed: each review is a note while the request is pending.
    let team = create(&world, &fake, &mut t, TEAM_REQUESTER, "database migration").await?;
    world.teleport.review(&team, REVIEWERS[0], true, "ok")?;
    let one_note = fake
        .wait_until(WAIT, "first review note", |o| {
            o.alert_by_alias(&alias(&team))
                .is_some_and(|a| review_notes(&a) == 1)
        })
        .await
        .is_ok();
    t.check(
        one_note && world.teleport.request_state(&team) == Some(RequestState::Pending),
        "first of two reviews: a note while the request is still pending",
    );
    world.teleport.review(&team, REVIEWERS[1], true, "ok too")?;
    let a = closed(&fake, &team).await;
    t.check(
        a.as_ref().is_some_and(|a| review_notes(a) == 2),
        "second review approves: two review notes and the closing note",
    );

    // 4. Deleted: the alert is closed, and its note says the request was deleted.
    let deleted = create(&world, &fake, &mut t, REQUESTER, "wrong role").await?;
    world.teleport.delete_request(&deleted)?;
    t.say(&format!("deleted {deleted}"));
    let a = closed(&fake, &deleted).await;
    t.check(
        a.as_ref().is_some_and(|a| {
            a.notes
                .iter()
                .any(|n| n.text == teleport_opsgenie::core::render::DELETED_NOTE)
        }),
        "deleted request: alert closed, its note says the request was deleted",
    );

    // 5. On call: the daemon approves at once, and says why on the alert.
    let on_call = create(&world, &fake, &mut t, ON_CALL_REQUESTER, "paged for INC-2").await?;
    let a = closed(&fake, &on_call).await;
    t.check(
        a.as_ref()
            .is_some_and(|a| a.notes.iter().any(|n| n.text.starts_with("Auto-approved:")))
            && world.teleport.request_state(&on_call) == Some(RequestState::Approved),
        "on-call requester: auto-approved, the reason on the alert, alert closed",
    );

    // 6. Not on call: no review, and the alert says why.
    let pending = create(&world, &fake, &mut t, REQUESTER, "just looking").await?;
    let declined_note = fake
        .wait_until(WAIT, "decline note", |o| {
            o.alert_by_alias(&alias(&pending))
                .is_some_and(|a| a.notes.iter().any(|n| n.text.contains("is not on call")))
        })
        .await
        .is_ok();
    t.check(
        declined_note && world.teleport.request_state(&pending) == Some(RequestState::Pending),
        "requester not on call: no review, the reason on the alert",
    );
    if let Some(a) = fake.alert_by_alias(&alias(&pending)) {
        t.say("the alert of a request the daemon did not approve:");
        show::alert(&a);
    }
    let mut expected_alerts = 6;
    if backend == Backend::Jsm {
        hidden_email_step(&world, &fake, &mut t).await?;
        expected_alerts += 1;
    }

    let alerts = fake.alerts();
    t.check(
        alerts.len() == expected_alerts,
        "exactly one alert per request",
    );
    daemon.shutdown().await;

    // 7. Access that ends with the shift (its own daemons: this one is stopped).
    let shift = play_shift(&world, &fake, &mut t).await?;
    let first = alerts;
    let alerts = fake.alerts();
    t.check(
        alerts.len() == expected_alerts + 2,
        "exactly one alert per request, the shift's two included",
    );
    let auto_approved = alerts
        .iter()
        .filter(|a| a.notes.iter().any(|n| n.text.starts_with("Auto-approved:")))
        .count();
    // A decline for the shift alone counts under "shift_declined", not again here.
    let declined = alerts
        .iter()
        .filter(|a| {
            a.notes.iter().any(|n| {
                n.text.starts_with("Not auto-approved") && !shift::is_shift_decline(&n.text)
            })
        })
        .count();
    let notes: usize = alerts.iter().map(|a| a.notes.len()).sum();
    let closed_count = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Closed)
        .count();
    let undocumented = fake.undocumented_calls();
    t.check(
        undocumented == 0,
        "no call outside the documented operations",
    );
    let ok = t.failures.is_empty();
    show::explain(&first);
    println!(
        "  revoked {}: locks created at the end of a shift; shift_declined {}: requests left to \
         a human because the access would outlast the requester's shift.",
        shift.revoked, shift.shift_declined
    );
    show::curl_hint();
    println!(
        "{}",
        serde_json::json!({
            "scenario": if ok { "ok" } else { "failed" },
            "backend": backend.name(),
            "alerts_created": alerts.len(),
            "notes": notes,
            "closed": closed_count,
            "auto_approved": auto_approved,
            "declined": declined,
            "revoked": shift.revoked,
            "shift_declined": shift.shift_declined,
            "failures": t.failures,
        })
    );
    Ok(ok)
}

/// The accountId the fake JSM gives the shift scenario's engineer.
const SHIFT_ACCOUNT: &str = "5b2b0e011b3a756623f4e25e";

/// The shift scenario (`sandbox/shift.rs`) on the world's fake, Opsgenie or JSM: who is on call
/// until when goes into the on-call answer and the schedule's timeline (by user name on
/// Opsgenie, by accountId on JSM, as each API names people).
async fn play_shift(
    world: &World,
    fake: &Fake<'_>,
    t: &mut Timeline,
) -> Result<shift::ShiftCounts, Box<dyn std::error::Error>> {
    let since = SystemTime::now() - Duration::from_secs(3600);
    let on_call_until: shift::SetOnCall<'_> = match fake {
        Fake::Opsgenie(opsgenie) => Box::new(move |who: &[(&str, SystemTime)]| {
            let names: Vec<&str> = who.iter().map(|(name, _)| *name).collect();
            opsgenie.set_on_call(APPROVAL_SCHEDULE, &names);
            let periods: Vec<TimelinePeriod> = who
                .iter()
                .map(|(name, until)| TimelinePeriod {
                    rotation: format!("{name}'s rotation"),
                    start: since,
                    end: *until,
                    recipient: TimelineRecipient::User((*name).to_owned()),
                })
                .collect();
            opsgenie.set_timeline(APPROVAL_SCHEDULE, &periods);
        }),
        Fake::Jsm(jsm) => {
            jsm.add_user(SHIFT_ACCOUNT, "Erin", shift::SHIFT_ENGINEER, true);
            let schedule = world
                .jsm_schedules
                .iter()
                .find(|(name, _)| name == APPROVAL_SCHEDULE)
                .map(|(_, id)| id.clone())
                .ok_or("the fake JSM has no approval schedule")?;
            Box::new(move |who: &[(&str, SystemTime)]| {
                let account = |name: &str| match name {
                    ON_CALL_REQUESTER => ON_CALL_ACCOUNT,
                    _ => SHIFT_ACCOUNT,
                };
                let accounts: Vec<&str> = who.iter().map(|(name, _)| account(name)).collect();
                jsm.set_on_call(&schedule, &accounts);
                let rotations = who
                    .iter()
                    .map(|(name, until)| Rotation {
                        id: format!("{name}-rotation"),
                        name: format!("{name}'s rotation"),
                        periods: vec![Period {
                            start: since,
                            end: *until,
                            kind: "base".into(),
                            responder_type: "user".into(),
                            responder_id: account(name).into(),
                        }],
                    })
                    .collect();
                jsm.set_timeline(&schedule, rotations);
            })
        }
    };
    let backend = shift::ShiftBackend {
        on_call_until,
        notes: Box::new(|id: &str| {
            fake.alert_by_alias(&alias(id))
                .map(|a| a.notes.into_iter().map(|n| n.text).collect())
                .unwrap_or_default()
        }),
    };
    shift::play(&world.teleport, &backend, &world.config(), t).await
}

async fn create(
    world: &World,
    fake: &Fake<'_>,
    t: &mut Timeline,
    user: &str,
    reason: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let request = world.teleport.create_request(user, &["editor"], reason)?;
    let id = request
        .metadata
        .map(|m| m.name)
        .ok_or("created request has no id")?;
    t.say(&format!("{user} requested editor: {id} ({reason})"));
    let created = fake
        .wait_until(WAIT, "alert", |o| o.alert_by_alias(&alias(&id)).is_some())
        .await
        .is_ok();
    t.check(created, &format!("alert created for {id}"));
    Ok(id)
}

/// Notes that record a reviewer's review (not the daemon's own explanations).
fn review_notes(alert: &Alert) -> usize {
    alert
        .notes
        .iter()
        .filter(|n| n.text.contains(" the request"))
        .count()
}

async fn closed(fake: &Fake<'_>, id: &str) -> Option<Alert> {
    let alias = alias(id);
    fake.wait_until(WAIT, "alert closed", |o| {
        o.alert_by_alias(&alias)
            .is_some_and(|a| a.status == AlertStatus::Closed)
    })
    .await
    .ok()?;
    fake.alert_by_alias(&alias)
}

/// JSM only: a requester on call whose Atlassian profile hides her e-mail is matched through
/// the `auto_approval.users` entry naming her accountId.
async fn hidden_email_step(
    world: &World,
    fake: &Fake<'_>,
    t: &mut Timeline,
) -> Result<(), Box<dyn std::error::Error>> {
    let id = create(world, fake, t, HIDDEN_REQUESTER, "paged for INC-3").await?;
    let a = closed(fake, &id).await;
    t.check(
        a.as_ref().is_some_and(|a| {
            a.notes
                .iter()
                .any(|n| n.text.starts_with("Auto-approved:") && n.text.contains("explicit map"))
        }) && world.teleport.request_state(&id) == Some(RequestState::Approved),
        "on-call requester with a hidden e-mail: auto-approved through her users: entry (accountId)",
    );
    Ok(())
}

async fn serve_forever(backend: Backend) -> Result<bool, Box<dyn std::error::Error>> {
    let dir = serve_dir();
    let lock = DirLock::acquire(&dir)?;
    let world = World::start(backend.world_options(WorldOptions {
        dir: Some(dir.clone()),
        ..Default::default()
    }))
    .await?;
    let fake = Fake::of(&world);
    let mut config = world.config();
    backend::put_on_call(&world, &mut config);
    let key_file = dir.join("opsgenie-api-key");
    let config_file = dir.join("teleport-opsgenie.yaml");
    if backend == Backend::Jsm {
        // Both JSM credentials, each in its own file, as users are told to keep them.
        config.auto_approval.enabled = true;
        config.http.enabled = true;
        world.write_config_file(config.clone(), "teleport-opsgenie.yaml")?;
    } else {
        std::fs::write(&key_file, world.opsgenie.api_key())?;
        std::fs::write(
            &config_file,
            format!(
                "# Written by `cargo run --example sandbox -- --serve`.\n\
                 teleport:\n  addr: \"{addr}\"\n  mode: auth\n  identity: \"{identity}\"\n  web_proxy_addr: teleport.example.com\n\
                 opsgenie:\n  api_url: \"{url}\"\n  api_key_file: \"{key}\"\n\
                 auto_approval:\n  enabled: true\n",
                addr = config.teleport.addr,
                identity = world.plugin_identity.display(),
                url = world.opsgenie.url(),
                key = key_file.display(),
            ),
        )?;
    }
    std::fs::write(
        &lock.state,
        serde_json::json!({
            "dir": dir,
            "teleport_addr": config.teleport.addr,
            "admin_identity": world.admin_identity,
            "plugin_identity": world.plugin_identity,
            "opsgenie_url": world.opsgenie.url(),
            "backend": backend.name(),
            "backend_url": fake.url(),
            "config": config_file,
        })
        .to_string(),
    )?;
    // Another folder than the default must be named to the `request` example.
    let prefix = if dir == default_dir() {
        String::new()
    } else {
        format!("{DIR_VAR}={} ", dir.display())
    };
    println!("sandbox folder:     {}", dir.display());
    println!(
        "                    (export {DIR_VAR}={} to reach this sandbox)",
        dir.display()
    );
    println!("fake Teleport Auth: {}", config.teleport.addr);
    println!("fake {:<14}{}", format!("{}:", fake.product()), fake.url());
    println!("plugin identity:    {}", world.plugin_identity.display());
    println!("admin identity:     {}", world.admin_identity.display());
    println!("config file:        {}", config_file.display());
    println!();
    show::users();
    println!();
    println!("In another terminal:");
    println!("  cargo run -- start -c {}", config_file.display());
    println!("  {prefix}cargo run --example request -- create {REQUESTER} --roles=editor");
    println!("  {prefix}cargo run --example request -- list");
    println!("  {prefix}cargo run --example request -- approve <ID>   (or deny <ID>)");
    println!();
    match &world.jsm {
        Some(jsm) => backend::curl_jsm(&jsm.rest_url(), &dir.join("jsm-api-token")),
        None => show::curl(&world.opsgenie.url(), &key_file),
    }
    println!();
    println!("Ctrl-C stops the fakes.");
    let _ = tokio::signal::ctrl_c().await;
    drop(lock);
    Ok(true)
}
