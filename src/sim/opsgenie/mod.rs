//! A fake Opsgenie (and JSM Operations Integration Events) HTTP server for tests, the sandbox
//! example, the load test and chaos tests.
//!
//! It models what clients meet in production (opsgenie-api.md §11):
//!
//! - GenieKey auth: 401 for a missing or unknown key, 422 `Key format is not valid!` for a key
//!   that is not UUID-shaped, 403/40301 for a "config-only" key on alert writes.
//! - Create, notes, close and acknowledge answer 202 with a `requestId`; the work is queued and
//!   applied **after the processing delay** (in order of receipt). Until then the alert does not
//!   exist and `GET /v2/alerts/requests/{id}` answers 404 with
//!   `X-Opsgenie-Errortype: RequestNotProcessed`. A background task applies due work and every
//!   accessor also applies it lazily, so state always matches the clock.
//! - Alias de-duplication, request status outcomes (`isSuccess:false`, "Alert does not exist"),
//!   get/list/count alerts with a small query language, on-call schedules, heartbeat pings.
//! - Per-domain per-second/per-minute buckets answering 429 with Opsgenie's headers.
//! - Fault knobs ([`Faults`]): 5xx at a seeded random rate, a burst of 429s, added latency.
//!
//! All routes exist both at the root (`/v2/...`, Opsgenie) and under `/jsm/ops/integration`
//! (the JSM Integration Events API, same shapes).
//!
//! Time: delays, latency and rate limits use tokio's clock, so tests can run under a paused
//! clock; recorded wall-clock times use [`SystemTime`].

mod heartbeats;
mod limits;
mod model;
mod query;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State as AxState};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

pub use limits::FakeRateLimits;
pub use model::{Alert, AlertStatus, Call, Note};
pub use validate::Responder;

use heartbeats::Heartbeats;
pub use heartbeats::DEFAULT_HEARTBEAT;
use limits::{Domain, Limiter};
use model::{Action, IdKind, Pending, State};

/// Prefix of the JSM Operations Integration Events API mirror.
pub const JSM_PREFIX: &str = "/jsm/ops/integration";

/// The default valid API key of [`FakeOpsgenieOptions::default`].
pub const DEFAULT_API_KEY: &str = "11111111-2222-3333-4444-555555555555";

/// Largest body the fake reads; bigger bodies get 413.
const MAX_BODY: usize = 1 << 20;

const THROTTLED_MESSAGE: &str =
    "You are making too many requests! To avoid errors, we recommend you limit requests.";

/// How to start a [`FakeOpsgenie`].
#[derive(Clone)]
pub struct FakeOpsgenieOptions {
    /// Keys of API integrations: may do everything.
    pub api_keys: Vec<String>,
    /// Valid keys that are not from an API integration: alert writes get 403/40301.
    pub config_only_keys: Vec<String>,
    /// Time between a 202 and the request being applied (and its status answering 200).
    pub processing_delay: Duration,
    /// Rate limits per domain.
    pub rate_limits: FakeRateLimits,
    /// Seed of the fault RNG (error rate, latency ranges).
    pub seed: u64,
}

impl Default for FakeOpsgenieOptions {
    fn default() -> Self {
        FakeOpsgenieOptions {
            api_keys: vec![DEFAULT_API_KEY.to_owned()],
            config_only_keys: Vec::new(),
            processing_delay: Duration::ZERO,
            rate_limits: FakeRateLimits::default(),
            seed: 1,
        }
    }
}

// Keys are secrets: never print them.
impl std::fmt::Debug for FakeOpsgenieOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOpsgenieOptions")
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field(
                "config_only_keys",
                &format_args!("[{} redacted]", self.config_only_keys.len()),
            )
            .field("processing_delay", &self.processing_delay)
            .field("rate_limits", &self.rate_limits)
            .field("seed", &self.seed)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another test thread must not cascade into every later call.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fault knobs, changeable while the server runs.
#[derive(Debug)]
pub struct Faults {
    /// f64 bits of the 5xx probability.
    error_rate: AtomicU64,
    /// Injected 5xx happen after the call took effect (the answer is "lost").
    errors_after_effect: AtomicBool,
    throttle_next: AtomicUsize,
    latency: Mutex<Option<(Duration, Duration)>>,
    rng: Mutex<StdRng>,
}

