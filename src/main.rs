//! The `teleport-opsgenie` command: `start`, `configure`, `check`, `version`.

// The same lints as the library (src/lib.rs).
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]
#![warn(clippy::dbg_macro, clippy::todo, clippy::unimplemented)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use teleport_opsgenie::check;
use teleport_opsgenie::config::{self, Config, ConfigError, ConfigProblem, LogConfig, Sources};
use teleport_opsgenie::daemon::{self, exit, RunOptions};
use teleport_opsgenie::telemetry;

/// Turns Teleport access requests into Opsgenie / JSM Operations alerts.
#[derive(Debug, Parser)]
#[command(name = "teleport-opsgenie", version, about)]
struct Cli {
    /// Log the daemon's own debug lines (as `log.level: debug`); accepted before or after the
    /// subcommand. `RUST_LOG`, when set, still overrides every level.
    #[arg(short, long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

/// The formats `configure` prints the sample in.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SampleFormat {
    /// `config/teleport-opsgenie.yaml`, annotated.
    Yaml,
    /// `config/teleport-opsgenie.toml`, shorter.
    Toml,
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
    Configure {
        /// The sample's format.
        #[arg(long, value_enum, default_value = "yaml")]
        format: SampleFormat,
    },
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
        Command::Configure { format } => {
            print!(
                "{}",
                match format {
                    SampleFormat::Yaml => config::SAMPLE_YAML,
                    SampleFormat::Toml => config::SAMPLE_TOML,
                }
            );
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
            Ok(loaded) => start(
                with_debug(loaded.config, cli.debug),
                &loaded.warnings,
                dry_run,
            ),
            Err(err) => config_failed(&err),
        },
        Command::Check { config, config_dir } => {
            match config::load_for_check(&Sources::from_cli(config, config_dir)) {
                Ok(loaded) => {
                    for warning in &loaded.warnings {
                        println!("{}: {warning}", level_word(warning.level));
                    }
                    check(&loaded.config, &loaded.file_problems, cli.debug)
                }
                Err(err) => config_failed(&err),
            }
        }
    };
    ExitCode::from(code)
}

/// The exit code for a configuration that did not load: 69 when every problem is a file the
/// configuration names that cannot be read (`check` reports the same as 69), else 78.
fn config_failed(err: &ConfigError) -> u8 {
    for warning in &err.warnings {
        eprintln!(
            "teleport-opsgenie: {}: {warning}",
            level_word(warning.level)
        );
    }
    eprintln!("teleport-opsgenie: the configuration has problems:\n{err}");
    if !err.problems.is_empty() && err.problems.iter().all(|p| p.about_a_file) {
        exit::UNAVAILABLE
    } else {
        exit::CONFIG
    }
}

/// `-d` raises the daemon's own level to `debug` (the libraries stay quiet, see `telemetry`).
fn with_debug(mut config: Config, debug: bool) -> Config {
    if debug {
        config.log.level = "debug".into();
    }
    config
}

fn init_logging(log: &LogConfig) -> Result<(), u8> {
    telemetry::init_logging(log).map_err(|err| {
        eprintln!("teleport-opsgenie: {err}");
        exit::CONFIG
    })
}

fn check(config: &Config, file_problems: &[ConfigProblem], debug: bool) -> u8 {
    // The report on standard output is what `check` is for: its logs show only warnings, or the
    // daemon's debug lines with `-d`.
    let log = LogConfig {
        level: if debug { "debug" } else { "warn" }.into(),
        ..config.log.clone()
    };
    if let Err(code) = init_logging(&log) {
        return code;
    }
    install_crypto();
    actix_rt::System::new().block_on(check::run(config, file_problems))
}

fn level_word(level: config::Level) -> &'static str {
    match level {
        config::Level::Info => "note",
        config::Level::Warn => "warning",
    }
}

fn start(config: Config, warnings: &[config::Warning], dry_run: bool) -> u8 {
    if let Err(code) = init_logging(&config.log) {
        return code;
    }
    for warning in warnings {
        warning.log();
    }
    install_crypto();
    let options = RunOptions {
        dry_run,
        replica: None,
        clock: Default::default(),
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
