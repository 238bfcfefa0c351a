//! A small in-house metrics registry, rendered in Prometheus' text exposition format.
//!
//! Three kinds of family, each with fixed label names: counters, gauges and histograms with
//! fixed buckets, all on one labelled `Family`. Values live behind a `Mutex`, because the gateway reports backend calls from
//! futures that may run anywhere; the daemon's own (single-threaded) state is copied into gauges
//! just before each scrape instead ([`Metrics`] fields documented as "set at scrape").
//!
//! The families the daemon exports are the fields of [`Metrics`]; their names all start with
//! `teleport_opsgenie_`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::actors::gateway::{BackendCallObserver, CallEvent};
use crate::core::model::{RequestState, Snapshot};
use crate::core::plan::Step;
use crate::core::plugin_data::Decision;
use crate::pipeline::reconcile::{EffectError, Next, Reconciled};

/// Label values of one series, in the order of the family's label names.
type Key = Vec<String>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain numbers behind, which are still fine to read.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Escapes a label value for the text format.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes HELP text for the text format.
fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `{a="x",b="y"}`, or nothing without labels; `extra` is appended (for `le`).
fn label_set(names: &[&str], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape_label(v)))
        .collect();
    if let Some((n, v)) = extra {
        pairs.push(format!("{n}=\"{}\"", escape_label(v)));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// A number as the text format writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn key(labels: &[&str]) -> Key {
    labels.iter().map(|s| (*s).to_owned()).collect()
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Series keyed by label set, with the family's name, help and label names: what every kind
/// has in common. `V` is one series' value (a number, or a histogram's buckets).
#[derive(Debug)]
struct Family<V> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Key, V>>,
}

impl<V> Family<V> {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Applies `f` to the series with these label values, created by `init`; ignores label sets
    /// of the wrong length rather than inventing series.
    fn update_with(&self, labels: &[&str], init: impl FnOnce() -> V, f: impl FnOnce(&mut V)) {
        if labels.len() == self.labels.len() {
            f(lock(&self.values).entry(key(labels)).or_insert_with(init));
        }
    }

    /// Reads the series with these label values, if it exists.
    fn read<T>(&self, labels: &[&str], f: impl FnOnce(&V) -> T) -> Option<T> {
        lock(&self.values).get(&key(labels)).map(f)
    }

    /// Writes the header, then each series with `series`.
    fn render_with(
        &self,
        out: &mut String,
        kind: &str,
        mut series: impl FnMut(&mut String, &Key, &V),
    ) {
        header(out, self.name, self.help, kind);
        for (k, v) in lock(&self.values).iter() {
            series(out, k, v);
        }
    }
}

impl Family<f64> {
    /// Applies `f` to the series with these label values, created at 0.
    fn update(&self, labels: &[&str], f: impl FnOnce(&mut f64)) {
        self.update_with(labels, || 0.0, f);
    }

    fn get(&self, labels: &[&str]) -> Option<f64> {
        self.read(labels, |v| *v)
    }

    fn render(&self, out: &mut String, kind: &str) {
        self.render_with(out, kind, |out, k, v| {
            let _ = writeln!(
                out,
                "{}{} {}",
                self.name,
                label_set(self.labels, k, None),
                number(*v)
            );
        });
    }
}

/// A monotonically increasing count per label set.
#[derive(Debug)]
pub struct Counter(Family<f64>);

impl Counter {
    /// A counter family with these label names.
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self(Family::new(name, help, labels))
    }

    /// Adds one to the series with these label values (in label-name order).
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1.0);
    }

    /// Adds `n` (negative values are ignored: counters never go down).
    pub fn add(&self, labels: &[&str], n: f64) {
        if n >= 0.0 {
            self.0.update(labels, |v| *v += n);
        }
    }

    /// Mirrors a count kept elsewhere (e.g. the watch's connects). Never lowers the value.
    pub fn set_total(&self, labels: &[&str], total: f64) {
        self.0.update(labels, |v| *v = v.max(total));
    }

    /// The current value of one series (0 when never touched).
    pub fn get(&self, labels: &[&str]) -> f64 {
        self.0.get(labels).unwrap_or(0.0)
    }

    /// Makes a series appear at 0 before anything happened, so rates work from the start.
    pub fn touch(&self, labels: &[&str]) {
        self.add(labels, 0.0);
    }

    fn render(&self, out: &mut String) {
        self.0.render(out, "counter");
    }
}

/// A value that goes up and down, per label set.
#[derive(Debug)]
pub struct Gauge(Family<f64>);

