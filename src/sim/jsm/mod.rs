//! A fake Jira Service Management Operations, faithful to what Atlassian documents
//! (opsgenie-api.md §9.6), for tests and, later, the sandbox. One loopback server plays every
//! host the daemon talks to:
//!
//! - **Integration Events API**, `/jsm/ops/integration` (`api.atlassian.com`), `Authorization:
//!   GenieKey <key>`: exactly the four documented operations, `POST /v2/alerts` (create) and
//!   `POST /v2/alerts/{identifier}/close|notes|acknowledge` (`identifierType` `id`, `alias` or
//!   `tiny`). Each answers 202 with a `requestId` and is applied after the processing delay.
//!   Anything else under the prefix, request status and heartbeats included, is 404.
//! - **JSM Operations REST API**, `/jsm/ops/api/{cloudId}/v1` (`api.atlassian.com`), Basic auth
//!   with an account e-mail and API token, the site's cloudId in the path: request status (a
//!   bare object; 404 "request is not found" until processed), alert by id and by alias, listing
//!   alerts and an alert's notes (`values`/`links` paging), schedules by name, on-calls (`flat`:
//!   accountIds), timelines, the team-scoped heartbeat ping. Paths take ids only.
//! - **Jira platform user API**, `/rest/api/3/user` and `/rest/api/3/user/bulk` (on the site,
//!   or under `/ex/jira/{cloudId}`), Basic auth: `emailAddress` is absent for users whose
//!   profile hides it.
//! - **`/_edge/tenant_info`** on the site: `{"cloudId": …}`.
//!
//! Every call is recorded ([`Call`]) with the documented operation it matched, or `None` for an
//! undocumented path, so a test can assert exact bodies and that nothing undocumented was used
//! ([`FakeJsm::undocumented_calls`]). Time follows tokio's clock (processing delays work under a
//! paused clock); recorded dates are wall-clock.

mod calendar;
mod faults;
mod handle;
mod integration;
mod model;
mod rest;
mod site;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use uuid::Uuid;

pub use faults::Faults;
pub use model::{Alert, AlertStatus, Api, Call, Note, Period, Rotation, Schedule, User};

use crate::sim::stop_on_drop::StopOnDrop;
use model::State;

/// Prefix of the Integration Events API.
pub const INTEGRATION_PREFIX: &str = "/jsm/ops/integration";

/// Prefix of the REST API (the cloudId follows).
pub const REST_PREFIX: &str = "/jsm/ops/api";

/// The default Integration Events key of [`FakeJsmOptions::default`].
pub const DEFAULT_GENIE_KEY: &str = "22222222-3333-4444-5555-666666666666";

/// The default REST account of [`FakeJsmOptions::default`].
pub const DEFAULT_EMAIL: &str = "ops-bot@example.com";

/// The default API token of [`FakeJsmOptions::default`].
pub const DEFAULT_API_TOKEN: &str = "ATATT3xFfGF0-fake-token";

/// The default cloudId of [`FakeJsmOptions::default`].
pub const DEFAULT_CLOUD_ID: &str = "8e7b3f2a-1c4d-4e5f-9a6b-7c8d9e0f1a2b";

/// Largest request body the fake reads; bigger ones get 413.
const MAX_BODY: usize = 1 << 20;

/// How to start a [`FakeJsm`].
#[derive(Clone)]
pub struct FakeJsmOptions {
    /// Keys of API integrations, for the Integration Events API.
    pub genie_keys: Vec<String>,
    /// (account e-mail, API token) pairs accepted by the REST and user APIs.
    pub accounts: Vec<(String, String)>,
    /// The site's cloudId.
    pub cloud_id: String,
    /// Time between a 202 and the write being applied.
    pub processing_delay: Duration,
    /// Seed of the fault injector's random choices.
    pub seed: u64,
}

impl Default for FakeJsmOptions {
    fn default() -> Self {
        Self {
            genie_keys: vec![DEFAULT_GENIE_KEY.to_owned()],
            accounts: vec![(DEFAULT_EMAIL.to_owned(), DEFAULT_API_TOKEN.to_owned())],
            cloud_id: DEFAULT_CLOUD_ID.to_owned(),
            processing_delay: Duration::ZERO,
            seed: 1,
        }
    }
}

// Keys and tokens are secrets: never print them.
impl std::fmt::Debug for FakeJsmOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeJsmOptions")
            .field(
                "genie_keys",
                &format_args!("[{} redacted]", self.genie_keys.len()),
            )
            .field(
                "accounts",
                &format_args!("[{} redacted]", self.accounts.len()),
            )
            .field("cloud_id", &self.cloud_id)
            .field("processing_delay", &self.processing_delay)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another test thread must not cascade into every later call.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Inner {
    addr: SocketAddr,
    options: FakeJsmOptions,
    integration_id: String,
    processing_delay: Mutex<Duration>,
    faults: Faults,
    state: Mutex<State>,
    /// Woken on every recorded call or change (for `wait_until`).
    changed: Notify,
    shutdown: watch::Sender<bool>,
}

