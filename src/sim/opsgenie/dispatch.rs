//! The single entry point of every call: reads the body, applies auth, faults and rate limits
//! uniformly, dispatches on the route, then adds the common envelope and records the call.

use std::net::SocketAddr;
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
use super::ctx::Ctx;
use super::inner::Inner;
use super::model::Call;
use super::reply::Reply;
use super::route::{route, Route};
use super::write_faults::WriteFault;
use super::{lock, notes, reads, search, timeline, writes, JSM_PREFIX, MAX_BODY};

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
    let content_type = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let raw_body = match &bytes {
        Ok(b) => String::from_utf8_lossy(b).into_owned(),
        Err(_) => String::new(),
    };
    let mut fault = None;
    let mut reply = if bytes.is_err() {
        Reply::message(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
    } else {
        let mut ctx = Ctx {
            inner: &inner,
            route: route(&parts.method, &api_path),
            path: &path,
            api_path: &api_path,
            query: query.as_deref(),
            body: parsed.as_ref(),
            peer: peer.ip(),
            request_id: &request_id,
            content_type: content_type.as_deref(),
            has_body: !raw_body.is_empty(),
            fail_with: None,
            discard: false,
            fault: None,
        };
        let reply = dispatch(&mut ctx, auth);
        fault = ctx.fault;
        reply
    };

    // Common envelope: `took` and `requestId` in the body, the standard headers.
    let took = started.elapsed().as_secs_f64();
    if let Some(o) = reply.body.as_object_mut() {
        o.insert("took".into(), json!((took * 1000.0).round() / 1000.0));
        o.entry("requestId").or_insert_with(|| json!(request_id));
    }
    let (content_type_out, response_body) = match reply.raw {
        Some((ct, body)) => (ct, body.to_owned()),
        None => ("application/json", reply.body.to_string()),
    };
    let mut resp = Response::new(Body::from(response_body.clone()));
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    let mut set = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            h.insert(n, v);
        }
    };
    set("content-type", content_type_out);
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
        content_type,
        raw_body,
        status: reply.status.as_u16(),
        response_body,
        fault,
        received_at,
        received_instant: started,
        request_id,
    };
    lock(&inner.state).calls.push(call);
    inner.changed.notify_waiters();
    // Done and recorded, answered late: a client that gives up first never learns the outcome.
    if let Some(d) = inner.faults.answer_delay() {
        tokio::time::sleep(d).await;
    }
    resp
}

pub(super) fn dispatch(ctx: &mut Ctx<'_>, auth: Auth) -> Reply {
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
    if let Some(status) = inner.faults.refused_alert_writes() {
        if ctx.route.is_alert_write() {
            ctx.fault = Some(format!("every alert write answered {}", status.as_u16()));
            return if status == StatusCode::TOO_MANY_REQUESTS {
                Reply::throttled(1)
            } else {
                Reply::message(status, "Internal server error (injected fault)")
            };
        }
    }
    let injected = inner.faults.roll_error();
    let after_effect = inner.faults.errors_after_effect.load(Ordering::Relaxed);
    if let (Some(code), false) = (injected, after_effect) {
        ctx.fault = Some(format!("{} instead of the call", code.as_u16()));
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
    if ctx.route.takes_body() && ctx.has_body && !is_json(ctx.content_type) {
        return Reply::message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "Content type '{}' is not supported; send application/json",
                ctx.content_type.unwrap_or("")
            ),
        );
    }
    let taken = ctx
        .route
        .write()
        .and_then(|w| inner.faults.take_write_fault(w));
    match taken.as_ref().map(|t| &t.fault) {
        Some(WriteFault::FailAfterAccept(status)) => ctx.fail_with = Some(status.clone()),
        Some(WriteFault::Garble { applied: false, .. }) => ctx.discard = true,
        _ => {}
    }
    let mut reply = handle_route(ctx);
    if let Some(taken) = taken {
        if reply.status.is_success() {
            ctx.fault = Some(taken.fault.describe());
            if let WriteFault::Garble { garble, .. } = taken.fault {
                reply = Reply::garbled(garble);
            }
        } else {
            inner.faults.give_back(taken);
        }
    }
    match injected {
        Some(code) => {
            ctx.fault = Some(format!("{} after the call took effect", code.as_u16()));
            Reply::message(code, "Internal server error (injected fault)")
        }
        None => reply,
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

pub(super) fn handle_route(ctx: &Ctx<'_>) -> Reply {
    match &ctx.route {
        Route::CreateAlert => writes::create_alert(ctx),
        Route::AddNote(id) => writes::alert_action(ctx, id, "notes"),
        Route::ListNotes(id) => notes::list_notes(ctx, id),
        Route::Close(id) => writes::alert_action(ctx, id, "close"),
        Route::Acknowledge(id) => writes::alert_action(ctx, id, "acknowledge"),
        Route::RequestStatus(id) => reads::request_status(ctx, id),
        Route::GetAlert(id) => reads::get_alert(ctx, id),
        Route::ListAlerts => search::list_alerts(ctx, false),
        Route::CountAlerts => search::list_alerts(ctx, true),
        Route::OnCalls(id) => reads::on_calls(ctx, id),
        Route::Timeline(id) => timeline::timeline(ctx, id),
        Route::Heartbeat => Reply::accepted("PONG - Heartbeat received"),
        Route::GetHeartbeat(name) => ctx.inner.heartbeats.get(name),
        Route::MethodNotAllowed => {
            Reply::message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        }
        Route::NotFound => Reply::message(
            StatusCode::NOT_FOUND,
            &format!("No handler found for path {}", ctx.api_path),
        ),
    }
}