impl Gauge {
    /// A gauge family with these label names.
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self(Family::new(name, help, labels))
    }

    /// Sets the series with these label values.
    pub fn set(&self, labels: &[&str], v: f64) {
        self.0.update(labels, |value| *value = v);
    }

    /// The current value of one series (`None` when never set).
    pub fn get(&self, labels: &[&str]) -> Option<f64> {
        self.0.get(labels)
    }

    fn render(&self, out: &mut String) {
        self.0.render(out, "gauge");
    }
}

#[derive(Debug, Clone)]
struct HistogramSeries {
    /// Observations per bucket (not cumulative; summed when rendering).
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

/// Observations counted in fixed buckets, per label set.
#[derive(Debug)]
pub struct Histogram {
    family: Family<HistogramSeries>,
    bounds: &'static [f64],
}

impl Histogram {
    /// A histogram family with these label names and upper bucket bounds (ascending; `+Inf` is
    /// implied).
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        Self {
            family: Family::new(name, help, labels),
            bounds,
        }
    }

    /// Records one observation.
    pub fn observe(&self, labels: &[&str], v: f64) {
        if v.is_nan() {
            return;
        }
        let empty = || HistogramSeries {
            buckets: vec![0; self.bounds.len()],
            count: 0,
            sum: 0.0,
        };
        self.family.update_with(labels, empty, |series| {
            if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
                series.buckets[i] += 1;
            }
            series.count += 1;
            series.sum += v;
        });
    }

    /// Observations of one series so far.
    pub fn count(&self, labels: &[&str]) -> u64 {
        self.family.read(labels, |s| s.count).unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let (name, names) = (self.family.name, self.family.labels);
        self.family.render_with(out, "histogram", |out, k, s| {
            let mut cumulative = 0;
            for (bound, n) in self.bounds.iter().zip(&s.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {cumulative}",
                    label_set(names, k, Some(("le", &number(*bound))))
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                label_set(names, k, Some(("le", "+Inf"))),
                s.count
            );
            let labels = label_set(names, k, None);
            let _ = writeln!(out, "{name}_sum{labels} {}", number(s.sum));
            let _ = writeln!(out, "{name}_count{labels} {}", s.count);
        });
    }
}

