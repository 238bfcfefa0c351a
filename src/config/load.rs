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

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::{Config, Secret};

/// Where the daemon looks for its file when no `--config` is given; it may be absent.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/teleport-opsgenie.yaml";

/// Prefix of the environment variables that override the file, including the separator.
pub const ENV_PREFIX: &str = "TELEPORT_OPSGENIE__";

/// The annotated sample printed by `teleport-opsgenie configure`.
pub const SAMPLE_YAML: &str = include_str!("../../config/teleport-opsgenie.yaml");

/// The same sample in TOML, shorter.
pub const SAMPLE_TOML: &str = include_str!("../../config/teleport-opsgenie.toml");

/// Keys whose value is a free-form map: their own keys are data, not schema.
const FREE_MAPS: &[&str] = &["auto_approval.users"];

/// Keys whose value must never be echoed, not even in a type error.
const SECRET_KEYS: &[&str] = &["opsgenie.api_key"];

/// Optional duration keys (their default is `null`, so they cannot be recognised by the default).
const OPTIONAL_DURATION_KEYS: &[&str] = &["auto_approval.max_duration"];

/// Keys checked together: a type error on one makes the semantic checks of the group moot
/// (e.g. a malformed `api_key` would otherwise also yield "no API key").
const RELATED_KEYS: &[&[&str]] = &[
    &["opsgenie.api_key", "opsgenie.api_key_file"],
    &[
        "teleport",
        "teleport.identity",
        "teleport.client_key",
        "teleport.client_crt",
        "teleport.root_cas",
    ],
];

/// `path` and the keys checked together with it.
fn related(path: &str) -> impl Iterator<Item = &str> {
    let group = RELATED_KEYS
        .iter()
        .find(|group| group.contains(&path))
        .map_or(&[][..], |group| *group);
    std::iter::once(path).chain(group.iter().copied())
}

/// An API key file larger than this is surely the wrong file.
const MAX_API_KEY_FILE_BYTES: u64 = 4096;

/// Opsgenie's limits on alert tags.
const MAX_TAGS: usize = 20;
const MAX_TAG_CHARS: usize = 50;
/// Opsgenie's limit on an alert's `source`.
const MAX_SOURCE_CHARS: usize = 100;

/// Accepted `log.level` values.
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

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
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            hint: None,
            about_a_file: false,
        }
    }

    fn about_a_file(mut self) -> Self {
        self.about_a_file = true;
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn maybe_hint(mut self, hint: Option<String>) -> Self {
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

fn render_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
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

/// Collects problems while the layers are merged and checked.
struct Loader {
    /// The defaults as a JSON tree: the schema that keys and types are checked against.
    defaults: Value,
    problems: Vec<ConfigProblem>,
    /// Dotted paths set from the environment, and the variable that set each.
    env_origin: HashMap<String, String>,
    /// Paths with a type error: their later semantic problems would only repeat it.
    bad_paths: BTreeSet<String>,
}

impl Loader {
    fn new() -> Result<Self, ConfigError> {
        let defaults = serde_json::to_value(Config::default()).map_err(|e| ConfigError {
            problems: vec![ConfigProblem::new(
                "(defaults)",
                format!("cannot be serialised: {e}"),
            )],
        })?;
        Ok(Self {
            defaults,
            problems: Vec::new(),
            env_origin: HashMap::new(),
            bad_paths: BTreeSet::new(),
        })
    }

    /// Puts one environment variable into `tree`, converted to the type its key expects.
    fn apply_env(&mut self, tree: &mut Value, name: &str, value: String) {
        let rest = name.get(ENV_PREFIX.len()..).unwrap_or_default();
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let dotted = segments.join(".");
        let unknown = |suggestion: Option<String>| {
            ConfigProblem::new(
                dotted.clone(),
                format!("unknown key in environment variable {name}"),
            )
            .maybe_hint(suggestion)
        };

        let mut node = &self.defaults;
        let mut free_map_entry = false;
        for (i, segment) in segments.iter().enumerate() {
            let parent = segments[..i].join(".");
            if segment.is_empty() {
                self.problems.push(unknown(Some(format!(
                    "levels are separated by exactly two underscores, e.g. {ENV_PREFIX}OPSGENIE__PRIORITY"
                ))));
                return;
            }
            if FREE_MAPS.contains(&parent.as_str()) {
                if i + 1 != segments.len() {
                    self.problems.push(unknown(Some(format!(
                        "entries of `{parent}` are set as {ENV_PREFIX}{}__<NAME>",
                        parent.replace('.', "__").to_ascii_uppercase()
                    ))));
                    return;
                }
                free_map_entry = true;
                break;
            }
            match node {
                Value::Object(map) => match map.get(segment) {
                    Some(child) => node = child,
                    None => {
                        let hint = suggest_key(&self.defaults, &parent, segment);
                        self.problems.push(unknown(hint));
                        return;
                    }
                },
                _ => {
                    self.problems.push(unknown(Some(format!(
                        "`{parent}` is a single value, not a section"
                    ))));
                    return;
                }
            }
        }

        let converted = if free_map_entry {
            Value::String(value)
        } else if FREE_MAPS.contains(&dotted.as_str()) {
            match parse_pairs(&value) {
                Some(map) => Value::Object(map),
                None => {
                    self.problems.push(
                        ConfigProblem::new(
                            dotted.clone(),
                            format!(
                                "environment variable {name} is not a list of name=value pairs"
                            ),
                        )
                        .hint("write alice=alice@example.com,bob=bob@example.com"),
                    );
                    return;
                }
            }
        } else {
            match node {
                Value::Object(_) => {
                    self.problems.push(
                        ConfigProblem::new(
                            dotted.clone(),
                            format!("environment variable {name} names a section, not a key"),
                        )
                        .hint(format!("set its keys one by one, e.g. {name}__<KEY>")),
                    );
                    return;
                }
                Value::Bool(_) => parse_bool(&value).map_or(Value::String(value), Value::Bool),
                Value::Number(n) => parse_number(&value, n).unwrap_or(Value::String(value)),
                Value::Array(_) => Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                ),
                // Every optional key holds a string (a path, a URL, a duration...); an empty
                // value clears it, which lets the environment undo a file's setting.
                Value::Null if value.is_empty() => Value::Null,
                _ => Value::String(value),
            }
        };
        set_at(tree, &segments, converted);
        self.env_origin.insert(dotted, name.to_owned());
    }

    /// Checks the merged user tree for unknown keys and type errors, and returns the defaults
    /// overlaid with every value that passed.
    fn check_tree(&mut self, tree: &Value) -> Value {
        let mut clean = self.defaults.clone();
        let defaults = self.defaults.clone();
        let mut path = Vec::new();
        self.walk(&defaults, tree, &mut path, &mut clean);
        clean
    }

    fn walk(&mut self, defaults: &Value, user: &Value, path: &mut Vec<String>, clean: &mut Value) {
        let Value::Object(user) = user else {
            return;
        };
        let Value::Object(known) = defaults else {
            return;
        };
        for (key, value) in user {
            path.push(key.clone());
            let dotted = path.join(".");
            match known.get(key) {
                None => {
                    let parent = path[..path.len() - 1].join(".");
                    let hint = suggest_key(&self.defaults, &parent, key);
                    self.problems
                        .push(ConfigProblem::new(dotted, "unknown key").maybe_hint(hint));
                }
                Some(Value::Object(_)) if FREE_MAPS.contains(&dotted.as_str()) => match value {
                    Value::Object(entries) => {
                        for (name, entry) in entries {
                            path.push(name.clone());
                            self.check_leaf(path, entry, clean);
                            path.pop();
                        }
                    }
                    Value::Null => {}
                    other => self.type_problem(
                        dotted,
                        format!("expected a table of names, got {}", describe(other)),
                        Vec::new(),
                    ),
                },
                Some(section @ Value::Object(_)) => match value {
                    Value::Object(_) => self.walk(section, value, path, clean),
                    // `teleport:` with nothing under it: an empty section.
                    Value::Null => {}
                    other => self.type_problem(
                        dotted,
                        format!("expected a section of keys, got {}", describe(other)),
                        Vec::new(),
                    ),
                },
                Some(_) => self.check_leaf(path, value, clean),
            }
            path.pop();
        }
    }

    /// Tries `value` at `path` on its own against the defaults; keeps it in `clean` if it fits.
    fn check_leaf(&mut self, path: &[String], value: &Value, clean: &mut Value) {
        let mut probe = self.defaults.clone();
        set_at(&mut probe, path, value.clone());
        match serde_json::from_value::<Config>(probe) {
            Ok(_) => set_at(clean, path, value.clone()),
            Err(e) => {
                let dotted = path.join(".");
                let message = type_message(&dotted, value, &e.to_string());
                let mut hints = Vec::new();
                if message.contains("expected a boolean") {
                    hints.push("write true or false".to_owned());
                }
                if self.is_duration_key(&dotted) {
                    hints.push("write a duration such as 500ms, 30s, 5m or 1h30m".to_owned());
                }
                self.type_problem(dotted, message, hints);
            }
        }
    }

    /// Records a type error at `dotted`, with `hints` and, if the environment set the key, the
    /// variable that did.
    fn type_problem(&mut self, dotted: String, message: String, mut hints: Vec<String>) {
        if let Some(var) = self.env_origin.get(&dotted) {
            hints.push(format!("set by environment variable {var}"));
        }
        let hint = (!hints.is_empty()).then(|| hints.join("; "));
        self.bad_paths.insert(dotted.clone());
        self.problems
            .push(ConfigProblem::new(dotted, message).maybe_hint(hint));
    }

    fn is_duration_key(&self, dotted: &str) -> bool {
        if OPTIONAL_DURATION_KEYS.contains(&dotted) {
            return true;
        }
        let segments: Vec<&str> = dotted.split('.').collect();
        matches!(get_at(&self.defaults, &segments), Some(Value::String(s))
            if humantime::parse_duration(s).is_ok())
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

fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    value
        .apply_merge()
        .map_err(|e| format!("invalid YAML merge key: {e}"))?;
    yaml_to_json(value)
}

fn yaml_to_json(value: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                // NaN and infinities have no JSON form; as a string they fail the type check.
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(n.to_string()), Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let key = match key {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    _ => return Err("invalid YAML: keys must be plain scalars".into()),
                };
                map.insert(key, yaml_to_json(value)?);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

fn parse_toml(text: &str) -> Result<Value, String> {
    match text.parse::<toml::Table>() {
        Ok(table) => Ok(toml_to_json(toml::Value::Table(table))),
        Err(e) => {
            // toml's Display quotes the offending line, which may hold a secret: report only
            // the message and the position.
            let position = e
                .span()
                .map(|span| {
                    let before = text.get(..span.start).unwrap_or(text);
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!(" at line {line} column {column}")
                })
                .unwrap_or_default();
            Err(format!("invalid TOML{position}: {}", e.message().trim()))
        }
    }
}

fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map_or_else(|| Value::String(f.to_string()), Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(k, v)| (k, toml_to_json(v)))
                .collect(),
        ),
    }
}

