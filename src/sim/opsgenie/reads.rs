//! Reads: request status, get alert, who is on call.

use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::ctx::Ctx;
use super::lock;
use super::params::id_kind;
use super::params::one_of;
use super::reply::Reply;

pub(super) fn request_status(ctx: &Ctx<'_>, id: &str) -> Reply {
    let mut st = lock(&ctx.inner.state);
    if st.process_due(Instant::now()) {
        ctx.inner.changed.notify_waiters();
    }
    match st.requests.get(id) {
        None => Reply::message(StatusCode::NOT_FOUND, "Request does not exist"),
        Some(None) => Reply {
            headers: vec![("x-opsgenie-errortype", "RequestNotProcessed".into())],
            ..Reply::message(StatusCode::NOT_FOUND, "Request not processed yet")
        },
        Some(Some(outcome)) => Reply::json(
            StatusCode::OK,
            json!({ "data": outcome.to_json(&ctx.inner.integration_id) }),
        ),
    }
}

pub(super) fn get_alert(ctx: &Ctx<'_>, ident: &str) -> Reply {
    let kind = match id_kind(ctx, "identifierType") {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut st = lock(&ctx.inner.state);
    if st.process_due(Instant::now()) {
        ctx.inner.changed.notify_waiters();
    }
    match st.resolve(ident, kind) {
        Some(i) => Reply::json(
            StatusCode::OK,
            json!({ "data": st.alerts[i].to_json(true, &ctx.inner.integration_id) }),
        ),
        None => Reply::message(StatusCode::NOT_FOUND, "Alert does not exist"),
    }
}

pub(super) fn on_calls(ctx: &Ctx<'_>, ident: &str) -> Reply {
    let by_name = match one_of(ctx, "scheduleIdentifierType", &["id", "name"], "id") {
        Ok(t) => t == "name",
        Err(r) => return r,
    };
    let flat = match one_of(ctx, "flat", &["true", "false"], "false") {
        Ok(f) => f == "true",
        Err(r) => return r,
    };
    let mut st = lock(&ctx.inner.state);
    let Some(i) = st.directory.schedule(ident, by_name) else {
        return Reply::message(
            StatusCode::NOT_FOUND,
            &format!("Schedule with identifier [{ident}] does not exist"),
        );
    };
    let schedule = st.directory.schedules[i].clone();
    let parent = json!({"id": schedule.id, "name": schedule.name, "enabled": true});
    let data = if flat {
        json!({"_parent": parent, "onCallRecipients": schedule.on_call})
    } else {
        let participants: Vec<Value> = schedule
            .on_call
            .iter()
            .map(|u| json!({"id": st.directory.user_id(u), "name": u, "type": "user"}))
            .collect();
        json!({"_parent": parent, "onCallParticipants": participants})
    };
    Reply::json(StatusCode::OK, json!({ "data": data }))
}
