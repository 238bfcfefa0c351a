//! The environment layer: `TELEPORT_OPSGENIE__SECTION__KEY` variables.
//!
//! Each variable is first checked here against the schema, so that one that names no key, a
//! whole section or too deep a path is reported with its name (and a "did you mean"), instead of
//! being silently layered. Those that name a key go to the `config` crate's
//! [`config::Environment`] with `__` as the separator; their values stay strings in the layered
//! tree and are typed afterwards by the key they landed on ([`retype`]): numbers and booleans
//! are parsed, lists are comma-separated, and an empty value clears an optional key.
//!
//! `auto_approval.users` is a map whose keys are data (user names may contain dots, which the
//! `config` crate would read as nesting), so its entries go in through [`UserEntries`] instead.

use std::collections::HashMap;

use config::{Map as CMap, Source, Value as CValue, ValueKind};
use serde_json::Value;

use super::aliases;
use super::problem::{ConfigProblem, Warning};
use super::safe;
use super::sources::ENV_PREFIX;
use super::suggest::suggest_key;
use super::tree::get_at;
use super::walk::FREE_MAPS;

/// The origin the `config` crate gives every value from the environment.
pub(super) const ENV_ORIGIN: &str = "the environment";

/// What the environment contributes, after its names were checked.
#[derive(Debug, Default)]
pub(super) struct EnvLayer {
    /// Variables that name a key, for [`config::Environment`].
    pub vars: HashMap<String, String>,
    /// Entries of the free maps (`auto_approval.users`): map path, entry name, value.
    pub entries: Vec<(String, String, String)>,
    /// Dotted key path → the variable that set it.
    pub origin: HashMap<String, String>,
}

impl EnvLayer {
    /// The `config` crate's environment source for [`Self::vars`].
    pub(super) fn environment(&self) -> config::Environment {
        config::Environment::with_prefix(ENV_PREFIX.trim_end_matches('_'))
            .prefix_separator("__")
            .separator("__")
            .source(Some(self.vars.clone().into_iter().collect()))
    }
}

/// The free-map entries set from the environment, as a `config` source.
#[derive(Debug, Clone)]
pub(super) struct UserEntries(pub Vec<(String, String, String)>);

impl Source for UserEntries {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<CMap<String, CValue>, config::ConfigError> {
        let origin = Some(ENV_ORIGIN.to_owned());
        let mut root = CMap::new();
        for (map_path, name, value) in &self.0 {
            // Build the nesting by hand, from the entry up: the names are literal keys, never
            // paths.
            let mut segments: Vec<&str> = map_path.split('.').collect();
            segments.push(name);
            let Some((top, rest)) = segments.split_first() else {
                continue;
            };
            let mut node = CValue::new(origin.as_ref(), value.clone());
            for segment in rest.iter().rev() {
                let mut table = CMap::new();
                table.insert((*segment).to_owned(), node);
                node = CValue::new(origin.as_ref(), table);
            }
            merge(&mut root, (*top).to_owned(), node);
        }
        Ok(root)
    }
}

/// Puts `value` at `key` in `map`, merging tables.
fn merge(map: &mut CMap<String, CValue>, key: String, value: CValue) {
    match (map.get_mut(&key), value.kind) {
        (
            Some(CValue {
                kind: ValueKind::Table(existing),
                ..
            }),
            ValueKind::Table(incoming),
        ) => {
            for (k, v) in incoming {
                merge(existing, k, v);
            }
        }
        (_, kind) => {
            map.insert(key, CValue::new(Some(&ENV_ORIGIN.to_owned()), kind));
        }
    }
}

/// Reads and checks the variables carrying our prefix (sorted by name, for a stable report).
pub(super) fn scan(
    defaults: &Value,
    injected: Option<&HashMap<String, String>>,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<Warning>,
) -> EnvLayer {
    let mut layer = EnvLayer::default();
    for (name, value) in env_vars(injected, problems, warnings) {
        add(&mut layer, defaults, &name, value, problems, warnings);
    }
    layer
}

