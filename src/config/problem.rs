//! One thing wrong with the configuration, and all of them together as the loader's error.

use std::fmt;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `opsgenie.api_key`; the file's path for problems with the file itself.
    pub path: String,
    /// What is wrong. Never contains a secret.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
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
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// The configuration is unusable. Never retryable as such: the operator must fix the file or
/// the environment (the process exits with [`crate::daemon::exit::CONFIG`]). `Display` lists every problem, one
/// per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_problems(.problems))]
pub struct ConfigError {
    /// Every problem found, in a stable order (file, environment, keys, then meaning).
    pub problems: Vec<ConfigProblem>,
}

pub(super) fn render_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
