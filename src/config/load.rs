//! Loading the configuration from its layers and validating it, reporting every problem at once.
//!
//! # Layers
//!
//! Later layers win; the `config` crate merges them ([`mod@super::layers`]):
//!
//! 1. the schema's defaults ([`Config::default`]);
//! 2. each file given with `-c`, in order (or [`DEFAULT_CONFIG_PATH`], which may be absent),
//!    YAML (`.yaml`, `.yml`) or TOML (`.toml`) chosen by its extension;
//! 3. the drop-in folder ([`DEFAULT_CONFIG_DIR`] or `--config-dir`): its `*.yaml`, `*.yml` and
//!    `*.toml` files in name order, the way systemd and Teleport operators layer site and host
//!    settings; read only when it exists;
//! 4. environment variables `TELEPORT_OPSGENIE__SECTION__KEY`: the prefix, then the key path with
//!    `__` between levels, e.g. `TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE` or
//!    `TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__ALERT__PER_SECOND`. Names are
//!    case-insensitive (keys are lower-cased), values are strings converted to the key's type:
//!    numbers and booleans are parsed, lists are comma-separated, an empty value clears an
//!    optional key, and `auto_approval.users` takes `alice=alice@example.com,bob=bob@example.com`
//!    or one variable per user (`..__AUTO_APPROVAL__USERS__ALICE`, lower-cased).
//!
//! The `config` crate only layers, into an untyped tree; parsing is ours (secret-safe errors,
//! limits on size and depth), and so is the schema walk, which names every unknown key and
//! every type error with its path, instead of stopping at the first as `try_deserialize` does.
//!
//! # Checks, all collected before anything is returned
//!
//! * the files: missing (when named), unreadable, too large, unparsable. A file that does not
//!   parse stops here, with every such file named: the rest would be checked against a
//!   half-read configuration and only yield errors that are not there;
//! * unknown keys, anywhere (with a "did you mean" hint), including environment variables that
//!   carry the prefix but name no key;
//! * type errors, one per key: each value is tried on its own against the defaults, so one bad
//!   value does not hide the next;
//! * the meaning of the values ([`validate`]): credentials, referenced files, URLs, ranges.
//!
//! Each problem names the file or variable its value came from. Secrets never appear in
//! messages ([`mod@super::safe`]). After validation `opsgenie.api_key_file` has been read into
//! `opsgenie.api_key`, so the rest of the program only reads `api_key`.
//!
//! Relative paths in the configuration are relative to the working directory of the process.

use super::aliases;
use super::layers::layer;
use super::validate::check_semantics;
use super::walk::{related, Loader};
use super::Config;

pub use super::layers::MAX_FILE_BYTES;
pub use super::problem::{ConfigError, ConfigProblem, Level, Warning};
pub use super::sources::{Sources, DEFAULT_CONFIG_DIR, DEFAULT_CONFIG_PATH, ENV_PREFIX};
pub use super::validate::LOG_LEVELS;

/// The annotated sample printed by `teleport-opsgenie configure`.
pub const SAMPLE_YAML: &str = include_str!("../../config/teleport-opsgenie.yaml");

/// The same sample in TOML, shorter.
pub const SAMPLE_TOML: &str = include_str!("../../config/teleport-opsgenie.toml");

/// A configuration that loaded, and what `check` and `start` must tell the operator about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Problems with the files the configuration names (identity, keys, API key file); only
    /// [`load_for_check`] lets these through, to report them with everything else.
    pub file_problems: Vec<ConfigProblem>,
    /// Deprecated keys, ignored variables, the default file not found, …
    pub warnings: Vec<Warning>,
}

/// Loads the configuration from `sources`, validates it, and reads `opsgenie.api_key_file`
/// into `opsgenie.api_key`. Warnings are dropped; `start` uses [`load_with_warnings`].
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    load_with_warnings(sources).map(|loaded| loaded.config)
}

/// Like [`load`], with the warnings found on the way.
pub fn load_with_warnings(sources: &Sources) -> Result<Loaded, ConfigError> {
    match load_with_problems(sources)? {
        (config, problems, warnings) if problems.is_empty() => Ok(Loaded {
            config,
            file_problems: Vec::new(),
            warnings,
        }),
        (_, problems, warnings) => Err(ConfigError { problems, warnings }),
    }
}

/// For `check`: like [`load_with_warnings`], but problems with the files the configuration
/// names (identity, keys, API key file) do not stop it; they are returned beside the
/// configuration so that they can be reported with everything else that is wrong.
pub fn load_for_check(sources: &Sources) -> Result<Loaded, ConfigError> {
    let (config, problems, warnings) = load_with_problems(sources)?;
    if problems.iter().all(|p| p.about_a_file) {
        Ok(Loaded {
            config,
            file_problems: problems,
            warnings,
        })
    } else {
        Err(ConfigError { problems, warnings })
    }
}

type WithProblems = (Config, Vec<ConfigProblem>, Vec<Warning>);

/// The assembled configuration and every problem found, or an error when it cannot even be
/// assembled.
fn load_with_problems(sources: &Sources) -> Result<WithProblems, ConfigError> {
    let mut loader = Loader::new()?;
    let mut warnings = Vec::new();

    let Some(mut layered) = layer(
        sources,
        &loader.defaults,
        &mut loader.problems,
        &mut warnings,
    ) else {
        return Err(ConfigError {
            problems: loader.problems,
            warnings,
        });
    };
    aliases::apply(
        &mut layered.tree,
        &mut layered.origins,
        &mut loader.problems,
        &mut warnings,
    );
    loader.origins = layered.origins;

    let clean = loader.check_tree(&layered.tree);
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
                warnings,
            });
        }
    };

    let (config, semantic) = check_semantics(config);
    let bad = &loader.bad_paths;
    let semantic: Vec<ConfigProblem> = semantic
        .into_iter()
        .filter(|p| !related(&p.path).any(|path| bad.contains(path)))
        .map(|mut p| {
            // Only a value set at exactly this path is "the" source: a problem with a whole
            // section or with two keys together has none.
            if p.origin.is_none() {
                p.origin = loader.origins.get(&p.path).cloned();
            }
            p
        })
        .collect();
    loader.problems.extend(semantic);
    Ok((config, loader.problems, warnings))
}

/// Validates a configuration built in code (tests, examples) and resolves
/// `opsgenie.api_key_file` into `opsgenie.api_key`, exactly as [`load`] does after parsing.
pub fn validate(config: Config) -> Result<Config, ConfigError> {
    let (config, problems) = check_semantics(config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::of(problems))
    }
}
