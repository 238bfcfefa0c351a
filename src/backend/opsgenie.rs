//! The Opsgenie REST API v2 codec: which path, query and JSON body each [`Operation`] becomes, and
//! how the answers read. No I/O here; `actors::gateway` sends the requests.
//!
//! Alerts are addressed by id once it is known (`identifierType=id`), by alias before that
//! (`identifierType=alias`). Aliases contain `/` (`teleport-access-request/<id>`), so every path
//! segment is percent-encoded, `/` as `%2F`.

use http::{HeaderMap, Method};
use serde::Deserialize;
use serde_json::json;

use super::{AlertRef, BackendError, Codec, HttpRequest, Operation, Outcome, Processed};

/// Alerts per page of the orphan-sweep listing (Opsgenie's maximum).
pub const LIST_PAGE_SIZE: u32 = 100;

/// Notes per page when reading an alert's notes (Opsgenie's maximum).
pub const NOTES_PAGE_SIZE: u32 = 100;

/// The header Opsgenie sets on a 404 for a request that is still queued.
pub const ERROR_TYPE_HEADER: &str = "x-opsgenie-errortype";

/// The codec for Opsgenie's v2 API (`api.opsgenie.com`, `api.eu.opsgenie.com`).
#[derive(Debug, Clone)]
pub struct OpsgenieCodec {
    source: String,
}

impl OpsgenieCodec {
    /// A codec that puts `source` on notes and closes (omitted when empty).
    pub fn new(source: &str) -> Self {
        Self {
            source: source.to_owned(),
        }
    }

    /// The body of a note or a close: `{note, source}`, empty fields left out.
    fn action_body(&self, note: &str) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        if !note.is_empty() {
            body.insert("note".into(), json!(note));
        }
        if !self.source.is_empty() {
            body.insert("source".into(), json!(self.source));
        }
        serde_json::Value::Object(body)
    }
}

