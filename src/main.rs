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
        /// Configuration file (YAML or TOML); give it more than once to layer files, later
        /// wins [default: /etc/teleport-opsgenie.yaml, read when it exists].
        #[arg(short, long, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Drop-in folder: its *.yaml, *.yml and *.toml files are layered after the -c files,
        /// in name order [default: /etc/teleport-opsgenie.d, read when it exists].
        #[arg(long, value_name = "DIR")]
        config_dir: Option<PathBuf>,
        /// Decide and log, but write nothing to Teleport or the backend.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print an annotated sample configuration.
    Configure,
    /// Validate the configuration and check that Teleport and the backend answer.
    Check {
        /// Configuration file (YAML or TOML); give it more than once to layer files, later
        /// wins [default: /etc/teleport-opsgenie.yaml, read when it exists].
        #[arg(short, long, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Drop-in folder: its *.yaml, *.yml and *.toml files are layered after the -c files,
        /// in name order [default: /etc/teleport-opsgenie.d, read when it exists].
        #[arg(long, value_name = "DIR")]
        config_dir: Option<PathBuf>,
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
        Command::Start {
            config,
            config_dir,
            dry_run,
        } => match config::load_with_warnings(&Sources::from_cli(config, config_dir)) {
            Ok(loaded) => start(loaded.config, &loaded.warnings, dry_run),
            Err(err) => config_failed(&err),
        },
        Command::Check { config, config_dir } => {
            match config::load_for_check(&Sources::from_cli(config, config_dir)) {
                Ok(loaded) => {
                    for warning in &loaded.warnings {
                        println!("{}: {warning}", level_word(warning.level));
                    }
                    install_crypto();
                    actix_rt::System::new()
                        .block_on(check::run(&loaded.config, &loaded.file_problems))
                }
                Err(err) => config_failed(&err),
            }
        }
    };
    ExitCode::from(code)
}

fn config_failed(err: &ConfigError) -> u8 {
    for warning in &err.warnings {
        eprintln!(
            "teleport-opsgenie: {}: {warning}",
            level_word(warning.level)
        );
    }
    eprintln!("teleport-opsgenie: the configuration has problems:\n{err}");
    exit::CONFIG
}

fn level_word(level: config::Level) -> &'static str {
    match level {
        config::Level::Info => "note",
        config::Level::Warn => "warning",
    }
}

fn start(config: Config, warnings: &[config::Warning], dry_run: bool) -> u8 {
    if let Err(err) = telemetry::init_logging(&config.log) {
        eprintln!("teleport-opsgenie: {err}");
        return exit::CONFIG;
    }
    for warning in warnings {
        warning.log();
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
