//! The health and metrics listener: `/healthz`, `/readyz` and `/metrics`.
//!
//! The daemon's state lives on its single actix thread (`Rc`, `Cell`), while axum wants `Send`
//! handlers. So the state is read by a [`Monitor`] actor on the daemon's thread, and each HTTP
//! handler asks it through its (thread-safe) address. A handler whose question gets no answer
//! (the actor system stopped, or is wedged for 5 s) answers 503, which is exactly what a
//! liveness probe should see then.
//!
//! - `/healthz`: 200 `ok` while the actors the daemon cannot work without (gateway, on-call
//!   cache, request registry) still take messages; 503 naming the one that stopped.
//! - `/readyz`: 200 `ready` when the watch of access requests is established and its resync
//!   was handed over, and the backend passed a health check within
//!   `http.ready_backend_window`; else 503 with a one-line reason. The [`Monitor`] pings the
//!   backend's heartbeat every minute (more often for short windows) to keep that fresh.
//! - `/metrics`: Prometheus text format, see [`crate::metrics::Metrics`].

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::LocalBoxFuture;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::actors::event_stream::WatchHealth;
use crate::metrics::{unix_seconds, Metrics};

/// How often the backend is pinged, at most.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);
/// How long a handler waits for the [`Monitor`] before answering 503.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the Prometheus text exposition.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the listener could not start. Not retryable as such: `AddrInUse` may clear when an old
/// process exits, anything else needs `http.listen` fixed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (`http.listen`): {source}")]
pub struct HttpError {
    /// The configured address.
    pub addr: SocketAddr,
    /// The socket error.
    #[source]
    pub source: std::io::Error,
}

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
        m.steps_in_flight
            .set(&[], (self.probes.steps_in_flight)() as f64);
        m.watch_up.set(&[], f64::from(u8::from(watch.is_up())));
        m.watch_ready
            .set(&[], f64::from(u8::from(watch.is_ready())));
        m.watch_connects.set_total(&[], watch.connects() as f64);
        m.watch_reconnects
            .set_total(&[], watch.connects().saturating_sub(1) as f64);
        m.watch_resyncs.set_total(&[], watch.resyncs() as f64);
        m.watch_events.set_total(&[], watch.events() as f64);
        let up = self.backend_error.is_none() && self.backend_ok.is_some();
        m.backend_up.set(&[], f64::from(u8::from(up)));
        if let Some((_, wall)) = self.backend_ok {
            m.backend_last_healthy.set(&[], unix_seconds(wall));
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

/// Binds the listener (port 0 picks a free port; see [`TcpListener::local_addr`]).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError { addr, source })
}

/// The routes, answering from `monitor`.
pub fn router(monitor: Addr<Monitor>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(monitor)
}

/// Serves [`router`] on `listener` until the returned task is aborted. Must run inside the
/// daemon's actix system.
pub fn spawn(listener: TcpListener, monitor: Addr<Monitor>) -> tokio::task::JoinHandle<()> {
    let app = router(monitor);
    actix_rt::spawn(async move {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "Serving /healthz, /readyz and /metrics.");
        }
        if let Err(err) = axum::serve(listener, app).await {
            warn!(error = %err, "The health and metrics listener stopped.");
        }
    })
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body + "\n",
    )
        .into_response()
}

async fn ask<M>(monitor: &Addr<Monitor>, msg: M) -> Result<M::Result, String>
where
    M: Message + Send + 'static,
    M::Result: Send,
    Monitor: Handler<M>,
{
    match tokio::time::timeout(ANSWER_TIMEOUT, monitor.send(msg)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err("the daemon's actors have stopped".into()),
        Err(_) => Err("the daemon did not answer within 5s".into()),
    }
}

async fn healthz(State(monitor): State<Addr<Monitor>>) -> Response {
    match ask(&monitor, Liveness).await.and_then(|r| r) {
        Ok(()) => plain(StatusCode::OK, "ok".into()),
        Err(reason) => plain(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn readyz(State(monitor): State<Addr<Monitor>>) -> Response {
    match ask(&monitor, Readiness).await.and_then(|r| r) {
        Ok(()) => plain(StatusCode::OK, "ready".into()),
        Err(reason) => plain(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn metrics(State(monitor): State<Addr<Monitor>>) -> Response {
    match ask(&monitor, Scrape).await {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            text,
        )
            .into_response(),
        Err(reason) => plain(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}