fn add(
    layer: &mut EnvLayer,
    defaults: &Value,
    name: &str,
    value: String,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<Warning>,
) {
    let rest = name.get(ENV_PREFIX.len()..).unwrap_or_default();
    let mut segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let mut dotted = segments.join(".");
    let shown_name = safe::escape(name);
    // An old name is read as its new one, with a warning naming the variable to set instead.
    let renamed_to = aliases::renamed(&dotted).map(|(new, origin)| {
        let new_name = format!(
            "{ENV_PREFIX}{}",
            new.replace('.', "__").to_ascii_uppercase()
        );
        warnings.push(
            Warning::new(
                shown_name.clone(),
                format!("uses {origin} `{dotted}`; read as `{new}`"),
            )
            .hint(format!("rename it to {new_name}")),
        );
        (new, new_name)
    });
    let name = match &renamed_to {
        Some((new, new_name)) => {
            dotted = new.clone();
            segments = new.split('.').map(str::to_owned).collect();
            new_name.as_str()
        }
        None => name,
    };
    let unknown = |suggestion: Option<String>| {
        ConfigProblem::new(
            dotted.clone(),
            format!("unknown key in environment variable {shown_name}"),
        )
        .maybe_hint(suggestion)
    };

    let mut node = defaults;
    for (i, segment) in segments.iter().enumerate() {
        let parent = segments[..i].join(".");
        if segment.is_empty() {
            problems.push(unknown(Some(format!(
                "levels are separated by exactly two underscores, e.g. {ENV_PREFIX}OPSGENIE__PRIORITY"
            ))));
            return;
        }
        if FREE_MAPS.contains(&parent.as_str()) {
            if i + 1 != segments.len() {
                problems.push(unknown(Some(format!(
                    "entries of `{parent}` are set as {ENV_PREFIX}{}__<NAME>",
                    parent.replace('.', "__").to_ascii_uppercase()
                ))));
                return;
            }
            layer.entries.push((parent, segment.clone(), value));
            layer.origin.insert(dotted, name.to_owned());
            return;
        }
        match node {
            Value::Object(map) => match map.get(segment) {
                Some(child) => node = child,
                None => {
                    let hint = match aliases::replacement(&dotted) {
                        Some(new) => Some(format!(
                            "that is a setting of Teleport's access plugins; use {ENV_PREFIX}{}",
                            new.replace('.', "__").to_ascii_uppercase()
                        )),
                        None => suggest_key(defaults, &parent, segment),
                    };
                    problems.push(unknown(hint));
                    return;
                }
            },
            _ => {
                problems.push(unknown(Some(format!(
                    "`{parent}` is a single value, not a section"
                ))));
                return;
            }
        }
    }

    if FREE_MAPS.contains(&dotted.as_str()) {
        match parse_pairs(&value) {
            Some(pairs) => {
                for (entry, value) in pairs {
                    layer.entries.push((dotted.clone(), entry, value));
                }
                layer.origin.insert(dotted, name.to_owned());
            }
            None => problems.push(
                ConfigProblem::new(
                    dotted.clone(),
                    format!("environment variable {shown_name} is not a list of name=value pairs"),
                )
                .hint("write alice=alice@example.com,bob=bob@example.com"),
            ),
        }
        return;
    }
    if node.is_object() {
        problems.push(
            ConfigProblem::new(
                dotted.clone(),
                format!("environment variable {shown_name} names a section, not a key"),
            )
            .hint(format!("set its keys one by one, e.g. {shown_name}__<KEY>")),
        );
        return;
    }
    layer.vars.insert(name.to_owned(), value);
    layer.origin.insert(dotted, name.to_owned());
}

/// Gives each string the environment put into `tree` the type its key expects.
pub(super) fn retype(tree: &mut Value, defaults: &Value, layer: &EnvLayer) {
    for dotted in layer.origin.keys() {
        let segments: Vec<&str> = dotted.split('.').collect();
        let Some(like) = get_at(defaults, &segments) else {
            continue;
        };
        let Some(slot) = get_mut_at(tree, &segments) else {
            continue;
        };
        let Value::String(text) = slot else {
            continue;
        };
        let text = std::mem::take(text);
        *slot = match like {
            Value::Bool(_) => parse_bool(&text).map_or(Value::String(text), Value::Bool),
            Value::Number(n) => parse_number(&text, n).unwrap_or(Value::String(text)),
            Value::Array(_) => Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            // Every optional key holds a string (a path, a URL, a duration...); an empty
            // value clears it, which lets the environment undo a file's setting.
            Value::Null if text.is_empty() => Value::Null,
            _ => Value::String(text),
        };
    }
}

fn get_mut_at<'a>(tree: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(tree, |node, segment| {
        node.as_object_mut()?.get_mut(*segment)
    })
}

/// The environment variables carrying our prefix, sorted by name for a stable report. A
/// variable that has the prefix with one underscore too few is not ours, but is surely meant to
/// be: it gets a warning instead of being ignored in silence.
fn env_vars(
    injected: Option<&HashMap<String, String>>,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<Warning>,
) -> Vec<(String, String)> {
    let single = &ENV_PREFIX[..ENV_PREFIX.len() - 1];
    let starts = |name: &str, prefix: &str| {
        name.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    let all: Vec<(String, Option<String>)> = match injected {
        Some(map) => map
            .iter()
            .map(|(n, v)| (n.clone(), Some(v.clone())))
            .collect(),
        None => std::env::vars_os()
            .map(|(name, value)| {
                (
                    name.to_string_lossy().into_owned(),
                    value.into_string().ok(),
                )
            })
            .collect(),
    };
    let mut vars = Vec::new();
    for (name, value) in all {
        if starts(&name, ENV_PREFIX) {
            match value {
                Some(value) => vars.push((name, value)),
                None => problems.push(ConfigProblem::new(
                    safe::escape(&name),
                    "environment variable is not valid UTF-8",
                )),
            }
        } else if starts(&name, single) {
            let rest = &name[single.len()..];
            warnings.push(
                Warning::new(
                    safe::escape(&name),
                    "environment variable is ignored: the prefix is TELEPORT_OPSGENIE followed by two underscores",
                )
                .hint(format!("rename it to {}", safe::escape(&format!("{ENV_PREFIX}{rest}")))),
            );
        }
    }
    vars.sort();
    warnings.sort_by(|a, b| a.path.cmp(&b.path));
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

/// `a=b,c=d` as pairs; `None` when an entry has no `=` or no name.
fn parse_pairs(s: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, value) = entry.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        pairs.push((name.to_owned(), value.trim().to_owned()));
    }
    Some(pairs)
}
