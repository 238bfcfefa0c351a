//! The Gateway: the only code that talks HTTP to the on-call backend.
//!
//! [`GatewayClient`] does the work in plain async functions over shared state (`Arc`), so it can
//! be tested, and used, without actix. Reconcile steps call it directly, so a step cut short also
//! cancels its call. [`Gateway`] is the thin actix shell for the rest (on-call lookups, the
//! orphan sweep, the readiness heartbeat): each handler clones the client into a
//! `ResponseFuture`, so no actor state is held across an await and a slow, rate-limited call
//! never blocks the mailbox.
//!
//! One call ([`GatewayClient::call`]):
//!
//! 1. waits, FIFO per API domain, for a slot in that domain's rate limits
//!    ([`Limiter`]) and for one of `max_concurrency` permits;
//! 2. sends the request the backend's [`Codec`] built, with `Authorization: GenieKey <key>`;
//! 3. reads the answer with the codec, or classifies the failure ([`retry::classify`]):
//!    - 429: pauses the **whole domain** for `X-RateLimit-Period-In-Sec` / `Retry-After`
//!      (default 1 s) and tries again, at most [`RetryPolicy::max_throttles`] times;
//!    - 5xx, 408, timeouts, connection failures: tries again after the crate's backoff
//!      ([`Backoff`], from [`RetryPolicy::backoff_base`] up to [`RetryPolicy::backoff_cap`], 30 s
//!      by default), for at most [`RetryPolicy::max_attempts`] attempts in all, but only when
//!      sending again is safe ([`Operation::retry_blind`]: reads and the alias-de-duplicated
//!      create). A note or close that may have reached the backend (a 5xx, a timeout, a broken
//!      connection after sending) is not sent again here: it fails with
//!      [`GatewayError::UnknownOutcome`], and the step verifies before sending it again;
//!    - a 2xx whose body cannot be read: for a write, [`GatewayError::UnknownOutcome`] (it may
//!      well have been accepted); for a read, a transient failure like a 5xx;
//!    - anything else: fails at once with a hint that names the fix.
//!
//!    No retry starts after [`RetryPolicy::deadline`] (2 min by default) since the first attempt;
//!    running out of attempts or time gives [`GatewayError::Exhausted`], which is retryable
//!    later.
//!
//! Metrics: every attempt is reported to an optional [`BackendCallObserver`] as a [`CallEvent`]
//! (endpoint, domain, status, duration, attempt, throttled, delay before the next attempt) and
//! logged as a `tracing` debug event with the same fields (target
//! `teleport_opsgenie::backend_call`), so a `/metrics` exposition can count and time calls.
//!
//! The API key lives only in a sensitive header value inside the HTTP client; it is never
//! formatted into an error, a log line or `Debug` output.

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use http::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::backend::backoff::Backoff;
use crate::backend::limiter::Limiter;
use crate::backend::retry::{self, Verdict};
use crate::backend::{
    codec_for, BackendError, Codec, Domain, HttpRequest, Operation, Outcome, Processed,
};
use crate::config::{OpsgenieConfig, Secret};

/// The `User-Agent` of every call.
pub const USER_AGENT: &str = concat!("teleport-opsgenie/", env!("CARGO_PKG_VERSION"));

/// How long establishing a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of one answer's body the gateway reads: 4 MiB. The largest real answers are a page
/// of 100 listed alerts or an on-call list, tens of kilobytes; the cap is two orders of
/// magnitude above that, and low enough that a misbehaving or hostile backend streaming an
/// endless body cannot take the daemon's memory (its container limit is 256 MiB) with it.
pub const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;

/// First delay between request-status polls in [`GatewayClient::await_alert_id`].
pub const POLL_FIRST_DELAY: Duration = Duration::from_millis(100);

/// Longest delay between request-status polls.
pub const POLL_MAX_DELAY: Duration = Duration::from_secs(2);

/// Why a gateway call failed. `pipeline::error_policy` decides what each means for a step.
///
/// Transient (worth trying again later, [`GatewayError::is_retryable`]): `Exhausted`. Maybe done
/// (also retryable, after verifying): `UnknownOutcome`, `Timeout`, `UnknownRequest`. Final:
/// `Permanent` (fix the configuration or report a bug), `RequestFailed` (the backend processed
/// the request and said no) and `Config`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The backend refused the call, or cannot do it; trying again will not help.
    #[error("{endpoint} failed{}: {message}; {hint}", .status.map(|s| format!(" with HTTP {s}")).unwrap_or_default())]
    Permanent {
        /// The HTTP status, if there was an answer.
        status: Option<u16>,
        /// The operation's label (`create_alert`, ...).
        endpoint: &'static str,
        /// What the backend said.
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// Transient failures (5xx, timeouts, 429s) went on for all allowed attempts or time.
    #[error("{endpoint} still failing after {attempts} attempts: {last}")]
    Exhausted {
        /// The operation's label.
        endpoint: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A write may have taken effect, or not: the answer was lost or unreadable (a 5xx or a
    /// timeout after it was sent, a 2xx whose body is not the API's).
    #[error("{endpoint} may or may not have taken effect: {reason}")]
    UnknownOutcome {
        /// The operation's label.
        endpoint: &'static str,
        /// What happened to the answer.
        reason: String,
    },
    /// A deadline passed, e.g. while waiting for an asynchronous request to be processed.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// The backend does not know the request id (a plain 404 to a request-status poll: a wrong
    /// region or account, or the status expired). Whether the write happened is found by a read.
    #[error("the backend does not know request {request_id} (wrong region or account, or its status expired)")]
    UnknownRequest {
        /// The id asked about.
        request_id: String,
    },
    /// The backend processed an asynchronous request and reports that it failed.
    #[error("request {request_id} was processed but failed: {status}")]
    RequestFailed {
        /// The request id.
        request_id: String,
        /// The backend's status text, e.g. "Alert does not exist".
        status: String,
    },
    /// The gateway could not be set up from the configuration.
    #[error("invalid backend configuration: {0}")]
    Config(String),
}

impl GatewayError {
    /// Whether the same call may succeed later (possibly after verifying what the last one did).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Exhausted { .. }
                | Self::Timeout { .. }
                | Self::UnknownOutcome { .. }
                | Self::UnknownRequest { .. }
        )
    }
}

