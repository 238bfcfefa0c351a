//! The HTTP listener's view of the daemon: the [`Monitor`] actor.
//!
//! The daemon's state lives on its single actix thread (`Rc`, `Cell`), while axum wants `Send`
//! handlers. So the state is read by this actor on the daemon's thread, and each HTTP handler
//! asks it through its (thread-safe) address (see [`crate::http`]). It also keeps the
//! backend's health fresh: it pings the backend's heartbeat every minute (more often for short
//! readiness windows), and copies the daemon's single-threaded state into the metrics just
//! before each scrape.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::actors::event_stream::WatchHealth;
use crate::metrics::{set_total, unix_seconds, Metrics};

/// How often the backend is pinged, at most.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);

/// A liveness check: a name and whether it still holds.
pub type AliveCheck = (&'static str, Box<dyn Fn() -> bool>);
/// Pings the backend once; `Err` carries a short reason.
pub type Heartbeat = Rc<dyn Fn() -> LocalBoxFuture<'static, Result<(), String>>>;

/// What the [`Monitor`] reads. Closures keep it independent of the concrete actors.
pub struct Probes {
    /// The watch's health.
    pub watch: Rc<WatchHealth>,
    /// Steps in flight now.
    pub steps_in_flight: Box<dyn Fn() -> usize>,
    /// Actors that must be alive, e.g. `("gateway", Box::new(move || addr.connected()))`.
    pub alive: Vec<AliveCheck>,
    /// The backend health check.
    pub heartbeat: Heartbeat,
}

/// Reads the daemon's state for the HTTP handlers, and keeps the backend's health fresh.
pub struct Monitor {
    probes: Probes,
    metrics: Arc<Metrics>,
    window: Duration,
    /// When the backend last passed a check (monotonic, and wall-clock for the gauge).
    backend_ok: Option<(Instant, SystemTime)>,
    /// The last check's failure, if the last check failed.
    backend_error: Option<String>,
    checking: bool,
}

impl Monitor {
    /// A monitor; `initial` is the result of the backend check made at startup (`None` when
    /// there was none).
    pub fn new(
        probes: Probes,
        metrics: Arc<Metrics>,
        window: Duration,
        initial: Option<Result<(), String>>,
    ) -> Self {
        let mut monitor = Self {
            probes,
            metrics,
            window,
            backend_ok: None,
            backend_error: None,
            checking: false,
        };
        if let Some(result) = initial {
            monitor.record(result);
        }
        monitor
    }

    /// How often the backend is pinged for a window: a minute, or a third of a short window.
    pub fn heartbeat_interval(window: Duration) -> Duration {
        (window / 3).clamp(Duration::from_millis(100), HEARTBEAT_EVERY)
    }

    fn record(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.backend_ok = Some((Instant::now(), SystemTime::now()));
                self.backend_error = None;
            }
            Err(reason) => self.backend_error = Some(reason),
        }
    }

    fn check_backend(&mut self, ctx: &mut Context<Self>) {
        if self.checking {
            return;
        }
        self.checking = true;
        let ping = (self.probes.heartbeat)();
        ctx.spawn(ping.into_actor(self).map(|result, act, _| {
            act.checking = false;
            match &result {
                Ok(()) => debug!("The on-call backend passed its health check."),
                Err(reason) => warn!(%reason, "The on-call backend failed its health check."),
            }
            act.record(result);
        }));
    }

    fn liveness(&self) -> Result<(), String> {
        match self.probes.alive.iter().find(|(_, alive)| !alive()) {
            Some((name, _)) => Err(format!("the {name} has stopped")),
            None => Ok(()),
        }
    }

    fn readiness(&self) -> Result<(), String> {
        let watch = &self.probes.watch;
        if !watch.is_up() {
            return Err("the watch of access requests is not established".into());
        }
        if !watch.is_ready() {
            return Err("the watch of access requests is resyncing".into());
        }
        let last = self.backend_error.as_deref().map(|e| format!(": {e}"));
        match self.backend_ok {
            None => Err(format!(
                "the on-call backend has not passed a health check yet{}",
                last.unwrap_or_default()
            )),
            Some((at, _)) if at.elapsed() > self.window => Err(format!(
                "the on-call backend last passed a health check {}s ago (allowed: {}s){}",
                at.elapsed().as_secs(),
                self.window.as_secs(),
                last.unwrap_or_default()
            )),
            Some(_) => Ok(()),
        }
    }

    fn scrape(&self) -> String {
        let m = &self.metrics;
        let watch = &self.probes.watch;
        let flag = |on: bool| i64::from(u8::from(on));
        let in_flight = (self.probes.steps_in_flight)();
        m.steps_in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        m.watch_up.set(flag(watch.is_up()));
        m.watch_ready.set(flag(watch.is_ready()));
        set_total(&m.watch_connects, watch.connects());
        set_total(&m.watch_reconnects, watch.connects().saturating_sub(1));
        set_total(&m.watch_resyncs, watch.resyncs());
        set_total(&m.watch_events, watch.events());
        let up = self.backend_error.is_none() && self.backend_ok.is_some();
        m.backend_up.set(flag(up));
        if let Some((_, wall)) = self.backend_ok {
            m.backend_last_healthy.set(unix_seconds(wall));
        }
        m.render()
    }
}

impl Actor for Monitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.backend_ok.is_none() {
            self.check_backend(ctx);
        }
        ctx.run_interval(Self::heartbeat_interval(self.window), |act, ctx| {
            act.check_backend(ctx)
        });
    }
}

/// Asks whether the daemon is alive.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Liveness;

/// Asks whether the daemon is ready to do its work.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Readiness;

/// Asks for the metrics exposition.
#[derive(Debug, Message)]
#[rtype(result = "String")]
pub struct Scrape;

impl Handler<Liveness> for Monitor {
    type Result = Result<(), String>;
    fn handle(&mut self, _: Liveness, _: &mut Self::Context) -> Self::Result {
        self.liveness()
    }
}

impl Handler<Readiness> for Monitor {
    type Result = Result<(), String>;
    fn handle(&mut self, _: Readiness, _: &mut Self::Context) -> Self::Result {
        self.readiness()
    }
}

impl Handler<Scrape> for Monitor {
    type Result = String;
    fn handle(&mut self, _: Scrape, _: &mut Self::Context) -> String {
        self.scrape()
    }
}
