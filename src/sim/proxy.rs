//! A fake Teleport Proxy with TLS routing (teleport-wire.md §4.2): it peeks at the TLS
//! ClientHello without terminating TLS, and when the client offers the ALPN route token
//! `teleport-auth@<hex(cluster)>.teleport.cluster.local` for the right cluster it replays the
//! bytes it read to the Auth server and then splices both directions, so the handshake runs end to
//! end between the client and Auth. Anything else is refused like Teleport's ALPN router does:
//! a ClientHello without a route token gets a fatal `no_application_protocol` alert, and a
//! route token naming another cluster (or a connection that is not TLS) is closed.
//!
//! What it leaves out: the signed PROXY header the real Proxy sends to Auth, the web UI, SSH,
//! and connection upgrades for L7 load balancers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// ALPN route-token prefix the Proxy matches.
const ROUTE_PREFIX: &str = "teleport-auth@";
/// TLS record type of handshake messages.
const RECORD_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Extension numbers (RFC 6066, RFC 7301).
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// A ClientHello larger than this is refused (a real one is a few KiB at most).
const MAX_HELLO: usize = 64 * 1024;
/// Fatal `no_application_protocol` alert (RFC 7301 §3.2), record version TLS 1.2.
const ALERT_NO_APPLICATION_PROTOCOL: [u8; 7] = [21, 3, 3, 0, 2, 2, 120];

/// What the fake Proxy read from a ClientHello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHelloInfo {
    /// The SNI host name, if any.
    pub server_name: Option<String>,
    /// The ALPN protocols offered, in order.
    pub alpn: Vec<String>,
}

/// Why a ClientHello could not be read. Never retryable: the bytes are what they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// More bytes are needed.
    #[error("the ClientHello is incomplete")]
    Incomplete,
    /// The bytes are not a TLS ClientHello.
    #[error("not a TLS ClientHello: {0}")]
    Malformed(&'static str),
}