/// Bounds on retries within one call.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, throttled ones excepted (default 5).
    pub max_attempts: u32,
    /// 429 answers tolerated within one call (default 20).
    pub max_throttles: u32,
    /// First backoff delay (default 200 ms).
    pub backoff_base: Duration,
    /// Longest backoff delay (default 30 s).
    pub backoff_cap: Duration,
    /// No retry starts later than this after the first attempt (default 2 min).
    pub deadline: Duration,
    /// Seed of the jitter; random when unset (tests set it).
    pub seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            max_throttles: 20,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
            seed: None,
        }
    }
}

/// One attempt of one call, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    /// The operation's label (`create_alert`, ...).
    pub endpoint: &'static str,
    /// The rate-limit domain.
    pub domain: Domain,
    /// The HTTP status; `None` when there was no answer (timeout, connection failure).
    pub status: Option<u16>,
    /// Time from sending to the end of the answer.
    pub duration: Duration,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Whether the answer was a 429.
    pub throttled: bool,
    /// The delay before the next attempt, if one follows.
    pub retry_in: Option<Duration>,
}

/// Receives a [`CallEvent`] for every attempt (e.g. to feed Prometheus counters).
pub trait BackendCallObserver: Send + Sync {
    /// Called once per attempt, after its answer or failure.
    fn on_call(&self, event: &CallEvent);
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    product: &'static str,
    codec: Box<dyn Codec>,
    limiter: Limiter,
    permits: Semaphore,
    policy: RetryPolicy,
    rng: StdMutex<StdRng>,
    heartbeat_name: String,
    observer: Option<Arc<dyn BackendCallObserver>>,
}

