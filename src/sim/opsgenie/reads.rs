//! Reads: request status, get and list alerts, count, who is on call.

use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::dispatch::{query_param, Ctx};
use super::model::Alert;
use super::reply::Reply;
use super::writes::id_kind;
use super::{lock, query, validate};

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

pub(super) fn list_alerts(ctx: &Ctx<'_>, count_only: bool) -> Reply {
    let q = |name| query_param(ctx.query, name);
    let terms = match query::parse(q("query").as_deref().unwrap_or("")) {
        Ok(t) => t,
        Err(e) => {
            return Reply::unprocessable(validate::FieldErrors::from([("query".to_owned(), e)]))
        }
    };
    let limit = q("limit").map_or(Ok(20), |l| l.parse::<usize>());
    let offset = q("offset").map_or(Ok(0), |o| o.parse::<usize>());
    let (Ok(limit), Ok(offset)) = (limit, offset) else {
        return Reply::unprocessable(validate::FieldErrors::from([(
            "limit".to_owned(),
            "limit and offset must be non-negative integers".to_owned(),
        )]));
    };
    if !(1..=100).contains(&limit) {
        return Reply::unprocessable(validate::FieldErrors::from([(
            "limit".to_owned(),
            "limit must be between 1 and 100".to_owned(),
        )]));
    }
    let ascending = q("order").is_some_and(|o| o.eq_ignore_ascii_case("asc"));
    let by_updated = q("sort").is_some_and(|s| s == "updatedAt");

    let mut st = lock(&ctx.inner.state);
    if st.process_due(Instant::now()) {
        ctx.inner.changed.notify_waiters();
    }
    let mut hits: Vec<&Alert> = st
        .alerts
        .iter()
        .filter(|a| query::matches(&terms, a))
        .collect();
    if count_only {
        return Reply::json(StatusCode::OK, json!({"data": {"count": hits.len()}}));
    }
    if by_updated {
        hits.sort_by_key(|a| a.updated_at);
    }
    // Alerts are stored in creation order; the default is newest first.
    if !ascending {
        hits.reverse();
    }
    let total = hits.len();
    let data: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(limit)
        .map(|a| a.to_json(false, &ctx.inner.integration_id))
        .collect();
    drop(st);

    let base = format!("http://{}{}", ctx.inner.addr, ctx.path);
    let page = |off: usize| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if let Some(qs) = q("query") {
            s.append_pair("query", &qs);
        }
        s.append_pair("offset", &off.to_string());
        s.append_pair("limit", &limit.to_string());
        s.append_pair("order", if ascending { "asc" } else { "desc" });
        format!("{base}?{}", s.finish())
    };
    let mut paging = serde_json::Map::new();
    paging.insert("first".into(), page(0).into());
    if offset + limit < total {
        paging.insert("next".into(), page(offset + limit).into());
    }
    if offset > 0 {
        paging.insert("prev".into(), page(offset.saturating_sub(limit)).into());
    }
    let last = if total == 0 {
        0
    } else {
        (total - 1) / limit * limit
    };
    paging.insert("last".into(), page(last).into());
    Reply::json(StatusCode::OK, json!({ "data": data, "paging": paging }))
}

pub(super) fn on_calls(ctx: &Ctx<'_>, ident: &str) -> Reply {
    let by_name = match query_param(ctx.query, "scheduleIdentifierType").as_deref() {
        None | Some("id") => false,
        Some("name") => true,
        Some(_) => {
            return Reply::unprocessable(validate::FieldErrors::from([(
                "scheduleIdentifierType".to_owned(),
                "scheduleIdentifierType should be one of [id, name]".to_owned(),
            )]))
        }
    };
    let flat = query_param(ctx.query, "flat").is_some_and(|f| f.eq_ignore_ascii_case("true"));
    let mut st = lock(&ctx.inner.state);
    let Some(i) = st.schedule(ident, by_name) else {
        return Reply::message(
            StatusCode::NOT_FOUND,
            &format!("Schedule with identifier [{ident}] does not exist"),
        );
    };
    let schedule = st.schedules[i].clone();
    let parent = json!({"id": schedule.id, "name": schedule.name, "enabled": true});
    let data = if flat {
        json!({"_parent": parent, "onCallRecipients": schedule.on_call})
    } else {
        let participants: Vec<Value> = schedule
            .on_call
            .iter()
            .map(|u| json!({"id": st.user_id(u), "name": u, "type": "user"}))
            .collect();
        json!({"_parent": parent, "onCallParticipants": participants})
    };
    Reply::json(StatusCode::OK, json!({ "data": data }))
}
