//! End to end on JSM Operations: the real daemon against the fake JSM (Integration Events for
//! the four documented writes, the REST API for every read, Jira's user API for e-mails), with
//! the fake Teleport. Every test ends by checking that no call went to a path Atlassian does not
//! document.

mod common;

use std::time::Duration;

use teleport_opsgenie::check;
use teleport_opsgenie::config::Secret;
use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::pb::types::RequestState;
use teleport_opsgenie::sim::jsm::{Alert, AlertStatus, Api};
use teleport_opsgenie::sim::world::{
    World, APPROVAL_SCHEDULE, HIDDEN_ACCOUNT, HIDDEN_REQUESTER, ON_CALL_ACCOUNT, ON_CALL_REQUESTER,
    REQUESTER, REVIEWERS,
};

use common::jsm::{alert_where, closed, jsm, jsm_world, only_documented_calls};
use common::{recorded, request, WAIT};

fn put_on_call(world: &World, accounts: &[&str]) {
    let id = world.jsm_schedule(APPROVAL_SCHEDULE).expect("schedule");
    assert!(jsm(world).set_on_call(id, accounts));
}

fn has_note(alert: &Alert, text: &str) -> bool {
    alert.notes.iter().any(|n| n.note.contains(text))
}

#[actix_rt::test]
async fn alert_review_notes_and_close_with_only_documented_calls() {
    let world = jsm_world().await;
    let daemon = Daemon::start(world.config(), RunOptions::default())
        .await
        .expect("daemon");
    let id = request(&world, REQUESTER, "deploy hotfix");
    let alert = alert_where(&world, &id, "alert created", |_| true).await;
    assert!(alert.tags.iter().any(|t| t == "teleport-access-request"));
    recorded(&world, &id, "alert_id", &alert.id).await;

    world
        .teleport
        .review(&id, REVIEWERS[0], true, "go ahead")
        .expect("review");
    let alert = closed(&world, &id).await;
    assert!(
        has_note(&alert, "approved the request"),
        "{:?}",
        alert.notes
    );
    assert!(
        has_note(&alert, "Access request approved"),
        "{:?}",
        alert.notes
    );
    assert!(daemon.shutdown().await);

    let j = jsm(&world);
    // Writes went to Integration Events; their outcomes were read on the REST API, the alert
    // by id once known.
    assert_eq!(j.calls_to("create_alert").len(), 1);
    assert!(!j.calls_to("add_note").is_empty());
    assert_eq!(j.calls_to("close_alert").len(), 1);
    assert!(j
        .calls_to("close_alert")
        .iter()
        .all(|c| c.path.contains(&alert.id)));
    assert!(!j.calls_to("get_request_status").is_empty());
    assert!(j
        .calls_to("get_request_status")
        .iter()
        .all(|c| c.api == Api::Rest));
    // The cloudId was looked up once, from the site.
    assert_eq!(j.calls_to("tenant_info").len(), 1);
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn on_call_requester_matched_by_visible_email_and_schedule_named_by_name() {
    let world = jsm_world().await;
    put_on_call(&world, &[ON_CALL_ACCOUNT]);
    let mut config = world.config();
    config.auto_approval.enabled = true;
    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon");
    // The requester role names the schedule by name in `teleport.dev/schedules`.
    let id = request(&world, ON_CALL_REQUESTER, "paged");
    let alert = closed(&world, &id).await;
    assert!(
        has_note(&alert, "Auto-approved: alice@example.com is on call"),
        "{:?}",
        alert.notes
    );
    assert_eq!(
        world.teleport.request_state(&id),
        Some(RequestState::Approved)
    );
    assert!(daemon.shutdown().await);
    let j = jsm(&world);
    let finds = j.calls_to("list_schedules");
    assert!(
        finds.iter().all(|c| c
            .query
            .as_deref()
            .is_some_and(|q| q.contains("query=teleport-access-alert-schedules"))),
        "{finds:?}"
    );
    let on_calls = j.calls_to("get_on_calls");
    let schedule_id = world.jsm_schedule(APPROVAL_SCHEDULE).unwrap();
    assert!(on_calls.iter().all(|c| c.path.contains(schedule_id)
        && c.query.as_deref().is_some_and(|q| q.contains("flat=true"))));
    assert!(!j.calls_to("get_user").is_empty());
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn hidden_email_is_matched_by_an_account_id_entry() {
    let world = jsm_world().await;
    put_on_call(&world, &[HIDDEN_ACCOUNT]);
    let mut config = world.config();
    config.auto_approval.enabled = true;
    config
        .auto_approval
        .users
        .insert(HIDDEN_REQUESTER.into(), HIDDEN_ACCOUNT.into());
    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon");
    let id = request(&world, HIDDEN_REQUESTER, "paged");
    let alert = closed(&world, &id).await;
    assert!(
        has_note(
            &alert,
            &format!("as {HIDDEN_ACCOUNT} (matched by explicit map)")
        ),
        "{:?}",
        alert.notes
    );
    assert!(daemon.shutdown().await);
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn hidden_email_without_an_entry_declines_naming_the_entry() {
    let world = jsm_world().await;
    put_on_call(&world, &[HIDDEN_ACCOUNT]);
    let mut config = world.config();
    config.auto_approval.enabled = true;
    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon");
    let id = request(&world, HIDDEN_REQUESTER, "paged");
    let want =
        format!("add `auto_approval.users: {{\"{HIDDEN_REQUESTER}\": \"{HIDDEN_ACCOUNT}\"}}`");
    let alert = alert_where(&world, &id, "decline note", |a| {
        has_note(a, "Not auto-approved")
    })
    .await;
    assert!(has_note(&alert, &want), "{:?}", alert.notes);
    assert!(has_note(&alert, "hides the e-mail"), "{:?}", alert.notes);
    assert_eq!(
        world.teleport.request_state(&id),
        Some(RequestState::Pending)
    );
    assert!(daemon.shutdown().await);
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn a_failed_rest_lookup_declines_and_says_why() {
    let world = jsm_world().await;
    // On call: an accountId the user API does not know, so its e-mail cannot be read.
    put_on_call(&world, &["5b2b0e011b3a75662300dead"]);
    let mut config = world.config();
    config.auto_approval.enabled = true;
    config.auto_approval.lookup_retries = 1;
    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon");
    let id = request(&world, ON_CALL_REQUESTER, "paged");
    let alert = alert_where(&world, &id, "decline note", |a| {
        has_note(a, "Not auto-approved:")
    })
    .await;
    assert!(
        has_note(
            &alert,
            "could not look up who is on call in \"teleport-access-alert-schedules\""
        ) && has_note(&alert, "5b2b0e011b3a75662300dead"),
        "{:?}",
        alert.notes
    );
    // Never "not on call".
    assert!(!has_note(&alert, "is not on call"), "{:?}", alert.notes);
    assert_eq!(
        world.teleport.request_state(&id),
        Some(RequestState::Pending)
    );
    assert!(daemon.shutdown().await);
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn orphan_sweep_closes_alerts_of_requests_deleted_while_down() {
    let world = jsm_world().await;
    let mut config = world.config();
    config.daemon.orphan_sweep_interval = Duration::from_millis(200);
    let daemon = Daemon::start(config.clone(), RunOptions::default())
        .await
        .expect("daemon");
    let gone = request(&world, REQUESTER, "deleted while down");
    let kept = request(&world, REQUESTER, "still pending");
    for id in [&gone, &kept] {
        let a = alert_where(&world, id, "alert created", |_| true).await;
        recorded(&world, id, "alert_id", &a.id).await;
    }
    assert!(daemon.shutdown().await);
    world.teleport.delete_request(&gone).expect("delete");

    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon restarts");
    let alert = closed(&world, &gone).await;
    assert!(has_note(&alert, "was deleted"), "{:?}", alert.notes);
    recorded(&world, &gone, "resolution", "expired").await;
    let before = jsm(&world).calls_to("list_alerts").len();
    jsm(&world)
        .wait_until(WAIT, "two more sweeps", |j| {
            j.calls_to("list_alerts").len() >= before + 2
        })
        .await
        .expect("sweeps keep running");
    let open = jsm(&world).alert_by_alias(&alias(&kept)).expect("alert");
    assert_eq!(open.status, AlertStatus::Open);
    assert_eq!(jsm(&world).calls_to("close_alert").len(), 1);
    assert!(daemon.shutdown().await);
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn orphans_several_replicas_close_directly_carry_no_repeated_note() {
    // Seen in a JSM chaos run: an orphan with no progress left is closed by the sweep itself, and
    // every replica sweeps; listings taken before a queued close was applied listed the alert
    // open again, each replica closed it again, and the fake JSM added the close's note each time.
    let world = jsm_world().await;
    let mut config = world.config();
    config.daemon.orphan_sweep_interval = Duration::from_millis(100);
    let daemon = Daemon::start(config.clone(), RunOptions::default())
        .await
        .expect("daemon");
    let gone = request(&world, REQUESTER, "deleted with its progress");
    let a = alert_where(&world, &gone, "alert created", |_| true).await;
    recorded(&world, &gone, "alert_id", &a.id).await;
    assert!(daemon.shutdown().await);
    world.teleport.delete_request(&gone).expect("delete");
    world
        .teleport
        .set_plugin_data(&gone, "opsgenie", Default::default())
        .expect("progress removed");
    // Accepted closes wait before JSM applies them, so later sweeps still list the alert open.
    jsm(&world).set_processing_delay(Duration::from_millis(600));
    let mut replicas = Vec::new();
    for name in ["sweeper-a", "sweeper-b"] {
        let options = RunOptions {
            replica: Some(name.to_owned()),
            ..Default::default()
        };
        replicas.push(
            Daemon::start(config.clone(), options)
                .await
                .expect("daemon"),
        );
    }
    let alert = closed(&world, &gone).await;
    let before = jsm(&world).calls_to("list_alerts").len();
    jsm(&world)
        .wait_until(WAIT, "more sweeps after the close", |j| {
            j.calls_to("list_alerts").len() >= before + 4
        })
        .await
        .expect("sweeps keep running");
    let alert = jsm(&world).alert_by_alias(&alias(&gone)).unwrap_or(alert);
    assert_eq!(alert.status, AlertStatus::Closed);
    let closes = jsm(&world).calls_to("close_alert").len();
    assert!(closes >= 1, "closed by a sweep");
    assert!(
        alert.notes.iter().all(|n| !n.note.contains("was deleted")),
        "a direct close carries no note, so repeating it adds nothing: {:?}",
        alert.notes
    );
    for daemon in replicas {
        assert!(daemon.shutdown().await);
    }
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn a_restart_while_the_create_is_queued_makes_no_second_alert() {
    let world = jsm_world().await;
    // Accepted writes wait a while before JSM applies them.
    jsm(&world).set_processing_delay(Duration::from_millis(1500));
    let config = world.config();
    let daemon = Daemon::start(config.clone(), RunOptions::default())
        .await
        .expect("daemon");
    let id = request(&world, REQUESTER, "restart me");
    jsm(&world)
        .wait_until(WAIT, "the create sent", |j| {
            !j.calls_to("create_alert").is_empty()
        })
        .await
        .expect("create");
    assert!(daemon.shutdown().await);

    let watches = world.teleport.count_calls("WatchEvents");
    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon restarts");
    let alert = alert_where(&world, &id, "alert created", |_| true).await;
    recorded(&world, &id, "alert_id", &alert.id).await;
    // The stopping daemon may have learnt the alert id itself; delete only once the restarted
    // one watches, or the deletion would reach no daemon and be the orphan sweep's to find.
    world
        .teleport
        .wait_until(WAIT, "the restarted daemon watches", |t| {
            t.count_calls("WatchEvents") > watches && t.watchers() > 0
        })
        .await
        .expect("watch");
    world.teleport.delete_request(&id).expect("delete");
    closed(&world, &id).await;
    assert!(daemon.shutdown().await);
    let same: Vec<_> = jsm(&world)
        .alerts()
        .into_iter()
        .filter(|a| a.alias == alias(&id))
        .collect();
    assert_eq!(same.len(), 1, "{same:#?}");
    only_documented_calls(&world);
}

#[actix_rt::test]
async fn check_reports_both_credentials_the_cloud_id_and_the_schedules() {
    let world = jsm_world().await;
    let mut config = world.config();
    config.http.enabled = false;
    config.auto_approval.enabled = true;
    // A pending request names the approval schedule in its annotation.
    request(&world, REQUESTER, "pending");
    let (report, code) = check::report(&config).await;
    assert_eq!(code, 0, "{report}");
    let cloud = jsm(&world).cloud_id();
    assert!(
        report.contains(&format!("{cloud} (looked up from the site)")),
        "{report}"
    );
    assert!(report.contains("JSM integration key"), "{report}");
    assert!(
        report.contains("accepts the API token of ops-bot@example.com"),
        "{report}"
    );
    let id = world.jsm_schedule(APPROVAL_SCHEDULE).unwrap();
    assert!(
        report.contains(&format!("\"{APPROVAL_SCHEDULE}\" is {id}")),
        "{report}"
    );

    // A default schedule that does not exist fails with the fix.
    let mut missing = config.clone();
    missing.auto_approval.default_schedules = vec!["No such rota".into()];
    let (report, code) = check::report(&missing).await;
    assert_eq!(code, 78, "{report}");
    assert!(
        report.contains("no schedule named \"No such rota\""),
        "{report}"
    );

    // A wrong API token: the REST API refuses, and the fix names the token file.
    let mut wrong = config.clone();
    wrong.opsgenie.jsm.api_token = Some(Secret::new("not-the-token"));
    let (report, code) = check::report(&wrong).await;
    assert_eq!(code, 78, "{report}");
    assert!(report.contains("opsgenie.jsm.api_token_file"), "{report}");
    assert!(!report.contains("not-the-token"), "{report}");
    only_documented_calls_but_refusals(&world);
}

/// As [`only_documented_calls`], where some calls were refused on purpose.
fn only_documented_calls_but_refusals(world: &World) {
    let undocumented = jsm(world).undocumented_calls();
    assert!(
        undocumented.is_empty(),
        "undocumented calls: {undocumented:#?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_small_chaos_run_on_jsm_keeps_one_alert_and_every_note_once() {
    use teleport_opsgenie::config::BackendKind;
    use teleport_opsgenie::sim::chaos::{run, ChaosOptions};
    let report = run(ChaosOptions {
        replicas: 2,
        requests: 30,
        kills: 2,
        faults: true,
        seed: 5,
        backend: BackendKind::Jsm,
        ..ChaosOptions::new(std::path::PathBuf::from(env!(
            "CARGO_BIN_EXE_teleport-opsgenie"
        )))
    })
    .await
    .expect("chaos run");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.requests, 30);
    assert!(report.quiescent, "{report:?}");
}
