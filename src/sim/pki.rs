//! A throw-away certificate authority shaped like a Teleport cluster's.
//!
//! Teleport signs both the Auth server's certificate and every user certificate with CAs whose
//! subject carries the cluster name, puts the username in the client certificate's CN, and gives
//! the Auth server the SANs `teleport.cluster.local` / `*.teleport.cluster.local`. [`Pki`]
//! reproduces exactly those parts, so the daemon's TLS and identity-file code can be exercised
//! against the fake Teleport server without any real cluster.
//!
//! Keys are generated fresh for every certificate, so issuing a new identity for the same user at
//! any time (a "rotation", as tbot does) is just another call.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SignatureAlgorithm,
};

/// Errors from certificate generation and identity-file writing.
///
/// None of them is retryable: they mean a bug in the parameters or an unwritable path.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or failed to generate a key.
    #[error("certificate generation failed")]
    Rcgen(#[from] rcgen::Error),
    /// The generated PKCS#8 key could not be re-encoded in the requested legacy format.
    #[error("cannot re-encode the private key: {0}")]
    KeyEncoding(&'static str),
    /// Writing an identity file failed.
    #[error("cannot write identity file")]
    Io(#[from] std::io::Error),
}

/// The private key algorithm and PEM encoding of an issued certificate.
///
/// The three cover every form a Teleport identity file may carry (teleport-wire.md §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// ECDSA P-256, written as SEC1 (`EC PRIVATE KEY`), as current `tctl auth sign` does.
    #[default]
    EcdsaP256,
    /// Ed25519, written as PKCS#8 (`PRIVATE KEY`).
    Ed25519,
    /// RSA 2048, written as PKCS#1 (`RSA PRIVATE KEY`), as older Teleport versions do.
    Rsa2048,
}

impl KeyKind {
    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
            KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// The OpenSSH certificate type name matching this key, for the identity file's SSH line.
    fn ssh_cert_type(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ecdsa-sha2-nistp256-cert-v01@openssh.com",
            KeyKind::Ed25519 => "ssh-ed25519-cert-v01@openssh.com",
            KeyKind::Rsa2048 => "ssh-rsa-cert-v01@openssh.com",
        }
    }
}

/// The Auth server's DNS name that clients verify (Teleport's `constants.APIDomain`).
pub const API_DOMAIN: &str = "teleport.cluster.local";

