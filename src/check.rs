//! `teleport-opsgenie check`: validates what `start` would use and says, for each failure, what
//! to fix. The report goes to standard output; the exit code is the worst finding's (69 when
//! something cannot be reached or read, 78 when a setting cannot work).

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::actors::gateway::{GatewayClient, GatewayError};
use crate::backend::Operation;
use crate::config::{BackendKind, Config, ConfigProblem, ConnectMode};
use crate::core::render::timestamp;
use crate::daemon::{exit, StartError};
use crate::teleport::client::TeleportClient;
use crate::teleport::identity::Identity;
use crate::teleport::own_roles;

#[path = "check_jsm.rs"]
mod jsm;

/// One line of the report: what was checked, and what was found (or what failed, with the exit
/// code the failure calls for). A warning is something the daemon would run with but that
/// deserves a look; it does not change the exit code.
struct Finding {
    what: &'static str,
    result: Result<String, (String, u8)>,
    warning: bool,
}

impl Finding {
    fn ok(what: &'static str, text: impl Into<String>) -> Self {
        Self {
            what,
            result: Ok(text.into()),
            warning: false,
        }
    }

    fn warn(what: &'static str, text: impl Into<String>) -> Self {
        Self {
            warning: true,
            ..Self::ok(what, text)
        }
    }

    fn failed(what: &'static str, text: impl Into<String>, code: u8) -> Self {
        Self {
            what,
            result: Err((text.into(), code)),
            warning: false,
        }
    }
}

/// Runs every check, prints the report and returns the exit code. `file_problems` are the
/// configuration's problems with the files it names; they are reported as failed checks.
pub async fn run(config: &Config, file_problems: &[ConfigProblem]) -> u8 {
    let (report, code) = report_with(config, file_problems).await;
    print!("{report}");
    code
}

/// Runs every check on a configuration whose files are all readable; the report's text and the
/// exit code, without printing.
pub async fn report(config: &Config) -> (String, u8) {
    report_with(config, &[]).await
}

async fn report_with(config: &Config, file_problems: &[ConfigProblem]) -> (String, u8) {
    let findings = collect(config, file_problems).await;
    let code = findings
        .iter()
        .filter_map(|f| f.result.as_ref().err().map(|(_, code)| *code))
        .max()
        .unwrap_or(exit::OK);
    (render(&findings), code)
}

async fn collect(config: &Config, file_problems: &[ConfigProblem]) -> Vec<Finding> {
    let mut findings = vec![Finding::ok("configuration", "parsed and valid")];
    if let Some(finding) = check_listen(config).await {
        findings.push(finding);
    }
    for problem in file_problems {
        findings.push(Finding::failed(
            "file",
            problem.to_string(),
            exit::UNAVAILABLE,
        ));
    }
    let unreadable = |section: &str| file_problems.iter().any(|p| p.path.starts_with(section));
    // Warnings, not failures: the daemon works, but the secret is exposed.
    findings.extend(
        crate::file_mode::loose_files(config)
            .iter()
            .map(|f| Finding::ok("file permissions", format!("WARNING: {f}"))),
    );

    // Schedules annotated on current requests, for the JSM schedule check.
    let mut annotated = Vec::new();
    if unreadable("teleport.") {
        findings.push(Finding::failed(
            "teleport",
            "not checked: the identity cannot be read (see above); fix: point `teleport.identity` at the file written by `tctl auth sign` or tbot",
            exit::UNAVAILABLE,
        ));
    } else if let Some(identity) = check_identity(config, &mut findings) {
        annotated = check_teleport(config, &identity, &mut findings).await;
    }

    if unreadable("opsgenie.") {
        findings.push(Finding::failed(
            "on-call backend",
            "not checked: the API key cannot be read (see above); fix: write the key of an API integration to the file named by `opsgenie.api_key_file`",
            exit::UNAVAILABLE,
        ));
    } else if config.opsgenie.backend == BackendKind::Jsm {
        findings.extend(jsm::check(config, &annotated).await);
    } else {
        findings.extend(check_backend(config).await);
    }
    findings
}

/// Binds `http.listen` and lets it go at once, as `start` would bind it.
async fn check_listen(config: &Config) -> Option<Finding> {
    if !config.http.enabled {
        return None;
    }
    let what = "http.listen";
    let addr = config.http.listen;
    Some(match crate::http::bind(addr).await {
        Ok(listener) => {
            drop(listener);
            Finding::ok(what, format!("{addr} is free"))
        }
        Err(err) => {
            let in_use = err.source.kind() == std::io::ErrorKind::AddrInUse;
            let text = err.to_string();
            let code = StartError::from(err).exit_code();
            let fix = if in_use {
                "another process listens there (`ss -ltnp` names it; a running teleport-opsgenie \
                 is expected to): stop it, or set `http.listen` to a free port, or \
                 `http.enabled: false`"
            } else {
                "set `http.listen` to an address of this host, e.g. `127.0.0.1:9469` or \
                 `0.0.0.0:9469` in a container"
            };
            Finding::failed(what, format!("{text}; fix: {fix}"), code)
        }
    })
}

