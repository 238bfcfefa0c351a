//! The real daemon against the fake Teleport and the fake Opsgenie, over loopback: the scenarios
//! of Teleport's own plugin suite with stricter expectations, plus resync, restart and
//! reconnection.

mod common;

use std::time::Duration;
use teleport_opsgenie::backend::Responder;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::pb::types::RequestState;

use teleport_opsgenie::sim::opsgenie::{AlertStatus, Garble, Write};
use teleport_opsgenie::sim::world::{
    World, NOTIFY_SCHEDULE, NOTIFY_TEAM, REQUESTER, REVIEWERS, TEAM_REQUESTER,
};

use common::{alert, alert_id_recorded, alert_where, closed, creates, recorded, request, world};

async fn daemon(world: &World) -> Daemon {
    Daemon::start(world.config(), RunOptions::default())
        .await
        .expect("daemon starts")
}

fn named(kind: &str, name: &str) -> Responder {
    Responder {
        kind: kind.into(),
        id: None,
        name: Some(name.into()),
    }
}

#[actix_rt::test]
async fn alert_for_schedules_and_teams_has_exact_fields() {
    let world = world().await;
    let daemon = daemon(&world).await;
    let id = request(&world, REQUESTER, "deploy hotfix");
    let a = alert(&world, &id).await;
    assert_eq!(a.message, "Access request from myuser");
    assert_eq!(a.alias, format!("teleport-access-request/{id}"));
    let description = a.description.clone().expect("description");
    assert!(
        description.contains("myuser requested the roles: editor."),
        "{description}"
    );
    assert!(
        description.contains("Reason: deploy hotfix"),
        "{description}"
    );
    assert!(
        description.contains(&format!("https://teleport.example.com/web/requests/{id}")),
        "{description}"
    );
    let responders: Vec<(String, Option<String>, Option<String>)> = a
        .responders
        .iter()
        .map(|r| (r.kind.clone(), r.id.clone(), r.name.clone()))
        .collect();
    let want: Vec<(String, Option<String>, Option<String>)> = [
        named("schedule", NOTIFY_SCHEDULE),
        named("team", NOTIFY_TEAM),
    ]
    .into_iter()
    .map(|r| (r.kind, r.id, r.name))
    .collect();
    assert_eq!(responders, want);
    assert_eq!(a.priority, "P3");
    assert_eq!(a.tags, vec!["teleport-access-request".to_owned()]);
    assert_eq!(a.details.get("request_id"), Some(&id));
    assert_eq!(a.details.get("user").map(String::as_str), Some("myuser"));
    assert_eq!(a.details.get("roles").map(String::as_str), Some("editor"));
    assert_eq!(a.source, "teleport-opsgenie");
    // The stored alert id is the one the backend assigned.
    assert_eq!(alert_id_recorded(&world, &id).await, a.id);
    assert_eq!(creates(&world), 1);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn approval_and_denial_by_an_admin_close_the_alert_with_the_reason() {
    let world = world().await;
    let daemon = daemon(&world).await;
    let approved = request(&world, REQUESTER, "a");
    let denied = request(&world, REQUESTER, "b");
    alert_id_recorded(&world, &approved).await;
    alert_id_recorded(&world, &denied).await;
    world
        .teleport
        .set_state(&approved, RequestState::Approved, "okay")
        .expect("approve");
    world
        .teleport
        .set_state(&denied, RequestState::Denied, "not okay")
        .expect("deny");
    let a = closed(&world, &approved).await;
    assert_eq!(
        a.notes.last().map(|n| n.text.as_str()),
        Some("Access request approved.\nReason: okay")
    );
    let d = closed(&world, &denied).await;
    assert_eq!(
        d.notes.last().map(|n| n.text.as_str()),
        Some("Access request denied.\nReason: not okay")
    );
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn reviews_become_notes_while_pending_and_two_approvals_approve() {
    let world = world().await;
    let daemon = daemon(&world).await;
    let id = request(&world, TEAM_REQUESTER, "migration");
    alert_id_recorded(&world, &id).await;
    world
        .teleport
        .review(&id, REVIEWERS[0], true, "okay")
        .expect("review 1");
    let a = alert_where(&world, &id, "first note", |a| a.notes.len() == 1).await;
    assert!(a.notes[0]
        .text
        .starts_with("reviewer1@example.com approved the request"));
    assert!(
        a.notes[0]
            .text
            .ends_with("Reason: okay\n\n[teleport-opsgenie: review-0]"),
        "{}",
        a.notes[0].text
    );
    assert_eq!(a.status, AlertStatus::Open);
    assert_eq!(
        world.teleport.request_state(&id),
        Some(RequestState::Pending)
    );

    world
        .teleport
        .review(&id, REVIEWERS[1], true, "finally okay")
        .expect("review 2");
    let a = closed(&world, &id).await;
    let texts: Vec<&str> = a.notes.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[1].starts_with("reviewer2@example.com approved the request"));
    assert_eq!(texts[2], "Access request approved.\nReason: finally okay");
    let data = recorded(&world, &id, "resolution", "approved").await;
    assert_eq!(
        data.get("reviews_count").map(String::as_str),
        Some("2"),
        "{data:?}"
    );
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn two_denials_deny() {
    let world = world().await;
    let daemon = daemon(&world).await;
    let id = request(&world, TEAM_REQUESTER, "migration");
    alert_id_recorded(&world, &id).await;
    world
        .teleport
        .review(&id, REVIEWERS[0], false, "not okay")
        .expect("review 1");
    let a = alert_where(&world, &id, "first note", |a| a.notes.len() == 1).await;
    assert!(a.notes[0]
        .text
        .starts_with("reviewer1@example.com denied the request"));
    assert_eq!(a.status, AlertStatus::Open);
    assert_eq!(
        world.teleport.request_state(&id),
        Some(RequestState::Pending)
    );
    world
        .teleport
        .review(&id, REVIEWERS[1], false, "finally not okay")
        .expect("review 2");
    let a = closed(&world, &id).await;
    assert_eq!(
        a.notes.last().map(|n| n.text.as_str()),
        Some("Access request denied.\nReason: finally not okay")
    );
    assert!(a.notes[1]
        .text
        .starts_with("reviewer2@example.com denied the request"));
    let data = recorded(&world, &id, "resolution", "denied").await;
    assert_eq!(
        data.get("reviews_count").map(String::as_str),
        Some("2"),
        "{data:?}"
    );
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn deletion_closes_the_alert_as_expired() {
    let world = world().await;
    let daemon = daemon(&world).await;
    let id = request(&world, REQUESTER, "oops");
    alert_id_recorded(&world, &id).await;
    world.teleport.delete_request(&id).expect("delete");
    let a = closed(&world, &id).await;
    assert_eq!(
        a.notes.last().map(|n| n.text.as_str()),
        Some("Access request was deleted (by a user, or by Teleport once it expired).")
    );
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn a_request_made_before_start_gets_its_alert_by_resync() {
    let world = world().await;
    let id = request(&world, REQUESTER, "made while the daemon was down");
    let daemon = daemon(&world).await;
    alert(&world, &id).await;
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn a_request_resolved_while_stopped_is_closed_after_restart_without_a_second_alert() {
    let world = world().await;
    let first = daemon(&world).await;
    let id = request(&world, REQUESTER, "x");
    alert_id_recorded(&world, &id).await;
    first.shutdown().await;

    world
        .teleport
        .set_state(&id, RequestState::Approved, "while you were out")
        .expect("approve");
    let second = daemon(&world).await;
    let a = closed(&world, &id).await;
    assert_eq!(
        a.notes.last().map(|n| n.text.as_str()),
        Some("Access request approved.\nReason: while you were out")
    );
    assert_eq!(creates(&world), 1);
    second.shutdown().await;
}

#[actix_rt::test]
async fn a_dropped_watch_loses_nothing() {
    let world = world().await;
    let daemon = daemon(&world).await;
    let before = request(&world, REQUESTER, "before");
    alert_id_recorded(&world, &before).await;
    world.teleport.drop_watchers();
    // Changes made while the watch is down are picked up by the resync after reconnecting.
    let during = request(&world, REQUESTER, "during");
    world
        .teleport
        .set_state(&before, RequestState::Denied, "no")
        .expect("deny");
    alert(&world, &during).await;
    closed(&world, &before).await;
    assert_eq!(world.opsgenie.alerts().len(), 2);
    assert!(world.teleport.watchers() >= 1);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn restarting_mid_run_creates_no_second_alert() {
    let world = world().await;
    let first = daemon(&world).await;
    let ids: Vec<String> = (0..10)
        .map(|i| request(&world, REQUESTER, &format!("burst {i}")))
        .collect();
    // Stop while the burst is being handled, then start again.
    alert(&world, &ids[0]).await;
    first.shutdown().await;
    let second = daemon(&world).await;
    for id in &ids {
        alert_id_recorded(&world, id).await;
    }
    let alerts = world.opsgenie.alerts();
    assert_eq!(alerts.len(), 10, "one alert per request");
    assert!(
        alerts.iter().all(|a| a.count == 1),
        "no create was repeated"
    );
    second.shutdown().await;
}

/// POSTs to `/v2/alerts/<alert id>/<what>` (`notes`, `close`).
fn posts_to(world: &World, alert_id: &str, what: &str) -> usize {
    world
        .opsgenie
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.api_path == format!("/v2/alerts/{alert_id}/{what}"))
        .count()
}

/// Creates the backend received for `id`'s alias.
fn creates_of(world: &World, id: &str) -> usize {
    let alias = teleport_opsgenie::core::render::alias(id);
    world
        .opsgenie
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.api_path == "/v2/alerts")
        .filter(|c| c.body.as_ref().and_then(|b| b["alias"].as_str()) == Some(alias.as_str()))
        .count()
}

#[actix_rt::test]
async fn an_unreadable_answer_to_a_create_is_not_parked_and_makes_one_alert() {
    let world = world().await;
    let daemon = daemon(&world).await;
    let faults = world.opsgenie.faults();
    // An HTML page instead of the 202, and nothing created: the create is made again.
    faults.garble_next(Some(Write::Create), 1, Garble::Html, false);
    let lost = request(&world, REQUESTER, "garbled, not applied");
    alert_id_recorded(&world, &lost).await;
    assert_eq!(creates_of(&world, &lost), 2);
    // A 202 without its requestId, and created: found by its alias, not created twice.
    faults.garble_next(Some(Write::Create), 1, Garble::NoRequestId, true);
    let applied = request(&world, REQUESTER, "garbled, applied");
    alert_id_recorded(&world, &applied).await;
    assert_eq!(creates_of(&world, &applied), 1);
    for id in [&lost, &applied] {
        let alias = teleport_opsgenie::core::render::alias(id);
        let alerts = world
            .opsgenie
            .alerts()
            .into_iter()
            .filter(|a| a.alias == alias)
            .count();
        assert_eq!(alerts, 1, "{id}");
    }
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn a_note_whose_answer_was_lost_is_posted_once() {
    let world = world().await;
    let daemon = daemon(&world).await;
    let id = request(&world, TEAM_REQUESTER, "note answers get lost");
    let alert_id = alert_id_recorded(&world, &id).await;
    // Every call takes effect, then answers 502: the note is on the alert, the daemon cannot
    // know it. It must not send it again blindly.
    let faults = world.opsgenie.faults();
    faults.set_errors_after_effect(true);
    faults.set_error_rate(1.0);
    world
        .teleport
        .review(&id, REVIEWERS[0], true, "looks fine")
        .expect("review");
    world
        .opsgenie
        .wait_until(common::WAIT, "the note arrives", |_| {
            posts_to(&world, &alert_id, "notes") > 0
        })
        .await
        .expect("note");
    world
        .teleport
        .wait_until(common::WAIT, "the note recorded as unconfirmed", |t| {
            t.plugin_data(&id, "opsgenie")
                .is_some_and(|d| d.contains_key("unconfirmed"))
        })
        .await
        .expect("unconfirmed");
    faults.clear();
    recorded(&world, &id, "reviews_count", "1").await;
    let a = alert(&world, &id).await;
    assert_eq!(a.notes.len(), 1, "{:?}", a.notes);
    assert_eq!(posts_to(&world, &alert_id, "notes"), 1, "sent once");

    // A garbled 2xx, applied: found by its marker, recorded.
    let other = request(&world, TEAM_REQUESTER, "garbled note answer");
    let other_alert = alert_id_recorded(&world, &other).await;
    faults.garble_next(Some(Write::AddNote), 1, Garble::InvalidJson, true);
    world
        .teleport
        .review(&other, REVIEWERS[1], true, "also fine")
        .expect("review");
    recorded(&world, &other, "reviews_count", "1").await;
    assert_eq!(alert(&world, &other).await.notes.len(), 1);
    assert_eq!(posts_to(&world, &other_alert, "notes"), 1);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn a_close_that_outlives_the_request_timeout_is_not_sent_twice() {
    let world = world().await;
    let mut config = world.config();
    config.opsgenie.request_timeout = Duration::from_millis(300);
    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon starts");
    let id = request(&world, REQUESTER, "slow close");
    let alert_id = alert_id_recorded(&world, &id).await;
    // The backend applies the close at once but answers after the daemon stopped waiting.
    world
        .opsgenie
        .faults()
        .set_answer_delay(Some(Duration::from_millis(900)));
    world
        .teleport
        .set_state(&id, RequestState::Approved, "ok")
        .expect("approve");
    world
        .opsgenie
        .wait_until(common::WAIT, "the close arrives", |_| {
            posts_to(&world, &alert_id, "close") > 0
        })
        .await
        .expect("close");
    // Looked up (the alert is closed), not sent again, even once answers are quick again.
    world
        .teleport
        .wait_until(common::WAIT, "the close recorded as unconfirmed", |t| {
            t.plugin_data(&id, "opsgenie").is_some_and(|d| {
                d.get("unconfirmed")
                    .is_some_and(|u| u.starts_with("close "))
            })
        })
        .await
        .expect("unconfirmed");
    world.opsgenie.faults().set_answer_delay(None);
    recorded(&world, &id, "resolution", "approved").await;
    assert_eq!(
        posts_to(&world, &alert_id, "close"),
        1,
        "verified, not resent"
    );
    assert_eq!(closed(&world, &id).await.notes.len(), 1);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn after_sigterm_with_a_step_in_flight_a_restart_resumes_within_seconds() {
    let world = world().await;
    let mut config = world.config();
    config.daemon.shutdown_timeout = Duration::from_millis(300);
    config.daemon.claim_ttl = Duration::from_secs(60);
    let first = Daemon::start(config.clone(), RunOptions::default())
        .await
        .expect("daemon starts");
    let id = request(&world, REQUESTER, "in flight at shutdown");
    let alert_id = alert_id_recorded(&world, &id).await;
    // The note is accepted but processed only after 2 s: its step still waits for the
    // confirmation when shutdown comes.
    world.opsgenie.set_processing_delay(Duration::from_secs(2));
    world
        .teleport
        .review(&id, REVIEWERS[0], true, "ok")
        .expect("review");
    world
        .opsgenie
        .wait_until(common::WAIT, "the note is sent", |_| {
            posts_to(&world, &alert_id, "notes") > 0
        })
        .await
        .expect("note sent");
    assert!(!first.shutdown().await, "the step was still in flight");
    let data = world.teleport.plugin_data(&id, "opsgenie").expect("data");
    assert_eq!(
        data.get("claimed_by").map(String::as_str).unwrap_or(""),
        "",
        "the claim was released"
    );

    // A new pod with another name: no claim to wait out (60 s), it verifies and records.
    let started = tokio::time::Instant::now();
    let second = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon restarts");
    world
        .teleport
        .wait_until(Duration::from_secs(8), "the note recorded", |t| {
            t.plugin_data(&id, "opsgenie")
                .is_some_and(|d| d.get("reviews_count").map(String::as_str) == Some("1"))
        })
        .await
        .expect("resumed within seconds");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        posts_to(&world, &alert_id, "notes"),
        1,
        "confirmed, not resent"
    );
    // The review resolved the request (threshold 1): its note and the close share one run, so
    // the alert may be closed by now, with the close's note; the review's note is on it once.
    let review_notes = world
        .opsgenie
        .alerts()
        .into_iter()
        .flat_map(|a| a.notes)
        .filter(|n| n.text.ends_with("[teleport-opsgenie: review-0]"))
        .count();
    assert_eq!(review_notes, 1);
    second.shutdown().await;
}

#[actix_rt::test]
async fn an_ordinary_lifecycle_costs_no_more_writes_than_before() {
    // Created, one review, approved. Confirming each Opsgenie write adds backend reads only; a
    // write with an unknown outcome is recorded in the release the failed step makes anyway.
    // Plugin-data writes against the real daemon and the fake Teleport: claim + record of the
    // run that creates the alert and learns its id, claim + record of the run that notes the
    // review and closes (4; it was 7 with a claim per step and a write for the id).
    let world = world().await;
    let daemon = daemon(&world).await;
    let before = world.teleport.count_calls("UpdatePluginData");
    let id = request(&world, REQUESTER, "count the writes");
    alert_id_recorded(&world, &id).await;
    world
        .teleport
        .review(&id, REVIEWERS[0], true, "fine")
        .expect("review");
    recorded(&world, &id, "resolution", "approved").await;
    let writes = world.teleport.count_calls("UpdatePluginData") - before;
    assert_eq!(writes, 4, "{writes} plugin-data writes");
    // Opsgenie: create, note, close, each confirmed by its request status.
    let calls = world.opsgenie.calls();
    let posts = calls.iter().filter(|c| c.method == "POST").count();
    assert_eq!(posts, 3);
    daemon.shutdown().await;
}
