//! `GET /v2/alerts` and `GET /v2/alerts/count`: the query language of [`super::query`], the
//! `sort` and `order` of the official definitions, and `offset`/`limit` paging with the
//! `paging` links `{first, next, prev, last}` (`PageDetails`).

use std::cmp::Ordering;

use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::ctx::{query_param, Ctx};
use super::model::{epoch_ms, Alert};
use super::params::{ascending, int_in, one_of};
use super::reply::Reply;
use super::{lock, query, validate};

/// The `sort` values the official definitions list, in their order.
const SORT_FIELDS: [&str; 20] = [
    "createdAt",
    "updatedAt",
    "tinyId",
    "alias",
    "message",
    "status",
    "acknowledged",
    "isSeen",
    "snoozed",
    "snoozedUntil",
    "count",
    "lastOccurredAt",
    "source",
    "owner",
    "integration.name",
    "integration.type",
    "report.ackTime",
    "report.closeTime",
    "report.acknowledgedBy",
    "report.closedBy",
];

/// Compares two alerts by a `sort` field. Fields the fake holds one value for (`isSeen`,
/// `snoozed`, `snoozedUntil`, `integration.*`) compare equal, so creation order decides.
fn compare(field: &str, a: &Alert, b: &Alert) -> Ordering {
    let ms = |t: Option<std::time::SystemTime>| t.map(epoch_ms);
    match field {
        "updatedAt" => a.updated_at.cmp(&b.updated_at),
        "tinyId" => {
            let n = |x: &Alert| x.tiny_id.parse::<u64>().unwrap_or(0);
            n(a).cmp(&n(b))
        }
        "alias" => a.alias.cmp(&b.alias),
        "message" => a.message.cmp(&b.message),
        "status" => a.status.as_str().cmp(b.status.as_str()),
        "acknowledged" => a.acknowledged.cmp(&b.acknowledged),
        "count" => a.count.cmp(&b.count),
        "lastOccurredAt" => a.last_occurred_at.cmp(&b.last_occurred_at),
        "source" => a.source.cmp(&b.source),
        "owner" => a.user.cmp(&b.user),
        "report.ackTime" => ms(a.acknowledged_at).cmp(&ms(b.acknowledged_at)),
        "report.closeTime" => ms(a.closed_at).cmp(&ms(b.closed_at)),
        "report.acknowledgedBy" => a.acknowledged_by.cmp(&b.acknowledged_by),
        "report.closedBy" => a.closed_by.cmp(&b.closed_by),
        // createdAt, and the fields above that never differ: creation order (the stored order).
        _ => Ordering::Equal,
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
    // Saved searches are not modelled, but their identifier type is still an enum.
    if let Err(r) = one_of(ctx, "searchIdentifierType", &["id", "name"], "id") {
        return r;
    }
    // Count takes only the query (and saved search); the paging and sorting parameters are
    // not its own, so they are not checked.
    let checked = (|| {
        if count_only {
            return Ok((0, 1, "createdAt", false));
        }
        Ok::<_, Reply>((
            int_in(ctx, "offset", 0, usize::MAX, 0)?,
            int_in(ctx, "limit", 1, 100, 20)?,
            one_of(ctx, "sort", &SORT_FIELDS, "createdAt")?,
            ascending(ctx)?,
        ))
    })();
    let (offset, limit, sort, ascending) = match checked {
        Ok(v) => v,
        Err(r) => return r,
    };

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
    // Stable sort over creation order: ties keep it.
    hits.sort_by(|a, b| compare(sort, a, b));
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
        s.append_pair("sort", sort);
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
