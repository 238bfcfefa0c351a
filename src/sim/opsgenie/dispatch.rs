//! The single entry point of every call: reads the body, applies auth, faults and rate limits
//! uniformly, dispatches on the route, then adds the common envelope and records the call.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State as AxState};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

use super::auth::{authenticate, Auth};
use super::model::Call;
use super::reply::Reply;
use super::route::{route, Route};
use super::server::Inner;
use super::{lock, reads, writes, JSM_PREFIX, MAX_BODY};

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
}

/// The single entry point: every path goes through here so that auth, faults, rate limits,
/// headers and recording are applied uniformly, then dispatches on the parsed route.
pub(super) async fn handle(
    AxState(inner): AxState<Arc<Inner>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let received_at = SystemTime::now();
    let request_id = Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let api_path = match path.strip_prefix(JSM_PREFIX) {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => path.clone(),
    };
    let bytes = axum::body::to_bytes(body, MAX_BODY).await;
    let parsed: Option<Result<Value, serde_json::Error>> = match &bytes {
        Ok(b) if !b.is_empty() => Some(serde_json::from_slice(b)),
        _ => None,
    };
    if let Some(d) = inner.faults.latency_sample() {
        tokio::time::sleep(d).await;
    }
    let auth = authenticate(&inner, &parts.headers);
    let auth_ok = matches!(auth, Auth::Ok { .. });
    let mut reply = if bytes.is_err() {
        Reply::message(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
    } else {
        let ctx = Ctx {
            inner: &inner,
            route: route(&parts.method, &api_path),
            path: &path,
            api_path: &api_path,
            query: query.as_deref(),
            body: parsed.as_ref(),
            peer: peer.ip(),
            request_id: &request_id,
        };
        dispatch(&ctx, auth)
    };

    // Common envelope: `took` and `requestId` in the body, the standard headers.
    let took = started.elapsed().as_secs_f64();
    if let Some(o) = reply.body.as_object_mut() {
        o.insert("took".into(), json!((took * 1000.0).round() / 1000.0));
        o.entry("requestId").or_insert_with(|| json!(request_id));
    }
    let mut resp = Response::new(Body::from(reply.body.to_string()));
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    let mut set = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            h.insert(n, v);
        }
    };
    set("content-type", "application/json");
    set("x-request-id", &request_id);
    set("x-response-time", &format!("{took:.3}"));
    match reply.throttled {
        Some(period) => {
            set("x-ratelimit-state", "THROTTLED");
            set("x-ratelimit-reason", "ACCOUNT");
            set("x-ratelimit-period-in-sec", &period.to_string());
        }
        None => set("x-ratelimit-state", "OK"),
    }
    for (name, value) in &reply.headers {
        set(name, value);
    }
    if reply.throttled.is_some() {
        inner.throttled.fetch_add(1, Ordering::Relaxed);
    }

    let call = Call {
        method: parts.method.to_string(),
        path,
        api_path,
        query,
        auth_ok,
        body: parsed.and_then(Result::ok),
        status: reply.status.as_u16(),
        received_at,
        received_instant: started,
        request_id,
    };
    lock(&inner.state).calls.push(call);
    inner.changed.notify_waiters();
    resp
}

pub(super) fn dispatch(ctx: &Ctx<'_>, auth: Auth) -> Reply {
    let inner = ctx.inner;
    let config_only = match auth {
        Auth::Ok { config_only } => config_only,
        Auth::Malformed => {
            // The real service answers an empty requestId here.
            return Reply::json(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Key format is not valid!", "requestId": ""}),
            );
        }
        Auth::Missing | Auth::Unknown => {
            return Reply::message(StatusCode::UNAUTHORIZED, "Could not authenticate")
        }
    };
    if inner.faults.take_throttle() {
        return Reply::throttled(1);
    }
    let injected = inner.faults.roll_error();
    let after_effect = inner.faults.errors_after_effect.load(Ordering::Relaxed);
    if let (Some(code), false) = (injected, after_effect) {
        return Reply::message(code, "Internal server error (injected fault)");
    }
    if config_only && ctx.route.is_alert_write() {
        return Reply::json(
            StatusCode::FORBIDDEN,
            json!({
                "code": 40301,
                "message": "To perform this action, use an API key from an API integration.",
            }),
        );
    }
    let domain = ctx.route.domain();
    let is_create = ctx.route == Route::CreateAlert;
    if let Err(period) = lock(&inner.limiter).acquire(domain, is_create, Instant::now()) {
        return Reply::throttled(period);
    }
    let reply = handle_route(ctx);
    match injected {
        Some(code) => Reply::message(code, "Internal server error (injected fault)"),
        None => reply,
    }
}

pub(super) fn handle_route(ctx: &Ctx<'_>) -> Reply {
    match &ctx.route {
        Route::CreateAlert => writes::create_alert(ctx),
        Route::AddNote(id) => writes::alert_action(ctx, id, "notes"),
        Route::Close(id) => writes::alert_action(ctx, id, "close"),
        Route::Acknowledge(id) => writes::alert_action(ctx, id, "acknowledge"),
        Route::RequestStatus(id) => reads::request_status(ctx, id),
        Route::GetAlert(id) => reads::get_alert(ctx, id),
        Route::ListAlerts => reads::list_alerts(ctx, false),
        Route::CountAlerts => reads::list_alerts(ctx, true),
        Route::OnCalls(id) => reads::on_calls(ctx, id),
        Route::Heartbeat => Reply::accepted("PONG - Heartbeat received"),
        Route::MethodNotAllowed => {
            Reply::message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        }
        Route::NotFound => Reply::message(
            StatusCode::NOT_FOUND,
            &format!("No handler found for path {}", ctx.api_path),
        ),
    }
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
