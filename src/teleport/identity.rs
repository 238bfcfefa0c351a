//! The daemon's Teleport credentials: a private key, the TLS client certificate Teleport issued
//! for it, and the cluster's host CA certificates used as trust roots.
//!
//! Two sources are accepted (teleport-wire.md §4.4, §4.5):
//!
//! - an identity file written by `tctl auth sign --format=file` or by tbot, where PEM blocks are
//!   assigned by position (1st private key, 2nd TLS certificate, the rest CAs) and SSH
//!   certificate and `@cert-authority` lines are skipped;
//! - the `client_key` / `client_crt` / `root_cas` trio from `tctl auth sign --format=tls`.
//!
//! Every error names the file at fault and says how to fix it; none contains key material.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::sign::CertifiedKey;
use thiserror::Error;

use crate::config::TeleportConfig;

/// Which encoding the private key PEM block used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `RSA PRIVATE KEY` (PKCS#1).
    Pkcs1,
    /// `EC PRIVATE KEY` (SEC1).
    Sec1,
    /// `PRIVATE KEY` (PKCS#8, any algorithm).
    Pkcs8,
}

/// A private key. `Debug` never shows the key bytes.
pub struct PrivateKey {
    der: PrivateKeyDer<'static>,
    kind: KeyKind,
}

impl PrivateKey {
    /// The key in DER form, for building TLS configurations.
    pub fn der(&self) -> &PrivateKeyDer<'static> {
        &self.der
    }

    /// Which PEM encoding the key came in.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }
}

impl Clone for PrivateKey {
    fn clone(&self) -> Self {
        Self {
            der: self.der.clone_key(),
            kind: self.kind,
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.kind)
    }
}

/// Why credentials could not be used. None of these is retryable as such: the operator (or
/// tbot, for a refreshed identity file) has to fix the files; re-reading later may succeed.
///
/// `what` names the file(s) concerned (e.g. `identity file /etc/teleport/auth.pem`) and `fix`
/// says how to produce good credentials.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// A file could not be read (missing, permissions, ...).
    #[error("{what}: cannot read the file: {error}")]
    Unreadable {
        /// The file.
        what: String,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// The configuration names no credentials, or an incomplete trio.
    #[error("teleport credentials: {0}")]
    NotConfigured(String),
    /// A PEM block is cut short (no END line) or its base64 body is damaged.
    #[error("{what}: PEM block {index} ({label}) is truncated or corrupt; {fix}")]
    Truncated {
        /// The file.
        what: String,
        /// 1-based position of the block.
        index: usize,
        /// The block's label, e.g. `CERTIFICATE`.
        label: String,
        /// How to fix it.
        fix: String,
    },
    /// No PEM block at all where one was expected.
    #[error("{what}: no {expected} PEM block found; {fix}")]
    Missing {
        /// The file.
        what: String,
        /// What was looked for.
        expected: &'static str,
        /// How to fix it.
        fix: String,
    },
    /// A PEM block of the wrong type at a position (identity files are positional).
    #[error("{what}: PEM block {index} is `{found}` but a {expected} was expected there (order must be: private key, TLS certificate, CA certificates); {fix}")]
    WrongOrder {
        /// The file.
        what: String,
        /// 1-based position of the block.
        index: usize,
        /// The label found.
        found: String,
        /// What belongs there.
        expected: &'static str,
        /// How to fix it.
        fix: String,
    },
    /// No CA certificate follows the client certificate, so the server cannot be verified.
    #[error("{what}: no CA certificate found, so Teleport's server certificate cannot be verified; {fix}")]
    NoCa {
        /// The file.
        what: String,
        /// How to fix it.
        fix: String,
    },
    /// The private key is not a supported RSA/ECDSA/Ed25519 key (or is encrypted).
    #[error("{what}: the private key ({label}) is not a usable RSA, ECDSA or Ed25519 key; {fix}")]
    BadKey {
        /// The file.
        what: String,
        /// The key block's label.
        label: String,
        /// How to fix it.
        fix: String,
    },
    /// A certificate could not be parsed as X.509.
    #[error("{what}: certificate {index} is not a valid X.509 certificate ({reason}); {fix}")]
    BadCertificate {
        /// The file.
        what: String,
        /// 1-based position among the certificates in that file.
        index: usize,
        /// The parser's complaint.
        reason: String,
        /// How to fix it.
        fix: String,
    },
    /// The private key does not belong to the certificate.
    #[error("{what}: the private key does not match the TLS certificate's public key; {fix}")]
    KeyMismatch {
        /// The files.
        what: String,
        /// How to fix it.
        fix: String,
    },
    /// The certificate is past its validity.
    #[error("{what}: the TLS certificate expired at {not_after}; {fix}")]
    Expired {
        /// The file.
        what: String,
        /// RFC 3339 time the certificate expired.
        not_after: String,
        /// How to fix it.
        fix: String,
    },
    /// The certificate is not valid yet (clock skew?).
    #[error(
        "{what}: the TLS certificate is not valid before {not_before}; check this host's clock"
    )]
    NotYetValid {
        /// The file.
        what: String,
        /// RFC 3339 time the certificate becomes valid.
        not_before: String,
    },
}

