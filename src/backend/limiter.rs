//! Client-side rate limits, one pair of buckets per API domain (per second and per minute), as
//! Opsgenie enforces them (opsgenie-api.md §8): `Alert` (every alert endpoint, request status
//! included), `Search` (listing alerts), `Schedule-oncalls` and `Heartbeat`, each configured
//! under `opsgenie.rate_limits` by the key [`Domain::as_str`] names.
//!
//! Opsgenie tracks its buckets as rolling windows, so a classic refilling token bucket (which
//! allows a full burst plus the refill within one second) could still trip its limits. Each
//! bucket here is therefore a sliding-window log: a call is granted at `t` only if fewer than
//! `capacity` calls were granted in `(t - period, t]`. That guarantees that no window of one
//! period ever holds more than `capacity` calls. Memory is at most `capacity` instants.
//!
//! Callers wait their turn FIFO per domain and are never dropped: a per-domain
//! `tokio::sync::Mutex` (fair, a linked-list queue, O(1) per waiter) hands out turns, and the
//! holder of the turn sleeps until both buckets and any 429 pause allow it. Everything runs on
//! `tokio::time::Instant`, so tests drive it with `tokio::time::pause()`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Domain;
use crate::config::{Limit, RateLimits};

/// One sliding window: at most `capacity` grants per `period`.
#[derive(Debug)]
struct Window {
    capacity: usize,
    period: Duration,
    grants: VecDeque<Instant>,
}

impl Window {
    fn new(capacity: u32, period: Duration) -> Self {
        Self {
            capacity: capacity as usize,
            period,
            grants: VecDeque::new(),
        }
    }

    /// When the next grant is allowed (`now` if at once). A capacity of zero means unlimited.
    fn ready_at(&mut self, now: Instant) -> Instant {
        if self.capacity == 0 {
            return now;
        }
        while self
            .grants
            .front()
            .is_some_and(|granted| *granted + self.period <= now)
        {
            self.grants.pop_front();
        }
        if self.grants.len() < self.capacity {
            now
        } else {
            // The oldest grant in the window; the next slot opens when it leaves the window.
            self.grants
                .get(self.grants.len() - self.capacity)
                .map_or(now, |oldest| *oldest + self.period)
        }
    }

    fn record(&mut self, now: Instant) {
        if self.capacity > 0 {
            self.grants.push_back(now);
        }
    }
}

#[derive(Debug)]
struct Buckets {
    second: Window,
    minute: Window,
    /// Set by a 429: nothing is granted before this instant.
    paused_until: Option<Instant>,
}

impl Buckets {
    fn ready_at(&mut self, now: Instant) -> Instant {
        let pause = self
            .paused_until
            .filter(|until| *until > now)
            .unwrap_or(now);
        self.second
            .ready_at(now)
            .max(self.minute.ready_at(now))
            .max(pause)
    }
}

/// The limiter of one domain.
#[derive(Debug)]
pub struct DomainLimiter {
    /// The turn: tokio's mutex queues waiters fairly (FIFO).
    turn: tokio::sync::Mutex<()>,
    /// The windows; a std mutex, never held across an await, so `pause_until` can be called
    /// while the holder of the turn sleeps.
    buckets: StdMutex<Buckets>,
}

