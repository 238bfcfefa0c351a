//! The Integration Events API (`/jsm/ops/integration`): the four alert writes Atlassian
//! documents, with `GenieKey` auth, and nothing else.
//!
//! The bodies mirror Opsgenie v2 (`details`, not `extraProperties`), and the limits are those the
//! JSM definitions encode (message 130, alias 512, entity 512, source 100, description 15,000,
//! note 25,000, responders 50), counted in UTF-16 code units as a Java service counts them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use super::model::{Action, Alert, AlertStatus, Request, Target};
use super::{lock, Handled, Incoming, Inner, Reply};

/// Routes one call under the Integration Events prefix.
pub(crate) fn route(inner: &Inner, req: &Incoming<'_>) -> Handled {
    let auth = authenticate(inner, req);
    let auth_ok = auth.is_ok();
    let path = req.path();
    let operation = match (req.method, path.as_slice()) {
        (&Method::POST, ["v2", "alerts"]) => "create_alert",
        (&Method::POST, ["v2", "alerts", _, "close"]) => "close_alert",
        (&Method::POST, ["v2", "alerts", _, "notes"]) => "add_note",
        (&Method::POST, ["v2", "alerts", _, "acknowledge"]) => "acknowledge_alert",
        // Request status, listing, heartbeats...: not part of this API. Whatever answers them
        // on a real tenant does so by accident.
        _ => {
            return Handled::undocumented(
                auth_ok,
                Reply::message(
                    StatusCode::NOT_FOUND,
                    "No such operation in the Integration Events API",
                ),
            )
        }
    };
    let handled = |reply| Handled {
        operation: Some(operation),
        auth_ok,
        reply,
    };
    if let Err(reply) = auth {
        return handled(reply);
    }
    if req.body_len > 0 && !req.body_is_json {
        return handled(Reply::message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    let action = match path.as_slice() {
        ["v2", "alerts"] => create(&req.body),
        [_, _, identifier, verb] => action(verb, identifier, req),
        _ => Err(Reply::message(StatusCode::NOT_FOUND, "Not Found")),
    };
    let action = match action {
        Ok(action) => action,
        Err(reply) => return handled(reply),
    };
    let id = Uuid::new_v4().to_string();
    let ready_at = tokio::time::Instant::now() + *lock(&inner.processing_delay);
    lock(&inner.state).pending.push_back(Request {
        id: id.clone(),
        action,
        ready_at,
    });
    handled(Reply::json(
        StatusCode::ACCEPTED,
        json!({"result": "Request will be processed", "took": 0.01, "requestId": id}),
    ))
}

/// `Authorization: GenieKey <key>` with the key of an API integration. API tokens (Basic auth)
/// are not accepted here.
fn authenticate(inner: &Inner, req: &Incoming<'_>) -> Result<(), Reply> {
    let header = req
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let key = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("GenieKey"))
        .map(|(_, key)| key.trim());
    match key {
        Some(key) if Uuid::parse_str(key).is_err() => Err(Reply::message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Key format is not valid!",
        )),
        Some(key) if inner.options.genie_keys.iter().any(|k| k == key) => Ok(()),
        _ => Err(Reply::message(
            StatusCode::UNAUTHORIZED,
            "Could not authenticate",
        )),
    }
}

/// Length as a Java service counts it.
fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

/// 422 in Opsgenie's shape, naming the field.
fn unprocessable(field: &str, problem: &str) -> Reply {
    Reply::json(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({
            "message": "Request body is not processable. Please check the errors.",
            "errors": {field: problem},
            "took": 0.001,
            "requestId": Uuid::new_v4().to_string(),
        }),
    )
}

/// An optional string field of at most `max` units.
fn text(body: &Value, field: &str, max: usize) -> Result<String, Reply> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) if units(s) <= max => Ok(s.clone()),
        Some(Value::String(_)) => Err(unprocessable(
            field,
            &format!("{field} can be at most {max} characters"),
        )),
        Some(_) => Err(unprocessable(field, &format!("{field} must be a string"))),
    }
}

fn create(body: &Value) -> Result<Action, Reply> {
    if !body.is_object() {
        return Err(unprocessable("message", "Message can not be empty."));
    }
    let message = text(body, "message", 130)?;
    if message.trim().is_empty() {
        return Err(unprocessable("message", "Message can not be empty."));
    }
    let priority = match body.get("priority") {
        None | Some(Value::Null) => "P3".to_owned(),
        Some(Value::String(p)) if matches!(p.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") => {
            p.clone()
        }
        Some(_) => {
            return Err(unprocessable(
                "priority",
                "Priority should be one of P1..P5",
            ))
        }
    };
    let responders = match body.get("responders") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= 50 => {
            for r in list {
                let kind = r.get("type").and_then(Value::as_str).unwrap_or("");
                if !matches!(kind, "team" | "user" | "escalation" | "schedule") {
                    return Err(unprocessable("responders", "Responder type is not valid"));
                }
                if ["id", "name", "username"]
                    .iter()
                    .all(|k| r.get(*k).and_then(Value::as_str).is_none())
                {
                    return Err(unprocessable(
                        "responders",
                        "Responder should have an id, a name or a username",
                    ));
                }
            }
            list.clone()
        }
        Some(_) => return Err(unprocessable("responders", "at most 50 responders")),
    };
    let tags = match body.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| unprocessable("tags", "tags must be strings"))?,
        Some(_) => return Err(unprocessable("tags", "tags must be a list")),
    };
    let details: BTreeMap<String, String> = match body.get("details") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect::<Option<_>>()
            .ok_or_else(|| unprocessable("details", "details values must be strings"))?,
        Some(_) => return Err(unprocessable("details", "details must be an object")),
    };
    if details
        .iter()
        .map(|(k, v)| units(k) + units(v))
        .sum::<usize>()
        > 8000
    {
        return Err(unprocessable(
            "details",
            "details can be at most 8000 characters",
        ));
    }
    text(body, "note", 25_000)?;
    Ok(Action::Create(Box::new(Alert {
        id: String::new(),
        tiny_id: String::new(),
        alias: text(body, "alias", 512)?,
        message,
        description: text(body, "description", 15_000)?,
        status: AlertStatus::Open,
        tags,
        details,
        priority,
        source: text(body, "source", 100)?,
        entity: text(body, "entity", 512)?,
        responders,
        count: 0,
        notes: Vec::new(),
        created_at: SystemTime::now(),
    })))
}

/// Close, note or acknowledge the alert `identifier` names.
fn action(verb: &str, identifier: &str, req: &Incoming<'_>) -> Result<Action, Reply> {
    let target = match req.param("identifierType").unwrap_or("id") {
        "id" => Target::Id(identifier.to_owned()),
        "alias" => Target::Alias(identifier.to_owned()),
        "tiny" => Target::Tiny(identifier.to_owned()),
        other => {
            return Err(unprocessable(
                "identifierType",
                &format!("identifierType {other:?} is not one of id, alias, tiny"),
            ))
        }
    };
    let body = &req.body;
    if !(body.is_null() || body.is_object()) {
        return Err(unprocessable("note", "the body must be an object"));
    }
    text(body, "user", 100)?;
    text(body, "source", 100)?;
    let note = text(body, "note", 25_000)?;
    let note = (!note.is_empty()).then_some(note);
    Ok(match verb {
        "close" => Action::Close { target, note },
        "acknowledge" => Action::Acknowledge { target, note },
        _ => Action::AddNote {
            target,
            note: note.ok_or_else(|| unprocessable("note", "Note can not be empty."))?,
        },
    })
}
