//! The gRPC client for the parts of Teleport's Auth API the daemon uses: ping, watching and
//! listing access requests, plugin data, reviews (and, for tests and demos, creating,
//! resolving and deleting requests).
//!
//! Every unary call is bounded by the configured call timeout; statuses are classified into
//! [`TeleportError`]. Clones share one HTTP/2 connection.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use super::convert::{self, ACCESS_REQUEST_KIND};
use super::error::{ConnectFailure, Operation, TeleportError};
use super::identity::Identity;
use super::tls::{self, Route};
use crate::config::{ConnectMode, TeleportConfig};
use crate::core::model::{AccessRequest, RequestState};
use crate::pb;
use crate::pb::proto::auth_service_client::AuthServiceClient;

/// The oldest Teleport this daemon supports (ListAccessRequests and CreateAccessRequestV2).
pub const MIN_SERVER_VERSION: &str = "14.0.0";

/// HTTP/2 ping interval. Teleport enforces a minimum of 60 s between client pings and answers
/// more frequent ones with GOAWAY `too_many_pings`, so never go below this.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// How long to wait for a ping's answer before declaring the connection dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest message accepted; pages of access requests can exceed gRPC's 4 MiB default.
pub const MAX_DECODING_MESSAGE_SIZE: usize = 32 * 1024 * 1024;
/// Page size for `ListAccessRequests`.
pub const LIST_PAGE_LIMIT: i32 = 500;
/// A guard against a server that never ends pagination.
const MAX_LIST_PAGES: usize = 10_000;

/// What `Ping` says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingInfo {
    /// The cluster's name.
    pub cluster_name: String,
    /// Teleport's version, e.g. `17.4.2`.
    pub server_version: String,
    /// The Proxy's public address, if the server knows it (may be empty).
    pub proxy_public_addr: String,
}

/// How the connection was actually made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// [`ConnectMode::Auth`] or [`ConnectMode::Proxy`]; never `Auto`.
    pub mode: ConnectMode,
    /// The server's answer to the first ping.
    pub ping: PingInfo,
}

/// A connected client. Cheap to clone; clones share the connection, which tonic re-establishes
/// by itself after a failure.
#[derive(Clone)]
pub struct TeleportClient {
    inner: AuthServiceClient<Channel>,
    plugin_name: String,
    call_timeout: Duration,
    /// Set once the server answered `ListAccessRequests` with UNIMPLEMENTED, so later listings
    /// go straight to `GetAccessRequestsV2`.
    list_fallback: Arc<AtomicBool>,
}

impl std::fmt::Debug for TeleportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeleportClient")
            .field("plugin_name", &self.plugin_name)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

fn route_label(route: &Route) -> &'static str {
    match route {
        Route::Direct => "direct",
        Route::ProxyRouting { .. } => "proxy routing",
    }
}

/// Parses `major.minor.patch`, tolerating a leading `v`, missing parts and suffixes such as
/// `-dev` or `+build`.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let v = version.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+', ' ']).next().unwrap_or_default();
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    let patch = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    Some((major, minor, patch))
}

/// Whether `version` is at least `min`; `None` when either cannot be parsed.
pub fn version_at_least(version: &str, min: &str) -> Option<bool> {
    Some(parse_version(version)? >= parse_version(min)?)
}

/// Whether trying TLS routing may help after this failure of the direct attempt.
///
/// A Proxy answers a plain `h2` ClientHello with its own web listener (another certificate,
/// another name) or with `no_application_protocol`, so any handshake failure may mean "this is
/// the Proxy". An unreachable address stays unreachable, and a refusal of our certificate
/// after the handshake comes from Auth itself, so neither is worth a second dial.
fn worth_trying_proxy(error: &TeleportError) -> bool {
    match error {
        TeleportError::Connect { failure, .. } => *failure != ConnectFailure::Unreachable,
        TeleportError::Timeout { .. }
        | TeleportError::Transport { .. }
        | TeleportError::Unavailable { .. } => true,
        _ => false,
    }
}

/// One error for `auto` when both routes failed: the one that explains the situation.
fn both_failed(direct: TeleportError, proxy: TeleportError) -> TeleportError {
    let failure = |e: &TeleportError| match e {
        TeleportError::Connect { failure, .. } => Some(*failure),
        _ => None,
    };
    match (failure(&direct), failure(&proxy)) {
        // The same problem both ways (wrong CA, say): say it once.
        (Some(d), Some(p)) if d == p => direct,
        // Refusing a plain h2 ClientHello is what a Proxy does, so the routed attempt reached
        // the right kind of server and its error is the one to act on; likewise any error that
        // is not about the connection (RBAC, version) came from a server that answered.
        (Some(ConnectFailure::Alpn), _) | (_, None) => proxy,
        _ => TeleportError::AllRoutesFailed {
            direct: Box::new(direct),
            proxy: Box::new(proxy),
        },
    }
}

