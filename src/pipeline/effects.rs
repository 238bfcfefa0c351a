//! The daemon's real effects: plugin data and reviews through the Teleport client, backend calls
//! through the gateway actor's handle. `--dry-run` is handled here: reads are real, writes are logged
//! and skipped, so the decisions are the same as in a real run.

use std::time::{Duration, SystemTime};

use actix::Addr;
use futures::future::LocalBoxFuture;
use futures::{FutureExt, StreamExt};
use tracing::info;

use crate::actors::event_stream::{EventSource, EventStreamOf, ListingOf, SourceError, WatchEvent};
use crate::actors::gateway::{GatewayError, GatewayHandle};
use crate::actors::oncall::{who_is_on_call, Lookup, OnCallCache};
use crate::actors::timelines::{find_shift_end, ShiftLookupError, TimelineCache, TimelineLookup};
use crate::backend::{Operation as BackendOp, Outcome, Processed};
use crate::clock::Clock;
use crate::core::model::RequestState;
use crate::core::oncall_user::OnCallUser;
use crate::core::plugin_data::{Encoded, PluginData};
use crate::core::shift::ShiftEnd;
use crate::pipeline::reconcile::{EffectError, Effects, ReviewResult, MFA_REQUIRED_FIX};
use crate::teleport::client::RequestLock;
use crate::teleport::convert::{snapshot_from_event, EventKind};
use crate::teleport::error::{Operation, TeleportError};
use crate::teleport::handle::ClientHandle;
use crate::teleport::own_roles::LOCK_FIX;

/// Effects against the real Teleport and backend.
pub struct LiveEffects {
    /// The Teleport client.
    pub teleport: ClientHandle,
    /// The gateway. Its handle cancels a call when the step that asked for it is abandoned, so
    /// an abandoned step's call stops retrying.
    pub gateway: GatewayHandle,
    /// Who is on call, cached.
    pub on_call: Addr<OnCallCache>,
    /// Schedule timelines (when shifts end), cached.
    pub timelines: Addr<TimelineCache>,
    /// The wall clock.
    pub clock: Clock,
    /// How long to wait for the backend to process an alert creation.
    pub alert_id_deadline: Duration,
    /// Decide and log, write nothing.
    pub dry_run: bool,
}

impl Effects for LiveEffects {
    async fn read(&self, request_id: &str) -> Result<PluginData, EffectError> {
        let map = self.teleport.get().get_plugin_data(request_id).await?;
        Ok(PluginData::decode(&map))
    }

    async fn write(
        &self,
        request_id: &str,
        set: Encoded,
        expect: Encoded,
    ) -> Result<(), EffectError> {
        if self.dry_run {
            return Ok(());
        }
        Ok(self
            .teleport
            .get()
            .update_plugin_data(request_id, set, expect)
            .await?)
    }

    async fn call(&self, op: BackendOp) -> Result<Outcome, EffectError> {
        if self.dry_run && op.is_write() {
            info!(
                endpoint = op.endpoint(),
                "Dry run: not calling the backend."
            );
            return Ok(Outcome::Accepted {
                request_id: "dry-run".into(),
            });
        }
        if self.dry_run {
            // Reads are real, but a dry run made no alert to read about.
            return Ok(match op {
                BackendOp::GetAlert { .. } | BackendOp::ListNotes { .. } => Outcome::NoSuchAlert,
                op => self.gateway.call(op).await?,
            });
        }
        Ok(self.gateway.call(op).await?)
    }

    async fn await_request(&self, request_id: &str) -> Result<Processed, EffectError> {
        if self.dry_run {
            return Ok(Processed {
                success: true,
                alert_id: "dry-run".into(),
                status: "dry run".into(),
            });
        }
        // Like `call`: the polls stop with their step, and log under the request's span.
        Ok(self
            .gateway
            .await_request(request_id, self.alert_id_deadline)
            .await?)
    }

    async fn on_call(&self, schedule: &str) -> Result<Vec<OnCallUser>, EffectError> {
        who_is_on_call(&self.on_call, schedule)
            .await
            .map(|users| users.as_ref().clone())
            .map_err(|source| EffectError::OnCall {
                schedule: schedule.to_owned(),
                source,
            })
    }

