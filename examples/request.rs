//! Plays the guide's `tctl request` steps against `cargo run --example sandbox -- --serve`, over
//! the same gRPC API the daemon uses, with the administrator identity the sandbox wrote.
//!
//! ```text
//! cargo run --example request -- create myuser --roles=editor [--reason=TEXT]
//! cargo run --example request -- list
//! cargo run --example request -- approve ID [--reason=TEXT]
//! cargo run --example request -- deny ID [--reason=TEXT]
//! cargo run --example request -- delete ID
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use teleport_opsgenie::config::{ConnectMode, TeleportConfig};
use teleport_opsgenie::core::model::RequestState;
use teleport_opsgenie::sim::teleport::requester::Requester;
use teleport_opsgenie::teleport::client::TeleportClient;
use teleport_opsgenie::teleport::identity::Identity;

fn usage() -> ExitCode {
    eprintln!(
        "usage: request create USER --roles=ROLE[,ROLE] [--reason=TEXT] | list | approve ID [--reason=TEXT] | deny ID [--reason=TEXT] | delete ID"
    );
    ExitCode::from(64)
}

fn flag(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("--{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
}

#[actix_rt::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first().cloned() else {
        return usage();
    };
    match run(&command, &args[1..]).await {
        Ok(Some(code)) => code,
        Ok(None) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("request: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    command: &str,
    args: &[String],
) -> Result<Option<ExitCode>, Box<dyn std::error::Error>> {
    // The folder `sandbox --serve` printed: TELEPORT_OPSGENIE_SANDBOX_DIR, or its default.
    let state_file = std::env::var_os("TELEPORT_OPSGENIE_SANDBOX_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("teleport-opsgenie-sandbox"))
        .join("sandbox.json");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).map_err(|e| {
            format!(
                "{}: {e}; start `cargo run --example sandbox -- --serve` first, or set \
                 TELEPORT_OPSGENIE_SANDBOX_DIR to the folder it printed",
                state_file.display()
            )
        })?)?;
    let config = TeleportConfig {
        addr: state["teleport_addr"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        mode: ConnectMode::Auth,
        identity: state["admin_identity"].as_str().map(PathBuf::from),
        ..TeleportConfig::default()
    };
    let identity = Identity::load(&config)?;
    let (client, _) = TeleportClient::connect(&config, &identity).await?;
    let requester = Requester(client.clone());
    let reason = flag(args, "reason").unwrap_or_default();
    match (command, args.first()) {
        ("create", Some(user)) => {
            let Some(roles) = flag(args, "roles") else {
                return Ok(Some(usage()));
            };
            let roles: Vec<String> = roles.split(',').map(str::to_owned).collect();
            let request = requester.create(user, &roles, &reason).await?;
            println!("{}", request.id);
        }
        ("list", _) => {
            for r in client.list_access_requests().await? {
                println!(
                    "{}  {:<9} {:<28} {}",
                    r.id,
                    r.state.as_str(),
                    r.user,
                    r.roles.join(",")
                );
            }
        }
        ("approve", Some(id)) => {
            requester
                .set_state(id, RequestState::Approved, &reason)
                .await?;
        }
        ("deny", Some(id)) => {
            requester
                .set_state(id, RequestState::Denied, &reason)
                .await?;
        }
        ("delete", Some(id)) => requester.delete(id).await?,
        _ => return Ok(Some(usage())),
    }
    Ok(None)
}
