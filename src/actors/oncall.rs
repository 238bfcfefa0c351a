//! `OnCallCache`: answers "who is on call in schedule S now", reusing an answer for a short TTL
//! and sharing one lookup among everyone who asks for the same schedule while it is in flight.
//! A resync can start hundreds of requests naming the same schedule at once; they cost one
//! backend call, which matters because the on-call endpoint has the tightest rate limit.
//!
//! The lookup itself is a function given at construction, so the cache knows nothing of the
//! gateway: the daemon passes a closure that sends `backend::Operation::OnCall` through it, and
//! tests pass a counter.
//!
//! Supervision: single flight has a cost. Every asker of a schedule waits on the same lookup, so
//! a lookup that never finishes would hold every auto-approval decision for that schedule, and
//! each waiting step keeps its slot in the pipeline. The gateway bounds its retries, so a lookup
//! still unanswered after [`STUCK_AFTER`] is wedged below us. The cache then stops itself; its
//! `actix::Supervisor` restarts it with an empty table, the wedged lookups are aborted and
//! their askers get [`OnCallError::Stopped`] (retryable: their steps try again later, with a
//! fresh lookup). The address stays the same across restarts, and messages already queued are
//! answered by the restarted cache.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::{FutureExt, LocalBoxFuture, Shared};
use tokio::time::Instant;
use tracing::debug;

use crate::actors::gateway::GatewayError;
use crate::core::oncall_user::OnCallUser;

/// Looks up the users on call in a schedule (by name or id); the error is the gateway's, typed,
/// so that a refusal (403, an unknown schedule) can be told from a failure worth retrying.
pub type Lookup =
    Rc<dyn Fn(String) -> LocalBoxFuture<'static, Result<Vec<OnCallUser>, GatewayError>>>;

/// Why nobody can say who is on call. Failed lookups are never cached; whether one is worth
/// retrying is `pipeline::error_policy::on_call`'s call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnCallError {
    /// The lookup failed (backend error, throttling, timeout).
    #[error(transparent)]
    Lookup(GatewayError),
    /// The cache stopped before it answered (it is being restarted).
    #[error("the on-call cache is not running")]
    Stopped,
}

/// The users on call in a schedule, as the backend names them.
pub type OnCallUsers = Arc<Vec<OnCallUser>>;

/// Asks who is on call in `schedule` now.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<OnCallUsers, OnCallError>")]
pub struct WhoIsOnCall {
    /// Schedule name or id.
    pub schedule: String,
}

/// How long a lookup may stay unanswered before the cache takes it as wedged and restarts. The
/// gateway stops retrying a call after two minutes (`RetryPolicy::deadline`) plus one request
/// timeout; five minutes leaves room for waiting in the rate limiter's queue as well, so only a
/// lookup that has stopped making progress reaches it.
pub const STUCK_AFTER: Duration = Duration::from_secs(300);

/// How often the cache looks for wedged lookups.
pub const WATCHDOG_EVERY: Duration = Duration::from_secs(10);

type Pending = Shared<LocalBoxFuture<'static, Result<OnCallUsers, OnCallError>>>;

enum Entry {
    /// An answer, good until `until`.
    Fresh { users: OnCallUsers, until: Instant },
    /// A lookup in flight; every asker awaits the same one.
    InFlight {
        /// The shared lookup.
        pending: Pending,
        /// When it started, for the watchdog.
        started: Instant,
        /// Cuts it short on a restart, so its askers are answered.
        abort: futures::future::AbortHandle,
    },
}

/// The cache actor. Start it under `actix::Supervisor` (see the module docs).
pub struct OnCallCache {
    lookup: Lookup,
    ttl: Duration,
    entries: HashMap<String, Entry>,
    restarts: u64,
}

impl OnCallCache {
    /// A cache that looks up with `lookup` and keeps answers for `ttl`.
    pub fn new(lookup: Lookup, ttl: Duration) -> Self {
        Self {
            lookup,
            ttl,
            entries: HashMap::new(),
            restarts: 0,
        }
    }

