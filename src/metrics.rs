//! The daemon's metrics, kept in a `prometheus-client` registry and rendered in Prometheus' text
//! exposition format (version 0.0.4, which every Prometheus and agent reads).
//!
//! The families are the fields of [`Metrics`]; their names all start with `teleport_opsgenie_`
//! (the registry's prefix; counters get their `_total` suffix and the unit its `_seconds` from
//! the encoder). Values are atomics, because the gateway reports backend calls from futures
//! that may run anywhere; the daemon's own (single-threaded) state is copied into gauges just
//! before each scrape instead (fields documented as "set at scrape").

use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::actors::gateway::{BackendCallObserver, CallEvent};
use crate::core::model::{RequestState, Snapshot};
use crate::core::plan::Step;
use crate::core::plugin_data::Decision;
use crate::core::revoke::RevokeState;
use crate::pipeline::reconcile::{EffectError, Next, Reconciled};

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A gauge holding an `f64` (timestamps, 0/1 flags).
pub type F64Gauge = Gauge<f64, AtomicU64>;

/// Buckets for backend call latency, in seconds: 5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Labels `{version}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    /// The crate's version.
    pub version: &'static str,
}

/// Labels `{state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `pending`, `approved`, `denied`, `promoted`, `none` or `deleted`.
    pub state: &'static str,
}

/// Labels `{kind}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// What kind of note or failure.
    pub kind: &'static str,
}

/// Labels `{resolution}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResolutionLabel {
    /// How the request ended.
    pub resolution: &'static str,
}

/// Labels `{outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `approved` or `declined`.
    pub outcome: &'static str,
}

/// Labels `{endpoint,status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The operation (`create_alert`, ...).
    pub endpoint: &'static str,
    /// The HTTP status, or `error` when there was no answer.
    pub status: String,
}

/// Labels `{endpoint}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// The operation (`create_alert`, ...).
    pub endpoint: &'static str,
}

/// Labels `{domain}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabel {
    /// The rate-limit domain.
    pub domain: &'static str,
}

/// A histogram family whose series all use [`LATENCY_BUCKETS`].
pub type LatencyFamily = Family<EndpointLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