impl Faults {
    fn new(seed: u64) -> Self {
        Faults {
            error_rate: AtomicU64::new(0f64.to_bits()),
            errors_after_effect: AtomicBool::new(false),
            throttle_next: AtomicUsize::new(0),
            latency: Mutex::new(None),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// Answer this fraction (0.0..=1.0) of authenticated calls with a 5xx (500, 502, 503 or
    /// 504, chosen by the seeded RNG) instead of handling them.
    pub fn set_error_rate(&self, rate: f64) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.error_rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// `false` (default): an injected 5xx replaces the call, nothing happens. `true`: the call
    /// takes effect (e.g. the alert is created) and only the answer is replaced by the 5xx,
    /// like a response lost on the way back; this exercises client idempotency.
    pub fn set_errors_after_effect(&self, after: bool) {
        self.errors_after_effect.store(after, Ordering::Relaxed);
    }

    /// The current 5xx probability.
    pub fn error_rate(&self) -> f64 {
        f64::from_bits(self.error_rate.load(Ordering::Relaxed))
    }

    /// Answer the next `n` authenticated calls with 429 (per-second bucket), whatever the
    /// buckets say.
    pub fn throttle_next(&self, n: usize) {
        self.throttle_next.store(n, Ordering::Relaxed);
    }

    /// Delay every answer by a uniformly random time in `min..=max` (tokio clock).
    pub fn set_latency(&self, min: Duration, max: Duration) {
        *lock(&self.latency) = Some((min.min(max), max.max(min)));
    }

    /// Delay every answer by exactly `d`.
    pub fn set_fixed_latency(&self, d: Duration) {
        self.set_latency(d, d);
    }

    /// No added latency.
    pub fn clear_latency(&self) {
        *lock(&self.latency) = None;
    }

    /// Turns every fault off.
    pub fn clear(&self) {
        self.set_error_rate(0.0);
        self.set_errors_after_effect(false);
        self.throttle_next(0);
        self.clear_latency();
    }

    fn take_throttle(&self) -> bool {
        self.throttle_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn roll_error(&self) -> Option<StatusCode> {
        let rate = self.error_rate();
        if rate <= 0.0 {
            return None;
        }
        let mut rng = lock(&self.rng);
        if rng.random::<f64>() >= rate {
            return None;
        }
        const CODES: [StatusCode; 4] = [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
        ];
        Some(CODES[rng.random_range(0..CODES.len())])
    }

    fn latency_sample(&self) -> Option<Duration> {
        let (min, max) = (*lock(&self.latency))?;
        if min == max {
            return Some(min);
        }
        let nanos = lock(&self.rng).random_range(min.as_nanos()..=max.as_nanos());
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }
}

struct Inner {
    addr: SocketAddr,
    first_key: String,
    api_keys: HashSet<String>,
    config_only: Mutex<HashSet<String>>,
    processing_delay: Mutex<Duration>,
    integration_id: String,
    faults: Faults,
    limiter: Mutex<Limiter>,
    state: Mutex<State>,
    heartbeats: Heartbeats,
    /// Woken on every state change or recorded call (for `wait_until`).
    changed: Notify,
    /// Woken when work is queued (for the processor task).
    work: Notify,
    throttled: AtomicUsize,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A running fake Opsgenie. Cheap to clone; all clones share one server.
#[derive(Clone)]
pub struct FakeOpsgenie {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeOpsgenie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOpsgenie")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl FakeOpsgenie {
    /// Binds 127.0.0.1:0 and starts serving. Must be called inside a tokio runtime.
    pub async fn start(opts: FakeOpsgenieOptions) -> std::io::Result<FakeOpsgenie> {
        let listener = tokio::net::TcpListener::bind((IpAddr::from([127, 0, 0, 1]), 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            addr,
            first_key: opts.api_keys.first().cloned().unwrap_or_default(),
            api_keys: opts.api_keys.iter().cloned().collect(),
            config_only: Mutex::new(opts.config_only_keys.iter().cloned().collect()),
            processing_delay: Mutex::new(opts.processing_delay),
            integration_id: Uuid::new_v4().to_string(),
            faults: Faults::new(opts.seed),
            limiter: Mutex::new(Limiter::new(&opts.rate_limits, Instant::now())),
            state: Mutex::new(State::default()),
            heartbeats: Heartbeats::default(),
            changed: Notify::new(),
            work: Notify::new(),
            throttled: AtomicUsize::new(0),
            shutdown,
            tasks: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let mut stop = inner.shutdown.subscribe();
        let server = tokio::spawn(async move {
            // No Nagle delay on answers, so latency measured against the fake is the client's.
            use axum::serve::ListenerExt as _;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let result = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "fake Opsgenie server stopped");
            }
        });
        let processor = tokio::spawn(processor(inner.clone(), inner.shutdown.subscribe()));
        lock(&inner.tasks).extend([server, processor]);
        tracing::debug!(%addr, "fake Opsgenie listening");
        Ok(FakeOpsgenie { inner })
    }

    /// Base URL, `http://127.0.0.1:PORT` (append [`JSM_PREFIX`] for the JSM mirror).
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// Creates a heartbeat (one named [`DEFAULT_HEARTBEAT`] exists from the start).
    pub fn create_heartbeat(&self, name: &str) {
        self.inner.heartbeats.create(name);
    }

    /// Deletes a heartbeat: pings still answer 202, the lookup 404.
    pub fn delete_heartbeat(&self, name: &str) {
        self.inner.heartbeats.delete(name);
    }

    /// The first configured API-integration key.
    pub fn api_key(&self) -> String {
        self.inner.first_key.clone()
    }

    /// The integration id reported in request statuses and alerts.
    pub fn integration_id(&self) -> String {
        self.inner.integration_id.clone()
    }

    /// Adds (or replaces, by name) a schedule; `id` `None` generates a UUID. Returns the id.
    pub fn add_schedule(&self, name: &str, id: Option<&str>, on_call: &[&str]) -> String {
        let id = lock(&self.inner.state).add_schedule(name, id, on_call);
        self.inner.changed.notify_waiters();
        id
    }

    /// Replaces who is on call for a schedule given by name or id. Returns false if there is
    /// no such schedule.
    pub fn set_on_call(&self, schedule: &str, on_call: &[&str]) -> bool {
        let mut st = lock(&self.inner.state);
        let Some(i) = st.schedule_any(schedule) else {
            return false;
        };
        st.schedules[i].on_call = on_call.iter().map(|s| (*s).to_owned()).collect();
        drop(st);
        self.inner.changed.notify_waiters();
        true
    }

    /// The id of a schedule given by name.
    pub fn schedule_id(&self, name: &str) -> Option<String> {
        let st = lock(&self.inner.state);
        st.schedule(name, true).map(|i| st.schedules[i].id.clone())
    }

    /// Locks the state after applying every due request.
    fn state(&self) -> MutexGuard<'_, State> {
        let mut st = lock(&self.inner.state);
        if st.process_due(Instant::now()) {
            self.inner.changed.notify_waiters();
        }
        st
    }

    /// All alerts in creation order.
    pub fn alerts(&self) -> Vec<Alert> {
        self.state().alerts.clone()
    }

    /// The newest alert with this alias (open or closed).
    pub fn alert_by_alias(&self, alias: &str) -> Option<Alert> {
        self.state().newest_by_alias(alias).cloned()
    }

    /// Creates an open alert directly, as if a create with this alias had been processed
    /// earlier (no call is recorded; for setting up a backlog). Returns the alert id.
    pub fn insert_alert(&self, alias: &str, message: &str) -> String {
        let payload = validate::CreatePayload {
            message: message.to_owned(),
            alias: Some(alias.to_owned()),
            description: None,
            responders: Vec::new(),
            visible_to: Vec::new(),
            actions: Vec::new(),
            tags: Vec::new(),
            details: Default::default(),
            entity: None,
            source: None,
            priority: "P3".to_owned(),
            user: None,
            note: None,
        };
        let id = lock(&self.inner.state).insert_created(payload);
        self.inner.changed.notify_waiters();
        id
    }

    /// Number of accepted requests not yet applied.
    pub fn pending_requests(&self) -> usize {
        self.state().pending.len()
    }

    /// Every call received, in order of completion.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.inner.state).calls.clone()
    }

    /// Calls with this method whose path (raw, or without the JSM prefix) starts with
    /// `path_prefix`.
    pub fn count_calls(&self, method: &str, path_prefix: &str) -> usize {
        lock(&self.inner.state)
            .calls
            .iter()
            .filter(|c| {
                c.method.eq_ignore_ascii_case(method)
                    && (c.api_path.starts_with(path_prefix) || c.path.starts_with(path_prefix))
            })
            .count()
    }

    /// Number of 429 answers so far (buckets and [`Faults::throttle_next`]).
    pub fn throttled_count(&self) -> usize {
        self.inner.throttled.load(Ordering::Relaxed)
    }

    /// Fault knobs.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Changes the processing delay for requests accepted from now on. Requests are applied in
    /// order of receipt, so a request never overtakes an earlier one.
    pub fn set_processing_delay(&self, d: Duration) {
        *lock(&self.inner.processing_delay) = d;
    }

    /// Marks a key as config-only (`true`: alert writes get 403/40301; the key becomes valid if
    /// it was not) or removes that mark.
    pub fn set_config_only(&self, key: &str, config_only: bool) {
        let mut set = lock(&self.inner.config_only);
        if config_only {
            set.insert(key.to_owned());
        } else {
            set.remove(key);
        }
    }

    /// Replaces the rate limits; all buckets start full.
    pub fn set_rate_limits(&self, limits: FakeRateLimits) {
        *lock(&self.inner.limiter) = Limiter::new(&limits, Instant::now());
    }

    /// Waits until `f` holds, re-checking after every state change, up to `timeout` (tokio
    /// clock). `what` names the condition in the error.
    pub async fn wait_until<F: Fn(&FakeOpsgenie) -> bool>(
        &self,
        timeout: Duration,
        what: &str,
        f: F,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            // Register before checking, so a change between the check and the await is seen.
            notified.as_mut().enable();
            if f(self) {
                return Ok(());
            }
            // Apply due work ourselves (so every remaining item is due strictly later and the
            // wait below cannot spin), then wake at the next due time: queued work may be what
            // we wait for, and the processor task may not have run yet.
            let next_due = self.state().pending.front().map(|p| p.ready_at);
            let wake = next_due.map_or(deadline, |t| t.min(deadline));
            if tokio::time::timeout_at(wake, notified).await.is_err() && Instant::now() >= deadline
            {
                return if f(self) {
                    Ok(())
                } else {
                    Err(format!("timed out after {timeout:?} waiting for {what}"))
                };
            }
        }
    }

    /// Stops accepting connections and stops the processor. In-flight calls finish.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }
}

/// Applies queued requests when they fall due.
async fn processor(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let next = {
            let mut st = lock(&inner.state);
            if st.process_due(Instant::now()) {
                inner.changed.notify_waiters();
            }
            st.pending.front().map(|p| p.ready_at)
        };
        // `work` uses notify_one, which keeps a permit if we are not waiting yet, so work
        // queued between the check above and this select is not missed.
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = inner.work.notified() => {}
            r = stop.changed() => if r.is_err() { return },
        }
    }
}

