//! Access that ends with the shift on JSM Operations: the same cases as on Opsgenie
//! (`tests/shift.rs`), with the schedule's timeline read from the JSM REST API by schedule id
//! and its periods naming the requester by accountId. The daemons run on an adjustable clock
//! that the tests move forward, so nothing sleeps.

mod common;

use common::shift::{config, ms, plugin_may_lock, start};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use teleport_opsgenie::clock::Clock;
use teleport_opsgenie::core::shift::lock_name;
use teleport_opsgenie::core::shift_policy::ShiftEndMode;

use teleport_opsgenie::pb::types::RequestState;
use teleport_opsgenie::sim::jsm::{AlertStatus, Period, Rotation};
use teleport_opsgenie::sim::teleport::NewRequest;
use teleport_opsgenie::sim::world::{
    World, APPROVAL_SCHEDULE, ON_CALL_ACCOUNT, ON_CALL_REQUESTER, REQUESTER_ACCOUNT,
};

use common::jsm::{alert_where, jsm, jsm_world, only_documented_calls};
use common::WAIT;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn period(from: SystemTime, to: SystemTime, account: &str) -> Period {
    Period {
        start: from,
        end: to,
        kind: "base".into(),
        responder_type: "user".into(),
        responder_id: account.into(),
    }
}

/// The on-call requester (by accountId) is on call now, until `now + left`; then someone else.
fn shift_ends_in(world: &World, clock: &Clock, left: Duration) -> SystemTime {
    let secs = clock
        .now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let now = UNIX_EPOCH + Duration::from_secs(secs);
    let end = now + left;
    let schedule = world.jsm_schedule(APPROVAL_SCHEDULE).expect("schedule");
    assert!(jsm(world).set_timeline(
        schedule,
        vec![Rotation {
            id: "primary".into(),
            name: "primary".into(),
            periods: vec![
                period(now - HOUR, end, ON_CALL_ACCOUNT),
                period(end, now + 24 * HOUR, REQUESTER_ACCOUNT),
            ],
        }]
    ));
    end
}

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

/// The decision once it is recorded (the note may be on the alert a moment before).
async fn decision(world: &World, id: &str) -> String {
    let read = |t: &teleport_opsgenie::sim::teleport::FakeTeleport| {
        t.plugin_data(id, "opsgenie")
            .and_then(|d| d.get("approval_decision").cloned())
            .filter(|v| !v.is_empty())
    };
    world
        .teleport
        .wait_until(WAIT, "decision recorded", |t| read(t).is_some())
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"));
    read(&world.teleport).expect("decision")
}