/// Buckets for backend call latency, in seconds: 5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric the daemon exports. Shared (`Arc`) between the request actors, the gateway's
/// observer and the HTTP listener.
#[derive(Debug)]
pub struct Metrics {
    /// `teleport_opsgenie_build_info{version}`: always 1.
    pub build_info: Gauge,
    /// `teleport_opsgenie_requests_observed_total{state}`: snapshots of access requests received
    /// (watch events and resync listings), by state (`pending`, `approved`, `denied`,
    /// `promoted`, `deleted`, ...).
    pub requests_observed: Counter,
    /// `teleport_opsgenie_alerts_created_total`.
    pub alerts_created: Counter,
    /// `teleport_opsgenie_notes_posted_total{kind}`: `review` or `decision` notes.
    pub notes_posted: Counter,
    /// `teleport_opsgenie_alerts_closed_total{resolution}`.
    pub alerts_closed: Counter,
    /// `teleport_opsgenie_auto_approval_decisions_total{outcome}`: `approved` or `declined`.
    pub decisions: Counter,
    /// `teleport_opsgenie_step_failures_total{kind}`: `retryable`, `permanent` or `conflict`.
    pub step_failures: Counter,
    /// `teleport_opsgenie_backend_calls_total{endpoint,status}`: every attempt; status is the
    /// HTTP status or `error` when there was no answer.
    pub backend_calls: Counter,
    /// `teleport_opsgenie_backend_call_duration_seconds{endpoint}`.
    pub backend_latency: Histogram,
    /// `teleport_opsgenie_backend_throttles_total{domain}`: 429 answers.
    pub backend_throttles: Counter,
    /// `teleport_opsgenie_backend_retries_total{endpoint}`: attempts followed by another.
    pub backend_retries: Counter,
    /// `teleport_opsgenie_backend_up`: 1 when the last backend health check passed (set at
    /// scrape).
    pub backend_up: Gauge,
    /// `teleport_opsgenie_backend_last_healthy_timestamp_seconds` (set at scrape).
    pub backend_last_healthy: Gauge,
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
    pub identity_expiry: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, empty, with `build_info` set.
    pub fn new() -> Self {
        let m = Self {
            build_info: Gauge::new(
                "teleport_opsgenie_build_info",
                "Build information; always 1.",
                &["version"],
            ),
            requests_observed: Counter::new(
                "teleport_opsgenie_requests_observed_total",
                "Access request snapshots received from Teleport, by state.",
                &["state"],
            ),
            alerts_created: Counter::new(
                "teleport_opsgenie_alerts_created_total",
                "Alerts created.",
                &[],
            ),
            notes_posted: Counter::new(
                "teleport_opsgenie_notes_posted_total",
                "Notes posted on alerts, by kind (review or decision).",
                &["kind"],
            ),
            alerts_closed: Counter::new(
                "teleport_opsgenie_alerts_closed_total",
                "Alerts closed, by resolution.",
                &["resolution"],
            ),
            decisions: Counter::new(
                "teleport_opsgenie_auto_approval_decisions_total",
                "Auto-approval decisions, by outcome.",
                &["outcome"],
            ),
            step_failures: Counter::new(
                "teleport_opsgenie_step_failures_total",
                "Reconcile steps that failed, by kind (retryable, permanent, conflict).",
                &["kind"],
            ),
            backend_calls: Counter::new(
                "teleport_opsgenie_backend_calls_total",
                "HTTP calls to the on-call backend (every attempt), by endpoint and status.",
                &["endpoint", "status"],
            ),
            backend_latency: Histogram::new(
                "teleport_opsgenie_backend_call_duration_seconds",
                "Duration of HTTP calls to the on-call backend, by endpoint.",
                &["endpoint"],
                LATENCY_BUCKETS,
            ),
            backend_throttles: Counter::new(
                "teleport_opsgenie_backend_throttles_total",
                "429 answers from the on-call backend, by rate-limit domain.",
                &["domain"],
            ),
            backend_retries: Counter::new(
                "teleport_opsgenie_backend_retries_total",
                "Backend call attempts that were followed by another attempt, by endpoint.",
                &["endpoint"],
            ),
            backend_up: Gauge::new(
                "teleport_opsgenie_backend_up",
                "1 when the last health check of the on-call backend passed.",
                &[],
            ),
            backend_last_healthy: Gauge::new(
                "teleport_opsgenie_backend_last_healthy_timestamp_seconds",
                "Unix time of the last passed health check of the on-call backend.",
                &[],
            ),
            steps_in_flight: Gauge::new(
                "teleport_opsgenie_steps_in_flight",
                "Reconcile steps running now.",
                &[],
            ),
            watch_up: Gauge::new(
                "teleport_opsgenie_watch_up",
                "1 while the watch of access requests is established.",
                &[],
            ),
            watch_ready: Gauge::new(
                "teleport_opsgenie_watch_ready",
                "1 when the watch is established and its resync was handed over.",
                &[],
            ),
            watch_connects: Counter::new(
                "teleport_opsgenie_watch_connects_total",
                "Successful connects of the watch, the first included.",
                &[],
            ),
            watch_reconnects: Counter::new(
                "teleport_opsgenie_watch_reconnects_total",
                "Successful connects of the watch after the first.",
                &[],
            ),
            watch_resyncs: Counter::new(
                "teleport_opsgenie_watch_resyncs_total",
                "Completed resyncs (full listings) of access requests.",
                &[],
            ),
            watch_events: Counter::new(
                "teleport_opsgenie_watch_events_total",
                "Watch events forwarded to request actors.",
                &[],
            ),
            identity_expiry: Gauge::new(
                "teleport_opsgenie_identity_expiry_timestamp_seconds",
                "Unix time at which the Teleport identity's certificate expires.",
                &[],
            ),
        };
        m.build_info.set(&[env!("CARGO_PKG_VERSION")], 1.0);
        m.alerts_created.touch(&[]);
        for kind in ["review", "decision"] {
            m.notes_posted.touch(&[kind]);
        }
        for outcome in ["approved", "declined"] {
            m.decisions.touch(&[outcome]);
        }
        for kind in ["retryable", "permanent", "conflict"] {
            m.step_failures.touch(&[kind]);
        }
        m
    }

