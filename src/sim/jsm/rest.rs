//! The JSM Operations REST API (`/jsm/ops/api/{cloudId}/v1`): Basic auth with an account
//! e-mail and API token, the site's cloudId in the path, ids only in paths, bare objects,
//! `values`/`links` paging. Only the operations opsgenie-api.md §9.6 lists are served; any
//! other path is 404 and recorded as undocumented.

use std::time::SystemTime;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use serde_json::{json, Value};
use uuid::Uuid;

use super::calendar::{window, Unit};
use super::model::{Alert, AlertStatus, Period, Rotation, Schedule, State, Target};
use super::{rfc3339, Handled, Incoming, Inner, Reply};

/// Most alerts per page, and how deep listing may go (`offset + size`).
const ALERT_PAGE_MAX: usize = 100;
const ALERT_DEPTH_MAX: usize = 20_000;
/// Default and most schedules per page of a schedule search.
const SCHEDULE_PAGE_DEFAULT: usize = 25;
const SCHEDULE_PAGE_MAX: usize = 50;
/// Default and most notes per page.
const NOTE_PAGE_DEFAULT: usize = 20;
const NOTE_PAGE_MAX: usize = 100;

/// Whether `Authorization: Basic base64(email:token)` names an accepted account. GenieKeys are
/// not accepted here.
pub(crate) fn basic_ok(inner: &Inner, req: &Incoming<'_>) -> bool {
    let header = req
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(("basic" | "Basic" | "BASIC", encoded)) = header.split_once(' ') else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((email, token)) = decoded.split_once(':') else {
        return false;
    };
    inner
        .options
        .accounts
        .iter()
        .any(|(e, t)| e.eq_ignore_ascii_case(email) && t == token)
}

/// The 401 Atlassian's gateway answers.
pub(crate) fn unauthorized() -> Reply {
    Reply::json(
        StatusCode::UNAUTHORIZED,
        json!({"code": 401, "message": "Client must be authenticated to access this resource."}),
    )
}

/// Which documented operation a method and path (after `{cloudId}`) are.
fn operation(method: &Method, path: &[&str]) -> Option<&'static str> {
    if method != Method::GET {
        return None;
    }
    Some(match path {
        ["v1", "alerts", "requests", _] => "get_request_status",
        ["v1", "alerts", "alias"] => "get_alert_by_alias",
        ["v1", "alerts"] => "list_alerts",
        ["v1", "alerts", _] => "get_alert",
        ["v1", "alerts", _, "notes"] => "list_alert_notes",
        ["v1", "schedules"] => "list_schedules",
        ["v1", "schedules", _, "on-calls"] => "get_on_calls",
        ["v1", "schedules", _, "timeline"] => "get_timeline",
        ["v1", "teams", _, "heartbeats", "ping"] => "ping_heartbeat",
        _ => return None,
    })
}

/// Routes one call under `/jsm/ops/api`.
pub(crate) fn route(inner: &Inner, req: &Incoming<'_>) -> Handled {
    let auth_ok = basic_ok(inner, req);
    let path = req.path();
    let (cloud, rest) = match path.split_first() {
        Some((cloud, rest)) => (*cloud, rest),
        None => ("", &[][..]),
    };
    let Some(operation) = operation(req.method, rest) else {
        return Handled::undocumented(
            auth_ok,
            Reply::errors(StatusCode::NOT_FOUND, "No such operation in the REST API"),
        );
    };
    let reply = if !auth_ok {
        unauthorized()
    } else if cloud != inner.options.cloud_id {
        Reply::errors(StatusCode::NOT_FOUND, "No site exists with this cloudId")
    } else {
        let mut st = inner.state();
        answer(inner, &mut st, operation, rest, req).unwrap_or_else(|reply| reply)
    };
    Handled {
        operation: Some(operation),
        auth_ok,
        reply,
    }
}

fn bad_request(title: &str) -> Reply {
    Reply::errors(StatusCode::BAD_REQUEST, title)
}

