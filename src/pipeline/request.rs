//! `RequestActor`: one per access request id. It keeps only the newest snapshot of its request
//! (never a queue of stale ones) and runs reconcile steps one at a time until there is nothing
//! left to do. What a failure means is `error_policy`'s decision; the actor carries it out
//! (retries wait for the crate's [`Backoff`]) and stops when its request is finished.

use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{error, info_span, warn, Instrument};

use crate::backend::backoff::Backoff;
use crate::core::model::{RequestState, Snapshot};
use crate::core::plan;
use crate::core::plugin_data::PluginData;
use crate::core::render;
use crate::pipeline::error_policy::{self, Action};
use crate::pipeline::reconcile::{self, EffectError, Effects, Next, Reconciled};
use crate::pipeline::shared::{Finished, Shared};

/// The longest wait before looking again at a request another replica has claimed.
const CLAIM_RECHECK: Duration = Duration::from_secs(1);

/// The newest thing Teleport said about a request, and where it was heard.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Observe(pub Snapshot, pub Origin);

/// Where a snapshot comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The listing after a (re)connect: anything may already have been done for it.
    Resync,
    /// A change reported by the watch as it happened.
    Live,
}

/// Reconciles one request.
pub struct RequestActor<E: Effects + 'static> {
    id: String,
    shared: Rc<Shared<E>>,
    registry: Recipient<Finished>,
    latest: Snapshot,
    cached: Option<PluginData>,
    running: bool,
    /// A snapshot arrived while a step was running.
    dirty: bool,
    retry: Backoff,
    timer: Option<SpawnHandle>,
}