/// The environment variables carrying our prefix, sorted by name for a stable report.
fn env_vars(
    injected: Option<&HashMap<String, String>>,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<(String, String)> {
    let ours = |name: &str| {
        name.get(..ENV_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
    };
    let mut vars: Vec<(String, String)> = match injected {
        Some(map) => map
            .iter()
            .filter(|(name, _)| ours(name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
        None => std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.to_string_lossy().into_owned();
                if !ours(&name) {
                    return None;
                }
                match value.into_string() {
                    Ok(value) => Some((name, value)),
                    Err(_) => {
                        problems.push(ConfigProblem::new(
                            name,
                            "environment variable is not valid UTF-8",
                        ));
                        None
                    }
                }
            })
            .collect(),
    };
    vars.sort();
    vars
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_number(s: &str, like: &serde_json::Number) -> Option<Value> {
    let s = s.trim();
    if like.is_f64() {
        return s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number);
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(Value::from(u));
    }
    // Negative numbers go through so that the type check says "expected u32, got -1".
    s.parse::<i64>().ok().map(Value::from)
}

/// `a=b,c=d` as a map; `None` when an entry has no `=` or no name.
fn parse_pairs(s: &str) -> Option<Map<String, Value>> {
    let mut map = Map::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, value) = entry.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        map.insert(name.to_owned(), Value::String(value.trim().to_owned()));
    }
    Some(map)
}

/// Sets `value` at `path`, creating (or replacing non-table) sections on the way.
fn set_at(tree: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *tree = value;
        return;
    };
    let mut node = tree;
    for segment in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        node = map
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        map.insert(last.clone(), value);
    }
}

fn get_at<'a>(tree: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(tree, |node, segment| node.as_object()?.get(*segment))
}

