//! `TimelineCache`: windows of schedules' final timelines (opsgenie-api.md §13), reused for a
//! short TTL and shared among everyone asking about the same schedule and day while a lookup is
//! in flight, like `OnCallCache` does for on-call answers. And [`find_shift_end`], which walks
//! the windows through the cache until the requester's shift end is known.
//!
//! The lookup is a function given at construction (the daemon's sends
//! `backend::Operation::ScheduleTimeline` through the gateway; tests pass a script), so the cache
//! knows nothing of the gateway. Supervision is the on-call cache's: a lookup still unanswered
//! after [`STUCK_AFTER`] stops the cache, its supervisor restarts it empty, and the askers get
//! [`WindowError::Stopped`] (retryable).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use futures::future::{FutureExt, LocalBoxFuture, Shared};
use tokio::time::Instant;
use tracing::debug;

use crate::actors::gateway::GatewayError;
use crate::core::shift::{shift_end, ShiftEnd, ShiftError, Timeline};

pub use crate::actors::oncall::{STUCK_AFTER, WATCHDOG_EVERY};

/// Fetches the window of `schedule`'s final timeline that contains the instant.
pub type TimelineLookup =
    Rc<dyn Fn(String, SystemTime) -> LocalBoxFuture<'static, Result<Timeline, GatewayError>>>;

/// Windows kept per schedule (the current one, the next, and a few for other days).
const WINDOWS_PER_SCHEDULE: usize = 4;

/// Most windows one question follows: a shift longer than this many windows (weeks) is
/// reported as unknown rather than followed further.
pub const MAX_WINDOWS: usize = 8;

/// Why no window could be had. Never cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The lookup failed (backend error, throttling, refusal, timeout).
    #[error(transparent)]
    Lookup(GatewayError),
    /// The cache stopped before it answered (it is being restarted).
    #[error("the timeline cache is not running")]
    Stopped,
}

/// Why a shift end could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShiftLookupError {
    /// A window could not be fetched.
    #[error("could not read the timeline of {schedule:?}: {source}")]
    Window {
        /// The schedule.
        schedule: String,
        /// Why.
        #[source]
        source: WindowError,
    },
    /// The backend's window cannot answer (it does not contain the instant asked about, or is
    /// empty).
    #[error("the timeline of {schedule:?} cannot answer: {source}")]
    Unusable {
        /// The schedule.
        schedule: String,
        /// Why.
        #[source]
        source: ShiftError,
    },
    /// The shift runs through more than [`MAX_WINDOWS`] windows.
    #[error("the shift in {schedule:?} runs past {MAX_WINDOWS} timeline windows")]
    TooLong {
        /// The schedule.
        schedule: String,
    },
    /// These effects cannot read timelines (a test double).
    #[error("schedule timelines are not available here")]
    Unavailable,
}

impl ShiftLookupError {
    /// Whether asking again later may help: a failed or throttled lookup, a restarting cache.
    /// A refusal (403, an unknown schedule, JSM's unsupported timelines) or an unusable answer
    /// will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Window {
                source: WindowError::Stopped,
                ..
            } => true,
            Self::Window {
                source: WindowError::Lookup(err),
                ..
            } => err.is_retryable(),
            Self::Unusable { .. } | Self::TooLong { .. } | Self::Unavailable => false,
        }
    }
}

/// Asks for the window of `schedule` containing `at`; `fresh` skips cached windows (a
/// revocation's re-check must see overrides made since).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Arc<Timeline>, WindowError>")]
pub struct WindowAt {
    /// Schedule name or id.
    pub schedule: String,
    /// The instant.
    pub at: SystemTime,
    /// Skip cached windows.
    pub fresh: bool,
}

type Pending = Shared<LocalBoxFuture<'static, Result<Arc<Timeline>, WindowError>>>;

struct InFlight {
    pending: Pending,
    started: Instant,
    abort: futures::future::AbortHandle,
}

/// The cache actor. Start it under `actix::Supervisor`.
pub struct TimelineCache {
    lookup: TimelineLookup,
    ttl: Duration,
    /// Per schedule: windows and until when each is good.
    windows: HashMap<String, Vec<(Arc<Timeline>, Instant)>>,
    /// Per (schedule, UTC day of the instant asked about).
    in_flight: HashMap<(String, u64), InFlight>,
    restarts: u64,
}

fn day_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

impl TimelineCache {
    /// A cache that looks up with `lookup` and keeps windows for `ttl`.
    pub fn new(lookup: TimelineLookup, ttl: Duration) -> Self {
        Self {
            lookup,
            ttl,
            windows: HashMap::new(),
            in_flight: HashMap::new(),
            restarts: 0,
        }
    }

    fn watchdog(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let wedged = self
            .in_flight
            .iter()
            .find(|(_, f)| now.duration_since(f.started) >= STUCK_AFTER)
            .map(|((schedule, _), _)| schedule.clone());
        if let Some(schedule) = wedged {
            tracing::warn!(
                schedule,
                waited_s = STUCK_AFTER.as_secs(),
                "A timeline lookup has not finished; restarting the timeline cache."
            );
            ctx.stop();
        }
    }

