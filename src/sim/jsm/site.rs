//! The site's side (`<name>.atlassian.net`, or `api.atlassian.com/ex/jira/{cloudId}`): the Jira
//! platform user API, which maps an accountId to a profile, and `/_edge/tenant_info`, which
//! names the site's cloudId.
//!
//! `emailAddress` is left out for a user whose profile visibility hides it, exactly as Jira
//! does: callers must always be able to fall back to an explicit mapping.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::model::User;
use super::rest::{basic_ok, unauthorized};
use super::{Handled, Incoming, Inner, Reply};

/// Most users per page of `/user/bulk` (Jira's default and maximum).
const BULK_PAGE_MAX: usize = 10;

/// Jira's error shape.
fn jira_error(status: StatusCode, message: &str) -> Reply {
    Reply::json(status, json!({"errorMessages": [message], "errors": {}}))
}

fn user_json(base: &str, u: &User) -> Value {
    let mut user = json!({
        "self": format!("{base}/rest/api/3/user?accountId={}", u.account_id),
        "accountId": u.account_id,
        "accountType": "atlassian",
        "displayName": u.display_name,
        "active": true,
        "timeZone": "Etc/UTC",
        "locale": "en_US",
    });
    if u.email_visible {
        user["emailAddress"] = json!(u.email);
    }
    user
}

/// `GET /rest/api/3/user?accountId=` and `GET /rest/api/3/user/bulk?accountId=…`, on the site
/// or under `/ex/jira/{cloudId}`.
pub(crate) fn users(inner: &Inner, req: &Incoming<'_>) -> Handled {
    let auth_ok = basic_ok(inner, req);
    let path = req.path();
    let (cloud_ok, rest) = match path.as_slice() {
        ["ex", "jira", cloud, rest @ ..] => (*cloud == inner.options.cloud_id, rest),
        rest => (true, rest),
    };
    let operation = match (req.method, rest) {
        (&Method::GET, ["rest", "api", "3", "user"]) => "get_user",
        (&Method::GET, ["rest", "api", "3", "user", "bulk"]) => "bulk_get_users",
        _ => {
            return Handled::undocumented(
                auth_ok,
                jira_error(StatusCode::NOT_FOUND, "No such operation"),
            )
        }
    };
    let base = format!("http://{}", inner.addr);
    let reply = if !auth_ok {
        unauthorized()
    } else if !cloud_ok {
        jira_error(StatusCode::NOT_FOUND, "No site exists with this cloudId")
    } else {
        let st = inner.state();
        match operation {
            "get_user" => match req.param("accountId") {
                None => jira_error(StatusCode::BAD_REQUEST, "accountId is required"),
                Some(id) => match st.users.get(id) {
                    Some(u) => Reply::json(StatusCode::OK, user_json(&base, u)),
                    None => jira_error(
                        StatusCode::NOT_FOUND,
                        "Specified user does not exist or you do not have required permissions",
                    ),
                },
            },
            _ => {
                let ids = req.params("accountId");
                let start: usize = req
                    .param("startAt")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let max: usize = req
                    .param("maxResults")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(BULK_PAGE_MAX)
                    .clamp(1, BULK_PAGE_MAX);
                if ids.is_empty() {
                    jira_error(StatusCode::BAD_REQUEST, "accountId is required")
                } else {
                    // Unknown accountIds are left out, as Jira does.
                    let found: Vec<&User> = ids.iter().filter_map(|id| st.users.get(*id)).collect();
                    let values: Vec<Value> = found
                        .iter()
                        .skip(start)
                        .take(max)
                        .map(|u| user_json(&base, u))
                        .collect();
                    Reply::json(
                        StatusCode::OK,
                        json!({
                            "maxResults": max,
                            "startAt": start,
                            "total": found.len(),
                            "isLast": start + values.len() >= found.len(),
                            "values": values,
                        }),
                    )
                }
            }
        }
    };
    Handled {
        operation: Some(operation),
        auth_ok,
        reply,
    }
}

/// `GET /_edge/tenant_info`: no credential needed.
pub(crate) fn tenant_info(inner: &Inner, req: &Incoming<'_>) -> Handled {
    if req.method != Method::GET {
        return Handled::undocumented(true, jira_error(StatusCode::NOT_FOUND, "Not Found"));
    }
    Handled {
        operation: Some("tenant_info"),
        auth_ok: true,
        reply: Reply::json(StatusCode::OK, json!({"cloudId": inner.options.cloud_id})),
    }
}