fn check_identity(config: &Config, findings: &mut Vec<Finding>) -> Option<Identity> {
    match Identity::load(&config.teleport) {
        Ok(identity) => {
            let expires = timestamp(identity.not_after);
            if identity.not_after <= SystemTime::now() {
                findings.push(Finding::failed(
                    "identity",
                    format!(
                        "the certificate of {user} expired at {expires}; fix: sign a new identity (`tctl auth sign --user={user} --out=... --ttl=2190h`) or use tbot",
                        user = identity.username
                    ),
                    exit::CONFIG,
                ));
                None
            } else {
                findings.push(Finding::ok(
                    "identity",
                    format!("user {}, valid until {expires}", identity.username),
                ));
                Some(identity)
            }
        }
        Err(err) => {
            let text = err.to_string();
            // The same code `start` exits with for this error.
            let code = StartError::from(err).exit_code();
            findings.push(Finding::failed("identity", text, code));
            None
        }
    }
}

/// Checks Teleport; the schedules annotated (`teleport.dev/schedules`) on current requests.
async fn check_teleport(
    config: &Config,
    identity: &Identity,
    findings: &mut Vec<Finding>,
) -> Vec<String> {
    let (client, connected) = match TeleportClient::connect(&config.teleport, identity).await {
        Ok(ok) => ok,
        Err(err) => {
            findings.push(Finding::failed(
                "teleport",
                err.to_string(),
                code_of(err.is_retryable()),
            ));
            return Vec::new();
        }
    };
    let how = match connected.mode {
        ConnectMode::Proxy => "through the Proxy (TLS routing)",
        _ => "directly to the Auth Service",
    };
    findings.push(Finding::ok(
        "teleport",
        format!(
            "cluster {}, version {}, connected to {} {how}",
            connected.ping.cluster_name, connected.ping.server_version, config.teleport.addr,
        ),
    ));
    let permissions = client.probe_permissions().await;
    for (what, result) in [
        ("list access requests", permissions.list_requests),
        ("read plugin data", permissions.read_plugin_data),
        ("write plugin data", permissions.update_plugin_data),
    ] {
        findings.push(match result {
            Ok(()) => Finding::ok(what, "permitted"),
            Err(err) => Finding::failed(what, err.to_string(), code_of(err.is_retryable())),
        });
    }
    let needs = own_roles::Needs {
        review: config.auto_approval.enabled,
        lock: config.auto_approval.enabled
            && config.auto_approval.shift_end == crate::core::shift_policy::ShiftEndMode::Revoke,
    };
    for (what, result) in own_roles::check(&client, needs).await {
        findings.push(match result {
            Ok(text) => Finding::ok(what, text),
            Err(p) => Finding::failed(what, p.text, code_of(p.retryable)),
        });
    }
    let mut annotated: Vec<String> = Vec::new();
    if config.auto_approval.enabled {
        // Failing to list is reported above (permissions); here it only means none to check.
        for request in client.list_access_requests().await.unwrap_or_default() {
            for schedule in request.annotation(crate::core::model::SCHEDULES_ANNOTATION) {
                if !annotated.contains(&schedule) {
                    annotated.push(schedule);
                }
            }
        }
    }
    annotated
}

async fn check_backend(config: &Config) -> Vec<Finding> {
    let what = "on-call backend";
    let api_key = config.opsgenie.api_key.clone().unwrap_or_default();
    let client = match GatewayClient::new(&config.opsgenie, api_key) {
        Ok(client) => client,
        Err(err) => return vec![Finding::failed(what, err.to_string(), exit::CONFIG)],
    };
    match client.health().await {
        Ok(()) => vec![
            Finding::ok(
                what,
                format!("{} accepts the API key", config.opsgenie.base_url()),
            ),
            check_heartbeat(config, &client).await,
        ],
        Err(err) => vec![Finding::failed(
            what,
            err.to_string(),
            code_of(err.is_retryable()),
        )],
    }
}

/// Whether `opsgenie.heartbeat_name` exists. Its ping answers 202 for any name, so without
/// this a misspelt heartbeat is pinged for ever and nobody is told when the daemon stops.
async fn check_heartbeat(config: &Config, client: &GatewayClient) -> Finding {
    let what = "heartbeat";
    let name = &config.opsgenie.heartbeat_name;
    let lookup = client
        .call(Operation::GetHeartbeat { name: name.clone() })
        .await;
    match lookup {
        Ok(_) => Finding::ok(what, format!("`{name}` exists")),
        Err(GatewayError::Permanent {
            status: Some(404), ..
        }) => Finding::failed(
            what,
            format!(
                "no heartbeat named `{name}`: pings succeed, but nobody is alerted when the daemon stops; fix: create it in Opsgenie (Settings > Heartbeats, name `{name}`), or set `opsgenie.heartbeat_name` to one that exists"
            ),
            exit::CONFIG,
        ),
        Err(GatewayError::Permanent {
            status: Some(403), ..
        }) => Finding::warn(
            what,
            format!("`{name}` not looked up: the API key may not read heartbeats (its integration has no configuration access); make sure it exists"),
        ),
        Err(err) => Finding::failed(what, err.to_string(), code_of(err.is_retryable())),
    }
}

fn code_of(retryable: bool) -> u8 {
    if retryable {
        exit::UNAVAILABLE
    } else {
        exit::CONFIG
    }
}

fn render(findings: &[Finding]) -> String {
    let mut out = String::from("teleport-opsgenie check\n");
    for f in findings {
        let (mark, text) = match &f.result {
            Ok(text) if f.warning => ("warn", text.as_str()),
            Ok(text) => ("ok  ", text.as_str()),
            Err((text, _)) => ("FAIL", text.as_str()),
        };
        let _ = writeln!(out, "  [{mark}] {:<22} {text}", f.what);
    }
    let failed = findings.iter().filter(|f| f.result.is_err()).count();
    let _ = if failed == 0 {
        writeln!(out, "All checks passed.")
    } else {
        writeln!(out, "{failed} check(s) failed.")
    };
    out
}
