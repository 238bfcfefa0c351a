//! A fake Teleport Auth server: `proto.AuthService` over mTLS on 127.0.0.1, with Teleport's
//! access-request rules (teleport-wire.md §1-§7), plus a direct API for tests to set up roles,
//! drive requests, inspect state and inject faults.
//!
//! What it reproduces: INIT-first watch streams with PUT/DELETE events (DELETE carries only a
//! `ResourceHeader`), RBAC from Teleport role YAML, UUID request ids, system annotations and
//! review thresholds from the requester's roles, the exact review error messages clients match
//! on, plugin-data compare-and-swap, plugin data outliving its request, each caller's own roles
//! (`GetCurrentUserRoles`, readable by any authenticated user), and locks with the `lock` rule's
//! RBAC check, a request's access counting as revoked while a lock targeting it is in force
//! ([`FakeTeleport::access_revoked`]). `GetAccessRequestsV2` can be paced or stalled like a slow
//! server.
//!
//! What it simplifies: thresholds are counted (any deny count reached denies, every approve count
//! reached approves; `filter` predicates and `where` clauses are ignored), there is no expiry
//! sweep (use [`FakeTeleport::expire_request`]), and the TLS server does not check SNI.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use teleport_opsgenie::sim::teleport::{FakeTeleport, FakeTeleportOptions, ACCESS_PLUGIN_ROLE};
//! let tp = FakeTeleport::start(FakeTeleportOptions::default()).await?;
//! tp.add_role_yaml(ACCESS_PLUGIN_ROLE)?;
//! tp.add_user("access-plugin", &["access-plugin"]);
//! let mut client = tp.client("access-plugin").await?;
//! # Ok(()) }
//! ```

mod admin;
mod knobs;
mod locks;
pub mod requester;
mod roles;
mod service;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::{Code, Status};

use self::store::{Limits, Store};
use super::pki::{KeyKind, Pki, PkiError, API_DOMAIN};
use crate::pb::proto::auth_service_client::AuthServiceClient;
use crate::pb::proto::auth_service_server::AuthServiceServer;
use crate::pb::{proto, types};

/// The role Teleport documents for access-request plugins (teleport-wire.md §6), plus the
/// `review_requests` grant auto-approval needs (for every role).
pub const ACCESS_PLUGIN_ROLE: &str = r#"
kind: role
version: v7
metadata:
  name: access-plugin
spec:
  allow:
    rules:
      - resources: ['access_request']
        verbs: ['list', 'read']
      - resources: ['access_plugin_data']
        verbs: ['update']
    review_requests:
      roles: ['*']
"#;

/// Errors starting or driving the fake.
///
/// `Timeout` is the only one a test might retry (with a longer deadline); the others are setup
/// bugs.
#[derive(Debug, thiserror::Error)]
pub enum FakeTeleportError {
    /// Certificate generation or identity-file writing failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Binding the listener or writing a file failed.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    /// Building the TLS server/client or connecting failed.
    #[error("transport error")]
    Transport(#[from] tonic::transport::Error),
    /// A role or user YAML document did not parse.
    #[error("invalid resource YAML")]
    Yaml(#[from] serde_yaml::Error),
    /// A YAML document parsed but is not a role or user this fake understands.
    #[error("invalid resource: {0}")]
    InvalidResource(String),
    /// [`FakeTeleport::wait_until`] ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// The caller's description of the condition.
        what: String,
        /// The deadline that passed.
        after: Duration,
    },
}

/// Start-up options. `Default` gives a v17 cluster named `sandbox.teleport.example`.
#[derive(Debug, Clone)]
pub struct FakeTeleportOptions {
    /// Cluster name (Ping, CA subject).
    pub cluster_name: String,
    /// Version reported by Ping, without a leading "v".
    pub server_version: String,
    /// `false` makes `ListAccessRequests` answer UNIMPLEMENTED like pre-v14 servers, so clients
    /// must fall back to `GetAccessRequestsV2`. Can be changed later.
    pub list_access_requests_implemented: bool,
    /// Refuse every review with the admin-action MFA error. Can be changed later.
    pub mfa_required_for_reviews: bool,
    /// `Features.advanced_access_workflows` in Ping.
    pub advanced_access_workflows: bool,
    /// Page size used when `ListAccessRequests.limit` is 0.
    pub default_page_size: usize,
    /// Upper bound on a `ListAccessRequests` page.
    pub max_page_size: usize,
    /// Access expiry of new requests that don't ask for one.
    pub access_ttl: Duration,
    /// Review deadline of pending requests (`Metadata.Expires`), capped by the access expiry.
    pub pending_ttl: Duration,
    /// Events a watcher may fall behind by before it is disconnected.
    pub event_buffer: usize,
}

impl Default for FakeTeleportOptions {
    fn default() -> Self {
        Self {
            cluster_name: "sandbox.teleport.example".to_owned(),
            server_version: "17.4.2".to_owned(),
            list_access_requests_implemented: true,
            mfa_required_for_reviews: false,
            advanced_access_workflows: false,
            default_page_size: 500,
            max_page_size: 1000,
            access_ttl: Duration::from_secs(3600),
            pending_ttl: Duration::from_secs(7 * 24 * 3600),
            event_buffer: 65_536,
        }
    }
}

/// One recorded gRPC call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Method name without the service prefix, e.g. `"SubmitAccessReview"`.
    pub method: &'static str,
    /// Username from the caller's certificate.
    pub caller: String,
    /// When the call arrived.
    pub at: SystemTime,
}

