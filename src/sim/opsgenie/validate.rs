//! Body validation with the limits of the Opsgenie alert API (opsgenie-api.md §2.1 and §4).
//!
//! The real service enforces these server-side and answers 422 with an `errors` map naming each
//! offending field; the fake does the same so that clients meet the failures in tests instead of
//! in production. The error texts are our own wording (the vendor's exact texts are unknown).
//! Lengths are UTF-16 code units (see `chars`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Field name → reason, sent back as the `errors` object of a 422.
pub(crate) type FieldErrors = BTreeMap<String, String>;

pub(crate) const MESSAGE_MAX: usize = 130;
pub(crate) const ALIAS_MAX: usize = 512;
pub(crate) const DESCRIPTION_MAX: usize = 15_000;
pub(crate) const RESPONDERS_MAX: usize = 50;
pub(crate) const VISIBLE_TO_MAX: usize = 50;
pub(crate) const ACTIONS_MAX: usize = 10;
pub(crate) const ACTION_LEN_MAX: usize = 50;
pub(crate) const TAGS_MAX: usize = 20;
pub(crate) const TAG_LEN_MAX: usize = 50;
pub(crate) const DETAILS_TOTAL_MAX: usize = 8_000;
pub(crate) const ENTITY_MAX: usize = 512;
pub(crate) const SOURCE_MAX: usize = 100;
pub(crate) const USER_MAX: usize = 100;
pub(crate) const NOTE_MAX: usize = 25_000;

/// One responder or visibility target, as sent by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    /// `team`, `user`, `escalation` or `schedule`.
    pub kind: String,
    /// Opsgenie id, if given.
    pub id: Option<String>,
    /// Name (team, escalation, schedule), if given.
    pub name: Option<String>,
    /// Username (users only), if given.
    pub username: Option<String>,
}

/// A create body that passed validation.
#[derive(Debug, Clone)]
pub(crate) struct CreatePayload {
    pub message: String,
    pub alias: Option<String>,
    pub description: Option<String>,
    pub responders: Vec<Responder>,
    pub visible_to: Vec<Responder>,
    pub actions: Vec<String>,
    pub tags: Vec<String>,
    pub details: BTreeMap<String, String>,
    pub entity: Option<String>,
    pub source: Option<String>,
    pub priority: String,
    pub user: Option<String>,
    pub note: Option<String>,
}

/// The `{note, user, source}` body shared by notes, close and acknowledge.
#[derive(Debug, Clone, Default)]
pub(crate) struct ActionPayload {
    pub note: Option<String>,
    pub user: Option<String>,
    pub source: Option<String>,
}

/// Length as Opsgenie counts it: it is a Java service, and Java strings are UTF-16, so a
/// character outside the Basic Multilingual Plane (most emoji) counts two.
fn chars(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Reads an optional string field, checking its type and length.
fn opt_string(
    obj: &Map<String, Value>,
    field: &str,
    max: usize,
    errors: &mut FieldErrors,
) -> Option<String> {
    match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            if chars(s) > max {
                errors.insert(
                    field.to_owned(),
                    format!("{field} can not be longer than {max} characters"),
                );
            }
            Some(s.clone())
        }
        Some(_) => {
            errors.insert(field.to_owned(), format!("{field} must be a string"));
            None
        }
    }
}

fn string_list(
    obj: &Map<String, Value>,
    field: &str,
    max_items: usize,
    max_len: usize,
    errors: &mut FieldErrors,
) -> Vec<String> {
    let items = match obj.get(field) {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            errors.insert(
                field.to_owned(),
                format!("{field} must be a list of strings"),
            );
            return Vec::new();
        }
    };
    if items.len() > max_items {
        errors.insert(
            field.to_owned(),
            format!("{field} can not have more than {max_items} items"),
        );
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if chars(s) <= max_len => out.push(s.clone()),
            Value::String(_) => {
                errors.insert(
                    field.to_owned(),
                    format!("each of {field} can not be longer than {max_len} characters"),
                );
            }
            _ => {
                errors.insert(
                    field.to_owned(),
                    format!("{field} must be a list of strings"),
                );
            }
        }
    }
    out
}

