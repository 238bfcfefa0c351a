//! Logging: a `tracing` subscriber writing text or JSON lines to standard error.
//!
//! The level comes from `log.level` unless `RUST_LOG` is set, in which case `RUST_LOG` is used
//! as a full filter (`info,teleport_opsgenie=debug`, …). `log.level` sets the daemon's own
//! lines (target `teleport_opsgenie`); its libraries (rustls, h2, hyper, tonic, actix, …) log
//! at `warn` at most, because their debug output (frames, polls, handshakes) drowns the
//! daemon's and their `info` lines say nothing an operator acts on. JSON lines put the event's fields at the
//! top level and include the fields of the current span, so a request id recorded on a span
//! appears on every line logged inside it.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::load::LOG_LEVELS;
use crate::config::{LogConfig, LogFormat};

/// The tracing target of the daemon's own lines (the library and the binary share it).
const OWN_TARGET: &str = "teleport_opsgenie";

/// Logging could not be set up. Not retryable: the filter must be fixed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` is set but is not a valid filter.
    #[error("RUST_LOG is not a valid log filter: {0}")]
    BadRustLog(String),
    /// `log.level` is not a level (validation normally catches this first).
    #[error("log.level {level:?} is not one of error, warn, info, debug, trace: {reason}")]
    BadLevel {
        /// The configured level.
        level: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// Installs the global subscriber for `cfg`. Calling it again (as tests do) keeps the first
/// subscriber and returns `Ok`.
pub fn init_logging(cfg: &LogConfig) -> Result<(), TelemetryError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = build_filter(&cfg.level, rust_log.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a global subscriber (or `log` logger) is already installed;
    // that is the idempotence tests rely on, so the error is deliberately ignored.
    match cfg.format {
        LogFormat::Text => {
            let _ = builder
                .with_ansi(std::io::stderr().is_terminal())
                .try_init();
        }
        LogFormat::Json => {
            let _ = builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .try_init();
        }
    }
    Ok(())
}

/// The filter for `level`, or for `rust_log` when it is set and not blank.
fn build_filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    if let Some(directives) = rust_log.filter(|s| !s.trim().is_empty()) {
        return EnvFilter::try_new(directives)
            .map_err(|e| TelemetryError::BadRustLog(e.to_string()));
    }
    let lowered = level.trim().to_ascii_lowercase();
    if !LOG_LEVELS.contains(&lowered.as_str()) {
        // EnvFilter would take an unknown word as a target name and log nothing useful.
        return Err(TelemetryError::BadLevel {
            level: level.to_owned(),
            reason: "unknown level".into(),
        });
    }
    EnvFilter::try_new(level_directives(level)).map_err(|e| TelemetryError::BadLevel {
        level: level.to_owned(),
        reason: e.to_string(),
    })
}

/// The filter directives for a `log.level`: the level for the daemon's own target, and
/// everything else at `warn` (or `error`, when that is the level).
fn level_directives(level: &str) -> String {
    let level = level.trim().to_ascii_lowercase();
    let others = if level == "error" { "error" } else { "warn" };
    format!("{others},{OWN_TARGET}={level}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_is_lowercased_and_applies_to_the_daemon_only() {
        assert_eq!(level_directives("INFO"), "warn,teleport_opsgenie=info");
        assert_eq!(level_directives("debug"), "warn,teleport_opsgenie=debug");
        assert_eq!(level_directives("error"), "error,teleport_opsgenie=error");
    }

    #[test]
    fn debug_shows_the_daemon_and_hides_the_libraries() {
        use tracing::level_filters::LevelFilter;
        use tracing::subscriber::with_default;
        use tracing_subscriber::layer::SubscriberExt;
        // A subscriber that records which targets got through the filter.
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        struct Record(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Record {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                if let Ok(mut seen) = self.0.lock() {
                    seen.push(event.metadata().target().to_owned());
                }
            }
        }
        let filter = build_filter("debug", None).unwrap();
        assert!(filter.max_level_hint() >= Some(LevelFilter::DEBUG));
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(Record(seen.clone()));
        with_default(subscriber, || {
            tracing::debug!(target: "teleport_opsgenie::daemon", "own debug");
            tracing::debug!(target: "rustls::client", "handshake detail");
            tracing::debug!(target: "h2::codec", "frame");
            tracing::info!(target: "hyper_util::client", "pool");
            tracing::warn!(target: "tonic::transport", "library warning");
        });
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, ["teleport_opsgenie::daemon", "tonic::transport"]);
    }

    #[test]
    fn rust_log_wins_over_level() {
        let filter = build_filter("info", Some("teleport_opsgenie=trace")).unwrap();
        assert!(filter.to_string().contains("teleport_opsgenie=trace"));
        // Blank RUST_LOG is treated as unset.
        let filter = build_filter("warn", Some("  ")).unwrap();
        assert_eq!(filter.to_string(), "teleport_opsgenie=warn,warn");
    }

    #[test]
    fn bad_filters_are_errors() {
        assert!(matches!(
            build_filter("info", Some("teleport_opsgenie=loudest")),
            Err(TelemetryError::BadRustLog(_))
        ));
        assert!(matches!(
            build_filter("loud", None),
            Err(TelemetryError::BadLevel { .. })
        ));
    }

    #[test]
    fn init_is_idempotent() {
        let cfg = LogConfig::default();
        init_logging(&cfg).unwrap();
        init_logging(&LogConfig {
            format: LogFormat::Json,
            ..cfg
        })
        .unwrap();
        tracing::info!("logging initialised twice without error");
    }
}
