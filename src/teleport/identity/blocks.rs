//! The PEM blocks of an identity file, by position, and what each must be.
//!
//! The identity file rule (teleport-wire.md §4.5) is line-based: trim each line, skip SSH
//! certificate and `@cert-authority` lines, and take PEM blocks in order. That framing is done
//! here, because errors must say *which* block is cut short or out of place; decoding a block's
//! body is rustls-pki-types' PEM support (constant-time base64 for key material).

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

use super::error::{IdentityError, Origin};
use super::{KeyKind, PrivateKey};

/// One PEM block found in a text, in order.
pub(super) struct Block {
    pub label: String,
    /// The text from BEGIN to END inclusive, normalised to `\n` line ends.
    text: String,
    complete: bool,
}

/// Splits a text into PEM blocks, line by line, ignoring anything outside blocks (SSH
/// certificates, `@cert-authority` lines, comments).
pub(super) fn pem_blocks(text: &str) -> Vec<Block> {
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

/// Whether a block's label says it holds a private key of some kind.
pub(super) fn is_key_label(label: &str) -> bool {
    label.ends_with("PRIVATE KEY")
}

/// Whether the blocks start the way an identity file does (a key, then a certificate), so that
/// renewing it in place is safe advice.
pub(super) fn looks_like_identity(blocks: &[Block]) -> bool {
    matches!(blocks, [key, cert, ..] if is_key_label(&key.label) && cert.label == "CERTIFICATE")
}

pub(super) fn parse_key(
    block: &Block,
    index: usize,
    origin: &Origin,
) -> Result<PrivateKey, IdentityError> {
    if block.label == "OPENSSH PRIVATE KEY" {
        return Err(IdentityError::OpenSshKey {
            what: origin.key.clone(),
            fix: origin.fix.clone(),
        });
    }
    if !is_key_label(&block.label) {
        return Err(IdentityError::WrongOrder {
            what: origin.key.clone(),
            index,
            found: block.label.clone(),
            expected: "private key",
            fix: origin.fix.clone(),
        });
    }
    let bad_key = || IdentityError::BadKey {
        what: origin.key.clone(),
        label: block.label.clone(),
        fix: origin.fix.clone(),
    };
    // Only unencrypted keys can be used (no passphrase prompt in a daemon).
    if !matches!(
        block.label.as_str(),
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY"
    ) {
        return Err(bad_key());
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
        _ => return Err(bad_key()),
    };
    Ok(PrivateKey { der, kind })
}

pub(super) fn parse_cert_block(
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