/// The gateway's logic, usable without actix. Cheap to clone (shared state).
#[derive(Clone)]
pub struct GatewayClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately no client or headers: the key must never be printed.
        f.debug_struct("GatewayClient")
            .field("backend", &self.inner.product)
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl GatewayClient {
    /// A client for the configured backend, with the default [`RetryPolicy`] and no observer.
    pub fn new(cfg: &OpsgenieConfig, api_key: Secret) -> Result<Self, GatewayError> {
        Self::with_policy(cfg, api_key, RetryPolicy::default(), None)
    }

    /// A client with an explicit retry policy and metrics observer.
    pub fn with_policy(
        cfg: &OpsgenieConfig,
        api_key: Secret,
        policy: RetryPolicy,
        observer: Option<Arc<dyn BackendCallObserver>>,
    ) -> Result<Self, GatewayError> {
        if api_key.is_empty() {
            return Err(GatewayError::Config(
                "no API key: set `opsgenie.api_key_file` (or `opsgenie.api_key`) to the key of \
                 an API integration"
                    .into(),
            ));
        }
        let base_url = cfg.base_url();
        let parsed = url::Url::parse(&base_url).map_err(|e| {
            GatewayError::Config(format!("`opsgenie.api_url` {base_url:?} is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(GatewayError::Config(format!(
                "`opsgenie.api_url` {base_url:?} must be an http or https URL"
            )));
        }
        let mut auth =
            HeaderValue::try_from(format!("GenieKey {}", api_key.expose())).map_err(|_| {
                GatewayError::Config(
                    "the API key contains characters that cannot be sent in a header".into(),
                )
            })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));

        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(cfg.request_timeout);
        // Environment proxies apply to real hosts; loopback (tests, sidecars) never goes
        // through one, whatever HTTPS_PROXY says.
        if is_loopback(&parsed) {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| GatewayError::Config(format!("cannot build the HTTP client: {e}")))?;

        let rng = match policy.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let codec = codec_for(cfg.backend, &cfg.source);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                product: codec.product(),
                codec,
                limiter: Limiter::new(&cfg.rate_limits),
                permits: Semaphore::new(cfg.max_concurrency.max(1)),
                policy,
                rng: StdMutex::new(rng),
                heartbeat_name: cfg.heartbeat_name.clone(),
                observer,
            }),
        })
    }

    /// Performs one operation with rate limiting and retries (see the module docs).
    pub async fn call(&self, op: Operation) -> Result<Outcome, GatewayError> {
        let inner = &*self.inner;
        let endpoint = op.endpoint();
        let domain = op.domain();
        let request = inner
            .codec
            .request(&op)
            .map_err(|e| backend_error(e, inner.product, None))?;
        let started = Instant::now();
        let deadline = started + inner.policy.deadline;
        let seed = inner
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random::<u64>();
        let mut backoff =
            Backoff::new(inner.policy.backoff_base, inner.policy.backoff_cap).seeded(seed);
        let mut attempt = 0u32;
        let mut failures = 0u32;
        let mut throttles = 0u32;
        loop {
            attempt += 1;
            let permit = inner
                .limiter
                .acquire_then(domain, inner.permits.acquire())
                .await;
            let sent = Instant::now();
            let answer = self.send(&request).await;
            drop(permit);
            let duration = sent.elapsed();
            // Reports this attempt; the rest of the event is the same for every outcome.
            let observe = |status, throttled, retry_in| {
                self.observe(CallEvent {
                    endpoint,
                    domain,
                    status,
                    duration,
                    attempt,
                    throttled,
                    retry_in,
                })
            };
            let (status, verdict) = match answer {
                Ok((status, headers, body)) => {
                    match inner.codec.response(&op, status, &headers, &body) {
                        Ok(outcome) => {
                            observe(Some(status), false, None);
                            return Ok(outcome);
                        }
                        Err(BackendError::Status { status }) => {
                            (Some(status), retry::classify(status, &headers, &body))
                        }
                        // A 2xx we cannot read. A write may have been accepted: the step finds
                        // out. A read is simply asked again.
                        Err(BackendError::Decode { message, .. })
                            if (200..300).contains(&status) =>
                        {
                            let reason = format!(
                                "{} answered HTTP {status} with a body that is not its API's ({message}); check `opsgenie.api_url` if this persists",
                                inner.product
                            );
                            if op.is_write() {
                                observe(Some(status), false, None);
                                return Err(GatewayError::UnknownOutcome { endpoint, reason });
                            }
                            (
                                Some(status),
                                Verdict::Transient {
                                    reason,
                                    maybe_done: false,
                                },
                            )
                        }
                        Err(BackendError::UnknownRequest { request_id }) => {
                            observe(Some(status), false, None);
                            return Err(GatewayError::UnknownRequest { request_id });
                        }
                        Err(other) => {
                            observe(Some(status), false, None);
                            return Err(backend_error(other, inner.product, Some(status)));
                        }
                    }
                }
                Err(e) => (e.status(), e.verdict(inner.product)),
            };
            // A write that may have reached the backend is not sent again blindly (see
            // `Operation::retry_blind`): a 5xx may come after the effect, a timeout or a broken
            // connection after the request left. Only "never sent" (no connection) and answers
            // that say "not done" (408, 429) are safe to repeat.
            if let Verdict::Transient { reason, maybe_done } = &verdict {
                if *maybe_done && !op.retry_blind() {
                    observe(status, false, None);
                    return Err(GatewayError::UnknownOutcome {
                        endpoint,
                        reason: reason.clone(),
                    });
                }
            }
            let now = Instant::now();
            // Ok(delay before the next attempt) or Err(why no further attempt is made).
            let next: Result<Duration, String> = match verdict {
                Verdict::Throttled { pause } => {
                    throttles += 1;
                    inner.limiter.pause_until(domain, now + pause);
                    if throttles > inner.policy.max_throttles || now + pause > deadline {
                        Err(format!("throttled (HTTP 429) {throttles} times"))
                    } else {
                        Ok(pause)
                    }
                }
                Verdict::Transient { reason, .. } => {
                    failures += 1;
                    let delay = backoff.next_delay();
                    if failures >= inner.policy.max_attempts || now + delay > deadline {
                        Err(reason)
                    } else {
                        Ok(delay)
                    }
                }
                Verdict::Permanent { message, hint } => {
                    observe(status, false, None);
                    return Err(GatewayError::Permanent {
                        status,
                        endpoint,
                        message,
                        hint,
                    });
                }
                // The codec rejected a 2xx it does not expect for this operation.
                Verdict::Success => {
                    observe(status, false, None);
                    return Err(GatewayError::Permanent {
                        status,
                        endpoint,
                        message: "unexpected success status".into(),
                        hint: "check `opsgenie.backend` and `opsgenie.api_url`".into(),
                    });
                }
            };
            let throttled = status == Some(429);
            observe(status, throttled, next.as_ref().ok().copied());
            match next {
                Ok(delay) => {
                    tracing::debug!(endpoint, ?delay, attempt, "retrying backend call");
                    if !throttled {
                        // A throttled call waits in the limiter (its domain is paused); a
                        // transient failure waits here, holding neither turn nor permit.
                        tokio::time::sleep(delay).await;
                    }
                }
                Err(last) => {
                    return Err(GatewayError::Exhausted {
                        endpoint,
                        attempts: attempt,
                        last,
                    })
                }
            }
        }
    }

    /// Polls the status of an asynchronous request until it is processed: after 100 ms, then
    /// with each delay used twice before it doubles, up to 2 s between polls (at 0.1, 0.2, 0.4,
    /// 0.6, 1.0, 1.4 s, ...; [`Backoff::exact`] with `repeat_each(2)`). Using each delay twice
    /// keeps the lag behind a backend that takes half a second or so small (a poll lands 100 ms
    /// after 0.5 s, not 200 ms after), for one poll more than plain doubling. "Not processed yet"
    /// (Opsgenie's 404 with `X-Opsgenie-Errortype: RequestNotProcessed`) is waited out, not taken
    /// for a refusal. Returns what the backend says, success or not; [`GatewayError::Timeout`]
    /// once `deadline` has passed; [`GatewayError::UnknownRequest`] for an id it does not know.
    pub async fn await_request(
        &self,
        request_id: &str,
        deadline: Duration,
    ) -> Result<Processed, GatewayError> {
        let poll = async {
            let mut delays = Backoff::exact(POLL_FIRST_DELAY, POLL_MAX_DELAY).repeat_each(2);
            loop {
                delays.wait().await;
                let op = Operation::RequestStatus {
                    request_id: request_id.to_owned(),
                };
                match self.call(op).await? {
                    Outcome::Processed(processed) => return Ok(processed),
                    Outcome::NotProcessed => {}
                    other => {
                        return Err(GatewayError::Permanent {
                            status: None,
                            endpoint: "request_status",
                            message: format!("unexpected answer {other:?}"),
                            hint: "check `opsgenie.backend` and `opsgenie.api_url`".into(),
                        })
                    }
                }
            }
        };
        match tokio::time::timeout(deadline, poll).await {
            Ok(result) => result,
            Err(_) => Err(GatewayError::Timeout {
                what: format!("request {request_id} to be processed"),
                after: deadline,
            }),
        }
    }

    /// [`GatewayClient::await_request`] for an alert creation: the alert id on success,
    /// [`GatewayError::RequestFailed`] if the backend says the creation failed.
    pub async fn await_alert_id(
        &self,
        request_id: &str,
        deadline: Duration,
    ) -> Result<String, GatewayError> {
        let processed = self.await_request(request_id, deadline).await?;
        if processed.success {
            Ok(processed.alert_id)
        } else {
            Err(GatewayError::RequestFailed {
                request_id: request_id.to_owned(),
                status: processed.status,
            })
        }
    }

    /// Pings the configured heartbeat: proves the host is reachable and the key and region
    /// are right (not that the key may create alerts).
    pub async fn health(&self) -> Result<(), GatewayError> {
        self.call(Operation::Heartbeat {
            name: self.inner.heartbeat_name.clone(),
        })
        .await
        .map(|_| ())
    }

    async fn send(&self, request: &HttpRequest) -> Result<(u16, HeaderMap, Vec<u8>), SendError> {
        let url = format!("{}{}", self.inner.base_url, request.path_and_query);
        let mut builder = self.inner.http.request(request.method.clone(), url);
        if let Some(body) = &request.body {
            builder = builder
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                )
                .body(body.to_string());
        }
        let mut response = builder.send().await?;
        let status = response.status().as_u16();
        let too_large = SendError::TooLarge {
            status,
            limit: MAX_RESPONSE_BODY,
        };
        // A declared length over the cap is refused before a byte of the body is read.
        if response
            .content_length()
            .is_some_and(|declared| declared > MAX_RESPONSE_BODY as u64)
        {
            return Err(too_large);
        }
        let headers = response.headers().clone();
        // Chunk by chunk, so an answer without a length (chunked, or a lying peer) is cut off
        // at the cap: at most one transport chunk beyond what was kept is ever in memory.
        // Dropping the response then closes the connection instead of draining it.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len().saturating_add(chunk.len()) > MAX_RESPONSE_BODY {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    fn observe(&self, event: CallEvent) {
        tracing::debug!(
            target: "teleport_opsgenie::backend_call",
            endpoint = event.endpoint,
            domain = event.domain.as_str(),
            status = event.status.unwrap_or(0),
            duration_ms = event.duration.as_millis() as u64,
            attempt = event.attempt,
            throttled = event.throttled,
            "backend call"
        );
        if let Some(observer) = &self.inner.observer {
            observer.on_call(&event);
        }
    }
}

