//! The daemon's real effects: plugin data and reviews through the Teleport client, backend calls
//! through the gateway's client. `--dry-run` is handled here: reads are real, writes are logged
//! and skipped, so the decisions are the same as in a real run.

use std::time::{Duration, SystemTime};

use actix::Addr;
use futures::future::LocalBoxFuture;
use futures::{FutureExt, StreamExt};
use tracing::info;

use crate::actors::event_stream::{EventSource, EventStreamOf, SourceError, WatchEvent};
use crate::actors::gateway::{Call, Gateway, GatewayClient, GatewayError};
use crate::actors::oncall::{who_is_on_call, Lookup, OnCallCache};
use crate::backend::{Operation as BackendOp, Outcome};
use crate::core::model::{AccessRequest, RequestState};
use crate::core::plugin_data::{Encoded, PluginData};
use crate::pipeline::reconcile::{EffectError, Effects, ReviewResult, MFA_REQUIRED_FIX};
use crate::teleport::convert::{snapshot_from_event, EventKind};
use crate::teleport::error::{Operation, TeleportError};
use crate::teleport::handle::ClientHandle;

/// Effects against the real Teleport and backend.
pub struct LiveEffects {
    /// The Teleport client.
    pub teleport: ClientHandle,
    /// The gateway's client, called directly so that backend calls stop when their step is
    /// abandoned (a message to the actor would keep retrying after its sender gave up).
    pub client: GatewayClient,
    /// Who is on call, cached.
    pub on_call: Addr<OnCallCache>,
    /// How long to wait for the backend to process an alert creation.
    pub alert_id_deadline: Duration,
    /// Decide and log, write nothing.
    pub dry_run: bool,
}

impl Effects for LiveEffects {
    async fn read(&self, request_id: &str) -> Result<PluginData, EffectError> {
        let map = self
            .teleport
            .get()
            .get_plugin_data(request_id)
            .await
            .map_err(teleport_error)?;
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
        self.teleport
            .get()
            .update_plugin_data(request_id, set, expect)
            .await
            .map_err(teleport_error)
    }

    async fn call(&self, op: BackendOp) -> Result<Outcome, EffectError> {
        if self.dry_run {
            info!(
                endpoint = op.endpoint(),
                "Dry run: not calling the backend."
            );
            return Ok(match op {
                BackendOp::CreateAlert(_) => Outcome::Accepted {
                    request_id: "dry-run".into(),
                },
                _ => Outcome::Done,
            });
        }
        self.client.call(op).await.map_err(gateway_error)
    }

    async fn await_alert_id(&self, request_id: &str) -> Result<String, EffectError> {
        if self.dry_run {
            return Ok("dry-run".into());
        }
        // Like `call`: straight through the client, so the polls stop with their step and log
        // under the request's span.
        match self
            .client
            .await_alert_id(request_id, self.alert_id_deadline)
            .await
        {
            Ok(alert_id) => Ok(alert_id),
            Err(GatewayError::RequestFailed { status, .. }) => {
                Err(EffectError::CreateFailed(status))
            }
            Err(err) => Err(gateway_error(err)),
        }
    }

    async fn on_call(&self, schedule: &str) -> Result<Vec<String>, EffectError> {
        who_is_on_call(&self.on_call, schedule)
            .await
            .map(|users| users.as_ref().clone())
            .map_err(|e| EffectError::Retryable(e.to_string()))
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
            Err(TeleportError::MfaRequired { message, .. }) => Err(EffectError::Permanent(
                format!("{MFA_REQUIRED_FIX} (Teleport said: {message})"),
            )),
            Err(err) => Err(teleport_error(err)),
        }
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The on-call lookup behind the cache: one `OnCall` call through the gateway.
pub fn on_call_lookup(gateway: Addr<Gateway>) -> Lookup {
    std::rc::Rc::new(move |schedule: String| {
        let gateway = gateway.clone();
        async move {
            match gateway.send(Call(BackendOp::OnCall { schedule })).await {
                Ok(Ok(Outcome::OnCall(users))) => Ok(users),
                Ok(Ok(other)) => Err(format!("unexpected answer to an on-call lookup: {other:?}")),
                Ok(Err(err)) => Err(err.to_string()),
                Err(err) => Err(format!("the gateway is not running: {err}")),
            }
        }
        .boxed_local()
    })
}

fn teleport_error(err: TeleportError) -> EffectError {
    if matches!(err, TeleportError::CompareFailed { .. }) {
        EffectError::Conflict
    } else if err.is_retryable() {
        EffectError::Retryable(err.to_string())
    } else {
        EffectError::Permanent(err.to_string())
    }
}

fn gateway_error(err: GatewayError) -> EffectError {
    if err.is_retryable() {
        EffectError::Retryable(err.to_string())
    } else {
        EffectError::Permanent(err.to_string())
    }
}

/// Teleport as the source of the event stream.
pub struct TeleportSource(pub ClientHandle);

impl EventSource for TeleportSource {
    fn watch(&self) -> LocalBoxFuture<'static, Result<EventStreamOf, SourceError>> {
        let client = self.0.get();
        async move {
            let stream = client
                .watch_access_requests()
                .await
                .map_err(|e| SourceError(e.to_string()))?;
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
                Err(status) => Err(SourceError(TeleportError::from_status(Operation::WatchAccessRequests, status).to_string())),
            });
            Ok(events.boxed_local())
        }
        .boxed_local()
    }

    fn list(&self) -> LocalBoxFuture<'static, Result<Vec<AccessRequest>, SourceError>> {
        let client = self.0.get();
        async move {
            client
                .list_access_requests()
                .await
                .map_err(|e| SourceError(e.to_string()))
        }
        .boxed_local()
    }
}