/// "did you mean" for an unknown `key` under the section `parent` ("" for the top level).
fn suggest_key(defaults: &Value, parent: &str, key: &str) -> Option<String> {
    let segments: Vec<&str> = if parent.is_empty() {
        vec![]
    } else {
        parent.split('.').collect()
    };
    let siblings: Vec<&str> = get_at(defaults, &segments)
        .and_then(Value::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if let Some(best) = closest(key, siblings.iter().copied()) {
        return Some(format!("did you mean \"{best}\"?"));
    }
    // The right key in the wrong section, e.g. `teleport.api_key`.
    let mut elsewhere = Vec::new();
    collect_paths(defaults, &mut Vec::new(), &mut elsewhere);
    let lowered = key.to_ascii_lowercase();
    elsewhere
        .into_iter()
        .find(|p| p.rsplit('.').next() == Some(lowered.as_str()) && p != parent)
        .map(|p| format!("did you mean \"{p}\"?"))
}

fn collect_paths(node: &Value, prefix: &mut Vec<String>, out: &mut Vec<String>) {
    if let Value::Object(map) = node {
        for (key, child) in map {
            prefix.push(key.clone());
            out.push(prefix.join("."));
            collect_paths(child, prefix, out);
            prefix.pop();
        }
    }
}

/// The candidate closest to `key` by edit distance, if close enough to be a typo.
fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    let limit = match key.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    candidates
        .map(|c| (edit_distance(&key, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting an adjacent transposition as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the dynamic-programming table.
    let mut two_back: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(two_back[j - 2] + 1);
            }
            cur[j] = best;
        }
        std::mem::swap(&mut two_back, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// A type error as "expected X, got Y", never echoing a secret.
fn type_message(path: &str, value: &Value, serde_message: &str) -> String {
    let secret = SECRET_KEYS.contains(&path);
    let got = if secret {
        describe_kind(value).to_owned()
    } else {
        describe(value)
    };
    // serde's messages look like "invalid type: string \"maybe\", expected a boolean" or
    // "unknown variant `x`, expected one of `a`, `b`": the part after ", expected " names the
    // type and never the value.
    if let Some(idx) = serde_message.rfind(", expected ") {
        let expected = friendly_expected(&serde_message[idx + 2..]);
        return format!("{expected}, got {got}");
    }
    if secret {
        format!("invalid value ({got})")
    } else {
        format!("invalid value {got}: {serde_message}")
    }
}

fn friendly_expected(expected: &str) -> String {
    let plain = match expected {
        "expected u32" => "expected a whole number from 0 to 4294967295",
        "expected usize" | "expected u64" => "expected a whole number (0 or more)",
        "expected a sequence" => "expected a list",
        "expected a map" => "expected a table",
        "expected socket address" => "expected an address like 127.0.0.1:9469",
        other => other,
    };
    plain.to_owned()
}

/// A short, quoted rendering of a value for messages.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let mut shown: String = s.chars().take(40).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            format!("{shown:?}")
        }
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => describe_kind(other).to_owned(),
    }
}

fn describe_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty value",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// Checks what the values mean; fills `opsgenie.api_key` from `opsgenie.api_key_file`.
fn check_semantics(mut config: Config) -> (Config, Vec<ConfigProblem>) {
    let mut problems = Vec::new();
    check_teleport(&config, &mut problems);
    check_opsgenie(&mut config, &mut problems);
    check_auto_approval(&config, &mut problems);
    check_log_and_daemon(&config, &mut problems);
    (config, problems)
}

fn check_teleport(config: &Config, problems: &mut Vec<ConfigProblem>) {
    let t = &config.teleport;
    if let Some(problem) = check_host_port("teleport.addr", &t.addr) {
        problems.push(problem);
    }

    let trio = [
        ("teleport.client_key", &t.client_key),
        ("teleport.client_crt", &t.client_crt),
        ("teleport.root_cas", &t.root_cas),
    ];
    let set: Vec<&str> = trio
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| *k)
        .collect();
    let missing: Vec<&str> = trio
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    let quoted = |keys: &[&str]| {
        keys.iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (&t.identity, set.len()) {
        (Some(_), 0) => {}
        (Some(_), _) => problems.push(
            ConfigProblem::new(
                "teleport.identity",
                format!("cannot be combined with {}", quoted(&set)),
            )
            .hint("use either an identity file or the key, certificate and CAs, not both"),
        ),
        (None, 0) => problems.push(
            ConfigProblem::new(
                "teleport.identity",
                "no credentials: set `teleport.identity`, or all of `teleport.client_key`, `teleport.client_crt` and `teleport.root_cas`",
            )
            .hint("tctl auth sign --user=access-plugin --out=auth.pem --ttl=2190h writes an identity file"),
        ),
        (None, 3) => {}
        (None, _) => problems.push(
            ConfigProblem::new(
                "teleport",
                format!(
                    "{} {} set but {} {} missing",
                    quoted(&set),
                    if set.len() == 1 { "is" } else { "are" },
                    quoted(&missing),
                    if missing.len() == 1 { "is" } else { "are" },
                ),
            )
            .hint("tctl auth sign --format=tls writes the three files together; or use `teleport.identity`"),
        ),
    }
    if let Some(path) = &t.identity {
        check_readable("teleport.identity", path, problems);
    }
    for (key, value) in trio {
        if let Some(path) = value {
            check_readable(key, path, problems);
        }
    }
    // With the key/cert/CAs trio there is nothing to refresh and `refresh_identity` is ignored;
    // its default is true, so erroring like Teleport's plugins do would punish the default.
    if t.identity.is_some() && t.refresh_identity && t.refresh_identity_interval.is_zero() {
        problems.push(positive_duration("teleport.refresh_identity_interval"));
    }
    if t.cluster_name
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        problems.push(
            ConfigProblem::new("teleport.cluster_name", "is empty")
                .hint("remove it to read the cluster name from the identity"),
        );
    }
    if let Some(addr) = &t.web_proxy_addr {
        if let Some(problem) = check_web_proxy_addr(addr) {
            problems.push(problem);
        }
    }
    if t.plugin_name.trim().is_empty() {
        problems.push(ConfigProblem::new("teleport.plugin_name", "is empty"));
    } else if t.plugin_name.chars().any(char::is_whitespace) {
        problems.push(ConfigProblem::new(
            "teleport.plugin_name",
            "must not contain whitespace",
        ));
    }
    for (key, value) in [
        ("teleport.dial_timeout", t.dial_timeout),
        ("teleport.call_timeout", t.call_timeout),
    ] {
        if value.is_zero() {
            problems.push(positive_duration(key));
        }
    }
}

/// `host:port`, with brackets around an IPv6 host.
fn check_host_port(key: &str, addr: &str) -> Option<ConfigProblem> {
    let hint =
        "e.g. teleport.example.com:443 for the Proxy or auth.example.com:3025 for the Auth Service";
    if addr.contains("://") {
        return Some(
            ConfigProblem::new(key, format!("expected host:port, not a URL: {addr:?}"))
                .hint("drop the scheme, e.g. teleport.example.com:443"),
        );
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Some(
            ConfigProblem::new(key, format!("{addr:?} has no port"))
                .hint("the Auth Service listens on 3025, the Proxy on 443 or 3080"),
        );
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Some(
            ConfigProblem::new(key, format!("{addr:?} has no valid host before the port"))
                .hint(hint),
        );
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Some(
            ConfigProblem::new(key, format!("{addr:?}: an IPv6 address needs brackets"))
                .hint("e.g. [::1]:3025"),
        );
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => None,
        _ => Some(
            ConfigProblem::new(key, format!("{addr:?} has no valid port (1 to 65535)")).hint(hint),
        ),
    }
}