fn recipients(
    obj: &Map<String, Value>,
    field: &str,
    max_items: usize,
    allowed: &[&str],
    errors: &mut FieldErrors,
) -> Vec<Responder> {
    let items = match obj.get(field) {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            errors.insert(field.to_owned(), format!("{field} must be a list"));
            return Vec::new();
        }
    };
    if items.len() > max_items {
        errors.insert(
            field.to_owned(),
            format!("{field} can not have more than {max_items} items"),
        );
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(r) = item.as_object() else {
            errors.insert(field.to_owned(), format!("{field} items must be objects"));
            continue;
        };
        let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        let kind = text("type").unwrap_or_default();
        if !allowed.contains(&kind.as_str()) {
            errors.insert(
                format!("{field}#type"),
                format!("Invalid recipient type '{kind}'"),
            );
            continue;
        }
        let (id, name, username) = (text("id"), text("name"), text("username"));
        let identified = id.as_deref().is_some_and(|s| !s.is_empty())
            || (kind != "user" && name.as_deref().is_some_and(|s| !s.is_empty()))
            || (kind == "user" && username.as_deref().is_some_and(|s| !s.is_empty()));
        if !identified {
            errors.insert(
                format!("{field}#id"),
                format!(
                    "{kind} recipient needs an id or a {}",
                    if kind == "user" { "username" } else { "name" }
                ),
            );
            continue;
        }
        out.push(Responder {
            kind,
            id,
            name,
            username,
        });
    }
    out
}

fn details(obj: &Map<String, Value>, errors: &mut FieldErrors) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let map = match obj.get("details") {
        None | Some(Value::Null) => return out,
        Some(Value::Object(map)) => map,
        Some(_) => {
            errors.insert("details".into(), "details must be an object".into());
            return out;
        }
    };
    let mut total = 0usize;
    for (k, v) in map {
        match v {
            Value::String(s) => {
                total += chars(k) + chars(s);
                out.insert(k.clone(), s.clone());
            }
            _ => {
                errors.insert(
                    format!("details#{k}"),
                    "detail values must be strings".into(),
                );
            }
        }
    }
    if total > DETAILS_TOTAL_MAX {
        errors.insert(
            "details".into(),
            format!("details can not be longer than {DETAILS_TOTAL_MAX} characters in total"),
        );
    }
    out
}

fn as_object(body: &Value) -> Result<&Map<String, Value>, FieldErrors> {
    body.as_object().ok_or_else(|| {
        FieldErrors::from([("body".to_owned(), "body must be a JSON object".to_owned())])
    })
}

/// Validates a `POST /v2/alerts` body.
pub(crate) fn create(body: &Value) -> Result<CreatePayload, FieldErrors> {
    let obj = as_object(body)?;
    let mut errors = FieldErrors::new();
    let message = opt_string(obj, "message", MESSAGE_MAX, &mut errors);
    if message.as_deref().is_none_or(|m| m.trim().is_empty()) && !errors.contains_key("message") {
        errors.insert("message".into(), "Message can not be empty.".into());
    }
    // An empty alias behaves like no alias: the service assigns one.
    let alias = opt_string(obj, "alias", ALIAS_MAX, &mut errors).filter(|a| !a.is_empty());
    let description = opt_string(obj, "description", DESCRIPTION_MAX, &mut errors);
    let responders = recipients(
        obj,
        "responders",
        RESPONDERS_MAX,
        &["team", "user", "escalation", "schedule"],
        &mut errors,
    );
    let visible_to = recipients(
        obj,
        "visibleTo",
        VISIBLE_TO_MAX,
        &["team", "user"],
        &mut errors,
    );
    let actions = string_list(obj, "actions", ACTIONS_MAX, ACTION_LEN_MAX, &mut errors);
    let tags = string_list(obj, "tags", TAGS_MAX, TAG_LEN_MAX, &mut errors);
    let details = details(obj, &mut errors);
    let entity = opt_string(obj, "entity", ENTITY_MAX, &mut errors);
    let source = opt_string(obj, "source", SOURCE_MAX, &mut errors);
    let priority = opt_string(obj, "priority", 2, &mut errors).unwrap_or_else(|| "P3".into());
    if !matches!(priority.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") {
        errors.insert(
            "priority".into(),
            format!("Priority should be one of [P1, P2, P3, P4, P5], got '{priority}'"),
        );
    }
    let user = opt_string(obj, "user", USER_MAX, &mut errors);
    let note = opt_string(obj, "note", NOTE_MAX, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CreatePayload {
        message: message.unwrap_or_default(),
        alias,
        description,
        responders,
        visible_to,
        actions,
        tags,
        details,
        entity,
        source,
        priority,
        user,
        note,
    })
}