    /// The whole exposition, in Prometheus' text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.build_info.render(&mut out);
        self.requests_observed.render(&mut out);
        self.alerts_created.render(&mut out);
        self.notes_posted.render(&mut out);
        self.alerts_closed.render(&mut out);
        self.decisions.render(&mut out);
        self.step_failures.render(&mut out);
        self.backend_calls.render(&mut out);
        self.backend_latency.render(&mut out);
        self.backend_throttles.render(&mut out);
        self.backend_retries.render(&mut out);
        self.backend_up.render(&mut out);
        self.backend_last_healthy.render(&mut out);
        self.steps_in_flight.render(&mut out);
        self.watch_up.render(&mut out);
        self.watch_ready.render(&mut out);
        self.watch_connects.render(&mut out);
        self.watch_reconnects.render(&mut out);
        self.watch_resyncs.render(&mut out);
        self.watch_events.render(&mut out);
        self.identity_expiry.render(&mut out);
        out
    }

    /// Counts a snapshot received for a request.
    pub fn observed(&self, snapshot: &Snapshot) {
        let state = match snapshot {
            Snapshot::Gone { .. } => "deleted",
            Snapshot::Present(request) => state_label(request.state),
        };
        self.requests_observed.inc(&[state]);
    }

    /// Counts what a reconcile step did: the one place reconcile outcomes are counted.
    pub fn step_done(&self, result: &Result<Reconciled, EffectError>) {
        let done = match result {
            Ok(done) => done,
            Err(EffectError::Conflict) => return self.step_failures.inc(&["conflict"]),
            Err(err) if err.is_retryable() => return self.step_failures.inc(&["retryable"]),
            Err(_) => return self.step_failures.inc(&["permanent"]),
        };
        // A step another replica holds was planned but not performed.
        if done.next != Next::Continue {
            return;
        }
        match &done.step {
            Step::CreateAlert => self.alerts_created.inc(&[]),
            Step::Decide => {
                let outcome = match done.data.decision {
                    Some(Decision::Approved) => "approved",
                    _ => "declined",
                };
                self.decisions.inc(&[outcome]);
                self.notes_posted.inc(&["decision"]);
            }
            Step::NoteReview { .. } => self.notes_posted.inc(&["review"]),
            Step::Close { resolution, .. } => self.alerts_closed.inc(&[resolution.as_str()]),
            Step::ResolveAlertId | Step::Wait | Step::Finished => {}
        }
    }

    /// Sets the identity expiry gauge.
    pub fn set_identity_expiry(&self, not_after: SystemTime) {
        self.identity_expiry.set(&[], unix_seconds(not_after));
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
        self.backend_calls.inc(&[event.endpoint, &status]);
        self.backend_latency
            .observe(&[event.endpoint], event.duration.as_secs_f64());
        if event.throttled {
            self.backend_throttles.inc(&[event.domain.as_str()]);
        }
        if event.retry_in.is_some() {
            self.backend_retries.inc(&[event.endpoint]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Domain;
    use std::time::Duration;

    #[test]
    fn renders_help_type_and_escaped_labels() {
        let c = Counter::new("x_total", "Things.\nMore", &["a"]);
        c.inc(&["q\"uo\\te\n"]);
        c.add(&["q\"uo\\te\n"], 2.0);
        c.add(&["b"], -5.0);
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(
            out,
            "# HELP x_total Things.\\nMore\n# TYPE x_total counter\nx_total{a=\"q\\\"uo\\\\te\\n\"} 3\n"
        );
        // Wrong label arity is ignored rather than panicking.
        c.inc(&[]);
        assert_eq!(c.get(&["b"]), 0.0);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new("d_seconds", "D.", &["e"], &[0.1, 1.0]);
        h.observe(&["x"], 0.05);
        h.observe(&["x"], 0.5);
        h.observe(&["x"], 5.0);
        // Wrong label arity and NaN are ignored.
        h.observe(&[], 1.0);
        h.observe(&["x"], f64::NAN);
        assert_eq!(h.count(&["x"]), 3);
        let mut out = String::new();
        h.render(&mut out);
        assert!(
            out.contains("d_seconds_bucket{e=\"x\",le=\"0.1\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("d_seconds_bucket{e=\"x\",le=\"1\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("d_seconds_bucket{e=\"x\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("d_seconds_sum{e=\"x\"} 5.55\n"), "{out}");
        assert!(out.contains("d_seconds_count{e=\"x\"} 3\n"), "{out}");
    }

    #[test]
    fn backend_calls_feed_counters_and_latency() {
        let m = Metrics::new();
        m.on_call(&CallEvent {
            endpoint: "create_alert",
            domain: Domain::Alert,
            status: Some(429),
            duration: Duration::from_millis(30),
            attempt: 1,
            throttled: true,
            retry_in: Some(Duration::from_secs(1)),
        });
        m.on_call(&CallEvent {
            endpoint: "create_alert",
            domain: Domain::Alert,
            status: None,
            duration: Duration::from_millis(3),
            attempt: 2,
            throttled: false,
            retry_in: None,
        });
        assert_eq!(m.backend_calls.get(&["create_alert", "429"]), 1.0);
        assert_eq!(m.backend_calls.get(&["create_alert", "error"]), 1.0);
        assert_eq!(m.backend_throttles.get(&[Domain::Alert.as_str()]), 1.0);
        assert_eq!(m.backend_retries.get(&["create_alert"]), 1.0);
        assert_eq!(m.backend_latency.count(&["create_alert"]), 2);
        let text = m.render();
        assert!(text.contains("teleport_opsgenie_build_info{version=\""));
        assert!(text.contains("# TYPE teleport_opsgenie_backend_call_duration_seconds histogram"));
    }

    #[test]
    fn mirrored_counters_never_go_down() {
        let c = Counter::new("m_total", "M.", &[]);
        c.set_total(&[], 5.0);
        c.set_total(&[], 3.0);
        assert_eq!(c.get(&[]), 5.0);
    }
}