/// The routes the fake knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    CreateAlert,
    ListAlerts,
    CountAlerts,
    RequestStatus(String),
    GetAlert(String),
    AddNote(String),
    Close(String),
    Acknowledge(String),
    OnCalls(String),
    Heartbeat,
    GetHeartbeat(String),
    MethodNotAllowed,
    NotFound,
}

impl Route {
    fn domain(&self) -> Domain {
        match self {
            Route::CreateAlert
            | Route::RequestStatus(_)
            | Route::GetAlert(_)
            | Route::AddNote(_)
            | Route::Close(_)
            | Route::Acknowledge(_) => Domain::Alert,
            Route::ListAlerts | Route::CountAlerts => Domain::Search,
            Route::OnCalls(_) => Domain::ScheduleOnCalls,
            Route::Heartbeat | Route::GetHeartbeat(_) => Domain::Heartbeat,
            Route::MethodNotAllowed | Route::NotFound => Domain::None,
        }
    }

    fn is_alert_write(&self) -> bool {
        matches!(
            self,
            Route::CreateAlert | Route::AddNote(_) | Route::Close(_) | Route::Acknowledge(_)
        )
    }
}

/// Decodes `%XX` escapes of one path segment (`+` stays `+` in paths).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route(method: &Method, api_path: &str) -> Route {
    let segs: Vec<String> = api_path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (get, post) = (method == Method::GET, method == Method::POST);
    let pick = |ok: bool, r: Route| if ok { r } else { Route::MethodNotAllowed };
    match segs.as_slice() {
        ["v2", "alerts"] if post => Route::CreateAlert,
        ["v2", "alerts"] => pick(get, Route::ListAlerts),
        ["v2", "alerts", "count"] => pick(get, Route::CountAlerts),
        ["v2", "alerts", "requests", id] => pick(get, Route::RequestStatus((*id).to_owned())),
        ["v2", "alerts", id] => pick(get, Route::GetAlert((*id).to_owned())),
        ["v2", "alerts", id, "notes"] => pick(post, Route::AddNote((*id).to_owned())),
        ["v2", "alerts", id, "close"] => pick(post, Route::Close((*id).to_owned())),
        ["v2", "alerts", id, "acknowledge"] => pick(post, Route::Acknowledge((*id).to_owned())),
        ["v2", "schedules", id, "on-calls"] => pick(get, Route::OnCalls((*id).to_owned())),
        ["v2", "heartbeats", _, "ping"] => pick(
            matches!(
                *method,
                Method::GET | Method::POST | Method::PUT | Method::PATCH
            ),
            Route::Heartbeat,
        ),
        ["v2", "heartbeats", name] => pick(get, Route::GetHeartbeat((*name).to_owned())),
        _ => Route::NotFound,
    }
}

