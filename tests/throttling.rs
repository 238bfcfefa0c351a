//! The gateway under throttling, end to end: a 429 burst and a tight per-second bucket at the
//! fake Opsgenie must delay work, never lose it.

mod common;

use std::time::Duration;

use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::sim::opsgenie::FakeRateLimits;
use teleport_opsgenie::sim::world::REQUESTER;

use common::{has_alert_id, request, world};

#[actix_rt::test]
async fn five_hundred_requests_through_a_429_burst_all_get_exactly_one_alert() {
    let world = world().await;
    let daemon = Daemon::start(world.config(), RunOptions::default())
        .await
        .expect("daemon");
    // Once the daemon runs, the fake throttles the next 40 calls outright, and holds creates to
    // 400 a second.
    world.opsgenie.faults().throttle_next(40);
    world.opsgenie.set_rate_limits(FakeRateLimits {
        create_per_second: Some(400),
        ..Default::default()
    });
    let ids: Vec<String> = (0..500)
        .map(|i| request(&world, REQUESTER, &format!("burst {i}")))
        .collect();
    // One request at a time, so each check is cheap however often the fake wakes us.
    for id in &ids {
        world
            .teleport
            .wait_until(Duration::from_secs(60), "alert id recorded", |t| {
                has_alert_id(t, id)
            })
            .await
            .expect("alert created");
    }
    let alerts = world.opsgenie.alerts();
    assert_eq!(alerts.len(), 500);
    // The fake folds a repeated create into the open alert of the same alias.
    assert!(
        alerts.iter().all(|a| a.count == 1),
        "no create was repeated"
    );
    for id in &ids {
        assert!(world.opsgenie.alert_by_alias(&alias(id)).is_some(), "{id}");
    }
    assert!(world.opsgenie.throttled_count() >= 40, "the burst happened");
    assert_eq!(daemon.permanent_failures(), 0, "nothing was given up");
    daemon.shutdown().await;
}