/// Whether `url` points at this machine.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Transport failures: timeouts and connection failures are transient; a request that could
/// not even be built is permanent.
fn transport_verdict(e: &reqwest::Error, product: &str) -> Verdict {
    if e.is_builder() {
        return Verdict::Permanent {
            message: e.to_string(),
            hint: "check `opsgenie.api_url`".into(),
        };
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    Verdict::Transient {
        reason: format!("{what} talking to {product}: {e}"),
        // Only a connection that was never made proves that nothing was sent.
        maybe_done: !e.is_connect(),
    }
}

/// Why one attempt got no usable answer. Both kinds are transient: the attempt is retried.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// No answer: timeout, connection failure, or a request that could not be built.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// The answer's body was over [`MAX_RESPONSE_BODY`]; it was not read further.
    #[error(
        "the answer (HTTP {status}) is larger than the {} MiB limit on backend answers",
        .limit / (1024 * 1024)
    )]
    TooLarge {
        /// The answer's HTTP status.
        status: u16,
        /// The limit, [`MAX_RESPONSE_BODY`].
        limit: usize,
    },
}

impl SendError {
    /// The HTTP status, when an answer began.
    fn status(&self) -> Option<u16> {
        match self {
            Self::Transport(e) => e.status().map(|s| s.as_u16()),
            Self::TooLarge { status, .. } => Some(*status),
        }
    }

    /// What to do about it. An oversized answer is retried like a 5xx: a proxy or a backend
    /// in trouble may answer properly next time, and the work must not be lost meanwhile. An
    /// answer did arrive, so a write may have taken effect: maybe done, verify before redoing.
    fn verdict(&self, product: &str) -> Verdict {
        match self {
            Self::Transport(e) => transport_verdict(e, product),
            Self::TooLarge { .. } => Verdict::Transient {
                reason: format!("{product}: {self}"),
                maybe_done: true,
            },
        }
    }
}

