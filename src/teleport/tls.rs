//! Mutual TLS to Teleport's Auth Service, directly or through the Proxy's TLS routing
//! (teleport-wire.md §4.1, §4.2).
//!
//! tonic's own TLS settings always offer exactly ALPN `h2`, but routing through the Proxy needs
//! a route token in front of it, so we drive rustls ourselves: [`client_config`] builds the
//! rustls configuration and [`connector`] is the tower service that dials TCP, runs the
//! handshake and hands the stream to tonic. The tonic endpoint is then given an `http://` URI on
//! purpose: TLS is already done by the connector, and an `https://` URI would make tonic look
//! for its own TLS configuration and fail.

use std::fmt::Write as _;
use std::io;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::identity::Identity;

/// The name Teleport's Auth Service answers to, whatever host it runs on.
pub const API_DOMAIN: &str = "teleport.cluster.local";
/// Prefix of the ALPN token that asks the Proxy to route the connection to the Auth Service.
pub const AUTH_ALPN_PREFIX: &str = "teleport-auth@";
/// HTTP/2, which gRPC needs.
pub const ALPN_H2: &[u8] = b"h2";

/// How the TLS connection reaches the Auth Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Directly to the Auth Service's port (3025).
    Direct,
    /// Through the Proxy's web port, which passes TLS through to Auth (no termination).
    ProxyRouting {
        /// The cluster whose Auth Service the Proxy should pick.
        cluster: String,
    },
}

impl Route {
    /// The SNI and the name the server's certificate is checked against.
    pub fn server_name(&self) -> String {
        match self {
            Self::Direct => API_DOMAIN.to_owned(),
            Self::ProxyRouting { cluster } => routed_server_name(cluster),
        }
    }

    /// The ALPN protocols offered, most preferred first.
    pub fn alpn(&self) -> Vec<Vec<u8>> {
        match self {
            Self::Direct => vec![ALPN_H2.to_vec()],
            // The route token must come first; offering it alone fails, since Auth itself
            // only speaks h2.
            Self::ProxyRouting { cluster } => vec![
                format!("{AUTH_ALPN_PREFIX}{}", routed_server_name(cluster)).into_bytes(),
                ALPN_H2.to_vec(),
            ],
        }
    }
}

/// Lower-case hex of the UTF-8 bytes of a cluster name.
pub fn hex_cluster_name(cluster: &str) -> String {
    cluster
        .bytes()
        .fold(String::with_capacity(cluster.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `<hex(cluster)>.teleport.cluster.local`: the SNI for proxy routing, and a name Auth accepts.
pub fn routed_server_name(cluster: &str) -> String {
    format!("{}.{API_DOMAIN}", hex_cluster_name(cluster))
}

/// The identity cannot be turned into a TLS configuration. Not retryable: fix the identity.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A CA certificate was refused as a trust anchor.
    #[error("a CA certificate of {origin} cannot be used as a trust root: {error}")]
    BadCa {
        /// Where the identity came from.
        origin: String,
        /// rustls's complaint.
        #[source]
        error: rustls::Error,
    },
    /// rustls refused the client certificate or key.
    #[error("the client certificate or key of {origin} cannot be used: {error}")]
    BadClientCert {
        /// Where the identity came from.
        origin: String,
        /// rustls's complaint.
        #[source]
        error: rustls::Error,
    },
    /// The server name derived from the cluster name is not a valid DNS name.
    #[error("cannot use {name:?} as a TLS server name (is the cluster name right?)")]
    BadServerName {
        /// The name.
        name: String,
    },
}

/// A rustls client configuration for `route`: trust only the identity's CAs, present the
/// identity's certificate, offer the route's ALPN list.
pub fn client_config(identity: &Identity, route: &Route) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in identity.ca_ders() {
        roots.add(ca.clone()).map_err(|error| TlsError::BadCa {
            origin: identity.origin().to_owned(),
            error,
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::BadClientCert {
            origin: identity.origin().to_owned(),
            error,
        })?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![identity.cert_der().clone()],
            identity.key.der().clone_key(),
        )
        .map_err(|error| TlsError::BadClientCert {
            origin: identity.origin().to_owned(),
            error,
        })?;
    config.alpn_protocols = route.alpn();
    Ok(Arc::new(config))
}

/// The server name for `route` in rustls's form.
pub fn server_name(route: &Route) -> Result<ServerName<'static>, TlsError> {
    let name = route.server_name();
    ServerName::try_from(name.clone()).map_err(|_| TlsError::BadServerName { name })
}

/// Connecting one TLS stream failed. TCP failures are retryable; handshake failures usually
/// mean a configuration problem (see `TeleportError` for the classification and hints).
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The TCP connection could not be made.
    #[error("cannot reach {addr}: {error}")]
    Tcp {
        /// The address dialled.
        addr: String,
        /// The I/O error.
        #[source]
        error: io::Error,
    },
    /// The TLS handshake failed (the cause, a `rustls::Error`, is in the source chain).
    #[error("TLS handshake with {addr} failed: {error}")]
    Handshake {
        /// The address dialled.
        addr: String,
        /// The I/O error wrapping rustls's error.
        #[source]
        error: io::Error,
    },
    /// The server did not agree on HTTP/2.
    #[error(
        "{addr} negotiated ALPN {negotiated:?}, not h2: is this a Teleport Auth or Proxy address?"
    )]
    NotH2 {
        /// The address dialled.
        addr: String,
        /// What was negotiated, if anything.
        negotiated: Option<String>,
    },
}