/// Where credentials came from, for error messages.
#[derive(Debug, Clone)]
struct Origin {
    key: String,
    cert: String,
    cas: String,
    fix: String,
}

impl Origin {
    fn identity_file(path: &str) -> Self {
        let what = format!("identity file {path}");
        Self {
            key: what.clone(),
            cert: what.clone(),
            cas: what,
            fix: format!(
                "sign a new one with `tctl auth sign --user=access-plugin --out={path} --ttl=2190h` or use tbot"
            ),
        }
    }

    fn trio(key: &str, cert: &str, cas: &str) -> Self {
        Self {
            key: format!("client_key {key}"),
            cert: format!("client_crt {cert}"),
            cas: format!("root_cas {cas}"),
            fix: "sign new ones with `tctl auth sign --format=tls --user=access-plugin --out=auth --ttl=2190h` (auth.key, auth.crt, auth.cas)".into(),
        }
    }

    fn mismatch(&self) -> String {
        if self.key == self.cert {
            self.key.clone()
        } else {
            format!("{} and {}", self.key, self.cert)
        }
    }
}

/// The credentials the daemon presents to Teleport.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The private key (secret).
    pub key: PrivateKey,
    /// The TLS client certificate, PEM.
    pub cert_pem: String,
    /// The cluster's CA certificates, PEM, one per entry.
    pub ca_pems: Vec<String>,
    /// The Teleport user the certificate is for (its subject CN).
    pub username: String,
    /// Start of the certificate's validity.
    pub not_before: SystemTime,
    /// End of the certificate's validity.
    pub not_after: SystemTime,
    /// The cluster that issued the certificate (issuer O, else CN).
    pub cluster_name: Option<String>,
    cert_der: CertificateDer<'static>,
    ca_ders: Vec<CertificateDer<'static>>,
    origin: Arc<Origin>,
}

/// One PEM block found in a text, in order.
struct Block {
    label: String,
    /// The text from BEGIN to END inclusive, normalised to `\n` line ends.
    text: String,
    complete: bool,
}

/// Splits a text into PEM blocks, line by line, ignoring anything outside blocks (SSH
/// certificates, `@cert-authority` lines, comments).
fn pem_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("-----BEGIN ") {
            // A BEGIN inside an open block means that block was cut short; keep it (it will be
            // reported as truncated) and start the new one, so the error points at the right
            // block.
            blocks.extend(current.take());
            current = Some(Block {
                label: rest.trim_end_matches('-').trim().to_owned(),
                text: format!("{line}\n"),
                complete: false,
            });
            continue;
        }
        if let Some(block) = current.as_mut() {
            block.text.push_str(line);
            block.text.push('\n');
            if line.starts_with("-----END") {
                block.complete = true;
                blocks.extend(current.take());
            }
        }
    }
    blocks.extend(current);
    blocks
}