/// A cluster CA plus helpers to issue server and client certificates from it.
pub struct Pki {
    cluster_name: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    // Hand-written so the CA private key can never end up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("cluster_name", &self.cluster_name)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Creates a fresh CA with subject `CN=<cluster>, O=<cluster>`, valid from a day ago for ten
    /// years.
    pub fn new(cluster_name: &str) -> Result<Self, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cluster_name);
        dn.push(DnType::OrganizationName, cluster_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(86_400)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * 86_400)).into();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let ca = CertifiedIssuer::self_signed(params, key)?;
        Ok(Self {
            cluster_name: cluster_name.to_owned(),
            ca,
        })
    }

    /// The cluster name the CA was made for.
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// The CA certificate in PEM form (what clients use as their trust root).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Issues the Auth server's certificate: SANs `teleport.cluster.local`,
    /// `*.teleport.cluster.local`, `localhost` and 127.0.0.1. Returns (cert PEM, PKCS#8 key PEM).
    pub fn server_cert(&self) -> Result<(String, String), PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.cluster_name.as_str());
        dn.push(DnType::OrganizationName, self.cluster_name.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::DnsName(API_DOMAIN.try_into()?),
            SanType::DnsName(format!("*.{API_DOMAIN}").try_into()?),
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(86_400)).into();
        params.not_after = (now + Duration::from_secs(5 * 365 * 86_400)).into();
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.ca)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a client certificate for `user` (subject CN = user, O = cluster) valid between the
    /// two instants. Returns (cert PEM, key PEM) with the key in the encoding of `key_kind`.
    ///
    /// A `not_after` in the past gives an expired certificate, which the server's TLS stack
    /// rejects during the handshake, like Teleport's.
    pub fn client_cert(
        &self,
        user: &str,
        not_before: SystemTime,
        not_after: SystemTime,
        key_kind: KeyKind,
    ) -> Result<(String, String), PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        dn.push(DnType::OrganizationName, self.cluster_name.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if key_kind == KeyKind::Rsa2048 {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(key_kind.algorithm())?;
        let cert = params.signed_by(&key, &self.ca)?;
        let key_pem = encode_key(&key, key_kind)?;
        Ok((cert.pem(), key_pem))
    }

    /// Builds an identity file for `user` valid from a minute ago (clock skew) for `validity`, in
    /// the layout `tctl auth sign --format=file` writes: private key PEM, one SSH certificate line,
    /// TLS certificate PEM, an `@cert-authority` line, then the CA certificate PEM.
    ///
    /// The SSH certificate and SSH CA are placeholders (well-formed lines, meaningless blobs):
    /// clients of the Auth gRPC API only use the PEM blocks.
    pub fn identity_file(
        &self,
        user: &str,
        validity: Duration,
        key_kind: KeyKind,
    ) -> Result<String, PkiError> {
        let now = SystemTime::now();
        let (cert_pem, key_pem) = self.client_cert(
            user,
            now - Duration::from_secs(60),
            // Saturating: X.509 cannot go past 9999 anyway.
            now.checked_add(validity)
                .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400)),
            key_kind,
        )?;
        let mut out = String::with_capacity(4096);
        push_block(&mut out, &key_pem);
        let ssh_type = key_kind.ssh_cert_type();
        let _ = writeln!(
            out,
            "{ssh_type} {} ",
            base64(&ssh_string_blob(&[ssh_type, user]))
        );
        push_block(&mut out, &cert_pem);
        let ca_type = "ecdsa-sha2-nistp256";
        let _ = writeln!(
            out,
            "@cert-authority *.{} {ca_type} {} type=host",
            self.cluster_name,
            base64(&ssh_string_blob(&[ca_type, &self.cluster_name]))
        );
        push_block(&mut out, &self.ca_pem());
        Ok(out)
    }

    /// Writes [`Pki::identity_file`] to `path` (mode 0600 on Unix), replacing it atomically so a
    /// client re-reading the file never sees half of it.
    pub fn write_identity_file(
        &self,
        path: &Path,
        user: &str,
        validity: Duration,
        key_kind: KeyKind,
    ) -> Result<(), PkiError> {
        let text = self.identity_file(user, validity, key_kind)?;
        let tmp = path.with_extension("tmp-identity");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

fn push_block(out: &mut String, pem: &str) {
    out.push_str(pem.trim_end());
    out.push('\n');
}

/// Re-encodes rcgen's PKCS#8 key in the legacy encoding the key kind calls for.
fn encode_key(key: &KeyPair, kind: KeyKind) -> Result<String, PkiError> {
    let pkcs8 = key.serialize_der();
    match kind {
        KeyKind::Ed25519 => Ok(key.serialize_pem()),
        KeyKind::Rsa2048 => {
            // PKCS#8 wraps the PKCS#1 RSAPrivateKey verbatim in its privateKey OCTET STRING.
            let inner = pkcs8_private_key(&pkcs8)?;
            Ok(pem_encode("RSA PRIVATE KEY", inner))
        }
        KeyKind::EcdsaP256 => {
            // PKCS#8 wraps a SEC1 ECPrivateKey, but usually without the curve parameters, which
            // standalone `EC PRIVATE KEY` files carry. Rebuild a complete one.
            let inner = pkcs8_private_key(&pkcs8)?;
            let scalar = sec1_scalar(inner)?;
            let public = key.public_key_raw();
            Ok(pem_encode("EC PRIVATE KEY", &sec1_p256(scalar, public)))
        }
    }
}

/// One DER TLV: (tag, content, rest).
fn der_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), PkiError> {
    let bad = PkiError::KeyEncoding("truncated DER");
    let (&tag, rest) = input
        .split_first()
        .ok_or(PkiError::KeyEncoding("empty DER"))?;
    let (&first, mut rest) = rest.split_first().ok_or(bad)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(PkiError::KeyEncoding("bad DER length"));
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(PkiError::KeyEncoding("truncated DER"));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// PKCS#8 PrivateKeyInfo: SEQUENCE { version INTEGER, algorithm SEQUENCE, privateKey OCTET
/// STRING, ... }. Returns the privateKey contents.
fn pkcs8_private_key(der: &[u8]) -> Result<&[u8], PkiError> {
    let (tag, body, _) = der_tlv(der)?;
    if tag != 0x30 {
        return Err(PkiError::KeyEncoding("PKCS#8 is not a SEQUENCE"));
    }
    let (_, _, rest) = der_tlv(body)?; // version
    let (_, _, rest) = der_tlv(rest)?; // algorithm
    let (tag, key, _) = der_tlv(rest)?;
    if tag != 0x04 {
        return Err(PkiError::KeyEncoding(
            "PKCS#8 privateKey is not an OCTET STRING",
        ));
    }
    Ok(key)
}

/// ECPrivateKey: SEQUENCE { version INTEGER, privateKey OCTET STRING, ... }.
fn sec1_scalar(der: &[u8]) -> Result<&[u8], PkiError> {
    let (tag, body, _) = der_tlv(der)?;
    if tag != 0x30 {
        return Err(PkiError::KeyEncoding("ECPrivateKey is not a SEQUENCE"));
    }
    let (_, _, rest) = der_tlv(body)?;
    let (tag, scalar, _) = der_tlv(rest)?;
    if tag != 0x04 {
        return Err(PkiError::KeyEncoding(
            "ECPrivateKey scalar is not an OCTET STRING",
        ));
    }
    Ok(scalar)
}

fn der_push(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
}

/// A complete SEC1 ECPrivateKey for P-256 with the named-curve parameters and public key.
fn sec1_p256(scalar: &[u8], public: &[u8]) -> Vec<u8> {
    // OID 1.2.840.10045.3.1.7 (prime256v1).
    const P256_OID: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut body = Vec::with_capacity(128);
    der_push(&mut body, 0x02, &[1]);
    der_push(&mut body, 0x04, scalar);
    let mut oid = Vec::new();
    der_push(&mut oid, 0x06, &P256_OID);
    der_push(&mut body, 0xa0, &oid);
    let mut bits = Vec::with_capacity(public.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(public);
    let mut bit_string = Vec::new();
    der_push(&mut bit_string, 0x03, &bits);
    der_push(&mut body, 0xa1, &bit_string);
    let mut out = Vec::with_capacity(body.len() + 4);
    der_push(&mut out, 0x30, &body);
    out
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    // LF line ends, as `tctl` writes them.
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// SSH wire-format strings (u32 length + bytes), used to make placeholder blobs that at least
/// start like real ones ("AAAA...").
fn ssh_string_blob(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out
}

/// Standard base64 with padding, as OpenSSH writes its blobs.
fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
        pem::parse_many(text)
            .expect("PEM")
            .into_iter()
            .map(|p| (p.tag().to_owned(), p.into_contents()))
            .collect()
    }

    #[test]
    fn ca_subject_carries_cluster_name() {
        let pki = Pki::new("example.com").unwrap();
        let blocks = pem_blocks(&pki.ca_pem());
        let (_, cert) = x509_parser::parse_x509_certificate(&blocks[0].1).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "example.com");
        let o = cert.subject().iter_organization().next().unwrap();
        assert_eq!(o.as_str().unwrap(), "example.com");
        assert!(cert.is_ca());
    }

    #[test]
    fn server_cert_has_teleport_sans() {
        let pki = Pki::new("c").unwrap();
        let (cert, key) = pki.server_cert().unwrap();
        assert!(key.contains("BEGIN PRIVATE KEY"));
        let der = &pem_blocks(&cert)[0].1;
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n}"))
            .collect();
        let joined = names.join(",");
        assert!(joined.contains("teleport.cluster.local"), "{joined}");
        assert!(joined.contains("*.teleport.cluster.local"), "{joined}");
        assert!(joined.contains("localhost"), "{joined}");
        assert!(joined.contains("7f:00:00:01"), "{joined}");
    }

    #[test]
    fn client_keys_use_the_requested_encodings() {
        let pki = Pki::new("c").unwrap();
        let now = SystemTime::now();
        let later = now + Duration::from_secs(3600);
        for (kind, label) in [
            (KeyKind::EcdsaP256, "EC PRIVATE KEY"),
            (KeyKind::Ed25519, "PRIVATE KEY"),
            (KeyKind::Rsa2048, "RSA PRIVATE KEY"),
        ] {
            let (cert, key) = pki.client_cert("alice", now, later, kind).unwrap();
            let blocks = pem_blocks(&key);
            assert_eq!(blocks[0].0, label);
            // rustls must be able to load every encoding we produce.
            let der = match kind {
                KeyKind::EcdsaP256 => {
                    rustls_pki_types::PrivateKeyDer::Sec1(blocks[0].1.clone().into())
                }
                KeyKind::Ed25519 => {
                    rustls_pki_types::PrivateKeyDer::Pkcs8(blocks[0].1.clone().into())
                }
                KeyKind::Rsa2048 => {
                    rustls_pki_types::PrivateKeyDer::Pkcs1(blocks[0].1.clone().into())
                }
            };
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).unwrap();
            let der = &pem_blocks(&cert)[0].1;
            let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
            let cn = cert.subject().iter_common_name().next().unwrap();
            assert_eq!(cn.as_str().unwrap(), "alice");
        }
    }

    #[test]
    fn identity_file_has_teleport_layout() {
        let pki = Pki::new("sandbox").unwrap();
        let text = pki
            .identity_file("bot", Duration::from_secs(600), KeyKind::EcdsaP256)
            .unwrap();
        let blocks = pem_blocks(&text);
        let labels: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["EC PRIVATE KEY", "CERTIFICATE", "CERTIFICATE"]);
        let ssh = text
            .lines()
            .find(|l| l.starts_with("ecdsa-sha2-nistp256-cert-v01@openssh.com AAAA"));
        assert!(ssh.is_some(), "{text}");
        assert!(text.lines().any(|l| l.starts_with("@cert-authority ")));
        // Order: key, ssh line, TLS cert, @cert-authority, CA.
        let key_at = text.find("BEGIN EC PRIVATE KEY").unwrap();
        let ssh_at = text.find("cert-v01@openssh.com").unwrap();
        let ca_line_at = text.find("@cert-authority").unwrap();
        assert!(key_at < ssh_at && ssh_at < ca_line_at);
        assert_eq!(pem_blocks(&pki.ca_pem())[0].1, blocks[2].1);
    }
}
