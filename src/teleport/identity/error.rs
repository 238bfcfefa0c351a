//! Why credentials could not be used, and where they came from (for the messages).

use std::path::Path;

use thiserror::Error;

/// Why credentials could not be used. None of these is retryable as such: the operator (or
/// tbot, for a refreshed identity file) has to fix the files; re-reading later may succeed.
///
/// `what` names the file(s) concerned (e.g. `identity file /etc/teleport/auth.pem`) and `fix`
/// says how to produce good credentials. A fix never tells the operator to overwrite a file
/// that does not look like an identity (it may be the API key, or someone else's key).
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
    /// The path names a directory, as when tbot's destination folder is given instead of the
    /// identity file inside it.
    #[error("{what} is a directory, not a file; {hint}")]
    Directory {
        /// The path.
        what: String,
        /// Which file inside it to name instead.
        hint: String,
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
    #[error("{what}: no {expected} PEM block found, so this is not {kind}; {fix}")]
    Missing {
        /// The file.
        what: String,
        /// What was looked for.
        expected: &'static str,
        /// What kind of file was expected, e.g. `a Teleport identity file`.
        kind: &'static str,
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
    /// An OpenSSH private key (`ssh-keygen`'s format), which is not a Teleport identity.
    #[error("{what}: this is an OpenSSH private key (`OPENSSH PRIVATE KEY`, as ssh-keygen writes), not a Teleport identity; {fix}")]
    OpenSshKey {
        /// The file.
        what: String,
        /// How to fix it.
        fix: String,
    },
    /// The private key is not a supported RSA/ECDSA/Ed25519 key (or is encrypted).
    #[error("{what}: the private key ({label}) is not a usable RSA, ECDSA or Ed25519 key (an encrypted key cannot be used); {fix}")]
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
    /// A certificate date outside 1970-01-01 .. 9999-12-31: no cluster issues one, and such a
    /// time cannot be compared or shown reliably.
    #[error("{what}: the TLS certificate's {field} date ({date}) is outside 1970..9999; {fix}")]
    DateOutOfRange {
        /// The file.
        what: String,
        /// `not before` or `not after`.
        field: &'static str,
        /// The date as the certificate gives it.
        date: String,
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

/// How to get a usable identity without overwriting anything: the file named is not one.
const NEW_IDENTITY: &str = "point `teleport.identity` at a Teleport identity file: one written by `tctl auth sign --user=access-plugin --out=<a new file> --ttl=2190h`, or tbot's `identity` output (e.g. /opt/machine-id/identity)";

/// Where credentials came from, for error messages.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub key: String,
    pub cert: String,
    pub cas: String,
    /// How to fix a file that is an identity but a bad one (renew it in place).
    pub fix: String,
    /// `a Teleport identity file` or `a PEM file`.
    pub kind: &'static str,
}

impl Origin {
    pub fn identity_file(path: &str) -> Self {
        let what = format!("identity file {path}");
        Self {
            key: what.clone(),
            cert: what.clone(),
            cas: what,
            fix: format!(
                "sign a new one with `tctl auth sign --user=access-plugin --out={path} --ttl=2190h` or use tbot"
            ),
            kind: "a Teleport identity file",
        }
    }

    pub fn trio(key: &str, cert: &str, cas: &str) -> Self {
        Self {
            key: format!("client_key {key}"),
            cert: format!("client_crt {cert}"),
            cas: format!("root_cas {cas}"),
            fix: "sign new ones with `tctl auth sign --format=tls --user=access-plugin --out=auth --ttl=2190h` (auth.key, auth.crt, auth.cas)".into(),
            kind: "a PEM file",
        }
    }

    /// The same origin, with a fix that never names the file as `--out`: for a file that does
    /// not look like an identity at all (the API key, an SSH key, a certificate alone).
    pub fn not_an_identity(mut self) -> Self {
        if self.kind == "a Teleport identity file" {
            self.fix = NEW_IDENTITY.to_owned();
        }
        self
    }

    pub fn mismatch(&self) -> String {
        if self.key == self.cert {
            self.key.clone()
        } else {
            format!("{} and {}", self.key, self.cert)
        }
    }
}

/// The error for a configured path that is a directory.
pub fn directory_error(what: &str, path: &Path) -> IdentityError {
    IdentityError::Directory {
        what: what.to_owned(),
        hint: directory_hint(path),
    }
}

/// What to do when `teleport.identity` names the directory `path`: tbot's destination folder
/// holds the identity in a file named `identity`, so name that file (for the configuration's
/// own file checks too).
pub fn directory_hint(path: &Path) -> String {
    let inside = path.join("identity");
    if inside.is_file() {
        format!(
            "set `teleport.identity: {}` (tbot's identity output in that folder)",
            inside.display()
        )
    } else {
        format!(
            "if this is tbot's destination folder, name the identity file inside it (`{}`); else {NEW_IDENTITY}",
            inside.display()
        )
    }
}
