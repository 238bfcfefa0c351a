//! The orphan sweep: a request deleted while no replica was running leaves an open alert that
//! only the sweep can close.

mod common;

use std::time::Duration;

use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::sim::opsgenie::AlertStatus;
use teleport_opsgenie::sim::world::REQUESTER;

use common::{alert, closed, recorded, request, world, WAIT};

#[actix_rt::test]
async fn sweep_closes_alerts_of_requests_deleted_while_down() {
    let world = world().await;
    let mut config = world.config();
    config.daemon.orphan_sweep_interval = Duration::from_millis(200);

    let daemon = Daemon::start(config.clone(), RunOptions::default())
        .await
        .expect("daemon");
    let gone = request(&world, REQUESTER, "deleted while down");
    let kept = request(&world, REQUESTER, "still pending");
    for id in [&gone, &kept] {
        alert(&world, id).await;
    }
    assert!(daemon.shutdown().await);

    // Nobody watches: the deletion event is lost for good.
    world.teleport.delete_request(&gone).expect("delete");

    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon restarts");
    // The sweep closes the orphan.
    let closed = closed(&world, &gone).await;
    assert!(
        closed.notes.iter().any(|n| n.text.contains("was deleted")),
        "{:?}",
        closed.notes
    );
    recorded(&world, &gone, "resolution", "expired").await;

    // Let a few more sweeps run: the pending request's alert stays open, the orphan is closed
    // once (a closed alert is not listed again).
    let lists = |o: &teleport_opsgenie::sim::opsgenie::FakeOpsgenie| {
        o.calls()
            .iter()
            .filter(|c| c.method == "GET" && c.api_path == "/v2/alerts")
            .count()
    };
    let before = lists(&world.opsgenie);
    world
        .opsgenie
        .wait_until(WAIT, "two more sweeps", |o| lists(o) >= before + 2)
        .await
        .expect("sweeps keep running");
    let open = world.opsgenie.alert_by_alias(&alias(&kept)).expect("alert");
    assert_eq!(open.status, AlertStatus::Open);
    let closes = world
        .opsgenie
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.api_path.ends_with("/close"))
        .count();
    assert_eq!(closes, 1, "the orphan is closed exactly once");
    assert!(daemon.shutdown().await);
}