impl Inner {
    /// The state, after applying every write that has fallen due.
    fn state(&self) -> MutexGuard<'_, State> {
        let mut st = lock(&self.state);
        if st.process_due(Instant::now()) {
            self.changed.notify_waiters();
        }
        st
    }
}

/// A running fake JSM. Cheap to clone; all clones share one server, which stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct FakeJsm {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for FakeJsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeJsm")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl FakeJsm {
    /// Binds 127.0.0.1:0 and serves. Must be called inside a tokio runtime.
    pub async fn start(options: FakeJsmOptions) -> std::io::Result<FakeJsm> {
        let listener = tokio::net::TcpListener::bind((IpAddr::from([127, 0, 0, 1]), 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, mut stop) = watch::channel(false);
        let inner = Arc::new(Inner {
            addr,
            processing_delay: Mutex::new(options.processing_delay),
            faults: Faults::new(options.seed),
            options,
            integration_id: Uuid::new_v4().to_string(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            shutdown,
        });
        let app = Router::new()
            .fallback(handle::handle)
            .with_state(inner.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "fake JSM server stopped");
            }
        });
        let stop = {
            let inner = Arc::clone(&inner);
            StopOnDrop::new(move || {
                let _ = inner.shutdown.send(true);
            })
        };
        Ok(FakeJsm { inner, _stop: stop })
    }

    /// `http://127.0.0.1:PORT`: the site, and `api.atlassian.com` (append the prefixes).
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The Integration Events base URL.
    pub fn integration_url(&self) -> String {
        format!("{}{INTEGRATION_PREFIX}", self.url())
    }

    /// The REST API base URL, cloudId included.
    pub fn rest_url(&self) -> String {
        format!(
            "{}{REST_PREFIX}/{}",
            self.url(),
            self.inner.options.cloud_id
        )
    }

    /// The site's cloudId.
    pub fn cloud_id(&self) -> String {
        self.inner.options.cloud_id.clone()
    }

    /// The id of the API integration that processed writes (in request statuses).
    pub fn integration_id(&self) -> String {
        self.inner.integration_id.clone()
    }

    /// Changes the processing delay of writes accepted from now on (applied in order of
    /// receipt, so a later write never overtakes an earlier one).
    pub fn set_processing_delay(&self, d: Duration) {
        *lock(&self.inner.processing_delay) = d;
    }

    /// The fault injector (off until set).
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Accepted writes not applied yet.
    pub fn pending_requests(&self) -> usize {
        self.inner.state().pending.len()
    }

    /// Adds a team (heartbeats are team-scoped); returns its id.
    pub fn add_team(&self) -> String {
        let id = Uuid::new_v4().to_string();
        lock(&self.inner.state).teams.push(id.clone());
        id
    }

    /// Adds a user. `email_visible: false` is a profile that hides the e-mail.
    pub fn add_user(&self, account_id: &str, display_name: &str, email: &str, email_visible: bool) {
        lock(&self.inner.state).users.insert(
            account_id.to_owned(),
            User {
                account_id: account_id.to_owned(),
                display_name: display_name.to_owned(),
                email: email.to_owned(),
                email_visible,
            },
        );
    }

    /// Adds a schedule with these accountIds on call; returns its id.
    pub fn add_schedule(&self, name: &str, team_id: Option<&str>, on_call: &[&str]) -> String {
        let id = Uuid::new_v4().to_string();
        lock(&self.inner.state).schedules.push(Schedule {
            id: id.clone(),
            name: name.to_owned(),
            team_id: team_id.map(str::to_owned),
            on_call: on_call.iter().map(|s| (*s).to_owned()).collect(),
            timeline: Vec::new(),
        });
        self.inner.changed.notify_waiters();
        id
    }

    /// Replaces who is on call in the schedule with this id; false if there is none.
    pub fn set_on_call(&self, schedule_id: &str, on_call: &[&str]) -> bool {
        self.with_schedule(schedule_id, |s| {
            s.on_call = on_call.iter().map(|s| (*s).to_owned()).collect();
        })
    }

    /// Replaces the final timeline of the schedule with this id; from then on its on-calls
    /// follow the timeline. False if there is no such schedule.
    pub fn set_timeline(&self, schedule_id: &str, rotations: Vec<Rotation>) -> bool {
        self.with_schedule(schedule_id, |s| s.timeline = rotations)
    }

    fn with_schedule(&self, id: &str, f: impl FnOnce(&mut Schedule)) -> bool {
        let mut st = lock(&self.inner.state);
        let Some(schedule) = st.schedules.iter_mut().find(|s| s.id == id) else {
            return false;
        };
        f(schedule);
        drop(st);
        self.inner.changed.notify_waiters();
        true
    }

    /// All alerts, in creation order (after applying due writes).
    pub fn alerts(&self) -> Vec<Alert> {
        self.inner.state().alerts.clone()
    }

    /// The open alert with this alias, else the newest one with it.
    pub fn alert_by_alias(&self, alias: &str) -> Option<Alert> {
        let st = self.inner.state();
        st.find(&model::Target::Alias(alias.to_owned()))
            .map(|i| st.alerts[i].clone())
    }

    /// Heartbeat pings received, as (team id, heartbeat name).
    pub fn pings(&self) -> Vec<(String, String)> {
        lock(&self.inner.state).pings.clone()
    }

    /// Every call, in order of completion.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.inner.state).calls.clone()
    }

    /// Calls to paths no Atlassian document describes (each was answered 404).
    pub fn undocumented_calls(&self) -> Vec<Call> {
        let st = lock(&self.inner.state);
        st.calls
            .iter()
            .filter(|c| c.operation.is_none())
            .cloned()
            .collect()
    }

    /// Calls that matched the documented operation `operation` (e.g. `get_on_calls`).
    pub fn calls_to(&self, operation: &str) -> Vec<Call> {
        let st = lock(&self.inner.state);
        st.calls
            .iter()
            .filter(|c| c.operation == Some(operation))
            .cloned()
            .collect()
    }

    /// Waits until `f` holds, re-checking after every change and whenever a queued write
    /// falls due, up to `timeout` (tokio clock). `what` names the condition in the error.
    pub async fn wait_until<F: Fn(&FakeJsm) -> bool>(
        &self,
        timeout: Duration,
        what: &str,
        f: F,
    ) -> Result<(), String> {
        let held = crate::sim::wait::until(
            &self.inner.changed,
            timeout,
            || f(self),
            || self.inner.state().pending.front().map(|r| r.ready_at),
        )
        .await;
        if held {
            Ok(())
        } else {
            Err(format!("timed out after {timeout:?} waiting for {what}"))
        }
    }

    /// Stops accepting connections.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }
}

