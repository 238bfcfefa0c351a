//! The chaos run's view of the backend fake (`--backend opsgenie|jsm`): setting it up, its
//! faults, and its alerts in one shape for the assessment.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use crate::config::BackendKind;
use crate::sim::jsm::FakeJsmOptions;
use crate::sim::opsgenie::FakeOpsgenieOptions;
use crate::sim::world::{
    World, WorldOptions, APPROVAL_SCHEDULE, ON_CALL_ACCOUNT, ON_CALL_REQUESTER,
};

/// One alert, whichever fake holds it.
pub(super) struct Seen {
    pub alias: String,
    pub id: String,
    pub open: bool,
    /// De-duplicated creates folded into it, plus one.
    pub count: u64,
    pub notes: Vec<String>,
}

/// The world's options for `backend`, seeded.
pub(super) fn world_options(backend: BackendKind, seed: u64) -> WorldOptions {
    WorldOptions {
        opsgenie: FakeOpsgenieOptions {
            seed,
            ..Default::default()
        },
        jsm: (backend == BackendKind::Jsm).then(|| FakeJsmOptions {
            seed,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Puts the on-call requester on call in the approval schedule.
pub(super) fn put_on_call(world: &World) {
    match (&world.jsm, world.jsm_schedule(APPROVAL_SCHEDULE)) {
        (Some(jsm), Some(id)) => {
            jsm.set_on_call(id, &[ON_CALL_ACCOUNT]);
        }
        _ => {
            world
                .opsgenie
                .set_on_call(APPROVAL_SCHEDULE, &[ON_CALL_REQUESTER]);
        }
    }
}

/// The standing faults of a `--faults` run; how many fault events that is.
pub(super) fn faults_on(world: &World) -> usize {
    match &world.jsm {
        Some(jsm) => {
            jsm.faults().set_error_rate(0.3);
            1
        }
        None => {
            let faults = world.opsgenie.faults();
            faults.set_error_rate(0.3);
            faults.set_garble_rate(0.05);
            faults.set_write_failure_rate(0.05);
            3
        }
    }
}

/// Every fault off.
pub(super) fn faults_off(world: &World) {
    world.opsgenie.faults().clear();
    if let Some(jsm) = &world.jsm {
        jsm.faults().clear();
    }
}

/// Latency off.
pub(super) fn clear_latency(world: &World) {
    match &world.jsm {
        Some(jsm) => jsm.faults().clear_latency(),
        None => world.opsgenie.faults().clear_latency(),
    }
}

/// A burst of 429s.
pub(super) fn throttle(world: &World, rng: &mut StdRng) {
    let n = rng.random_range(1..10);
    match &world.jsm {
        Some(jsm) => jsm.faults().throttle_next(n),
        None => world.opsgenie.faults().throttle_next(n as usize),
    }
}

/// Added latency on every answer.
pub(super) fn latency(world: &World) {
    let (min, max) = (Duration::from_millis(50), Duration::from_millis(400));
    match &world.jsm {
        Some(jsm) => jsm.faults().set_latency(min, max),
        None => world.opsgenie.faults().set_latency(min, max),
    }
}

/// Whether failed writes take effect first.
pub(super) fn errors_after_effect(world: &World, on: bool) {
    match &world.jsm {
        Some(jsm) => jsm.faults().set_errors_after_effect(on),
        None => world.opsgenie.faults().set_errors_after_effect(on),
    }
}

/// Accepted writes the fake has not applied yet.
pub(super) fn pending_requests(world: &World) -> usize {
    match &world.jsm {
        Some(jsm) => jsm.pending_requests(),
        None => world.opsgenie.pending_requests(),
    }
}

/// Every alert.
pub(super) fn alerts(world: &World) -> Vec<Seen> {
    match &world.jsm {
        Some(jsm) => jsm
            .alerts()
            .into_iter()
            .map(|a| Seen {
                open: a.status != crate::sim::jsm::AlertStatus::Closed,
                count: u64::from(a.count),
                notes: a.notes.into_iter().map(|n| n.note).collect(),
                alias: a.alias,
                id: a.id,
            })
            .collect(),
        None => world
            .opsgenie
            .alerts()
            .into_iter()
            .map(|a| Seen {
                open: a.status == crate::sim::opsgenie::AlertStatus::Open,
                count: a.count,
                notes: a.notes.into_iter().map(|n| n.text).collect(),
                alias: a.alias,
                id: a.id,
            })
            .collect(),
    }
}
