//! `EventStream`: owns Teleport's watch of access requests.
//!
//! After each (re)connect it waits for the server's INIT event, then lists every access request
//! and hands a snapshot of each to the registry (Teleport's watch only delivers changes made
//! after INIT, so without this resync anything that happened while we were away would be
//! missed). Then it forwards each PUT and DELETE. When the stream ends, fails or goes silent it
//! stops itself, and its supervisor restarts it after a jittered backoff (about 20 ms rising to
//! 5 s, reset after a healthy minute).
//!
//! The listing is handed over a page at a time, and the page after next is fetched only once the
//! registry has taken the last one ([`crate::pipeline::resync`]), so a backlog of any size
//! costs a page or two of memory. Watch events wait meanwhile (in the stream, at the server):
//! they come after the listing, as they always did, so a listed snapshot can never overtake a
//! newer event (a deletion followed by the stale listed request would bring it back).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use futures::stream::LocalBoxStream;
use futures::StreamExt;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::backend::backoff::Backoff;
use crate::core::model::Snapshot;
use crate::pipeline::request::{Observe, Origin};
use crate::pipeline::resync::Resync;
use crate::teleport::client::Listed;
use crate::teleport::error::TeleportError;

/// One event of the watch, decoded.
// Nearly every event is `Observed`; boxing it would add an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The server's handshake: the watch is established.
    Init,
    /// A request changed or went away.
    Observed(Snapshot),
    /// Something we do not act on (another kind, an undecodable request).
    Ignored,
}

/// Why the watch or the listing failed. Always retried: the supervisor reconnects (with the
/// crate's backoff); the error is kept typed for the log line that says why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// Teleport refused or failed the watch or the listing.
    #[error(transparent)]
    Teleport(Arc<TeleportError>),
    /// The watch opened with something other than its INIT event.
    #[error("the watch's first event was not INIT but {first}")]
    NotInit {
        /// What came first.
        first: String,
    },
    /// The watch ended before its INIT event.
    #[error("the watch ended before INIT")]
    EndedBeforeInit,
    /// No INIT event came in time.
    #[error("no INIT event within {}s", .0.as_secs())]
    NoInit(Duration),
    /// The request registry stopped while the listing was being handed over (shutdown).
    #[error("the request registry stopped during the resync")]
    RegistryStopped,
}

impl From<TeleportError> for SourceError {
    fn from(err: TeleportError) -> Self {
        Self::Teleport(Arc::new(err))
    }
}

/// A stream of watch events.
pub type EventStreamOf = LocalBoxStream<'static, Result<WatchEvent, SourceError>>;

/// A listing of access requests, page by page (see [`Listed`]); it ends after the last page
/// and after an error.
pub type ListingOf = LocalBoxStream<'static, Result<Listed, SourceError>>;

/// Where events and listings come from: Teleport in the daemon, memory in tests.
pub trait EventSource: 'static {
    /// Opens a watch of access requests.
    fn watch(&self) -> LocalBoxFuture<'static, Result<EventStreamOf, SourceError>>;
    /// Lists every access request, fetching a page only when the stream is polled for it.
    fn list(&self) -> ListingOf;
}

/// What the rest of the daemon can see of the watch: for readiness and metrics.
#[derive(Debug, Default)]
pub struct WatchHealth {
    up: Cell<bool>,
    resynced: Cell<bool>,
    connects: Cell<u64>,
    resyncs: Cell<u64>,
    events: Cell<u64>,
}

impl WatchHealth {
    /// Whether the watch is established and its resync has been handed over.
    pub fn is_ready(&self) -> bool {
        self.up.get() && self.resynced.get()
    }
    /// Whether the watch is established.
    pub fn is_up(&self) -> bool {
        self.up.get()
    }
    /// Successful connects since start (the first one included).
    pub fn connects(&self) -> u64 {
        self.connects.get()
    }
    /// Completed resyncs since start.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.get()
    }
    /// Events forwarded since start.
    pub fn events(&self) -> u64 {
        self.events.get()
    }
}