/// A non-negative integer query parameter, `default` when absent.
fn number(req: &Incoming<'_>, name: &str, default: usize) -> Result<usize, Reply> {
    match req.param(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| bad_request(&format!("{name} must be a non-negative integer"))),
    }
}

/// `date`, RFC 3339; now when absent.
fn date(req: &Incoming<'_>) -> Result<SystemTime, Reply> {
    match req.param("date") {
        None => Ok(SystemTime::now()),
        Some(v) => humantime::parse_rfc3339_weak(v)
            .map_err(|_| bad_request("date must be an ISO 8601 date-time")),
    }
}

fn answer(
    inner: &Inner,
    st: &mut State,
    operation: &str,
    path: &[&str],
    req: &Incoming<'_>,
) -> Result<Reply, Reply> {
    let ok = |body| Ok(Reply::json(StatusCode::OK, body));
    match (operation, path) {
        ("get_request_status", [_, _, _, id]) => match st.outcomes.get(*id) {
            Some(o) => ok(json!({
                "action": o.action,
                "processedAt": rfc3339(o.processed_at),
                "integrationId": inner.integration_id,
                "isSuccess": o.is_success,
                "status": o.status,
                "alertId": o.alert_id,
                "alias": o.alias,
            })),
            // Also while the write waits to be processed: JSM knows no "not processed yet".
            None => Err(Reply::message(
                StatusCode::NOT_FOUND,
                "Request is not found",
            )),
        },
        ("get_alert_by_alias", _) => {
            let alias = req
                .param("alias")
                .ok_or_else(|| bad_request("alias is required"))?;
            match st.find(&Target::Alias(alias.to_owned())) {
                Some(i) => ok(alert_json(&st.alerts[i])),
                None => Err(Reply::message(
                    StatusCode::NOT_FOUND,
                    "Alert does not exist",
                )),
            }
        }
        ("get_alert", [_, _, id]) => match st.find(&Target::Id((*id).to_owned())) {
            Some(i) => ok(alert_json(&st.alerts[i])),
            None => Err(Reply::message(
                StatusCode::NOT_FOUND,
                "Alert does not exist",
            )),
        },
        ("list_alerts", _) => list_alerts(st, req),
        ("list_alert_notes", [_, _, id, _]) => {
            let i = st
                .find(&Target::Id((*id).to_owned()))
                .ok_or_else(|| Reply::message(StatusCode::NOT_FOUND, "Alert does not exist"))?;
            let size = number(req, "size", NOTE_PAGE_DEFAULT)?;
            if !(1..=NOTE_PAGE_MAX).contains(&size) {
                return Err(bad_request("size must be between 1 and 100"));
            }
            let notes = &st.alerts[i].notes;
            let start = match req.param("after") {
                None => 0,
                Some(after) => notes
                    .iter()
                    .position(|n| n.id == after)
                    .map(|p| p + 1)
                    .ok_or_else(|| bad_request("after is not a note of this alert"))?,
            };
            let page: Vec<_> = notes.iter().skip(start).take(size).collect();
            let mut links = json!({});
            if start + page.len() < notes.len() {
                if let Some(last) = page.last() {
                    links["next"] = json!(format!("/v1/alerts/{id}/notes?after={}", last.id));
                }
            }
            let values: Vec<Value> = page
                .iter()
                .map(|n| {
                    json!({"id": n.id, "createdAt": rfc3339(n.created_at),
                           "updatedAt": rfc3339(n.created_at), "note": n.note, "owner": n.owner})
                })
                .collect();
            ok(json!({"values": values, "links": links}))
        }
        ("list_schedules", _) => list_schedules(st, req),
        ("get_on_calls", [_, _, id, _]) => {
            let schedule = schedule(st, id)?;
            let flat = match req.param("flat") {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => return Err(bad_request("flat must be true or false")),
            };
            let users = schedule.on_call_at(date(req)?);
            if flat {
                ok(json!({"onCallUsers": users}))
            } else {
                let participants: Vec<Value> = users
                    .iter()
                    .map(|u| json!({"id": u, "type": "user"}))
                    .collect();
                ok(json!({"onCallParticipants": participants}))
            }
        }
        ("get_timeline", [_, _, id, _]) => timeline(schedule(st, id)?, req),
        ("ping_heartbeat", [_, _, team, _, _]) => {
            if !st.teams.iter().any(|t| t == team) {
                return Err(Reply::errors(StatusCode::NOT_FOUND, "Team not found"));
            }
            let name = req
                .param("name")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad_request("name is required"))?;
            st.pings.push(((*team).to_owned(), name.to_owned()));
            Ok(Reply::json(
                StatusCode::ACCEPTED,
                json!({"result": "PONG - Heartbeat received", "took": 0.01,
                       "requestId": Uuid::new_v4().to_string()}),
            ))
        }
        _ => Err(Reply::errors(StatusCode::NOT_FOUND, "Not Found")),
    }
}