/// Fields of a request created through [`FakeTeleport::create_request_with`].
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    /// Requester.
    pub user: String,
    /// Requested roles (empty: every role the user may request, or the search-as roles for a
    /// resource request).
    pub roles: Vec<String>,
    /// Request reason.
    pub reason: String,
    /// Resource-based request targets.
    pub resources: Vec<types::ResourceId>,
    /// Requested access expiry (default now + `access_ttl`).
    pub access_expiry: Option<SystemTime>,
    /// Absolute `max_duration`.
    pub max_duration: Option<SystemTime>,
    /// Suggested reviewers.
    pub suggested_reviewers: Vec<String>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not turn every later call into a second panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared by the gRPC service and the test API.
pub(crate) struct Inner {
    cluster_name: String,
    server_version: String,
    advanced_access_workflows: bool,
    store: Mutex<Store>,
    events: broadcast::Sender<Arc<proto::Event>>,
    drop_gen: watch::Sender<u64>,
    stall_gen: watch::Sender<u64>,
    changed: Arc<Notify>,
    watchers: AtomicUsize,
    fail_remaining: AtomicU32,
    fail_code: Mutex<Code>,
    latency: Mutex<Duration>,
    mfa_required: AtomicBool,
    list_implemented: AtomicBool,
    /// `GetAccessRequestsV2` pacing: the gap before each item, and after how many items the
    /// stream stalls (stays open, sends nothing more).
    list_stream: Mutex<(Duration, Option<usize>)>,
    calls: Mutex<Vec<CallRecord>>,
    /// Calls by method and caller: what the load test counts, without copying every record.
    call_counts: Mutex<HashMap<(&'static str, String), usize>>,
    /// Locks by name (`locks.rs`).
    locks: Mutex<locks::Locks>,
    /// Refuse lock writes with the admin-action MFA error.
    mfa_required_for_locks: AtomicBool,
}

impl Inner {
    fn record(&self, method: &'static str, caller: &str) {
        lock(&self.calls).push(CallRecord {
            method,
            caller: caller.to_owned(),
            at: SystemTime::now(),
        });
        *lock(&self.call_counts)
            .entry((method, caller.to_owned()))
            .or_insert(0) += 1;
        self.changed.notify_waiters();
    }

    fn take_fault(&self) -> Result<(), Status> {
        let took = self
            .fail_remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if took {
            let code = *lock(&self.fail_code);
            return Err(Status::new(code, "injected fault"));
        }
        Ok(())
    }
}

/// A running fake Teleport Auth server. Dropping it stops the server and ends all watch streams.
pub struct FakeTeleport {
    inner: Arc<Inner>,
    pki: Arc<Pki>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl std::fmt::Debug for FakeTeleport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTeleport")
            .field("addr", &self.addr)
            .field("cluster_name", &self.inner.cluster_name)
            .finish_non_exhaustive()
    }
}

