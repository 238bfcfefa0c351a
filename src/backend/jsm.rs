//! The Jira Service Management Operations codec (Opsgenie's successor). It speaks two APIs and
//! uses only what Atlassian documents on each (opsgenie-api.md §9.6):
//!
//! - **Integration Events API** ([`Api::Primary`]: `https://api.atlassian.com/jsm/ops/integration`,
//!   `Authorization: GenieKey`): the four documented writes. This codec sends three of them:
//!   create (`POST /v2/alerts`), add note and close (`POST /v2/alerts/{identifier}/notes|close`
//!   with `identifierType`), in Opsgenie v2's shapes, so those requests are
//!   [`OpsgenieCodec`]'s. Request status, listing and heartbeats are not part of this API.
//! - **REST API** ([`Api::JsmRest`]: `…/jsm/ops/api/{cloudId}`, HTTP Basic): every read. The
//!   request status of a write accepted above (a bare object; 404 "request is not found" both
//!   while it is queued and when it is unknown: [`Outcome::NotFoundYet`]), an alert by id or by
//!   alias, an alert's notes and the open alerts (`values`/`links` paging), schedules by name
//!   (paths take ids only), on-calls (`flat=true`: accountIds), a schedule's final timeline (for
//!   `auto_approval.shift_end`), the team-scoped heartbeat ping.
//! - **Jira user API** ([`Api::JiraUsers`]) for the e-mail behind an accountId, and the site's
//!   `/_edge/tenant_info` ([`Api::TenantInfo`]) for the cloudId.
//!
//! Paths here are relative to each API's root; the gateway adds the base URL (with the cloudId)
//! and the credential that API takes.

pub mod errors;
pub mod rest;

use http::{HeaderMap, Method};

use super::opsgenie::{escape, OpsgenieCodec};
use super::{AlertRef, Api, BackendError, Codec, HttpRequest, Operation, Outcome, Processed};

/// Alerts per page of the orphan-sweep listing (the REST API's maximum).
pub const LIST_PAGE_SIZE: u32 = 100;

/// Notes per page when reading an alert's notes (the REST API's maximum).
pub const NOTES_PAGE_SIZE: u32 = 100;

/// Schedules per page of a search by name (the REST API's maximum).
pub const SCHEDULE_PAGE_SIZE: u32 = 50;

/// The codec for JSM Operations.
#[derive(Debug, Clone)]
pub struct JsmCodec {
    writes: OpsgenieCodec,
    heartbeat_team: Option<String>,
}

impl JsmCodec {
    /// A codec that puts `source` on notes and closes, and pings the heartbeat of
    /// `heartbeat_team` (a team id) as its health check; without a team, the health check reads
    /// one alert instead: JSM's heartbeats are team-scoped, and a documented read still proves
    /// the host, the REST credential and the cloudId.
    pub fn new(source: &str, heartbeat_team: Option<&str>) -> Self {
        Self {
            writes: OpsgenieCodec::new(source),
            heartbeat_team: heartbeat_team
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        }
    }
}

fn rest(path: String) -> HttpRequest {
    HttpRequest {
        api: Api::JsmRest,
        method: Method::GET,
        path_and_query: path,
        body: None,
    }
}

/// The request for a schedule's timeline over `interval` `unit`s (`days`, `weeks` or `months`)
/// from the one containing `date` (RFC 3339), by schedule id: `GET
/// /v1/schedules/{id}/timeline` (opsgenie-api.md §13). Read the answer with
/// [`decode_timeline`].
pub fn timeline_request(schedule_id: &str, interval: u32, unit: &str, date: &str) -> HttpRequest {
    rest(format!(
        "/v1/schedules/{}/timeline?interval={interval}&intervalUnit={}&date={}",
        escape(schedule_id),
        escape(unit),
        escape(date)
    ))
}

/// Reads the answer to [`timeline_request`]: statuses other than 200 are
/// [`BackendError::Status`] for the gateway to classify; the body is
/// [`crate::backend::timeline::decode_jsm`]'s.
pub fn decode_timeline(
    status: u16,
    body: &[u8],
) -> Result<crate::core::shift::Timeline, BackendError> {
    if status != 200 {
        return Err(BackendError::Status { status });
    }
    crate::backend::timeline::decode_jsm(body).map_err(|e| BackendError::Decode {
        endpoint: "schedule_timeline",
        message: e.to_string(),
    })
}

