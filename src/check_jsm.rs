//! `check` on `backend: jsm`: each credential, the cloudId, readiness, and every approval
//! schedule (the configured defaults and those annotated on current requests) resolved to an
//! id. All through documented calls: the Integration Events API has only writes, so its key is
//! reported as set, not tried.

use crate::actors::gateway::{GatewayClient, GatewayError};
use crate::backend::{Operation, Outcome};
use crate::config::Config;
use crate::core::policy::is_schedule_id;
use crate::daemon::exit;

use super::{code_of, Finding};

/// Most schedules `check` resolves (defaults first, then annotated ones).
pub(super) const MAX_CHECKED_SCHEDULES: usize = 20;

pub(super) async fn check(config: &Config, annotated: &[String]) -> Vec<Finding> {
    let o = &config.opsgenie;
    let api_key = o.api_key.clone().unwrap_or_default();
    let client = match GatewayClient::new(o, api_key) {
        Ok(client) => client,
        Err(err) => {
            let fix = if config.auto_approval.enabled {
                "; auto-approval needs it to look up who is on call"
            } else {
                ""
            };
            return vec![Finding::failed(
                "JSM REST API",
                format!("{err}{fix}; fix: set `opsgenie.jsm.email`, `opsgenie.jsm.api_token_file` and `opsgenie.jsm.site` (or `cloud_id`)"),
                exit::CONFIG,
            )];
        }
    };
    let mut findings = vec![Finding::warn(
        "JSM integration key",
        format!(
            "set, for {}; not tried: the Integration Events API has only writes, so the first alert proves it",
            o.base_url()
        ),
    )];
    let how = if o.jsm.cloud_id.is_some() {
        "configured"
    } else {
        "looked up from the site"
    };
    let cloud_id = match client.jsm_cloud_id().await {
        Ok(id) => id,
        Err(err) => {
            findings.push(Finding::failed(
                "JSM cloudId",
                err.to_string(),
                code_of(err.is_retryable()),
            ));
            return findings;
        }
    };
    findings.push(Finding::ok("JSM cloudId", format!("{cloud_id} ({how})")));
    let email = o.jsm.email.as_deref().unwrap_or_default();
    match client.health().await {
        Ok(()) => findings.push(Finding::ok(
            "JSM REST API",
            format!("{} accepts the API token of {email}", o.jsm.rest_base()),
        )),
        Err(err) => {
            findings.push(Finding::failed(
                "JSM REST API",
                err.to_string(),
                code_of(err.is_retryable()),
            ));
            return findings;
        }
    }
    findings.push(match &o.jsm.heartbeat_team_id {
        Some(team) => Finding::ok(
            "heartbeat",
            format!("pinged `{}` of team {team}", o.heartbeat_name),
        ),
        None => Finding::warn(
            "heartbeat",
            "none pinged (JSM heartbeats belong to a team): set `opsgenie.jsm.heartbeat_team_id` to be alerted when the daemon stops; readiness reads one alert instead",
        ),
    });
    if config.auto_approval.enabled {
        findings.extend(check_schedules(config, &client, annotated).await);
    }
    findings
}

/// The approval schedules, each resolved to an id, and its on-calls read once.
async fn check_schedules(
    config: &Config,
    client: &GatewayClient,
    annotated: &[String],
) -> Vec<Finding> {
    let what = "approval schedule";
    let mut names: Vec<&str> = Vec::new();
    for name in config
        .auto_approval
        .default_schedules
        .iter()
        .chain(annotated)
        .map(|s| s.trim())
    {
        if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return vec![Finding::warn(
            what,
            "none configured and none annotated on current requests: nothing to check; requests whose role names no schedule in `teleport.dev/schedules` are declined",
        )];
    }
    let mut findings = Vec::new();
    for name in names.into_iter().take(MAX_CHECKED_SCHEDULES) {
        findings.push(check_schedule(client, name).await);
    }
    findings
}

async fn check_schedule(client: &GatewayClient, name: &str) -> Finding {
    let what = "approval schedule";
    let id = if is_schedule_id(name) {
        name.to_owned()
    } else {
        match client
            .call(Operation::FindSchedule {
                name: name.to_owned(),
            })
            .await
        {
            Ok(Outcome::Schedule(Some(id))) => id,
            Ok(_) => {
                return Finding::failed(
                    what,
                    format!("no schedule named \"{name}\" that the account can see; fix: correct the name in `auto_approval.default_schedules` or the role's `teleport.dev/schedules`, or give the account a role on the schedule's team"),
                    exit::CONFIG,
                )
            }
            Err(err) => return failed_read(name, &err),
        }
    };
    match client
        .call(Operation::OnCall {
            schedule: id.clone(),
        })
        .await
    {
        Ok(Outcome::OnCall(users)) => Finding::ok(
            what,
            format!("\"{name}\" is {id}; {} on call now", users.len()),
        ),
        Ok(other) => Finding::failed(
            what,
            format!("\"{name}\": unexpected answer {other:?}"),
            exit::CONFIG,
        ),
        Err(err) => failed_read(name, &err),
    }
}

fn failed_read(name: &str, err: &GatewayError) -> Finding {
    Finding::failed(
        "approval schedule",
        format!("cannot read \"{name}\": {err}; auto-approval cannot work until it can"),
        code_of(err.is_retryable()),
    )
}
