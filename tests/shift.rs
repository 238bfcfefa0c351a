//! Access that ends with the shift (`auto_approval.shift_end`), end to end against the fake
//! Teleport (locks with RBAC) and the fake Opsgenie (schedule timelines). Shift ends are an hour
//! or more away; the daemons run on an adjustable clock that the tests move forward, so nothing
//! sleeps.

mod common;

use common::shift::{config, ms, plugin_may_lock, start};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use teleport_opsgenie::clock::Clock;
use teleport_opsgenie::config::Config;
use teleport_opsgenie::core::shift::lock_name;
use teleport_opsgenie::core::shift_policy::ShiftEndMode;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::pb::types::RequestState;
use teleport_opsgenie::sim::opsgenie::{TimelinePeriod, TimelineRecipient};
use teleport_opsgenie::sim::teleport::NewRequest;
use teleport_opsgenie::sim::world::{World, APPROVAL_SCHEDULE, ON_CALL_REQUESTER};
use teleport_opsgenie::teleport::convert::time_from_pb;

use common::{alert_where, closed, world, WAIT};

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn period(rotation: &str, from: SystemTime, to: SystemTime, who: &str) -> TimelinePeriod {
    TimelinePeriod {
        rotation: rotation.to_owned(),
        start: from,
        end: to,
        recipient: TimelineRecipient::User(who.to_owned()),
    }
}

/// The on-call requester is on call now, until `now + left`; then someone else.
fn shift_ends_in(world: &World, clock: &Clock, left: Duration) -> SystemTime {
    // Whole seconds, as timelines are written.
    let now = UNIX_EPOCH
        + Duration::from_secs(
            clock
                .now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs(),
        );
    let end = now + left;
    world
        .opsgenie
        .set_on_call(APPROVAL_SCHEDULE, &[ON_CALL_REQUESTER]);
    assert!(world.opsgenie.set_timeline(
        APPROVAL_SCHEDULE,
        &[
            period("primary", now - HOUR, end, ON_CALL_REQUESTER),
            period("primary", end, now + 24 * HOUR, "bob@example.com"),
        ]
    ));
    end
}

/// A request by the on-call requester for `editor`, its access lasting `lasts`; its id.
fn request_lasting(world: &World, lasts: Duration) -> String {
    world
        .teleport
        .create_request_with(NewRequest {
            user: ON_CALL_REQUESTER.to_owned(),
            roles: vec!["editor".into()],
            reason: "paged".into(),
            access_expiry: Some(SystemTime::now() + lasts),
            ..Default::default()
        })
        .expect("request")
        .metadata
        .expect("metadata")
        .name
}

fn data(world: &World, id: &str) -> std::collections::BTreeMap<String, String> {
    world
        .teleport
        .plugin_data(id, "opsgenie")
        .unwrap_or_default()
}

async fn until_data(
    world: &World,
    id: &str,
    what: &str,
    f: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) {
    world
        .teleport
        .wait_until(WAIT, what, |t| {
            t.plugin_data(id, "opsgenie").is_some_and(|d| f(&d))
        })
        .await
        .unwrap_or_else(|e| panic!("{id}: {what}: {e}"));
}

fn state_is(d: &std::collections::BTreeMap<String, String>, state: &str) -> bool {
    d.get("shift_revoke_state").map(String::as_str) == Some(state)
}

/// Waits until the request's revocation is planned and its alert closed (the request was
/// approved); the planned time.
async fn planned(world: &World, id: &str) -> String {
    until_data(world, id, "revocation planned", |d| state_is(d, "planned")).await;
    closed(world, id).await;
    assert_eq!(
        world.teleport.request_state(id),
        Some(RequestState::Approved)
    );
    assert!(
        world.teleport.locks().is_empty(),
        "no lock before the shift ends"
    );
    data(world, id)["shift_revoke_at"].clone()
}

/// Waits until the revocation is noted and checks the one lock: its name, target and expiry.
async fn revoked(world: &World, clock: &Clock, id: &str) {
    until_data(world, id, "revocation noted", |d| state_is(d, "noted")).await;
    let locks = world.teleport.locks();
    assert_eq!(locks.len(), 1, "{locks:?}");
    let lock = &locks[0];
    assert_eq!(
        lock.metadata.as_ref().expect("metadata").name,
        lock_name(id)
    );
    let spec = lock.spec.as_ref().expect("spec");
    assert_eq!(spec.target.as_ref().expect("target").access_request, id);
    let request = world
        .teleport
        .request(id)
        .and_then(|r| r.spec)
        .expect("request");
    let access_end = time_from_pb(request.expires.as_ref()).expect("access expiry");
    let expires = time_from_pb(spec.expires.as_ref()).expect("the lock expires");
    assert!(
        expires >= access_end && expires < access_end + Duration::from_millis(2),
        "the lock expires with the access: {expires:?} vs {access_end:?}"
    );
    assert!(world.teleport.access_revoked_at(id, clock.now()));
    let alert = alert_where(world, id, "revocation note", |a| {
        a.notes
            .iter()
            .any(|n| n.text.starts_with("Access revoked at the end of the shift"))
    })
    .await;
    let notes = alert
        .notes
        .iter()
        .filter(|n| n.text.starts_with("Access revoked at the end of the shift"))
        .count();
    assert_eq!(notes, 1, "one revocation note");
}

