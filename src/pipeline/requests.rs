//! `Requests`: the registry that maps a request id to its `RequestActor`, starting one on first
//! sight and forgetting it when it reports that it is finished. It also holds what every
//! request actor shares: the effects, the settings, a bound on steps in flight, and the drain
//! switch used at shutdown.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use actix::prelude::*;

use crate::core::model::Snapshot;
use crate::core::plan;
use crate::pipeline::reconcile::Effects;
use crate::pipeline::request::{Observe, Origin, RequestActor};
use crate::pipeline::shared::{Finished, Shared};

/// Asks how many requests have work in hand: running actors, and requests waiting for room.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct CountActive;

/// The registry of request actors.
///
/// At most `max_active` request actors run at once. Requests beyond that wait as bare snapshots
/// (the newest one per request) in arrival order, which costs a fraction of an actor's memory
/// when thousands of requests arrive together or a large backlog is resynced.
pub struct Requests<E: Effects + 'static> {
    shared: Rc<Shared<E>>,
    actors: HashMap<String, Addr<RequestActor<E>>>,
    waiting: HashMap<String, Snapshot>,
    queue: VecDeque<String>,
    max_active: usize,
}

impl<E: Effects + 'static> Requests<E> {
    /// An empty registry running at most twice as many actors as steps may be in flight.
    pub fn new(shared: Rc<Shared<E>>) -> Self {
        let max_active = shared.permits.available_permits().saturating_mul(2).max(1);
        Self {
            shared,
            actors: HashMap::new(),
            waiting: HashMap::new(),
            queue: VecDeque::new(),
            max_active,
        }
    }

    fn start_actor(&mut self, snapshot: Snapshot, origin: Origin, ctx: &mut Context<Self>) {
        let id = snapshot.id().to_owned();
        let actor = RequestActor::new(
            snapshot,
            origin,
            Rc::clone(&self.shared),
            ctx.address().recipient(),
        );
        self.actors.insert(id, actor.start());
    }

    /// Starts waiting requests while there is room.
    fn admit(&mut self, ctx: &mut Context<Self>) {
        while self.actors.len() < self.max_active {
            let Some(id) = self.queue.pop_front() else {
                return;
            };
            if let Some(snapshot) = self.waiting.remove(&id) {
                // It waited: by now anything may have happened to it, so read first.
                self.start_actor(snapshot, Origin::Resync, ctx);
            }
        }
    }
}

impl<E: Effects + 'static> Actor for Requests<E> {
    type Context = Context<Self>;
}

impl<E: Effects + 'static> Handler<Observe> for Requests<E> {
    type Result = ();

    fn handle(&mut self, msg: Observe, ctx: &mut Self::Context) {
        self.shared.metrics.observed(&msg.0);
        let id = msg.0.id().to_owned();
        if let Some(addr) = self.actors.get(&id) {
            if addr.connected() {
                addr.do_send(msg);
                return;
            }
            self.actors.remove(&id);
        }
        if let Some(waiting) = self.waiting.get_mut(&id) {
            if plan::supersedes(&msg.0, waiting) {
                *waiting = msg.0;
            }
        } else if self.actors.len() < self.max_active {
            self.start_actor(msg.0, msg.1, ctx);
        } else {
            self.waiting.insert(id.clone(), msg.0);
            self.queue.push_back(id);
        }
    }
}

impl<E: Effects + 'static> Handler<Finished> for Requests<E> {
    type Result = ();

    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        // Only forget a stopped actor: a newer one may already serve the same id.
        if let Some(addr) = self.actors.get(&msg.id) {
            if !addr.connected() {
                self.actors.remove(&msg.id);
            }
        }
        self.admit(ctx);
    }
}

impl<E: Effects + 'static> Handler<CountActive> for Requests<E> {
    type Result = usize;

    fn handle(&mut self, _: CountActive, ctx: &mut Self::Context) -> usize {
        self.actors.retain(|_, addr| addr.connected());
        self.admit(ctx);
        self.actors.len() + self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::AccessRequest;
    use crate::pipeline::reconcile::tests::{settings, Memory};
    use std::time::Duration;
    use tokio::time::Instant;

    fn pending(id: &str) -> Snapshot {
        Snapshot::Present(AccessRequest::example(id, "alice", &["editor"]))
    }

    #[actix_rt::test]
    async fn requests_beyond_the_active_limit_wait_and_are_all_handled_once() {
        // One permit: at most two actors at once, so 30 requests mostly wait as snapshots.
        let shared = Rc::new(Shared::new(
            Memory::default(),
            settings("me"),
            1,
            Duration::from_millis(5),
            Duration::from_millis(50),
        ));
        let registry = Requests::new(Rc::clone(&shared)).start();
        for i in 0..30 {
            registry.do_send(Observe(pending(&format!("r{i}")), Origin::Live));
        }
        // Done when idle actors gave their memory back (nothing busy, nothing waiting) and
        // every request has exactly one alert: once idle, no further alert can come.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let creates = shared
                .effects
                .calls
                .borrow()
                .iter()
                .filter(|c| *c == "create_alert")
                .count();
            let busy = registry.send(CountActive).await.expect("registry");
            if creates == 30 && busy == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{creates} alerts, {busy} busy");
            tokio::task::yield_now().await;
        }
    }
}
