//! Loading the configuration from its layers and validating it, reporting every problem at once.
//!
//! # Layers
//!
//! Later layers win:
//!
//! 1. the schema's defaults ([`Config::default`]);
//! 2. a file, YAML (`.yaml`, `.yml`) or TOML (`.toml`) chosen by its extension;
//! 3. environment variables `TELEPORT_OPSGENIE__SECTION__KEY`: the prefix, then the key path with
//!    `__` between levels, e.g. `TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE` or
//!    `TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__ALERT_WRITE__PER_SECOND`. Names are
//!    case-insensitive (keys are lower-cased), values are strings converted to the key's type:
//!    numbers and booleans are parsed, lists are comma-separated, an empty value clears an
//!    optional key, and `auto_approval.users` takes `alice=alice@example.com,bob=bob@example.com`
//!    or one variable per user (`..__AUTO_APPROVAL__USERS__ALICE`, lower-cased).
//!
//! The layering is done here on `serde_json::Value` trees rather than with the `config` crate:
//! walking the tree ourselves lets us name every unknown key and every type error with its path,
//! instead of stopping at the first one as `try_deserialize` does.
//!
//! # Checks, all collected before anything is returned
//!
//! * unknown keys, anywhere (with a "did you mean" hint), including environment variables that
//!   carry the prefix but name no key;
//! * type errors, one per key: each value is tried on its own against the defaults, so one bad
//!   value does not hide the next;
//! * the meaning of the values ([`validate`]): credentials, referenced files, URLs, limits.
//!
//! Secrets never appear in messages. After validation `opsgenie.api_key_file` has been read into
//! `opsgenie.api_key`, so the rest of the program only reads `api_key`.
//!
//! Relative paths in the configuration are relative to the working directory of the process.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::formats::{parse_toml, parse_yaml};
use super::validate::check_semantics;
use super::walk::{describe_kind, related, Loader};
use super::Config;

use super::env::env_vars;
pub use super::problem::{ConfigError, ConfigProblem};
pub use super::validate::LOG_LEVELS;

/// Where the daemon looks for its file when no `--config` is given; it may be absent.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/teleport-opsgenie.yaml";

/// Prefix of the environment variables that override the file, including the separator.
pub const ENV_PREFIX: &str = "TELEPORT_OPSGENIE__";

/// The annotated sample printed by `teleport-opsgenie configure`.
pub const SAMPLE_YAML: &str = include_str!("../../config/teleport-opsgenie.yaml");

/// The same sample in TOML, shorter.
pub const SAMPLE_TOML: &str = include_str!("../../config/teleport-opsgenie.toml");

/// Where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The file to read, if any.
    pub file: Option<PathBuf>,
    /// The environment; `None` reads the process environment. Tests pass a map here instead of
    /// changing the process environment.
    pub env: Option<HashMap<String, String>>,
    /// Whether a missing `file` is an error (true when the user named it explicitly).
    pub require_file: bool,
}

impl Sources {
    /// The sources for the command line: the file given with `--config` (which must exist), or
    /// [`DEFAULT_CONFIG_PATH`] (which may be absent), and the process environment.
    pub fn from_cli(config: Option<PathBuf>) -> Self {
        match config {
            Some(path) => Self {
                file: Some(path),
                env: None,
                require_file: true,
            },
            None => Self {
                file: Some(PathBuf::from(DEFAULT_CONFIG_PATH)),
                env: None,
                require_file: false,
            },
        }
    }
}

/// Loads the configuration from `sources`, validates it, and reads `opsgenie.api_key_file`
/// into `opsgenie.api_key`.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    match load_with_problems(sources)? {
        (config, problems) if problems.is_empty() => Ok(config),
        (_, problems) => Err(ConfigError { problems }),
    }
}

/// For `check`: like [`load`], but problems with the files the configuration names (identity,
/// keys, API key file) do not stop it; they are returned beside the configuration so that they
/// can be reported with everything else that is wrong.
pub fn load_for_check(sources: &Sources) -> Result<(Config, Vec<ConfigProblem>), ConfigError> {
    let (config, problems) = load_with_problems(sources)?;
    if problems.iter().all(|p| p.about_a_file) {
        Ok((config, problems))
    } else {
        Err(ConfigError { problems })
    }
}

/// The assembled configuration and every problem found, or an error when it cannot even be
/// assembled.
fn load_with_problems(sources: &Sources) -> Result<(Config, Vec<ConfigProblem>), ConfigError> {
    let mut loader = Loader::new()?;

    let mut tree = Value::Object(Map::new());
    if let Some(path) = &sources.file {
        match read_file(path, sources.require_file) {
            Ok(Some(value)) => tree = value,
            Ok(None) => {}
            Err(problem) => loader.problems.push(problem),
        }
    }

    for (name, value) in env_vars(sources.env.as_ref(), &mut loader.problems) {
        loader.apply_env(&mut tree, &name, value);
    }

    let clean = loader.check_tree(&tree);
    let config = match serde_json::from_value::<Config>(clean) {
        Ok(config) => config,
        Err(e) => {
            // Every leaf deserialised on its own, so this means a bug in the checks above; still
            // no panic, and the serde message is safe because the tree passed the leaf checks.
            loader.problems.push(ConfigProblem::new(
                "(config)",
                format!("cannot be assembled: {e}"),
            ));
            return Err(ConfigError {
                problems: loader.problems,
            });
        }
    };

    let (config, semantic) = check_semantics(config);
    let bad = &loader.bad_paths;
    loader.problems.extend(
        semantic
            .into_iter()
            .filter(|p| !related(&p.path).any(|path| bad.contains(path))),
    );
    Ok((config, loader.problems))
}

/// Validates a configuration built in code (tests, examples) and resolves
/// `opsgenie.api_key_file` into `opsgenie.api_key`, exactly as [`load`] does after parsing.
pub fn validate(config: Config) -> Result<Config, ConfigError> {
    let (config, problems) = check_semantics(config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError { problems })
    }
}

/// Reads and parses the configuration file; `Ok(None)` when it is optional and absent.
fn read_file(path: &Path, required: bool) -> Result<Option<Value>, ConfigProblem> {
    let shown = path.display().to_string();
    let format = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("yaml" | "yml") => Format::Yaml,
        Some("toml") => Format::Toml,
        _ => {
            return Err(
                ConfigProblem::new(shown, "unsupported configuration file type")
                    .hint("name it *.yaml, *.yml or *.toml"),
            )
        }
    };
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(
                ConfigProblem::new(shown.clone(), "configuration file not found").hint(format!(
                    "write a sample with `teleport-opsgenie configure > {shown}`"
                )),
            )
        }
        Err(e) => {
            return Err(ConfigProblem::new(
                shown,
                format!("cannot read the configuration file: {e}"),
            ))
        }
    };
    let value = match format {
        Format::Yaml => parse_yaml(&text),
        Format::Toml => parse_toml(&text),
    }
    .map_err(|message| ConfigProblem::new(shown.clone(), message))?;
    match value {
        Value::Object(_) => Ok(Some(value)),
        // An empty file, or one holding only comments.
        Value::Null => Ok(Some(Value::Object(Map::new()))),
        other => Err(ConfigProblem::new(
            shown,
            format!(
                "expected a mapping of sections at the top level, got {}",
                describe_kind(&other)
            ),
        )),
    }
}

enum Format {
    Yaml,
    Toml,
}