impl FakeTeleport {
    /// Creates the cluster CA, binds 127.0.0.1:0 and serves `proto.AuthService` with mTLS
    /// (client certificates signed by the CA are required).
    pub async fn start(opts: FakeTeleportOptions) -> Result<Self, FakeTeleportError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let pki = Arc::new(Pki::new(&opts.cluster_name)?);
        let (cert, key) = pki.server_cert()?;
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(pki.ca_pem()));

        let (events, _) = broadcast::channel(opts.event_buffer.max(16));
        let changed = Arc::new(Notify::new());
        let limits = Limits {
            access_ttl: opts.access_ttl,
            pending_ttl: opts.pending_ttl,
            default_page: opts.default_page_size.max(1),
            max_page: opts.max_page_size.max(1),
        };
        let (drop_gen, _) = watch::channel(0u64);
        let (stall_gen, _) = watch::channel(0u64);
        let inner = Arc::new(Inner {
            cluster_name: opts.cluster_name.clone(),
            server_version: opts.server_version.clone(),
            advanced_access_workflows: opts.advanced_access_workflows,
            store: Mutex::new(Store::new(events.clone(), changed.clone(), limits)),
            events,
            drop_gen,
            stall_gen,
            changed,
            watchers: AtomicUsize::new(0),
            fail_remaining: AtomicU32::new(0),
            fail_code: Mutex::new(Code::Unavailable),
            latency: Mutex::new(Duration::ZERO),
            mfa_required: AtomicBool::new(opts.mfa_required_for_reviews),
            list_implemented: AtomicBool::new(opts.list_access_requests_implemented),
            list_stream: Mutex::new((Duration::ZERO, None)),
            calls: Mutex::new(Vec::new()),
            call_counts: Mutex::new(HashMap::new()),
            locks: Mutex::new(locks::Locks::new()),
            mfa_required_for_locks: AtomicBool::new(false),
        });

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let svc = AuthServiceServer::new(service::AuthServiceImpl {
            inner: inner.clone(),
            callers: Mutex::new(Vec::new()),
        })
        .max_decoding_message_size(32 << 20)
        .max_encoding_message_size(32 << 20);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let router = Server::builder()
            .tls_config(tls)?
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(svc);
        // Answers go out at once (no Nagle delay), as from a real Auth server, so that latency
        // measured against the fake is the client's own.
        let incoming = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            |conn| {
                if let Ok(tcp) = &conn {
                    let _ = tcp.set_nodelay(true);
                }
                conn
            },
        );
        let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown_rx.await;
        }));
        tracing::debug!(%addr, cluster = %opts.cluster_name, "fake teleport listening");
        Ok(Self {
            inner,
            pki,
            addr,
            shutdown: Some(shutdown_tx),
            server: Some(server),
        })
    }

    /// The bound address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`, for tonic endpoints.
    pub fn uri(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The cluster's CA; issue further identities (rotations) from it at any time.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// A shareable handle to the CA.
    pub fn pki_arc(&self) -> Arc<Pki> {
        self.pki.clone()
    }

    /// The cluster name.
    pub fn cluster_name(&self) -> &str {
        &self.inner.cluster_name
    }

    /// Writes a 12-hour ECDSA identity file for `user` (the `tctl auth sign` layout, mode 0600).
    pub fn write_identity(&self, path: &Path, user: &str) -> Result<(), FakeTeleportError> {
        self.pki.write_identity_file(
            path,
            user,
            Duration::from_secs(12 * 3600),
            KeyKind::EcdsaP256,
        )?;
        Ok(())
    }

    /// tonic client TLS settings for `user` with a fresh 12-hour certificate, verifying the server
    /// as `teleport.cluster.local` like Teleport's own clients.
    pub fn client_tls(&self, user: &str) -> Result<ClientTlsConfig, FakeTeleportError> {
        let now = SystemTime::now();
        let (cert, key) = self.pki.client_cert(
            user,
            now - Duration::from_secs(60),
            now + Duration::from_secs(12 * 3600),
            KeyKind::EcdsaP256,
        )?;
        Ok(ClientTlsConfig::new()
            .domain_name(API_DOMAIN)
            .ca_certificate(Certificate::from_pem(self.pki.ca_pem()))
            .identity(Identity::from_pem(cert, key)))
    }

    /// A connected gRPC client authenticated as `user`.
    pub async fn client(
        &self,
        user: &str,
    ) -> Result<AuthServiceClient<Channel>, FakeTeleportError> {
        let channel = Endpoint::from_shared(self.uri())?
            .tls_config(self.client_tls(user)?)?
            .connect()
            .await?;
        Ok(AuthServiceClient::new(channel))
    }

    /// Waits until `pred` holds, re-checking after every change (request, plugin data, call,
    /// watcher). Fails with [`FakeTeleportError::Timeout`] naming `what` after `timeout`.
    pub async fn wait_until<F>(
        &self,
        timeout: Duration,
        what: &str,
        mut pred: F,
    ) -> Result<(), FakeTeleportError>
    where
        F: FnMut(&FakeTeleport) -> bool,
    {
        if crate::sim::wait::until(&self.inner.changed, timeout, || pred(self), || None).await {
            Ok(())
        } else {
            Err(FakeTeleportError::Timeout {
                what: what.to_owned(),
                after: timeout,
            })
        }
    }

    /// Stops the server gracefully (watch streams end with UNAVAILABLE first).
    pub async fn shutdown(mut self) {
        self.drop_watchers();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.server.take() {
            let abort = handle.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), handle)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for FakeTeleport {
    fn drop(&mut self) {
        self.drop_watchers();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
