//! Fault injection for the fake JSM (the chaos example): 5xx at a seeded random rate, bursts of
//! 429 with `Retry-After`, added latency, and 5xx answered *after* a write took effect (the
//! answer is lost, the write happened). Off until set.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::lock;

#[derive(Debug, Default, Clone, Copy)]
struct Knobs {
    error_rate: f64,
    after_effect: bool,
    throttle_next: u32,
    latency: Option<(Duration, Duration)>,
}

/// The knobs, shared by every clone of the fake.
#[derive(Debug)]
pub struct Faults {
    knobs: Mutex<Knobs>,
    rng: Mutex<StdRng>,
}

/// What to do with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Handle it normally.
    None,
    /// 429 without handling it.
    Throttle,
    /// This 5xx without handling it.
    Before(u16),
    /// Handle it, then answer this 5xx instead.
    After(u16),
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            knobs: Mutex::new(Knobs::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// Answers this share of calls (0 to 1) with a 502, 503 or 504.
    pub fn set_error_rate(&self, rate: f64) {
        lock(&self.knobs).error_rate = rate.clamp(0.0, 1.0);
    }

    /// Whether failed writes take effect first (half of them, drawn from the seeded RNG).
    pub fn set_errors_after_effect(&self, on: bool) {
        lock(&self.knobs).after_effect = on;
    }

    /// Answers the next `n` calls 429.
    pub fn throttle_next(&self, n: u32) {
        lock(&self.knobs).throttle_next = n;
    }

    /// Delays every answer by a random time in `min..max`.
    pub fn set_latency(&self, min: Duration, max: Duration) {
        lock(&self.knobs).latency = Some((min, max.max(min)));
    }

    /// No more latency.
    pub fn clear_latency(&self) {
        lock(&self.knobs).latency = None;
    }

    /// Everything off.
    pub fn clear(&self) {
        *lock(&self.knobs) = Knobs::default();
    }

    /// The delay for one call, if any.
    pub(crate) fn delay(&self) -> Option<Duration> {
        let (min, max) = lock(&self.knobs).latency?;
        let mut rng = lock(&self.rng);
        Some(if max > min {
            rng.random_range(min..max)
        } else {
            min
        })
    }

    /// The fault for one call; `write` says whether it can take effect.
    pub(crate) fn draw(&self, write: bool) -> Fault {
        let mut knobs = lock(&self.knobs);
        if knobs.throttle_next > 0 {
            knobs.throttle_next -= 1;
            return Fault::Throttle;
        }
        let mut rng = lock(&self.rng);
        if knobs.error_rate <= 0.0 || !rng.random_bool(knobs.error_rate) {
            return Fault::None;
        }
        let status = [502, 503, 504][rng.random_range(0..3)];
        if write && knobs.after_effect && rng.random_bool(0.5) {
            Fault::After(status)
        } else {
            Fault::Before(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_draw_what_they_say_and_clear() {
        let f = Faults::new(7);
        assert_eq!(f.draw(true), Fault::None);
        f.throttle_next(2);
        assert_eq!(f.draw(false), Fault::Throttle);
        assert_eq!(f.draw(false), Fault::Throttle);
        f.set_error_rate(1.0);
        assert!(matches!(f.draw(false), Fault::Before(502..=504)));
        f.set_errors_after_effect(true);
        let draws: Vec<Fault> = (0..50).map(|_| f.draw(true)).collect();
        assert!(draws.iter().any(|d| matches!(d, Fault::After(_))));
        assert!(draws.iter().any(|d| matches!(d, Fault::Before(_))));
        f.set_latency(Duration::from_millis(5), Duration::from_millis(10));
        assert!(f.delay().is_some_and(|d| d >= Duration::from_millis(5)));
        f.clear();
        assert_eq!(f.draw(true), Fault::None);
        assert_eq!(f.delay(), None);
    }
}
