//! Auto-approval end to end: the real daemon, the fake Teleport's review rules and the fake
//! Opsgenie's schedules.

mod common;

use axum::http::StatusCode;
use teleport_opsgenie::config::Config;
use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::pb::types::RequestState;
use teleport_opsgenie::sim::opsgenie::{Alert, AlertStatus};
use teleport_opsgenie::sim::world::{
    World, APPROVAL_SCHEDULE, PLUGIN_USER, REQUESTER, TEAM_REQUESTER,
};

use common::{alert_where, world, WAIT};

fn approving(world: &World) -> Config {
    let mut config = world.config();
    config.auto_approval.enabled = true;
    config.auto_approval.user_domain = Some("example.com".into());
    config.auto_approval.lookup_retries = 1;
    config
}

async fn start(config: Config) -> Daemon {
    Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon starts")
}

fn request(world: &World, user: &str) -> String {
    common::request(world, user, "incident")
}

async fn decision(world: &World, id: &str) -> String {
    world
        .teleport
        .wait_until(WAIT, "decision recorded", |t| {
            t.plugin_data(id, "opsgenie")
                .is_some_and(|d| d.contains_key("approval_decision"))
        })
        .await
        .expect("decision recorded");
    world.teleport.plugin_data(id, "opsgenie").expect("data")["approval_decision"].clone()
}

async fn alert_with_notes(world: &World, id: &str, n: usize) -> Alert {
    alert_where(world, id, "notes", |a| a.notes.len() >= n).await
}

