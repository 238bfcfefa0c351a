//! Errors from talking to Teleport, classified from gRPC statuses (teleport-wire.md §3) and
//! from connection failures, each with a hint an operator can act on.
//!
//! Teleport sends plain status codes with human messages and no details, so a few cases are
//! recognised by message text; those strings are part of Teleport's observable behaviour that
//! its own plugins rely on too.

use std::error::Error as StdError;
use std::time::Duration;

use thiserror::Error;

use super::convert::ConvertError;
use super::identity::IdentityError;
use super::tls::{ConnectError, TlsError};
use crate::core::model::RequestState;

/// Which call failed; used in messages and to name the role rule a denial points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Establishing the connection.
    Connect,
    /// `Ping`.
    Ping,
    /// `WatchEvents` for access requests.
    WatchAccessRequests,
    /// `ListAccessRequests` / `GetAccessRequestsV2`.
    ListAccessRequests,
    /// `GetPluginData`.
    GetPluginData,
    /// `UpdatePluginData`.
    UpdatePluginData,
    /// `SubmitAccessReview`.
    SubmitReview,
    /// `CreateAccessRequestV2`.
    CreateAccessRequest,
    /// `SetAccessRequestState`.
    SetAccessRequestState,
    /// `DeleteAccessRequest`.
    DeleteAccessRequest,
    /// `GetCurrentUserRoles`.
    GetOwnRoles,
    /// `UpsertLock`.
    UpsertLock,
    /// `GetLock`.
    GetLock,
    /// `DeleteLock`.
    DeleteLock,
}

impl Operation {
    /// A short name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Ping => "ping",
            Self::WatchAccessRequests => "watch access requests",
            Self::ListAccessRequests => "list access requests",
            Self::GetPluginData => "read plugin data",
            Self::UpdatePluginData => "update plugin data",
            Self::SubmitReview => "submit access review",
            Self::CreateAccessRequest => "create access request",
            Self::SetAccessRequestState => "set access request state",
            Self::DeleteAccessRequest => "delete access request",
            Self::GetOwnRoles => "read the identity's own roles",
            Self::UpsertLock => "create a lock",
            Self::GetLock => "read a lock",
            Self::DeleteLock => "delete a lock",
        }
    }

    /// The role rule the plugin's Teleport user needs for this call (teleport-wire.md §6).
    pub fn required_rule(self) -> &'static str {
        match self {
            Self::Connect | Self::Ping => {
                "a valid certificate for a user of this cluster (the `access-plugin` user)"
            }
            Self::WatchAccessRequests | Self::ListAccessRequests | Self::GetPluginData => {
                "allow rule `access_request` with verbs `list`, `read` in the plugin's role"
            }
            Self::UpdatePluginData => {
                "allow rule `access_plugin_data` with verb `update` in the plugin's role"
            }
            Self::SubmitReview => {
                "`allow.review_requests.roles` listing the requested roles (and a matching `where`) in the plugin's role; a user cannot review its own request"
            }
            Self::CreateAccessRequest => "allow rule `access_request` with verb `create`",
            Self::SetAccessRequestState => "allow rule `access_request` with verb `update`",
            Self::DeleteAccessRequest => "allow rule `access_request` with verb `delete`",
            Self::GetOwnRoles => "nothing more than a valid certificate (any user may read its own roles)",
            Self::UpsertLock => {
                "allow rule `lock` with verbs `create`, `update` in the plugin's role (the commented `lock` rule in config/access-plugin.yaml)"
            }
            Self::GetLock => "allow rule `lock` with verb `read` in the plugin's role",
            Self::DeleteLock => "allow rule `lock` with verb `delete` in the plugin's role",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection could not be established; decides the hint and whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// No TCP connection (refused, no route, DNS). Retryable.
    Unreachable,
    /// The server's certificate is not signed by the identity's CAs.
    UnknownCa,
    /// The server's certificate does not carry the expected name.
    NameMismatch,
    /// The server's certificate has expired (or our clock is off).
    ServerCertExpired,
    /// The server refused our certificate during the handshake.
    ClientCertRejected,
    /// No h2 could be agreed (wrong port, or the Proxy lacks TLS routing).
    Alpn,
    /// The server closed the connection mid-handshake. Retryable (it may be restarting).
    HandshakeAborted,
    /// Anything else (timeout of the dial, unexpected TLS error). Retryable.
    Other,
}

