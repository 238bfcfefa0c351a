//! What the daemon reads from its certificates: the user, the cluster, and the validity
//! window, which must lie within 1970..9999 so that every later comparison and rendering of it
//! is safe (humantime, for one, panics on a time before 1970).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use x509_parser::time::ASN1Time;

use super::error::{IdentityError, Origin};

/// 9999-12-31T23:59:59Z, the last second an RFC 3339 year of four digits can show.
pub const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

pub(super) struct CertFacts {
    pub username: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub cluster_name: Option<String>,
}

fn first_attr<'a>(
    mut it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<String> {
    it.find_map(|attr| attr.as_str().ok())
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}

/// Seconds since 1970 as a time, if within 1970..=9999.
pub fn unix_seconds_in_range(secs: i64) -> Option<SystemTime> {
    if !(0..=MAX_UNIX_SECONDS).contains(&secs) {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
}

/// RFC 3339 rendering of a time, for messages. Never panics: a time outside 1970..9999 (which
/// [`cert_facts`] never lets through) is shown as a plain offset from 1970.
pub fn rfc3339(t: SystemTime) -> String {
    let in_range = t
        .duration_since(UNIX_EPOCH)
        .is_ok_and(|d| d.as_secs() <= MAX_UNIX_SECONDS.unsigned_abs());
    if in_range {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => format!("{} s after 1970-01-01", d.as_secs()),
            Err(e) => format!("{} s before 1970-01-01", e.duration().as_secs()),
        }
    }
}

fn checked_time(
    time: &ASN1Time,
    field: &'static str,
    what: &str,
    fix: &str,
) -> Result<SystemTime, IdentityError> {
    unix_seconds_in_range(time.timestamp()).ok_or_else(|| IdentityError::DateOutOfRange {
        what: what.to_owned(),
        field,
        date: time.to_datetime().date().to_string(),
        fix: fix.to_owned(),
    })
}

pub(super) fn cert_facts(
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
        not_before: checked_time(&validity.not_before, "not before", what, fix)?,
        not_after: checked_time(&validity.not_after, "not after", what, fix)?,
        cluster_name,
    })
}

pub(super) fn check_ca(
    der: &CertificateDer<'_>,
    index: usize,
    origin: &Origin,
) -> Result<(), IdentityError> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|_| ())
        .map_err(|e| IdentityError::BadCertificate {
            what: origin.cas.clone(),
            index,
            reason: e.to_string(),
            fix: origin.fix.clone(),
        })
}
