//! GenieKey authentication, as Opsgenie answers it.

use axum::http::HeaderMap;

use super::inner::Inner;
use super::lock;

pub(super) enum Auth {
    Ok { config_only: bool },
    Missing,
    Malformed,
    Unknown,
}

/// 8-4-4-4-12 hex digits, the shape of every Opsgenie key.
pub(super) fn uuid_shaped(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

pub(super) fn authenticate(inner: &Inner, headers: &HeaderMap) -> Auth {
    let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Auth::Missing;
    };
    let Some((scheme, key)) = value.trim().split_once(' ') else {
        return Auth::Missing;
    };
    if !scheme.eq_ignore_ascii_case("GenieKey") {
        return Auth::Missing;
    }
    let key = key.trim();
    if !uuid_shaped(key) {
        return Auth::Malformed;
    }
    let config_only = lock(&inner.config_only).contains(key);
    if config_only || inner.api_keys.contains(key) {
        Auth::Ok { config_only }
    } else {
        Auth::Unknown
    }
}