    async fn submit_review(
        &self,
        request_id: &str,
        reason: &str,
    ) -> Result<ReviewResult, EffectError> {
        if self.dry_run {
            info!(
                request_id,
                reason, "Dry run: not submitting the approving review."
            );
            return Ok(ReviewResult::Submitted);
        }
        match self
            .teleport
            .get()
            .submit_review(request_id, RequestState::Approved, reason)
            .await
        {
            Ok(_) => Ok(ReviewResult::Submitted),
            Err(TeleportError::AlreadyReviewed { .. } | TeleportError::AlreadyResolved { .. }) => {
                Ok(ReviewResult::AlreadyDone)
            }
            Err(source @ TeleportError::MfaRequired { .. }) => Err(EffectError::ReviewRefused {
                fix: MFA_REQUIRED_FIX,
                source,
            }),
            Err(err) => Err(err.into()),
        }
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    async fn shift_end(
        &self,
        schedule: &str,
        person: &str,
        at: SystemTime,
        access_end: SystemTime,
        fresh: bool,
    ) -> Result<ShiftEnd, ShiftLookupError> {
        find_shift_end(&self.timelines, schedule, person, at, access_end, fresh).await
    }

    async fn upsert_lock(&self, lock: &RequestLock) -> Result<(), EffectError> {
        if self.dry_run {
            info!(lock = %lock.name, request_id = %lock.request_id, "Dry run: not creating the lock.");
            return Ok(());
        }
        match self.teleport.get().upsert_lock(lock).await {
            Ok(()) => Ok(()),
            Err(source @ TeleportError::MfaRequired { .. }) => Err(EffectError::LockRefused {
                fix: MFA_REQUIRED_FIX,
                source,
            }),
            Err(source @ TeleportError::PermissionDenied { .. }) => Err(EffectError::LockRefused {
                fix: LOCK_FIX,
                source,
            }),
            Err(err) => Err(err.into()),
        }
    }

    async fn sleep_until(&self, at: SystemTime) {
        self.clock.sleep_until(at).await
    }
}

/// The timeline lookup behind the cache: one `ScheduleTimeline` call through the gateway.
pub fn timeline_lookup(gateway: GatewayHandle) -> TimelineLookup {
    std::rc::Rc::new(move |schedule: String, date: SystemTime| {
        let gateway = gateway.clone();
        async move {
            match gateway
                .call(BackendOp::ScheduleTimeline { schedule, date })
                .await
            {
                Ok(Outcome::Timeline(timeline)) => Ok(timeline),
                Ok(other) => Err(GatewayError::Permanent {
                    status: None,
                    endpoint: "schedule_timeline",
                    message: format!("unexpected answer to a timeline lookup: {other:?}"),
                    hint: "check `opsgenie.backend` and `opsgenie.api_url`".into(),
                }),
                Err(err) => Err(err),
            }
        }
        .boxed_local()
    })
}

/// The on-call lookup behind the cache: one `OnCall` call through the gateway.
pub fn on_call_lookup(gateway: GatewayHandle) -> Lookup {
    std::rc::Rc::new(move |schedule: String| {
        let gateway = gateway.clone();
        async move {
            match gateway.call(BackendOp::OnCall { schedule }).await {
                Ok(Outcome::OnCall(users)) => Ok(users.iter().map(Into::into).collect()),
                Ok(other) => Err(GatewayError::Permanent {
                    status: None,
                    endpoint: "on_call",
                    message: format!("unexpected answer to an on-call lookup: {other:?}"),
                    hint: "check `opsgenie.backend` and `opsgenie.api_url`".into(),
                }),
                Err(err) => Err(err),
            }
        }
        .boxed_local()
    })
}

/// Teleport as the source of the event stream.
pub struct TeleportSource(pub ClientHandle);

impl EventSource for TeleportSource {
    fn watch(&self) -> LocalBoxFuture<'static, Result<EventStreamOf, SourceError>> {
        let client = self.0.get();
        async move {
            let stream = client
                .watch_access_requests()
                .await?;
            let events = stream.map(|item| match item {
                Ok(event) => Ok(match snapshot_from_event(event) {
                    Ok(EventKind::Init) => WatchEvent::Init,
                    Ok(EventKind::Put(snapshot)) => WatchEvent::Observed(snapshot),
                    Ok(EventKind::Skip) => WatchEvent::Ignored,
                    Err(err) => {
                        tracing::warn!(error = %err, "Ignoring an event that could not be decoded.");
                        WatchEvent::Ignored
                    }
                }),
                Err(status) => Err(SourceError::from(TeleportError::from_status(
                    Operation::WatchAccessRequests,
                    status,
                ))),
            });
            Ok(events.boxed_local())
        }
        .boxed_local()
    }

    fn list(&self) -> ListingOf {
        self.0
            .get()
            .list_pages()
            .map(|page| page.map_err(SourceError::from))
            .boxed_local()
    }
}
