//! Per-domain rate limiting, modelled on Opsgenie's account buckets (opsgenie-api.md §8).
//!
//! Each domain has an optional per-second and an optional per-minute token bucket; a call must
//! pass both. Buckets run on tokio's clock so tests under a paused clock are deterministic.

use std::time::Duration;

use tokio::time::Instant;

/// Limits for the fake's rate limiter. `None` means unlimited.
///
/// Each domain limit is `(per_second, per_minute)`; a call must find a token in both buckets.
/// Exceeding one domain does not affect the others, as in Opsgenie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeRateLimits {
    /// Alert domain: create, get alert, notes, close, acknowledge, request status.
    pub alert: Option<(u32, u32)>,
    /// Search domain: list and count alerts.
    pub search: Option<(u32, u32)>,
    /// Schedule-oncalls domain: `GET /v2/schedules/{id}/on-calls`.
    pub schedule_oncalls: Option<(u32, u32)>,
    /// Heartbeat domain: pings.
    pub heartbeat: Option<(u32, u32)>,
    /// Configuration domain: schedule timelines.
    pub configuration: Option<(u32, u32)>,
    /// An extra per-second bucket for alert creates only (checked in addition to `alert`); the
    /// load test's `--backend-limit`.
    pub create_per_second: Option<u32>,
}

/// Which bucket set a call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Domain {
    Alert,
    Search,
    ScheduleOnCalls,
    Heartbeat,
    Configuration,
    /// Unknown routes: never limited.
    None,
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    /// Tokens added per second.
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(limit: u32, period: Duration, now: Instant) -> Self {
        let capacity = f64::from(limit);
        Bucket {
            capacity,
            rate: capacity / period.as_secs_f64(),
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    /// True if a token is available (after refilling); does not take it.
    fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        // A small epsilon so that float rounding never denies a token that is due.
        self.tokens >= 1.0 - 1e-9
    }

    fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// Per-second and per-minute buckets of one domain.
#[derive(Debug, Default)]
struct Pair {
    second: Option<Bucket>,
    minute: Option<Bucket>,
}

impl Pair {
    fn new(limit: Option<(u32, u32)>, now: Instant) -> Self {
        match limit {
            None => Pair::default(),
            Some((s, m)) => Pair {
                second: Some(Bucket::new(s, Duration::from_secs(1), now)),
                minute: Some(Bucket::new(m, Duration::from_secs(60), now)),
            },
        }
    }

    /// `Err(period)` names the bucket (1 or 60 s) that has no token.
    fn ready(&mut self, now: Instant) -> Result<(), u64> {
        if let Some(b) = &mut self.second {
            if !b.ready(now) {
                return Err(1);
            }
        }
        if let Some(b) = &mut self.minute {
            if !b.ready(now) {
                return Err(60);
            }
        }
        Ok(())
    }

    fn take(&mut self) {
        self.second
            .iter_mut()
            .chain(self.minute.iter_mut())
            .for_each(Bucket::take);
    }
}

/// All buckets of the fake account.
#[derive(Debug)]
pub(crate) struct Limiter {
    alert: Pair,
    search: Pair,
    schedule: Pair,
    heartbeat: Pair,
    configuration: Pair,
    create: Pair,
}

impl Limiter {
    pub(crate) fn new(limits: &FakeRateLimits, now: Instant) -> Self {
        Limiter {
            alert: Pair::new(limits.alert, now),
            search: Pair::new(limits.search, now),
            schedule: Pair::new(limits.schedule_oncalls, now),
            heartbeat: Pair::new(limits.heartbeat, now),
            configuration: Pair::new(limits.configuration, now),
            create: Pair {
                second: limits
                    .create_per_second
                    .map(|l| Bucket::new(l, Duration::from_secs(1), now)),
                minute: None,
            },
        }
    }

    /// Takes a token for one call, or answers `Err(period_in_seconds)` of the bucket that is
    /// empty. A refused call consumes nothing, so throttled retries do not dig the hole deeper.
    pub(crate) fn acquire(
        &mut self,
        domain: Domain,
        is_create: bool,
        now: Instant,
    ) -> Result<(), u64> {
        let pair = match domain {
            Domain::Alert => &mut self.alert,
            Domain::Search => &mut self.search,
            Domain::ScheduleOnCalls => &mut self.schedule,
            Domain::Heartbeat => &mut self.heartbeat,
            Domain::Configuration => &mut self.configuration,
            Domain::None => return Ok(()),
        };
        pair.ready(now)?;
        if is_create {
            self.create.ready(now)?;
            self.create.take();
        }
        // Re-borrow: `pair` ended above because `self.create` was used mutably.
        match domain {
            Domain::Alert => self.alert.take(),
            Domain::Search => self.search.take(),
            Domain::ScheduleOnCalls => self.schedule.take(),
            Domain::Heartbeat => self.heartbeat.take(),
            Domain::Configuration => self.configuration.take(),
            Domain::None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn buckets_refill_and_report_period() {
        let limits = FakeRateLimits {
            alert: Some((2, 3)),
            create_per_second: Some(1),
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut l = Limiter::new(&limits, t0);
        assert_eq!(l.acquire(Domain::Alert, true, t0), Ok(()));
        // Create bucket empty, alert domain still has a token.
        assert_eq!(l.acquire(Domain::Alert, true, t0), Err(1));
        assert_eq!(l.acquire(Domain::Alert, false, t0), Ok(()));
        assert_eq!(l.acquire(Domain::Alert, false, t0), Err(1));
        assert_eq!(l.acquire(Domain::Search, false, t0), Ok(()));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.acquire(Domain::Alert, false, t1), Ok(()));
        // 3 per minute used up: the minute bucket trips.
        assert_eq!(l.acquire(Domain::Alert, false, t1), Err(60));
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(l.acquire(Domain::Alert, false, t2), Ok(()));
    }
}