fn check_web_proxy_addr(addr: &str) -> Option<ConfigProblem> {
    let key = "teleport.web_proxy_addr";
    let trimmed = addr.trim();
    if trimmed.is_empty() {
        return Some(
            ConfigProblem::new(key, "is empty").hint("remove it to leave links out of alerts"),
        );
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("https://{trimmed}")
    };
    match url::Url::parse(&with_scheme) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => None,
        Ok(_) => Some(
            ConfigProblem::new(key, "must be a host name or an https:// URL")
                .hint("e.g. teleport.example.com or https://teleport.example.com:443"),
        ),
        Err(e) => Some(
            ConfigProblem::new(key, format!("is not a valid address: {e}"))
                .hint("e.g. teleport.example.com or https://teleport.example.com:443"),
        ),
    }
}

fn check_opsgenie(config: &mut Config, problems: &mut Vec<ConfigProblem>) {
    let sweep_enabled = !config.daemon.orphan_sweep_interval.is_zero();
    let o = &mut config.opsgenie;

    match (&o.api_key, &o.api_key_file) {
        (Some(_), Some(_)) => problems.push(
            ConfigProblem::new(
                "opsgenie.api_key",
                "both `opsgenie.api_key` and `opsgenie.api_key_file` are set",
            )
            .hint("keep only `api_key_file`, so the key stays out of the config and the environment"),
        ),
        (Some(key), None) => {
            let trimmed = key.expose().trim();
            if trimmed.is_empty() {
                problems.push(ConfigProblem::new("opsgenie.api_key", "is empty"));
            } else if trimmed.len() != key.expose().len() {
                // Keys pasted with a trailing newline are common; whitespace is never part of one.
                o.api_key = Some(Secret::new(trimmed));
            }
        }
        (None, Some(path)) => match read_api_key_file(path).map_err(ConfigProblem::about_a_file) {
            Ok(key) => o.api_key = Some(key),
            Err(problem) => problems.push(problem),
        },
        (None, None) => problems.push(
            ConfigProblem::new(
                "opsgenie.api_key_file",
                "no API key: set `opsgenie.api_key_file` or `opsgenie.api_key`",
            )
            .hint("create an API integration in Opsgenie and store its key in a file readable only by the daemon"),
        ),
    }

    if let Some(url) = &o.api_url {
        match url::Url::parse(url) {
            Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => problems.push(
                ConfigProblem::new("opsgenie.api_url", "must be an http:// or https:// URL")
                    .hint("e.g. https://api.eu.opsgenie.com"),
            ),
            Ok(parsed) if parsed.host().is_none() => {
                problems.push(ConfigProblem::new("opsgenie.api_url", "has no host"))
            }
            Ok(_) => {}
            Err(e) => problems.push(
                ConfigProblem::new("opsgenie.api_url", format!("is not a valid URL: {e}"))
                    .hint("e.g. https://api.eu.opsgenie.com; remove it to use `region`"),
            ),
        }
    }

    if !matches!(o.priority.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") {
        let problem = ConfigProblem::new(
            "opsgenie.priority",
            format!("expected one of P1, P2, P3, P4, P5, got {:?}", o.priority),
        );
        let upper = o.priority.trim().to_ascii_uppercase();
        problems.push(
            if matches!(upper.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") {
                problem.hint(format!("write {upper}"))
            } else {
                problem
            },
        );
    }

    if o.tags.len() > MAX_TAGS {
        problems.push(ConfigProblem::new(
            "opsgenie.tags",
            format!(
                "has {} tags; Opsgenie allows at most {MAX_TAGS}",
                o.tags.len()
            ),
        ));
    }
    for tag in &o.tags {
        if tag.trim().is_empty() {
            problems.push(ConfigProblem::new("opsgenie.tags", "contains an empty tag"));
        } else if tag.chars().count() > MAX_TAG_CHARS {
            problems.push(ConfigProblem::new(
                "opsgenie.tags",
                format!(
                    "tag {tag:?} has {} characters; Opsgenie allows at most {MAX_TAG_CHARS}",
                    tag.chars().count()
                ),
            ));
        }
    }
    if o.tags.is_empty() && sweep_enabled {
        problems.push(
            ConfigProblem::new(
                "opsgenie.tags",
                "is empty, but the orphan sweep finds the daemon's alerts by the first tag",
            )
            .hint("add a tag, or set daemon.orphan_sweep_interval to 0s"),
        );
    }
    for (key, names) in [
        ("opsgenie.default_schedules", &o.default_schedules),
        ("opsgenie.default_teams", &o.default_teams),
    ] {
        problems.extend(blank_entry(key, names, "name"));
    }
    if o.source.trim().is_empty() {
        problems.push(ConfigProblem::new("opsgenie.source", "is empty"));
    } else if o.source.chars().count() > MAX_SOURCE_CHARS {
        problems.push(ConfigProblem::new(
            "opsgenie.source",
            format!("is longer than Opsgenie's limit of {MAX_SOURCE_CHARS} characters"),
        ));
    }
    if o.heartbeat_name.trim().is_empty() {
        problems.push(ConfigProblem::new("opsgenie.heartbeat_name", "is empty"));
    }
    if o.request_timeout.is_zero() {
        problems.push(positive_duration("opsgenie.request_timeout"));
    }
    if o.max_concurrency == 0 {
        problems.push(ConfigProblem::new(
            "opsgenie.max_concurrency",
            "must be at least 1",
        ));
    }
}

/// Reads the API key file, trimmed; the key itself never reaches a message.
fn read_api_key_file(path: &Path) -> Result<Secret, ConfigProblem> {
    let key = "opsgenie.api_key_file";
    let shown = path.display();
    let file = open_readable(key, path)?;
    let mut text = String::new();
    // Read one byte past the limit to tell "too large" from "exactly at the limit".
    let read = file
        .take(MAX_API_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text);
    if let Err(e) = read {
        return Err(ConfigProblem::new(
            key,
            format!("cannot read `{shown}`: {e}"),
        ));
    }
    if text.len() as u64 > MAX_API_KEY_FILE_BYTES {
        return Err(ConfigProblem::new(
            key,
            format!("`{shown}` is larger than {MAX_API_KEY_FILE_BYTES} bytes; it should hold only the API key"),
        ));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ConfigProblem::new(key, format!("`{shown}` is empty")));
    }
    if trimmed.contains(['\n', '\r']) {
        return Err(ConfigProblem::new(
            key,
            format!("`{shown}` holds several lines; it should hold only the API key"),
        ));
    }
    Ok(Secret::new(trimmed))
}

fn check_readable(key: &str, path: &Path, problems: &mut Vec<ConfigProblem>) {
    if let Err(problem) = open_readable(key, path) {
        problems.push(problem.about_a_file());
    }
}