/// What a handler answers, before the common headers and `took`/`requestId` are added.
struct Reply {
    status: StatusCode,
    body: Value,
    headers: Vec<(&'static str, String)>,
    throttled: Option<u64>,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            throttled: None,
        }
    }

    fn message(status: StatusCode, message: &str) -> Reply {
        Reply::json(status, json!({ "message": message }))
    }

    fn unprocessable(errors: validate::FieldErrors) -> Reply {
        Reply::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "message": "Request body is not processable. Please check the errors.",
                "errors": errors,
            }),
        )
    }

    fn throttled(period: u64) -> Reply {
        Reply {
            throttled: Some(period),
            ..Reply::message(StatusCode::TOO_MANY_REQUESTS, THROTTLED_MESSAGE)
        }
    }

    fn accepted(result: &str) -> Reply {
        Reply::json(StatusCode::ACCEPTED, json!({ "result": result }))
    }
}

enum Auth {
    Ok { config_only: bool },
    Missing,
    Malformed,
    Unknown,
}

/// 8-4-4-4-12 hex digits, the shape of every Opsgenie key.
fn uuid_shaped(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn authenticate(inner: &Inner, headers: &HeaderMap) -> Auth {
    let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Auth::Missing;
    };
    let Some((scheme, key)) = value.trim().split_once(' ') else {
        return Auth::Missing;
    };
    if !scheme.eq_ignore_ascii_case("GenieKey") {
        return Auth::Missing;
    }
    let key = key.trim();
    if !uuid_shaped(key) {
        return Auth::Malformed;
    }
    let config_only = lock(&inner.config_only).contains(key);
    if config_only || inner.api_keys.contains(key) {
        Auth::Ok { config_only }
    } else {
        Auth::Unknown
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Everything a handler needs about one call.
struct Ctx<'a> {
    inner: &'a Inner,
    route: Route,
    /// Raw path (with the JSM prefix, if used).
    path: &'a str,
    /// Path without the JSM prefix; what routing sees.
    api_path: &'a str,
    query: Option<&'a str>,
    body: Option<&'a Result<Value, serde_json::Error>>,
    peer: IpAddr,
    request_id: &'a str,
}

/// The single entry point: every path goes through here so that auth, faults, rate limits,
/// headers and recording are applied uniformly, then dispatches on the parsed route.
async fn handle(
    AxState(inner): AxState<Arc<Inner>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let received_at = SystemTime::now();
    let request_id = Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let api_path = match path.strip_prefix(JSM_PREFIX) {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => path.clone(),
    };
    let bytes = axum::body::to_bytes(body, MAX_BODY).await;
    let parsed: Option<Result<Value, serde_json::Error>> = match &bytes {
        Ok(b) if !b.is_empty() => Some(serde_json::from_slice(b)),
        _ => None,
    };
    if let Some(d) = inner.faults.latency_sample() {
        tokio::time::sleep(d).await;
    }
    let auth = authenticate(&inner, &parts.headers);
    let auth_ok = matches!(auth, Auth::Ok { .. });
    let mut reply = if bytes.is_err() {
        Reply::message(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
    } else {
        let ctx = Ctx {
            inner: &inner,
            route: route(&parts.method, &api_path),
            path: &path,
            api_path: &api_path,
            query: query.as_deref(),
            body: parsed.as_ref(),
            peer: peer.ip(),
            request_id: &request_id,
        };
        dispatch(&ctx, auth)
    };

    // Common envelope: `took` and `requestId` in the body, the standard headers.
    let took = started.elapsed().as_secs_f64();
    if let Some(o) = reply.body.as_object_mut() {
        o.insert("took".into(), json!((took * 1000.0).round() / 1000.0));
        o.entry("requestId").or_insert_with(|| json!(request_id));
    }
    let mut resp = Response::new(Body::from(reply.body.to_string()));
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    let mut set = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            h.insert(n, v);
        }
    };
    set("content-type", "application/json");
    set("x-request-id", &request_id);
    set("x-response-time", &format!("{took:.3}"));
    match reply.throttled {
        Some(period) => {
            set("x-ratelimit-state", "THROTTLED");
            set("x-ratelimit-reason", "ACCOUNT");
            set("x-ratelimit-period-in-sec", &period.to_string());
        }
        None => set("x-ratelimit-state", "OK"),
    }
    for (name, value) in &reply.headers {
        set(name, value);
    }
    if reply.throttled.is_some() {
        inner.throttled.fetch_add(1, Ordering::Relaxed);
    }

    let call = Call {
        method: parts.method.to_string(),
        path,
        api_path,
        query,
        auth_ok,
        body: parsed.and_then(Result::ok),
        status: reply.status.as_u16(),
        received_at,
        received_instant: started,
        request_id,
    };
    lock(&inner.state).calls.push(call);
    inner.changed.notify_waiters();
    resp
}

