//! The running server: its shared state, the handle tests hold, and the task that applies
//! queued requests when they fall due.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use super::dispatch::handle;
use super::faults::Faults;
use super::heartbeats::Heartbeats;
use super::inner::Inner;
use super::limits::{FakeRateLimits, Limiter};
use super::model::{Alert, Call};
use super::state::State;
use super::timeline_data::{StoredTimeline, TimelinePeriod};
use super::{lock, validate, FakeOpsgenieOptions};
use crate::sim::stop_on_drop::StopOnDrop;

/// A running fake Opsgenie. Cheap to clone; all clones share one server, which stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct FakeOpsgenie {
    pub(super) inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
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
        let stop = {
            let inner = Arc::clone(&inner);
            StopOnDrop::new(move || {
                let _ = inner.shutdown.send(true);
            })
        };
        Ok(FakeOpsgenie { inner, _stop: stop })
    }

    /// Base URL, `http://127.0.0.1:PORT` (append [`super::JSM_PREFIX`] for the JSM mirror).
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// Creates a heartbeat (one named [`super::DEFAULT_HEARTBEAT`] exists from the start).
    pub fn create_heartbeat(&self, name: &str) {
        self.inner.heartbeats.create(name);
    }

    /// Deletes a heartbeat: pings still answer 202, the lookup 404.
    pub fn delete_heartbeat(&self, name: &str) {
        self.inner.heartbeats.delete(name);
    }

    /// Replaces the final timeline of a schedule given by name or id. Returns false if there is
    /// no such schedule.
    pub fn set_timeline(&self, schedule: &str, periods: &[TimelinePeriod]) -> bool {
        let mut st = lock(&self.inner.state);
        let Some(i) = st.directory.schedule_any(schedule) else {
            return false;
        };
        st.directory.schedules[i].timeline = StoredTimeline::new(periods);
        drop(st);
        self.inner.changed.notify_waiters();
        true
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
        let id = lock(&self.inner.state)
            .directory
            .add_schedule(name, id, on_call);
        self.inner.changed.notify_waiters();
        id
    }

    /// Replaces who is on call for a schedule given by name or id. Returns false if there is
    /// no such schedule.
    pub fn set_on_call(&self, schedule: &str, on_call: &[&str]) -> bool {
        let mut st = lock(&self.inner.state);
        let Some(i) = st.directory.schedule_any(schedule) else {
            return false;
        };
        st.directory.schedules[i].on_call = on_call.iter().map(|s| (*s).to_owned()).collect();
        drop(st);
        self.inner.changed.notify_waiters();
        true
    }

    /// Adds (or replaces, by name) a team responders can name; `id` `None` generates a UUID.
    /// Returns the id.
    pub fn add_team(&self, name: &str, id: Option<&str>) -> String {
        let id = lock(&self.inner.state).directory.add_team(name, id);
        self.inner.changed.notify_waiters();
        id
    }

    /// The id of a team given by name.
    pub fn team_id(&self, name: &str) -> Option<String> {
        lock(&self.inner.state).directory.team_id(name)
    }

    /// Whether closing an alert that is already closed reports `isSuccess:false` with status
    /// "Alert is already closed" (`true`) or `isSuccess:true` with the same text (`false`,
    /// the default). Opsgenie's documentation does not say which it does; either way nothing
    /// changes, so clients must accept both.
    pub fn set_close_of_closed_fails(&self, fails: bool) {
        lock(&self.inner.state).close_of_closed_fails = fails;
    }

    /// The id of a schedule given by name.
    pub fn schedule_id(&self, name: &str) -> Option<String> {
        let st = lock(&self.inner.state);
        st.directory
            .schedule(name, true)
            .map(|i| st.directory.schedules[i].id.clone())
    }

    /// Locks the state after applying every due request.
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
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
        // Apply due work while checking (so the wait cannot spin), and wake at the next due
        // time: queued work may be what is awaited, and the processor task may not have run.
        let held = crate::sim::wait::until(
            &self.inner.changed,
            timeout,
            || f(self),
            || self.state().pending.front().map(|p| p.ready_at),
        )
        .await;
        if held {
            Ok(())
        } else {
            Err(format!("timed out after {timeout:?} waiting for {what}"))
        }
    }

    /// Stops accepting connections and stops the processor. In-flight calls finish.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }
}

/// Applies queued requests when they fall due.
pub(super) async fn processor(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
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
