//! `Sweeper`: runs the orphan sweep (`crate::pipeline::sweep::sweep_once`) every
//! `daemon.orphan_sweep_interval`, one sweep at a time.
//!
//! The sweep itself is a function given at construction, as the on-call cache's lookup is, so
//! the actor knows nothing of Teleport or the gateway and its timing is tested with a script.
//!
//! - **Interval.** The first sweep starts one interval after start, then one every interval.
//! - **One at a time.** A tick that comes while a sweep is still running is skipped: two sweeps
//!   of the same replica would list and close the same alerts twice over.
//! - **Supervised.** A sweep still running after [`STUCK_AFTER`] is wedged (every call it makes
//!   is bounded by the gateway's retry deadline): the sweeper stops itself, its
//!   `actix::Supervisor` restarts it, the wedged sweep is dropped with the old context, and
//!   sweeping resumes one interval later. Closing an alert is idempotent, so a sweep cut short
//!   leaves nothing half done that the next one cannot finish.
//! - **Stopping.** [`StopSweeping`] ends it for good (the daemon's shutdown): the sweep in
//!   flight is dropped and no other starts, though the supervisor still holds the actor.

use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use tokio::time::Instant;
use tracing::warn;

use crate::pipeline::sweep::{SweepError, SweepReport};

/// How long one sweep may run before the sweeper takes it as wedged and restarts. A sweep lists
/// at most 200 pages and closes each orphan in turn through the rate-limited `Alert` domain:
/// 20,000 orphans at 10 closes a second take about half an hour, so an hour is past anything
/// that still makes progress.
pub const STUCK_AFTER: Duration = Duration::from_secs(3600);

/// How often the sweeper looks for a wedged sweep.
pub const WATCHDOG_EVERY: Duration = Duration::from_secs(30);

/// One sweep, from start to report.
pub type SweepFn = Rc<dyn Fn() -> LocalBoxFuture<'static, Result<SweepReport, SweepError>>>;

/// The sweeper actor. Start it under `actix::Supervisor` (see the module docs).
pub struct Sweeper {
    sweep: SweepFn,
    every: Duration,
    /// When the sweep in flight started, if one is.
    running: Option<Instant>,
    /// Set by [`StopSweeping`]: a restart then schedules nothing.
    stopping: bool,
    restarts: u64,
}

impl Sweeper {
    /// A sweeper that runs `sweep` every `every` (which must not be zero: the daemon starts no
    /// sweeper when sweeping is off).
    pub fn new(sweep: SweepFn, every: Duration) -> Self {
        Self {
            sweep,
            every,
            running: None,
            stopping: false,
            restarts: 0,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.running.is_some() {
            tracing::debug!("The previous orphan sweep is still running; skipping this one.");
            return;
        }
        self.running = Some(Instant::now());
        let sweep = (self.sweep)();
        ctx.spawn(sweep.into_actor(self).map(|result, act, _| {
            act.running = None;
            if let Err(err) = result {
                warn!(error = %err, "Orphan sweep failed; trying again at the next interval.");
            }
        }));
    }

    fn watchdog(&mut self, ctx: &mut Context<Self>) {
        if let Some(started) = self.running {
            if started.elapsed() >= STUCK_AFTER {
                warn!(
                    running_s = started.elapsed().as_secs(),
                    "The orphan sweep has not finished; restarting the sweeper."
                );
                ctx.stop();
            }
        }
    }
}

impl Actor for Sweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Also after each restart: the old context's timers went with it.
        if self.stopping || self.every.is_zero() {
            return;
        }
        ctx.run_interval(self.every, |act, ctx| act.tick(ctx));
        ctx.run_interval(WATCHDOG_EVERY, |act, ctx| act.watchdog(ctx));
    }
}

impl Supervised for Sweeper {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The sweep in flight was a future of the old context and is gone.
        self.running = None;
        if !self.stopping {
            self.restarts += 1;
        }
    }
}

/// Stops sweeping for good; a sweep in flight is dropped.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopSweeping;

impl Handler<StopSweeping> for Sweeper {
    type Result = ();

    fn handle(&mut self, _: StopSweeping, ctx: &mut Context<Self>) {
        self.stopping = true;
        ctx.stop();
    }
}

/// How many times the supervisor restarted the sweeper after a wedged sweep.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "u64")]
pub struct Restarts;

impl Handler<Restarts> for Sweeper {
    type Result = u64;

    fn handle(&mut self, _: Restarts, _ctx: &mut Context<Self>) -> u64 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::cell::{Cell, RefCell};

    const EVERY: Duration = Duration::from_secs(60);

