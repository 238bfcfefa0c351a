//! What every request actor shares (the effects, the settings, a bound on steps in flight, the
//! drain switch used at shutdown), and the message a request actor sends its registry when it
//! stops. Kept apart from both so that the actor and the registry do not import each other.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{Notify, Semaphore};

use crate::metrics::Metrics;
use crate::pipeline::reconcile::Settings;

/// Sent by a request actor that stops: nothing to do until its request changes again.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Finished {
    /// The request id.
    pub id: String,
}

/// What all request actors share.
pub struct Shared<E> {
    /// The outside world.
    pub effects: E,
    /// How requests are reconciled.
    pub settings: Settings,
    /// Bounds the steps in flight, so a resync of 100,000 requests does not open 100,000 calls.
    pub permits: Semaphore,
    /// First retry delay.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Where reconcile outcomes and observed snapshots are counted.
    pub metrics: Arc<Metrics>,
    draining: Cell<bool>,
    in_flight: Cell<usize>,
    idle: Notify,
    permanent_failures: Cell<u64>,
}

impl<E> Shared<E> {
    /// Shared state for request actors.
    pub fn new(
        effects: E,
        settings: Settings,
        max_in_flight: usize,
        retry_min: Duration,
        retry_max: Duration,
    ) -> Self {
        Self {
            effects,
            settings,
            permits: Semaphore::new(max_in_flight.max(1)),
            retry_min,
            retry_max,
            metrics: Arc::new(Metrics::new()),
            draining: Cell::new(false),
            in_flight: Cell::new(0),
            idle: Notify::new(),
            permanent_failures: Cell::new(0),
        }
    }

    /// Counts into `metrics` (the daemon's registry) instead of a private one.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Whether shutdown has begun: no new step starts.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Stops new steps from starting; steps in flight finish.
    pub fn drain(&self) {
        self.draining.set(true);
    }

    /// Steps in flight now.
    pub fn steps_in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Resolves when no step is in flight.
    pub async fn wait_idle(&self) {
        while self.in_flight.get() > 0 {
            self.idle.notified().await;
        }
    }

    /// Marks a step in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight<'_, E> {
        self.in_flight.set(self.in_flight.get() + 1);
        InFlight(self)
    }

    /// Counts a step that failed for good.
    pub fn count_permanent_failure(&self) {
        self.permanent_failures
            .set(self.permanent_failures.get() + 1);
    }

    /// Steps that failed for good since start.
    pub fn permanent_failures(&self) -> u64 {
        self.permanent_failures.get()
    }
}

/// A step in flight; see [`Shared::in_flight`].
pub struct InFlight<'a, E>(&'a Shared<E>);

impl<E> Drop for InFlight<'_, E> {
    fn drop(&mut self) {
        let n = self.0.in_flight.get().saturating_sub(1);
        self.0.in_flight.set(n);
        if n == 0 {
            self.0.idle.notify_waiters();
        }
    }
}
