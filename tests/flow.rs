//! The real daemon against the fake Teleport and the fake Opsgenie, over loopback: the scenarios
//! of Teleport's own plugin suite with stricter expectations, plus resync, restart and
//! reconnection.

mod common;

use teleport_opsgenie::backend::Responder;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::pb::types::RequestState;
use teleport_opsgenie::sim::opsgenie::AlertStatus;
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
