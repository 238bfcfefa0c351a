//! `teleport-opsgenie check`: validates what `start` would use and says, for each failure, what
//! to fix. The report goes to standard output; the exit code is the worst finding's.

use std::fmt::Write as _;
use std::time::SystemTime;

use actix::Actor;

use crate::actors::gateway::{Gateway, Health};
use crate::config::{Config, ConnectMode};
use crate::core::render::timestamp;
use crate::daemon::exit;
use crate::teleport::client::TeleportClient;
use crate::teleport::identity::Identity;

/// One line of the report.
struct Finding {
    what: &'static str,
    result: Result<String, (String, u8)>,
}

/// Runs every check, prints the report and returns the exit code.
pub async fn run(config: &Config) -> u8 {
    let (report, code) = report(config).await;
    print!("{report}");
    code
}

/// Runs every check and returns the report's text and the exit code, without printing.
pub async fn report(config: &Config) -> (String, u8) {
    let findings = collect(config).await;
    let code = findings
        .iter()
        .filter_map(|f| f.result.as_ref().err().map(|(_, code)| *code))
        .max()
        .unwrap_or(exit::OK);
    (render(&findings), code)
}

async fn collect(config: &Config) -> Vec<Finding> {
    let mut findings = vec![Finding {
        what: "configuration",
        result: Ok("valid".into()),
    }];

    let identity = match Identity::load(&config.teleport) {
        Ok(identity) => {
            let expires = timestamp(identity.not_after);
            let expired = identity.not_after <= SystemTime::now();
            findings.push(Finding {
                what: "identity",
                result: if expired {
                    Err((
                        format!("the certificate of {} expired at {expires}; fix: sign a new identity (`tctl auth sign --user={} --out=... --ttl=2190h`) or use tbot", identity.username, identity.username),
                        exit::CONFIG,
                    ))
                } else {
                    Ok(format!("user {}, valid until {expires}", identity.username))
                },
            });
            Some(identity)
        }
        Err(err) => {
            findings.push(Finding {
                what: "identity",
                result: Err((err.to_string(), exit::CONFIG)),
            });
            None
        }
    };

    if let Some(identity) = identity {
        match TeleportClient::connect(&config.teleport, &identity).await {
            Ok((client, connected)) => {
                let how = match connected.mode {
                    ConnectMode::Proxy => "through the Proxy (TLS routing)",
                    _ => "directly to the Auth Service",
                };
                findings.push(Finding {
                    what: "teleport",
                    result: Ok(format!(
                        "cluster {}, version {}, connected to {} {how}",
                        connected.ping.cluster_name,
                        connected.ping.server_version,
                        config.teleport.addr,
                    )),
                });
                let permissions = client.probe_permissions().await;
                for (what, result) in [
                    ("list access requests", permissions.list_requests),
                    ("read plugin data", permissions.read_plugin_data),
                    ("write plugin data", permissions.update_plugin_data),
                ] {
                    findings.push(Finding {
                        what,
                        result: result
                            .map(|()| "permitted".to_owned())
                            .map_err(|e| (e.to_string(), code_of(e.is_retryable()))),
                    });
                }
            }
            Err(err) => findings.push(Finding {
                what: "teleport",
                result: Err((err.to_string(), code_of(err.is_retryable()))),
            }),
        }
    }

    let api_key = config.opsgenie.api_key.clone().unwrap_or_default();
    let backend = match Gateway::new(&config.opsgenie, api_key) {
        Ok(gateway) => match gateway.start().send(Health).await {
            Ok(Ok(())) => Ok(format!(
                "{} accepts the API key",
                config.opsgenie.base_url()
            )),
            Ok(Err(err)) => Err((err.to_string(), code_of(err.is_retryable()))),
            Err(err) => Err((format!("the gateway stopped: {err}"), exit::UNAVAILABLE)),
        },
        Err(err) => Err((err.to_string(), exit::CONFIG)),
    };
    findings.push(Finding {
        what: "on-call backend",
        result: backend,
    });
    findings
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