#[actix_rt::test]
async fn decline_declines_an_over_long_request_and_approves_a_short_one() {
    let world = world().await;
    let clock = Clock::adjustable();
    let end = shift_ends_in(&world, &clock, HOUR);
    let daemon = start(config(&world, ShiftEndMode::Decline), &clock, "r1").await;

    let short = request_lasting(&world, 30 * MINUTE);
    until_data(&world, &short, "decision", |d| {
        d.get("approval_decision").is_some_and(|v| !v.is_empty())
    })
    .await;
    assert_eq!(data(&world, &short)["approval_decision"], "approved");
    let a = closed(&world, &short).await;
    assert!(
        a.notes.iter().any(|n| n.text.starts_with("Auto-approved:")),
        "{:?}",
        a.notes
    );

    assert_eq!(
        world.teleport.request_state(&short),
        Some(RequestState::Approved)
    );

    let long = request_lasting(&world, 8 * HOUR);
    until_data(&world, &long, "decision", |d| {
        d.get("approval_decision").is_some_and(|v| !v.is_empty())
    })
    .await;
    assert_eq!(data(&world, &long)["approval_decision"], "declined");
    let a = alert_where(&world, &long, "decline note", |a| !a.notes.is_empty()).await;
    let note = &a.notes[0].text;
    assert!(note.starts_with("Not auto-approved:"), "{note}");
    let shift_end = humantime::format_rfc3339_seconds(end).to_string();
    assert!(note.contains(&format!("ends at {shift_end}")), "{note}");
    assert!(note.contains("would last until"), "{note}");
    assert!(note.contains("shift_end: decline"), "{note}");
    assert_eq!(
        world.teleport.request_state(&long),
        Some(RequestState::Pending)
    );
    let reviews = world
        .teleport
        .request(&long)
        .and_then(|r| r.spec)
        .expect("spec")
        .reviews;
    assert!(reviews.is_empty(), "no review for the declined request");
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn revoke_locks_at_shift_end_once_with_three_replicas() {
    let world = world().await;
    plugin_may_lock(&world);
    let clock = Clock::adjustable();
    let end = shift_ends_in(&world, &clock, HOUR);
    let mut daemons = Vec::new();
    for replica in ["r1", "r2", "r3"] {
        daemons.push(start(config(&world, ShiftEndMode::Revoke), &clock, replica).await);
    }
    let id = request_lasting(&world, 8 * HOUR);
    assert_eq!(planned(&world, &id).await, ms(end));
    let a = closed(&world, &id).await;
    assert!(
        a.notes
            .iter()
            .any(|n| n.text.contains("so the access will be revoked at")),
        "{:?}",
        a.notes
    );
    clock.advance(HOUR + MINUTE);
    revoked(&world, &clock, &id).await;
    assert_eq!(
        world.teleport.count_calls("UpsertLock"),
        1,
        "one replica locked, once"
    );
    for daemon in daemons {
        daemon.shutdown().await;
    }
}

/// Runs a daemon in a system of its own on another thread, so that it can be killed: its
/// runtime is dropped with whatever it holds, without a shutdown.
fn killable(
    config: Config,
    clock: Clock,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (kill, killed) = tokio::sync::oneshot::channel::<()>();
    let (up, started) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let daemon = Daemon::start(
                config,
                RunOptions {
                    replica: Some("doomed".into()),
                    clock,
                    ..Default::default()
                },
            )
            .await
            .expect("daemon starts");
            let _ = up.send(());
            let _ = killed.await;
            // No shutdown: the runtime goes, taking the daemon's actors and timers with it.
            std::mem::forget(daemon);
        });
    });
    (kill, thread, started)
}

