//! Fault injection: 5xx at a seeded random rate, bursts of 429, added latency.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::lock;

/// Fault knobs, changeable while the server runs.
#[derive(Debug)]
pub struct Faults {
    /// f64 bits of the 5xx probability.
    error_rate: AtomicU64,
    /// Injected 5xx happen after the call took effect (the answer is "lost").
    pub(super) errors_after_effect: AtomicBool,
    throttle_next: AtomicUsize,
    latency: Mutex<Option<(Duration, Duration)>>,
    rng: Mutex<StdRng>,
}

impl Faults {
    pub(super) fn new(seed: u64) -> Self {
        Faults {
            error_rate: AtomicU64::new(0f64.to_bits()),
            errors_after_effect: AtomicBool::new(false),
            throttle_next: AtomicUsize::new(0),
            latency: Mutex::new(None),
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
    }

    /// Turns every fault off.
    pub fn clear(&self) {
        self.set_error_rate(0.0);
        self.set_errors_after_effect(false);
        self.throttle_next(0);
        self.clear_latency();
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
