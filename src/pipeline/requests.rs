//! `Requests`: the registry that maps a request id to its `RequestActor`, starting one on first
//! sight and forgetting it when it reports that it is finished. It also holds what every
//! request actor shares: the effects, the settings, a bound on steps in flight, and the drain
//! switch used at shutdown. It takes the resync listing a page at a time, with back-pressure
//! (see [`crate::pipeline::resync`]).
//!
//! A resync lists every request, and most of a large backlog has nothing left to do (its alert
//! is open and nobody has decided yet, or it is closed). So the registry reads the progress of
//! a listed request it does not hold itself, several reads at once, and only a request with a
//! step to take gets an actor, which starts from that progress instead of reading it again.
//! An actor for each would cost its start, a mailbox, a task and a permit, and the reads one
//! after another would make the listing's time a sum of round trips.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use actix::prelude::*;
use futures::stream::{self, StreamExt};
use tokio::sync::oneshot;
use tracing::info;

use crate::core::model::{AccessRequest, Snapshot};
use crate::core::plan::{self, Step};
use crate::core::plugin_data::PluginData;
use crate::pipeline::reconcile::{EffectError, Effects};
use crate::pipeline::request::{Observe, Origin, RequestActor};
use crate::pipeline::resync::{Resync, Unlisted};
use crate::pipeline::shared::{Finished, Shared};

/// Above this many entries, an empty waiting queue gives its memory back: after a burst of
/// thousands of requests the maps would otherwise keep their peak capacity for good.
const SHRINK_ABOVE: usize = 1024;

/// Plugin-data reads a resync page has in flight at once: enough that a page's time is not a
/// sum of round trips, and that HTTP/2 and TLS carry many calls per frame batch and syscall
/// (measured with a 100,000 backlog: 32 in flight cost 49 µs of CPU per request and 7.5 s,
/// 128 cost 33-38 µs and 5.3-6.0 s, 500 no faster and 6 MiB more memory). The HTTP/2
/// connection still honours the server's limit on concurrent streams.
const RESYNC_READS: usize = 128;

/// Asks how many requests have work in hand: running actors, and requests waiting for room.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct CountActive;