/// What the identity may do, as found by [`TeleportClient::probe_permissions`]. Each field is
/// `Ok` when permitted (or when the probe could not tell), else the error naming the rule.
#[derive(Debug)]
pub struct Permissions {
    /// `ListAccessRequests` (also what watching needs).
    pub list_requests: Result<(), TeleportError>,
    /// `GetPluginData`.
    pub read_plugin_data: Result<(), TeleportError>,
    /// `UpdatePluginData`.
    pub update_plugin_data: Result<(), TeleportError>,
}

impl Permissions {
    /// The first permission denial, if any.
    pub fn first_denial(self) -> Option<TeleportError> {
        [
            self.list_requests,
            self.read_plugin_data,
            self.update_plugin_data,
        ]
        .into_iter()
        .find_map(|r| r.err().filter(is_denial))
    }
}

fn is_denial(error: &TeleportError) -> bool {
    matches!(
        error,
        TeleportError::PermissionDenied { .. } | TeleportError::MfaRequired { .. }
    )
}

impl TeleportClient {
    /// Connects as `cfg.mode` says, pings, and checks the server's version.
    ///
    /// `auto` tries the Auth Service directly, then TLS routing through the Proxy (which needs
    /// the cluster name, from `cfg.cluster_name` or the identity's issuer).
    pub async fn connect(
        cfg: &TeleportConfig,
        identity: &Identity,
    ) -> Result<(TeleportClient, Connected), TeleportError> {
        match cfg.mode {
            ConnectMode::Auth => Self::connect_route(cfg, identity, Route::Direct).await,
            ConnectMode::Proxy => {
                let route = proxy_route(cfg, identity).ok_or_else(|| {
                    TeleportError::Config(
                        "`mode: proxy` needs the cluster name: set `teleport.cluster_name` (the identity's issuer names none)".into(),
                    )
                })?;
                Self::connect_route(cfg, identity, route).await
            }
            ConnectMode::Auto => {
                let direct = match Self::connect_route(cfg, identity, Route::Direct).await {
                    Ok(done) => return Ok(done),
                    Err(e) => e,
                };
                let Some(route) = proxy_route(cfg, identity) else {
                    return Err(direct);
                };
                if !worth_trying_proxy(&direct) {
                    return Err(direct);
                }
                info!(addr = %cfg.addr, error = %direct, "direct connection to the Auth Service failed; trying TLS routing through the Proxy");
                match Self::connect_route(cfg, identity, route).await {
                    Ok(done) => Ok(done),
                    Err(proxy) => Err(both_failed(direct, proxy)),
                }
            }
        }
    }

    async fn connect_route(
        cfg: &TeleportConfig,
        identity: &Identity,
        route: Route,
    ) -> Result<(TeleportClient, Connected), TeleportError> {
        let label = route_label(&route);
        let config = tls::client_config(identity, &route)?;
        let server_name = tls::server_name(&route)?;
        let connector = tls::connector(cfg.addr.clone(), config, server_name);
        // The URI only names the :authority; the connector dials `cfg.addr`. It must be
        // http://: TLS is done by the connector, not by tonic (see `tls`).
        let endpoint = Endpoint::from_static("http://teleport.cluster.local")
            .connect_timeout(cfg.dial_timeout)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        debug!(addr = %cfg.addr, route = label, "connecting to Teleport");
        let channel = match tokio::time::timeout(
            cfg.dial_timeout + Duration::from_secs(1),
            endpoint.connect_with_connector(connector),
        )
        .await
        {
            Err(_) => {
                return Err(TeleportError::Timeout {
                    operation: Operation::Connect,
                    after: cfg.dial_timeout,
                })
            }
            Ok(Err(e)) => return Err(TeleportError::from_transport(&cfg.addr, label, &e)),
            Ok(Ok(channel)) => channel,
        };
        let client = TeleportClient {
            inner: AuthServiceClient::new(channel)
                .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
            plugin_name: cfg.plugin_name.clone(),
            call_timeout: cfg.call_timeout,
            list_fallback: Arc::new(AtomicBool::new(false)),
        };
        let ping = client.ping().await?;
        match version_at_least(&ping.server_version, MIN_SERVER_VERSION) {
            Some(true) => {}
            Some(false) => {
                return Err(TeleportError::ServerTooOld {
                    version: ping.server_version,
                    min: MIN_SERVER_VERSION,
                })
            }
            None => {
                warn!(version = %ping.server_version, "cannot parse Teleport's version; assuming it is recent enough")
            }
        }
        let mode = match route {
            Route::Direct => ConnectMode::Auth,
            Route::ProxyRouting { .. } => ConnectMode::Proxy,
        };
        info!(
            addr = %cfg.addr,
            route = label,
            cluster = %ping.cluster_name,
            version = %ping.server_version,
            user = %identity.username,
            "connected to Teleport"
        );
        Ok((client, Connected { mode, ping }))
    }