impl DomainLimiter {
    /// A limiter allowing `limit.per_second` and `limit.per_minute` calls (zero = unlimited).
    pub fn new(limit: Limit) -> Self {
        Self {
            turn: tokio::sync::Mutex::new(()),
            buckets: StdMutex::new(Buckets {
                second: Window::new(limit.per_second, Duration::from_secs(1)),
                minute: Window::new(limit.per_minute, Duration::from_secs(60)),
                paused_until: None,
            }),
        }
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // The state stays consistent even if a holder panicked: recover it.
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for this caller's turn (FIFO) and a free slot in both windows, then for `ready`
    /// (e.g. a concurrency permit), and records the grant at the moment `ready` resolves, which
    /// is when the call is actually sent. Cancel-safe: dropping the future gives up the turn.
    pub async fn acquire_then<T>(&self, ready: impl Future<Output = T>) -> T {
        let _turn = self.turn.lock().await;
        loop {
            let now = Instant::now();
            let at = self.buckets().ready_at(now);
            if at <= now {
                break;
            }
            // Re-check after waking: a 429 may have extended the pause meanwhile.
            tokio::time::sleep_until(at).await;
        }
        let value = ready.await;
        let now = Instant::now();
        let mut buckets = self.buckets();
        buckets.second.record(now);
        buckets.minute.record(now);
        drop(buckets);
        value
    }

    /// Waits for this caller's turn and a free slot, and takes it.
    pub async fn acquire(&self) {
        self.acquire_then(async {}).await;
    }

    /// Grants nothing before `until` (a 429 answer); an earlier pause is extended, never
    /// shortened.
    pub fn pause_until(&self, until: Instant) {
        let mut buckets = self.buckets();
        buckets.paused_until = Some(buckets.paused_until.map_or(until, |p| p.max(until)));
    }
}

/// Rate limits for every [`Domain`]. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Limiter {
    domains: Arc<HashMap<Domain, DomainLimiter>>,
}

impl Limiter {
    /// Limits from the configuration.
    pub fn new(limits: &RateLimits) -> Self {
        let domains = [
            (Domain::Alert, limits.alert),
            (Domain::Search, limits.search),
            (Domain::ScheduleOnCalls, limits.schedule_oncalls),
            (Domain::Heartbeat, limits.heartbeat),
            (Domain::Configuration, limits.configuration),
        ]
        .into_iter()
        .map(|(domain, limit)| (domain, DomainLimiter::new(limit)))
        .collect();
        Self {
            domains: Arc::new(domains),
        }
    }

    /// No limits at all (still honours 429 pauses).
    pub fn unlimited() -> Self {
        let none = Limit::new(0, 0);
        Self::new(&RateLimits {
            alert: none,
            search: none,
            schedule_oncalls: none,
            heartbeat: none,
            configuration: none,
        })
    }

    /// See [`DomainLimiter::acquire_then`]; a domain without limiter is not limited.
    pub async fn acquire_then<T>(&self, domain: Domain, ready: impl Future<Output = T>) -> T {
        match self.domains.get(&domain) {
            Some(limiter) => limiter.acquire_then(ready).await,
            None => ready.await,
        }
    }

    /// See [`DomainLimiter::acquire`].
    pub async fn acquire(&self, domain: Domain) {
        self.acquire_then(domain, async {}).await;
    }

