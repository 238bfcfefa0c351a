//! The gRPC face of the fake: `proto.AuthService` over mTLS, caller identified by the client
//! certificate's CN, every call recorded and subject to injected latency and faults.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{broadcast, mpsc};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::store::{Actor, WatchFilter, KIND_ACCESS_REQUEST};
use super::{lock, locks, Inner};
use crate::pb::proto::auth_service_server::AuthService;
use crate::pb::{proto, types};

/// How many events a watcher may have queued towards its HTTP/2 stream before backpressure
/// reaches the broadcast buffer.
const WATCHER_QUEUE: usize = 256;

pub(crate) struct AuthServiceImpl {
    pub inner: Arc<Inner>,
    /// Callers already identified, by connection (see [`AuthServiceImpl::caller_of`]).
    pub callers: Mutex<Vec<(Weak<PeerCerts>, String)>>,
}

/// A connection's client certificates, as the TLS layer hands them to every call on it.
type PeerCerts = Vec<CertificateDer<'static>>;

/// The username from the client certificate's subject CN, as Teleport encodes it.
fn common_name(der: &[u8]) -> Result<String, Status> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| Status::unauthenticated("unparsable client certificate"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| Status::unauthenticated("client certificate has no common name"))?;
    Ok(cn.to_owned())
}