    /// Finds out, without changing anything, whether the identity may list requests and read
    /// and write plugin data: a one-item listing, a read of a made-up request's plugin data,
    /// and an empty update of it (which Teleport checks for RBAC before it finds the request
    /// missing).
    pub async fn probe_permissions(&self) -> Permissions {
        let list_requests = match self.list_page(String::new(), 1).await {
            Ok(_) | Err(TeleportError::Unimplemented { .. }) => Ok(()),
            Err(e) => Err(e),
        };
        let probe = uuid::Uuid::new_v4().to_string();
        let read_plugin_data = match self.get_plugin_data(&probe).await {
            Ok(_) | Err(TeleportError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        };
        let update_plugin_data = match self
            .update_plugin_data(&probe, BTreeMap::new(), BTreeMap::new())
            .await
        {
            // Only a denial or a connection problem is an answer; servers differ in how they
            // reject an empty update of a missing request, and any such rejection came after
            // the RBAC check passed.
            Err(e) if is_denial(&e) || e.is_retryable() => Err(e),
            _ => Ok(()),
        };
        Permissions {
            list_requests,
            read_plugin_data,
            update_plugin_data,
        }
    }

    /// The plugin name under which plugin data is stored.
    pub fn plugin_name(&self) -> &str {
        &self.plugin_name
    }

    /// Runs one unary call under the call timeout.
    async fn unary<T, F>(&self, operation: Operation, call: F) -> Result<T, TeleportError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.call_timeout, call).await {
            Err(_) => Err(TeleportError::Timeout {
                operation,
                after: self.call_timeout,
            }),
            Ok(Err(status)) => Err(TeleportError::from_status(operation, status)),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    /// Asks the server who it is. Needs no permissions.
    pub async fn ping(&self) -> Result<PingInfo, TeleportError> {
        let mut inner = self.inner.clone();
        let resp = self
            .unary(Operation::Ping, inner.ping(pb::proto::PingRequest {}))
            .await?;
        Ok(PingInfo {
            cluster_name: resp.cluster_name,
            server_version: resp.server_version,
            proxy_public_addr: resp.proxy_public_addr,
        })
    }

    /// Opens a watch on access requests. The first message should be INIT; after it, only
    /// changes arrive, so callers list the current requests after every INIT.
    pub async fn watch_access_requests(
        &self,
    ) -> Result<tonic::Streaming<pb::proto::Event>, TeleportError> {
        let mut inner = self.inner.clone();
        let watch = pb::proto::Watch {
            kinds: vec![pb::types::WatchKind {
                kind: ACCESS_REQUEST_KIND.into(),
                ..Default::default()
            }],
            allow_partial_success: false,
        };
        self.unary(Operation::WatchAccessRequests, inner.watch_events(watch))
            .await
    }

    /// All access requests the server has. Entries that cannot be converted are skipped with a
    /// warning. Uses `ListAccessRequests`, or `GetAccessRequestsV2` on servers without it.
    pub async fn list_access_requests(&self) -> Result<Vec<AccessRequest>, TeleportError> {
        if !self.list_fallback.load(Ordering::Relaxed) {
            match self.list_paged().await {
                Err(TeleportError::Unimplemented { message, .. }) => {
                    warn!(%message, "ListAccessRequests is not implemented by this server; using GetAccessRequestsV2 from now on");
                    self.list_fallback.store(true, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        self.list_streamed().await
    }

    async fn list_paged(&self) -> Result<Vec<AccessRequest>, TeleportError> {
        let mut out = Vec::new();
        let mut start_key = String::new();
        for _ in 0..MAX_LIST_PAGES {
            let page = self.list_page(start_key.clone(), LIST_PAGE_LIMIT).await?;
            out.extend(page.access_requests.into_iter().filter_map(convert_or_warn));
            if page.next_key.is_empty() {
                return Ok(out);
            }
            if page.next_key == start_key {
                warn!(next_key = %page.next_key, "Teleport repeated a page key; stopping the listing");
                return Ok(out);
            }
            start_key = page.next_key;
        }
        warn!(
            pages = MAX_LIST_PAGES,
            "stopped listing access requests after too many pages"
        );
        Ok(out)
    }

    /// One `ListAccessRequests` page of at most `limit` requests, from `start_key`.
    async fn list_page(
        &self,
        start_key: String,
        limit: i32,
    ) -> Result<pb::proto::ListAccessRequestsResponse, TeleportError> {
        let mut inner = self.inner.clone();
        let request = pb::proto::ListAccessRequestsRequest {
            filter: Some(pb::types::AccessRequestFilter::default()),
            limit,
            start_key,
            ..Default::default()
        };
        self.unary(
            Operation::ListAccessRequests,
            inner.list_access_requests(request),
        )
        .await
    }

    async fn list_streamed(&self) -> Result<Vec<AccessRequest>, TeleportError> {
        let operation = Operation::ListAccessRequests;
        let mut inner = self.inner.clone();
        let collect = async move {
            let mut stream = inner
                .get_access_requests_v2(pb::types::AccessRequestFilter::default())
                .await
                .map_err(|s| TeleportError::from_status(operation, s))?
                .into_inner();
            let mut out = Vec::new();
            while let Some(item) = stream
                .message()
                .await
                .map_err(|s| TeleportError::from_status(operation, s))?
            {
                out.extend(convert_or_warn(item));
            }
            Ok(out)
        };
        tokio::time::timeout(self.call_timeout, collect)
            .await
            .unwrap_or(Err(TeleportError::Timeout {
                operation,
                after: self.call_timeout,
            }))
    }

    /// Our plugin's data on a request; empty when there is none yet.
    pub async fn get_plugin_data(
        &self,
        request_id: &str,
    ) -> Result<BTreeMap<String, String>, TeleportError> {
        let mut inner = self.inner.clone();
        let filter = pb::types::PluginDataFilter {
            kind: ACCESS_REQUEST_KIND.into(),
            resource: request_id.to_owned(),
            plugin: self.plugin_name.clone(),
        };
        let seq = self
            .unary(Operation::GetPluginData, inner.get_plugin_data(filter))
            .await?;
        let entry = seq.plugin_data.into_iter().find_map(|pd| {
            pd.spec
                .and_then(|mut spec| spec.entries.remove(&self.plugin_name))
        });
        Ok(entry
            .map(|e| e.data.into_iter().collect())
            .unwrap_or_default())
    }

    /// Writes our plugin's data by compare-and-swap: every key of `expect` must currently hold
    /// that value (`""` = absent), else [`TeleportError::CompareFailed`]. An empty `expect`
    /// writes unconditionally. A `""` value in `set` deletes that key.
    pub async fn update_plugin_data(
        &self,
        request_id: &str,
        set: BTreeMap<String, String>,
        expect: BTreeMap<String, String>,
    ) -> Result<(), TeleportError> {
        let mut inner = self.inner.clone();
        let params = pb::types::PluginDataUpdateParams {
            kind: ACCESS_REQUEST_KIND.into(),
            resource: request_id.to_owned(),
            plugin: self.plugin_name.clone(),
            set: set.into_iter().collect(),
            expect: expect.into_iter().collect(),
        };
        self.unary(
            Operation::UpdatePluginData,
            inner.update_plugin_data(params),
        )
        .await
    }

    /// Reviews a request as the identity's user (`Approved` or `Denied`) and returns the
    /// request as it is after the review.
    pub async fn submit_review(
        &self,
        request_id: &str,
        state: RequestState,
        reason: &str,
    ) -> Result<AccessRequest, TeleportError> {
        let mut inner = self.inner.clone();
        let submission = pb::types::AccessReviewSubmission {
            request_id: request_id.to_owned(),
            review: Some(convert::review_to_pb(state, reason)),
        };
        let pb = self
            .unary(
                Operation::SubmitReview,
                inner.submit_access_review(submission),
            )
            .await?;
        convert::access_request_from_pb(pb).map_err(|error| TeleportError::Convert {
            operation: Operation::SubmitReview,
            error,
        })
    }

    /// Creates a pending request for `user` (tests and demos; needs `access_request:create`).
    pub async fn create_access_request(
        &self,
        user: &str,
        roles: &[String],
        reason: &str,
    ) -> Result<AccessRequest, TeleportError> {
        let request = AccessRequest {
            id: uuid::Uuid::new_v4().to_string(),
            user: user.to_owned(),
            roles: roles.to_vec(),
            state: RequestState::Pending,
            created: None,
            access_expiry: None,
            max_duration: None,
            request_reason: reason.to_owned(),
            resolve_reason: String::new(),
            system_annotations: BTreeMap::new(),
            reviews: vec![],
            resources: vec![],
        };
        let mut inner = self.inner.clone();
        let pb = self
            .unary(
                Operation::CreateAccessRequest,
                inner.create_access_request_v2(convert::access_request_to_pb(&request)),
            )
            .await?;
        convert::access_request_from_pb(pb).map_err(|error| TeleportError::Convert {
            operation: Operation::CreateAccessRequest,
            error,
        })
    }

    /// Sets a request's state directly, bypassing review thresholds (tests and demos; needs
    /// `access_request:update`).
    pub async fn set_access_request_state(
        &self,
        id: &str,
        state: RequestState,
        reason: &str,
    ) -> Result<(), TeleportError> {
        let mut inner = self.inner.clone();
        let setter = pb::proto::RequestStateSetter {
            id: id.to_owned(),
            state: convert::state_to_pb(state),
            reason: reason.to_owned(),
            ..Default::default()
        };
        self.unary(
            Operation::SetAccessRequestState,
            inner.set_access_request_state(setter),
        )
        .await
    }

    /// Deletes a request (tests and demos; needs `access_request:delete`).
    pub async fn delete_access_request(&self, id: &str) -> Result<(), TeleportError> {
        let mut inner = self.inner.clone();
        self.unary(
            Operation::DeleteAccessRequest,
            inner.delete_access_request(pb::proto::RequestId { id: id.to_owned() }),
        )
        .await
    }
}

fn proxy_route(cfg: &TeleportConfig, identity: &Identity) -> Option<Route> {
    cfg.cluster_name
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| identity.cluster_name.clone())
        .map(|cluster| Route::ProxyRouting { cluster })
}

fn convert_or_warn(pb: pb::types::AccessRequestV3) -> Option<AccessRequest> {
    let name = pb
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    match convert::access_request_from_pb(pb) {
        Ok(request) => Some(request),
        Err(error) => {
            warn!(id = %name, %error, "skipping an access request that cannot be read");
            None
        }
    }
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn keepalive_respects_teleports_ping_policy() {
        // Teleport answers pings more frequent than every 60 s with GOAWAY too_many_pings
        // (teleport-wire.md §5); the timeout must leave room for a slow answer.
        assert!(KEEPALIVE_INTERVAL >= Duration::from_secs(60));
        assert!(KEEPALIVE_INTERVAL <= Duration::from_secs(90));
        assert!(KEEPALIVE_TIMEOUT >= Duration::from_secs(10));
        assert!(KEEPALIVE_TIMEOUT < KEEPALIVE_INTERVAL);
    }

    #[test]
    fn auto_reports_one_clear_error() {
        let connect = |failure| TeleportError::Connect {
            addr: "a:1".into(),
            route: "direct",
            failure,
            detail: "x".into(),
        };
        assert!(!worth_trying_proxy(&connect(ConnectFailure::Unreachable)));
        assert!(worth_trying_proxy(&connect(ConnectFailure::Alpn)));
        assert!(worth_trying_proxy(&connect(ConnectFailure::UnknownCa)));
        let same = both_failed(
            connect(ConnectFailure::UnknownCa),
            connect(ConnectFailure::UnknownCa),
        );
        assert!(matches!(same, TeleportError::Connect { .. }), "{same}");
        let routed = both_failed(
            connect(ConnectFailure::Alpn),
            connect(ConnectFailure::HandshakeAborted),
        );
        assert!(
            matches!(
                routed,
                TeleportError::Connect {
                    failure: ConnectFailure::HandshakeAborted,
                    ..
                }
            ),
            "{routed}"
        );
        let too_old = both_failed(
            connect(ConnectFailure::NameMismatch),
            TeleportError::ServerTooOld {
                version: "13.0.0".into(),
                min: MIN_SERVER_VERSION,
            },
        );
        assert!(matches!(too_old, TeleportError::ServerTooOld { .. }));
        let mixed = both_failed(
            connect(ConnectFailure::NameMismatch),
            connect(ConnectFailure::HandshakeAborted),
        );
        assert!(matches!(mixed, TeleportError::AllRoutesFailed { .. }));
    }

    #[test]
    fn versions_compare_numerically_and_tolerate_suffixes() {
        assert_eq!(version_at_least("17.4.2", MIN_SERVER_VERSION), Some(true));
        assert_eq!(
            version_at_least("17.4.2-dev", MIN_SERVER_VERSION),
            Some(true)
        );
        assert_eq!(version_at_least("v14.0.0", MIN_SERVER_VERSION), Some(true));
        assert_eq!(
            version_at_least("14.0.0-alpha.1", MIN_SERVER_VERSION),
            Some(true)
        );
        assert_eq!(version_at_least("13.4.20", MIN_SERVER_VERSION), Some(false));
        assert_eq!(version_at_least("9.10.0", "10.2.0"), Some(false));
        assert_eq!(version_at_least("100", MIN_SERVER_VERSION), Some(true));
        assert_eq!(version_at_least("", MIN_SERVER_VERSION), None);
        assert_eq!(version_at_least("banana", MIN_SERVER_VERSION), None);
    }
}

#[cfg(all(test, feature = "sim"))]
mod e2e_tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use futures::StreamExt;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::transport::{Certificate, Server, ServerTlsConfig};
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::pb::proto::auth_service_server::{AuthService, AuthServiceServer};
    use crate::teleport::error::ConnectFailure;
    use std::time::SystemTime;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    use crate::sim::pki::{KeyKind, Pki};

    /// Just enough of Teleport's Auth Service for the client's tests.
    struct Fake {
        version: String,
        list_unimplemented: bool,
        list_calls: Arc<AtomicUsize>,
    }

    fn request(id: &str) -> pb::types::AccessRequestV3 {
        pb::types::AccessRequestV3 {
            kind: ACCESS_REQUEST_KIND.into(),
            version: "v3".into(),
            metadata: Some(pb::types::Metadata {
                name: id.into(),
                ..Default::default()
            }),
            spec: Some(pb::types::AccessRequestSpecV3 {
                user: "alice".into(),
                state: pb::types::RequestState::Pending as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    type Stream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

    #[tonic::async_trait]
    impl AuthService for Fake {
        async fn ping(
            &self,
            _: Request<pb::proto::PingRequest>,
        ) -> Result<Response<pb::proto::PingResponse>, Status> {
            Ok(Response::new(pb::proto::PingResponse {
                cluster_name: "example.com".into(),
                server_version: self.version.clone(),
                proxy_public_addr: "teleport.example.com:443".into(),
                ..Default::default()
            }))
        }
        type WatchEventsStream = Stream<pb::proto::Event>;
        async fn watch_events(
            &self,
            _: Request<pb::proto::Watch>,
        ) -> Result<Response<Self::WatchEventsStream>, Status> {
            let init = pb::proto::Event {
                operation: pb::proto::Operation::Init as i32,
                resource: None,
            };
            let put = pb::proto::Event {
                operation: pb::proto::Operation::Put as i32,
                resource: Some(pb::proto::event::Resource::AccessRequest(request("a"))),
            };
            // Stays open after the two events, like a real watch.
            let events =
                futures::stream::iter(vec![Ok(init), Ok(put)]).chain(futures::stream::pending());
            Ok(Response::new(Box::pin(events)))
        }
        async fn list_access_requests(
            &self,
            req: Request<pb::proto::ListAccessRequestsRequest>,
        ) -> Result<Response<pb::proto::ListAccessRequestsResponse>, Status> {
            self.list_calls.fetch_add(1, Ordering::SeqCst);
            if self.list_unimplemented {
                return Err(Status::unimplemented("unknown method ListAccessRequests"));
            }
            // Two pages: "" -> [a, b] next "p2"; "p2" -> [c].
            let req = req.into_inner();
            assert_eq!(req.limit, LIST_PAGE_LIMIT);
            let (ids, next) = if req.start_key.is_empty() {
                (vec!["a", "b"], "p2")
            } else {
                (vec!["c"], "")
            };
            Ok(Response::new(pb::proto::ListAccessRequestsResponse {
                access_requests: ids.into_iter().map(request).collect(),
                next_key: next.into(),
            }))
        }
        type GetAccessRequestsV2Stream = Stream<pb::types::AccessRequestV3>;
        async fn get_access_requests_v2(
            &self,
            _: Request<pb::types::AccessRequestFilter>,
        ) -> Result<Response<Self::GetAccessRequestsV2Stream>, Status> {
            let mut malformed = request("x");
            malformed.metadata = None;
            let items = vec![Ok(request("a")), Ok(malformed), Ok(request("c"))];
            Ok(Response::new(Box::pin(futures::stream::iter(items))))
        }
        async fn create_access_request_v2(
            &self,
            _: Request<pb::types::AccessRequestV3>,
        ) -> Result<Response<pb::types::AccessRequestV3>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }
        async fn submit_access_review(
            &self,
            _: Request<pb::types::AccessReviewSubmission>,
        ) -> Result<Response<pb::types::AccessRequestV3>, Status> {
            Err(Status::permission_denied(
                "user \"access-plugin\" has already reviewed this request",
            ))
        }
        async fn set_access_request_state(
            &self,
            _: Request<pb::proto::RequestStateSetter>,
        ) -> Result<Response<()>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }
        async fn delete_access_request(
            &self,
            _: Request<pb::proto::RequestId>,
        ) -> Result<Response<()>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }
        async fn get_plugin_data(
            &self,
            req: Request<pb::types::PluginDataFilter>,
        ) -> Result<Response<pb::proto::PluginDataSeq>, Status> {
            let filter = req.into_inner();
            if filter.resource != "with-data" {
                return Ok(Response::new(pb::proto::PluginDataSeq::default()));
            }
            let entry = |k: &str, v: &str| pb::types::PluginDataEntry {
                data: HashMap::from([(k.to_owned(), v.to_owned())]),
            };
            let mut entries = HashMap::new();
            entries.insert("other".to_owned(), entry("x", "1"));
            entries.insert(filter.plugin.clone(), entry("alert_id", "42"));
            Ok(Response::new(pb::proto::PluginDataSeq {
                plugin_data: vec![pb::types::PluginDataV3 {
                    spec: Some(pb::types::PluginDataSpecV3 { entries }),
                    ..Default::default()
                }],
            }))
        }
        async fn update_plugin_data(
            &self,
            req: Request<pb::types::PluginDataUpdateParams>,
        ) -> Result<Response<()>, Status> {
            let params = req.into_inner();
            match params.expect.get("state") {
                Some(v) if v != "open" => Err(Status::failed_precondition(
                    "expectations not met for field \"state\"",
                )),
                _ => Ok(Response::new(())),
            }
        }
    }

    /// A client identity for `access-plugin` issued by `issuer`, trusting `trusted_ca`.
    fn identity_for(issuer: &Pki, trusted_ca: &str) -> Identity {
        let now = SystemTime::now();
        let (cert, key) = issuer
            .client_cert(
                "access-plugin",
                now - Duration::from_secs(86_400),
                now + Duration::from_secs(30 * 86_400),
                KeyKind::EcdsaP256,
            )
            .expect("client cert");
        Identity::from_parts(&key, &cert, trusted_ca).expect("identity")
    }

    /// A fake Auth Service with `pki`'s certificate, and a client connected to it directly.
    async fn connected(fake: Fake) -> TeleportClient {
        let pki = pki();
        let addr = serve(&pki, fake).await;
        let identity = identity_for(&pki, &pki.ca_pem());
        let (client, _) = TeleportClient::connect(&config(addr, ConnectMode::Auth), &identity)
            .await
            .expect("connect");
        client
    }

    fn pki() -> Pki {
        Pki::new("example.com").expect("pki")
    }

    #[tokio::test]
    async fn watch_delivers_init_then_changes() {
        use crate::core::model::Snapshot;
        use crate::teleport::convert::{snapshot_from_event, EventKind};

        let pki = pki();
        let addr = serve(&pki, fake("17.0.0")).await;
        let identity = identity_for(&pki, &pki.ca_pem());
        let (client, _) = TeleportClient::connect(&config(addr, ConnectMode::Proxy), &identity)
            .await
            .expect("connect");
        let mut stream = client.watch_access_requests().await.expect("watch");
        let next = |ev: Option<pb::proto::Event>| snapshot_from_event(ev.expect("event"));
        let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("in time")
            .expect("ok");
        assert_eq!(next(first), Ok(EventKind::Init));
        let second = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("in time")
            .expect("ok");
        match next(second) {
            Ok(EventKind::Put(Snapshot::Present(r))) => assert_eq!(r.id, "a"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn wrong_server_name_is_explained() {
        // Teleport's own certificates always carry the API name, so this one is made here:
        // a CA and a server certificate for another name.
        let key = || KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, key()).expect("ca");
        let server_key = key();
        let server_cert = CertificateParams::new(vec!["auth.example.com".to_owned()])
            .expect("params")
            .signed_by(&server_key, &ca)
            .expect("server cert");
        let addr = serve_with(
            (server_cert.pem(), server_key.serialize_pem()),
            &ca.pem(),
            fake("17.0.0"),
        )
        .await;
        let identity = identity_for(&pki(), &ca.pem());
        let err = TeleportClient::connect(&config(addr, ConnectMode::Auth), &identity)
            .await
            .unwrap_err();
        match &err {
            TeleportError::Connect { failure, .. } => {
                assert_eq!(*failure, ConnectFailure::NameMismatch, "{err}")
            }
            other => panic!("{other:?}"),
        }
    }

    async fn serve(pki: &Pki, fake: Fake) -> SocketAddr {
        serve_with(pki.server_cert().expect("server cert"), &pki.ca_pem(), fake).await
    }

    /// Serves `fake` with the certificate and key `server`, asking for client certificates
    /// signed by `client_ca`.
    async fn serve_with(server: (String, String), client_ca: &str, fake: Fake) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (cert, key) = server;
        let tls = ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(client_ca));
        let server = Server::builder()
            .tls_config(tls)
            .expect("tls config")
            .add_service(AuthServiceServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        addr
    }

    fn fake(version: &str) -> Fake {
        Fake {
            version: version.into(),
            list_unimplemented: false,
            list_calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn config(addr: SocketAddr, mode: ConnectMode) -> TeleportConfig {
        TeleportConfig {
            addr: addr.to_string(),
            mode,
            dial_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(5),
            ..TeleportConfig::default()
        }
    }

    #[tokio::test]
    async fn connects_directly_and_through_proxy_routing() {
        let pki = pki();
        let addr = serve(&pki, fake("17.4.2-dev")).await;
        let identity = identity_for(&pki, &pki.ca_pem());
        for (mode, used) in [
            (ConnectMode::Auth, ConnectMode::Auth),
            (ConnectMode::Proxy, ConnectMode::Proxy),
            (ConnectMode::Auto, ConnectMode::Auth),
        ] {
            let (client, connected) = TeleportClient::connect(&config(addr, mode), &identity)
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            assert_eq!(connected.mode, used);
            assert_eq!(connected.ping.cluster_name, "example.com");
            assert_eq!(connected.ping.proxy_public_addr, "teleport.example.com:443");
            client.ping().await.expect("second ping");
        }
    }

    #[tokio::test]
    async fn lists_all_pages() {
        let client = connected(fake("17.0.0")).await;
        let ids: Vec<String> = client
            .list_access_requests()
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
    }

    #[tokio::test]
    async fn list_falls_back_to_the_stream_once_and_skips_malformed_entries() {
        let mut f = fake("14.3.0");
        f.list_unimplemented = true;
        let calls = f.list_calls.clone();
        let client = connected(f).await;
        for _ in 0..2 {
            let ids: Vec<String> = client
                .clone()
                .list_access_requests()
                .await
                .expect("list")
                .into_iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(ids, vec!["a", "c"]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "fallback is remembered");
    }

    #[tokio::test]
    async fn plugin_data_and_review_errors() {
        let client = connected(fake("17.0.0")).await;
        let data = client.get_plugin_data("with-data").await.expect("get");
        assert_eq!(data, BTreeMap::from([("alert_id".into(), "42".into())]));
        assert!(client
            .get_plugin_data("none")
            .await
            .expect("get")
            .is_empty());
        let set = BTreeMap::from([("state".to_owned(), "closed".to_owned())]);
        client
            .update_plugin_data("r", set.clone(), BTreeMap::new())
            .await
            .expect("unconditional");
        let err = client
            .update_plugin_data("r", set, BTreeMap::from([("state".into(), "stale".into())]))
            .await
            .unwrap_err();
        assert!(matches!(err, TeleportError::CompareFailed { .. }) && err.is_retryable());
        let err = client
            .submit_review("r", RequestState::Approved, "on call")
            .await
            .unwrap_err();
        assert!(
            matches!(err, TeleportError::AlreadyReviewed { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn old_servers_are_refused() {
        let pki = pki();
        let addr = serve(&pki, fake("13.4.1")).await;
        let identity = identity_for(&pki, &pki.ca_pem());
        let err = TeleportClient::connect(&config(addr, ConnectMode::Auth), &identity)
            .await
            .unwrap_err();
        assert!(matches!(err, TeleportError::ServerTooOld { .. }), "{err}");
    }

    #[tokio::test]
    async fn unknown_ca_is_explained() {
        let pki = pki();
        let addr = serve(&pki, fake("17.0.0")).await;
        let stranger = Pki::new("elsewhere").expect("pki");
        // Client cert from the right CA, but trusting another cluster's CA.
        let identity = identity_for(&pki, &stranger.ca_pem());
        let err = TeleportClient::connect(&config(addr, ConnectMode::Auth), &identity)
            .await
            .unwrap_err();
        match &err {
            TeleportError::Connect { failure, .. } => {
                assert_eq!(*failure, ConnectFailure::UnknownCa, "{err}")
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn unreachable_address_is_retryable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let pki = pki();
        let identity = identity_for(&pki, &pki.ca_pem());
        let err = TeleportClient::connect(&config(addr, ConnectMode::Auto), &identity)
            .await
            .unwrap_err();
        // Auto does not dial the same dead address a second time.
        assert!(
            matches!(
                err,
                TeleportError::Connect {
                    failure: ConnectFailure::Unreachable,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn client_certificate_from_another_cluster_is_refused() {
        let pki = pki();
        let addr = serve(&pki, fake("17.0.0")).await;
        let stranger = Pki::new("elsewhere").expect("pki");
        // Trusts the server, but the client cert is signed by a CA the server does not know.
        let identity = identity_for(&stranger, &pki.ca_pem());
        let err = TeleportClient::connect(&config(addr, ConnectMode::Auth), &identity)
            .await
            .unwrap_err();
        match &err {
            TeleportError::TlsRejected { failure, .. } => {
                assert_eq!(*failure, ConnectFailure::ClientCertRejected, "{err}")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string().contains("refused the client certificate"),
            "{err}"
        );
        assert!(!err.is_retryable());
    }
}