/// Decodes one block; `None` when its base64 is damaged or it does not decode as PEM.
fn decode(block: &Block) -> Option<(SectionKind, Vec<u8>)> {
    if !block.complete {
        return None;
    }
    // The error is deliberately dropped: for key blocks it could describe the secret bytes.
    <(SectionKind, Vec<u8>)>::from_pem_slice(block.text.as_bytes()).ok()
}

fn is_key_label(label: &str) -> bool {
    label.ends_with("PRIVATE KEY")
}

fn parse_key(block: &Block, index: usize, origin: &Origin) -> Result<PrivateKey, IdentityError> {
    if !is_key_label(&block.label) {
        return Err(IdentityError::WrongOrder {
            what: origin.key.clone(),
            index,
            found: block.label.clone(),
            expected: "private key",
            fix: origin.fix.clone(),
        });
    }
    // Only unencrypted keys can be used (no passphrase prompt in a daemon).
    if !matches!(
        block.label.as_str(),
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY"
    ) {
        return Err(IdentityError::BadKey {
            what: origin.key.clone(),
            label: block.label.clone(),
            fix: origin.fix.clone(),
        });
    }
    let Some((kind, der)) = decode(block) else {
        return Err(IdentityError::Truncated {
            what: origin.key.clone(),
            index,
            label: block.label.clone(),
            fix: origin.fix.clone(),
        });
    };
    let (der, kind) = match kind {
        SectionKind::RsaPrivateKey => (
            PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
            KeyKind::Pkcs1,
        ),
        SectionKind::EcPrivateKey => (
            PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
            KeyKind::Sec1,
        ),
        SectionKind::PrivateKey => (
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
            KeyKind::Pkcs8,
        ),
        // e.g. ENCRYPTED PRIVATE KEY: we cannot use a passphrase-protected key.
        _ => {
            return Err(IdentityError::BadKey {
                what: origin.key.clone(),
                label: block.label.clone(),
                fix: origin.fix.clone(),
            })
        }
    };
    Ok(PrivateKey { der, kind })
}

fn parse_cert_block(
    block: &Block,
    index: usize,
    what: &str,
    expected: &'static str,
    fix: &str,
) -> Result<CertificateDer<'static>, IdentityError> {
    if block.label != "CERTIFICATE" {
        return Err(IdentityError::WrongOrder {
            what: what.to_owned(),
            index,
            found: block.label.clone(),
            expected,
            fix: fix.to_owned(),
        });
    }
    match decode(block) {
        Some((SectionKind::Certificate, der)) => Ok(CertificateDer::from(der)),
        _ => Err(IdentityError::Truncated {
            what: what.to_owned(),
            index,
            label: block.label.clone(),
            fix: fix.to_owned(),
        }),
    }
}

fn asn1_to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// RFC 3339 rendering of a time, for messages.
fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

struct CertFacts {
    username: String,
    not_before: SystemTime,
    not_after: SystemTime,
    cluster_name: Option<String>,
}

fn first_attr<'a>(
    mut it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<String> {
    it.find_map(|attr| attr.as_str().ok())
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}

fn cert_facts(
    der: &CertificateDer<'_>,
    index: usize,
    what: &str,
    fix: &str,
) -> Result<CertFacts, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
        IdentityError::BadCertificate {
            what: what.to_owned(),
            index,
            reason: e.to_string(),
            fix: fix.to_owned(),
        }
    })?;
    let username = first_attr(cert.subject().iter_common_name()).unwrap_or_default();
    // Teleport's user CA has subject CN=<cluster>, O=<cluster>.
    let issuer = cert.issuer();
    let cluster_name =
        first_attr(issuer.iter_organization()).or_else(|| first_attr(issuer.iter_common_name()));
    let validity = cert.validity();
    Ok(CertFacts {
        username,
        not_before: asn1_to_system_time(validity.not_before.timestamp()),
        not_after: asn1_to_system_time(validity.not_after.timestamp()),
        cluster_name,
    })
}