/// Timing of the watch.
#[derive(Debug, Clone, Copy)]
pub struct WatchTiming {
    /// How long to wait for INIT after opening the watch.
    pub init_timeout: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// A connection that lived this long resets the backoff.
    pub healthy_after: Duration,
    /// A stream silent for this long is torn down and reopened (`None`: never).
    pub silence_timeout: Option<Duration>,
}

impl Default for WatchTiming {
    fn default() -> Self {
        Self {
            init_timeout: Duration::from_secs(15),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(5),
            healthy_after: Duration::from_secs(60),
            silence_timeout: None,
        }
    }
}

/// Asks the event stream to stop for good (shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopWatching;

/// Asks the event stream to reconnect now (for example after an identity change).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reconnect;

/// The watch of access requests. Start it under `actix::Supervisor`.
pub struct EventStream<S: EventSource> {
    source: Rc<S>,
    sink: Recipient<Observe>,
    resync: Recipient<Resync>,
    health: Rc<WatchHealth>,
    timing: WatchTiming,
    backoff: Backoff,
    started_once: bool,
    connected_at: Option<Instant>,
    last_event: Option<Instant>,
    stopping: bool,
}

impl<S: EventSource> EventStream<S> {
    /// A watch that feeds events to `sink` and each resync's listing to `resync` (the same
    /// registry in the daemon).
    pub fn new(
        source: Rc<S>,
        sink: Recipient<Observe>,
        resync: Recipient<Resync>,
        health: Rc<WatchHealth>,
        timing: WatchTiming,
    ) -> Self {
        Self {
            source,
            sink,
            resync,
            health,
            timing,
            backoff: Backoff::new(timing.backoff_min, timing.backoff_max),
            started_once: false,
            connected_at: None,
            last_event: None,
            stopping: false,
        }
    }

    /// Opens the watch and waits for INIT, then resyncs. Spawned rather than awaited by the
    /// context, so that `StopWatching` and `Reconnect` are heard during a long resync (stopping
    /// the actor drops the future).
    fn connect(&mut self, ctx: &mut Context<Self>) {
        let source = Rc::clone(&self.source);
        let init_timeout = self.timing.init_timeout;
        let fut = async move {
            let mut stream = source.watch().await?;
            match tokio::time::timeout(init_timeout, stream.next()).await {
                Ok(Some(Ok(WatchEvent::Init))) => Ok(stream),
                Ok(Some(Ok(other))) => Err(SourceError::NotInit {
                    first: format!("{other:?}"),
                }),
                Ok(Some(Err(err))) => Err(err),
                Ok(None) => Err(SourceError::EndedBeforeInit),
                Err(_) => Err(SourceError::NoInit(init_timeout)),
            }
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(stream) => {
                let now = Instant::now();
                act.connected_at = Some(now);
                act.health.up.set(true);
                act.health.connects.set(act.health.connects.get() + 1);
                info!("Watching access requests; resyncing.");
                act.start_resync(stream, ctx);
            }
            Err(err) => {
                warn!(error = %err, "Could not watch access requests; will reconnect.");
                ctx.stop();
            }
        }));
    }

    /// Lists every request and hands the pages over, then forwards the watch's events.
    fn start_resync(&mut self, stream: EventStreamOf, ctx: &mut Context<Self>) {
        let listing = self.source.list();
        let registry = self.resync.clone();
        let fut = hand_over(listing, registry);
        ctx.spawn(
            fut.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(listed) => {
                        info!(requests = listed, "Resync handed over.");
                        act.last_event = Some(Instant::now());
                        act.health.resynced.set(true);
                        act.health.resyncs.set(act.health.resyncs.get() + 1);
                        ctx.add_stream(stream);
                        act.watch_for_silence(ctx);
                    }
                    Err(err) => {
                        warn!(error = %err, "Could not resync access requests; will reconnect.");
                        ctx.stop();
                    }
                }),
        );
    }

    fn watch_for_silence(&mut self, ctx: &mut Context<Self>) {
        let Some(limit) = self.timing.silence_timeout else {
            return;
        };
        ctx.run_interval(limit / 4, move |act, ctx| {
            if let Some(last) = act.last_event {
                if last.elapsed() > limit {
                    warn!(
                        silent_for_s = limit.as_secs(),
                        "The watch went silent; reopening it."
                    );
                    ctx.stop();
                }
            }
        });
    }
}