    /// Stops the cache (for its supervisor to restart) if a lookup has been in flight for
    /// longer than [`STUCK_AFTER`].
    fn watchdog(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let wedged = self
            .entries
            .iter()
            .find_map(|(schedule, entry)| match entry {
                Entry::InFlight { started, .. } if now.duration_since(*started) >= STUCK_AFTER => {
                    Some(schedule.clone())
                }
                _ => None,
            });
        if let Some(schedule) = wedged {
            tracing::warn!(
                schedule,
                waited_s = STUCK_AFTER.as_secs(),
                "An on-call lookup has not finished; restarting the on-call cache."
            );
            ctx.stop();
        }
    }

    /// Starts the lookup for `schedule`, records it as in flight, and arranges for its result
    /// to be cached (or forgotten, on failure) when it finishes.
    fn start_lookup(&mut self, schedule: &str, ctx: &mut Context<Self>) -> Pending {
        // Drop answers that have expired, so schedules no longer asked about do not pile up.
        let now = Instant::now();
        self.entries
            .retain(|_, e| !matches!(e, Entry::Fresh { until, .. } if *until <= now));

        debug!(schedule, "Looking up who is on call.");
        let (lookup, abort) = futures::future::abortable((self.lookup)(schedule.to_owned()));
        let pending: Pending = lookup
            .map(|r| match r {
                Ok(answer) => answer.map(Arc::new).map_err(OnCallError::Lookup),
                Err(futures::future::Aborted) => Err(OnCallError::Stopped),
            })
            .boxed_local()
            .shared();
        self.entries.insert(
            schedule.to_owned(),
            Entry::InFlight {
                pending: pending.clone(),
                started: now,
                abort,
            },
        );

        // Driven by the actor, so the result is recorded even if every asker gave up.
        let key = schedule.to_owned();
        ctx.spawn(
            pending
                .clone()
                .into_actor(self)
                .map(move |result, act, _| match result {
                    // A user whose e-mail could not be read makes the answer incomplete: it is
                    // used once, like a failure it is not kept.
                    Ok(users) if users.iter().any(OnCallUser::incomplete) => {
                        debug!(schedule = %key, "On-call answer incomplete; not caching it.");
                        act.entries.remove(&key);
                    }
                    Ok(users) => {
                        let until = Instant::now() + act.ttl;
                        act.entries.insert(key, Entry::Fresh { users, until });
                    }
                    Err(err) => {
                        debug!(schedule = %key, error = %err, "On-call lookup failed; not caching it.");
                        act.entries.remove(&key);
                    }
                }),
        );
        pending
    }
}

impl Actor for OnCallCache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Also after each restart: the old context's timers are gone.
        ctx.run_interval(WATCHDOG_EVERY, |act, ctx| act.watchdog(ctx));
    }
}

impl Supervised for OnCallCache {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Askers of a lookup in flight hold it, not the context: abort it so they are
        // answered (`Stopped`) instead of waiting on a lookup nobody drives to the cache.
        for entry in self.entries.values() {
            if let Entry::InFlight { abort, .. } = entry {
                abort.abort();
            }
        }
        self.entries.clear();
        self.restarts += 1;
    }
}

/// How many times the cache was restarted by its supervisor.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "u64")]
pub struct Restarts;

impl Handler<Restarts> for OnCallCache {
    type Result = u64;

    fn handle(&mut self, _: Restarts, _ctx: &mut Context<Self>) -> u64 {
        self.restarts
    }
}

impl Handler<WhoIsOnCall> for OnCallCache {
    type Result = ResponseFuture<Result<OnCallUsers, OnCallError>>;