/// A schedule by id; a name is not an id.
fn schedule<'a>(st: &'a State, id: &str) -> Result<&'a Schedule, Reply> {
    st.schedules.iter().find(|s| s.id == id).ok_or_else(|| {
        Reply::errors(
            StatusCode::NOT_FOUND,
            &format!("No schedule exists with id [{id}]"),
        )
    })
}

/// `AlertResponse`: ids only in responders, `extraProperties` for the details.
fn alert_json(a: &Alert) -> Value {
    let responders: Vec<Value> = a
        .responders
        .iter()
        .filter_map(|r| {
            let id = r.get("id")?.as_str()?;
            Some(json!({"id": id, "type": r.get("type")?}))
        })
        .collect();
    json!({
        "id": a.id,
        "tinyId": a.tiny_id,
        "alias": a.alias,
        "message": a.message,
        "description": a.description,
        "status": a.status.as_str(),
        "acknowledged": a.status == AlertStatus::Acked,
        "tags": a.tags,
        "extraProperties": a.details,
        "priority": a.priority,
        "source": a.source,
        "entity": a.entity,
        "responders": responders,
        "count": a.count,
        "createdAt": rfc3339(a.created_at),
        "updatedAt": rfc3339(a.created_at),
        "integrationType": "API",
        "integrationName": "API",
    })
}

/// One term of a listing query.
fn matches(term: &str, a: &Alert) -> Result<bool, Reply> {
    let (field, value) = term
        .split_once(':')
        .ok_or_else(|| bad_request(&format!("cannot read the query term {term:?}")))?;
    let value = value.trim().trim_matches('"');
    Ok(match field.trim() {
        "status" => a.status.as_str() == value,
        "tag" | "tags" => a.tags.iter().any(|t| t == value),
        "alias" => a.alias == value,
        other => return Err(bad_request(&format!("the fake cannot search on {other:?}"))),
    })
}

fn list_alerts(st: &State, req: &Incoming<'_>) -> Result<Reply, Reply> {
    let offset = number(req, "offset", 0)?;
    let size = number(req, "size", 20)?;
    if !(1..=ALERT_PAGE_MAX).contains(&size) {
        return Err(bad_request("size must be between 1 and 100"));
    }
    if offset + size > ALERT_DEPTH_MAX {
        return Err(bad_request("offset + size must not exceed 20000"));
    }
    let terms: Vec<&str> = req
        .param("query")
        .map(|q| q.split(" AND ").filter(|t| !t.trim().is_empty()).collect())
        .unwrap_or_default();
    let mut hits = Vec::new();
    for a in &st.alerts {
        let mut all = true;
        for term in &terms {
            all &= matches(term, a)?;
        }
        if all {
            hits.push(a);
        }
    }
    // Newest first, as the default `sort=createdAt&order=desc`.
    hits.reverse();
    let page: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(size)
        .map(|a| alert_json(a))
        .collect();
    let mut links = json!({});
    if offset + page.len() < hits.len() {
        let query = req.param("query").map(crate::backend::opsgenie::escape);
        let query = query.map(|q| format!("query={q}&")).unwrap_or_default();
        links["next"] = json!(format!(
            "/v1/alerts?{query}offset={}&size={size}",
            offset + size
        ));
    }
    Ok(Reply::json(
        StatusCode::OK,
        json!({"values": page, "count": hits.len(), "links": links}),
    ))
}

