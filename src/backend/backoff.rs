//! The crate's one backoff: how long to wait before the next attempt of anything that is retried
//! (a request's reconcile step, a gateway call, the event stream's reconnect, request-status
//! polls).
//!
//! The ceiling starts at `base` and doubles (after `repeat` uses of each ceiling) up to `cap`.
//! With jitter (the default) each delay is uniform in `[base, ceiling]` ("full jitter" above the
//! floor), so many callers failing together, e.g. every request while the backend is down, do not
//! retry in lock-step; without jitter the delay is the ceiling itself, which polls use so that
//! their schedule is predictable. Delays are plain values; [`Backoff::wait`] sleeps on tokio's
//! clock, so tests run it under a paused clock.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Exponential backoff with optional full jitter; see the module docs.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    /// How many delays share one ceiling before it doubles (at least 1).
    repeat: u32,
    jitter: bool,
    /// Delays handed out since the last reset.
    attempt: u32,
    /// Seeded jitter for reproducible runs; thread-local randomness when `None`.
    rng: Option<StdRng>,
}

impl Backoff {
    /// Starts at `base`, doubles up to `cap` (raised to `base` if lower), with jitter.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            repeat: 1,
            jitter: true,
            attempt: 0,
            rng: None,
        }
    }

    /// The same schedule without jitter: each delay is the ceiling.
    pub fn exact(base: Duration, cap: Duration) -> Self {
        Self {
            jitter: false,
            ..Self::new(base, cap)
        }
    }

    /// Uses each ceiling `times` times before doubling it.
    pub fn repeat_each(mut self, times: u32) -> Self {
        self.repeat = times.max(1);
        self
    }

    /// Draws the jitter from a generator seeded with `seed` (tests, reproducible runs).
    pub fn seeded(mut self, seed: u64) -> Self {
        self.rng = Some(StdRng::seed_from_u64(seed));
        self
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        let doublings = (self.attempt / self.repeat).min(30);
        self.base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.cap)
    }

    /// The delay before the next attempt; advances the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        if !self.jitter {
            return ceiling;
        }
        let spread = ceiling.saturating_sub(self.base);
        let fraction: f64 = match &mut self.rng {
            Some(rng) => rng.random(),
            None => rand::random(),
        };
        self.base + spread.mul_f64(fraction)
    }

    /// Sleeps for [`Backoff::next_delay`] on tokio's clock; returns the delay slept.
    pub async fn wait(&mut self) -> Duration {
        let delay = self.next_delay();
        tokio::time::sleep(delay).await;
        delay
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exact_schedule_doubles_up_to_the_cap() {
        let mut b = Backoff::exact(100 * MS, 2_000 * MS);
        let got: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn repeated_ceilings_for_polls() {
        let mut b = Backoff::exact(100 * MS, 2_000 * MS).repeat_each(2);
        let got: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, [100, 100, 200, 200, 400, 400, 800]);
    }

    #[test]
    fn jitter_stays_between_the_floor_and_the_ceiling_and_grows() {
        let mut b = Backoff::new(100 * MS, 2_000 * MS).seeded(7);
        for attempt in 0..10u32 {
            let ceiling = b.ceiling();
            assert_eq!(ceiling, (100 * MS * 2u32.pow(attempt)).min(2_000 * MS));
            let d = b.next_delay();
            assert!(d >= 100 * MS && d <= ceiling, "attempt {attempt}: {d:?}");
        }
        // At the cap the spread is [100 ms, 2 s]: 100 draws all below 400 ms would mean the
        // delay never grew.
        let longest = (0..100).map(|_| b.next_delay()).max().expect("draws");
        assert!(longest > 400 * MS, "{longest:?}");
        // Same seed, same delays.
        let draw = |seed| {
            let mut b = Backoff::new(100 * MS, 2_000 * MS).seeded(seed);
            (0..20).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn a_cap_below_the_base_is_raised() {
        let mut b = Backoff::new(500 * MS, 100 * MS);
        assert_eq!(b.next_delay(), 500 * MS);
        assert_eq!(b.next_delay(), 500 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_on_the_tokio_clock() {
        let start = tokio::time::Instant::now();
        let mut b = Backoff::exact(100 * MS, 1_000 * MS);
        let mut slept = Duration::ZERO;
        for _ in 0..5 {
            slept += b.wait().await;
        }
        // 100 + 200 + 400 + 800 + 1000, all in virtual time.
        assert_eq!(slept, 2_500 * MS);
        assert_eq!(start.elapsed(), 2_500 * MS);
        assert_eq!(b.attempts(), 5);
    }
}