impl<E: Effects + 'static> RequestActor<E> {
    /// A new actor for the request in `snapshot`.
    pub fn new(
        snapshot: Snapshot,
        origin: Origin,
        shared: Rc<Shared<E>>,
        registry: Recipient<Finished>,
    ) -> Self {
        let retry = Backoff::new(shared.retry_min, shared.retry_max);
        // A request just created in Teleport has no progress yet: claiming it expecting none
        // saves a round trip on the way to its alert (see `Settings::claim_new_without_reading`).
        let brand_new = origin == Origin::Live
            && shared.settings.claim_new_without_reading
            && matches!(&snapshot, Snapshot::Present(r)
                if r.state == RequestState::Pending && r.reviews.is_empty());
        Self {
            id: snapshot.id().to_owned(),
            shared,
            registry,
            latest: snapshot,
            cached: brand_new.then(PluginData::default),
            running: false,
            dirty: false,
            retry,
            timer: None,
        }
    }

    /// Starts from progress the caller has just read (the resync's reads), so the first step
    /// needs no read of its own.
    pub fn with_progress(mut self, data: PluginData) -> Self {
        self.cached = Some(data);
        self
    }

    fn run(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.shared.is_draining() {
            return;
        }
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        self.running = true;
        self.dirty = false;
        let shared = Rc::clone(&self.shared);
        let snapshot = self.latest.clone();
        let cached = self.cached.take();
        // Every line logged during the step (effects, gateway answers) carries the request.
        let span = info_span!("step", request_id = %self.id, alias = %render::alias(&self.id));
        // Learning an alert id is mostly waiting for the backend (polls 100 ms and more apart,
        // bounded by the gateway's own limits), so it does not take one of the permits: holding
        // a permit through the waits would cap every other request's steps at a few hundred
        // per processing delay.
        let waits_for_backend = cached.as_ref().is_some_and(|data| {
            plan::next_step(&snapshot, data, shared.settings.plan()) == plan::Step::ResolveAlertId
        });
        let fut = async move {
            let _permit = if waits_for_backend {
                None
            } else {
                Some(shared.permits.acquire().await)
            };
            if shared.is_draining() {
                // Shutdown began while this step waited for a permit: it never claimed anything,
                // so there is nothing to release; the next process picks the request up.
                return Err(EffectError::Cancelled);
            }
            let _in_flight = shared.in_flight();
            reconcile::step(&shared.effects, &shared.settings, &snapshot, cached).await
        }
        .instrument(span);
        ctx.spawn(
            fut.into_actor(self)
                .map(|result, act, ctx| act.after(result, ctx)),
        );
    }

    fn after(&mut self, result: Result<Reconciled, EffectError>, ctx: &mut Context<Self>) {
        self.running = false;
        self.shared.metrics.step_done(&result);
        match result {
            Ok(done) => {
                self.retry.reset();
                self.cached = Some(done.data);
                match done.next {
                    Next::Continue => self.run(ctx),
                    Next::Idle | Next::Finished if self.dirty => self.run(ctx),
                    // Nothing to do until Teleport says something new: give the memory back.
                    // The next event starts a fresh actor, which reads the progress again.
                    Next::Idle | Next::Finished => self.release(ctx),
                    Next::DueAt(at) => self.wake_at(at, ctx),
                    Next::WaitUntil(until) => {
                        // Another replica is acting. Look again soon rather than at its claim's
                        // deadline: it usually finishes in milliseconds, and then so do we.
                        let delay = until
                            .duration_since(self.shared.effects.now())
                            .unwrap_or_default()
                            .min(CLAIM_RECHECK);
                        self.run_later(delay, ctx);
                    }
                }
            }
            Err(err) => {
                self.cached = None;
                match error_policy::action(&err) {
                    Action::Reread => {
                        // Someone else changed the request's progress: re-read and re-plan now.
                        self.run(ctx);
                    }
                    Action::Retry { verify } => {
                        let delay = self.retry.next_delay();
                        warn!(request_id = %self.id, alias = %render::alias(&self.id), error = %err, verify, retry_in_ms = delay.as_millis() as u64, "Step failed; will retry.");
                        self.run_later(delay, ctx);
                    }
                    Action::WaitForChange { reason } => {
                        self.shared.count_permanent_failure();
                        error!(request_id = %self.id, alias = %render::alias(&self.id), error = %reason, "Step refused; will try again when the request changes or the daemon restarts.");
                        // "When the request changes": if it already has, during this step, try
                        // again now; otherwise give the slot back until it does.
                        if self.dirty {
                            self.run(ctx);
                        } else {
                            self.release(ctx);
                        }
                    }
                    Action::GiveUp { reason } => {
                        warn!(request_id = %self.id, alias = %render::alias(&self.id), %reason, "Giving up on the request.");
                        self.release(ctx);
                    }
                }
            }
        }
    }

    /// Stops this actor and tells the registry, which may start another in its place.
    fn release(&mut self, ctx: &mut Context<Self>) {
        self.registry.do_send(Finished {
            id: self.id.clone(),
        });
        ctx.stop();
    }

    /// Runs again when the effects' clock reads `at` (a step that falls due then), keeping the
    /// actor, and so the request, in hand meanwhile.
    fn wake_at(&mut self, at: std::time::SystemTime, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        let shared = Rc::clone(&self.shared);
        let wait = async move { shared.effects.sleep_until(at).await };
        self.timer = Some(ctx.spawn(wait.into_actor(self).map(|(), act, ctx| {
            act.timer = None;
            act.run(ctx);
        })));
    }

    fn run_later(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.run(ctx);
        }));
    }
}

impl<E: Effects + 'static> Actor for RequestActor<E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.run(ctx);
    }
}

impl<E: Effects + 'static> Handler<Observe> for RequestActor<E> {
    type Result = ();

    fn handle(&mut self, Observe(snapshot, _): Observe, ctx: &mut Self::Context) {
        if !plan::supersedes(&snapshot, &self.latest) {
            return;
        }
        self.latest = snapshot;
        if self.running {
            self.dirty = true;
        } else if self.timer.is_none() {
            self.run(ctx);
        }
    }
}
