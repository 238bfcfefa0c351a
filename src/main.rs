//! The `teleport-opsgenie` command: `start`, `configure`, `check`, `version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use teleport_opsgenie::check;
use teleport_opsgenie::config::{self, Config, ConfigError, Sources};
use teleport_opsgenie::daemon::{self, exit, RunOptions};
use teleport_opsgenie::telemetry;

/// Turns Teleport access requests into Opsgenie / JSM Operations alerts.
#[derive(Debug, Parser)]
#[command(name = "teleport-opsgenie", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT.
    Start {
        /// Configuration file (YAML or TOML).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Decide and log, but write nothing to Teleport or the backend.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print an annotated sample configuration.
    Configure,
    /// Validate the configuration and check that Teleport and the backend answer.
    Check {
        /// Configuration file (YAML or TOML).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Command::Configure => {
            print!("{}", config::SAMPLE_YAML);
            exit::OK
        }
        Command::Version => {
            println!("teleport-opsgenie {}", env!("CARGO_PKG_VERSION"));
            exit::OK
        }
        Command::Start { config, dry_run } => match config::load(&Sources::from_cli(config)) {
            Ok(config) => start(config, dry_run),
            Err(err) => config_failed(&err),
        },
        Command::Check { config } => match config::load_for_check(&Sources::from_cli(config)) {
            Ok((config, file_problems)) => {
                install_crypto();
                actix_rt::System::new().block_on(check::run(&config, &file_problems))
            }
            Err(err) => config_failed(&err),
        },
    };
    ExitCode::from(code)
}

fn config_failed(err: &ConfigError) -> u8 {
    eprintln!("teleport-opsgenie: the configuration has problems:\n{err}");
    exit::CONFIG
}

fn start(config: Config, dry_run: bool) -> u8 {
    if let Err(err) = telemetry::init_logging(&config.log) {
        eprintln!("teleport-opsgenie: {err}");
        return exit::CONFIG;
    }
    install_crypto();
    let options = RunOptions {
        dry_run,
        replica: None,
    };
    match actix_rt::System::new().block_on(daemon::run(config, options)) {
        Ok(()) => exit::OK,
        Err(err) => {
            tracing::error!(error = %err, "Could not start.");
            eprintln!("teleport-opsgenie: {err}");
            err.exit_code()
        }
    }
}

fn install_crypto() {
    // reqwest and tonic share aws-lc-rs; installing it once makes every rustls config use it.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
