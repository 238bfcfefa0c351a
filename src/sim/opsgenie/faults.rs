//! Fault injection: 5xx at a seeded random rate, bursts of 429, added latency, and the write
//! faults of [`super::write_faults`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::lock;
use super::write_faults::{Garble, Taken, Write, WriteFault, WriteFaults};

/// Fault knobs, changeable while the server runs.
#[derive(Debug)]
pub struct Faults {
    /// f64 bits of the 5xx probability.
    error_rate: AtomicU64,
    /// Injected 5xx happen after the call took effect (the answer is "lost").
    pub(super) errors_after_effect: AtomicBool,
    throttle_next: AtomicUsize,
    latency: Mutex<Option<(Duration, Duration)>>,
    /// Every alert write is answered with this status, and changes nothing.
    refused_alert_writes: Mutex<Option<StatusCode>>,
    answer_delay: Mutex<Option<Duration>>,
    writes: Mutex<WriteFaults>,
    rng: Mutex<StdRng>,
}

impl Faults {
    pub(super) fn new(seed: u64) -> Self {
        Faults {
            error_rate: AtomicU64::new(0f64.to_bits()),
            errors_after_effect: AtomicBool::new(false),
            throttle_next: AtomicUsize::new(0),
            latency: Mutex::new(None),
            refused_alert_writes: Mutex::new(None),
            answer_delay: Mutex::new(None),
            writes: Mutex::new(WriteFaults::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// Answer this fraction (0.0..=1.0) of authenticated calls with a 5xx (500, 502, 503 or
    /// 504, chosen by the seeded RNG) instead of handling them.
    pub fn set_error_rate(&self, rate: f64) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.error_rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// `false` (default): an injected 5xx replaces the call, nothing happens. `true`: the call
    /// takes effect (e.g. the alert is created) and only the answer is replaced by the 5xx,
    /// like a response lost on the way back; this exercises client idempotency.
    pub fn set_errors_after_effect(&self, after: bool) {
        self.errors_after_effect.store(after, Ordering::Relaxed);
    }

    /// The current 5xx probability.
    pub fn error_rate(&self) -> f64 {
        f64::from_bits(self.error_rate.load(Ordering::Relaxed))
    }

    /// Answer the next `n` authenticated calls with 429 (per-second bucket), whatever the
    /// buckets say.
    pub fn throttle_next(&self, n: usize) {
        self.throttle_next.store(n, Ordering::Relaxed);
    }

    /// Delay every answer by a uniformly random time in `min..=max` (tokio clock).
    pub fn set_latency(&self, min: Duration, max: Duration) {
        *lock(&self.latency) = Some((min.min(max), max.max(min)));
    }

    /// Delay every answer by exactly `d`.
    pub fn set_fixed_latency(&self, d: Duration) {
        self.set_latency(d, d);
    }

    /// No added latency.
    pub fn clear_latency(&self) {
        *lock(&self.latency) = None;
        *lock(&self.answer_delay) = None;
    }

    /// Every call takes effect (and is recorded) at once but is answered only after `d`, as a
    /// slow network or proxy does: a client whose timeout is shorter never learns that its
    /// write went through. `None` answers at once again.
    pub fn set_answer_delay(&self, d: Option<Duration>) {
        *lock(&self.answer_delay) = d;
    }

    pub(super) fn answer_delay(&self) -> Option<Duration> {
        *lock(&self.answer_delay)
    }

    /// Answer every alert write (create, note, close, acknowledge) with `status` (429 as the
    /// throttled answer, with its headers), changing nothing, as during an outage or while the
    /// account is throttled; reads are answered as usual. `None` accepts writes again.
    pub fn refuse_alert_writes(&self, status: Option<StatusCode>) {
        *lock(&self.refused_alert_writes) = status;
    }

    pub(super) fn refused_alert_writes(&self) -> Option<StatusCode> {
        *lock(&self.refused_alert_writes)
    }

    /// Turns every fault off.
    pub fn clear(&self) {
        self.refuse_alert_writes(None);
        self.set_error_rate(0.0);
        self.set_errors_after_effect(false);
        self.throttle_next(0);
        self.clear_latency();
        lock(&self.writes).clear();
    }

    /// The next `n` accepted writes (of kind `only`, or any alert write when `None`) answer
    /// 202 as usual, but fail when processed: their request status is `isSuccess:false` with
    /// `status` as its text, and nothing changes. Writes refused outright (4xx, 429) do not
    /// count.
    pub fn fail_next(&self, only: Option<Write>, n: usize, status: &str) {
        lock(&self.writes).script(only, n, WriteFault::FailAfterAccept(status.to_owned()));
    }

    /// The next `n` accepted writes (of kind `only`, or any alert write) get a 2xx answer the
    /// client cannot read ([`Garble`]). With `applied` the write still takes effect (the alert
    /// is created, the note added); without, nothing happens. Writes refused outright do not
    /// count.
    pub fn garble_next(&self, only: Option<Write>, n: usize, garble: Garble, applied: bool) {
        lock(&self.writes).script(only, n, WriteFault::Garble { garble, applied });
    }

    /// Garble this fraction (0.0..=1.0) of accepted alert writes; the kind of garbling and
    /// whether the write takes effect are drawn from the seeded RNG (half of them apply).
    pub fn set_garble_rate(&self, rate: f64) {
        lock(&self.writes).set_garble_rate(rate);
    }

    /// Make this fraction (0.0..=1.0) of accepted alert writes fail after acceptance, with
    /// the status text [`super::write_faults::INJECTED_FAILURE_STATUS`].
    pub fn set_write_failure_rate(&self, rate: f64) {
        lock(&self.writes).set_failure_rate(rate);
    }

    pub(super) fn take_write_fault(&self, write: Write) -> Option<Taken> {
        let mut rng = lock(&self.rng);
        lock(&self.writes).take(write, &mut rng)
    }

    pub(super) fn give_back(&self, taken: Taken) {
        lock(&self.writes).give_back(taken);
    }

    pub(super) fn take_throttle(&self) -> bool {
        self.throttle_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(super) fn roll_error(&self) -> Option<StatusCode> {
        let rate = self.error_rate();
        if rate <= 0.0 {
            return None;
        }
        let mut rng = lock(&self.rng);
        if rng.random::<f64>() >= rate {
            return None;
        }
        const CODES: [StatusCode; 4] = [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
        ];
        Some(CODES[rng.random_range(0..CODES.len())])
    }

    pub(super) fn latency_sample(&self) -> Option<Duration> {
        let (min, max) = (*lock(&self.latency))?;
        if min == max {
            return Some(min);
        }
        let nanos = lock(&self.rng).random_range(min.as_nanos()..=max.as_nanos());
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }
}