fn check_ca(der: &CertificateDer<'_>, index: usize, origin: &Origin) -> Result<(), IdentityError> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|_| ())
        .map_err(|e| IdentityError::BadCertificate {
            what: origin.cas.clone(),
            index,
            reason: e.to_string(),
            fix: origin.fix.clone(),
        })
}

impl Identity {
    /// Parses the text of an identity file (teleport-wire.md §4.5). Does not check expiry: see
    /// [`Identity::check_validity`].
    pub fn parse(text: &str) -> Result<Identity, IdentityError> {
        Self::parse_with_origin(text, Origin::identity_file("<identity>"))
    }

    fn parse_with_origin(text: &str, origin: Origin) -> Result<Identity, IdentityError> {
        let blocks = pem_blocks(text);
        let mut iter = blocks.iter().enumerate().map(|(i, b)| (i + 1, b));
        let Some((index, key_block)) = iter.next() else {
            return Err(IdentityError::Missing {
                what: origin.key.clone(),
                expected: "private key",
                fix: origin.fix.clone(),
            });
        };
        let key = parse_key(key_block, index, &origin)?;
        let Some((index, cert_block)) = iter.next() else {
            return Err(IdentityError::Missing {
                what: origin.cert.clone(),
                expected: "TLS certificate",
                fix: origin.fix.clone(),
            });
        };
        let cert_der = parse_cert_block(
            cert_block,
            index,
            &origin.cert,
            "TLS certificate",
            &origin.fix,
        )?;
        let mut ca_ders = Vec::new();
        for (index, block) in iter {
            ca_ders.push(parse_cert_block(
                block,
                index,
                &origin.cas,
                "CA certificate",
                &origin.fix,
            )?);
        }
        Self::assemble(key, cert_der, ca_ders, origin)
    }

    /// Builds an identity from the contents of the `client_key`, `client_crt` and `root_cas`
    /// files (PEM). `root_cas` may hold several certificates.
    pub fn from_parts(
        key_pem: &str,
        cert_pem: &str,
        cas_pem: &str,
    ) -> Result<Identity, IdentityError> {
        Self::from_parts_with_origin(
            key_pem,
            cert_pem,
            cas_pem,
            Origin::trio("<client_key>", "<client_crt>", "<root_cas>"),
        )
    }

    fn from_parts_with_origin(
        key_pem: &str,
        cert_pem: &str,
        cas_pem: &str,
        origin: Origin,
    ) -> Result<Identity, IdentityError> {
        let key_blocks = pem_blocks(key_pem);
        let Some(key_block) = key_blocks.first() else {
            return Err(IdentityError::Missing {
                what: origin.key.clone(),
                expected: "private key",
                fix: origin.fix.clone(),
            });
        };
        let key = parse_key(key_block, 1, &origin)?;
        let cert_blocks = pem_blocks(cert_pem);
        let Some(cert_block) = cert_blocks.first() else {
            return Err(IdentityError::Missing {
                what: origin.cert.clone(),
                expected: "TLS certificate",
                fix: origin.fix.clone(),
            });
        };
        let cert_der =
            parse_cert_block(cert_block, 1, &origin.cert, "TLS certificate", &origin.fix)?;
        let mut ca_ders = Vec::new();
        for (i, block) in pem_blocks(cas_pem).iter().enumerate() {
            ca_ders.push(parse_cert_block(
                block,
                i + 1,
                &origin.cas,
                "CA certificate",
                &origin.fix,
            )?);
        }
        Self::assemble(key, cert_der, ca_ders, origin)
    }