/// The registry of request actors.
///
/// At most `max_active` request actors run at once. Requests beyond that wait as bare snapshots
/// (the newest one per request) in arrival order, which costs a fraction of an actor's memory
/// when thousands of requests arrive together or a large backlog is resynced.
///
/// A resync page is answered once at most `max_active` requests wait (see
/// [`crate::pipeline::resync`]): the listing then holds at most that many snapshots plus a page.
pub struct Requests<E: Effects + 'static> {
    shared: Rc<Shared<E>>,
    actors: HashMap<String, Addr<RequestActor<E>>>,
    waiting: HashMap<String, Snapshot>,
    queue: VecDeque<String>,
    max_active: usize,
    /// What a resync in progress has not listed yet, of what the registry held when it began.
    unlisted: Unlisted,
    /// The answer to the resync page being held back until there is room.
    room: Option<oneshot::Sender<()>>,
    /// Counts listings begun, so that a page of a listing that was given up (a reconnect)
    /// does not hold back the next listing's pages.
    listing: u64,
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
            unlisted: Unlisted::default(),
            room: None,
            listing: 0,
        }
    }

    /// Takes the newest snapshot of a request: to its actor, a new actor, or the waiting queue.
    fn observe(&mut self, snapshot: Snapshot, origin: Origin, ctx: &mut Context<Self>) {
        self.count(&snapshot);
        self.place(snapshot, origin, None, ctx);
    }

    /// A snapshot heard of, whatever becomes of it.
    fn count(&mut self, snapshot: &Snapshot) {
        self.shared.metrics.observed(snapshot);
        self.unlisted.seen(snapshot.id());
    }

    /// Hands `snapshot` to its actor, a new actor (starting from `progress` if it was just
    /// read), or the waiting queue (where `progress` would grow stale, so it is dropped).
    fn place(
        &mut self,
        snapshot: Snapshot,
        origin: Origin,
        progress: Option<PluginData>,
        ctx: &mut Context<Self>,
    ) {
        let id = snapshot.id();
        if let Some(addr) = self.actors.get(id) {
            if addr.connected() {
                addr.do_send(Observe(snapshot, origin));
                return;
            }
            self.actors.remove(id);
        }
        if let Some(waiting) = self.waiting.get_mut(id) {
            if plan::supersedes(&snapshot, waiting) {
                *waiting = snapshot;
            }
        } else if self.actors.len() < self.max_active {
            self.start_actor(snapshot, origin, progress, ctx);
        } else {
            let id = id.to_owned();
            self.waiting.insert(id.clone(), snapshot);
            self.queue.push_back(id);
        }
    }

    /// Takes a resync page: requests in hand go to their actors as before; the progress of the
    /// others is read, [`RESYNC_READS`] at a time, and only those with a step to take are
    /// placed. Answered once the reads are done and the queue has room.
    fn take_page(
        &mut self,
        requests: Vec<AccessRequest>,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, ()> {
        let mut unread = Vec::with_capacity(requests.len());
        for request in requests {
            let snapshot = Snapshot::Present(request);
            if self.shared.is_draining() || self.holds(snapshot.id()) {
                self.observe(snapshot, Origin::Resync, ctx);
            } else {
                self.count(&snapshot);
                unread.push(snapshot);
            }
        }
        let shared = Rc::clone(&self.shared);
        let reads = stream::iter(unread)
            .map(move |snapshot| {
                let shared = Rc::clone(&shared);
                async move {
                    let progress = shared.effects.read(snapshot.id()).await;
                    (snapshot, progress)
                }
            })
            .buffer_unordered(RESYNC_READS)
            .collect::<Vec<_>>();
        let listing = self.listing;
        Box::pin(
            reads
                .into_actor(self)
                .map(move |read, act, ctx| {
                    // A listing that began while these were read (a reconnect) lists every
                    // request again, from a newer state, and only what is in hand when it
                    // begins can be found gone: placing these now could act on a request
                    // deleted meanwhile, so they are left to it.
                    let current = act.listing == listing;
                    if current {
                        for (snapshot, progress) in read {
                            act.settle(snapshot, progress, ctx);
                        }
                    }
                    let (tx, rx) = oneshot::channel();
                    if act.has_room() || !current {
                        let _ = tx.send(());
                    } else {
                        // Answered by `admit` once enough of the queue has started.
                        act.room = Some(tx);
                    }
                    rx
                })
                .then(|rx, _, _| {
                    fut::wrap_future(async move {
                        // A dropped sender (a new listing began) lets the page go too.
                        let _ = rx.await;
                    })
                }),
        )
    }

    /// What to do with a listed request once its progress is read: nothing, when nothing is
    /// left to do (what its actor would have found before stopping at once), else place it.
    /// A failed read places it without progress: its actor reads again and retries as its
    /// error policy says.
    fn settle(
        &mut self,
        snapshot: Snapshot,
        progress: Result<PluginData, EffectError>,
        ctx: &mut Context<Self>,
    ) {
        match progress {
            Ok(data) => {
                // Something else may have brought the request in hand while it was read.
                let idle = !self.holds(snapshot.id())
                    && matches!(
                        plan::next_step(&snapshot, &data, self.shared.settings.plan()),
                        Step::Finished | Step::Wait
                    );
                if !idle {
                    self.place(snapshot, Origin::Resync, Some(data), ctx);
                }
            }
            Err(_) => self.place(snapshot, Origin::Resync, None, ctx),
        }
    }

    /// Whether the registry is working on `id`: an actor runs for it, or it waits for one.
    fn holds(&self, id: &str) -> bool {
        self.waiting.contains_key(id) || self.actors.get(id).is_some_and(Addr::connected)
    }

    fn start_actor(
        &mut self,
        snapshot: Snapshot,
        origin: Origin,
        progress: Option<PluginData>,
        ctx: &mut Context<Self>,
    ) {
        let id = snapshot.id().to_owned();
        let mut actor = RequestActor::new(
            snapshot,
            origin,
            Rc::clone(&self.shared),
            ctx.address().recipient(),
        );
        if let Some(data) = progress {
            actor = actor.with_progress(data);
        }
        self.actors.insert(id, actor.start());
    }

    /// Starts waiting requests while there is room, then lets a held resync page through if
    /// the queue is short enough again.
    fn admit(&mut self, ctx: &mut Context<Self>) {
        while self.actors.len() < self.max_active {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            if let Some(snapshot) = self.waiting.remove(&id) {
                // It waited: by now anything may have happened to it, so read first.
                self.start_actor(snapshot, Origin::Resync, None, ctx);
            }
        }
        if self.waiting.is_empty() && self.waiting.capacity() > SHRINK_ABOVE {
            self.waiting.shrink_to_fit();
            self.queue.shrink_to_fit();
        }
        if self.has_room() {
            if let Some(room) = self.room.take() {
                // The event stream may have gone (a reconnect): then nobody waits for this.
                let _ = room.send(());
            }
        }
    }

    fn has_room(&self) -> bool {
        self.waiting.len() <= self.max_active
    }
}