impl Codec for OpsgenieCodec {
    fn product(&self) -> &'static str {
        "Opsgenie"
    }

    fn request(&self, op: &Operation) -> Result<HttpRequest, BackendError> {
        let (method, path_and_query, body) = match op {
            Operation::CreateAlert(payload) => {
                let body = serde_json::to_value(payload).map_err(|e| BackendError::Decode {
                    endpoint: op.endpoint(),
                    message: e.to_string(),
                })?;
                (Method::POST, "/v2/alerts".to_owned(), Some(body))
            }
            Operation::AddNote { alert, note } => (
                Method::POST,
                alert_path(alert, "/notes"),
                Some(self.action_body(note)),
            ),
            Operation::CloseAlert { alert, note } => (
                Method::POST,
                alert_path(alert, "/close"),
                Some(self.action_body(note)),
            ),
            Operation::GetAlert { alert } => (Method::GET, alert_path(alert, ""), None),
            Operation::ListNotes { alert_id, offset } => {
                let mut path = format!(
                    "/v2/alerts/{}/notes?identifierType=id&order=desc&direction=next&limit={NOTES_PAGE_SIZE}",
                    escape(alert_id)
                );
                if let Some(offset) = offset {
                    path.push_str(&format!("&offset={}", escape(offset)));
                }
                (Method::GET, path, None)
            }
            Operation::RequestStatus { request_id } => (
                Method::GET,
                format!("/v2/alerts/requests/{}", escape(request_id)),
                None,
            ),
            Operation::OnCall { schedule } => {
                // Opsgenie's parameter is `scheduleIdentifierType`, not `identifierType`.
                let kind = schedule_identifier_type(schedule);
                (
                    Method::GET,
                    format!(
                        "/v2/schedules/{}/on-calls?scheduleIdentifierType={kind}&flat=true",
                        escape(schedule)
                    ),
                    None,
                )
            }
            Operation::ScheduleTimeline { schedule, date } => (
                Method::GET,
                format!(
                    "/v2/schedules/{}/timeline?identifierType={}&interval={TIMELINE_WEEKS}&intervalUnit=weeks&date={}",
                    escape(schedule),
                    schedule_identifier_type(schedule),
                    escape(&humantime::format_rfc3339_seconds(*date).to_string())
                ),
                None,
            ),
            Operation::Heartbeat { name } => (
                Method::GET,
                format!("/v2/heartbeats/{}/ping", escape(name)),
                None,
            ),
            Operation::GetHeartbeat { name } => (
                Method::GET,
                format!("/v2/heartbeats/{}", escape(name)),
                None,
            ),
            Operation::FindSchedule { .. } | Operation::GetUser { .. } | Operation::TenantInfo => {
                return Err(BackendError::Unsupported {
                    endpoint: op.endpoint(),
                    message:
                        "Opsgenie takes schedule names and e-mails as they are; this call is JSM's"
                            .into(),
                })
            }
            Operation::ListOpenAlerts { tag, offset } => {
                let query = format!("status:open AND tag:\"{}\"", tag.replace('"', "\\\""));
                (
                    Method::GET,
                    format!(
                        "/v2/alerts?query={}&limit={LIST_PAGE_SIZE}&offset={offset}",
                        escape(&query)
                    ),
                    None,
                )
            }
        };
        Ok(HttpRequest {
            api: super::Api::Primary,
            method,
            path_and_query,
            body,
        })
    }

    fn response(
        &self,
        op: &Operation,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Outcome, BackendError> {
        let decode = |e: serde_json::Error| BackendError::Decode {
            endpoint: op.endpoint(),
            message: e.to_string(),
        };
        match op {
            Operation::RequestStatus { request_id } => {
                if status == 404 {
                    let queued = headers
                        .get(ERROR_TYPE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.trim().eq_ignore_ascii_case("RequestNotProcessed"));
                    return if queued {
                        Ok(Outcome::NotProcessed)
                    } else {
                        Err(BackendError::UnknownRequest {
                            request_id: request_id.clone(),
                        })
                    };
                }
                if status != 200 {
                    return Err(BackendError::Status { status });
                }
                let answer: Envelope<RequestStatusData> =
                    serde_json::from_slice(body).map_err(decode)?;
                let data = answer.data;
                Ok(Outcome::Processed(Processed {
                    // `isSuccess` is authoritative; older answers only carry `success`.
                    success: data.is_success.or(data.success).unwrap_or(false),
                    alert_id: data.alert_id,
                    status: data.status,
                }))
            }
            // A 404 here is an answer: there is no such alert.
            Operation::GetAlert { .. } | Operation::ListNotes { .. } if status == 404 => {
                Ok(Outcome::NoSuchAlert)
            }
            _ if !(200..300).contains(&status) => Err(BackendError::Status { status }),
            Operation::CreateAlert(_)
            | Operation::AddNote { .. }
            | Operation::CloseAlert { .. } => {
                let answer: Accepted = serde_json::from_slice(body).map_err(decode)?;
                match answer.request_id {
                    Some(request_id) if !request_id.is_empty() => {
                        Ok(Outcome::Accepted { request_id })
                    }
                    // Without its request id nothing can confirm the write: it is not taken for
                    // done (the gateway reports it as an unknown outcome, the step verifies).
                    _ => Err(BackendError::Decode {
                        endpoint: op.endpoint(),
                        message: "the answer carries no requestId".into(),
                    }),
                }
            }
            Operation::OnCall { .. } => {
                let answer: Envelope<OnCallData> = serde_json::from_slice(body).map_err(decode)?;
                Ok(Outcome::OnCall(answer.data.on_call_recipients))
            }
            Operation::ScheduleTimeline { .. } => super::timeline::decode_opsgenie(body)
                .map(Outcome::Timeline)
                .map_err(|e| BackendError::Decode {
                    endpoint: op.endpoint(),
                    message: e.to_string(),
                }),
            Operation::Heartbeat { .. } | Operation::GetHeartbeat { .. } => Ok(Outcome::Done),
            Operation::FindSchedule { .. } | Operation::GetUser { .. } | Operation::TenantInfo => {
                Err(BackendError::Unsupported {
                    endpoint: op.endpoint(),
                    message: "not an Opsgenie call".into(),
                })
            }
            Operation::GetAlert { .. } => {
                let answer: Envelope<AlertData> = serde_json::from_slice(body).map_err(decode)?;
                if answer.data.id.is_empty() {
                    return Err(BackendError::Decode {
                        endpoint: op.endpoint(),
                        message: "the alert has no id".into(),
                    });
                }
                Ok(Outcome::Alert {
                    open: !answer.data.status.eq_ignore_ascii_case("closed"),
                    id: answer.data.id,
                })
            }
            Operation::ListNotes { .. } => {
                let answer: NoteList = serde_json::from_slice(body).map_err(decode)?;
                let more = answer.paging.as_ref().is_some_and(|p| p.next.is_some())
                    && answer.data.len() >= NOTES_PAGE_SIZE as usize;
                let next = answer
                    .data
                    .last()
                    .map(|n| n.offset.clone())
                    .filter(|o| more && !o.is_empty());
                Ok(Outcome::Notes {
                    texts: answer.data.into_iter().map(|n| n.note).collect(),
                    next,
                })
            }
            Operation::ListOpenAlerts { .. } => {
                let answer: AlertList = serde_json::from_slice(body).map_err(decode)?;
                let full_page = answer.data.len() >= LIST_PAGE_SIZE as usize;
                let more = match &answer.paging {
                    Some(paging) => paging.next.is_some(),
                    None => full_page,
                };
                Ok(Outcome::Alerts {
                    alerts: answer
                        .data
                        .into_iter()
                        .map(|alert| (alert.alias, alert.id))
                        .collect(),
                    more,
                })
            }
        }
    }
}

