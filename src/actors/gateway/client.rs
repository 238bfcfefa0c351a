//! [`GatewayClient`]: the HTTP client with the rate limiter and concurrency bound it holds, and
//! one call's retry loop (see the parent module's docs).

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::backend::backoff::Backoff;
use crate::backend::limiter::Limiter;
use crate::backend::processing::Estimate;
use crate::backend::retry::{self, Verdict};
use crate::backend::{codec_for, BackendError, Codec, HttpRequest, Operation, Outcome, Processed};
use crate::config::{BackendKind, OpsgenieConfig, Secret};

use super::verdict::{backend_error, SendError};

#[path = "route.rs"]
mod route;
use super::{BackendCallObserver, CallEvent, GatewayError};
use route::{rest_route, RestRoute};

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

/// How long JSM's request status may answer 404 "request is not found" before the id is taken
/// for unknown. JSM says that both for a write it has not processed yet and for an id it does
/// not know; it applies accepted writes within seconds, so half a minute of 404s means the id
/// is not known, and the step reads the alert instead (by alias, or its notes).
pub const JSM_NOT_FOUND_GRACE: Duration = Duration::from_secs(30);

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
    /// How long JSM's request status may answer 404 before the id is taken for unknown
    /// (default [`JSM_NOT_FOUND_GRACE`]).
    pub not_found_grace: Duration,
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
            not_found_grace: JSM_NOT_FOUND_GRACE,
        }
    }
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    /// `GenieKey <key>`, marked sensitive.
    genie_auth: HeaderValue,
    /// JSM's REST API (`backend: jsm` only).
    rest: Option<RestRoute>,
    product: &'static str,
    codec: Box<dyn Codec>,
    limiter: Limiter,
    permits: Semaphore,
    policy: RetryPolicy,
    rng: StdMutex<StdRng>,
    heartbeat_name: String,
    observer: Option<Arc<dyn BackendCallObserver>>,
    /// How long the backend has lately taken to apply a write (`backend::processing`).
    processing: StdMutex<Estimate>,
}

/// Locks shared gateway state: the poll-time estimate (replaced whole) or the jitter's random
/// generator (any state of it is a valid one), so a lock poisoned by a panic is used as it is.
fn lock<T>(mutex: &StdMutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
        let mut genie_auth = HeaderValue::try_from(format!("GenieKey {}", api_key.expose()))
            .map_err(|_| {
                GatewayError::Config(
                    "the API key contains characters that cannot be sent in a header".into(),
                )
            })?;
        genie_auth.set_sensitive(true);
        let rest = match cfg.backend {
            BackendKind::Jsm => Some(rest_route(cfg)?),
            BackendKind::Opsgenie => None,
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));

        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(cfg.request_timeout);
        // Environment proxies apply to real hosts; loopback (tests, sidecars) never goes
        // through one, whatever HTTPS_PROXY says.
        let rest_loopback = rest
            .as_ref()
            .is_some_and(|r| url::Url::parse(&r.rest_base).is_ok_and(|u| is_loopback(&u)));
        if is_loopback(&parsed) || rest_loopback {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| GatewayError::Config(format!("cannot build the HTTP client: {e}")))?;

        let rng = match policy.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let codec = codec_for(cfg);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                genie_auth,
                rest,
                product: codec.product(),
                codec,
                limiter: Limiter::new(&cfg.rate_limits),
                permits: Semaphore::new(cfg.max_concurrency.max(1)),
                policy,
                rng: StdMutex::new(rng),
                heartbeat_name: cfg.heartbeat_name.clone(),
                observer,
                processing: StdMutex::new(Estimate::default()),
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
        // Which host and credential; on JSM the first REST call looks the cloudId up.
        let route = self.route(request.api).await?;
        let started = Instant::now();
        let deadline = started + inner.policy.deadline;
        let seed = lock(&inner.rng).random::<u64>();
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
            let answer = self.send(&request, &route).await;
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
                            let verdict = retry::classify(status, &headers, &body);
                            (
                                Some(status),
                                crate::backend::jsm::errors::refine(
                                    request.api,
                                    status,
                                    &body,
                                    verdict,
                                ),
                            )
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
    /// 0.6, 1.0, 1.4 s, ...; [`Backoff::exact`] with `repeat_each(2)`), the whole schedule
    /// starting a little before the time the backend has lately taken to apply a write
    /// ([`crate::backend::processing`]: one or two polls per write at a steady delay). Using each
    /// delay twice keeps the lag behind a backend that takes half a second or so small (a poll
    /// lands 100 ms after 0.5 s, not 200 ms after), for one poll more than plain doubling. "Not
    /// processed yet"
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
            let started = Instant::now();
            // Start near the time the backend has lately taken (`backend::processing`).
            let offset = self.estimate().offset();
            if !offset.is_zero() {
                tokio::time::sleep(offset).await;
            }
            let mut polls = 0u32;
            loop {
                delays.wait().await;
                polls += 1;
                let op = Operation::RequestStatus {
                    request_id: request_id.to_owned(),
                };
                match self.call(op).await? {
                    Outcome::Processed(processed) => {
                        self.learn(started.elapsed(), polls);
                        return Ok(processed);
                    }
                    Outcome::NotProcessed => {}
                    // JSM: "not found" is "not yet" for a while, then "unknown".
                    Outcome::NotFoundYet
                        if started.elapsed() < self.inner.policy.not_found_grace => {}
                    Outcome::NotFoundYet => {
                        return Err(GatewayError::UnknownRequest {
                            request_id: request_id.to_owned(),
                        })
                    }
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

    fn estimate(&self) -> Estimate {
        *lock(&self.inner.processing)
    }

    fn learn(&self, elapsed: Duration, polls: u32) {
        let mut estimate = lock(&self.inner.processing);
        *estimate = estimate.observe(elapsed, polls);
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

    async fn send(
        &self,
        request: &HttpRequest,
        (base, auth): &(String, Option<HeaderValue>),
    ) -> Result<(u16, HeaderMap, Vec<u8>), SendError> {
        let url = format!("{base}{}", request.path_and_query);
        let mut builder = self.inner.http.request(request.method.clone(), url);
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
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
pub(super) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