impl<E: Effects + 'static> Actor for Requests<E> {
    type Context = Context<Self>;
}

impl<E: Effects + 'static> Handler<Observe> for Requests<E> {
    type Result = ();

    fn handle(&mut self, Observe(snapshot, origin): Observe, ctx: &mut Self::Context) {
        self.observe(snapshot, origin, ctx);
    }
}

impl<E: Effects + 'static> Handler<Resync> for Requests<E> {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Resync, ctx: &mut Self::Context) -> Self::Result {
        match msg {
            Resync::Begin => {
                // A page held from a listing that never ended has nobody waiting for it.
                self.room = None;
                self.listing += 1;
                self.unlisted
                    .begin(self.actors.keys().chain(self.waiting.keys()));
            }
            Resync::Page(requests) => return self.take_page(requests, ctx),
            Resync::End { complete } => {
                let gone: Vec<String> = self
                    .unlisted
                    .end(complete)
                    .into_iter()
                    .filter(|id| self.holds(id))
                    .collect();
                if !gone.is_empty() {
                    info!(
                        requests = gone.len(),
                        "Requests in hand were deleted while the watch was down; handling them as deleted."
                    );
                }
                for id in gone {
                    self.observe(Snapshot::Gone { id }, Origin::Resync, ctx);
                }
            }
        }
        Box::pin(fut::ready(()))
    }
}