/// How many weeks one timeline window spans: long enough that a shift rarely crosses into a
/// second window (Teleport's longest access is a week or so), short enough to stay a small
/// answer (a week of hourly rotations is a few hundred periods).
pub const TIMELINE_WEEKS: u32 = 1;

/// `id` for a schedule given as a UUID, else `name`.
fn schedule_identifier_type(schedule: &str) -> &'static str {
    if uuid::Uuid::parse_str(schedule).is_ok() {
        "id"
    } else {
        "name"
    }
}

/// `/v2/alerts/<identifier><suffix>?identifierType=<id|alias>`.
fn alert_path(alert: &AlertRef, suffix: &str) -> String {
    let (ident, kind) = alert.parts();
    format!("/v2/alerts/{}{suffix}?identifierType={kind}", escape(ident))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a value is safe as one
/// path segment or one query value (`/` becomes `%2F`, space `%20`).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `{data: T, ...}`, Opsgenie's usual envelope.
#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

/// A 202 answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestStatusData {
    #[serde(default)]
    is_success: Option<bool>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    status: String,
    #[serde(default)]
    alert_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnCallData {
    #[serde(default)]
    on_call_recipients: Vec<String>,
}

#[derive(Deserialize)]
struct AlertList {
    #[serde(default)]
    data: Vec<ListedAlert>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct AlertData {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct NoteList {
    #[serde(default)]
    data: Vec<ListedNote>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct ListedNote {
    #[serde(default)]
    note: String,
    #[serde(default)]
    offset: String,
}

#[derive(Deserialize)]
struct ListedAlert {
    id: String,
    #[serde(default)]
    alias: String,
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::AlertPayload;

    fn codec() -> OpsgenieCodec {
        OpsgenieCodec::new("teleport-opsgenie")
    }

    fn payload() -> AlertPayload {
        AlertPayload {
            message: "Access request from alice".into(),
            alias: "teleport-access-request/abc".into(),
            description: "d".into(),
            responders: vec![],
            tags: vec!["teleport-access-request".into()],
            details: Default::default(),
            entity: String::new(),
            source: "teleport-opsgenie".into(),
            priority: "P3".into(),
        }
    }

    #[test]
    fn create_posts_the_payload() {
        let req = codec().request(&Operation::CreateAlert(payload())).unwrap();
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.path_and_query, "/v2/alerts");
        assert_eq!(
            req.body.unwrap(),
            json!({"message": "Access request from alice", "alias": "teleport-access-request/abc",
                   "description": "d", "tags": ["teleport-access-request"],
                   "source": "teleport-opsgenie", "priority": "P3"})
        );
    }

    #[test]
    fn note_and_close_escape_the_alias() {
        let note = codec()
            .request(&Operation::AddNote {
                alert: AlertRef::Alias("teleport-access-request/a b".into()),
                note: "approved".into(),
            })
            .unwrap();
        assert_eq!(
            note.path_and_query,
            "/v2/alerts/teleport-access-request%2Fa%20b/notes?identifierType=alias"
        );
        assert_eq!(
            note.body.unwrap(),
            json!({"note": "approved", "source": "teleport-opsgenie"})
        );
        let close = OpsgenieCodec::new("")
            .request(&Operation::CloseAlert {
                alert: AlertRef::Id("a-1".into()),
                note: "resolved".into(),
            })
            .unwrap();
        assert_eq!(
            close.path_and_query,
            "/v2/alerts/a-1/close?identifierType=id"
        );
        assert_eq!(close.body.unwrap(), json!({"note": "resolved"}));
    }

    #[test]
    fn alerts_and_their_notes_are_read_by_id() {
        let get = codec()
            .request(&Operation::GetAlert {
                alert: AlertRef::Id("a-1".into()),
            })
            .unwrap();
        assert_eq!(get.method, Method::GET);
        assert_eq!(get.path_and_query, "/v2/alerts/a-1?identifierType=id");
        let op = Operation::GetAlert {
            alert: AlertRef::Alias("teleport-access-request/x".into()),
        };
        let body = br#"{"data":{"id":"a-1","status":"closed","alias":"teleport-access-request/x"},"took":0.01,"requestId":"r"}"#;
        assert_eq!(
            codec().response(&op, 200, &HeaderMap::new(), body).unwrap(),
            Outcome::Alert {
                id: "a-1".into(),
                open: false
            }
        );
        let missing = br#"{"message":"Alert does not exist","took":0.0,"requestId":"r"}"#;
        assert_eq!(
            codec()
                .response(&op, 404, &HeaderMap::new(), missing)
                .unwrap(),
            Outcome::NoSuchAlert
        );

        let first = Operation::ListNotes {
            alert_id: "a-1".into(),
            offset: None,
        };
        assert_eq!(
            codec().request(&first).unwrap().path_and_query,
            "/v2/alerts/a-1/notes?identifierType=id&order=desc&direction=next&limit=100"
        );
        let body = br#"{"data":[{"note":"two","owner":"x","createdAt":"2024-01-01T00:00:01Z","offset":"1704067201000_1704067201000"},{"note":"one","owner":"x","createdAt":"2024-01-01T00:00:00Z","offset":"1704067200000_1704067200000"}],"paging":{"first":"https://api.opsgenie.com/v2/alerts/a-1/notes?identifierType=id&order=desc&direction=next&limit=100"},"took":0.01,"requestId":"r"}"#;
        assert_eq!(
            codec()
                .response(&first, 200, &HeaderMap::new(), body)
                .unwrap(),
            Outcome::Notes {
                texts: vec!["two".into(), "one".into()],
                next: None
            }
        );
        let next = Operation::ListNotes {
            alert_id: "a-1".into(),
            offset: Some("1704067200000_1704067200000".into()),
        };
        assert!(codec()
            .request(&next)
            .unwrap()
            .path_and_query
            .ends_with("&offset=1704067200000_1704067200000"));
    }

    #[test]
    fn on_call_by_id_or_name() {
        let by_id = codec()
            .request(&Operation::OnCall {
                schedule: "6c2b7a4e-27a9-4a8e-9a8c-3f0b3b4f3f2a".into(),
            })
            .unwrap();
        assert_eq!(
            by_id.path_and_query,
            "/v2/schedules/6c2b7a4e-27a9-4a8e-9a8c-3f0b3b4f3f2a/on-calls?scheduleIdentifierType=id&flat=true"
        );
        let by_name = codec()
            .request(&Operation::OnCall {
                schedule: "SRE primary".into(),
            })
            .unwrap();
        assert_eq!(
            by_name.path_and_query,
            "/v2/schedules/SRE%20primary/on-calls?scheduleIdentifierType=name&flat=true"
        );
        let out = codec()
            .response(
                &Operation::OnCall {
                    schedule: "x".into(),
                },
                200,
                &HeaderMap::new(),
                br#"{"data":{"_parent":{"id":"1","name":"x","enabled":true},"onCallRecipients":["a@example.com"]},"took":0.1,"requestId":"r"}"#,
            )
            .unwrap();
        assert_eq!(out, Outcome::OnCall(vec!["a@example.com".into()]));
    }

    #[test]
    fn schedule_timelines_by_name_for_a_week_from_the_date() {
        let date = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_119_200);
        let op = Operation::ScheduleTimeline {
            schedule: "SRE primary".into(),
            date,
        };
        assert_eq!(op.domain(), crate::backend::Domain::Configuration);
        assert_eq!(
            codec().request(&op).unwrap().path_and_query,
            "/v2/schedules/SRE%20primary/timeline?identifierType=name&interval=1&intervalUnit=weeks&date=2026-12-01T10%3A00%3A00Z"
        );
        let body = br#"{"data":{"_parent":{"id":"s","name":"SRE primary","enabled":true},"startDate":"2026-12-01T00:00:00Z","endDate":"2026-12-08T00:00:00Z","finalTimeline":{"rotations":[{"id":"r","name":"day","order":1,"periods":[{"startDate":"2026-12-01T08:00:00+01:00","endDate":"2026-12-01T17:00:00+01:00","type":"default","recipient":{"id":"u","name":"alice@example.com","type":"user"}}]}]}},"took":0.1,"requestId":"x"}"#;
        let Outcome::Timeline(timeline) =
            codec().response(&op, 200, &HeaderMap::new(), body).unwrap()
        else {
            panic!("a timeline");
        };
        assert_eq!(timeline.periods.len(), 1);
        assert_eq!(timeline.periods[0].identity, "alice@example.com");
        assert_eq!(
            timeline.periods[0].end,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_140_800)
        );
        let bad = codec().response(&op, 200, &HeaderMap::new(), br#"{"data":{}}"#);
        assert!(
            matches!(
                bad,
                Err(BackendError::Decode {
                    endpoint: "schedule_timeline",
                    ..
                })
            ),
            "{bad:?}"
        );
        assert_eq!(
            codec().response(&op, 404, &HeaderMap::new(), b"{}"),
            Err(BackendError::Status { status: 404 })
        );
    }

    #[test]
    fn heartbeat_and_list_paths() {
        let hb = codec()
            .request(&Operation::Heartbeat {
                name: "teleport-access-heartbeat".into(),
            })
            .unwrap();
        assert_eq!(
            hb.path_and_query,
            "/v2/heartbeats/teleport-access-heartbeat/ping"
        );
        let list = codec()
            .request(&Operation::ListOpenAlerts {
                tag: "teleport-access-request".into(),
                offset: 200,
            })
            .unwrap();
        assert_eq!(
            list.path_and_query,
            "/v2/alerts?query=status%3Aopen%20AND%20tag%3A%22teleport-access-request%22&limit=100&offset=200"
        );
        let op = Operation::ListOpenAlerts {
            tag: "t".into(),
            offset: 0,
        };
        let out = codec()
            .response(
                &op,
                200,
                &HeaderMap::new(),
                br#"{"data":[{"id":"i1","alias":"a1"}],"paging":{"first":"f"},"took":0,"requestId":"r"}"#,
            )
            .unwrap();
        assert_eq!(
            out,
            Outcome::Alerts {
                alerts: vec![("a1".into(), "i1".into())],
                more: false
            }
        );
    }

    #[test]
    fn request_status_answers() {
        let op = Operation::RequestStatus {
            request_id: "r1".into(),
        };
        let mut queued = HeaderMap::new();
        queued.insert(
            "X-Opsgenie-Errortype",
            http::HeaderValue::from_static("RequestNotProcessed"),
        );
        assert_eq!(
            codec().response(&op, 404, &queued, b"{}").unwrap(),
            Outcome::NotProcessed
        );
        assert_eq!(
            codec().response(&op, 404, &HeaderMap::new(), b"{}"),
            Err(BackendError::UnknownRequest {
                request_id: "r1".into()
            })
        );
        let body = br#"{"data":{"success":false,"isSuccess":false,"action":"Acknowledge","status":"Alert does not exist","alertId":"","alias":""},"took":0.02,"requestId":"x"}"#;
        assert_eq!(
            codec().response(&op, 200, &HeaderMap::new(), body).unwrap(),
            Outcome::Processed(Processed {
                success: false,
                alert_id: String::new(),
                status: "Alert does not exist".into()
            })
        );
        assert_eq!(
            codec().response(&op, 503, &HeaderMap::new(), b""),
            Err(BackendError::Status { status: 503 })
        );
    }

    #[test]
    fn accepted_and_bad_bodies() {
        let op = Operation::CreateAlert(payload());
        assert_eq!(
            codec()
                .response(
                    &op,
                    202,
                    &HeaderMap::new(),
                    br#"{"result":"Request will be processed","took":0.3,"requestId":"43a2"}"#
                )
                .unwrap(),
            Outcome::Accepted {
                request_id: "43a2".into()
            }
        );
        assert!(matches!(
            codec().response(&op, 202, &HeaderMap::new(), b"<html>"),
            Err(BackendError::Decode { .. })
        ));
        assert_eq!(
            codec().response(&op, 429, &HeaderMap::new(), b""),
            Err(BackendError::Status { status: 429 })
        );
    }
}