/// The stream tonic gets from [`connector`].
pub type TlsIo = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

/// A tower service that ignores the URI tonic passes, dials `addr`, runs the TLS handshake
/// for `route` and checks that h2 was negotiated. tonic calls it again on every reconnect.
pub fn connector(
    addr: String,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> impl tower::Service<
    http::Uri,
    Response = TlsIo,
    Error = ConnectError,
    Future = impl std::future::Future<Output = Result<TlsIo, ConnectError>> + Send,
> + Clone
       + Send
       + 'static {
    let tls = TlsConnector::from(config);
    tower::service_fn(move |_uri: http::Uri| {
        let addr = addr.clone();
        let tls = tls.clone();
        let server_name = server_name.clone();
        async move {
            let tcp =
                TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|error| ConnectError::Tcp {
                        addr: addr.clone(),
                        error,
                    })?;
            // gRPC messages are small and latency matters more than throughput here.
            let _ = tcp.set_nodelay(true);
            let stream =
                tls.connect(server_name, tcp)
                    .await
                    .map_err(|error| ConnectError::Handshake {
                        addr: addr.clone(),
                        error,
                    })?;
            let negotiated = stream.get_ref().1.alpn_protocol();
            if negotiated != Some(ALPN_H2) {
                return Err(ConnectError::NotH2 {
                    addr,
                    negotiated: negotiated.map(|p| String::from_utf8_lossy(p).into_owned()),
                });
            }
            Ok(TokioIo::new(stream))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_sni_of_a_cluster() {
        assert_eq!(
            routed_server_name("example.com"),
            "6578616d706c652e636f6d.teleport.cluster.local"
        );
        assert_eq!(hex_cluster_name("ÄZ"), "c3845a");
    }

    #[test]
    fn alpn_and_names_per_route() {
        assert_eq!(Route::Direct.alpn(), vec![b"h2".to_vec()]);
        assert_eq!(Route::Direct.server_name(), "teleport.cluster.local");
        let routed = Route::ProxyRouting {
            cluster: "example.com".into(),
        };
        assert_eq!(
            routed.alpn(),
            vec![
                b"teleport-auth@6578616d706c652e636f6d.teleport.cluster.local".to_vec(),
                b"h2".to_vec()
            ]
        );
        assert!(server_name(&routed).is_ok());
    }
}