impl ConnectFailure {
    /// What the operator should check.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Unreachable => "check `teleport.addr` (the Auth Service, usually port 3025, or the Proxy, 443 or 3080) and that it is reachable from this host",
            Self::UnknownCa => "the server's certificate is not signed by the identity's CAs: was the identity issued by this cluster?",
            Self::NameMismatch => "the server's certificate is not valid for the Teleport API name: is this address a Teleport Auth Service, or a Proxy with TLS routing? For the Proxy, check `teleport.cluster_name`",
            Self::ServerCertExpired => "the server's certificate has expired, or this host's clock is wrong",
            Self::ClientCertRejected => "the server refused the client certificate: it may have expired or belong to another cluster; renew it with `tctl auth sign --user=access-plugin ... --ttl=2190h` or use tbot",
            Self::Alpn => "the server did not agree on h2: for `mode: proxy` the Proxy needs TLS routing and no L7 load balancer in front; for `mode: auth` check the port",
            Self::HandshakeAborted => "the server closed the connection during the TLS handshake; Teleport does this for an unexpected server name, so check `teleport.addr`, `teleport.mode` and `teleport.cluster_name`",
            Self::Other => "check `teleport.addr` and the identity",
        }
    }

    /// Whether trying again later may help without a configuration change.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Unreachable | Self::HandshakeAborted | Self::Other
        )
    }
}