/// Opens `path` for reading, explaining in a problem why that is impossible.
fn open_readable(key: &str, path: &Path) -> Result<fs::File, ConfigProblem> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err(
            ConfigProblem::new(key, "is an empty path").hint("remove the key or give a path")
        );
    }
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ConfigProblem::new(
                key,
                format!("file `{shown}` does not exist"),
            ))
        }
        Err(e) => {
            return Err(ConfigProblem::new(
                key,
                format!("cannot access `{shown}`: {e}"),
            ))
        }
        Ok(meta) if meta.is_dir() => {
            return Err(ConfigProblem::new(
                key,
                format!("`{shown}` is a directory, not a file"),
            ))
        }
        Ok(_) => {}
    }
    fs::File::open(path).map_err(|e| {
        ConfigProblem::new(key, format!("cannot read `{shown}`: {e}"))
            .hint("check the file's owner and mode against the user the daemon runs as")
    })
}

fn check_auto_approval(config: &Config, problems: &mut Vec<ConfigProblem>) {
    let a = &config.auto_approval;
    if let Some(domain) = &a.user_domain {
        if domain.trim().is_empty() {
            problems.push(ConfigProblem::new("auto_approval.user_domain", "is empty"));
        } else if domain.contains('@') {
            problems.push(
                ConfigProblem::new("auto_approval.user_domain", "must not contain '@'").hint(
                    format!(
                        "write {:?}; the '@' is added",
                        domain.trim_start_matches('@')
                    ),
                ),
            );
        } else if domain.chars().any(char::is_whitespace) {
            problems.push(ConfigProblem::new(
                "auto_approval.user_domain",
                "must not contain whitespace",
            ));
        }
    }
    for (user, email) in &a.users {
        let key = format!("auto_approval.users.{user}");
        if user.trim().is_empty() {
            problems.push(ConfigProblem::new(key, "has an empty Teleport user name"));
        } else if !email.contains('@') {
            problems.push(
                ConfigProblem::new(key, format!("{email:?} is not an e-mail address"))
                    .hint("Opsgenie identifies users by their e-mail address"),
            );
        }
    }
    for (key, items, what) in [
        (
            "auto_approval.allowed_roles",
            &a.allowed_roles,
            "role pattern",
        ),
        (
            "auto_approval.denied_roles",
            &a.denied_roles,
            "role pattern",
        ),
        (
            "auto_approval.default_schedules",
            &a.default_schedules,
            "name",
        ),
    ] {
        problems.extend(blank_entry(key, items, what));
    }
    if a.max_duration.is_some_and(|d| d.is_zero()) {
        problems.push(
            positive_duration("auto_approval.max_duration")
                .hint("remove it for no limit; 0s would approve nothing"),
        );
    }
}

fn check_log_and_daemon(config: &Config, problems: &mut Vec<ConfigProblem>) {
    let level = config.log.level.trim().to_ascii_lowercase();
    if !LOG_LEVELS.contains(&level.as_str()) {
        problems.push(
            ConfigProblem::new(
                "log.level",
                format!(
                    "expected one of {}, got {:?}",
                    LOG_LEVELS.join(", "),
                    config.log.level
                ),
            )
            .hint("RUST_LOG takes full filter directives and overrides log.level"),
        );
    }
    let d = &config.daemon;
    for (key, value) in [
        ("daemon.claim_ttl", d.claim_ttl),
        ("daemon.retry_min_delay", d.retry_min_delay),
        ("daemon.retry_max_delay", d.retry_max_delay),
    ] {
        if value.is_zero() {
            problems.push(positive_duration(key));
        }
    }
    if !d.retry_min_delay.is_zero() && d.retry_max_delay < d.retry_min_delay {
        problems.push(ConfigProblem::new(
            "daemon.retry_max_delay",
            format!(
                "({}) is shorter than daemon.retry_min_delay ({})",
                fmt_duration(d.retry_max_delay),
                fmt_duration(d.retry_min_delay)
            ),
        ));
    }
}

/// A problem at `key` if one of `items` is blank; `what` names an item in the message.
fn blank_entry(key: &str, items: &[String], what: &str) -> Option<ConfigProblem> {
    items
        .iter()
        .any(|item| item.trim().is_empty())
        .then(|| ConfigProblem::new(key, format!("contains an empty {what}")))
}