impl<E: Effects + 'static> Handler<Finished> for Requests<E> {
    type Result = ();

    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        // Only forget a stopped actor: a newer one may already serve the same id.
        if let Some(addr) = self.actors.get(&msg.id) {
            if !addr.connected() {
                self.actors.remove(&msg.id);
                // No longer in hand: a resync has nothing to tell it.
                self.unlisted.seen(&msg.id);
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
    use crate::core::plugin_data::{Claim, PluginData};
    use crate::pipeline::reconcile::tests::{settings, Memory};
    use std::collections::BTreeMap;
    use std::time::Duration;
    use tokio::time::Instant;

    fn pending(id: &str) -> Snapshot {
        Snapshot::Present(pending_request(id))
    }

    fn pending_request(id: &str) -> AccessRequest {
        AccessRequest::example(id, "alice", &["editor"])
    }

    fn creates(shared: &Shared<Memory>) -> usize {
        shared
            .effects
            .calls
            .borrow()
            .iter()
            .filter(|c| *c == "create_alert")
            .count()
    }

    /// How many snapshots of deleted requests the registry has taken.
    fn deleted(shared: &Shared<Memory>) -> bool {
        shared
            .metrics
            .render()
            .lines()
            .any(|l| l.starts_with("teleport_opsgenie_requests_observed_total{state=\"deleted\"}"))
    }

    fn one_permit() -> Rc<Shared<Memory>> {
        Rc::new(Shared::new(
            Memory::default(),
            settings("me"),
            1,
            Duration::from_millis(5),
            Duration::from_millis(50),
        ))
    }

    #[actix_rt::test]
    async fn a_resync_page_is_answered_only_once_the_queue_has_room() {
        // One permit: at most two actors at once, and a page is answered once at most two
        // requests wait.
        let shared = one_permit();
        let registry = Requests::new(Rc::clone(&shared)).start();
        registry.send(Resync::Begin).await.expect("registry");
        let page: Vec<AccessRequest> = (0..10).map(|i| pending_request(&format!("r{i}"))).collect();
        registry.send(Resync::Page(page)).await.expect("registry");
        // Answered: at most 2 run and 2 wait, so at least 6 were handled (their alerts
        // created) before the event stream could fetch the next page.
        let handled = creates(&shared);
        assert!(
            handled >= 6,
            "answered after only {handled} requests were handled"
        );
        registry
            .send(Resync::End { complete: true })
            .await
            .expect("registry");
        let deadline = Instant::now() + Duration::from_secs(10);
        while creates(&shared) < 10 || registry.send(CountActive).await.expect("registry") > 0 {
            assert!(Instant::now() < deadline, "{} alerts", creates(&shared));
            tokio::task::yield_now().await;
        }
        assert!(
            !deleted(&shared),
            "nothing was in hand when the listing began"
        );
    }

    #[actix_rt::test]
    async fn a_request_in_hand_that_a_complete_listing_lacks_is_handled_as_deleted() {
        let shared = one_permit();
        // Another replica holds "held" for a long while: its actor stays, waiting.
        let claimed = PluginData {
            claim: Some(Claim {
                holder: "other".into(),
                until_ms: u64::MAX / 2,
            }),
            ..PluginData::default()
        };
        shared
            .effects
            .write("held", claimed.encode(), BTreeMap::new())
            .await
            .expect("write");
        let registry = Requests::new(Rc::clone(&shared)).start();
        registry.do_send(Observe(pending("held"), Origin::Resync));
        assert_eq!(registry.send(CountActive).await.expect("registry"), 1);

        // A listing that stopped early proves nothing.
        registry.send(Resync::Begin).await.expect("registry");
        registry
            .send(Resync::Page(vec![pending_request("listed")]))
            .await
            .expect("registry");
        registry
            .send(Resync::End { complete: false })
            .await
            .expect("registry");
        assert!(!deleted(&shared));

        // A complete one without "held": it was deleted while the watch was down.
        registry.send(Resync::Begin).await.expect("registry");
        registry
            .send(Resync::Page(vec![pending_request("listed")]))
            .await
            .expect("registry");
        registry
            .send(Resync::End { complete: true })
            .await
            .expect("registry");
        let text = shared.metrics.render();
        assert!(
            text.contains("teleport_opsgenie_requests_observed_total{state=\"deleted\"} 1"),
            "{text}"
        );
    }

    #[actix_rt::test]
    async fn a_resync_reads_each_request_once_and_holds_only_those_with_work() {
        // One permit: at most two actors at once. Twenty listed requests already have their
        // alerts (nothing to do until someone decides), two have none yet.
        let shared = Rc::new(Shared::new(
            Memory::default(),
            settings("me"),
            1,
            Duration::from_millis(5),
            Duration::from_millis(50),
        ));
        let handled = PluginData {
            alert_id: "alert".into(),
            user: "alice".into(),
            ..PluginData::default()
        };
        let mut page = Vec::new();
        for i in 0..20 {
            let id = format!("done{i}");
            shared
                .effects
                .write(&id, handled.encode(), BTreeMap::new())
                .await
                .expect("write");
            page.push(pending_request(&id));
        }
        page.push(pending_request("new1"));
        page.push(pending_request("new2"));
        let registry = Requests::new(Rc::clone(&shared)).start();
        registry.send(Resync::Begin).await.expect("registry");
        registry.send(Resync::Page(page)).await.expect("registry");
        // Answered at once: the twenty idle requests never took an actor or a queue slot, so
        // only the two with work are in hand.
        let in_hand = registry.send(CountActive).await.expect("registry");
        assert!(in_hand <= 2, "{in_hand} requests in hand");
        registry
            .send(Resync::End { complete: true })
            .await
            .expect("registry");
        let deadline = Instant::now() + Duration::from_secs(10);
        while creates(&shared) < 2 || registry.send(CountActive).await.expect("registry") > 0 {
            assert!(Instant::now() < deadline, "{} alerts", creates(&shared));
            tokio::task::yield_now().await;
        }
        assert_eq!(creates(&shared), 2, "only the new ones get alerts");
        // One read each: the actors of the two new ones started from what the resync read.
        assert_eq!(shared.effects.reads(), 22);
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