    /// See [`DomainLimiter::pause_until`].
    pub fn pause_until(&self, domain: Domain, until: Instant) {
        if let Some(limiter) = self.domains.get(&domain) {
            limiter.pause_until(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Every grant of `n` calls through `limit`, as offsets from the start.
    async fn grant_times(limit: Limit, n: usize) -> Vec<Duration> {
        let limiter = Arc::new(DomainLimiter::new(limit));
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let limiter = limiter.clone();
            let times = times.clone();
            tasks.spawn(async move {
                limiter.acquire().await;
                times.lock().unwrap().push(start.elapsed());
            });
        }
        while tasks.join_next().await.is_some() {}
        let mut times = times.lock().unwrap().clone();
        times.sort();
        times
    }

    fn max_in_window(times: &[Duration], window: Duration) -> usize {
        times
            .iter()
            .map(|t| {
                times
                    .iter()
                    .filter(|u| **u >= *t && **u < *t + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_rate_in_any_second() {
        let times = grant_times(Limit::new(5, 0), 23).await;
        assert_eq!(times.len(), 23);
        assert!(max_in_window(&times, Duration::from_secs(1)) <= 5);
        // And it is not slower than needed: 23 calls at 5/s take 4 whole seconds.
        assert_eq!(*times.last().unwrap(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn per_minute_bucket_applies_too() {
        let times = grant_times(Limit::new(10, 15), 20).await;
        assert!(max_in_window(&times, Duration::from_secs(1)) <= 10);
        assert!(max_in_window(&times, Duration::from_secs(60)) <= 15);
        assert_eq!(times[15], Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_is_unlimited() {
        let times = grant_times(Limit::new(0, 0), 1000).await;
        assert!(times.iter().all(|t| t.is_zero()));
    }

    #[tokio::test(start_paused = true)]
    async fn ten_thousand_waiters_complete_in_fifo_order() {
        let limiter = Limiter::new(&RateLimits {
            alert: Limit::new(1000, 0),
            ..RateLimits::default()
        });
        let order = Arc::new(Mutex::new(Vec::with_capacity(10_000)));
        let mut handles = Vec::new();
        for i in 0..10_000u32 {
            let limiter = limiter.clone();
            let order = order.clone();
            handles.push(tokio::spawn(async move {
                limiter.acquire(Domain::Alert).await;
                order.lock().unwrap().push(i);
            }));
            // Let the task enqueue itself so spawn order is queue order.
            tokio::task::yield_now().await;
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.len(), 10_000);
        assert!(order.windows(2).all(|w| w[0] < w[1]), "not FIFO");
    }

    #[tokio::test(start_paused = true)]
    async fn pause_until_holds_the_domain_only() {
        let limiter = Limiter::unlimited();
        let start = Instant::now();
        limiter.pause_until(Domain::Alert, start + Duration::from_secs(2));
        limiter.acquire(Domain::Search).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire(Domain::Alert).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        // Shorter pauses never shorten a longer one.
        limiter.pause_until(Domain::Alert, start + Duration::from_secs(10));
        limiter.pause_until(Domain::Alert, start + Duration::from_secs(3));
        limiter.acquire(Domain::Alert).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    fn ops() -> Vec<crate::backend::Operation> {
        use crate::backend::{AlertPayload, AlertRef, Operation};
        let alias = "teleport-access-request/abc".to_owned();
        vec![
            Operation::CreateAlert(AlertPayload {
                message: "m".into(),
                alias: alias.clone(),
                description: String::new(),
                responders: vec![],
                tags: vec![],
                details: Default::default(),
                entity: String::new(),
                source: String::new(),
                priority: String::new(),
            }),
            Operation::AddNote {
                alert: AlertRef::Alias(alias.clone()),
                note: "n".into(),
            },
            Operation::CloseAlert {
                alert: AlertRef::Id("id".into()),
                note: "n".into(),
            },
            Operation::RequestStatus {
                request_id: "r".into(),
            },
            Operation::GetAlert {
                alert: AlertRef::Alias(alias),
            },
            Operation::ListNotes {
                alert_id: "id".into(),
                offset: None,
            },
            Operation::ListOpenAlerts {
                tag: "t".into(),
                offset: 0,
            },
            Operation::OnCall {
                schedule: "s".into(),
            },
            Operation::Heartbeat { name: "h".into() },
            Operation::GetHeartbeat { name: "h".into() },
            Operation::ScheduleTimeline {
                schedule: "s".into(),
                date: std::time::UNIX_EPOCH,
            },
        ]
    }

    #[test]
    fn operations_count_in_their_documented_domains() {
        let domains: Vec<(&str, &str)> = ops()
            .iter()
            .map(|op| (op.endpoint(), op.domain().as_str()))
            .collect();
        assert_eq!(
            domains,
            [
                ("create_alert", "alert"),
                ("add_note", "alert"),
                ("close_alert", "alert"),
                ("request_status", "alert"),
                ("get_alert", "alert"),
                ("list_notes", "alert"),
                ("list_alerts", "search"),
                ("on_call", "schedule_oncalls"),
                ("heartbeat", "heartbeat"),
                ("get_heartbeat", "heartbeat"),
                ("schedule_timeline", "configuration"),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn request_status_waits_behind_creates_and_listing_does_not() {
        let one = Limit::new(1, 0);
        let limiter = Limiter::new(&RateLimits {
            alert: one,
            search: one,
            ..RateLimits::default()
        });
        let ops = ops();
        let start = Instant::now();
        limiter.acquire(ops[0].domain()).await; // create
        limiter.acquire(ops[6].domain()).await; // list: its own bucket
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire(ops[3].domain()).await; // request status: the create's bucket
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