impl AuthServiceImpl {
    /// Who is calling: the common name of the connection's client certificate.
    ///
    /// The TLS layer shares one list of certificates among all calls of a connection, so the
    /// name is parsed once per connection rather than once per call (parsing was about 6 % of
    /// the fake's time in a large resync). The cache holds a `Weak` to each list: while it
    /// does, that allocation cannot be freed, so its address cannot stand for another
    /// connection's certificates; entries of closed connections are dropped on the next miss.
    fn caller_of<T>(&self, req: &Request<T>) -> Result<String, Status> {
        let certs = req
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("client certificate required"))?;
        let mut callers = lock(&self.callers);
        if let Some((_, name)) = callers
            .iter()
            .find(|(seen, _)| std::ptr::eq(seen.as_ptr(), Arc::as_ptr(&certs)))
        {
            return Ok(name.clone());
        }
        let der = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("client certificate required"))?;
        let name = common_name(der.as_ref())?;
        callers.retain(|(seen, _)| seen.strong_count() > 0);
        callers.push((Arc::downgrade(&certs), name.clone()));
        Ok(name)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl AuthServiceImpl {
    /// Common prologue: identify, record, apply latency and injected faults.
    async fn enter(
        &self,
        method: &'static str,
        caller: Result<String, Status>,
    ) -> Result<String, Status> {
        let caller = caller?;
        self.inner.record(method, &caller);
        let latency = *lock(&self.inner.latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.inner.take_fault()?;
        Ok(caller)
    }
}

/// Decrements the watcher count when a watch stream's forwarding task ends, however it ends.
struct WatcherGuard(Arc<Inner>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

#[tonic::async_trait]
impl AuthService for AuthServiceImpl {
    async fn ping(
        &self,
        request: Request<proto::PingRequest>,
    ) -> Result<Response<proto::PingResponse>, Status> {
        let remote = request.remote_addr();
        self.enter("Ping", self.caller_of(&request)).await?;
        Ok(Response::new(proto::PingResponse {
            cluster_name: self.inner.cluster_name.clone(),
            server_version: self.inner.server_version.clone(),
            server_features: Some(proto::Features {
                advanced_access_workflows: self.inner.advanced_access_workflows,
            }),
            proxy_public_addr: String::new(),
            is_boring: false,
            remote_addr: remote.map(|a| a.to_string()).unwrap_or_default(),
            load_all_cas: false,
            license_expiry: None,
        }))
    }

    type WatchEventsStream = BoxStream<proto::Event>;

    async fn watch_events(
        &self,
        request: Request<proto::Watch>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let user = self.enter("WatchEvents", self.caller_of(&request)).await?;
        let watch = request.into_inner();
        let (confirmed, filters, events) = {
            let store = lock(&self.inner.store);
            let mut confirmed = Vec::new();
            let mut filters = Vec::new();
            for kind in watch.kinds {
                if kind.kind != KIND_ACCESS_REQUEST {
                    if watch.allow_partial_success {
                        continue;
                    }
                    return Err(Status::invalid_argument(format!(
                        "watching resource kind {:?} is not supported",
                        kind.kind
                    )));
                }
                if let Err(e) = store.check_read(Actor::User(&user)) {
                    if watch.allow_partial_success {
                        continue;
                    }
                    return Err(e);
                }
                filters.push(WatchFilter::parse(&kind.filter)?);
                confirmed.push(kind);
            }
            if confirmed.is_empty() {
                return Err(Status::invalid_argument(
                    "none of the requested resource kinds can be watched",
                ));
            }
            // Subscribing under the store lock (which every mutation holds while it broadcasts)
            // guarantees the watcher sees exactly the changes committed after this point.
            (confirmed, filters, self.inner.events.subscribe())
        };
        let init = proto::Event {
            operation: proto::Operation::Init as i32,
            resource: Some(proto::event::Resource::WatchStatus(types::WatchStatusV1 {
                kind: "watch_status".to_owned(),
                sub_kind: String::new(),
                version: "v1".to_owned(),
                metadata: Some(types::Metadata {
                    name: "watch_status".to_owned(),
                    ..Default::default()
                }),
                spec: Some(types::WatchStatusSpecV1 { kinds: confirmed }),
            })),
        };
        let (tx, rx) = mpsc::channel(WATCHER_QUEUE);
        // Fresh channel: the INIT always fits, and always goes first.
        let _ = tx.try_send(Ok(init));
        self.inner.watchers.fetch_add(1, Ordering::SeqCst);
        self.inner.changed.notify_waiters();
        let guard = WatcherGuard(self.inner.clone());
        let mut drop_rx = self.inner.drop_gen.subscribe();
        let mut stall_rx = self.inner.stall_gen.subscribe();
        tokio::spawn(forward_events(
            guard,
            events,
            tx,
            filters,
            async move {
                let _ = drop_rx.changed().await;
            },
            async move {
                let _ = stall_rx.changed().await;
            },
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_access_requests(
        &self,
        request: Request<proto::ListAccessRequestsRequest>,
    ) -> Result<Response<proto::ListAccessRequestsResponse>, Status> {
        let user = self
            .enter("ListAccessRequests", self.caller_of(&request))
            .await?;
        if !self.inner.list_implemented.load(Ordering::SeqCst) {
            // What grpc-go answers for a method an older server doesn't have.
            return Err(Status::unimplemented(
                "unknown method ListAccessRequests for service proto.AuthService",
            ));
        }
        let req = request.into_inner();
        let resp = lock(&self.inner.store).list(Actor::User(&user), &req)?;
        Ok(Response::new(resp))
    }

    type GetAccessRequestsV2Stream = BoxStream<types::AccessRequestV3>;

    async fn get_access_requests_v2(
        &self,
        request: Request<types::AccessRequestFilter>,
    ) -> Result<Response<Self::GetAccessRequestsV2Stream>, Status> {
        let user = self
            .enter("GetAccessRequestsV2", self.caller_of(&request))
            .await?;
        let filter = request.into_inner();
        let all = lock(&self.inner.store).get_all(Actor::User(&user), &filter)?;
        let (gap, stall_after) = *lock(&self.inner.list_stream);
        if gap.is_zero() && stall_after.is_none() {
            return Ok(Response::new(Box::pin(tokio_stream::iter(
                all.into_iter().map(Ok),
            ))));
        }
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for (sent, item) in all.into_iter().enumerate() {
                if stall_after.is_some_and(|n| sent >= n) {
                    break;
                }
                tokio::time::sleep(gap).await;
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
            if stall_after.is_some() {
                // Stalled: open and silent until the client gives up.
                tx.closed().await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn create_access_request_v2(
        &self,
        request: Request<types::AccessRequestV3>,
    ) -> Result<Response<types::AccessRequestV3>, Status> {
        let user = self
            .enter("CreateAccessRequestV2", self.caller_of(&request))
            .await?;
        let req = request.into_inner();
        let out = lock(&self.inner.store).create(Actor::User(&user), req)?;
        Ok(Response::new(out))
    }

    async fn submit_access_review(
        &self,
        request: Request<types::AccessReviewSubmission>,
    ) -> Result<Response<types::AccessRequestV3>, Status> {
        let user = self
            .enter("SubmitAccessReview", self.caller_of(&request))
            .await?;
        let sub = request.into_inner();
        let mfa = self.inner.mfa_required.load(Ordering::SeqCst);
        let out = lock(&self.inner.store).review(&user, sub, mfa)?;
        Ok(Response::new(out))
    }

    async fn set_access_request_state(
        &self,
        request: Request<proto::RequestStateSetter>,
    ) -> Result<Response<()>, Status> {
        let user = self
            .enter("SetAccessRequestState", self.caller_of(&request))
            .await?;
        let setter = request.into_inner();
        lock(&self.inner.store).set_state(Actor::User(&user), setter)?;
        Ok(Response::new(()))
    }

    async fn delete_access_request(
        &self,
        request: Request<proto::RequestId>,
    ) -> Result<Response<()>, Status> {
        let user = self
            .enter("DeleteAccessRequest", self.caller_of(&request))
            .await?;
        let id = request.into_inner().id;
        lock(&self.inner.store).delete(Actor::User(&user), &id)?;
        Ok(Response::new(()))
    }

    async fn get_plugin_data(
        &self,
        request: Request<types::PluginDataFilter>,
    ) -> Result<Response<proto::PluginDataSeq>, Status> {
        let user = self
            .enter("GetPluginData", self.caller_of(&request))
            .await?;
        let filter = request.into_inner();
        let out = lock(&self.inner.store).get_plugin_data(Actor::User(&user), &filter)?;
        Ok(Response::new(out))
    }

    async fn update_plugin_data(
        &self,
        request: Request<types::PluginDataUpdateParams>,
    ) -> Result<Response<()>, Status> {
        let user = self
            .enter("UpdatePluginData", self.caller_of(&request))
            .await?;
        let params = request.into_inner();
        lock(&self.inner.store).update_plugin_data(Actor::User(&user), params)?;
        Ok(Response::new(()))
    }

    type GetCurrentUserRolesStream = BoxStream<types::RoleV6>;

    /// Any authenticated user may read its own roles; no rule is needed.
    async fn get_current_user_roles(
        &self,
        request: Request<()>,
    ) -> Result<Response<Self::GetCurrentUserRolesStream>, Status> {
        let user = self
            .enter("GetCurrentUserRoles", self.caller_of(&request))
            .await?;
        let store = lock(&self.inner.store);
        if !store.dir.has_user(&user) {
            return Err(Status::not_found(format!("user {user:?} is not found")));
        }
        let roles = store.dir.role_messages(&user);
        Ok(Response::new(Box::pin(tokio_stream::iter(
            roles.into_iter().map(Ok),
        ))))
    }

    async fn upsert_lock(&self, request: Request<types::LockV2>) -> Result<Response<()>, Status> {
        let user = self.enter("UpsertLock", self.caller_of(&request)).await?;
        locks::upsert(&self.inner, &user, request.into_inner())?;
        Ok(Response::new(()))
    }

    async fn get_lock(
        &self,
        request: Request<proto::GetLockRequest>,
    ) -> Result<Response<types::LockV2>, Status> {
        let user = self.enter("GetLock", self.caller_of(&request)).await?;
        let name = request.into_inner().name;
        Ok(Response::new(locks::get(&self.inner, &user, &name)?))
    }

    async fn delete_lock(
        &self,
        request: Request<proto::DeleteLockRequest>,
    ) -> Result<Response<()>, Status> {
        let user = self.enter("DeleteLock", self.caller_of(&request)).await?;
        let name = request.into_inner().name;
        locks::delete(&self.inner, &user, &name)?;
        Ok(Response::new(()))
    }
}

/// Moves broadcast events matching the watcher's filters into its stream until the client goes
/// away, the test drops watchers, or the watcher falls behind. A lagging watcher is cut off with
/// an error instead of silently missing events, as Teleport closes overflowing watchers.
async fn forward_events(
    _guard: WatcherGuard,
    mut events: broadcast::Receiver<Arc<proto::Event>>,
    tx: mpsc::Sender<Result<proto::Event, Status>>,
    filters: Vec<WatchFilter>,
    dropped: impl std::future::Future<Output = ()>,
    stalled: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(dropped);
    tokio::pin!(stalled);
    loop {
        tokio::select! {
            biased;
            () = &mut stalled => {
                // Silent from now on, but open until the client or the test ends it.
                drop(events);
                tokio::select! {
                    () = &mut dropped => {
                        let _ = tx
                            .send(Err(Status::unavailable("watcher closed by the server")))
                            .await;
                    }
                    () = tx.closed() => {}
                }
                return;
            }
            () = &mut dropped => {
                let _ = tx
                    .send(Err(Status::unavailable("watcher closed by the server")))
                    .await;
                return;
            }
            () = tx.closed() => return,
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if filters.iter().any(|f| f.matches(&ev))
                        && tx.send(Ok(ev.as_ref().clone())).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "fake teleport: closing a lagging watcher");
                    let _ = tx
                        .send(Err(Status::unavailable(format!(
                            "watcher fell behind by {n} events and was closed (buffer overflow)"
                        ))))
                        .await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = tx
                        .send(Err(Status::unavailable("auth server is shutting down")))
                        .await;
                    return;
                }
            }
        }
    }
}