/// An error from Teleport or on the way to it.
///
/// Retryable (see [`TeleportError::is_retryable`]): `CompareFailed` (re-read and plan again),
/// `Unavailable`, `Transport`, `Timeout`, some `Connect` failures, and statuses with codes that
/// signal load or cancellation. Everything else needs a change (configuration, RBAC,
/// credentials) or is a final answer (`NotFound`, `AlreadyReviewed`, `AlreadyResolved`).
#[derive(Debug, Error)]
pub enum TeleportError {
    /// Plugin-data compare-and-swap lost (FAILED_PRECONDITION): re-read, re-plan, retry.
    #[error("{operation}: compare-and-swap failed: {message}")]
    CompareFailed {
        /// The call.
        operation: Operation,
        /// The server's message.
        message: String,
    },
    /// The access request (or its plugin data) does not exist (any more).
    #[error("{operation}: not found: {message}")]
    NotFound {
        /// The call.
        operation: Operation,
        /// The server's message.
        message: String,
    },
    /// We already reviewed this request; treat as success.
    #[error("submit access review: already reviewed by us: {message}")]
    AlreadyReviewed {
        /// The server's message.
        message: String,
    },
    /// The request was resolved before our review arrived.
    #[error("submit access review: the request is already {}: {message}", state.as_str().to_lowercase())]
    AlreadyResolved {
        /// The state it was resolved to.
        state: RequestState,
        /// The server's message.
        message: String,
    },
    /// The cluster requires MFA for admin actions and our identity cannot do MFA.
    #[error("{operation}: {message}; use a Machine ID (tbot) identity, or one from `tctl auth sign` run on the Auth Service host, which are exempt from admin-action MFA")]
    MfaRequired {
        /// The call.
        operation: Operation,
        /// The server's message.
        message: String,
    },
    /// RBAC refused the call.
    #[error("{operation}: permission denied: {message}; the plugin's Teleport user needs {hint}")]
    PermissionDenied {
        /// The call.
        operation: Operation,
        /// The server's message.
        message: String,
        /// The role rule that is probably missing.
        hint: &'static str,
    },
    /// The server said it is unavailable (UNAVAILABLE). Retryable.
    #[error("{operation}: Teleport unavailable: {message}")]
    Unavailable {
        /// The call.
        operation: Operation,
        /// The server's message.
        message: String,
    },
    /// The connection broke under a call (reset, GOAWAY, stream error). Retryable.
    #[error("{operation}: connection problem: {message}")]
    Transport {
        /// The call.
        operation: Operation,
        /// What the transport reported.
        message: String,
    },
    /// No answer within the call timeout. Retryable.
    #[error("{operation}: no answer within {}", humantime::format_duration(*after))]
    Timeout {
        /// The call.
        operation: Operation,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The server does not implement the call (too old, or a removed API).
    #[error("{operation}: not implemented by this Teleport server: {message}")]
    Unimplemented {
        /// The call.
        operation: Operation,
        /// The server's message.
        message: String,
    },
    /// The server's version is below what this daemon supports.
    #[error("Teleport {version} is too old: at least {min} is required")]
    ServerTooOld {
        /// The server's version.
        version: String,
        /// The minimum supported.
        min: &'static str,
    },
    /// The connection could not be established.
    #[error("cannot connect to Teleport at {addr} ({route}): {detail}; {}", failure.hint())]
    Connect {
        /// The address dialled.
        addr: String,
        /// `direct` or `proxy routing`.
        route: &'static str,
        /// The classification.
        failure: ConnectFailure,
        /// The underlying error, rendered.
        detail: String,
    },
    /// TLS failed on an established connection: with TLS 1.3 the server checks our
    /// certificate after the handshake, so its refusal shows up on the first call.
    #[error("{operation}: TLS failure: {detail}; {}", failure.hint())]
    TlsRejected {
        /// The call.
        operation: Operation,
        /// The classification.
        failure: ConnectFailure,
        /// The underlying error, rendered.
        detail: String,
    },
    /// `mode: auto` tried both ways and both failed.
    #[error("neither direct nor proxy-routed connection worked; direct: {direct}; proxy: {proxy}")]
    AllRoutesFailed {
        /// The direct attempt's error.
        direct: Box<TeleportError>,
        /// The proxy-routed attempt's error.
        proxy: Box<TeleportError>,
    },
    /// The identity cannot be made into a TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The identity is unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A setting is missing or contradictory (e.g. proxy mode without a cluster name).
    #[error("teleport settings: {0}")]
    Config(String),
    /// The server answered with something we cannot use.
    #[error("{operation}: unusable answer from Teleport: {error}")]
    Convert {
        /// The call.
        operation: Operation,
        /// What was wrong.
        #[source]
        error: ConvertError,
    },
    /// Any other status.
    #[error("{operation}: Teleport answered {code:?}: {message}")]
    Status {
        /// The call.
        operation: Operation,
        /// The gRPC code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
}

const ALREADY_REVIEWED_SUFFIX: &str = "has already reviewed this request";
const ALREADY_RESOLVED_PREFIX: &str = "the access request has been already ";
const MFA_REQUIRED: &str = "admin-level API request requires MFA verification";

impl TeleportError {
    /// Classifies a status returned by `operation`.
    pub fn from_status(operation: Operation, status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        // Statuses made on our side from a transport failure carry the cause; the server's own
        // statuses never do.
        if let Some(source) = status.source() {
            if let Some(connect) = find_connect_error(source) {
                return Self::from_connect_error("reconnecting", connect);
            }
            let failure = find_rustls_error(source)
                .map(classify_rustls)
                .or_else(|| find_alert_text(source));
            if let Some(failure) = failure {
                return Self::TlsRejected {
                    operation,
                    failure,
                    detail: render_chain(source),
                };
            }
            return Self::Transport {
                operation,
                message: render_chain(&status),
            };
        }
        use tonic::Code;
        match status.code() {
            Code::FailedPrecondition => Self::CompareFailed { operation, message },
            Code::NotFound => Self::NotFound { operation, message },
            Code::PermissionDenied => Self::permission_denied(operation, message),
            // The access-monitoring flow reports a second review as AlreadyExists.
            Code::AlreadyExists if operation == Operation::SubmitReview => {
                Self::AlreadyReviewed { message }
            }
            Code::Unavailable => Self::Unavailable { operation, message },
            Code::Unimplemented => Self::Unimplemented { operation, message },
            code => Self::Status {
                operation,
                code,
                message,
            },
        }
    }

    fn permission_denied(operation: Operation, message: String) -> Self {
        let trimmed = message.trim_end_matches(['.', ' ']);
        if trimmed.ends_with(ALREADY_REVIEWED_SUFFIX) {
            return Self::AlreadyReviewed { message };
        }
        if let Some(pos) = trimmed.find(ALREADY_RESOLVED_PREFIX) {
            let word = trimmed[pos + ALREADY_RESOLVED_PREFIX.len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default();
            let state = match word {
                "approved" => Some(RequestState::Approved),
                "denied" => Some(RequestState::Denied),
                "promoted" => Some(RequestState::Promoted),
                _ => None,
            };
            if let Some(state) = state {
                return Self::AlreadyResolved { state, message };
            }
        }
        if message.contains(MFA_REQUIRED) {
            return Self::MfaRequired { operation, message };
        }
        Self::PermissionDenied {
            operation,
            message,
            hint: operation.required_rule(),
        }
    }

    /// Classifies a failure to establish the channel.
    pub fn from_transport(
        addr: &str,
        route: &'static str,
        error: &tonic::transport::Error,
    ) -> Self {
        match find_connect_error(error) {
            Some(connect) => Self::from_connect_error(route, connect),
            None => Self::Connect {
                addr: addr.to_owned(),
                route,
                failure: ConnectFailure::Other,
                detail: render_chain(error),
            },
        }
    }

    fn from_connect_error(route: &'static str, error: &ConnectError) -> Self {
        let (failure, addr) = match error {
            ConnectError::Tcp { addr, .. } => (ConnectFailure::Unreachable, addr),
            ConnectError::NotH2 { addr, .. } => (ConnectFailure::Alpn, addr),
            ConnectError::Handshake { addr, error } => {
                // rustls reports through an io::Error; its own `source()` skips the wrapped
                // error, so look inside explicitly.
                let failure = error
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>())
                    .map(classify_rustls)
                    .unwrap_or(ConnectFailure::HandshakeAborted);
                (failure, addr)
            }
        };
        Self::Connect {
            addr: addr.clone(),
            route,
            failure,
            detail: render_chain(error),
        }
    }

    /// Whether Teleport refused the call for the identity's rights: a missing role rule, or
    /// admin-action MFA the identity cannot do. Never retryable; the message names the fix.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::PermissionDenied { .. } | Self::MfaRequired { .. }
        )
    }

