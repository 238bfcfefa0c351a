//! The gRPC client for the parts of Teleport's Auth API the daemon uses: ping, watching and
//! listing access requests, plugin data, reviews, and (for `check`) its own roles. What a
//! person does by hand (creating, resolving, deleting requests) lives with the fakes, in
//! `sim::teleport::requester`.
//!
//! Every unary call is bounded by the configured call timeout; statuses are classified into
//! [`TeleportError`]. Clones share one HTTP/2 connection.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use super::convert::{self, ACCESS_REQUEST_KIND};
use super::error::{ConnectFailure, Operation, TeleportError};
use super::identity::Identity;
use super::rbac::OwnRoles;
use super::tls::{self, Route};
use crate::config::{ConnectMode, TeleportConfig};
use crate::core::model::{AccessRequest, RequestState};
use crate::pb;
use crate::pb::proto::auth_service_client::AuthServiceClient;

pub use super::version::{version_at_least, MIN_SERVER_VERSION};

/// HTTP/2 ping interval. Teleport's Auth server enforces at least 60 s between client pings: a
/// ping that arrives even a few milliseconds early (timer slack, a ping sent after the server's
/// clock started counting) is a strike, and two strikes get GOAWAY `too_many_pings`. So the
/// interval keeps a clear margin above 60 s, and stays well below the 350 s idle timeout of
/// the load balancers usually in front of Teleport.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(75);
/// Teleport's minimum interval between client pings (teleport-wire.md §5).
pub const TELEPORT_MIN_PING_INTERVAL: Duration = Duration::from_secs(60);
/// How long to wait for a ping's answer before declaring the connection dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest message accepted; pages of access requests can exceed gRPC's 4 MiB default.
pub const MAX_DECODING_MESSAGE_SIZE: usize = 32 * 1024 * 1024;
/// Page size for `ListAccessRequests`.
pub const LIST_PAGE_LIMIT: i32 = 500;
/// Most roles read by [`TeleportClient::own_roles`].
const MAX_OWN_ROLES: usize = 1_000;

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
    /// go straight to `GetAccessRequestsV2` (`listing`).
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
            // Saturating: an absurd configured timeout must not overflow.
            cfg.dial_timeout.saturating_add(Duration::from_secs(1)),
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
    pub(crate) async fn unary<T, F>(
        &self,
        operation: Operation,
        call: F,
    ) -> Result<T, TeleportError>
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

    /// The identity's own roles (teleport-wire.md §10), for `check` to tell which rules it
    /// has. Reads only: nothing is created to find out.
    pub async fn own_roles(&self) -> Result<OwnRoles, TeleportError> {
        let operation = Operation::GetOwnRoles;
        let mut inner = self.inner.clone();
        let mut stream = self
            .unary(operation, inner.get_current_user_roles(()))
            .await?;
        let mut roles = Vec::new();
        // A user holds a handful of roles; the bound only guards against a runaway server.
        while roles.len() < MAX_OWN_ROLES {
            let next = tokio::time::timeout(self.call_timeout, stream.message()).await;
            match next {
                Err(_) => {
                    return Err(TeleportError::Timeout {
                        operation,
                        after: self.call_timeout,
                    })
                }
                Ok(Ok(Some(role))) => roles.push(role),
                Ok(Ok(None)) => break,
                Ok(Err(status)) => return Err(TeleportError::from_status(operation, status)),
            }
        }
        Ok(OwnRoles::from_pb(roles))
    }

    /// The raw gRPC client, for the fakes' demo helpers (`sim::teleport::requester`).
    #[cfg(feature = "sim")]
    pub(crate) fn raw(&self) -> AuthServiceClient<Channel> {
        self.inner.clone()
    }
}

fn proxy_route(cfg: &TeleportConfig, identity: &Identity) -> Option<Route> {
    cfg.cluster_name
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| identity.cluster_name.clone())
        .map(|cluster| Route::ProxyRouting { cluster })
}

#[path = "listing.rs"]
mod listing;
pub use self::listing::Listed;

#[path = "locks.rs"]
mod locks;
pub use self::locks::{RequestLock, LOCK_KIND};

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