fn backend_error(e: BackendError, product: &str, status: Option<u16>) -> GatewayError {
    let hint = match &e {
        BackendError::Decode { .. } => format!(
            "the answer is not {product}'s API: check `opsgenie.backend` and `opsgenie.api_url`"
        ),
        BackendError::UnknownRequest { .. } => {
            "the request id is unknown: wrong id, region or account, or it expired".into()
        }
        BackendError::Unsupported { .. } => "see the message".into(),
        BackendError::Status { status } => format!("unexpected HTTP status {status}"),
    };
    let endpoint = match &e {
        BackendError::Decode { endpoint, .. } | BackendError::Unsupported { endpoint, .. } => {
            endpoint
        }
        BackendError::UnknownRequest { .. } => "request_status",
        BackendError::Status { .. } => "backend",
    };
    GatewayError::Permanent {
        status,
        endpoint,
        message: e.to_string(),
        hint,
    }
}

/// The gateway actor: a thin shell around [`GatewayClient`].
#[derive(Debug, Clone)]
pub struct Gateway {
    client: GatewayClient,
}

impl Gateway {
    /// A gateway around a client.
    pub fn from_client(client: GatewayClient) -> Self {
        Self { client }
    }
}

impl Actor for Gateway {
    type Context = Context<Self>;
}

/// Performs one operation; see [`GatewayClient::call`].
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Outcome, GatewayError>")]
pub struct Call(pub Operation);

/// Pings the heartbeat; see [`GatewayClient::health`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), GatewayError>")]
pub struct Health;

impl Handler<Call> for Gateway {
    type Result = ResponseFuture<Result<Outcome, GatewayError>>;

    fn handle(&mut self, msg: Call, _ctx: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        Box::pin(async move { client.call(msg.0).await })
    }
}

impl Handler<Health> for Gateway {
    type Result = ResponseFuture<Result<(), GatewayError>>;