    /// Whether the same call may succeed later without any change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::CompareFailed { .. }
            | Self::Unavailable { .. }
            | Self::Transport { .. }
            | Self::Timeout { .. } => true,
            Self::Connect { failure, .. } | Self::TlsRejected { failure, .. } => {
                failure.is_retryable()
            }
            Self::AllRoutesFailed { direct, proxy } => {
                direct.is_retryable() || proxy.is_retryable()
            }
            Self::Status { code, .. } => matches!(
                code,
                tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Cancelled
                    | tonic::Code::DeadlineExceeded
            ),
            _ => false,
        }
    }
}

fn classify_rustls(error: &rustls::Error) -> ConnectFailure {
    use rustls::{AlertDescription as A, CertificateError as C};
    match error {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => ConnectFailure::UnknownCa,
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            ConnectFailure::NameMismatch
        }
        rustls::Error::InvalidCertificate(C::Expired)
        | rustls::Error::InvalidCertificate(C::ExpiredContext { .. })
        | rustls::Error::InvalidCertificate(C::NotValidYet)
        | rustls::Error::InvalidCertificate(C::NotValidYetContext { .. }) => {
            ConnectFailure::ServerCertExpired
        }
        rustls::Error::AlertReceived(alert) if CLIENT_CERT_ALERTS.contains(alert) => {
            ConnectFailure::ClientCertRejected
        }
        rustls::Error::AlertReceived(A::NoApplicationProtocol)
        | rustls::Error::NoApplicationProtocol => ConnectFailure::Alpn,
        _ => ConnectFailure::Other,
    }
}

/// Alerts with which a server refuses our certificate.
const CLIENT_CERT_ALERTS: &[rustls::AlertDescription] = &[
    rustls::AlertDescription::CertificateExpired,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::AccessDenied,
    rustls::AlertDescription::CertificateRequired,
    rustls::AlertDescription::CertificateRevoked,
];

/// Finds our connector's error in a source chain.
fn find_connect_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a ConnectError> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<ConnectError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Finds a rustls error in a source chain, looking inside `io::Error`s (whose `source()`
/// skips the error they wrap).
fn find_rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// After the handshake, rustls reports a received alert to readers as plain text
/// (`received fatal alert: UnknownCA`, the alert's `Debug` name), so the typed error is gone;
/// recognise the text and classify the alert it names like a typed one.
fn find_alert_text(error: &(dyn StdError + 'static)) -> Option<ConnectFailure> {
    const MARKER: &str = "received fatal alert: ";
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if let Some(pos) = text.find(MARKER) {
            let name = text[pos + MARKER.len()..]
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default();
            let known = CLIENT_CERT_ALERTS
                .iter()
                .chain([&rustls::AlertDescription::NoApplicationProtocol])
                .find(|alert| format!("{alert:?}") == name);
            return Some(known.map_or(ConnectFailure::Other, |alert| {
                classify_rustls(&rustls::Error::AlertReceived(*alert))
            }));
        }
        current = e.source();
    }
    None
}

/// "outer: inner: innermost", skipping repeats (wrappers often echo their cause).
fn render_chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = e.source();
    }
    out
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
