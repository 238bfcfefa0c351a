//! The Jira Service Management Operations codec (Opsgenie's successor), over the Integration
//! Events API: base `https://api.atlassian.com/jsm/ops/integration`, `Authorization: GenieKey`
//! with the key of an API integration created in (or migrated to) JSM Operations.
//!
//! That API mirrors Opsgenie's v2 alert paths and shapes (`/v2/alerts`, `/notes`, `/close` with
//! `identifierType=alias`, `details`), so this codec delegates to [`OpsgenieCodec`]. What differs
//! (opsgenie-api.md §9):
//!
//! - Who-is-on-call is **not** part of the Integration Events API; it lives in the JSM Operations
//!   REST API (Basic auth with an Atlassian API token, a `cloudId`, schedule ids only, answers
//!   with Atlassian account ids rather than e-mails). Until that is supported, on-call lookups
//!   fail with a permanent [`BackendError::Unsupported`] that says so.
//! - The request-status path (`/v2/alerts/requests/{id}`) and the heartbeat ping under this base
//!   are unverified mirrors of Opsgenie's; the REST API's heartbeats are team-scoped.

pub mod rest;

use http::HeaderMap;

use super::opsgenie::OpsgenieCodec;
use super::{BackendError, Codec, HttpRequest, Operation, Outcome};

/// The message of the permanent error for on-call lookups on JSM.
pub const ON_CALL_UNSUPPORTED: &str = "on-call lookups need the JSM Operations REST API \
(Atlassian API token and cloudId), which teleport-opsgenie does not support yet; the \
Integration Events API used for alerts has no who-is-on-call endpoint. Disable auto-approval \
or use the opsgenie backend";

/// The message of the permanent error for schedule timelines on JSM (where they need the REST
/// API, like on-call lookups).
pub const TIMELINE_UNSUPPORTED: &str = "schedule timelines (when a requester's shift ends, for \
auto_approval.shift_end) need the JSM Operations REST API, which this backend does not call yet; \
set auto_approval.shift_end: ignore or use the opsgenie backend";

/// The codec for JSM Operations' Integration Events API.
#[derive(Debug, Clone)]
pub struct JsmCodec {
    inner: OpsgenieCodec,
}

impl JsmCodec {
    /// A codec that puts `source` on notes and closes (omitted when empty).
    pub fn new(source: &str) -> Self {
        Self {
            inner: OpsgenieCodec::new(source),
        }
    }
}

impl Codec for JsmCodec {
    fn product(&self) -> &'static str {
        "JSM Operations"
    }

    fn request(&self, op: &Operation) -> Result<HttpRequest, BackendError> {
        supported(op)?;
        self.inner.request(op)
    }

    fn response(
        &self,
        op: &Operation,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Outcome, BackendError> {
        supported(op)?;
        self.inner.response(op, status, headers, body)
    }
}

/// Whether this API can do `op`: everything but on-call lookups.
fn supported(op: &Operation) -> Result<(), BackendError> {
    match op {
        Operation::OnCall { .. } => Err(BackendError::Unsupported {
            endpoint: op.endpoint(),
            message: ON_CALL_UNSUPPORTED.into(),
        }),
        Operation::ScheduleTimeline { .. } => Err(BackendError::Unsupported {
            endpoint: op.endpoint(),
            message: TIMELINE_UNSUPPORTED.into(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_opsgenie_paths() {
        let req = JsmCodec::new("s")
            .request(&Operation::CloseAlert {
                alert: crate::backend::AlertRef::Alias("teleport-access-request/x".into()),
                note: "n".into(),
            })
            .unwrap();
        assert_eq!(
            req.path_and_query,
            "/v2/alerts/teleport-access-request%2Fx/close?identifierType=alias"
        );
    }

    #[test]
    fn timelines_are_a_clear_permanent_error_for_now() {
        let op = Operation::ScheduleTimeline {
            schedule: "sre".into(),
            date: std::time::UNIX_EPOCH,
        };
        let err = JsmCodec::new("s").request(&op).unwrap_err();
        assert!(
            matches!(
                err,
                BackendError::Unsupported {
                    endpoint: "schedule_timeline",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("shift_end"), "{err}");
    }

    #[test]
    fn on_call_is_a_clear_permanent_error() {
        let op = Operation::OnCall {
            schedule: "sre".into(),
        };
        let err = JsmCodec::new("s").request(&op).unwrap_err();
        assert!(err.to_string().starts_with("on-call lookups need"), "{err}");
        // An answer is not read as Opsgenie's either.
        let body = br#"{"data":{"onCallRecipients":["a@example.com"]}}"#;
        let err = JsmCodec::new("s")
            .response(&op, 200, &HeaderMap::new(), body)
            .unwrap_err();
        assert!(matches!(err, BackendError::Unsupported { .. }), "{err}");
    }
}
