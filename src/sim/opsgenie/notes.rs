//! `GET /v2/alerts/{identifier}/notes`: an alert's notes as `AlertNote` (`note`, `owner`,
//! `createdAt`, `offset`) with `AlertPaging` (`first`, `next`), as the official definitions
//! describe them.
//!
//! Paging is by offset, not by position: `offset` is an opaque string carried by each note,
//! and `direction=next|prev` asks for the notes after or before it in the chosen `order`
//! (`desc`, newest first, by default). Here a note's offset is its 1-based position on the
//! alert, which keeps pages stable while notes are added.

use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::ctx::{query_param, Ctx};
use super::model::rfc3339;
use super::params::id_kind;
use super::params::{ascending, int_in, one_of};
use super::reply::Reply;
use super::{lock, validate};

pub(super) fn list_notes(ctx: &Ctx<'_>, ident: &str) -> Reply {
    let checked = (|| {
        Ok::<_, Reply>((
            id_kind(ctx, "identifierType")?,
            one_of(ctx, "direction", &["next", "prev"], "next")?,
            int_in(ctx, "limit", 1, 100, 20)?,
            ascending(ctx)?,
        ))
    })();
    let (kind, direction, limit, ascending) = match checked {
        Ok(v) => v,
        Err(r) => return r,
    };
    let offset = match query_param(ctx.query, "offset") {
        None => None,
        Some(o) => match o.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Reply::unprocessable(validate::FieldErrors::from([(
                    "offset".to_owned(),
                    format!("offset '{o}' is not one this alert's notes carry"),
                )]))
            }
        },
    };

    let mut st = lock(&ctx.inner.state);
    if st.process_due(Instant::now()) {
        ctx.inner.changed.notify_waiters();
    }
    let Some(i) = st.resolve(ident, kind) else {
        return Reply::message(StatusCode::NOT_FOUND, "Alert does not exist");
    };
    let alert = &st.alerts[i];
    // (offset, note) in the requested order.
    let mut ordered: Vec<(usize, &super::Note)> = alert
        .notes
        .iter()
        .enumerate()
        .map(|(i, n)| (i + 1, n))
        .collect();
    if !ascending {
        ordered.reverse();
    }
    // Position in `ordered` of the first note of the page.
    let (start, end) = match (offset, direction) {
        (None, _) => (0, limit.min(ordered.len())),
        (Some(o), "next") => {
            let after = ordered
                .iter()
                .position(|(n, _)| *n == o)
                .map_or(0, |p| p + 1);
            (after, (after + limit).min(ordered.len()))
        }
        (Some(o), _) => {
            let before = ordered
                .iter()
                .position(|(n, _)| *n == o)
                .unwrap_or(ordered.len());
            (before.saturating_sub(limit), before)
        }
    };
    let page = &ordered[start..end];
    let owner_default = "Fake API integration";
    let data: Vec<Value> = page
        .iter()
        .map(|(offset, n)| {
            json!({
                "note": n.text,
                "owner": n.user.as_deref().unwrap_or(owner_default),
                "createdAt": rfc3339(n.added_at),
                "offset": offset.to_string(),
            })
        })
        .collect();
    let more = end < ordered.len();
    let last_offset = page.last().map(|(o, _)| *o);
    drop(st);

    let base = format!("http://{}{}", ctx.inner.addr, ctx.path);
    let link = |offset: Option<usize>| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if let Some(t) = query_param(ctx.query, "identifierType") {
            s.append_pair("identifierType", &t);
        }
        if let Some(o) = offset {
            s.append_pair("offset", &o.to_string());
            s.append_pair("direction", "next");
        }
        s.append_pair("limit", &limit.to_string());
        s.append_pair("order", if ascending { "asc" } else { "desc" });
        format!("{base}?{}", s.finish())
    };
    let mut paging = serde_json::Map::new();
    paging.insert("first".into(), link(None).into());
    if let (true, Some(o)) = (more, last_offset) {
        paging.insert("next".into(), link(Some(o)).into());
    }
    Reply::json(StatusCode::OK, json!({ "data": data, "paging": paging }))
}
