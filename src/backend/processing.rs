//! What the gateway learns of how long the backend takes to apply an accepted write, so that its
//! request-status polls start near that time instead of walking the whole poll schedule for
//! every write. Opsgenie and JSM apply writes after a delay that is about the same for every
//! write of an account at a given moment (hundreds of milliseconds to seconds); a fixed schedule
//! asks 4 times per write at 0.5 s and 7 times at 2 s, and every ask counts against the same
//! rate-limit domain as the creates. Pure: the gateway keeps one [`Estimate`] and feeds it.

use std::time::Duration;

/// How much earlier than the learnt time the polls start: the schedule's first poll comes 100 ms
/// after the start, so the first poll lands 100 ms before the learnt time; a write processed as
/// usual is seen on the first or second poll.
pub const LEAD: Duration = Duration::from_millis(200);

/// How much earlier the next write is tried when a write was already processed at the first
/// poll: the delay may have shrunk, and only polling earlier can tell (a backend that got
/// faster is followed within a few writes, not held to its slow past).
pub const PROBE: Duration = Duration::from_millis(50);

/// The longest learnt time: a backend that once took very long must not hold every later poll
/// back by more than this.
pub const MAX: Duration = Duration::from_secs(10);

/// The learnt processing time, `None` before the first write was seen processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate(Option<Duration>);

impl Estimate {
    /// How long to wait before the poll schedule starts.
    pub fn offset(&self) -> Duration {
        self.0.map_or(Duration::ZERO, |d| d.saturating_sub(LEAD))
    }

    /// The estimate after a write was seen processed `elapsed` after the polls started, at poll
    /// number `polls` (1 for the first).
    pub fn observe(self, elapsed: Duration, polls: u32) -> Estimate {
        let learnt = if polls <= 1 {
            elapsed.saturating_sub(PROBE)
        } else {
            elapsed
        };
        Estimate(Some(learnt.min(MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Polls (after the offset) at 0.1, 0.2, 0.4, 0.6, 1.0, 1.4 s, ... as the gateway does:
    /// how many it takes to see a write processed after `delay`, and when it is seen.
    fn polls(estimate: Estimate, delay: Duration) -> (u32, Duration) {
        let offset = estimate.offset();
        let schedule = [
            100u64, 200, 400, 600, 1000, 1400, 2200, 3000, 4000, 6000, 8000,
        ];
        for (i, at) in schedule.iter().enumerate() {
            let t = offset + MS(*at);
            if t >= delay {
                return (i as u32 + 1, t);
            }
        }
        panic!("not processed within the schedule");
    }

    /// The polls of `writes` writes in a row at a steady `delay`.
    fn run(delay: Duration, writes: usize) -> Vec<u32> {
        let mut estimate = Estimate::default();
        (0..writes)
            .map(|_| {
                let (n, at) = polls(estimate, delay);
                estimate = estimate.observe(at, n);
                n
            })
            .collect()
    }

    #[test]
    fn before_anything_is_learnt_the_schedule_starts_at_once() {
        assert_eq!(Estimate::default().offset(), Duration::ZERO);
        assert_eq!(run(MS(0), 5), [1, 1, 1, 1, 1]);
    }

    #[test]
    fn a_steady_delay_is_seen_within_two_polls_once_learnt() {
        for delay in [300, 500, 800, 2000, 3500] {
            let counts = run(MS(delay), 30);
            // Without learning: 3 polls at 300 ms, 4 at 500 ms, 7 at 2 s, 9 at 3.5 s.
            let settled = &counts[3..];
            assert!(settled.iter().all(|&n| n <= 2), "{delay} ms: {counts:?}");
        }
    }

    #[test]
    fn the_lag_behind_the_backend_stays_small() {
        let mut estimate = Estimate::default();
        for _ in 0..10 {
            let (n, at) = polls(estimate, MS(2000));
            estimate = estimate.observe(at, n);
        }
        let (_, seen) = polls(estimate, MS(2000));
        assert!(seen <= MS(2000) + MS(200), "{seen:?}");
    }

    #[test]
    fn a_backend_that_got_faster_is_followed_within_a_few_writes() {
        let mut estimate = Estimate(Some(MS(2000)));
        let mut writes = 0;
        while estimate.offset() > Duration::ZERO {
            let (n, at) = polls(estimate, MS(0));
            estimate = estimate.observe(at, n);
            writes += 1;
            assert!(writes < 20, "{estimate:?}");
        }
    }

    #[test]
    fn a_very_slow_answer_holds_later_polls_back_at_most_by_the_cap() {
        let estimate = Estimate::default().observe(Duration::from_secs(600), 9);
        assert_eq!(estimate.offset(), MAX - LEAD);
    }
}