#[actix_rt::test]
async fn a_daemon_killed_between_approval_and_shift_end_still_locks_after_restart() {
    let world = world().await;
    plugin_may_lock(&world);
    let clock = Clock::adjustable();
    shift_ends_in(&world, &clock, HOUR);
    let (kill, thread, started) = killable(config(&world, ShiftEndMode::Revoke), clock.clone());
    tokio::time::timeout(WAIT, started)
        .await
        .expect("in time")
        .expect("the doomed daemon started");
    let id = request_lasting(&world, 8 * HOUR);
    planned(&world, &id).await;
    kill.send(()).expect("kill");
    // Joined off the runtime, which serves the fakes meanwhile.
    tokio::task::spawn_blocking(move || thread.join().expect("killed"))
        .await
        .expect("joined");

    clock.advance(HOUR + MINUTE);
    assert!(world.teleport.locks().is_empty(), "nobody left to lock");
    let daemon = start(config(&world, ShiftEndMode::Revoke), &clock, "after").await;
    revoked(&world, &clock, &id).await;
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn an_override_that_extends_the_shift_postpones_the_lock() {
    let world = world().await;
    plugin_may_lock(&world);
    let clock = Clock::adjustable();
    let end = shift_ends_in(&world, &clock, HOUR);
    let now = end - HOUR;
    let daemon = start(config(&world, ShiftEndMode::Revoke), &clock, "r1").await;
    let id = request_lasting(&world, 8 * HOUR);
    assert_eq!(planned(&world, &id).await, ms(end));

    // An override keeps the requester on call two hours longer.
    let extended = end + 2 * HOUR;
    assert!(world.opsgenie.set_timeline(
        APPROVAL_SCHEDULE,
        &[
            period("primary", now - HOUR, end, ON_CALL_REQUESTER),
            period("primary", end, now + 24 * HOUR, "bob@example.com"),
            period("override", end - MINUTE, extended, ON_CALL_REQUESTER),
        ]
    ));
    clock.advance(HOUR + MINUTE);
    until_data(&world, &id, "revocation moved", |d| {
        d.get("shift_revoke_at") == Some(&ms(extended)) && state_is(d, "planned")
    })
    .await;
    assert!(
        world.teleport.locks().is_empty(),
        "not locked while still on call"
    );
    assert!(!world.teleport.access_revoked_at(&id, clock.now()));

    clock.advance(2 * HOUR);
    revoked(&world, &clock, &id).await;
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn a_refused_lock_is_reported_on_the_alert_with_its_fix_and_retried_until_it_works() {
    let world = world().await;
    // The plugin's roles as shipped: the `lock` rule is commented out.
    let clock = Clock::adjustable();
    shift_ends_in(&world, &clock, HOUR);
    let daemon = start(config(&world, ShiftEndMode::Revoke), &clock, "r1").await;
    let id = request_lasting(&world, 8 * HOUR);
    planned(&world, &id).await;
    clock.advance(HOUR + MINUTE);

    let a = alert_where(&world, &id, "refusal note", |a| {
        a.notes
            .iter()
            .any(|n| n.text.starts_with("Could not revoke the access"))
    })
    .await;
    let note = a
        .notes
        .iter()
        .find(|n| n.text.starts_with("Could not revoke the access"))
        .expect("note");
    assert!(note.text.contains(&lock_name(&id)), "{}", note.text);
    assert!(
        note.text.contains("resources: ['lock']"),
        "the fix: {}",
        note.text
    );
    assert!(world.teleport.locks().is_empty());
    // Retried, not dropped: it keeps asking, and counts each refusal.
    world
        .teleport
        .wait_until(WAIT, "retries", |t| t.count_calls("UpsertLock") >= 3)
        .await
        .expect("retried");
    let metrics = daemon.metrics().render();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("teleport_opsgenie_shift_revocations_total{outcome=\"refused\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );

    // The rule is added: the next retry locks, and the refusal was noted only once.
    plugin_may_lock(&world);
    revoked(&world, &clock, &id).await;
    let a = alert_where(&world, &id, "notes", |_| true).await;
    let refusals = a
        .notes
        .iter()
        .filter(|n| n.text.starts_with("Could not revoke the access"))
        .count();
    assert_eq!(refusals, 1, "{:?}", a.notes);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn check_fails_without_the_lock_rule_under_revoke_and_passes_with_it() {
    let world = world().await;
    let config = config(&world, ShiftEndMode::Revoke);
    let (report, code) = teleport_opsgenie::check::report(&config).await;
    assert_eq!(code, 78, "{report}");
    assert!(report.contains("[FAIL] lock rule"), "{report}");
    assert!(report.contains("resources: ['lock']"), "the fix: {report}");
    plugin_may_lock(&world);
    let (report, code) = teleport_opsgenie::check::report(&config).await;
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("may create and update locks"), "{report}");
    // Read from the roles: nothing was locked to find out.
    assert_eq!(world.teleport.count_calls("UpsertLock"), 0);
    assert!(world.teleport.locks().is_empty());
}