/// Every metric the daemon exports. Shared (`Arc`) between the request actors, the gateway's
/// observer and the HTTP listener. The handles are cheap clones of what the registry holds.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `teleport_opsgenie_build_info{version}`: always 1.
    pub build_info: Family<VersionLabel, Gauge>,
    /// `teleport_opsgenie_requests_observed_total{state}`: snapshots of access requests received
    /// (watch events and resync listings), by state (`pending`, `approved`, `denied`,
    /// `promoted`, `deleted`, ...).
    pub requests_observed: Family<StateLabel, Counter>,
    /// `teleport_opsgenie_alerts_created_total`.
    pub alerts_created: Counter,
    /// `teleport_opsgenie_notes_posted_total{kind}`: `review` or `decision` notes.
    pub notes_posted: Family<KindLabel, Counter>,
    /// `teleport_opsgenie_alerts_closed_total{resolution}`.
    pub alerts_closed: Family<ResolutionLabel, Counter>,
    /// `teleport_opsgenie_auto_approval_decisions_total{outcome}`: `approved` or `declined`.
    pub decisions: Family<OutcomeLabel, Counter>,
    /// `teleport_opsgenie_shift_revocations_total{outcome}`: revocations at shift end:
    /// `locked`, `refused` (Teleport refused the lock; retried), `postponed` (an override
    /// extended the shift), `not_needed` (the shift now covers the access).
    pub shift_revocations: Family<OutcomeLabel, Counter>,
    /// `teleport_opsgenie_step_failures_total{kind}`: `retryable`, `permanent` or `conflict`.
    pub step_failures: Family<KindLabel, Counter>,
    /// `teleport_opsgenie_backend_calls_total{endpoint,status}`: every attempt; status is the
    /// HTTP status or `error` when there was no answer.
    pub backend_calls: Family<CallLabels, Counter>,
    /// `teleport_opsgenie_backend_call_duration_seconds{endpoint}`.
    pub backend_latency: LatencyFamily,
    /// `teleport_opsgenie_backend_throttles_total{domain}`: 429 answers.
    pub backend_throttles: Family<DomainLabel, Counter>,
    /// `teleport_opsgenie_backend_retries_total{endpoint}`: attempts followed by another.
    pub backend_retries: Family<EndpointLabel, Counter>,
    /// `teleport_opsgenie_backend_up`: 1 when the last backend health check passed (set at
    /// scrape).
    pub backend_up: Gauge,
    /// `teleport_opsgenie_backend_last_healthy_timestamp_seconds` (set at scrape; 0 until the
    /// first passed check).
    pub backend_last_healthy: F64Gauge,
    /// `teleport_opsgenie_steps_in_flight` (set at scrape).
    pub steps_in_flight: Gauge,
    /// `teleport_opsgenie_watch_up`: 1 while the watch is established (set at scrape).
    pub watch_up: Gauge,
    /// `teleport_opsgenie_watch_ready`: 1 when up and resynced (set at scrape).
    pub watch_ready: Gauge,
    /// `teleport_opsgenie_watch_connects_total`: connects, the first included (set at scrape).
    pub watch_connects: Counter,
    /// `teleport_opsgenie_watch_reconnects_total`: connects after the first (set at scrape).
    pub watch_reconnects: Counter,
    /// `teleport_opsgenie_watch_resyncs_total` (set at scrape).
    pub watch_resyncs: Counter,
    /// `teleport_opsgenie_watch_events_total`: events forwarded (set at scrape).
    pub watch_events: Counter,
    /// `teleport_opsgenie_identity_expiry_timestamp_seconds`: when the Teleport certificate
    /// expires.
    pub identity_expiry: F64Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Mirrors a count kept elsewhere (e.g. the watch's connects) into a counter. Never lowers it:
/// a counter that went down would read as a restart to Prometheus.
pub fn set_total(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl Metrics {
    /// Every family registered, the fixed series at 0, `build_info` set.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("teleport_opsgenie"),
            build_info: Family::default(),
            requests_observed: Family::default(),
            alerts_created: Counter::default(),
            notes_posted: Family::default(),
            alerts_closed: Family::default(),
            decisions: Family::default(),
            shift_revocations: Family::default(),
            step_failures: Family::default(),
            backend_calls: Family::default(),
            backend_latency: Family::new_with_constructor(latency_histogram),
            backend_throttles: Family::default(),
            backend_retries: Family::default(),
            backend_up: Gauge::default(),
            backend_last_healthy: F64Gauge::default(),
            steps_in_flight: Gauge::default(),
            watch_up: Gauge::default(),
            watch_ready: Gauge::default(),
            watch_connects: Counter::default(),
            watch_reconnects: Counter::default(),
            watch_resyncs: Counter::default(),
            watch_events: Counter::default(),
            identity_expiry: F64Gauge::default(),
        };
        // The encoder appends a full stop to each help text.
        let r = &mut m.registry;
        r.register(
            "build_info",
            "Build information; always 1",
            m.build_info.clone(),
        );
        r.register(
            "requests_observed",
            "Access request snapshots received from Teleport, by state",
            m.requests_observed.clone(),
        );
        r.register("alerts_created", "Alerts created", m.alerts_created.clone());
        r.register(
            "notes_posted",
            "Notes posted on alerts, by kind (review or decision)",
            m.notes_posted.clone(),
        );
        r.register(
            "alerts_closed",
            "Alerts closed, by resolution",
            m.alerts_closed.clone(),
        );
        r.register(
            "auto_approval_decisions",
            "Auto-approval decisions, by outcome",
            m.decisions.clone(),
        );
        r.register(
            "shift_revocations",
            "Revocations of auto-approved access at the end of the requester's shift, by outcome",
            m.shift_revocations.clone(),
        );
        r.register(
            "step_failures",
            "Reconcile steps that failed, by kind (retryable, permanent, conflict)",
            m.step_failures.clone(),
        );
        r.register(
            "backend_calls",
            "HTTP calls to the on-call backend (every attempt), by endpoint and status",
            m.backend_calls.clone(),
        );
        r.register_with_unit(
            "backend_call_duration",
            "Duration of HTTP calls to the on-call backend, by endpoint",
            Unit::Seconds,
            m.backend_latency.clone(),
        );
        r.register(
            "backend_throttles",
            "429 answers from the on-call backend, by rate-limit domain",
            m.backend_throttles.clone(),
        );
        r.register(
            "backend_retries",
            "Backend call attempts that were followed by another attempt, by endpoint",
            m.backend_retries.clone(),
        );
        r.register(
            "backend_up",
            "1 when the last health check of the on-call backend passed",
            m.backend_up.clone(),
        );
        r.register_with_unit(
            "backend_last_healthy_timestamp",
            "Unix time of the last passed health check of the on-call backend (0: none yet)",
            Unit::Seconds,
            m.backend_last_healthy.clone(),
        );
        r.register(
            "steps_in_flight",
            "Reconcile steps running now",
            m.steps_in_flight.clone(),
        );
        r.register(
            "watch_up",
            "1 while the watch of access requests is established",
            m.watch_up.clone(),
        );
        r.register(
            "watch_ready",
            "1 when the watch is established and its resync was handed over",
            m.watch_ready.clone(),
        );
        r.register(
            "watch_connects",
            "Successful connects of the watch, the first included",
            m.watch_connects.clone(),
        );
        r.register(
            "watch_reconnects",
            "Successful connects of the watch after the first",
            m.watch_reconnects.clone(),
        );
        r.register(
            "watch_resyncs",
            "Completed resyncs (full listings) of access requests",
            m.watch_resyncs.clone(),
        );
        r.register(
            "watch_events",
            "Watch events forwarded to request actors",
            m.watch_events.clone(),
        );
        r.register_with_unit(
            "identity_expiry_timestamp",
            "Unix time at which the Teleport identity's certificate expires",
            Unit::Seconds,
            m.identity_expiry.clone(),
        );
        m.build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        // Series that exist from the start, so that rates and alerts work before anything
        // happened.
        for kind in ["review", "decision", "revoked", "lock_refused"] {
            drop(m.notes_posted.get_or_create(&KindLabel { kind }));
        }
        for outcome in ["approved", "declined"] {
            drop(m.decisions.get_or_create(&OutcomeLabel { outcome }));
        }
        for outcome in ["locked", "refused", "postponed", "not_needed"] {
            drop(m.shift_revocations.get_or_create(&OutcomeLabel { outcome }));
        }
        for kind in ["retryable", "permanent", "conflict"] {
            drop(m.step_failures.get_or_create(&KindLabel { kind }));
        }
        m
    }

    /// The whole exposition, in Prometheus' text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would leave a partial text, which
        // a scraper rejects as a whole, so nothing half-true is served.
        if let Err(err) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %err, "Could not encode the metrics.");
        }
        out
    }

    /// Counts a snapshot received for a request.
    pub fn observed(&self, snapshot: &Snapshot) {
        let state = match snapshot {
            Snapshot::Gone { .. } => "deleted",
            Snapshot::Present(request) => state_label(request.state),
        };
        self.requests_observed
            .get_or_create(&StateLabel { state })
            .inc();
    }

    /// Counts what a reconcile step did: the one place reconcile outcomes are counted.
    pub fn step_done(&self, result: &Result<Reconciled, EffectError>) {
        let failure = |kind| {
            self.step_failures.get_or_create(&KindLabel { kind }).inc();
        };
        let done = match result {
            Ok(done) => done,
            Err(EffectError::Conflict) => return failure("conflict"),
            Err(EffectError::LockRefused { .. }) => {
                self.revoked("refused");
                return failure("retryable");
            }
            Err(err) if err.is_retryable() => return failure("retryable"),
            Err(_) => return failure("permanent"),
        };
        // A step another replica holds was planned but not performed.
        if done.next != Next::Continue {
            return;
        }
        // A run under one claim may have done several steps.
        // A decision made before the alert existed is noted by its own step, later in the run
        // or in a later one: its note is counted there.
        let noted_later =
            done.performed.contains(&Step::NoteDecision) || !done.data.decision_note.is_empty();
        for step in &done.performed {
            self.count_step(step, &done.data, noted_later);
        }
    }

    fn count_step(
        &self,
        step: &Step,
        data: &crate::core::plugin_data::PluginData,
        noted_later: bool,
    ) {
        let note = |kind| {
            self.notes_posted.get_or_create(&KindLabel { kind }).inc();
        };
        match step {
            Step::CreateAlert => {
                self.alerts_created.inc();
            }
            Step::Decide => {
                let outcome = match data.decision {
                    Some(Decision::Approved) => "approved",
                    _ => "declined",
                };
                self.decisions
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc();
                if !noted_later {
                    note("decision");
                }
            }
            Step::NoteDecision => note("decision"),
            Step::NoteReview { .. } => note("review"),
            Step::Close { resolution, .. } => {
                self.alerts_closed
                    .get_or_create(&ResolutionLabel {
                        resolution: resolution.as_str(),
                    })
                    .inc();
            }
            Step::Revoke { .. } => match data.revocation.as_ref().map(|r| r.state) {
                Some(RevokeState::Locked) => self.revoked("locked"),
                Some(RevokeState::NotNeeded) => self.revoked("not_needed"),
                Some(RevokeState::Planned) => self.revoked("postponed"),
                _ => {}
            },
            Step::NoteRevoked => note("revoked"),
            Step::NoteLockRefused => note("lock_refused"),
            Step::ResolveAlertId | Step::Wait | Step::Finished => {}
        }
    }

    fn revoked(&self, outcome: &'static str) {
        self.shift_revocations
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Sets the identity expiry gauge.
    pub fn set_identity_expiry(&self, not_after: SystemTime) {
        self.identity_expiry.set(unix_seconds(not_after));
    }
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn state_label(state: RequestState) -> &'static str {
    match state {
        RequestState::Pending => "pending",
        RequestState::Approved => "approved",
        RequestState::Denied => "denied",
        RequestState::Promoted => "promoted",
        RequestState::None => "none",
    }
}

impl BackendCallObserver for Metrics {
    fn on_call(&self, event: &CallEvent) {
        let status = event
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "error".into());
        let endpoint = event.endpoint;
        self.backend_calls
            .get_or_create(&CallLabels { endpoint, status })
            .inc();
        self.backend_latency
            .get_or_create(&EndpointLabel { endpoint })
            .observe(event.duration.as_secs_f64());
        if event.throttled {
            self.backend_throttles
                .get_or_create(&DomainLabel {
                    domain: event.domain.as_str(),
                })
                .inc();
        }
        if event.retry_in.is_some() {
            self.backend_retries
                .get_or_create(&EndpointLabel { endpoint })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests;
