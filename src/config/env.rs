//! The environment layer: `TELEPORT_OPSGENIE__SECTION__KEY` variables, typed by the key they name.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::load::ENV_PREFIX;
use super::problem::ConfigProblem;
use super::suggest::suggest_key;
use super::tree::set_at;
use super::walk::{Loader, FREE_MAPS};

impl Loader {
    /// Puts one environment variable into `tree`, converted to the type its key expects.
    pub(super) fn apply_env(&mut self, tree: &mut Value, name: &str, value: String) {
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
}

/// The environment variables carrying our prefix, sorted by name for a stable report.
pub(super) fn env_vars(
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

pub(super) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

pub(super) fn parse_number(s: &str, like: &serde_json::Number) -> Option<Value> {
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
pub(super) fn parse_pairs(s: &str) -> Option<Map<String, Value>> {
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
