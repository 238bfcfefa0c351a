//! One call to the fake JSM: read it (bounded), inject a fault if one is due, route it to the
//! API its path names, record it, answer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::faults::Fault;
use super::model::{Api, Call};
use super::{
    integration, rest, site, Handled, Incoming, Inner, Reply, INTEGRATION_PREFIX, MAX_BODY,
    REST_PREFIX,
};

/// Percent-decodes one path segment (`%2F` stays inside the segment, as servers treat it).
fn decode_segment(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) async fn handle(AxState(inner): AxState<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let received = Instant::now();
    let path = parts.uri.path().to_owned();
    let query_raw = parts.uri.query().map(str::to_owned);
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return respond(Reply::message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body is too large",
            ))
        }
    };
    let body_is_json = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let query = query_raw
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let mut incoming = Incoming {
        method: &parts.method,
        segments: Vec::new(),
        query,
        headers: &parts.headers,
        body: body.clone(),
        body_is_json,
        body_len: bytes.len(),
    };
    if let Some(delay) = inner.faults.delay() {
        tokio::time::sleep(delay).await;
    }
    // The cloudId lookup happens once per process and is not worth failing.
    let fault = if path == "/_edge/tenant_info" {
        Fault::None
    } else {
        inner.faults.draw(parts.method == axum::http::Method::POST)
    };
    let injected = match fault {
        Fault::Throttle => Some(Reply::json(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"message": "You are making too many requests!"}),
        )),
        Fault::Before(status) => Some(Reply::message(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "injected failure",
        )),
        Fault::None | Fault::After(_) => None,
    };
    if let Some(reply) = injected {
        record(
            &inner,
            &parts,
            path,
            query_raw,
            Api::Unknown,
            Some("injected_fault"),
            &body,
            &reply,
            received,
        );
        return respond(reply);
    }
    let split = |rest: &str| -> Vec<String> {
        rest.split('/')
            .filter(|s| !s.is_empty())
            .map(decode_segment)
            .collect()
    };
    let (api, handled) = if let Some(rest) = path.strip_prefix(INTEGRATION_PREFIX) {
        incoming.segments = split(rest);
        (
            Api::IntegrationEvents,
            integration::route(&inner, &incoming),
        )
    } else if let Some(rest) = path.strip_prefix(REST_PREFIX) {
        incoming.segments = split(rest);
        (Api::Rest, rest::route(&inner, &incoming))
    } else if path.starts_with("/rest/api/3/") || path.starts_with("/ex/jira/") {
        incoming.segments = split(&path);
        (Api::JiraUsers, site::users(&inner, &incoming))
    } else if path == "/_edge/tenant_info" {
        (Api::TenantInfo, site::tenant_info(&inner, &incoming))
    } else {
        (
            Api::Unknown,
            Handled::undocumented(false, Reply::message(StatusCode::NOT_FOUND, "Not Found")),
        )
    };
    let mut reply = handled.reply;
    if let Fault::After(status) = fault {
        // The write took effect; its answer is lost.
        reply = Reply::message(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "injected failure after the effect",
        );
    }
    let mut call = record_parts(
        &parts,
        path,
        query_raw,
        api,
        handled.operation,
        &body,
        &reply,
        received,
    );
    call.auth_ok = handled.auth_ok;
    push_call(&inner, call);
    respond(reply)
}

#[allow(clippy::too_many_arguments)]
fn record_parts(
    parts: &axum::http::request::Parts,
    path: String,
    query: Option<String>,
    api: Api,
    operation: Option<&'static str>,
    body: &Value,
    reply: &Reply,
    received: Instant,
) -> Call {
    Call {
        method: parts.method.to_string(),
        path,
        query,
        api,
        operation,
        auth_ok: true,
        body: (!body.is_null()).then(|| body.clone()),
        status: reply.status.as_u16(),
        received,
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    inner: &Inner,
    parts: &axum::http::request::Parts,
    path: String,
    query: Option<String>,
    api: Api,
    operation: Option<&'static str>,
    body: &Value,
    reply: &Reply,
    received: Instant,
) {
    let call = record_parts(parts, path, query, api, operation, body, reply, received);
    push_call(inner, call);
}

fn push_call(inner: &Inner, call: Call) {
    inner.state().calls.push(call);
    inner.changed.notify_waiters();
}

fn respond(reply: Reply) -> Response {
    let throttled = reply.status == StatusCode::TOO_MANY_REQUESTS;
    let mut response = Response::new(Body::from(reply.body.to_string()));
    *response.status_mut() = reply.status;
    if throttled {
        // Atlassian names the pause in `Retry-After` (seconds).
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