    fn handle(&mut self, _msg: Health, _ctx: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        Box::pin(async move { client.health().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::AlertPayload;
    use crate::config::{Limit, RateLimits};
    use actix::Actor;
    use mockito::Matcher;
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const KEY: &str = "0a1b2c3d-aaaa-bbbb-cccc-0123456789ab";

    #[derive(Default)]
    struct Recorder(StdMutex<Vec<CallEvent>>);

    impl BackendCallObserver for Recorder {
        fn on_call(&self, event: &CallEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    impl Recorder {
        fn events(&self) -> Vec<CallEvent> {
            self.0.lock().unwrap().clone()
        }
    }

    fn config(url: &str) -> OpsgenieConfig {
        let none = Limit::new(0, 0);
        OpsgenieConfig {
            api_url: Some(url.to_owned()),
            request_timeout: Duration::from_secs(5),
            rate_limits: RateLimits {
                alert: none,
                search: none,
                schedule_oncalls: none,
                heartbeat: none,
            },
            ..OpsgenieConfig::default()
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            backoff_base: Duration::from_millis(20),
            backoff_cap: Duration::from_millis(500),
            seed: Some(42),
            ..RetryPolicy::default()
        }
    }

    fn client(cfg: &OpsgenieConfig) -> (GatewayClient, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let client = GatewayClient::with_policy(
            cfg,
            Secret::new(KEY),
            policy(),
            Some(recorder.clone() as Arc<dyn BackendCallObserver>),
        )
        .unwrap();
        (client, recorder)
    }

    fn payload() -> AlertPayload {
        AlertPayload {
            message: "alice requested editor".into(),
            alias: "teleport-access-request/abc".into(),
            description: "reason: deploy".into(),
            responders: vec![],
            tags: vec!["teleport-access-request".into()],
            details: Default::default(),
            entity: String::new(),
            source: "teleport-opsgenie".into(),
            priority: "P3".into(),
        }
    }

    const ACCEPTED: &str =
        r#"{"result":"Request will be processed","took":0.302,"requestId":"req-1"}"#;

    /// Finishes `mock`: it answers 202 Accepted (request id `req-1`), and expects one call.
    async fn accepting_once(mock: mockito::Mock) -> mockito::Mock {
        mock.with_status(202)
            .with_body(ACCEPTED)
            .expect(1)
            .create_async()
            .await
    }

    #[actix::test]
    async fn create_sends_the_exact_request() {
        let mut server = mockito::Server::new_async().await;
        let mock = accepting_once(
            server
                .mock("POST", "/v2/alerts")
                .match_header("authorization", format!("GenieKey {KEY}").as_str())
                .match_header("content-type", "application/json; charset=utf-8")
                .match_header("accept", "application/json")
                .match_header("user-agent", USER_AGENT)
                .match_body(Matcher::Json(json!({
                    "message": "alice requested editor",
                    "alias": "teleport-access-request/abc",
                    "description": "reason: deploy",
                    "tags": ["teleport-access-request"],
                    "source": "teleport-opsgenie",
                    "priority": "P3"
                }))),
        )
        .await;
        let cfg = config(&server.url());
        let gateway =
            Gateway::from_client(GatewayClient::new(&cfg, Secret::new(KEY)).unwrap()).start();
        let outcome = gateway
            .send(Call(Operation::CreateAlert(payload())))
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Ok(Outcome::Accepted {
                request_id: "req-1".into()
            })
        );
        mock.assert_async().await;
    }

    #[actix::test]
    async fn note_and_close_go_to_the_alert_by_id() {
        let mut server = mockito::Server::new_async().await;
        let note = accepting_once(
            server
                .mock("POST", "/v2/alerts/a-1/notes?identifierType=id")
                .match_header("authorization", format!("GenieKey {KEY}").as_str())
                .match_body(Matcher::Json(
                    json!({"note": "bob approved", "source": "teleport-opsgenie"}),
                )),
        )
        .await;
        let close = accepting_once(
            server
                .mock("POST", "/v2/alerts/a-1/close?identifierType=id")
                .match_body(Matcher::Json(
                    json!({"note": "request approved", "source": "teleport-opsgenie"}),
                )),
        )
        .await;
        let (client, _) = client(&config(&server.url()));
        let gateway = Gateway::from_client(client).start();
        let alert = crate::backend::AlertRef::Id("a-1".into());
        let noted = gateway
            .send(Call(Operation::AddNote {
                alert: alert.clone(),
                note: "bob approved".into(),
            }))
            .await
            .unwrap();
        assert!(matches!(noted, Ok(Outcome::Accepted { .. })), "{noted:?}");
        let closed = gateway
            .send(Call(Operation::CloseAlert {
                alert,
                note: "request approved".into(),
            }))
            .await
            .unwrap();
        assert!(matches!(closed, Ok(Outcome::Accepted { .. })), "{closed:?}");
        note.assert_async().await;
        close.assert_async().await;
    }

    /// One answer of a [`scripted_server`]: status, extra headers, body.
    type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

    /// A loopback HTTP/1.1 server on the test's own runtime, answering the n-th request (from
    /// 0) with `answer(n)`, one connection per request. Unlike mockito, which serves from a
    /// thread of its own, it runs on the test's paused clock: an answer that is ready at once
    /// wakes the runtime before the clock can auto-advance past a client timeout, so virtual
    /// time moves only where the gateway sleeps. Returns its URL and the request count.
    async fn scripted_server(
        answer: impl Fn(usize) -> Answer + Send + Sync + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let (requests, answer) = (count.clone(), Arc::new(answer));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (requests, answer) = (requests.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = Vec::new();
                    let end = loop {
                        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&read[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while read.len() < end + length {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (status, headers, body) = answer(requests.fetch_add(1, Ordering::SeqCst));
                    let mut out = format!(
                        "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                        body.len()
                    );
                    for (name, value) in headers {
                        out.push_str(&format!("{name}: {value}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(body);
                    let _ = socket.write_all(out.as_bytes()).await;
                });
            }
        });
        (url, count)
    }

    #[tokio::test(start_paused = true)]
    async fn alert_id_arrives_right_after_processing() {
        // Processed 300 ms after the first poll; 404 + RequestNotProcessed until then.
        let first_poll: Arc<StdMutex<Option<Instant>>> = Arc::default();
        let (url, requests) = scripted_server(move |_| {
            let mut first = first_poll.lock().unwrap();
            if first.get_or_insert_with(Instant::now).elapsed() >= Duration::from_millis(300) {
                (
                    200,
                    vec![],
                    r#"{"data":{"success":true,"isSuccess":true,"action":"Create","status":"Created alert","alertId":"alert-9","alias":"teleport-access-request/abc"},"took":0.02,"requestId":"req-1"}"#,
                )
            } else {
                (404, vec![("X-Opsgenie-Errortype", "RequestNotProcessed")], r#"{"message":"Request not processed yet","took":0.0,"requestId":"x"}"#)
            }
        })
        .await;
        let (client, _) = client(&config(&url));
        let started = Instant::now();
        let id = client
            .await_alert_id("req-1", Duration::from_secs(10))
            .await;
        assert_eq!(id, Ok("alert-9".into()));
        // Polls at 0.1, 0.2 and 0.4 s: the answer is taken 100 ms after it was ready, not
        // seconds later.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(450),
            "{elapsed:?}"
        );
        assert_eq!(requests.load(Ordering::SeqCst), 3);
    }

    #[actix::test]
    async fn alert_id_failure_and_timeout() {
        let mut server = mockito::Server::new_async().await;
        server
            .mock("GET", "/v2/alerts/requests/bad")
            .with_status(200)
            .with_body(
                r#"{"data":{"isSuccess":false,"action":"Close","status":"Alert does not exist","alertId":"","alias":""}}"#,
            )
            .create_async()
            .await;
        server
            .mock("GET", "/v2/alerts/requests/slow")
            .with_status(404)
            .with_header("X-Opsgenie-Errortype", "RequestNotProcessed")
            .create_async()
            .await;
        server
            .mock("GET", "/v2/alerts/requests/unknown")
            .with_status(404)
            .create_async()
            .await;
        let (client, _) = client(&config(&server.url()));
        assert_eq!(
            client.await_alert_id("bad", Duration::from_secs(5)).await,
            Err(GatewayError::RequestFailed {
                request_id: "bad".into(),
                status: "Alert does not exist".into()
            })
        );
        let slow = client
            .await_alert_id("slow", Duration::from_millis(400))
            .await
            .unwrap_err();
        assert!(matches!(slow, GatewayError::Timeout { .. }), "{slow:?}");
        assert!(slow.is_retryable());
        let unknown = client
            .await_alert_id("unknown", Duration::from_secs(5))
            .await
            .unwrap_err();
        // Typed, and "maybe done": the step reads the alert to find out.
        assert_eq!(
            unknown,
            GatewayError::UnknownRequest {
                request_id: "unknown".into()
            }
        );
        assert!(
            unknown.to_string().contains("wrong region or account"),
            "{unknown}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_call_retries_once_after_the_period() {
        let (url, requests) = scripted_server(|n| match n {
            0 => (
                429,
                vec![
                    ("X-RateLimit-State", "THROTTLED"),
                    ("X-RateLimit-Period-In-Sec", "1"),
                ],
                r#"{"message":"You are making too many requests!","took":0.002,"requestId":"x"}"#,
            ),
            _ => (202, vec![], ACCEPTED),
        })
        .await;
        let (client, recorder) = client(&config(&url));
        let started = Instant::now();
        let outcome = client.call(Operation::CreateAlert(payload())).await;
        assert_eq!(
            outcome,
            Ok(Outcome::Accepted {
                request_id: "req-1".into()
            })
        );
        // The domain's pause, and nothing more.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1050),
            "{elapsed:?}"
        );
        assert_eq!(requests.load(Ordering::SeqCst), 2);
        let events = recorder.events();
        assert_eq!(events.len(), 2);
        assert!(events[0].throttled);
        assert_eq!(events[0].status, Some(429));
        assert_eq!(events[0].retry_in, Some(Duration::from_secs(1)));
        assert_eq!((events[1].status, events[1].attempt), (Some(202), 2));
    }

    #[actix::test]
    async fn unavailable_three_times_then_accepted() {
        let mut server = mockito::Server::new_async().await;
        let failing = server
            .mock("POST", "/v2/alerts")
            .with_status(503)
            .expect(3)
            .create_async()
            .await;
        let accepted = accepting_once(server.mock("POST", "/v2/alerts")).await;
        let (client, recorder) = client(&config(&server.url()));
        let outcome = client.call(Operation::CreateAlert(payload())).await;
        assert!(
            matches!(outcome, Ok(Outcome::Accepted { .. })),
            "{outcome:?}"
        );
        failing.assert_async().await;
        accepted.assert_async().await;
        let delays: Vec<Duration> = recorder
            .events()
            .iter()
            .filter_map(|e| e.retry_in)
            .collect();
        assert_eq!(delays.len(), 3);
        // The crate's backoff: each delay lies in [base, ceiling], the ceiling doubling.
        let base = policy().backoff_base;
        for (n, delay) in delays.iter().enumerate() {
            let ceiling = (base * 2u32.pow(n as u32)).min(policy().backoff_cap);
            assert!(*delay >= base && *delay <= ceiling, "{delays:?}");
        }
    }

    #[actix::test]
    async fn exhausted_after_max_attempts() {
        let mut server = mockito::Server::new_async().await;
        let failing = server
            .mock("GET", "/v2/heartbeats/teleport-access-heartbeat/ping")
            .with_status(502)
            .expect(5)
            .create_async()
            .await;
        let (client, _) = client(&config(&server.url()));
        let err = client.health().await.unwrap_err();
        assert!(
            matches!(err, GatewayError::Exhausted { attempts: 5, .. }),
            "{err:?}"
        );
        assert!(err.is_retryable());
        failing.assert_async().await;
    }

    #[actix::test]
    async fn unprocessable_is_not_retried_and_explains() {
        let mut server = mockito::Server::new_async().await;
        let mock = server
            .mock("POST", "/v2/alerts")
            .with_status(422)
            .with_body(r#"{"message":"Request body is not processable. Please check the errors.","errors":{"message":"Message can not be empty."},"took":0.083,"requestId":"r"}"#)
            .expect(1)
            .create_async()
            .await;
        let (client, _) = client(&config(&server.url()));
        let err = client
            .call(Operation::CreateAlert(payload()))
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.contains("HTTP 422"), "{text}");
        assert!(
            text.contains("message: Message can not be empty."),
            "{text}"
        );
        mock.assert_async().await;
    }

    #[actix::test]
    async fn bad_key_error_names_the_fix_and_hides_the_key() {
        let mut server = mockito::Server::new_async().await;
        server
            .mock("GET", "/v2/heartbeats/teleport-access-heartbeat/ping")
            .with_status(401)
            .with_body(r#"{"message":"Could not authenticate","took":0.002,"requestId":"r"}"#)
            .expect(1)
            .create_async()
            .await;
        let cfg = config(&server.url());
        let gateway = Gateway::from_client(GatewayClient::new(&cfg, Secret::new(KEY)).unwrap());
        assert!(!format!("{gateway:?}").contains(KEY));
        let addr = gateway.start();
        let err = addr.send(Health).await.unwrap().unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("opsgenie.region: eu"), "{text}");
        assert!(!text.contains(KEY));
    }

    /// A server that never answers its first connection and answers 202 afterwards.
    async fn stalling_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            let mut stalled = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    stalled.push(socket);
                    continue;
                }
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = Vec::new();
                    while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = r#"{"result":"PONG - Heartbeat received","took":0,"requestId":"p"}"#;
                    let answer = format!(
                        "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, connections)
    }

    #[actix::test]
    async fn a_timeout_is_retried() {
        let (url, connections) = stalling_server().await;
        let mut cfg = config(&url);
        cfg.request_timeout = Duration::from_millis(300);
        let (client, recorder) = client(&cfg);
        assert_eq!(client.health().await, Ok(()));
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        let events = recorder.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].status, None);
        assert!(events[0].retry_in.is_some());
        assert_eq!(events[1].status, Some(202));
    }

    /// How a [`flooding_server`] makes its first answers too large.
    #[derive(Clone, Copy)]
    enum Flood {
        /// A chunked 200 body that never ends (no length to refuse it by).
        Endless,
        /// A 200 declaring a 1 GiB body, of which it sends nothing.
        Declared,
    }

    /// A server whose first `oversized` answers are too large (see [`Flood`]) and whose later
    /// answers are 202. Returns its URL, the number of connections, and the body bytes it
    /// managed to write, with a flag set once the endless writer gave up.
    async fn flooding_server(
        flood: Flood,
        oversized: usize,
    ) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicUsize::new(0));
        let gave_up = Arc::new(AtomicBool::new(false));
        let (count, bytes, done) = (connections.clone(), written.clone(), gave_up.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let (bytes, done) = (bytes.clone(), done.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = Vec::new();
                    while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                    }
                    if n >= oversized {
                        let answer = format!(
                            "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{ACCEPTED}",
                            ACCEPTED.len()
                        );
                        let _ = socket.write_all(answer.as_bytes()).await;
                        return;
                    }
                    match flood {
                        Flood::Declared => {
                            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n";
                            let _ = socket.write_all(head.as_bytes()).await;
                            // Hold the connection open until the client drops it.
                            let _ = socket.read(&mut buf).await;
                        }
                        Flood::Endless => {
                            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                            if socket.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let mut chunk = b"10000\r\n".to_vec();
                            chunk.extend(std::iter::repeat_n(b' ', 0x10000));
                            chunk.extend_from_slice(b"\r\n");
                            // Stops when the client hangs up; 1 GiB at most, so a client
                            // that reads without a limit fails the test instead of hanging.
                            for _ in 0..(1usize << 14) {
                                if socket.write_all(&chunk).await.is_err() {
                                    break;
                                }
                                bytes.fetch_add(0x10000, Ordering::SeqCst);
                            }
                            done.store(true, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        (url, connections, written, gave_up)
    }

    #[actix::test]
    async fn an_endless_answer_is_cut_at_the_cap_and_retried() {
        let (url, connections, written, gave_up) = flooding_server(Flood::Endless, 1).await;
        let (client, recorder) = client(&config(&url));
        let outcome = client.call(Operation::CreateAlert(payload())).await;
        assert_eq!(
            outcome,
            Ok(Outcome::Accepted {
                request_id: "req-1".into()
            })
        );
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        let events = recorder.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].status, Some(200));
        assert!(events[0].retry_in.is_some(), "{events:?}");
        assert_eq!(events[1].status, Some(202));
        // The client hung up: the writer stopped long before its 1 GiB. What it wrote is the
        // cap plus what the kernel's socket buffers absorbed (Linux lets a loopback receive
        // buffer grow to 32 MiB), far from the 1 GiB a reader without a limit takes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gave_up.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the flood was never cut off");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let written = written.load(Ordering::SeqCst);
        assert!(
            written < MAX_RESPONSE_BODY + 128 * 1024 * 1024,
            "{written} bytes were taken"
        );
    }

    #[actix::test]
    async fn a_declared_oversized_answer_is_refused_and_named() {
        let (url, connections, _, _) = flooding_server(Flood::Declared, usize::MAX).await;
        let recorder = Arc::new(Recorder::default());
        let client = GatewayClient::with_policy(
            &config(&url),
            Secret::new(KEY),
            RetryPolicy {
                max_attempts: 2,
                ..policy()
            },
            Some(recorder.clone() as Arc<dyn BackendCallObserver>),
        )
        .unwrap();
        let err = client
            .call(Operation::CreateAlert(payload()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, GatewayError::Exhausted { attempts: 2, .. }),
            "{err:?}"
        );
        assert!(err.is_retryable());
        let text = err.to_string();
        assert!(text.contains("larger than the 4 MiB limit"), "{text}");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert_eq!(recorder.events().len(), 2);
    }

    #[actix::test]
    async fn jsm_on_call_fails_without_a_call() {
        let mut cfg = config("http://127.0.0.1:9");
        cfg.backend = crate::config::BackendKind::Jsm;
        let (client, recorder) = client(&cfg);
        let err = client
            .call(Operation::OnCall {
                schedule: "sre".into(),
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("on-call lookups need"), "{err}");
        assert!(!err.is_retryable());
        assert!(recorder.events().is_empty());
    }

    #[test]
    fn config_errors() {
        let cfg = config("http://127.0.0.1:9");
        assert!(matches!(
            GatewayClient::new(&cfg, Secret::new("")),
            Err(GatewayError::Config(_))
        ));
        assert!(matches!(
            GatewayClient::new(&config("ftp://example.com"), Secret::new(KEY)),
            Err(GatewayError::Config(_))
        ));
        let err = GatewayClient::new(&cfg, Secret::new("bad\nkey")).unwrap_err();
        assert!(!err.to_string().contains("bad"));
    }

    #[test]
    fn loopback_detection() {
        let loopback = |u: &str| is_loopback(&url::Url::parse(u).unwrap());
        assert!(loopback("http://127.0.0.1:8080"));
        assert!(loopback("http://localhost"));
        assert!(loopback("http://[::1]:80"));
        assert!(!loopback("https://api.opsgenie.com"));
    }
}
