//! What the gateway reports about every attempt, for metrics.

use std::time::Duration;

use crate::backend::Domain;

/// One attempt of one call, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    /// The operation's label (`create_alert`, ...).
    pub endpoint: &'static str,
    /// The rate-limit domain.
    pub domain: Domain,
    /// The HTTP status; `None` when there was no answer (timeout, connection failure).
    pub status: Option<u16>,
    /// Time from sending to the end of the answer.
    pub duration: Duration,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Whether the answer was a 429.
    pub throttled: bool,
    /// The delay before the next attempt, if one follows.
    pub retry_in: Option<Duration>,
}

/// Receives a [`CallEvent`] for every attempt (e.g. to feed Prometheus counters).
pub trait BackendCallObserver: Send + Sync {
    /// Called once per attempt, after its answer or failure.
    fn on_call(&self, event: &CallEvent);
}