impl Codec for JsmCodec {
    fn product(&self) -> &'static str {
        "JSM Operations"
    }

    fn request(&self, op: &Operation) -> Result<HttpRequest, BackendError> {
        Ok(match op {
            // The documented Integration Events writes, in Opsgenie's v2 shapes.
            Operation::CreateAlert(_)
            | Operation::AddNote { .. }
            | Operation::CloseAlert { .. } => self.writes.request(op)?,
            Operation::RequestStatus { request_id } => {
                rest(format!("/v1/alerts/requests/{}", escape(request_id)))
            }
            Operation::GetAlert {
                alert: AlertRef::Id(id),
            } => rest(format!("/v1/alerts/{}", escape(id))),
            Operation::GetAlert {
                alert: AlertRef::Alias(alias),
            } => rest(format!("/v1/alerts/alias?alias={}", escape(alias))),
            // `offset` is the `links.next` of the previous page, already checked by
            // `rest::Page::next` to be a path under `/v1/`.
            Operation::ListNotes {
                offset: Some(next), ..
            } => rest(next.clone()),
            Operation::ListNotes {
                alert_id,
                offset: None,
            } => rest(format!(
                "/v1/alerts/{}/notes?size={NOTES_PAGE_SIZE}",
                escape(alert_id)
            )),
            Operation::ListOpenAlerts { tag, offset } => {
                let query = format!("status:open AND tag:\"{}\"", tag.replace('"', "\\\""));
                rest(format!(
                    "/v1/alerts?query={}&offset={offset}&size={LIST_PAGE_SIZE}",
                    escape(&query)
                ))
            }
            // Ids only: names are resolved first (`FindSchedule`).
            Operation::OnCall { schedule } => rest(format!(
                "/v1/schedules/{}/on-calls?flat=true",
                escape(schedule)
            )),
            Operation::FindSchedule { name } => rest(format!(
                "/v1/schedules?query={}&size={SCHEDULE_PAGE_SIZE}",
                escape(name.trim())
            )),
            Operation::Heartbeat { name } => match &self.heartbeat_team {
                Some(team) => rest(format!(
                    "/v1/teams/{}/heartbeats/ping?name={}",
                    escape(team),
                    escape(name)
                )),
                None => rest("/v1/alerts?size=1".into()),
            },
            Operation::GetHeartbeat { .. } => {
                return Err(BackendError::Unsupported {
                    endpoint: op.endpoint(),
                    message: "heartbeats are not looked up on JSM Operations".into(),
                })
            }
            Operation::GetUser { account_id } => HttpRequest {
                api: Api::JiraUsers,
                method: Method::GET,
                path_and_query: format!("/rest/api/3/user?accountId={}", escape(account_id)),
                body: None,
            },
            // Ids only, like on-calls: names are resolved first (`actors::oncall_jsm`).
            Operation::ScheduleTimeline { schedule, date } => timeline_request(
                schedule,
                super::opsgenie::TIMELINE_WEEKS,
                "weeks",
                &humantime::format_rfc3339_seconds(*date).to_string(),
            ),
            Operation::TenantInfo => HttpRequest {
                api: Api::TenantInfo,
                method: Method::GET,
                path_and_query: "/_edge/tenant_info".into(),
                body: None,
            },
        })
    }

    fn response(
        &self,
        op: &Operation,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Outcome, BackendError> {
        let decode = |e: rest::DecodeError| BackendError::Decode {
            endpoint: op.endpoint(),
            message: e.to_string(),
        };
        match op {
            Operation::CreateAlert(_)
            | Operation::AddNote { .. }
            | Operation::CloseAlert { .. } => self.writes.response(op, status, headers, body),
            // JSM knows no "not processed yet": the poller decides how long to wait.
            Operation::RequestStatus { .. } if status == 404 => Ok(Outcome::NotFoundYet),
            Operation::GetAlert { .. } | Operation::ListNotes { .. } if status == 404 => {
                Ok(Outcome::NoSuchAlert)
            }
            // A name no schedule has: an answer, not a failure.
            _ if !(200..300).contains(&status) => Err(BackendError::Status { status }),
            Operation::RequestStatus { .. } => {
                let s = rest::request_status(body).map_err(decode)?;
                Ok(Outcome::Processed(Processed {
                    success: s.is_success,
                    alert_id: s.alert_id,
                    status: s.status,
                }))
            }
            Operation::GetAlert { .. } => {
                let alert = rest::alert(body).map_err(decode)?;
                if alert.id.is_empty() {
                    return Err(BackendError::Decode {
                        endpoint: op.endpoint(),
                        message: "the alert has no id".into(),
                    });
                }
                Ok(Outcome::Alert {
                    open: alert.is_open(),
                    id: alert.id,
                })
            }
            Operation::ListNotes { .. } => {
                let page = rest::note_page(body).map_err(decode)?;
                let next = page.next().map(str::to_owned);
                Ok(Outcome::Notes {
                    texts: page.items.into_iter().map(|n| n.note).collect(),
                    next,
                })
            }
            Operation::ListOpenAlerts { .. } => {
                let page = rest::alert_page(body).map_err(decode)?;
                let more = page.next().is_some();
                Ok(Outcome::Alerts {
                    alerts: page
                        .items
                        .into_iter()
                        .filter(rest::AlertSummary::is_open)
                        .map(|a| (a.alias, a.id))
                        .collect(),
                    more,
                })
            }
            Operation::OnCall { .. } => {
                Ok(Outcome::OnCall(rest::on_call_users(body).map_err(decode)?))
            }
            Operation::FindSchedule { name } => {
                let page = rest::schedule_page(body).map_err(decode)?;
                Ok(Outcome::Schedule(
                    rest::schedule_id(&page, name).map(str::to_owned),
                ))
            }
            Operation::Heartbeat { .. } | Operation::GetHeartbeat { .. } => Ok(Outcome::Done),
            Operation::GetUser { .. } => {
                let user = rest::jira_user(body).map_err(decode)?;
                Ok(Outcome::User {
                    account_id: user.account_id,
                    display_name: user.display_name,
                    email: user.email_address,
                })
            }
            Operation::ScheduleTimeline { .. } => {
                decode_timeline(status, body).map(Outcome::Timeline)
            }
            Operation::TenantInfo => Ok(Outcome::CloudId(
                rest::tenant_cloud_id(body).map_err(decode)?,
            )),
        }
    }
}

#[cfg(test)]
#[path = "jsm/codec_tests.rs"]
mod tests;