fn list_schedules(st: &State, req: &Incoming<'_>) -> Result<Reply, Reply> {
    let offset = number(req, "offset", 0)?;
    let size = number(req, "size", SCHEDULE_PAGE_DEFAULT)?;
    if !(1..=SCHEDULE_PAGE_MAX).contains(&size) {
        return Err(bad_request("size must be between 1 and 50"));
    }
    // Exact and case-insensitive; a trailing `*` searches by prefix.
    let query = req.param("query").map(str::to_lowercase);
    let hits: Vec<&Schedule> = st
        .schedules
        .iter()
        .filter(|s| {
            let name = s.name.to_lowercase();
            match query.as_deref() {
                None | Some("") => true,
                Some(q) => match q.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == q,
                },
            }
        })
        .collect();
    let values: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(size)
        .map(|s| {
            json!({"id": s.id, "name": s.name, "description": "", "timezone": "UTC",
                   "enabled": true, "teamId": s.team_id})
        })
        .collect();
    let mut links = json!({});
    if offset + values.len() < hits.len() {
        let query = req.param("query").map(crate::backend::opsgenie::escape);
        let query = query.map(|q| format!("query={q}&")).unwrap_or_default();
        links["next"] = json!(format!(
            "/v1/schedules?{query}offset={}&size={size}",
            offset + size
        ));
    }
    Ok(Reply::json(
        StatusCode::OK,
        json!({"values": values, "links": links, "_expands": ["rotation"]}),
    ))
}

fn timeline(schedule: &Schedule, req: &Incoming<'_>) -> Result<Reply, Reply> {
    let interval = number(req, "interval", 1)?;
    let interval = u32::try_from(interval)
        .ok()
        .filter(|i| *i >= 1)
        .ok_or_else(|| bad_request("interval must be a positive integer"))?;
    let unit = Unit::parse(req.param("intervalUnit").unwrap_or("weeks"))
        .ok_or_else(|| bad_request("intervalUnit must be days, weeks or months"))?;
    for expand in req.params("expand") {
        for e in expand.split(',') {
            if !matches!(e.trim(), "base" | "forwarding" | "override") {
                return Err(bad_request("expand must be base, forwarding or override"));
            }
        }
    }
    let (start, end) =
        window(date(req)?, unit, interval).ok_or_else(|| bad_request("date is out of range"))?;
    // A schedule whose timeline was never set answers its fixed on-call users for the whole
    // window, so the timeline and the on-call answer always agree (as they do on the real
    // service, where both come from the same rotations).
    let fixed;
    let timeline = if schedule.timeline.is_empty() {
        fixed = schedule
            .on_call
            .iter()
            .map(|account| Rotation {
                id: format!("{}-{account}", schedule.id),
                name: format!("{account}'s rotation"),
                periods: vec![Period {
                    start,
                    end,
                    kind: "base".into(),
                    responder_type: "user".into(),
                    responder_id: account.clone(),
                }],
            })
            .collect::<Vec<_>>();
        &fixed
    } else {
        &schedule.timeline
    };
    let rotations: Vec<Value> = timeline
        .iter()
        .enumerate()
        .map(|(order, r)| {
            let periods: Vec<Value> = r
                .periods
                .iter()
                .filter(|p| p.start < end && p.end > start)
                .map(|p| {
                    let mut responder = json!({"type": p.responder_type});
                    if !p.responder_id.is_empty() {
                        responder["id"] = json!(p.responder_id);
                    }
                    json!({"startDate": rfc3339(p.start.max(start)),
                           "endDate": rfc3339(p.end.min(end)),
                           "type": p.kind, "responder": responder})
                })
                .collect();
            json!({"id": r.id, "name": r.name, "order": order + 1, "deleted": false,
                   "periods": periods})
        })
        .collect();
    Ok(Reply::json(
        StatusCode::OK,
        json!({"startDate": rfc3339(start), "endDate": rfc3339(end),
               "finalTimeline": {"rotations": rotations},
               "_expands": ["base", "forwarding", "override"]}),
    ))
}