    /// What the scripted sweeps saw: start times (from the test's start), and the most sweeps
    /// running at once.
    #[derive(Default)]
    struct Log {
        starts: RefCell<Vec<Duration>>,
        running: Cell<usize>,
        most_at_once: Cell<usize>,
    }

    struct Over(Rc<Log>);

    impl Drop for Over {
        fn drop(&mut self) {
            self.0.running.set(self.0.running.get() - 1);
        }
    }

    /// Sweeps that take `takes(n)` for the n-th sweep (`None`: never finish).
    fn scripted(takes: impl Fn(usize) -> Option<Duration> + 'static) -> (SweepFn, Rc<Log>) {
        let log = Rc::new(Log::default());
        let start = Instant::now();
        let l = Rc::clone(&log);
        let sweep: SweepFn = Rc::new(move || {
            let n = l.starts.borrow().len();
            l.starts.borrow_mut().push(start.elapsed());
            let log = Rc::clone(&l);
            let takes = takes(n);
            async move {
                log.running.set(log.running.get() + 1);
                log.most_at_once
                    .set(log.most_at_once.get().max(log.running.get()));
                // Counts the sweep as over when it ends or is dropped.
                let _over = Over(log);
                match takes {
                    Some(d) => tokio::time::sleep(d).await,
                    None => futures::future::pending::<()>().await,
                }
                Ok(SweepReport::default())
            }
            .boxed_local()
        });
        (sweep, log)
    }

    fn starts(log: &Log) -> Vec<u64> {
        log.starts.borrow().iter().map(|d| d.as_secs()).collect()
    }

    #[actix_rt::test]
    async fn sweeps_every_interval_one_at_a_time() {
        tokio::time::pause();
        // The second sweep takes two and a half intervals.
        let (sweep, log) = scripted(|n| Some(if n == 1 { EVERY * 5 / 2 } else { EVERY / 10 }));
        let sweeper = Supervisor::start(move |_| Sweeper::new(sweep, EVERY));
        tokio::time::sleep(EVERY * 6 + EVERY / 2).await;
        // At 60 and 120; the ticks at 180 and 240 fall within the long sweep (until 270) and are
        // skipped; then 300 and 360.
        assert_eq!(starts(&log), vec![60, 120, 300, 360]);
        assert_eq!(log.most_at_once.get(), 1);
        assert_eq!(sweeper.send(Restarts).await.expect("running"), 0);
    }

    #[actix_rt::test]
    async fn a_wedged_sweep_restarts_the_sweeper_which_sweeps_again() {
        tokio::time::pause();
        let (sweep, log) = scripted(|n| if n == 0 { None } else { Some(EVERY / 10) });
        let sweeper = Supervisor::start(move |_| Sweeper::new(sweep, EVERY));
        let start = Instant::now();
        let deadline = start + STUCK_AFTER + EVERY * 10;
        while sweeper.send(Restarts).await.expect("running") == 0 {
            assert!(Instant::now() < deadline, "never restarted");
            tokio::time::sleep(WATCHDOG_EVERY).await;
        }
        let restarted_after = start.elapsed();
        assert!(
            restarted_after >= STUCK_AFTER + EVERY
                && restarted_after <= STUCK_AFTER + EVERY + WATCHDOG_EVERY * 2,
            "{restarted_after:?}"
        );
        // Nothing else ran meanwhile: the wedged sweep held the only slot. The restart
        // dropped it.
        assert_eq!(log.starts.borrow().len(), 1);
        assert_eq!(log.running.get(), 0);
        // Sweeping resumes one interval later, still one at a time.
        tokio::time::sleep(EVERY * 2 + EVERY / 2).await;
        assert_eq!(log.starts.borrow().len(), 3);
        assert_eq!(log.most_at_once.get(), 1);
    }

    #[actix_rt::test]
    async fn stop_sweeping_ends_it_for_good() {
        tokio::time::pause();
        let (sweep, log) = scripted(|_| Some(EVERY * 2));
        let sweeper = Supervisor::start(move |_| Sweeper::new(sweep, EVERY));
        tokio::time::sleep(EVERY + EVERY / 2).await;
        assert_eq!(starts(&log), vec![60]);
        sweeper.send(StopSweeping).await.expect("running");
        tokio::time::sleep(EVERY * 10).await;
        // The sweep in flight was dropped and none started since; the supervisor kept the
        // actor, which answers but does nothing.
        assert_eq!(starts(&log), vec![60]);
        assert_eq!(log.running.get(), 0);
        assert_eq!(sweeper.send(Restarts).await.expect("answers"), 0);
    }
}
