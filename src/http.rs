//! The health and metrics listener: `/healthz`, `/readyz` and `/metrics`.
//!
//! Each handler asks the [`Monitor`] actor (on the daemon's thread, see
//! [`crate::actors::monitor`]) through its thread-safe address. A handler whose question gets
//! no answer (the actor system stopped, or is wedged for 5 s) answers 503, which is exactly
//! what a liveness probe should see then. The server under the routes bounds what a client can
//! hold (timeouts, a connection cap that keeps `/healthz` answering under a flood): see
//! [`listener`].
//!
//! - `/healthz`: 200 `ok` while the actors the daemon cannot work without (gateway, on-call
//!   cache, request registry) still take messages; 503 naming the one that stopped.
//! - `/readyz`: 200 `ready` when the watch of access requests is established and its resync
//!   was handed over, and the backend passed a health check within
//!   `http.ready_backend_window`; else 503 with a one-line reason.
//! - `/metrics`: Prometheus text format, see [`crate::metrics::Metrics`].

pub mod listener;

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tracing::info;

pub use crate::actors::monitor::{
    AliveCheck, Heartbeat, Liveness, Monitor, Probes, Readiness, Scrape, HEARTBEAT_EVERY,
};
pub use listener::Limits;

/// How long a handler waits for the [`Monitor`] before answering 503.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Serves [`router`] on `listener`, under the default [`Limits`], until the returned task is
/// aborted. Must run inside the daemon's actix system.
pub fn spawn(listener: TcpListener, monitor: Addr<Monitor>) -> tokio::task::JoinHandle<()> {
    let app = router(monitor);
    actix_rt::spawn(async move {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "Serving /healthz, /readyz and /metrics.");
        }
        listener::serve(listener, app, Limits::default()).await;
    })
}

pub(crate) fn plain(status: StatusCode, body: String) -> Response {
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
            [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(reason) => plain(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}