fn dispatch(ctx: &Ctx<'_>, auth: Auth) -> Reply {
    let inner = ctx.inner;
    let config_only = match auth {
        Auth::Ok { config_only } => config_only,
        Auth::Malformed => {
            // The real service answers an empty requestId here.
            return Reply::json(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Key format is not valid!", "requestId": ""}),
            );
        }
        Auth::Missing | Auth::Unknown => {
            return Reply::message(StatusCode::UNAUTHORIZED, "Could not authenticate")
        }
    };
    if inner.faults.take_throttle() {
        return Reply::throttled(1);
    }
    let injected = inner.faults.roll_error();
    let after_effect = inner.faults.errors_after_effect.load(Ordering::Relaxed);
    if let (Some(code), false) = (injected, after_effect) {
        return Reply::message(code, "Internal server error (injected fault)");
    }
    if config_only && ctx.route.is_alert_write() {
        return Reply::json(
            StatusCode::FORBIDDEN,
            json!({
                "code": 40301,
                "message": "To perform this action, use an API key from an API integration.",
            }),
        );
    }
    let domain = ctx.route.domain();
    let is_create = ctx.route == Route::CreateAlert;
    if let Err(period) = lock(&inner.limiter).acquire(domain, is_create, Instant::now()) {
        return Reply::throttled(period);
    }
    let reply = handle_route(ctx);
    match injected {
        Some(code) => Reply::message(code, "Internal server error (injected fault)"),
        None => reply,
    }
}

