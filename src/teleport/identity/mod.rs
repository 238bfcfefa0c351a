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

mod blocks;
mod cert;
mod error;

use std::fmt;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use self::blocks::{looks_like_identity, parse_cert_block, parse_key, pem_blocks};
use self::cert::{cert_facts, check_ca};
pub use self::cert::{rfc3339, unix_seconds_in_range, MAX_UNIX_SECONDS};
use self::error::{directory_error, Origin};
pub use self::error::{directory_hint, IdentityError};
use crate::config::TeleportConfig;

/// The largest credentials file read: a real identity is a few kilobytes, so anything bigger
/// is the wrong file and is not read whole.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

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

/// The credentials the daemon presents to Teleport.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The private key (secret).
    pub key: PrivateKey,
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

impl Identity {
    /// Parses the text of an identity file (teleport-wire.md §4.5). Does not check expiry: see
    /// [`Identity::check_validity`].
    pub fn parse(text: &str) -> Result<Identity, IdentityError> {
        Self::parse_with_origin(text, Origin::identity_file("<identity>"))
    }

    fn parse_with_origin(text: &str, origin: Origin) -> Result<Identity, IdentityError> {
        let blocks = pem_blocks(text);
        // A file that does not even start like an identity may be anything (the API key, an
        // SSH key): never suggest writing a new identity over it.
        let origin = if looks_like_identity(&blocks) {
            origin
        } else {
            origin.not_an_identity()
        };
        let mut iter = blocks.iter().enumerate().map(|(i, b)| (i + 1, b));
        let Some((index, key_block)) = iter.next() else {
            return Err(IdentityError::Missing {
                what: origin.key.clone(),
                expected: "private key",
                kind: origin.kind,
                fix: origin.fix.clone(),
            });
        };
        let key = parse_key(key_block, index, &origin)?;
        let Some((index, cert_block)) = iter.next() else {
            return Err(IdentityError::Missing {
                what: origin.cert.clone(),
                expected: "TLS certificate",
                kind: origin.kind,
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
                kind: origin.kind,
                fix: origin.fix.clone(),
            });
        };
        let key = parse_key(key_block, 1, &origin)?;
        let cert_blocks = pem_blocks(cert_pem);
        let Some(cert_block) = cert_blocks.first() else {
            return Err(IdentityError::Missing {
                what: origin.cert.clone(),
                expected: "TLS certificate",
                kind: origin.kind,
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
        Ok(Identity {
            key,
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

/// Reads a credentials file, at most [`MAX_FILE_BYTES`] of it; a directory gets a hint naming
/// the identity file tbot writes inside it.
fn read(path: &Path, what: &str) -> Result<String, IdentityError> {
    if path.is_dir() {
        return Err(directory_error(what, path));
    }
    let unreadable = |error| IdentityError::Unreadable {
        what: what.to_owned(),
        error,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_BYTES} bytes, so not a credentials file"),
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not text (PEM files are ASCII), so not a credentials file",
        ))
    })
}

#[cfg(all(test, feature = "sim"))]
mod tests;