/// Hands `listing` to `registry` page by page and returns how many requests were listed. The
/// next page is fetched while the registry takes the last one, so the two overlap; no page is
/// fetched beyond that, so at most two pages are held here.
async fn hand_over(
    mut listing: ListingOf,
    registry: Recipient<Resync>,
) -> Result<usize, SourceError> {
    let send = |msg: Resync| {
        let registry = registry.clone();
        async move {
            registry
                .send(msg)
                .await
                .map_err(|_| SourceError::RegistryStopped)
        }
    };
    send(Resync::Begin).await?;
    let mut listed = 0usize;
    let mut complete = true;
    let mut next = listing.next().await;
    while let Some(item) = next {
        match item? {
            Listed::Page(page) => {
                listed += page.len();
                let (sent, following) = futures::join!(send(Resync::Page(page)), listing.next());
                sent?;
                next = following;
            }
            Listed::Truncated => {
                complete = false;
                next = listing.next().await;
            }
        }
    }
    send(Resync::End { complete }).await?;
    Ok(listed)
}

impl<S: EventSource> Actor for EventStream<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.stopping {
            return;
        }
        if !self.started_once {
            self.started_once = true;
            self.connect(ctx);
            return;
        }
        let delay = self.backoff.next_delay();
        debug!(
            delay_ms = delay.as_millis() as u64,
            "Reconnecting the watch."
        );
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }
}

impl<S: EventSource> Supervised for EventStream<S> {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.health.up.set(false);
        self.health.resynced.set(false);
        if let Some(at) = self.connected_at.take() {
            if at.elapsed() >= self.timing.healthy_after {
                self.backoff.reset();
            }
        }
    }
}