fn handle_route(ctx: &Ctx<'_>) -> Reply {
    match &ctx.route {
        Route::CreateAlert => create_alert(ctx),
        Route::AddNote(id) => alert_action(ctx, id, "notes"),
        Route::Close(id) => alert_action(ctx, id, "close"),
        Route::Acknowledge(id) => alert_action(ctx, id, "acknowledge"),
        Route::RequestStatus(id) => request_status(ctx, id),
        Route::GetAlert(id) => get_alert(ctx, id),
        Route::ListAlerts => list_alerts(ctx, false),
        Route::CountAlerts => list_alerts(ctx, true),
        Route::OnCalls(id) => on_calls(ctx, id),
        Route::Heartbeat => Reply::accepted("PONG - Heartbeat received"),
        Route::GetHeartbeat(name) => ctx.inner.heartbeats.get(name),
        Route::MethodNotAllowed => {
            Reply::message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        }
        Route::NotFound => Reply::message(
            StatusCode::NOT_FOUND,
            &format!("No handler found for path {}", ctx.api_path),
        ),
    }
}

/// The JSON body, `{}` when absent (close/ack may have none); `Err` is the 400/422 answer.
fn body_object<'a>(ctx: &'a Ctx<'_>, empty: &'a Value) -> Result<&'a Value, Reply> {
    match ctx.body {
        None => Ok(empty),
        Some(Ok(v)) => Ok(v),
        Some(Err(_)) => Err(Reply::message(
            StatusCode::BAD_REQUEST,
            "Could not parse the request body as JSON",
        )),
    }
}

