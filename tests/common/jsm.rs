//! Helpers of the JSM tests (`tests/jsm.rs`, `tests/shift_jsm.rs`): a World on the fake JSM,
//! waits on its alerts, and the check that a run made only documented calls.
#![allow(dead_code)]

use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::sim::jsm::{Alert, AlertStatus, Api, FakeJsm, FakeJsmOptions};
use teleport_opsgenie::sim::world::{World, WorldOptions};

use super::WAIT;

pub async fn jsm_world() -> World {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    World::start(WorldOptions {
        jsm: Some(FakeJsmOptions::default()),
        ..Default::default()
    })
    .await
    .expect("world starts")
}

pub fn jsm(world: &World) -> &FakeJsm {
    world.jsm.as_ref().expect("a JSM world")
}

pub async fn alert_where(world: &World, id: &str, what: &str, f: impl Fn(&Alert) -> bool) -> Alert {
    let alias = alias(id);
    jsm(world)
        .wait_until(WAIT, what, |j| {
            j.alert_by_alias(&alias).is_some_and(|a| f(&a))
        })
        .await
        .unwrap_or_else(|e| {
            let notes = jsm(world).alert_by_alias(&alias).map(|a| a.notes);
            panic!("{id}: {what}: {e}; the alert's notes: {notes:?}")
        });
    jsm(world).alert_by_alias(&alias).expect("alert")
}

pub async fn closed(world: &World, id: &str) -> Alert {
    alert_where(world, id, "alert closed", |a| {
        a.status == AlertStatus::Closed
    })
    .await
}

/// Nothing went anywhere Atlassian does not document, and the Integration Events API saw only
/// writes with the GenieKey.
pub fn only_documented_calls(world: &World) {
    let jsm = jsm(world);
    let undocumented = jsm.undocumented_calls();
    assert!(
        undocumented.is_empty(),
        "undocumented calls: {undocumented:#?}"
    );
    for call in jsm.calls() {
        assert!(call.auth_ok, "refused credential: {call:?}");
        if call.api == Api::IntegrationEvents {
            assert_eq!(call.method, "POST", "{call:?}");
        }
    }
}