/// Validates a `{note, user, source}` body; `note_required` for `/notes`.
pub(crate) fn action(body: &Value, note_required: bool) -> Result<ActionPayload, FieldErrors> {
    let obj = as_object(body)?;
    let mut errors = FieldErrors::new();
    let note = opt_string(obj, "note", NOTE_MAX, &mut errors);
    if note_required
        && note.as_deref().is_none_or(|n| n.trim().is_empty())
        && !errors.contains_key("note")
    {
        errors.insert("note".into(), "Note can not be empty.".into());
    }
    let user = opt_string(obj, "user", USER_MAX, &mut errors);
    let source = opt_string(obj, "source", SOURCE_MAX, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ActionPayload { note, user, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_limits() {
        assert!(create(&json!({"message": "m"})).is_ok());
        let e = create(&json!({})).unwrap_err();
        assert!(e.contains_key("message"));
        let e = create(&json!({"message": "x".repeat(131)})).unwrap_err();
        assert!(e.contains_key("message"));
        assert!(create(&json!({"message": "é".repeat(130)})).is_ok());
        // Outside the BMP: two units each, as Java counts.
        assert!(create(&json!({"message": "\u{1F600}".repeat(65)})).is_ok());
        let e = create(&json!({"message": "\u{1F600}".repeat(66)})).unwrap_err();
        assert!(e.contains_key("message"));
        let e = create(
            &json!({"message": "m", "alias": "a".repeat(513), "priority": "P6",
            "tags": vec!["t"; 21], "details": {"k": 1}}),
        )
        .unwrap_err();
        for k in ["alias", "priority", "tags", "details#k"] {
            assert!(e.contains_key(k), "{k}: {e:?}");
        }
        let e = create(&json!({"message": "m", "details": {"k": "v".repeat(8000)}})).unwrap_err();
        assert!(e.contains_key("details"));
        let e = create(&json!({"message": "m", "responders": [{"type": "bb", "id": "1"}]}))
            .unwrap_err();
        assert!(e.contains_key("responders#type"));
        let e = create(&json!({"message": "m", "responders": [{"type": "user", "name": "x"}]}))
            .unwrap_err();
        assert!(e.contains_key("responders#id"));
        let ok = create(
            &json!({"message": "m", "responders": [{"type": "schedule", "name": "s"},
            {"type": "user", "username": "a@b"}]}),
        )
        .unwrap();
        assert_eq!(ok.responders.len(), 2);
        assert_eq!(ok.priority, "P3");
        let many: Vec<_> = (0..51)
            .map(|i| json!({"type": "team", "id": i.to_string()}))
            .collect();
        assert!(create(&json!({"message": "m", "responders": many})).is_err());
    }

    #[test]
    fn every_limit_is_counted_in_utf16_units() {
        // (field, limit): at the limit in emoji (two units each) passes, one unit more fails.
        let create_fields = [
            ("message", MESSAGE_MAX),
            ("alias", ALIAS_MAX),
            ("description", DESCRIPTION_MAX),
            ("entity", ENTITY_MAX),
            ("source", SOURCE_MAX),
            ("user", USER_MAX),
            ("note", NOTE_MAX),
        ];
        let at = |n: usize| "\u{1F600}".repeat(n / 2) + &"a".repeat(n % 2);
        for (field, max) in create_fields {
            let mut ok = json!({"message": "m"});
            ok[field] = json!(at(max));
            assert!(create(&ok).is_ok(), "{field} at {max} units");
            let mut over = json!({"message": "m"});
            over[field] = json!(at(max) + "a");
            let e = create(&over).unwrap_err();
            assert!(e.contains_key(field), "{field} over {max} units: {e:?}");
        }
        let tag_ok = json!({"message": "m", "tags": [at(TAG_LEN_MAX)]});
        assert!(create(&tag_ok).is_ok());
        let tag_over = json!({"message": "m", "tags": [at(TAG_LEN_MAX) + "a"]});
        assert!(create(&tag_over).unwrap_err().contains_key("tags"));
        for (field, max) in [
            ("note", NOTE_MAX),
            ("user", USER_MAX),
            ("source", SOURCE_MAX),
        ] {
            let mut over = json!({"note": "n"});
            over[field] = json!(at(max) + "a");
            assert!(
                action(&over, true).unwrap_err().contains_key(field),
                "{field}"
            );
        }
    }

    #[test]
    fn action_limits() {
        assert!(action(&json!({}), false).is_ok());
        assert!(action(&json!({}), true).is_err());
        assert!(action(&json!({"note": "n", "user": "u".repeat(101)}), true).is_err());
        assert!(action(&json!({"note": "n".repeat(25_001)}), false).is_err());
        assert!(action(&json!([]), false).is_err());
    }
}