/// Queues work and answers 202; with a zero delay it is applied before answering.
fn enqueue(ctx: &Ctx<'_>, target: Option<(String, IdKind)>, action: Action) -> Reply {
    let inner = ctx.inner;
    let now = Instant::now();
    let delay = *lock(&inner.processing_delay);
    let mut st = lock(&inner.state);
    st.requests.insert(ctx.request_id.to_owned(), None);
    st.pending.push_back(Pending {
        request_id: ctx.request_id.to_owned(),
        ready_at: now + delay,
        target,
        action,
    });
    st.process_due(now);
    drop(st);
    inner.work.notify_one();
    inner.changed.notify_waiters();
    Reply::accepted("Request will be processed")
}

fn create_alert(ctx: &Ctx<'_>) -> Reply {
    let empty = json!({});
    let body = match body_object(ctx, &empty) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match validate::create(body) {
        Ok(mut payload) => {
            // Opsgenie's default source is the caller's IP address.
            payload.source.get_or_insert_with(|| ctx.peer.to_string());
            enqueue(ctx, None, Action::Create(Box::new(payload)))
        }
        Err(errors) => Reply::unprocessable(errors),
    }
}

fn id_kind(ctx: &Ctx<'_>, param: &str) -> Result<IdKind, Reply> {
    let raw = query_param(ctx.query, param);
    IdKind::parse(raw.as_deref()).ok_or_else(|| {
        Reply::unprocessable(validate::FieldErrors::from([(
            param.to_owned(),
            format!("{param} should be one of [id, alias, tiny]"),
        )]))
    })
}

fn alert_action(ctx: &Ctx<'_>, ident: &str, what: &str) -> Reply {
    let kind = match id_kind(ctx, "identifierType") {
        Ok(k) => k,
        Err(r) => return r,
    };
    let empty = json!({});
    let body = match body_object(ctx, &empty) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let payload = match validate::action(body, what == "notes") {
        Ok(p) => p,
        Err(errors) => return Reply::unprocessable(errors),
    };
    let action = match what {
        "notes" => Action::AddNote(payload),
        "close" => Action::Close(payload),
        _ => Action::Acknowledge(payload),
    };
    enqueue(ctx, Some((ident.to_owned(), kind)), action)
}

fn request_status(ctx: &Ctx<'_>, id: &str) -> Reply {
    let mut st = lock(&ctx.inner.state);
    if st.process_due(Instant::now()) {
        ctx.inner.changed.notify_waiters();
    }
    match st.requests.get(id) {
        None => Reply::message(StatusCode::NOT_FOUND, "Request does not exist"),
        Some(None) => Reply {
            headers: vec![("x-opsgenie-errortype", "RequestNotProcessed".into())],
            ..Reply::message(StatusCode::NOT_FOUND, "Request not processed yet")
        },
        Some(Some(outcome)) => Reply::json(
            StatusCode::OK,
            json!({ "data": outcome.to_json(&ctx.inner.integration_id) }),
        ),
    }
}

