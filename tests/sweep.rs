//! The orphan sweep: a request deleted while no replica was running leaves an open alert that
//! only the sweep can close.

use std::time::Duration;

use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::sim::opsgenie::AlertStatus;
use teleport_opsgenie::sim::world::{World, WorldOptions, REQUESTER};

const WAIT: Duration = Duration::from_secs(20);

#[actix_rt::test]
async fn sweep_closes_alerts_of_requests_deleted_while_down() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let world = World::start(WorldOptions::default()).await.expect("world");
    let mut config = world.config();
    config.daemon.orphan_sweep_interval = Duration::from_millis(200);

    let daemon = Daemon::start(config.clone(), RunOptions::default())
        .await
        .expect("daemon");
    let mk = |reason: &str| {
        world
            .teleport
            .create_request(REQUESTER, &["editor"], reason)
            .expect("request")
            .metadata
            .expect("metadata")
            .name
    };
    let (gone, kept) = (mk("deleted while down"), mk("still pending"));
    for id in [&gone, &kept] {
        let a = alias(id);
        world
            .opsgenie
            .wait_until(WAIT, "alerts open", |o| o.alert_by_alias(&a).is_some())
            .await
            .expect("alert");
    }
    assert!(daemon.shutdown().await);

    // Nobody watches: the deletion event is lost for good.
    world.teleport.delete_request(&gone).expect("delete");

    let daemon = Daemon::start(config, RunOptions::default())
        .await
        .expect("daemon restarts");
    let gone_alias = alias(&gone);
    world
        .opsgenie
        .wait_until(WAIT, "orphan closed", |o| {
            o.alert_by_alias(&gone_alias)
                .is_some_and(|a| a.status == AlertStatus::Closed)
        })
        .await
        .expect("the sweep closes the orphan");
    let closed = world.opsgenie.alert_by_alias(&gone_alias).expect("alert");
    assert!(
        closed
            .notes
            .iter()
            .any(|n| n.text.contains("expired or was deleted")),
        "{:?}",
        closed.notes
    );
    world
        .teleport
        .wait_until(WAIT, "resolution recorded", |t| {
            t.plugin_data(&gone, "opsgenie")
                .is_some_and(|d| d.get("resolution").map(String::as_str) == Some("expired"))
        })
        .await
        .expect("resolution recorded in plugin data");

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
