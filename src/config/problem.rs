//! One thing wrong with the configuration, and all of them together as the loader's error; and
//! warnings, for what works but should be changed.

use std::fmt;

use super::safe;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `opsgenie.api_key`; the file's path for problems with the file itself.
    pub path: String,
    /// What is wrong. Never contains a secret.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
    /// Where the bad value was written: `file \`/etc/…/override.yaml\``, or `environment
    /// variable TELEPORT_OPSGENIE__…`. `None` for problems with no single source (a missing
    /// key, two keys that disagree) and for configurations built in code.
    pub origin: Option<String>,
    /// Whether the problem is with a file the configuration names (missing, unreadable, empty)
    /// rather than with the configuration itself. `check` reports these as findings.
    pub about_a_file: bool,
}

impl ConfigProblem {
    pub(super) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            hint: None,
            origin: None,
            about_a_file: false,
        }
    }

    pub(super) fn about_a_file(mut self) -> Self {
        self.about_a_file = true;
        self
    }

    pub(super) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(super) fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every part is escaped once more here: paths are made of the operator's keys, which
        // may hold control or bidi characters.
        write!(
            f,
            "{}: {}",
            safe::key_path(&self.path),
            safe::escape(&self.message)
        )?;
        match (&self.hint, &self.origin) {
            (Some(hint), Some(origin)) => write!(
                f,
                " ({}; set in {})",
                safe::escape(hint),
                safe::escape(origin)
            ),
            (Some(hint), None) => write!(f, " ({})", safe::escape(hint)),
            (None, Some(origin)) => write!(f, " (set in {})", safe::escape(origin)),
            (None, None) => Ok(()),
        }
    }
}

/// The configuration is unusable. Never retryable as such: the operator must fix the file or
/// the environment (the process exits with [`crate::daemon::exit::CONFIG`]). `Display` lists
/// every problem, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_problems(.problems))]
pub struct ConfigError {
    /// Every problem found, in a stable order (files, environment, keys, then meaning).
    pub problems: Vec<ConfigProblem>,
    /// Warnings found on the way, which may explain a problem (a variable ignored for its
    /// name, the default file not found). Not part of `Display`.
    pub warnings: Vec<Warning>,
}

impl ConfigError {
    /// An error of `problems`, with no warnings.
    pub(super) fn of(problems: Vec<ConfigProblem>) -> Self {
        Self {
            problems,
            warnings: Vec::new(),
        }
    }
}

fn render_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// How loud a [`Warning`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Worth knowing (e.g. which files were read); logged at info.
    Info,
    /// Works, but should be changed (a deprecated key, an ignored variable); logged at warn.
    Warn,
}

/// Something the operator should know about the configuration that does not stop the daemon.
/// The loader returns them beside the configuration; `start` logs them once logging is set up,
/// and `check` prints them with its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// How loud it is.
    pub level: Level,
    /// Dotted key path, a file, or an environment variable's name.
    pub path: String,
    /// What was found. Never contains a secret.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Warning {
    pub(super) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            level: Level::Warn,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub(super) fn info(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            level: Level::Info,
            ..Self::new(path, message)
        }
    }

    pub(super) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Logs the warning through `tracing`, at its level.
    pub fn log(&self) {
        match self.level {
            Level::Info => tracing::info!("Configuration: {self}"),
            Level::Warn => tracing::warn!("Configuration: {self}"),
        }
    }

    fn text(&self) -> String {
        match &self.hint {
            Some(hint) => format!("{} ({})", safe::escape(&self.message), safe::escape(hint)),
            None => safe::escape(&self.message),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", safe::key_path(&self.path), self.text())
    }
}
