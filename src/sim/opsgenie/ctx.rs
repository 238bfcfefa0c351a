//! What a handler gets about one call, and the small readers every handler shares (query
//! parameters, the JSON body, the identifier type). A leaf of the fake, so that the dispatcher
//! and the handlers it calls do not import each other.

use std::net::IpAddr;

use axum::http::StatusCode;
use serde_json::Value;

use super::inner::Inner;
use super::reply::Reply;
use super::route::Route;

pub(super) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Everything a handler needs about one call.
pub(super) struct Ctx<'a> {
    pub(super) inner: &'a Inner,
    pub(super) route: Route,
    /// Raw path (with the JSM prefix, if used).
    pub(super) path: &'a str,
    /// Path without the JSM prefix; what routing sees.
    pub(super) api_path: &'a str,
    pub(super) query: Option<&'a str>,
    pub(super) body: Option<&'a Result<Value, serde_json::Error>>,
    pub(super) peer: IpAddr,
    pub(super) request_id: &'a str,
    /// The request's `Content-Type`, if any.
    pub(super) content_type: Option<&'a str>,
    /// Whether the request had a non-empty body.
    pub(super) has_body: bool,
    /// Set by an injected fault: the write fails with this status text when processed.
    pub(super) fail_with: Option<String>,
    /// Set by an injected fault: the write is validated and answered but not applied.
    pub(super) discard: bool,
    /// What was injected into this call, for the call log.
    pub(super) fault: Option<String>,
}

/// The JSON body, `{}` when absent (close/ack may have none); `Err` is the 400/422 answer.
pub(super) fn body_object<'a>(ctx: &'a Ctx<'_>, empty: &'a Value) -> Result<&'a Value, Reply> {
    match ctx.body {
        None => Ok(empty),
        Some(Ok(v)) => Ok(v),
        Some(Err(_)) => Err(Reply::message(
            StatusCode::BAD_REQUEST,
            "Could not parse the request body as JSON",
        )),
    }
}