fn positive_duration(key: &str) -> ConfigProblem {
    ConfigProblem::new(key, "must be longer than 0s")
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendKind, LogFormat};

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "teleport-opsgenie-config-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, contents).unwrap();
            path
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A directory with an identity file and an API key file, and env vars pointing at them.
    fn creds() -> (TempDir, HashMap<String, String>) {
        let dir = TempDir::new();
        let identity = dir.write("auth.pem", "not parsed here\n");
        let key = dir.write("api-key", "  s3cr3t-key-value\n");
        let env = env(&[
            (
                "TELEPORT_OPSGENIE__TELEPORT__IDENTITY",
                &identity.display().to_string(),
            ),
            (
                "TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE",
                &key.display().to_string(),
            ),
        ]);
        (dir, env)
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_with(
        file: Option<PathBuf>,
        env: HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        load(&Sources {
            file,
            env: Some(env),
            require_file: true,
        })
    }

    /// Whether some problem concerns `path` (a dotted key path).
    fn mentions(err: &ConfigError, path: &str) -> bool {
        err.problems.iter().any(|p| p.path == path)
    }

    fn problem<'a>(err: &'a ConfigError, path: &str) -> &'a ConfigProblem {
        err.problems
            .iter()
            .find(|p| p.path == path)
            .unwrap_or_else(|| panic!("no problem at {path} in:\n{err}"))
    }

    #[test]
    fn defaults_plus_credentials_load_and_the_key_file_is_read() {
        let (_dir, env) = creds();
        let config = load_with(None, env).unwrap();
        assert_eq!(config.teleport.addr, "localhost:3025");
        assert_eq!(
            config.opsgenie.api_key.as_ref().map(Secret::expose),
            Some("s3cr3t-key-value")
        );
    }

    #[test]
    fn env_overrides_file_and_nests_with_double_underscores() {
        let (dir, mut env) = creds();
        let file = dir.write(
            "c.yaml",
            "teleport:\n  addr: file.example.com:3025\n  refresh_identity: true\nopsgenie:\n  priority: P1\n  rate_limits:\n    alert_write:\n      per_second: 3\n",
        );
        env.extend(self::env(&[
            ("TELEPORT_OPSGENIE__TELEPORT__ADDR", "env.example.com:443"),
            ("teleport_opsgenie__teleport__refresh_identity", "false"),
            (
                "TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__ALERT_WRITE__PER_SECOND",
                "7",
            ),
            ("TELEPORT_OPSGENIE__OPSGENIE__MAX_CONCURRENCY", " 4 "),
            ("TELEPORT_OPSGENIE__DAEMON__CLAIM_TTL", "2m"),
            ("TELEPORT_OPSGENIE__LOG__FORMAT", "json"),
            ("TELEPORT_OPSGENIE__OPSGENIE__BACKEND", "jsm"),
            ("TELEPORT_OPSGENIE__AUTO_APPROVAL__MAX_DURATION", "8h"),
            ("TELEPORT_OPSGENIE__HTTP__LISTEN", "0.0.0.0:9000"),
            ("UNRELATED", "ignored"),
        ]));
        let config = load_with(Some(file), env).unwrap();
        assert_eq!(config.teleport.addr, "env.example.com:443");
        assert!(!config.teleport.refresh_identity);
        assert_eq!(config.opsgenie.rate_limits.alert_write.per_second, 7);
        // Untouched file and default values survive next to the overrides.
        assert_eq!(config.opsgenie.rate_limits.alert_write.per_minute, 300);
        assert_eq!(config.opsgenie.priority, "P1");
        assert_eq!(config.opsgenie.max_concurrency, 4);
        assert_eq!(config.daemon.claim_ttl, Duration::from_secs(120));
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.opsgenie.backend, BackendKind::Jsm);
        assert_eq!(
            config.auto_approval.max_duration,
            Some(Duration::from_secs(8 * 3600))
        );
        assert_eq!(config.http.listen.port(), 9000);
    }

    #[test]
    fn env_lists_are_comma_separated_and_maps_take_pairs() {
        let (_dir, mut env) = creds();
        env.extend(self::env(&[
            (
                "TELEPORT_OPSGENIE__OPSGENIE__TAGS",
                "teleport, access ,,prod",
            ),
            ("TELEPORT_OPSGENIE__OPSGENIE__DEFAULT_TEAMS", ""),
            (
                "TELEPORT_OPSGENIE__AUTO_APPROVAL__DENIED_ROLES",
                "admin*,root",
            ),
            (
                "TELEPORT_OPSGENIE__AUTO_APPROVAL__USERS",
                "alice=alice@example.com, bob = bob@example.com",
            ),
            (
                "TELEPORT_OPSGENIE__AUTO_APPROVAL__USERS__CAROL",
                "carol@example.com",
            ),
        ]));
        let config = load_with(None, env).unwrap();
        assert_eq!(config.opsgenie.tags, ["teleport", "access", "prod"]);
        assert!(config.opsgenie.default_teams.is_empty());
        assert_eq!(config.auto_approval.denied_roles, ["admin*", "root"]);
        let users: Vec<(&str, &str)> = config
            .auto_approval
            .users
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            users,
            [
                ("alice", "alice@example.com"),
                ("bob", "bob@example.com"),
                ("carol", "carol@example.com")
            ]
        );
    }

    #[test]
    fn empty_env_value_clears_an_optional_key() {
        let (dir, mut env) = creds();
        let file = dir.write("c.yaml", "teleport:\n  cluster_name: from-file\n");
        env.insert(
            "TELEPORT_OPSGENIE__TELEPORT__CLUSTER_NAME".into(),
            String::new(),
        );
        let config = load_with(Some(file), env).unwrap();
        assert_eq!(config.teleport.cluster_name, None);
    }

    #[test]
    fn unknown_keys_are_reported_with_suggestions() {
        let (dir, mut env) = creds();
        let file = dir.write(
            "c.yaml",
            "teleprt:\n  addr: x:1\nopsgenie:\n  api_kye: abc\n  rate_limits:\n    alert_writes:\n      per_second: 1\n    heartbeat:\n      per_secnod: 1\nteleport:\n  api_key_file: /x\nnonsense_entirely: 1\n",
        );
        env.insert("TELEPORT_OPSGENIE__OPSGENIE__PRIORTY".into(), "P2".into());
        env.insert("TELEPORT_OPSGENIE__NOPE".into(), "1".into());
        let err = load_with(Some(file), env).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("opsgenie.api_kye: unknown key (did you mean \"api_key\"?)"),
            "{text}"
        );
        assert_eq!(
            problem(&err, "teleprt").hint.as_deref(),
            Some("did you mean \"teleport\"?")
        );
        assert_eq!(
            problem(&err, "opsgenie.rate_limits.alert_writes")
                .hint
                .as_deref(),
            Some("did you mean \"alert_write\"?")
        );
        assert_eq!(
            problem(&err, "opsgenie.rate_limits.heartbeat.per_secnod")
                .hint
                .as_deref(),
            Some("did you mean \"per_second\"?")
        );
        // The right key in the wrong section.
        assert_eq!(
            problem(&err, "teleport.api_key_file").hint.as_deref(),
            Some("did you mean \"opsgenie.api_key_file\"?")
        );
        assert_eq!(problem(&err, "nonsense_entirely").hint, None);
        let from_env = problem(&err, "opsgenie.priorty");
        assert!(from_env
            .message
            .contains("TELEPORT_OPSGENIE__OPSGENIE__PRIORTY"));
        assert_eq!(from_env.hint.as_deref(), Some("did you mean \"priority\"?"));
        assert!(mentions(&err, "nope"));
        // The secret-looking value of the unknown key is not echoed.
        assert!(!text.contains("abc"));
    }

    #[test]
    fn env_vars_naming_sections_or_going_too_deep_are_errors() {
        let (_dir, mut env) = creds();
        env.extend(self::env(&[
            ("TELEPORT_OPSGENIE__OPSGENIE", "x"),
            ("TELEPORT_OPSGENIE__LOG__LEVEL__X", "x"),
            ("TELEPORT_OPSGENIE__LOG____LEVEL", "x"),
        ]));
        let err = load_with(None, env).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(problem(&err, "opsgenie")
            .message
            .contains("names a section"));
        assert!(mentions(&err, "log.level.x"));
        assert!(mentions(&err, "log..level"));
    }

    #[test]
    fn type_errors_are_reported_per_key() {
        let (dir, mut env) = creds();
        let file = dir.write(
            "c.yaml",
            "teleport:\n  refresh_identity: maybe\n  dial_timeout: 5 parsecs\n  mode: sideways\nopsgenie:\n  max_concurrency: -1\n  tags: just-one\n  api_key: 12345\nhttp:\n  listen: nowhere\nlog: loud\n",
        );
        env.insert(
            "TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__HEARTBEAT__PER_MINUTE".into(),
            "lots".into(),
        );
        env.remove("TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE");
        let err = load_with(Some(file), env).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "teleport.refresh_identity: expected a boolean, got \"maybe\" (write true or false)"
            ),
            "{text}"
        );
        assert!(problem(&err, "teleport.dial_timeout")
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("duration")));
        assert!(problem(&err, "teleport.mode")
            .message
            .contains("expected one of `auto`, `auth`, `proxy`, got \"sideways\""));
        assert!(problem(&err, "opsgenie.max_concurrency")
            .message
            .contains("got -1"));
        assert!(problem(&err, "opsgenie.tags")
            .message
            .starts_with("expected a list"));
        assert!(mentions(&err, "http.listen"));
        assert!(problem(&err, "log").message.contains("expected a section"));
        let from_env = problem(&err, "opsgenie.rate_limits.heartbeat.per_minute");
        assert!(from_env.message.contains("got \"lots\""), "{text}");
        assert!(from_env.hint.as_deref().is_some_and(
            |h| h.contains("TELEPORT_OPSGENIE__OPSGENIE__RATE_LIMITS__HEARTBEAT__PER_MINUTE")
        ));
        // The secret is described, not echoed; and no semantic "no API key" noise on top.
        assert_eq!(
            problem(&err, "opsgenie.api_key").message,
            "expected a string, got a number"
        );
        assert!(!text.contains("12345"));
        assert_eq!(err.problems.len(), 9, "{text}");
    }

    #[test]
    fn several_semantic_problems_are_reported_together() {
        let dir = TempDir::new();
        let file = dir.write(
            "c.yaml",
            r#"
teleport:
  addr: "https://teleport.example.com"
  client_key: /nonexistent/auth.key
  plugin_name: ""
opsgenie:
  api_key: inline-secret
  api_key_file: /nonexistent/key
  api_url: "ftp://example.com"
  priority: p2
  tags: ["", "this-tag-is-far-too-long-for-opsgenie-to-accept-it-at-all"]
  max_concurrency: 0
  default_teams: [ops, " "]
auto_approval:
  user_domain: "@example.com"
  allowed_roles: [""]
  default_schedules: [""]
  users:
    alice: alice
log:
  level: loud
daemon:
  retry_min_delay: 10s
  retry_max_delay: 1s
"#,
        );
        let err = load_with(Some(file), HashMap::new()).unwrap_err();
        let text = err.to_string();
        for path in [
            "teleport.addr",
            "teleport",
            "teleport.client_key",
            "teleport.plugin_name",
            "opsgenie.api_key",
            "opsgenie.api_url",
            "opsgenie.priority",
            "opsgenie.tags",
            "opsgenie.max_concurrency",
            "opsgenie.default_teams",
            "auto_approval.user_domain",
            "auto_approval.allowed_roles",
            "auto_approval.default_schedules",
            "auto_approval.users.alice",
            "log.level",
            "daemon.retry_max_delay",
        ] {
            assert!(mentions(&err, path), "{path} missing from:\n{text}");
        }
        assert!(text.contains(
            "teleport: `teleport.client_key` is set but `teleport.client_crt`, `teleport.root_cas` are missing"
        ));
        assert!(problem(&err, "teleport.client_key")
            .message
            .contains("/nonexistent/auth.key"));
        assert_eq!(
            problem(&err, "opsgenie.priority").hint.as_deref(),
            Some("write P2")
        );
        assert_eq!(
            problem(&err, "auto_approval.allowed_roles").message,
            "contains an empty role pattern"
        );
        assert_eq!(
            problem(&err, "opsgenie.default_teams").message,
            "contains an empty name"
        );
        assert!(!mentions(&err, "opsgenie.default_schedules"));
        assert!(!text.contains("inline-secret"));
    }

    #[test]
    fn credential_rules() {
        let dir = TempDir::new();
        let key = dir.write("key", "k");
        let crt = dir.write("crt", "c");
        let cas = dir.write("cas", "a");
        let id = dir.write("id", "i");
        let api = dir.write("api", "secret");
        let base = |pairs: &[(&str, &Path)]| {
            let mut env = HashMap::new();
            env.insert(
                "TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE".to_owned(),
                api.display().to_string(),
            );
            for (k, v) in pairs {
                env.insert(
                    format!("TELEPORT_OPSGENIE__TELEPORT__{k}"),
                    v.display().to_string(),
                );
            }
            env
        };

        // The full trio works, and refresh_identity (true by default) is ignored.
        let config = load_with(
            None,
            base(&[
                ("CLIENT_KEY", &key),
                ("CLIENT_CRT", &crt),
                ("ROOT_CAS", &cas),
            ]),
        )
        .unwrap();
        assert!(config.teleport.identity.is_none());

        // Two of three.
        let err = load_with(None, base(&[("CLIENT_KEY", &key), ("CLIENT_CRT", &crt)])).unwrap_err();
        assert_eq!(
            problem(&err, "teleport").message,
            "`teleport.client_key`, `teleport.client_crt` are set but `teleport.root_cas` is missing"
        );

        // Identity and trio together.
        let err = load_with(None, base(&[("IDENTITY", &id), ("ROOT_CAS", &cas)])).unwrap_err();
        assert!(problem(&err, "teleport.identity")
            .message
            .contains("`teleport.root_cas`"));

        // Nothing at all.
        let err = load_with(None, base(&[])).unwrap_err();
        assert!(problem(&err, "teleport.identity")
            .message
            .starts_with("no credentials"));

        // A directory is not a file.
        let err = load_with(None, base(&[("IDENTITY", &dir.0)])).unwrap_err();
        assert!(problem(&err, "teleport.identity")
            .message
            .contains("is a directory"));
    }

    #[test]
    fn api_key_rules() {
        let (dir, env) = creds();
        let mut both = env.clone();
        both.insert(
            "TELEPORT_OPSGENIE__OPSGENIE__API_KEY".into(),
            "inline".into(),
        );
        let err = load_with(None, both).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(problem(&err, "opsgenie.api_key")
            .message
            .starts_with("both"));

        let blank = dir.write("blank", " \n\t\n");
        let mut env_blank = env.clone();
        env_blank.insert(
            "TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE".into(),
            blank.display().to_string(),
        );
        let err = load_with(None, env_blank).unwrap_err();
        assert!(problem(&err, "opsgenie.api_key_file")
            .message
            .ends_with("is empty"));

        let mut env_missing = env.clone();
        env_missing.insert(
            "TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE".into(),
            dir.path("absent"),
        );
        let err = load_with(None, env_missing).unwrap_err();
        assert!(problem(&err, "opsgenie.api_key_file")
            .message
            .contains(&dir.path("absent")));

        let mut neither = env.clone();
        neither.remove("TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE");
        let err = load_with(None, neither).unwrap_err();
        assert!(problem(&err, "opsgenie.api_key_file")
            .message
            .starts_with("no API key"));

        let mut inline = env;
        inline.remove("TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE");
        inline.insert(
            "TELEPORT_OPSGENIE__OPSGENIE__API_KEY".into(),
            " padded \n".into(),
        );
        let config = load_with(None, inline).unwrap();
        assert_eq!(
            config.opsgenie.api_key.as_ref().map(Secret::expose),
            Some("padded")
        );
        // Debug output never shows the key.
        assert!(!format!("{config:?}").contains("padded"));
    }

    #[test]
    fn config_files_missing_or_malformed() {
        let dir = TempDir::new();
        let missing = dir.0.join("absent.yaml");
        let err = load_with(Some(missing.clone()), HashMap::new()).unwrap_err();
        let p = problem(&err, &missing.display().to_string());
        assert_eq!(p.message, "configuration file not found");

        // The default path may be absent: then only the usual credential problems remain.
        let err = load(&Sources {
            file: Some(missing),
            env: Some(HashMap::new()),
            require_file: false,
        })
        .unwrap_err();
        assert!(mentions(&err, "teleport.identity"));

        let ini = dir.write("c.ini", "x=1");
        let err = load_with(Some(ini), HashMap::new()).unwrap_err();
        assert!(err.problems[0].message.contains("unsupported"));

        let bad_toml = dir.write("bad.toml", "[opsgenie]\napi_key = \"unterminated-secret\n");
        let err = load_with(Some(bad_toml), HashMap::new()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("invalid TOML at line 2"), "{text}");
        assert!(!text.contains("unterminated-secret"), "{text}");

        let bad_yaml = dir.write("bad.yaml", "teleport:\n  addr: [unclosed\n");
        let err = load_with(Some(bad_yaml), HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("invalid YAML"));

        let list = dir.write("list.yaml", "- a\n- b\n");
        let err = load_with(Some(list), HashMap::new()).unwrap_err();
        assert!(err.problems[0].message.contains("top level"));
    }

    #[test]
    fn toml_file_loads() {
        let (dir, env) = creds();
        let file = dir.write(
            "c.toml",
            "[teleport]\naddr = \"auth.example.com:3025\"\nrefresh_identity_interval = \"5m\"\n\n[opsgenie]\nregion = \"eu\"\ntags = [\"a\", \"b\"]\n\n[opsgenie.rate_limits.heartbeat]\nper_minute = 2\n\n[auto_approval.users]\nalice = \"alice@example.com\"\n",
        );
        let config = load_with(Some(file), env).unwrap();
        assert_eq!(config.teleport.addr, "auth.example.com:3025");
        assert_eq!(
            config.teleport.refresh_identity_interval,
            Duration::from_secs(300)
        );
        assert_eq!(config.opsgenie.base_url(), "https://api.eu.opsgenie.com");
        assert_eq!(config.opsgenie.tags, ["a", "b"]);
        assert_eq!(config.opsgenie.rate_limits.heartbeat.per_minute, 2);
        assert_eq!(config.auto_approval.users["alice"], "alice@example.com");
    }

    #[test]
    fn empty_sections_and_files_are_fine() {
        let (dir, env) = creds();
        let file = dir.write("c.yaml", "# only a comment\n");
        load_with(Some(file), env.clone()).unwrap();
        let file = dir.write("d.yaml", "teleport:\nopsgenie:\n");
        load_with(Some(file), env).unwrap();
    }

    #[test]
    fn host_port_checks() {
        for ok in [
            "a:1",
            "teleport.example.com:443",
            "[::1]:3025",
            "10.0.0.1:3025",
        ] {
            assert!(check_host_port("k", ok).is_none(), "{ok}");
        }
        for bad in [
            "a",
            ":443",
            "a:0",
            "a:70000",
            "::1:3025",
            "https://a:443",
            "a b:1",
        ] {
            assert!(check_host_port("k", bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("api_kye", "api_key"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            closest("Priorty", ["priority", "tags"].into_iter()),
            Some("priority")
        );
        assert_eq!(closest("xyz", ["log", "http"].into_iter()), None);
    }

    /// Points the sample's file paths at real files and checks it validates.
    fn sample_env() -> (TempDir, HashMap<String, String>) {
        creds()
    }

    #[test]
    fn yaml_sample_parses_and_validates() {
        let (dir, env) = sample_env();
        let file = dir.write("sample.yaml", SAMPLE_YAML);
        let config = load_with(Some(file.clone()), env).unwrap();
        assert_eq!(config.teleport.addr, "teleport.example.com:443");

        // Without the overrides the sample names its real paths, which do not exist here.
        let err = load_with(Some(file), HashMap::new()).unwrap_err();
        assert!(problem(&err, "teleport.identity")
            .message
            .contains("/var/lib/teleport/plugins/opsgenie/auth.pem"));
        assert!(mentions(&err, "opsgenie.api_key_file"));
    }

    #[test]
    fn yaml_sample_matches_the_defaults_and_mentions_every_key() {
        let sample = parse_yaml(SAMPLE_YAML).unwrap();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut paths = Vec::new();
        collect_paths(&defaults, &mut Vec::new(), &mut paths);
        for path in paths {
            let segments: Vec<&str> = path.split('.').collect();
            let leaf = segments[segments.len() - 1];
            // Every key is either set or shown in a comment.
            assert!(
                SAMPLE_YAML.contains(&format!("{leaf}:")),
                "sample does not mention {path}"
            );
        }
        // The values the sample sets are the defaults, except those it must fill in.
        let mut from_sample: Config = serde_json::from_value(sample).unwrap();
        let default = Config::default();
        from_sample.teleport.addr = default.teleport.addr.clone();
        from_sample.teleport.identity = None;
        from_sample.opsgenie.api_key_file = None;
        assert_eq!(
            serde_json::to_value(from_sample).unwrap(),
            serde_json::to_value(default).unwrap()
        );
    }

    #[test]
    fn toml_sample_parses_and_validates() {
        let (dir, env) = sample_env();
        let file = dir.write("sample.toml", SAMPLE_TOML);
        let config = load_with(Some(file), env).unwrap();
        assert_eq!(config.opsgenie.priority, "P3");
    }

    #[test]
    fn role_files_are_valid_yaml() {
        let files = [
            include_str!("../../config/access-plugin.yaml"),
            include_str!("../../config/requester.yaml"),
            include_str!("../../config/reviewer.yaml"),
            include_str!("../../config/editor.yaml"),
        ];
        for text in files {
            for doc in serde_yaml::Deserializer::from_str(text) {
                let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
                assert!(value["version"].as_str().is_some());
                assert!(value["kind"].as_str().is_some());
            }
        }
        let requester: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../config/requester.yaml")).unwrap();
        let annotations = &requester["spec"]["allow"]["request"]["annotations"];
        assert_eq!(
            annotations["teleport.dev/notify-services"][0].as_str(),
            Some("teleport-access-request-notifications")
        );
        assert_eq!(
            annotations["teleport.dev/teams"][0].as_str(),
            Some("teleport-team")
        );
        assert_eq!(
            annotations["teleport.dev/schedules"][0].as_str(),
            Some("teleport-access-alert-schedules")
        );
    }

    #[test]
    fn validate_resolves_the_key_file_for_configs_built_in_code() {
        let (dir, _) = creds();
        let mut config = Config::default();
        config.teleport.identity = Some(dir.0.join("auth.pem"));
        config.opsgenie.api_key_file = Some(dir.0.join("api-key"));
        let config = validate(config).unwrap();
        assert_eq!(
            config.opsgenie.api_key.as_ref().map(Secret::expose),
            Some("s3cr3t-key-value")
        );
    }
}