#[actix_rt::test]
async fn decline_on_jsm_declines_an_over_long_request_and_approves_a_short_one() {
    let world = jsm_world().await;
    let clock = Clock::adjustable();
    let end = shift_ends_in(&world, &clock, HOUR);
    let daemon = start(config(&world, ShiftEndMode::Decline), &clock, "r1").await;

    let short = request_lasting(&world, 30 * MINUTE);
    let a = alert_where(&world, &short, "short request closed", |a| {
        a.status == AlertStatus::Closed
    })
    .await;
    assert!(
        a.notes.iter().any(|n| n.note.starts_with("Auto-approved:")),
        "{:?}",
        a.notes
    );
    assert_eq!(decision(&world, &short).await, "approved");
    assert_eq!(
        world.teleport.request_state(&short),
        Some(RequestState::Approved)
    );

    let long = request_lasting(&world, 8 * HOUR);
    let a = alert_where(&world, &long, "decline note", |a| !a.notes.is_empty()).await;
    let note = &a.notes[0].note;
    assert!(note.starts_with("Not auto-approved:"), "{note}");
    let shift_end = humantime::format_rfc3339_seconds(end).to_string();
    assert!(note.contains(&format!("ends at {shift_end}")), "{note}");
    assert!(note.contains("shift_end: decline"), "{note}");
    assert_eq!(decision(&world, &long).await, "declined");
    assert_eq!(
        world.teleport.request_state(&long),
        Some(RequestState::Pending)
    );
    daemon.shutdown().await;
    // The timeline was read by schedule id on the REST API, for the requester's accountId.
    let schedule = world.jsm_schedule(APPROVAL_SCHEDULE).expect("schedule");
    let timelines = jsm(&world).calls_to("get_timeline");
    assert!(!timelines.is_empty());
    assert!(
        timelines.iter().all(|c| c.path.contains(schedule)),
        "{timelines:?}"
    );
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn revoke_on_jsm_locks_at_shift_end_once_with_three_replicas() {
    let world = jsm_world().await;
    plugin_may_lock(&world);
    let clock = Clock::adjustable();
    shift_ends_in(&world, &clock, HOUR);
    let mut daemons = Vec::new();
    for replica in ["r1", "r2", "r3"] {
        daemons.push(start(config(&world, ShiftEndMode::Revoke), &clock, replica).await);
    }
    let id = request_lasting(&world, 8 * HOUR);
    let a = alert_where(&world, &id, "approved and closed", |a| {
        a.status == AlertStatus::Closed
    })
    .await;
    assert!(
        a.notes
            .iter()
            .any(|n| n.note.contains("so the access will be revoked at")),
        "{:?}",
        a.notes
    );
    assert!(
        world.teleport.locks().is_empty(),
        "no lock before the shift ends"
    );

    clock.advance(HOUR + MINUTE);
    let a = alert_where(&world, &id, "revocation note", |a| {
        a.notes
            .iter()
            .any(|n| n.note.starts_with("Access revoked at the end of the shift"))
    })
    .await;
    let revoked_notes = a
        .notes
        .iter()
        .filter(|n| n.note.starts_with("Access revoked at the end of the shift"))
        .count();
    assert_eq!(revoked_notes, 1, "one revocation note");
    let locks = world.teleport.locks();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(
        locks[0].metadata.as_ref().expect("metadata").name,
        lock_name(&id)
    );
    assert!(world.teleport.access_revoked_at(&id, clock.now()));
    assert_eq!(
        world.teleport.count_calls("UpsertLock"),
        1,
        "one replica locked, once"
    );
    for daemon in daemons {
        daemon.shutdown().await;
    }
    only_documented_calls(&world);
}

fn revoke_state(world: &World, id: &str) -> Option<(String, String)> {
    let d = world.teleport.plugin_data(id, "opsgenie")?;
    Some((
        d.get("shift_revoke_state").cloned().unwrap_or_default(),
        d.get("shift_revoke_at").cloned().unwrap_or_default(),
    ))
}

async fn until_revoke(world: &World, id: &str, what: &str, f: impl Fn(&str, &str) -> bool) {
    world
        .teleport
        .wait_until(WAIT, what, |_| {
            revoke_state(world, id).is_some_and(|(state, at)| f(&state, &at))
        })
        .await
        .unwrap_or_else(|e| panic!("{id}: {what}: {e}; {:?}", revoke_state(world, id)));
}

/// Waits until the revocation is noted: one lock on the request, one note on the alert.
async fn revoked(world: &World, clock: &Clock, id: &str) {
    until_revoke(world, id, "revocation noted", |state, _| state == "noted").await;
    let locks = world.teleport.locks();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert!(world.teleport.access_revoked_at(id, clock.now()));
    let a = alert_where(world, id, "revocation note", |a| {
        a.notes
            .iter()
            .any(|n| n.note.starts_with("Access revoked at the end of the shift"))
    })
    .await;
    let notes = a
        .notes
        .iter()
        .filter(|n| n.note.starts_with("Access revoked at the end of the shift"))
        .count();
    assert_eq!(notes, 1, "one revocation note");
}

#[actix_rt::test]
async fn an_override_on_jsm_that_extends_the_shift_postpones_the_lock() {
    let world = jsm_world().await;
    plugin_may_lock(&world);
    let clock = Clock::adjustable();
    let end = shift_ends_in(&world, &clock, HOUR);
    let now = end - HOUR;
    let daemon = start(config(&world, ShiftEndMode::Revoke), &clock, "r1").await;
    let id = request_lasting(&world, 8 * HOUR);
    until_revoke(&world, &id, "revocation planned", |state, at| {
        state == "planned" && at == ms(end)
    })
    .await;

    // An override keeps the requester on call two hours longer.
    let extended = end + 2 * HOUR;
    let schedule = world.jsm_schedule(APPROVAL_SCHEDULE).expect("schedule");
    let mut override_period = period(end - MINUTE, extended, ON_CALL_ACCOUNT);
    override_period.kind = "override".into();
    assert!(jsm(&world).set_timeline(
        schedule,
        vec![
            Rotation {
                id: "primary".into(),
                name: "primary".into(),
                periods: vec![
                    period(now - HOUR, end, ON_CALL_ACCOUNT),
                    period(end, now + 24 * HOUR, REQUESTER_ACCOUNT),
                ],
            },
            Rotation {
                id: "override".into(),
                name: "override".into(),
                periods: vec![override_period],
            },
        ]
    ));
    clock.advance(HOUR + MINUTE);
    until_revoke(&world, &id, "revocation moved", |state, at| {
        state == "planned" && at == ms(extended)
    })
    .await;
    assert!(
        world.teleport.locks().is_empty(),
        "not locked while on call"
    );

    clock.advance(2 * HOUR);
    revoked(&world, &clock, &id).await;
    daemon.shutdown().await;
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn a_refused_lock_on_jsm_is_reported_on_the_alert_and_retried() {
    let world = jsm_world().await;
    // The plugin's roles as shipped: the `lock` rule is commented out.
    let clock = Clock::adjustable();
    shift_ends_in(&world, &clock, HOUR);
    let daemon = start(config(&world, ShiftEndMode::Revoke), &clock, "r1").await;
    let id = request_lasting(&world, 8 * HOUR);
    until_revoke(&world, &id, "revocation planned", |state, _| {
        state == "planned"
    })
    .await;
    clock.advance(HOUR + MINUTE);

    let a = alert_where(&world, &id, "refusal note", |a| {
        a.notes
            .iter()
            .any(|n| n.note.starts_with("Could not revoke the access"))
    })
    .await;
    let note = a
        .notes
        .iter()
        .find(|n| n.note.starts_with("Could not revoke the access"))
        .expect("note");
    assert!(note.note.contains("resources: ['lock']"), "{}", note.note);
    world
        .teleport
        .wait_until(WAIT, "retries", |t| t.count_calls("UpsertLock") >= 3)
        .await
        .expect("retried");
    plugin_may_lock(&world);
    revoked(&world, &clock, &id).await;
    daemon.shutdown().await;
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn a_daemon_killed_on_jsm_between_approval_and_shift_end_still_locks_after_restart() {
    let world = jsm_world().await;
    plugin_may_lock(&world);
    let clock = Clock::adjustable();
    shift_ends_in(&world, &clock, HOUR);
    let (kill, killed) = tokio::sync::oneshot::channel::<()>();
    let (up, started) = tokio::sync::oneshot::channel();
    let doomed = config(&world, ShiftEndMode::Revoke);
    let doomed_clock = clock.clone();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let daemon = start(doomed, &doomed_clock, "doomed").await;
            let _ = up.send(());
            let _ = killed.await;
            // No shutdown: the runtime goes, taking the daemon's actors and timers with it.
            std::mem::forget(daemon);
        });
    });
    tokio::time::timeout(WAIT, started)
        .await
        .expect("in time")
        .expect("the doomed daemon started");
    let id = request_lasting(&world, 8 * HOUR);
    until_revoke(&world, &id, "revocation planned", |state, _| {
        state == "planned"
    })
    .await;
    kill.send(()).expect("kill");
    tokio::task::spawn_blocking(move || thread.join().expect("killed"))
        .await
        .expect("joined");

    clock.advance(HOUR + MINUTE);
    assert!(world.teleport.locks().is_empty(), "nobody left to lock");
    let daemon = start(config(&world, ShiftEndMode::Revoke), &clock, "after").await;
    revoked(&world, &clock, &id).await;
    daemon.shutdown().await;
    only_documented_calls(&world);
}