fn get_alert(ctx: &Ctx<'_>, ident: &str) -> Reply {
    let kind = match id_kind(ctx, "identifierType") {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut st = lock(&ctx.inner.state);
    if st.process_due(Instant::now()) {
        ctx.inner.changed.notify_waiters();
    }
    match st.resolve(ident, kind) {
        Some(i) => Reply::json(
            StatusCode::OK,
            json!({ "data": st.alerts[i].to_json(true, &ctx.inner.integration_id) }),
        ),
        None => Reply::message(StatusCode::NOT_FOUND, "Alert does not exist"),
    }
}

fn list_alerts(ctx: &Ctx<'_>, count_only: bool) -> Reply {
    let q = |name| query_param(ctx.query, name);
    let terms = match query::parse(q("query").as_deref().unwrap_or("")) {
        Ok(t) => t,
        Err(e) => {
            return Reply::unprocessable(validate::FieldErrors::from([("query".to_owned(), e)]))
        }
    };
    let limit = q("limit").map_or(Ok(20), |l| l.parse::<usize>());
    let offset = q("offset").map_or(Ok(0), |o| o.parse::<usize>());
    let (Ok(limit), Ok(offset)) = (limit, offset) else {
        return Reply::unprocessable(validate::FieldErrors::from([(
            "limit".to_owned(),
            "limit and offset must be non-negative integers".to_owned(),
        )]));
    };
    if !(1..=100).contains(&limit) {
        return Reply::unprocessable(validate::FieldErrors::from([(
            "limit".to_owned(),
            "limit must be between 1 and 100".to_owned(),
        )]));
    }
    let ascending = q("order").is_some_and(|o| o.eq_ignore_ascii_case("asc"));
    let by_updated = q("sort").is_some_and(|s| s == "updatedAt");

    let mut st = lock(&ctx.inner.state);
    if st.process_due(Instant::now()) {
        ctx.inner.changed.notify_waiters();
    }
    let mut hits: Vec<&Alert> = st
        .alerts
        .iter()
        .filter(|a| query::matches(&terms, a))
        .collect();
    if count_only {
        return Reply::json(StatusCode::OK, json!({"data": {"count": hits.len()}}));
    }
    if by_updated {
        hits.sort_by_key(|a| a.updated_at);
    }
    // Alerts are stored in creation order; the default is newest first.
    if !ascending {
        hits.reverse();
    }
    let total = hits.len();
    let data: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(limit)
        .map(|a| a.to_json(false, &ctx.inner.integration_id))
        .collect();
    drop(st);

    let base = format!("http://{}{}", ctx.inner.addr, ctx.path);
    let page = |off: usize| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if let Some(qs) = q("query") {
            s.append_pair("query", &qs);
        }
        s.append_pair("offset", &off.to_string());
        s.append_pair("limit", &limit.to_string());
        s.append_pair("order", if ascending { "asc" } else { "desc" });
        format!("{base}?{}", s.finish())
    };
    let mut paging = serde_json::Map::new();
    paging.insert("first".into(), page(0).into());
    if offset + limit < total {
        paging.insert("next".into(), page(offset + limit).into());
    }
    if offset > 0 {
        paging.insert("prev".into(), page(offset.saturating_sub(limit)).into());
    }
    let last = if total == 0 {
        0
    } else {
        (total - 1) / limit * limit
    };
    paging.insert("last".into(), page(last).into());
    Reply::json(StatusCode::OK, json!({ "data": data, "paging": paging }))
}

fn on_calls(ctx: &Ctx<'_>, ident: &str) -> Reply {
    let by_name = match query_param(ctx.query, "scheduleIdentifierType").as_deref() {
        None | Some("id") => false,
        Some("name") => true,
        Some(_) => {
            return Reply::unprocessable(validate::FieldErrors::from([(
                "scheduleIdentifierType".to_owned(),
                "scheduleIdentifierType should be one of [id, name]".to_owned(),
            )]))
        }
    };
    let flat = query_param(ctx.query, "flat").is_some_and(|f| f.eq_ignore_ascii_case("true"));
    let mut st = lock(&ctx.inner.state);
    let Some(i) = st.schedule(ident, by_name) else {
        return Reply::message(
            StatusCode::NOT_FOUND,
            &format!("Schedule with identifier [{ident}] does not exist"),
        );
    };
    let schedule = st.schedules[i].clone();
    let parent = json!({"id": schedule.id, "name": schedule.name, "enabled": true});
    let data = if flat {
        json!({"_parent": parent, "onCallRecipients": schedule.on_call})
    } else {
        let participants: Vec<Value> = schedule
            .on_call
            .iter()
            .map(|u| json!({"id": st.user_id(u), "name": u, "type": "user"}))
            .collect();
        json!({"_parent": parent, "onCallParticipants": participants})
    };
    Reply::json(StatusCode::OK, json!({ "data": data }))
}
