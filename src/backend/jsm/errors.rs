//! What a refusal from JSM's REST or Jira user API means, and what to fix. `retry::classify`
//! words its hints for a GenieKey (Opsgenie, Integration Events); an answer from the APIs that
//! take the account's e-mail and API token needs other words, and their error bodies have other
//! shapes (`{errors: [{title}]}`, `{code, message}`, `{errorMessages}`).

use crate::backend::retry::Verdict;
use crate::backend::Api;

/// `verdict` for an answer from `api`, with JSM's message and a hint that names the setting to
/// fix. Verdicts other than [`Verdict::Permanent`], and answers from [`Api::Primary`], are
/// returned unchanged.
pub fn refine(api: Api, status: u16, body: &[u8], verdict: Verdict) -> Verdict {
    let Verdict::Permanent { message, hint } = verdict else {
        return verdict;
    };
    if api == Api::Primary {
        return Verdict::Permanent { message, hint };
    }
    let message = super::rest::error_message(body).unwrap_or(message);
    let hint = match (api, status) {
        (Api::TenantInfo, _) => "`opsgenie.jsm.site` does not answer its cloudId: check the site name (example.atlassian.net), or set `opsgenie.jsm.cloud_id`".to_owned(),
        (_, 401) => "the REST credential was not accepted: check `opsgenie.jsm.email` and the API token in `opsgenie.jsm.api_token_file` (a token created without scopes, for that account; service accounts cannot use the JSM Operations REST API)".to_owned(),
        (Api::JiraUsers, 403) => "the account may not read users: it needs Jira's \"Browse users and groups\" permission".to_owned(),
        (_, 403) => "the account is not allowed to do this: it needs JSM Operations access (an agent with a team or global role that can see the schedules and alerts)".to_owned(),
        (Api::JiraUsers, 404) => "no such user, or the account may not see them".to_owned(),
        (_, 402) => "the site's JSM plan does not include this (heartbeats need Standard or above); unset `opsgenie.jsm.heartbeat_team_id` to use another readiness check".to_owned(),
        (_, 404) => "not found: check `opsgenie.jsm.cloud_id` (or `site`), the schedule names, and `opsgenie.jsm.heartbeat_team_id`".to_owned(),
        _ => hint,
    };
    Verdict::Permanent { message, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permanent() -> Verdict {
        Verdict::Permanent {
            message: "HTTP 401".into(),
            hint: "the API key was not accepted".into(),
        }
    }

    #[test]
    fn rest_refusals_name_the_rest_credential_and_keep_the_message() {
        let body =
            br#"{"code":401,"message":"Client must be authenticated to access this resource."}"#;
        let Verdict::Permanent { message, hint } = refine(Api::JsmRest, 401, body, permanent())
        else {
            panic!("not permanent")
        };
        assert_eq!(
            message,
            "Client must be authenticated to access this resource."
        );
        assert!(hint.contains("opsgenie.jsm.api_token_file"), "{hint}");

        let body = br#"{"errors":[{"title":"No schedule exists with id [x]","code":"NOT_FOUND"}]}"#;
        let Verdict::Permanent { message, .. } = refine(Api::JsmRest, 404, body, permanent())
        else {
            panic!("not permanent")
        };
        assert_eq!(message, "No schedule exists with id [x]");
        let Verdict::Permanent { hint, .. } = refine(Api::JiraUsers, 403, b"", permanent()) else {
            panic!("not permanent")
        };
        assert!(hint.contains("Browse users"), "{hint}");
    }

    #[test]
    fn other_verdicts_and_the_genie_key_api_are_left_alone() {
        assert_eq!(refine(Api::Primary, 401, b"", permanent()), permanent());
        let transient = Verdict::Transient {
            reason: "HTTP 503".into(),
            maybe_done: true,
        };
        assert_eq!(refine(Api::JsmRest, 503, b"", transient.clone()), transient);
    }
}