    fn handle(&mut self, msg: WhoIsOnCall, ctx: &mut Context<Self>) -> Self::Result {
        let pending = match self.entries.get(&msg.schedule) {
            Some(Entry::Fresh { users, until }) if Instant::now() < *until => {
                let users = Arc::clone(users);
                return Box::pin(async move { Ok(users) });
            }
            // A lookup that failed but whose result the actor has not processed yet must not
            // answer newcomers: failures are not cached.
            Some(Entry::InFlight { pending, .. }) if !matches!(pending.peek(), Some(Err(_))) => {
                pending.clone()
            }
            _ => self.start_lookup(&msg.schedule, ctx),
        };
        Box::pin(pending)
    }
}

/// Asks `cache` who is on call in `schedule`, turning a stopped mailbox into
/// [`OnCallError::Stopped`].
pub async fn who_is_on_call(
    cache: &Addr<OnCallCache>,
    schedule: &str,
) -> Result<OnCallUsers, OnCallError> {
    cache
        .send(WhoIsOnCall {
            schedule: schedule.to_owned(),
        })
        .await
        .unwrap_or(Err(OnCallError::Stopped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    /// How many lookups were made, and for which schedules.
    type Calls = (Rc<Cell<usize>>, Rc<RefCell<Vec<String>>>);

    /// A lookup that takes a second, counts its calls, and answers from a script (the last
    /// answer repeats).
    fn scripted(answers: Vec<Result<Vec<OnCallUser>, GatewayError>>) -> (Lookup, Calls) {
        let calls = Rc::new(Cell::new(0));
        let asked = Rc::new(RefCell::new(Vec::new()));
        let (c, a) = (Rc::clone(&calls), Rc::clone(&asked));
        let lookup: Lookup = Rc::new(move |schedule: String| {
            let n = c.get();
            c.set(n + 1);
            a.borrow_mut().push(schedule);
            let answer = answers
                .get(n)
                .or(answers.last())
                .cloned()
                .unwrap_or_else(|| Err(failed("no answer scripted")));
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                answer
            }
            .boxed_local()
        });
        (lookup, (calls, asked))
    }

    fn failed(why: &str) -> GatewayError {
        GatewayError::Exhausted {
            endpoint: "on_call",
            attempts: 5,
            last: why.into(),
        }
    }

    fn users(v: &[&str]) -> Vec<OnCallUser> {
        v.iter().map(|s| OnCallUser::opsgenie(s)).collect()
    }

    #[actix_rt::test]
    async fn concurrent_asks_share_one_lookup_and_answers_expire() {
        tokio::time::pause();
        let (lookup, (calls, asked)) = scripted(vec![Ok(users(&["alice"])), Ok(users(&["bob"]))]);
        let cache = OnCallCache::new(lookup, Duration::from_secs(30)).start();

        let answers =
            futures::future::join_all((0..100).map(|_| who_is_on_call(&cache, "Primary"))).await;
        assert_eq!(calls.get(), 1);
        for answer in answers {
            assert_eq!(*answer.expect("answer"), users(&["alice"]));
        }

        // Within the TTL the answer is reused.
        tokio::time::advance(Duration::from_secs(20)).await;
        let again = who_is_on_call(&cache, "Primary").await.expect("cached");
        assert_eq!(*again, users(&["alice"]));
        assert_eq!(calls.get(), 1);

        // Another schedule is its own entry.
        who_is_on_call(&cache, "Secondary").await.expect("other");
        assert_eq!(calls.get(), 2);
        assert_eq!(*asked.borrow(), vec!["Primary", "Secondary"]);

        // After the TTL a new lookup is made.
        tokio::time::advance(Duration::from_secs(31)).await;
        let fresh = who_is_on_call(&cache, "Primary").await.expect("fresh");
        assert_eq!(calls.get(), 3);
        assert_eq!(*fresh, users(&["bob"]));
    }

    #[actix_rt::test]
    async fn a_failed_lookup_reaches_every_asker_and_is_not_cached() {
        tokio::time::pause();
        let (lookup, (calls, _)) = scripted(vec![Err(failed("HTTP 503")), Ok(users(&["alice"]))]);
        let cache = OnCallCache::new(lookup, Duration::from_secs(30)).start();

        let answers =
            futures::future::join_all((0..10).map(|_| who_is_on_call(&cache, "Primary"))).await;
        assert_eq!(calls.get(), 1);
        for answer in answers {
            assert_eq!(answer, Err(OnCallError::Lookup(failed("HTTP 503"))));
        }

        // No time passes: the failure was not cached, so the next ask looks up again.
        let next = who_is_on_call(&cache, "Primary").await.expect("retry");
        assert_eq!(calls.get(), 2);
        assert_eq!(*next, users(&["alice"]));
    }

    #[actix_rt::test]
    async fn a_wedged_lookup_restarts_the_cache_which_then_answers() {
        tokio::time::pause();
        // Lookups of "Stuck" never finish; the others answer at once.
        let calls = Rc::new(Cell::new(0));
        let c = Rc::clone(&calls);
        let lookup: Lookup = Rc::new(move |schedule: String| {
            c.set(c.get() + 1);
            if schedule == "Stuck" {
                futures::future::pending().boxed_local()
            } else {
                async { Ok(users(&["alice"])) }.boxed_local()
            }
        });
        let cache = Supervisor::start(move |_| OnCallCache::new(lookup, Duration::from_secs(30)));
        let start = Instant::now();

        let stuck =
            futures::future::join_all((0..5).map(|_| who_is_on_call(&cache, "Stuck"))).await;
        // Answered, not left waiting: by the restart, once the watchdog saw the lookup wedged.
        for answer in stuck {
            assert_eq!(answer, Err(OnCallError::Stopped));
        }
        let waited = start.elapsed();
        assert!(
            waited >= STUCK_AFTER && waited <= STUCK_AFTER + WATCHDOG_EVERY,
            "{waited:?}"
        );
        assert_eq!(calls.get(), 1);
        assert_eq!(cache.send(Restarts).await.expect("running"), 1);

        // The same address answers after the restart.
        let answer = who_is_on_call(&cache, "Primary").await.expect("restarted");
        assert_eq!(*answer, users(&["alice"]));
        assert_eq!(calls.get(), 2);

        // The restarted cache watches again, with an emptied table: "Stuck" is looked up
        // afresh, wedges, and is cut short by a second restart.
        assert_eq!(
            who_is_on_call(&cache, "Stuck").await,
            Err(OnCallError::Stopped)
        );
        assert_eq!(calls.get(), 3);
        assert_eq!(cache.send(Restarts).await.expect("running"), 2);
    }

    #[actix_rt::test]
    async fn an_empty_answer_is_a_valid_cached_answer() {
        tokio::time::pause();
        let (lookup, (calls, _)) = scripted(vec![Ok(vec![])]);
        let cache = OnCallCache::new(lookup, Duration::from_secs(30)).start();
        assert!(who_is_on_call(&cache, "S").await.expect("empty").is_empty());
        assert!(who_is_on_call(&cache, "S").await.expect("empty").is_empty());
        assert_eq!(calls.get(), 1);
    }

    #[actix_rt::test]
    async fn an_answer_with_an_unreadable_email_is_used_once_not_cached() {
        tokio::time::pause();
        let unreadable = OnCallUser {
            id: "acc-x".into(),
            email: crate::core::oncall_user::Email::Unknown("HTTP 503".into()),
            display_name: String::new(),
        };
        let (lookup, (calls, _)) = scripted(vec![Ok(vec![unreadable]), Ok(users(&["alice"]))]);
        let cache = OnCallCache::new(lookup, Duration::from_secs(30)).start();
        let first = who_is_on_call(&cache, "S").await.expect("answer");
        assert!(first[0].incomplete());
        let second = who_is_on_call(&cache, "S").await.expect("answer");
        assert_eq!(*second, users(&["alice"]));
        assert_eq!(calls.get(), 2);
    }
}