/// A cursor over a byte slice that never panics.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.bytes.len() < n {
            return Err(HelloError::Malformed("a length runs past its end"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<usize, HelloError> {
        Ok(usize::from(self.take(1)?[0]))
    }
    fn u16(&mut self) -> Result<usize, HelloError> {
        let b = self.take(2)?;
        Ok(usize::from(b[0]) << 8 | usize::from(b[1]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Reads SNI and ALPN from the start of a TLS connection (one or more handshake records
/// holding a ClientHello). [`HelloError::Incomplete`] means: read more and try again.
pub fn parse_client_hello(bytes: &[u8]) -> Result<ClientHelloInfo, HelloError> {
    // Gather the handshake payload from as many records as it spans.
    let mut handshake = Vec::new();
    let mut rest = bytes;
    let body = loop {
        if rest.len() < 5 {
            return Err(HelloError::Incomplete);
        }
        if rest[0] != RECORD_HANDSHAKE {
            return Err(HelloError::Malformed("the first record is not a handshake"));
        }
        let len = usize::from(rest[3]) << 8 | usize::from(rest[4]);
        if rest.len() < 5 + len {
            return Err(HelloError::Incomplete);
        }
        handshake.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if handshake.len() >= 4 {
            if handshake[0] != CLIENT_HELLO {
                return Err(HelloError::Malformed(
                    "the first handshake is not a ClientHello",
                ));
            }
            let hello_len = usize::from(handshake[1]) << 16
                | usize::from(handshake[2]) << 8
                | usize::from(handshake[3]);
            if hello_len > MAX_HELLO {
                return Err(HelloError::Malformed("the ClientHello is too large"));
            }
            if handshake.len() >= 4 + hello_len {
                break &handshake[4..4 + hello_len];
            }
        }
    };
    let mut r = Reader { bytes: body };
    r.take(2)?; // legacy version
    r.take(32)?; // random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut info = ClientHelloInfo::default();
    if r.bytes.is_empty() {
        return Ok(info); // no extensions at all
    }
    let mut exts = Reader { bytes: r.vec16()? };
    while !exts.bytes.is_empty() {
        let kind = exts.u16()?;
        let mut data = Reader {
            bytes: exts.vec16()?,
        };
        match kind as u16 {
            EXT_SERVER_NAME => {
                let mut list = Reader {
                    bytes: data.vec16()?,
                };
                while !list.bytes.is_empty() {
                    let name_type = list.u8()?;
                    let name = list.vec16()?;
                    if name_type == 0 {
                        info.server_name = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
            }
            EXT_ALPN => {
                let mut list = Reader {
                    bytes: data.vec16()?,
                };
                while !list.bytes.is_empty() {
                    let proto = list.vec8()?;
                    info.alpn.push(String::from_utf8_lossy(proto).into_owned());
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// The route token that selects `cluster`'s Auth Service.
fn route_token(cluster: &str) -> String {
    format!(
        "{ROUTE_PREFIX}{}",
        crate::teleport::tls::routed_server_name(cluster)
    )
}

#[derive(Default)]
struct Counters {
    routed: AtomicUsize,
    refused: AtomicUsize,
    last_hello: Mutex<Option<ClientHelloInfo>>,
}

/// A running fake Proxy. Dropping it stops accepting; connections already routed live on.
pub struct FakeProxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeProxy {
    /// Listens on 127.0.0.1:0 and routes `cluster`'s Auth connections to `auth`.
    pub async fn start(cluster: &str, auth: SocketAddr) -> std::io::Result<FakeProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let token = route_token(cluster);
        let task = tokio::spawn({
            let counters = Arc::clone(&counters);
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let (counters, token) = (Arc::clone(&counters), token.clone());
                    tokio::spawn(async move {
                        if let Err(error) = serve(client, auth, &token, &counters).await {
                            tracing::debug!(%error, "fake proxy: connection ended");
                        }
                    });
                }
            }
        });
        tracing::debug!(%addr, %auth, "fake proxy listening");
        Ok(FakeProxy {
            addr,
            counters,
            task,
        })
    }

    /// The address to give clients (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections passed through to Auth so far.
    pub fn routed(&self) -> usize {
        self.counters.routed.load(Ordering::SeqCst)
    }

    /// Connections refused so far (no or wrong route token, not TLS).
    pub fn refused(&self) -> usize {
        self.counters.refused.load(Ordering::SeqCst)
    }

    /// The most recent ClientHello seen.
    pub fn last_hello(&self) -> Option<ClientHelloInfo> {
        crate::sim::teleport::lock(&self.counters.last_hello).clone()
    }
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    auth: SocketAddr,
    token: &str,
    counters: &Counters,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let hello = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_client_hello(&buf) {
            Ok(hello) => break hello,
            Err(HelloError::Incomplete) if buf.len() < MAX_HELLO + 5 * 8 => continue,
            Err(_) => {
                counters.refused.fetch_add(1, Ordering::SeqCst);
                return Ok(()); // not TLS: just close
            }
        }
    };
    *crate::sim::teleport::lock(&counters.last_hello) = Some(hello.clone());
    let wants_auth = hello.alpn.iter().any(|p| p.starts_with(ROUTE_PREFIX));
    if !wants_auth {
        // The real router would hand `h2` to its own web listener; for a client looking for
        // Auth that ends the same way, with no protocol both sides speak.
        counters.refused.fetch_add(1, Ordering::SeqCst);
        client.write_all(&ALERT_NO_APPLICATION_PROTOCOL).await?;
        client.shutdown().await?;
        return Ok(());
    }
    if !hello.alpn.iter().any(|p| p == token) {
        // A cluster this Proxy does not know: Teleport drops the connection.
        counters.refused.fetch_add(1, Ordering::SeqCst);
        return Ok(());
    }
    let mut upstream = TcpStream::connect(auth).await?;
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    upstream.write_all(&buf).await?;
    counters.routed.fetch_add(1, Ordering::SeqCst);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls writes it, captured from a real handshake attempt.
    async fn real_hello(alpn: Vec<Vec<u8>>, sni: &str) -> Vec<u8> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).expect("name");
        let dial = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let _ = connector.connect(name, tcp).await;
        });
        let (mut server, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = server.read(&mut chunk).await.expect("read");
            assert!(n > 0, "client closed before a full hello");
            buf.extend_from_slice(&chunk[..n]);
            if parse_client_hello(&buf) != Err(HelloError::Incomplete) {
                break;
            }
        }
        drop(server);
        let _ = dial.await;
        buf
    }

    #[tokio::test]
    async fn reads_sni_and_alpn_from_a_rustls_hello() {
        let token = route_token("example.com");
        let bytes = real_hello(
            vec![token.clone().into_bytes(), b"h2".to_vec()],
            "6578616d706c652e636f6d.teleport.cluster.local",
        )
        .await;
        let hello = parse_client_hello(&bytes).expect("parses");
        assert_eq!(
            hello.server_name.as_deref(),
            Some("6578616d706c652e636f6d.teleport.cluster.local")
        );
        assert_eq!(hello.alpn, vec![token, "h2".to_owned()]);
        // Every prefix is incomplete, never an error or a panic.
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_client_hello(&bytes[..cut]),
                Err(HelloError::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert!(matches!(
            parse_client_hello(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HelloError::Malformed(_))
        ));
        // A handshake record whose ClientHello lengths lie.
        let lying = [22, 3, 1, 0, 8, 1, 0, 0, 4, 3, 3, 0xff, 0xff];
        assert!(parse_client_hello(&lying).is_err());
        let mut rng_bytes = vec![22u8, 3, 1, 0, 60, 1, 0, 0, 56];
        rng_bytes.extend((0..56u8).map(|i| i.wrapping_mul(37)));
        let _ = parse_client_hello(&rng_bytes);
    }
}