    fn assemble(
        key: PrivateKey,
        cert_der: CertificateDer<'static>,
        ca_ders: Vec<CertificateDer<'static>>,
        origin: Origin,
    ) -> Result<Identity, IdentityError> {
        let facts = cert_facts(&cert_der, 1, &origin.cert, &origin.fix)?;
        if ca_ders.is_empty() {
            return Err(IdentityError::NoCa {
                what: origin.cas.clone(),
                fix: origin.fix.clone(),
            });
        }
        for (i, ca) in ca_ders.iter().enumerate() {
            check_ca(ca, i + 1, &origin)?;
        }
        let signing_key =
            rustls::crypto::aws_lc_rs::sign::any_supported_type(key.der()).map_err(|_| {
                IdentityError::BadKey {
                    what: origin.key.clone(),
                    label: match key.kind {
                        KeyKind::Pkcs1 => "RSA PRIVATE KEY".into(),
                        KeyKind::Sec1 => "EC PRIVATE KEY".into(),
                        KeyKind::Pkcs8 => "PRIVATE KEY".into(),
                    },
                    fix: origin.fix.clone(),
                }
            })?;
        // `keys_match` compares the key's SPKI with the certificate's. `Unknown` means the key
        // type cannot report its public key; rustls then checks at handshake time instead.
        let certified = CertifiedKey::new(vec![cert_der.clone()], signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => {
                return Err(IdentityError::KeyMismatch {
                    what: origin.mismatch(),
                    fix: origin.fix.clone(),
                })
            }
        }
        let to_pem = |der: &CertificateDer<'_>| pem_encode("CERTIFICATE", der.as_ref());
        Ok(Identity {
            key,
            cert_pem: to_pem(&cert_der),
            ca_pems: ca_ders.iter().map(to_pem).collect(),
            username: facts.username,
            not_before: facts.not_before,
            not_after: facts.not_after,
            cluster_name: facts.cluster_name,
            cert_der,
            ca_ders,
            origin: Arc::new(origin),
        })
    }

    /// Reads the credentials the configuration names: `identity`, or the `client_key` /
    /// `client_crt` / `root_cas` trio. Fails on an expired (or not yet valid) certificate, since
    /// Teleport would refuse it anyway and this error says how to fix it.
    pub fn load(cfg: &TeleportConfig) -> Result<Identity, IdentityError> {
        let identity = Self::load_unchecked(cfg)?;
        identity.check_validity(SystemTime::now())?;
        Ok(identity)
    }

    fn load_unchecked(cfg: &TeleportConfig) -> Result<Identity, IdentityError> {
        let trio = (&cfg.client_key, &cfg.client_crt, &cfg.root_cas);
        match (&cfg.identity, trio) {
            (Some(path), (None, None, None)) => {
                let origin = Origin::identity_file(&path.display().to_string());
                let text = read(path, &origin.key)?;
                Self::parse_with_origin(&text, origin)
            }
            (Some(_), _) => Err(IdentityError::NotConfigured(
                "`identity` and `client_key`/`client_crt`/`root_cas` are mutually exclusive; set only one".into(),
            )),
            (None, (Some(key), Some(crt), Some(cas))) => {
                let origin = Origin::trio(
                    &key.display().to_string(),
                    &crt.display().to_string(),
                    &cas.display().to_string(),
                );
                let key_text = read(key, &origin.key)?;
                let crt_text = read(crt, &origin.cert)?;
                let cas_text = read(cas, &origin.cas)?;
                Self::from_parts_with_origin(&key_text, &crt_text, &cas_text, origin)
            }
            (None, (None, None, None)) => Err(IdentityError::NotConfigured(
                "set `teleport.identity` (an identity file from `tctl auth sign` or tbot) or all of `client_key`, `client_crt` and `root_cas`".into(),
            )),
            (None, _) => Err(IdentityError::NotConfigured(
                "`client_key`, `client_crt` and `root_cas` must be set together".into(),
            )),
        }
    }

    /// Whether the certificate has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.not_after
    }

    /// `Ok` when the certificate is valid at `now`, else an error saying how to renew it.
    pub fn check_validity(&self, now: SystemTime) -> Result<(), IdentityError> {
        if self.is_expired(now) {
            return Err(IdentityError::Expired {
                what: self.origin.cert.clone(),
                not_after: rfc3339(self.not_after),
                fix: self.origin.fix.clone(),
            });
        }
        if now < self.not_before {
            return Err(IdentityError::NotYetValid {
                what: self.origin.cert.clone(),
                not_before: rfc3339(self.not_before),
            });
        }
        Ok(())
    }

    /// The client certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificates, DER.
    pub fn ca_ders(&self) -> &[CertificateDer<'static>] {
        &self.ca_ders
    }

    /// Where the credentials came from, e.g. `identity file /opt/machine-id/identity`.
    pub fn origin(&self) -> &str {
        &self.origin.cert
    }
}