fn plugin_reviews(world: &World, id: &str) -> usize {
    world
        .teleport
        .request(id)
        .and_then(|r| r.spec)
        .map(|s| s.reviews.iter().filter(|r| r.author == PLUGIN_USER).count())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn an_on_call_requester_gets_exactly_one_approving_review() {
    let world = world().await;
    world
        .opsgenie
        .set_on_call(APPROVAL_SCHEDULE, &[TEAM_REQUESTER]);
    let daemon = start(approving(&world)).await;
    // team-requester needs two approvals: one review from the daemon leaves it pending.
    let id = request(&world, TEAM_REQUESTER);
    assert_eq!(decision(&world, &id).await, "approved");
    let a = alert_with_notes(&world, &id, 1).await;
    assert_eq!(
        a.notes[0].text,
        // The marker lets a retry after a lost answer see that the note is already there.
        format!("Auto-approved: {TEAM_REQUESTER} is on call in Opsgenie schedule \"{APPROVAL_SCHEDULE}\" (matched by username)\n\n[teleport-opsgenie: decision]")
    );
    assert_eq!(plugin_reviews(&world, &id), 1);
    assert_eq!(
        world.teleport.request_state(&id),
        Some(RequestState::Pending)
    );
    let review = world
        .teleport
        .request(&id)
        .and_then(|r| r.spec)
        .expect("spec")
        .reviews[0]
        .clone();
    assert_eq!(review.proposed_state, RequestState::Approved as i32);
    assert!(review.reason.starts_with("Auto-approved:"));
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn approval_goes_through_while_every_alert_write_is_refused() {
    // Incidents are when the backend throttles or fails: access must not wait for it.
    for status in [
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::SERVICE_UNAVAILABLE,
    ] {
        let world = world().await;
        world
            .opsgenie
            .set_on_call(APPROVAL_SCHEDULE, &["MyUser@Example.com"]);
        world.opsgenie.faults().refuse_alert_writes(Some(status));
        let daemon = start(approving(&world)).await;
        let id = request(&world, REQUESTER);
        world
            .teleport
            .wait_until(WAIT, "approved while alert writes fail", |t| {
                t.request_state(&id) == Some(RequestState::Approved)
            })
            .await
            .expect("approved");
        assert_eq!(plugin_reviews(&world, &id), 1, "{status}");
        assert!(
            world.opsgenie.alert_by_alias(&alias(&id)).is_none(),
            "no alert could be made yet"
        );
        // The backend recovers: the alert still tells the on-call team, and is closed.
        world.opsgenie.faults().refuse_alert_writes(None);
        let a = alert_where(&world, &id, "closed with the decision", |a| {
            a.status == AlertStatus::Closed
        })
        .await;
        let texts: Vec<&str> = a.notes.iter().map(|n| n.text.as_str()).collect();
        assert_eq!(texts.len(), 2, "{status}: {texts:?}");
        assert!(texts[0].starts_with("Auto-approved:"), "{texts:?}");
        assert!(
            texts[1].starts_with("Access request approved."),
            "{texts:?}"
        );
        assert_eq!(decision(&world, &id).await, "approved");
        assert_eq!(plugin_reviews(&world, &id), 1, "decided once");
        daemon.shutdown().await;
    }
}

#[actix_rt::test]
async fn the_user_domain_matches_short_names_and_a_single_approval_resolves() {
    let world = world().await;
    world
        .opsgenie
        .set_on_call(APPROVAL_SCHEDULE, &["MyUser@Example.com"]);
    let daemon = start(approving(&world)).await;
    let id = request(&world, REQUESTER);
    assert_eq!(decision(&world, &id).await, "approved");
    world
        .teleport
        .wait_until(WAIT, "approved", |t| {
            t.request_state(&id) == Some(RequestState::Approved)
        })
        .await
        .expect("approved");
    let a = alert_with_notes(&world, &id, 2).await;
    assert!(
        a.notes[0].text.contains("(matched by user_domain)"),
        "{}",
        a.notes[0].text
    );
    assert_eq!(plugin_reviews(&world, &id), 1);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn a_requester_not_on_call_gets_no_review_and_a_note_that_says_why() {
    let world = world().await;
    world
        .opsgenie
        .set_on_call(APPROVAL_SCHEDULE, &["someone-else@example.com"]);
    let daemon = start(approving(&world)).await;
    let id = request(&world, REQUESTER);
    assert_eq!(decision(&world, &id).await, "declined");
    let a = alert_with_notes(&world, &id, 1).await;
    assert!(
        a.notes[0].text.contains("is not on call") && a.notes[0].text.contains(APPROVAL_SCHEDULE),
        "{}",
        a.notes[0].text
    );
    assert_eq!(plugin_reviews(&world, &id), 0);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn a_review_refused_for_mfa_is_declined_with_the_fix_on_the_alert() {
    let world = world().await;
    world
        .opsgenie
        .set_on_call(APPROVAL_SCHEDULE, &[TEAM_REQUESTER]);
    world.teleport.set_mfa_required(true);
    let daemon = start(approving(&world)).await;
    let id = request(&world, TEAM_REQUESTER);
    assert_eq!(decision(&world, &id).await, "declined");
    let a = alert_with_notes(&world, &id, 1).await;
    let note = &a.notes[0].text;
    assert!(
        note.contains("Teleport refused the approving review"),
        "{note}"
    );
    assert!(
        note.contains("Machine ID (tbot)"),
        "the fix is named: {note}"
    );
    assert_eq!(plugin_reviews(&world, &id), 0);
    assert_eq!(
        world.teleport.request_state(&id),
        Some(RequestState::Pending)
    );
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn a_lookup_of_a_missing_schedule_is_declined_at_once_with_the_reason() {
    let world = world().await;
    world
        .teleport
        .add_role_yaml(
            "kind: role\nversion: v7\nmetadata:\n  name: lost\nspec:\n  allow:\n    request:\n      roles: ['editor']\n      annotations:\n        teleport.dev/schedules: ['no-such-schedule']\n",
        )
        .expect("role");
    world.teleport.add_user("lost@example.com", ["lost"]);
    let daemon = start(approving(&world)).await;
    let id = request(&world, "lost@example.com");
    assert_eq!(decision(&world, &id).await, "declined");
    let a = alert_with_notes(&world, &id, 1).await;
    assert!(
        a.notes[0].text.contains("could not look up"),
        "{}",
        a.notes[0].text
    );
    assert!(
        a.notes[0].text.contains("no-such-schedule"),
        "{}",
        a.notes[0].text
    );
    let lookups = world
        .opsgenie
        .calls()
        .iter()
        .filter(|c| c.api_path.starts_with("/v2/schedules/no-such-schedule"))
        .count();
    // A 404 for a schedule that does not exist is final: not retried.
    assert_eq!(lookups, 1, "one try, no retry");
    assert!(
        a.notes[0].text.contains("not retried"),
        "{}",
        a.notes[0].text
    );
    assert_eq!(plugin_reviews(&world, &id), 0);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn a_denied_role_is_declined_without_asking_who_is_on_call() {
    let world = world().await;
    world
        .opsgenie
        .set_on_call(APPROVAL_SCHEDULE, &["myuser@example.com"]);
    let mut config = approving(&world);
    config.auto_approval.denied_roles = vec!["edit*".into()];
    let daemon = start(config).await;
    let id = request(&world, REQUESTER);
    assert_eq!(decision(&world, &id).await, "declined");
    let a = alert_with_notes(&world, &id, 1).await;
    assert!(a.notes[0].text.contains("editor"), "{}", a.notes[0].text);
    assert!(world
        .opsgenie
        .calls()
        .iter()
        .all(|c| !c.api_path.starts_with("/v2/schedules/")));
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn many_requests_for_one_schedule_cost_one_lookup() {
    let world = world().await;
    world
        .opsgenie
        .set_on_call(APPROVAL_SCHEDULE, &["nobody@example.com"]);
    let daemon = start(approving(&world)).await;
    let ids: Vec<String> = (0..30).map(|_| request(&world, REQUESTER)).collect();
    for id in &ids {
        assert_eq!(decision(&world, id).await, "declined");
    }
    let lookups = world
        .opsgenie
        .calls()
        .iter()
        .filter(|c| c.api_path.starts_with("/v2/schedules/"))
        .count();
    assert_eq!(lookups, 1);
    daemon.shutdown().await;
}

#[actix_rt::test]
async fn two_daemons_submit_one_review_and_a_restart_decides_nothing_again() {
    let world = world().await;
    world
        .opsgenie
        .set_on_call(APPROVAL_SCHEDULE, &[TEAM_REQUESTER]);
    let first = start(approving(&world)).await;
    let second = start(approving(&world)).await;
    let ids: Vec<String> = (0..10).map(|_| request(&world, TEAM_REQUESTER)).collect();
    for id in &ids {
        assert_eq!(decision(&world, id).await, "approved");
    }
    first.shutdown().await;
    second.shutdown().await;
    // The restarted daemon resyncs every request; wait until it has read them all.
    let daemon_reads = world.teleport.count_calls("GetPluginData");
    let third = start(approving(&world)).await;
    world
        .teleport
        .wait_until(WAIT, "resync read", |t| {
            t.count_calls("GetPluginData") >= daemon_reads + ids.len()
        })
        .await
        .expect("resync");
    third.shutdown().await;
    for id in &ids {
        assert_eq!(plugin_reviews(&world, id), 1, "request {id}");
        let a = world.opsgenie.alert_by_alias(&alias(id)).expect("alert");
        assert_eq!(a.notes.len(), 1, "one decision note for {id}");
    }
    assert_eq!(world.opsgenie.alerts().len(), ids.len());
}
