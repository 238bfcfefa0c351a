//! `EventStream`: owns Teleport's watch of access requests.
//!
//! After each (re)connect it waits for the server's INIT event, then lists every access request
//! and hands a snapshot of each to the registry (Teleport's watch only delivers changes made
//! after INIT, so without this resync anything that happened while we were away would be
//! missed). Then it forwards each PUT and DELETE. When the stream ends, fails or goes silent it
//! stops itself, and its supervisor restarts it after a jittered backoff (about 20 ms rising to
//! 5 s, reset after a healthy minute).

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
use crate::core::model::{AccessRequest, Snapshot};
use crate::pipeline::request::{Observe, Origin};
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
}

impl From<TeleportError> for SourceError {
    fn from(err: TeleportError) -> Self {
        Self::Teleport(Arc::new(err))
    }
}

/// A stream of watch events.
pub type EventStreamOf = LocalBoxStream<'static, Result<WatchEvent, SourceError>>;

/// Where events and listings come from: Teleport in the daemon, memory in tests.
pub trait EventSource: 'static {
    /// Opens a watch of access requests.
    fn watch(&self) -> LocalBoxFuture<'static, Result<EventStreamOf, SourceError>>;
    /// Lists every access request.
    fn list(&self) -> LocalBoxFuture<'static, Result<Vec<AccessRequest>, SourceError>>;
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
    health: Rc<WatchHealth>,
    timing: WatchTiming,
    backoff: Backoff,
    started_once: bool,
    connected_at: Option<Instant>,
    last_event: Option<Instant>,
    stopping: bool,
}

impl<S: EventSource> EventStream<S> {
    /// A watch that feeds `sink`.
    pub fn new(
        source: Rc<S>,
        sink: Recipient<Observe>,
        health: Rc<WatchHealth>,
        timing: WatchTiming,
    ) -> Self {
        Self {
            source,
            sink,
            health,
            timing,
            backoff: Backoff::new(timing.backoff_min, timing.backoff_max),
            started_once: false,
            connected_at: None,
            last_event: None,
            stopping: false,
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let source = Rc::clone(&self.source);
        let init_timeout = self.timing.init_timeout;
        let fut = async move {
            let mut stream = source.watch().await?;
            match tokio::time::timeout(init_timeout, stream.next()).await {
                Ok(Some(Ok(WatchEvent::Init))) => {}
                Ok(Some(Ok(other))) => {
                    return Err(SourceError::NotInit {
                        first: format!("{other:?}"),
                    })
                }
                Ok(Some(Err(err))) => return Err(err),
                Ok(None) => return Err(SourceError::EndedBeforeInit),
                Err(_) => return Err(SourceError::NoInit(init_timeout)),
            }
            let requests = source.list().await?;
            Ok((stream, requests))
        };
        ctx.wait(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok((stream, requests)) => {
                let now = Instant::now();
                act.connected_at = Some(now);
                act.last_event = Some(now);
                act.health.up.set(true);
                act.health.connects.set(act.health.connects.get() + 1);
                info!(
                    requests = requests.len(),
                    "Watching access requests; resyncing."
                );
                for request in requests {
                    act.sink
                        .do_send(Observe(Snapshot::Present(request), Origin::Resync));
                }
                act.health.resynced.set(true);
                act.health.resyncs.set(act.health.resyncs.get() + 1);
                ctx.add_stream(stream);
                act.watch_for_silence(ctx);
            }
            Err(err) => {
                warn!(error = %err, "Could not watch access requests; will reconnect.");
                ctx.stop();
            }
        }));
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
    use std::cell::RefCell;
    use tokio::sync::mpsc;

    /// A source whose watches are fed by the test, one channel per watch.
    #[derive(Default)]
    struct Scripted {
        watches: RefCell<Vec<mpsc::UnboundedSender<Result<WatchEvent, SourceError>>>>,
        listing: RefCell<Vec<AccessRequest>>,
    }

    impl EventSource for Scripted {
        fn watch(&self) -> LocalBoxFuture<'static, Result<EventStreamOf, SourceError>> {
            let (tx, rx) = mpsc::unbounded_channel();
            tx.send(Ok(WatchEvent::Init)).ok();
            self.watches.borrow_mut().push(tx);
            let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed_local();
            Box::pin(async move { Ok(stream) })
        }
        fn list(&self) -> LocalBoxFuture<'static, Result<Vec<AccessRequest>, SourceError>> {
            let listing = self.listing.borrow().clone();
            Box::pin(async move { Ok(listing) })
        }
    }

    /// Collects what the stream forwards.
    struct Sink(Rc<RefCell<Vec<Snapshot>>>);
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Observe> for Sink {
        type Result = ();
        fn handle(&mut self, msg: Observe, _: &mut Self::Context) {
            self.0.borrow_mut().push(msg.0);
        }
    }

    fn request(id: &str) -> AccessRequest {
        AccessRequest::example(id, "u", &[])
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
        let source = Rc::new(Scripted::default());
        source.listing.borrow_mut().push(request("old"));
        let seen = Rc::new(RefCell::new(vec![]));
        let sink = Sink(Rc::clone(&seen)).start();
        let health = Rc::new(WatchHealth::default());
        let (s, h) = (Rc::clone(&source), Rc::clone(&health));
        let _stream = Supervisor::start(move |_| {
            EventStream::new(s, sink.recipient(), h, WatchTiming::default())
        });
        until("first resync", || health.is_ready()).await;
        until("resync delivered", || seen.borrow().len() == 1).await;

        source.watches.borrow()[0]
            .send(Ok(WatchEvent::Observed(Snapshot::Gone { id: "x".into() })))
            .ok();
        until("event delivered", || seen.borrow().len() == 2).await;

        // The stream fails: the supervisor reconnects and resyncs again.
        source.watches.borrow()[0]
            .send(Err(SourceError::EndedBeforeInit))
            .ok();
        until("second connect", || health.resyncs() == 2).await;
        until("second resync delivered", || seen.borrow().len() == 3).await;
        assert_eq!(seen.borrow()[2], Snapshot::Present(request("old")));
        assert_eq!(health.connects(), 2);
    }
}