fn read(path: &Path, what: &str) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(|error| IdentityError::Unreadable {
        what: what.to_owned(),
        error,
    })
}

/// PEM-encodes a DER body (only used for certificates, which are public).
fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= n {
                b64.push(char::from(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::pki::{KeyKind as Alg, Pki};

    /// A PKCS#8 document wrapping a PKCS#1 (RSA) or SEC1 (P-256) key, as `openssl pkcs8`
    /// writes it.
    fn to_pkcs8(legacy_pem: &str) -> String {
        const RSA: &[u8] = &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
            0x00,
        ];
        const P256: &[u8] = &[
            0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
            0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ];
        let (kind, key) =
            <(SectionKind, Vec<u8>)>::from_pem_slice(legacy_pem.as_bytes()).expect("key PEM");
        let algorithm = match kind {
            SectionKind::RsaPrivateKey => RSA,
            SectionKind::EcPrivateKey => P256,
            other => panic!("not a legacy key: {other:?}"),
        };
        let mut body = vec![0x02, 0x01, 0x00];
        body.extend(algorithm);
        der_push(&mut body, 0x04, &key);
        let mut out = Vec::new();
        der_push(&mut out, 0x30, &body);
        pem_encode("PRIVATE KEY", &out)
    }

    fn der_push(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
        out.push(tag);
        match content.len() {
            len @ 0..0x80 => out.push(len as u8),
            len @ 0x80..0x100 => out.extend([0x81, len as u8]),
            len => out.extend([0x82, (len >> 8) as u8, len as u8]),
        }
        out.extend(content);
    }

    /// An identity file as `tctl auth sign` lays it out: key, an SSH certificate line, TLS
    /// certificate, a CA line, the CA PEM.
    fn identity_file(ca_pem: &str, key_pem: &str, cert_pem: &str) -> String {
        format!(
            "{key_pem}ssh-ed25519-cert-v01@openssh.com AAAAfake access-plugin\n{cert_pem}@cert-authority *.example.com ssh-rsa AAAAfake type=host\n{ca_pem}"
        )
    }

    const DAY: Duration = Duration::from_secs(86_400);

    /// A client certificate for `access-plugin`, valid from `from` to `to` days from now, and
    /// its key (SEC1 for ECDSA, PKCS#1 for RSA, PKCS#8 for Ed25519).
    fn client_cert(pki: &Pki, alg: Alg, from: i32, to: i32) -> (String, String) {
        let at = |days: i32| {
            let now = SystemTime::now();
            let delta = DAY * days.unsigned_abs();
            if days < 0 {
                now - delta
            } else {
                now + delta
            }
        };
        pki.client_cert("access-plugin", at(from), at(to), alg)
            .expect("client cert")
    }

    struct Fixture {
        ca: String,
        /// As the PKI writes it: SEC1, PKCS#1 or PKCS#8 (see [`client_cert`]).
        key: String,
        cert: String,
    }

    impl Fixture {
        fn identity_file(&self) -> String {
            identity_file(&self.ca, &self.key, &self.cert)
        }
    }

    fn fixture(alg: Alg) -> Fixture {
        let pki = Pki::new("example.com").expect("pki");
        let (cert, key) = client_cert(&pki, alg, -1, 90);
        Fixture {
            ca: pki.ca_pem(),
            key,
            cert,
        }
    }

    fn key_pem(f: &Fixture, kind: KeyKind) -> String {
        match kind {
            KeyKind::Pkcs8 if f.key.contains("BEGIN PRIVATE KEY") => f.key.clone(),
            KeyKind::Pkcs8 => to_pkcs8(&f.key),
            KeyKind::Pkcs1 | KeyKind::Sec1 => f.key.clone(),
        }
    }

    fn parse_ok(alg: Alg, kind: KeyKind) {
        let f = fixture(alg);
        let text = identity_file(&f.ca, &key_pem(&f, kind), &f.cert);
        let id = Identity::parse(&text).unwrap_or_else(|e| panic!("{alg:?}/{kind:?}: {e}"));
        assert_eq!(id.key.kind(), kind);
        assert_eq!(id.username, "access-plugin");
        assert_eq!(id.cluster_name.as_deref(), Some("example.com"));
        assert_eq!(id.ca_pems.len(), 1);
        assert_eq!(id.ca_pems[0].trim(), f.ca.trim());
        assert_eq!(id.cert_pem.trim(), f.cert.trim());
        let now = SystemTime::now();
        assert!(id.not_before < now && now < id.not_after);
        assert!(!id.is_expired(now));
        id.check_validity(now).expect("valid");
    }

    #[test]
    fn parses_pkcs8_keys_of_every_algorithm() {
        parse_ok(Alg::EcdsaP256, KeyKind::Pkcs8);
        parse_ok(Alg::Rsa2048, KeyKind::Pkcs8);
        parse_ok(Alg::Ed25519, KeyKind::Pkcs8);
    }

    #[test]
    fn parses_pkcs1_rsa_key() {
        parse_ok(Alg::Rsa2048, KeyKind::Pkcs1);
    }

    #[test]
    fn parses_sec1_ec_key() {
        parse_ok(Alg::EcdsaP256, KeyKind::Sec1);
    }

    #[test]
    fn crlf_and_indentation_are_tolerated() {
        let f = fixture(Alg::EcdsaP256);
        let text = f
            .identity_file()
            .lines()
            .map(|l| format!("  {l}\r\n"))
            .collect::<String>();
        Identity::parse(&text).expect("parses");
    }

    #[test]
    fn several_cas_are_all_kept() {
        let f = fixture(Alg::EcdsaP256);
        let other = Pki::new("other").expect("pki");
        let text = format!("{}{}", f.identity_file(), other.ca_pem());
        let id = Identity::parse(&text).expect("parses");
        assert_eq!(id.ca_pems.len(), 2);
        assert_eq!(id.ca_ders().len(), 2);
    }

    #[test]
    fn truncated_pem_is_reported() {
        let f = fixture(Alg::EcdsaP256);
        let text = f.identity_file();
        // Cut inside the CA block: no END line.
        let cut = &text[..text.len() - 40];
        let err = Identity::parse(cut).unwrap_err();
        assert!(
            matches!(err, IdentityError::Truncated { index: 3, .. }),
            "{err}"
        );
        // Damage the base64 of the key.
        let damaged = text.replacen("\n", "\n!!!!", 2);
        let err = Identity::parse(&damaged).unwrap_err();
        assert!(
            matches!(err, IdentityError::Truncated { index: 1, .. }),
            "{err}"
        );
        // A key block without its END line, followed by the rest: the key is reported.
        let cut_key = f.key.replace("-----END EC PRIVATE KEY-----\n", "");
        assert_ne!(cut_key, f.key);
        let text = identity_file(&f.ca, &cut_key, &f.cert);
        let err = Identity::parse(&text).unwrap_err();
        assert!(
            matches!(err, IdentityError::Truncated { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn encrypted_keys_are_refused_clearly() {
        let f = fixture(Alg::EcdsaP256);
        let key = key_pem(&f, KeyKind::Pkcs8).replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
        let text = identity_file(&f.ca, &key, &f.cert);
        let err = Identity::parse(&text).unwrap_err();
        assert!(matches!(err, IdentityError::BadKey { .. }), "{err}");
    }

    #[test]
    fn wrong_order_is_reported() {
        let f = fixture(Alg::EcdsaP256);
        let text = format!("{}{}{}", f.cert, f.key, f.ca);
        let err = Identity::parse(&text).unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::WrongOrder {
                    index: 1,
                    expected: "private key",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("tctl auth sign"), "{err}");
        let text = format!("{}{}{}", f.key, f.key, f.ca);
        let err = Identity::parse(&text).unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::WrongOrder {
                    index: 2,
                    expected: "TLS certificate",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_ca_is_reported() {
        let f = fixture(Alg::EcdsaP256);
        let text = format!("{}{}", f.key, f.cert);
        let err = Identity::parse(&text).unwrap_err();
        assert!(matches!(err, IdentityError::NoCa { .. }), "{err}");
        let err = Identity::parse("nothing here\n").unwrap_err();
        assert!(matches!(err, IdentityError::Missing { .. }), "{err}");
    }

    #[test]
    fn key_certificate_mismatch_is_reported_without_key_material() {
        let f = fixture(Alg::EcdsaP256);
        let other = fixture(Alg::EcdsaP256).key;
        let text = identity_file(&f.ca, &other, &f.cert);
        let err = Identity::parse(&text).unwrap_err();
        assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
        let msg = format!("{err} {err:?}");
        assert!(!msg.contains("BEGIN"), "{msg}");
        // RSA key with an ECDSA certificate.
        let rsa = fixture(Alg::Rsa2048).key;
        let text = identity_file(&f.ca, &rsa, &f.cert);
        let err = Identity::parse(&text).unwrap_err();
        assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn expired_certificate_is_detected_with_a_fix() {
        let pki = Pki::new("example.com").expect("pki");
        let (cert, key) = client_cert(&pki, Alg::EcdsaP256, -10, -1);
        let text = identity_file(&pki.ca_pem(), &key, &cert);
        let id = Identity::parse(&text).expect("parses; expiry is checked separately");
        let now = SystemTime::now();
        assert!(id.is_expired(now));
        let err = id.check_validity(now).unwrap_err();
        assert!(matches!(err, IdentityError::Expired { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("expired at 20"), "{msg}");
        assert!(msg.contains("--ttl=2190h"), "{msg}");
    }

    #[test]
    fn debug_output_redacts_the_key() {
        let f = fixture(Alg::EcdsaP256);
        let text = f.identity_file();
        let id = Identity::parse(&text).expect("parses");
        let dbg = format!("{id:?}");
        assert!(dbg.contains("<redacted>"));
        assert!(!dbg.contains("PRIVATE KEY-----"), "{dbg}");
    }

    #[test]
    fn from_parts_and_load() {
        let f = fixture(Alg::Rsa2048);
        let key = key_pem(&f, KeyKind::Pkcs1);
        let id = Identity::from_parts(&key, &f.cert, &f.ca).expect("parts");
        assert_eq!(id.username, "access-plugin");

        let dir = std::env::temp_dir().join(format!("tp-identity-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write");
            p
        };
        let mut cfg = TeleportConfig {
            client_key: Some(write("auth.key", &key)),
            client_crt: Some(write("auth.crt", &f.cert)),
            root_cas: Some(write("auth.cas", &f.ca)),
            ..TeleportConfig::default()
        };
        Identity::load(&cfg).expect("loads trio");

        // Missing CA file: the error names it.
        cfg.root_cas = Some(dir.join("missing.cas"));
        let err = Identity::load(&cfg).unwrap_err();
        assert!(matches!(err, IdentityError::Unreadable { .. }), "{err}");
        assert!(err.to_string().contains("missing.cas"), "{err}");

        // Incomplete trio.
        cfg.root_cas = None;
        assert!(matches!(
            Identity::load(&cfg),
            Err(IdentityError::NotConfigured(_))
        ));

        let path = write("identity", &f.identity_file());
        let cfg = TeleportConfig {
            identity: Some(path.clone()),
            ..TeleportConfig::default()
        };
        Identity::load(&cfg).expect("loads identity file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pem_encoding_round_trips() {
        for len in 0..8 {
            let der: Vec<u8> = (0..len).map(|i| i as u8 * 37).collect();
            let pem = pem_encode("CERTIFICATE", &der);
            let (_, back) =
                <(SectionKind, Vec<u8>)>::from_pem_slice(pem.as_bytes()).expect("decodes");
            assert_eq!(back, der);
        }
    }
}
