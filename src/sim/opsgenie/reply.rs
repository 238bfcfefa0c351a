//! What a handler answers, before the common envelope is added.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::validate;
use super::write_faults::Garble;

const THROTTLED_MESSAGE: &str =
    "You are making too many requests! To avoid errors, we recommend you limit requests.";

/// What a handler answers, before the common headers and `took`/`requestId` are added.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) throttled: Option<u64>,
    /// A body sent as is, with its content type, instead of the JSON envelope (garbled
    /// answers).
    pub(super) raw: Option<(&'static str, &'static str)>,
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            throttled: None,
            raw: None,
        }
    }

    /// An answer the client cannot read.
    pub(super) fn garbled(garble: Garble) -> Reply {
        let (status, content_type, body) = garble.answer();
        Reply {
            raw: Some((content_type, body)),
            ..Reply::json(
                StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED),
                Value::Null,
            )
        }
    }

    pub(super) fn message(status: StatusCode, message: &str) -> Reply {
        Reply::json(status, json!({ "message": message }))
    }

    pub(super) fn unprocessable(errors: validate::FieldErrors) -> Reply {
        Reply::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "message": "Request body is not processable. Please check the errors.",
                "errors": errors,
            }),
        )
    }

    pub(super) fn throttled(period: u64) -> Reply {
        Reply {
            throttled: Some(period),
            ..Reply::message(StatusCode::TOO_MANY_REQUESTS, THROTTLED_MESSAGE)
        }
    }

    pub(super) fn accepted(result: &str) -> Reply {
        Reply::json(StatusCode::ACCEPTED, json!({ "result": result }))
    }
}
