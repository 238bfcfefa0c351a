//! Teleport server versions: which ones this daemon supports.

/// The oldest Teleport this daemon supports (ListAccessRequests and CreateAccessRequestV2).
pub const MIN_SERVER_VERSION: &str = "14.0.0";

/// Parses `major.minor.patch`, tolerating a leading `v`, missing parts and suffixes such as
/// `-dev` or `+build`.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let v = version.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+', ' ']).next().unwrap_or_default();
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    let patch = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    Some((major, minor, patch))
}

/// Whether `version` is at least `min`; `None` when either cannot be parsed.
pub fn version_at_least(version: &str, min: &str) -> Option<bool> {
    Some(parse_version(version)? >= parse_version(min)?)
}
