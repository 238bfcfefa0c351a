//! A fake Opsgenie (and JSM Operations Integration Events) HTTP server for tests, the sandbox
//! example, the load test and chaos tests.
//!
//! It models what clients meet in production (opsgenie-api.md §11):
//!
//! - GenieKey auth: 401 for a missing or unknown key, 422 `Key format is not valid!` for a key
//!   that is not UUID-shaped, 403/40301 for a "config-only" key on alert writes.
//! - Create, notes, close and acknowledge answer 202 with a `requestId`; the work is queued and
//!   applied **after the processing delay** (in order of receipt). Until then the alert does not
//!   exist and `GET /v2/alerts/requests/{id}` answers 404 with
//!   `X-Opsgenie-Errortype: RequestNotProcessed`. A background task applies due work and every
//!   accessor also applies it lazily, so state always matches the clock.
//! - Alias de-duplication, request status outcomes (`isSuccess:false`, "Alert does not exist"),
//!   get/list/count alerts with a small query language, an alert's notes
//!   (`GET /v2/alerts/{id}/notes`), on-call schedules and their final timelines
//!   (`GET /v2/schedules/{id}/timeline`, settable with [`FakeOpsgenie::set_timeline`]), heartbeat
//!   pings.
//! - Shapes and refusals of the official definitions (`opsgenie/opsgenie-oas`): responders
//!   named by id or name are resolved against the fake's teams and schedules and answered as
//!   `{type, id}`; a body sent as anything but `application/json` gets 415; enum query values
//!   (`identifierType`, `sort`, `order`, `direction`, `flat`, …) and integer ranges (`limit`,
//!   `offset`) outside the definitions get 422 naming the parameter; lists carry `paging`.
//! - Per-domain per-second/per-minute buckets answering 429 with Opsgenie's headers.
//! - Fault knobs ([`Faults`]): 5xx at a seeded random rate (before or after the call took
//!   effect), a burst of 429s, added latency; writes that fail after acceptance
//!   ([`Faults::fail_next`], [`Faults::set_write_failure_rate`]); 2xx answers nobody can read,
//!   with or without the write taking effect ([`Faults::garble_next`],
//!   [`Faults::set_garble_rate`]); and whether closing a closed alert is a failure
//!   ([`FakeOpsgenie::set_close_of_closed_fails`]). Every call is recorded ([`Call`]) with its
//!   exact request and answer bodies and the fault injected into it.
//!
//! All routes exist both at the root (`/v2/...`, Opsgenie) and under `/jsm/ops/integration`
//! (the JSM Integration Events API, same shapes).
//!
//! Time: delays, latency and rate limits use tokio's clock, so tests can run under a paused
//! clock; recorded wall-clock times use [`std::time::SystemTime`].

mod auth;
mod ctx;
mod directory;
mod dispatch;
mod faults;
mod heartbeats;
mod inner;
mod limits;
mod model;
mod notes;
mod params;
mod query;
mod reads;
mod reply;
mod route;
mod search;
mod server;
mod state;
mod timeline;
mod timeline_data;
mod validate;
mod write_faults;
mod writes;

#[cfg(test)]
mod tests;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use directory::ResolvedResponder;
pub use faults::Faults;
pub use heartbeats::DEFAULT_HEARTBEAT;
pub use limits::FakeRateLimits;
pub use model::{Alert, AlertStatus, Call, Note};
pub use server::FakeOpsgenie;
pub use timeline_data::{TimelinePeriod, TimelineRecipient};
pub use validate::Responder;
pub use write_faults::{Garble, Write, INJECTED_FAILURE_STATUS};

/// Prefix of the JSM Operations Integration Events API mirror.
pub const JSM_PREFIX: &str = "/jsm/ops/integration";

/// The default valid API key of [`FakeOpsgenieOptions::default`].
pub const DEFAULT_API_KEY: &str = "11111111-2222-3333-4444-555555555555";

/// Largest body the fake reads; bigger bodies get 413.
const MAX_BODY: usize = 1 << 20;

/// How to start a [`FakeOpsgenie`].
#[derive(Clone)]
pub struct FakeOpsgenieOptions {
    /// Keys of API integrations: may do everything.
    pub api_keys: Vec<String>,
    /// Valid keys that are not from an API integration: alert writes get 403/40301.
    pub config_only_keys: Vec<String>,
    /// Time between a 202 and the request being applied (and its status answering 200).
    pub processing_delay: Duration,
    /// Rate limits per domain.
    pub rate_limits: FakeRateLimits,
    /// Seed of the fault RNG (error rate, latency ranges).
    pub seed: u64,
}

impl Default for FakeOpsgenieOptions {
    fn default() -> Self {
        FakeOpsgenieOptions {
            api_keys: vec![DEFAULT_API_KEY.to_owned()],
            config_only_keys: Vec::new(),
            processing_delay: Duration::ZERO,
            rate_limits: FakeRateLimits::default(),
            seed: 1,
        }
    }
}

// Keys are secrets: never print them.
impl std::fmt::Debug for FakeOpsgenieOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOpsgenieOptions")
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field(
                "config_only_keys",
                &format_args!("[{} redacted]", self.config_only_keys.len()),
            )
            .field("processing_delay", &self.processing_delay)
            .field("rate_limits", &self.rate_limits)
            .field("seed", &self.seed)
            .finish()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another test thread must not cascade into every later call.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