impl<S: EventSource> StreamHandler<Result<WatchEvent, SourceError>> for EventStream<S> {
    fn handle(&mut self, event: Result<WatchEvent, SourceError>, ctx: &mut Self::Context) {
        self.last_event = Some(Instant::now());
        match event {
            Ok(WatchEvent::Observed(snapshot)) => {
                self.health.events.set(self.health.events.get() + 1);
                self.sink.do_send(Observe(snapshot, Origin::Live));
            }
            Ok(WatchEvent::Init | WatchEvent::Ignored) => {}
            Err(err) => {
                warn!(error = %err, "The watch failed; will reconnect.");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        info!("The watch ended; will reconnect.");
        ctx.stop();
    }
}

impl<S: EventSource> Handler<StopWatching> for EventStream<S> {
    type Result = ();

    fn handle(&mut self, _: StopWatching, ctx: &mut Self::Context) {
        self.stopping = true;
        self.health.up.set(false);
        ctx.stop();
    }
}

impl<S: EventSource> Handler<Reconnect> for EventStream<S> {
    type Result = ();

    fn handle(&mut self, _: Reconnect, ctx: &mut Self::Context) {
        info!("Reconnecting the watch.");
        self.backoff.reset();
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::AccessRequest;
    use std::cell::RefCell;
    use tokio::sync::{mpsc, Notify};

    /// A source whose watches are fed by the test, one channel per watch, and whose listing is
    /// scripted page by page.
    #[derive(Default)]
    struct Scripted {
        watches: RefCell<Vec<mpsc::UnboundedSender<Result<WatchEvent, SourceError>>>>,
        listing: RefCell<Vec<Result<Listed, SourceError>>>,
        /// How many items of any listing have been taken so far.
        pulled: Rc<Cell<usize>>,
    }

    impl EventSource for Scripted {
        fn watch(&self) -> LocalBoxFuture<'static, Result<EventStreamOf, SourceError>> {
            let (tx, rx) = mpsc::unbounded_channel();
            tx.send(Ok(WatchEvent::Init)).ok();
            self.watches.borrow_mut().push(tx);
            let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed_local();
            Box::pin(async move { Ok(stream) })
        }
        fn list(&self) -> ListingOf {
            let pulled = Rc::clone(&self.pulled);
            futures::stream::iter(self.listing.borrow().clone())
                .inspect(move |_| pulled.set(pulled.get() + 1))
                .boxed_local()
        }
    }

    /// What the stream handed over, in order.
    #[allow(clippy::large_enum_variant)] // a handful per test
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Seen {
        Event(Snapshot),
        Begin,
        Page(Vec<String>),
        End(bool),
    }

    /// Records what the stream forwards; while `hold` is set, a page is answered only when the
    /// test notifies `release`, as a busy registry answers late.
    struct Sink {
        seen: Rc<RefCell<Vec<Seen>>>,
        hold: Rc<Cell<bool>>,
        release: Rc<Notify>,
    }
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Observe> for Sink {
        type Result = ();
        fn handle(&mut self, msg: Observe, _: &mut Self::Context) {
            self.seen.borrow_mut().push(Seen::Event(msg.0));
        }
    }
    impl Handler<Resync> for Sink {
        type Result = ResponseFuture<()>;
        fn handle(&mut self, msg: Resync, _: &mut Self::Context) -> Self::Result {
            let seen = match msg {
                Resync::Begin => Seen::Begin,
                Resync::Page(page) => Seen::Page(page.into_iter().map(|r| r.id).collect()),
                Resync::End { complete } => Seen::End(complete),
            };
            let held = matches!(seen, Seen::Page(_)) && self.hold.get();
            self.seen.borrow_mut().push(seen);
            let release = Rc::clone(&self.release);
            Box::pin(async move {
                if held {
                    release.notified().await;
                }
            })
        }
    }

    fn request(id: &str) -> AccessRequest {
        AccessRequest::example(id, "u", &[])
    }

    fn page(ids: &[&str]) -> Result<Listed, SourceError> {
        Ok(Listed::Page(ids.iter().map(|id| request(id)).collect()))
    }

    fn ids(ids: &[&str]) -> Seen {
        Seen::Page(ids.iter().map(|id| (*id).to_owned()).collect())
    }

    struct Running {
        source: Rc<Scripted>,
        seen: Rc<RefCell<Vec<Seen>>>,
        hold: Rc<Cell<bool>>,
        release: Rc<Notify>,
        health: Rc<WatchHealth>,
        _stream: Addr<EventStream<Scripted>>,
    }

    fn start(listing: Vec<Result<Listed, SourceError>>, hold: bool) -> Running {
        let source = Rc::new(Scripted::default());
        *source.listing.borrow_mut() = listing;
        let seen = Rc::new(RefCell::new(vec![]));
        let hold = Rc::new(Cell::new(hold));
        let release = Rc::new(Notify::new());
        let sink = Sink {
            seen: Rc::clone(&seen),
            hold: Rc::clone(&hold),
            release: Rc::clone(&release),
        }
        .start();
        let health = Rc::new(WatchHealth::default());
        let (s, h) = (Rc::clone(&source), Rc::clone(&health));
        let stream = Supervisor::start(move |_| {
            EventStream::new(
                s,
                sink.clone().recipient(),
                sink.recipient(),
                h,
                WatchTiming::default(),
            )
        });
        Running {
            source,
            seen,
            hold,
            release,
            health,
            _stream: stream,
        }
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[actix_rt::test]
    async fn resyncs_after_every_connect_and_forwards_events() {
        let run = start(vec![page(&["old"])], false);
        until("first resync", || run.health.is_ready()).await;
        assert_eq!(
            *run.seen.borrow(),
            vec![Seen::Begin, ids(&["old"]), Seen::End(true)]
        );

        let gone = Snapshot::Gone { id: "x".into() };
        run.source.watches.borrow()[0]
            .send(Ok(WatchEvent::Observed(gone.clone())))
            .ok();
        until("event delivered", || run.seen.borrow().len() == 4).await;
        assert_eq!(run.seen.borrow()[3], Seen::Event(gone));

        // The stream fails: the supervisor reconnects and resyncs again.
        run.source.watches.borrow()[0]
            .send(Err(SourceError::EndedBeforeInit))
            .ok();
        until("second connect", || run.health.resyncs() == 2).await;
        assert_eq!(
            run.seen.borrow()[4..],
            [Seen::Begin, ids(&["old"]), Seen::End(true)]
        );
        assert_eq!(run.health.connects(), 2);
    }

    #[actix_rt::test]
    async fn no_page_is_fetched_beyond_the_one_after_the_page_the_registry_holds() {
        let run = start(vec![page(&["a"]), page(&["b"]), page(&["c"])], true);
        until("first page handed over", || run.seen.borrow().len() == 2).await;
        // The registry sits on the first page: the second is fetched meanwhile, but nothing
        // beyond it, and events wait behind the resync.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(run.source.pulled.get(), 2);
        assert!(run.health.is_up() && !run.health.is_ready());
        run.source.watches.borrow()[0]
            .send(Ok(WatchEvent::Observed(Snapshot::Gone { id: "x".into() })))
            .ok();
        run.release.notify_one();
        until("second page handed over", || run.seen.borrow().len() == 3).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(run.source.pulled.get(), 3);
        run.hold.set(false);
        run.release.notify_one();
        until("resynced", || run.health.is_ready()).await;
        until("the event, after the listing", || {
            run.seen.borrow().len() == 6
        })
        .await;
        assert_eq!(
            *run.seen.borrow(),
            vec![
                Seen::Begin,
                ids(&["a"]),
                ids(&["b"]),
                ids(&["c"]),
                Seen::End(true),
                Seen::Event(Snapshot::Gone { id: "x".into() }),
            ]
        );
    }

    #[actix_rt::test]
    async fn a_truncated_listing_ends_incomplete_and_a_failed_one_not_at_all() {
        let run = start(vec![page(&["a"]), Ok(Listed::Truncated)], false);
        until("resynced", || run.health.is_ready()).await;
        assert_eq!(
            *run.seen.borrow(),
            vec![Seen::Begin, ids(&["a"]), Seen::End(false)]
        );

        // A listing that fails half way is never ended: the registry concludes nothing from
        // it, and the reconnect begins a new one.
        *run.source.listing.borrow_mut() = vec![
            page(&["a"]),
            Err(SourceError::Teleport(Arc::new(TeleportError::Timeout {
                operation: crate::teleport::error::Operation::ListAccessRequests,
                after: Duration::from_secs(1),
            }))),
        ];
        run.source.watches.borrow()[0]
            .send(Err(SourceError::EndedBeforeInit))
            .ok();
        until("the failed listing", || run.seen.borrow().len() == 5).await;
        assert_eq!(run.seen.borrow()[3..], [Seen::Begin, ids(&["a"])]);
        assert!(!run.health.is_ready());
        *run.source.listing.borrow_mut() = vec![page(&["b"])];
        until("resynced again", || run.health.is_ready()).await;
        let seen = run.seen.borrow();
        let n = seen.len();
        assert_eq!(seen[n - 3..], [Seen::Begin, ids(&["b"]), Seen::End(true)]);
        // However often the failing listing was retried, none of its attempts was ended.
        assert!(!seen[3..n - 1].iter().any(|s| matches!(s, Seen::End(_))));
    }
}
