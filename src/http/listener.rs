//! The hardened HTTP/1.1 server under the health and metrics routes.
//!
//! In containers the listener is on 0.0.0.0, so anything that can reach the port can open
//! connections. Nothing a client does may hold a descriptor or memory for long, or keep
//! `/healthz` from answering:
//!
//! - **Header timeout** ([`Limits::header_timeout`]): hyper's header read timer, which runs
//!   whenever the connection waits for a request head, the first or the next one. It cuts a
//!   slowloris (headers never finished) and doubles as the idle (keep-alive) timeout: a
//!   connection that sends no next request within it is closed.
//! - **Request timeout** ([`Limits::request_timeout`]): a handler that has not answered by then
//!   gets a 503, and the connection goes back to waiting (and timing out) for the next head.
//! - **Bounded heads**: hyper's read buffer is capped at [`MAX_HEAD_BYTES`], so a huge header
//!   is refused, not buffered.
//! - **Connection cap** ([`Limits::max_connections`]): when the cap is reached, the oldest
//!   connection with no request in flight is closed to make room for the new one. A flood of
//!   idle or slow connections therefore only ever evicts itself, and a probe's fresh connection
//!   is always served. Only when every connection is inside a request (each ends within the
//!   request timeout) is the new one refused. Evicted connections still closing are bounded
//!   too: past `max_connections + EVICTION_SLACK` the accept loop waits, and the kernel's
//!   backlog holds the rest.
//!
//! HTTP/2 is not served: probes and Prometheus speak HTTP/1.1, and one protocol is one set of
//! limits to get right.

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tower::ServiceExt as _;
use tracing::{debug, warn};

/// The largest request head (request line and headers) read; hyper's minimum is 8 KiB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Evicted connections that may still be closing before the accept loop waits.
const EVICTION_SLACK: usize = 16;
/// The pause after a failed `accept` (e.g. out of descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The listener's limits; [`Limits::default`] is what the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a connection may take to send a complete request head, and how long it may stay
    /// open waiting for the next one.
    pub header_timeout: Duration,
    /// How long a request may take to be answered.
    pub request_timeout: Duration,
    /// Connections open at once (evicting idle ones beyond it).
    pub max_connections: usize,
}

impl Default for Limits {
    /// 5 s for a head (probes and scrapers send theirs at once), 10 s for an answer (the
    /// handlers give up on the daemon after 5 s), 256 connections (a few probes and scrapers
    /// need a handful; 256 stays far below the unit's descriptor limit).
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Slot {
    /// Requests being answered on it now (0 or 1 for HTTP/1.1 without pipelining).
    busy: AtomicUsize,
    /// Set when the accept loop chose it to make room.
    evicting: AtomicBool,
    /// Set when its task has ended and its socket is closed.
    closed: AtomicBool,
    /// Wakes its task to close it.
    evict: Notify,
}

/// Counts a request in flight on a slot for as long as it lives.
struct Busy(Arc<Slot>);

impl Busy {
    fn enter(slot: &Arc<Slot>) -> Self {
        slot.busy.fetch_add(1, Ordering::SeqCst);
        Self(slot.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the accept loop does with a new connection, given the open ones (oldest first).
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Below the cap.
    Admit,
    /// At the cap: close the slot at this index (the oldest idle one), then admit.
    Evict(usize),
    /// At the cap and every connection is inside a request.
    Refuse,
}

fn admission(slots: &[Arc<Slot>], max: usize) -> Admission {
    let live = slots
        .iter()
        .filter(|s| !s.evicting.load(Ordering::SeqCst))
        .count();
    if live < max {
        return Admission::Admit;
    }
    match slots
        .iter()
        .position(|s| !s.evicting.load(Ordering::SeqCst) && s.busy.load(Ordering::SeqCst) == 0)
    {
        Some(i) => Admission::Evict(i),
        None => Admission::Refuse,
    }
}

/// Serves `app` on `listener` under `limits` until the future is dropped. Connection tasks are
/// spawned on the current thread's local task set (the daemon's actix system).
pub async fn serve(listener: TcpListener, app: Router, limits: Limits) {
    let slots: Rc<RefCell<Vec<Arc<Slot>>>> = Rc::default();
    let freed = Rc::new(Notify::new());
    loop {
        // Room for one more, counting evicted connections that are still closing.
        loop {
            let open = {
                let mut slots = slots.borrow_mut();
                slots.retain(|s| !s.closed.load(Ordering::SeqCst));
                slots.len()
            };
            if open < limits.max_connections.saturating_add(EVICTION_SLACK) {
                break;
            }
            freed.notified().await;
        }
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                warn!(error = %err, "The health and metrics listener could not accept a connection.");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let slot = {
            let mut slots = slots.borrow_mut();
            slots.retain(|s| !s.closed.load(Ordering::SeqCst));
            match admission(&slots, limits.max_connections) {
                Admission::Admit => {}
                Admission::Evict(i) => {
                    slots[i].evicting.store(true, Ordering::SeqCst);
                    slots[i].evict.notify_one();
                }
                Admission::Refuse => {
                    debug!("Every connection is inside a request; refused a new one.");
                    continue;
                }
            }
            let slot = Arc::new(Slot::default());
            slots.push(slot.clone());
            slot
        };
        let (app, freed) = (app.clone(), freed.clone());
        actix_rt::spawn(async move {
            connection(stream, app, &slot, limits).await;
            slot.closed.store(true, Ordering::SeqCst);
            freed.notify_one();
        });
    }
}

/// Serves one connection until the client closes it, a timeout or an error ends it, or the
/// accept loop evicts it.
async fn connection(stream: TcpStream, app: Router, slot: &Arc<Slot>, limits: Limits) {
    let request_slot = slot.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let (app, busy) = (app.clone(), Busy::enter(&request_slot));
        async move {
            let answer = tokio::time::timeout(limits.request_timeout, app.oneshot(request)).await;
            drop(busy);
            Ok::<_, Infallible>(match answer {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => super::plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no answer within {}s", limits.request_timeout.as_secs_f64()),
                ),
            })
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = conn => {
            if let Err(err) = result {
                // Timeouts, resets and malformed requests: the client's problem, not ours.
                debug!(error = %err, "A health and metrics connection ended.");
            }
        }
        () = slot.evict.notified() => {
            debug!("Closed the oldest idle health and metrics connection to make room.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(states: &[(usize, bool)]) -> Vec<Arc<Slot>> {
        states
            .iter()
            .map(|&(busy, evicting)| {
                let slot = Slot::default();
                slot.busy.store(busy, Ordering::SeqCst);
                slot.evicting.store(evicting, Ordering::SeqCst);
                Arc::new(slot)
            })
            .collect()
    }

    #[test]
    fn admission_evicts_the_oldest_idle_connection_at_the_cap() {
        assert_eq!(admission(&slots(&[(0, false)]), 2), Admission::Admit);
        assert_eq!(
            admission(&slots(&[(1, false), (0, false)]), 2),
            Admission::Evict(1)
        );
        assert_eq!(
            admission(&slots(&[(0, false), (0, false)]), 2),
            Admission::Evict(0)
        );
        // Connections already being evicted do not count, and are not chosen again.
        assert_eq!(
            admission(&slots(&[(0, true), (0, false)]), 2),
            Admission::Admit
        );
        assert_eq!(
            admission(&slots(&[(0, true), (1, false), (0, false)]), 2),
            Admission::Evict(2)
        );
        assert_eq!(
            admission(&slots(&[(1, false), (1, false)]), 2),
            Admission::Refuse
        );
    }
}