    fn cached(&self, schedule: &str, at: SystemTime) -> Option<Arc<Timeline>> {
        let now = Instant::now();
        self.windows.get(schedule)?.iter().find_map(|(t, until)| {
            (*until > now && t.window_start <= at && at < t.window_end).then(|| Arc::clone(t))
        })
    }

    fn start_lookup(
        &mut self,
        key: (String, u64),
        at: SystemTime,
        ctx: &mut Context<Self>,
    ) -> Pending {
        debug!(schedule = %key.0, "Reading a schedule timeline.");
        let (lookup, abort) = futures::future::abortable((self.lookup)(key.0.clone(), at));
        let pending: Pending = lookup
            .map(|r| match r {
                Ok(answer) => answer.map(Arc::new).map_err(WindowError::Lookup),
                Err(futures::future::Aborted) => Err(WindowError::Stopped),
            })
            .boxed_local()
            .shared();
        self.in_flight.insert(
            key.clone(),
            InFlight {
                pending: pending.clone(),
                started: Instant::now(),
                abort,
            },
        );
        ctx.spawn(
            pending
                .clone()
                .into_actor(self)
                .map(move |result, act, _| {
                    act.in_flight.remove(&key);
                    match result {
                        Ok(timeline) => {
                            let now = Instant::now();
                            let kept = act.windows.entry(key.0).or_default();
                            kept.retain(|(_, until)| *until > now);
                            kept.insert(0, (timeline, now + act.ttl));
                            kept.truncate(WINDOWS_PER_SCHEDULE);
                        }
                        Err(err) => {
                            debug!(schedule = %key.0, error = %err, "Timeline lookup failed; not caching it.");
                        }
                    }
                }),
        );
        pending
    }
}

impl Actor for TimelineCache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(WATCHDOG_EVERY, |act, ctx| act.watchdog(ctx));
    }
}

impl Supervised for TimelineCache {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        for f in self.in_flight.values() {
            f.abort.abort();
        }
        self.in_flight.clear();
        self.windows.clear();
        self.restarts += 1;
    }
}

impl Handler<WindowAt> for TimelineCache {
    type Result = ResponseFuture<Result<Arc<Timeline>, WindowError>>;

    fn handle(&mut self, msg: WindowAt, ctx: &mut Context<Self>) -> Self::Result {
        // A ttl of zero turns caching off, as for on-call answers.
        if !msg.fresh && !self.ttl.is_zero() {
            if let Some(window) = self.cached(&msg.schedule, msg.at) {
                return Box::pin(async move { Ok(window) });
            }
        }
        let key = (msg.schedule.clone(), day_of(msg.at));
        let pending = match self.in_flight.get(&key) {
            // Only a lookup still running is shared: one that finished answered its askers,
            // and its window may not contain this instant.
            Some(f) if f.pending.peek().is_none() => f.pending.clone(),
            _ => self.start_lookup(key, msg.at, ctx),
        };
        Box::pin(pending)
    }
}

async fn window(
    cache: &Addr<TimelineCache>,
    schedule: &str,
    at: SystemTime,
    fresh: bool,
) -> Result<Arc<Timeline>, ShiftLookupError> {
    cache
        .send(WindowAt {
            schedule: schedule.to_owned(),
            at,
            fresh,
        })
        .await
        .unwrap_or(Err(WindowError::Stopped))
        .map_err(|source| ShiftLookupError::Window {
            schedule: schedule.to_owned(),
            source,
        })
}

/// When `person`'s shift in `schedule` that covers `now` ends, never looking past
/// `access_end`: follows the shift into later windows (at most [`MAX_WINDOWS`]). A window that
/// does not contain the instant asked about (a cached one shared across a day boundary, or a
/// schedule in another zone) is fetched once more afresh before it counts as unusable.
pub async fn find_shift_end(
    cache: &Addr<TimelineCache>,
    schedule: &str,
    person: &str,
    now: SystemTime,
    access_end: SystemTime,
    fresh: bool,
) -> Result<ShiftEnd, ShiftLookupError> {
    let mut at = now;
    for _ in 0..MAX_WINDOWS {
        let mut timeline = window(cache, schedule, at, fresh).await?;
        let mut answer = shift_end(&timeline, person, at, access_end);
        if let Err(ShiftError::NowOutsideWindow { .. }) = answer {
            timeline = window(cache, schedule, at, true).await?;
            answer = shift_end(&timeline, person, at, access_end);
        }
        let answer = answer.map_err(|source| ShiftLookupError::Unusable {
            schedule: schedule.to_owned(),
            source,
        })?;
        match answer {
            ShiftEnd::ContinuesPastWindow { at: next } => at = next,
            // Following the shift: nobody (or only a group) named at the window's start means
            // it ended exactly at the previous window's end.
            ShiftEnd::NotOnCall | ShiftEnd::Unknowable { .. } if at != now => {
                return Ok(ShiftEnd::EndsAt(at))
            }
            other => return Ok(other),
        }
    }
    Err(ShiftLookupError::TooLong {
        schedule: schedule.to_owned(),
    })
}

#[cfg(test)]
#[path = "timelines_tests.rs"]
mod tests;