/// One answer.
pub(crate) struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    pub(crate) fn json(status: StatusCode, body: Value) -> Self {
        Self { status, body }
    }

    /// The Opsgenie-derived shape alert endpoints answer errors in: `{message, took,
    /// requestId}`.
    pub(crate) fn message(status: StatusCode, message: &str) -> Self {
        Self::json(
            status,
            json!({"message": message, "took": 0.001, "requestId": Uuid::new_v4().to_string()}),
        )
    }

    /// The REST API's error envelope, `{errors: [{title, code}]}`.
    pub(crate) fn errors(status: StatusCode, title: &str) -> Self {
        let code = status
            .canonical_reason()
            .unwrap_or("ERROR")
            .to_ascii_uppercase()
            .replace(' ', "_");
        Self::json(status, json!({"errors": [{"title": title, "code": code}]}))
    }
}

/// How a router module handled a call.
pub(crate) struct Handled {
    /// The documented operation it matched; `None` for an undocumented path.
    pub(crate) operation: Option<&'static str>,
    /// Whether the credential was accepted.
    pub(crate) auth_ok: bool,
    pub(crate) reply: Reply,
}

impl Handled {
    /// An undocumented path: 404 in the shape of the API it fell under.
    pub(crate) fn undocumented(auth_ok: bool, reply: Reply) -> Self {
        Self {
            operation: None,
            auth_ok,
            reply,
        }
    }
}

/// What the routers see of a request.
pub(crate) struct Incoming<'a> {
    pub(crate) method: &'a axum::http::Method,
    /// Path segments after the API's prefix, percent-decoded.
    pub(crate) segments: Vec<String>,
    /// Query pairs, decoded, in order.
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: &'a HeaderMap,
    /// The JSON body (`Value::Null` when empty).
    pub(crate) body: Value,
    /// Whether a non-empty body was sent with a JSON content type.
    pub(crate) body_is_json: bool,
    pub(crate) body_len: usize,
}

impl Incoming<'_> {
    /// The first value of a query parameter.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated query parameter.
    pub(crate) fn params(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The segments as `&str`, for matching.
    pub(crate) fn path(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

/// The time now, RFC 3339 with milliseconds, as JSM writes dates.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
