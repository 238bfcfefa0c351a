//! The schema walk: every key of the user's tree checked against the defaults, every problem
//! collected with its key path, and every value that fits kept.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::problem::{ConfigError, ConfigProblem};
use super::safe;
use super::suggest::suggest_key;
use super::tree::{get_at, set_at};
use super::Config;

/// Keys whose value is a free-form map: their own keys are data, not schema.
pub(super) const FREE_MAPS: &[&str] = &["auto_approval.users"];

/// Keys whose value must never be echoed, not even in a type error.
pub(super) const SECRET_KEYS: &[&str] = &["opsgenie.api_key", "opsgenie.jsm.api_token"];

/// Optional duration keys (their default is `null`, so they cannot be recognised by the default).
pub(super) const OPTIONAL_DURATION_KEYS: &[&str] = &["auto_approval.max_duration"];

/// Keys checked together: a type error on one makes the semantic checks of the group moot
/// (e.g. a malformed `api_key` would otherwise also yield "no API key").
pub(super) const RELATED_KEYS: &[&[&str]] = &[
    &["opsgenie.api_key", "opsgenie.api_key_file"],
    &["opsgenie.jsm.api_token", "opsgenie.jsm.api_token_file"],
    &[
        "teleport",
        "teleport.identity",
        "teleport.client_key",
        "teleport.client_crt",
        "teleport.root_cas",
    ],
];

/// `path` and the keys checked together with it.
pub(super) fn related(path: &str) -> impl Iterator<Item = &str> {
    let group = RELATED_KEYS
        .iter()
        .find(|group| group.contains(&path))
        .map_or(&[][..], |group| *group);
    std::iter::once(path).chain(group.iter().copied())
}

/// Collects problems while the layers are merged and checked.
pub(super) struct Loader {
    /// The defaults as a JSON tree: the schema that keys and types are checked against.
    pub(super) defaults: Value,
    pub(super) problems: Vec<ConfigProblem>,
    /// Dotted path → where its value was written (`file \`…\`` or `environment variable …`).
    pub(super) origins: HashMap<String, String>,
    /// Paths with a type error: their later semantic problems would only repeat it.
    pub(super) bad_paths: BTreeSet<String>,
}

impl Loader {
    pub(super) fn new() -> Result<Self, ConfigError> {
        let defaults = serde_json::to_value(Config::default()).map_err(|e| {
            ConfigError::of(vec![ConfigProblem::new(
                "(defaults)",
                format!("cannot be serialised: {e}"),
            )])
        })?;
        Ok(Self {
            defaults,
            problems: Vec::new(),
            origins: HashMap::new(),
            bad_paths: BTreeSet::new(),
        })
    }

    /// Checks the merged user tree for unknown keys and type errors, and returns the defaults
    /// overlaid with every value that passed.
    pub(super) fn check_tree(&mut self, tree: &Value) -> Value {
        let mut clean = self.defaults.clone();
        let defaults = self.defaults.clone();
        let mut path = Vec::new();
        self.walk(&defaults, tree, &mut path, &mut clean);
        clean
    }

    pub(super) fn walk(
        &mut self,
        defaults: &Value,
        user: &Value,
        path: &mut Vec<String>,
        clean: &mut Value,
    ) {
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
                    let mut problem = ConfigProblem::new(dotted, "unknown key").maybe_hint(hint);
                    problem.origin = self.origin_of(&problem.path);
                    self.problems.push(problem);
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
    pub(super) fn check_leaf(&mut self, path: &[String], value: &Value, clean: &mut Value) {
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
                if dotted == "http.listen" {
                    hints.push(listen_hint(value));
                }
                self.type_problem(dotted, message, hints);
            }
        }
    }

    /// Records a type error at `dotted`, with `hints` and where the value was written.
    pub(super) fn type_problem(&mut self, dotted: String, message: String, hints: Vec<String>) {
        let hint = (!hints.is_empty()).then(|| hints.join("; "));
        self.bad_paths.insert(dotted.clone());
        let mut problem = ConfigProblem::new(dotted, message).maybe_hint(hint);
        problem.origin = self.origin_of(&problem.path);
        self.problems.push(problem);
    }

    /// Where the value at `dotted` (or, for a key that is not there, its section) was written.
    pub(super) fn origin_of(&self, dotted: &str) -> Option<String> {
        let mut path = dotted;
        loop {
            if let Some(origin) = self.origins.get(path) {
                return Some(origin.clone());
            }
            path = path.rsplit_once('.')?.0;
        }
    }

    pub(super) fn is_duration_key(&self, dotted: &str) -> bool {
        if OPTIONAL_DURATION_KEYS.contains(&dotted) {
            return true;
        }
        let segments: Vec<&str> = dotted.split('.').collect();
        matches!(get_at(&self.defaults, &segments), Some(Value::String(s))
            if humantime::parse_duration(s).is_ok())
    }
}

/// A type error as "expected X, got Y", never echoing a secret.
pub(super) fn type_message(path: &str, value: &Value, serde_message: &str) -> String {
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
    // The rest of a serde message may quote the value (a duration parser names the bad unit):
    // it is shown only cut, and not at all when it looks like it holds a key.
    if secret || safe::looks_secret(serde_message) {
        format!("invalid value ({got})")
    } else {
        format!("invalid value {got}: {}", safe::cut(serde_message, 120))
    }
}

pub(super) fn friendly_expected(expected: &str) -> String {
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
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => safe::show(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => describe_kind(other).to_owned(),
    }
}

pub(super) fn describe_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty value",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// A working example for a listen address that is not an IP address and port, using the
/// operator's own port when there is one (`:9489`, `localhost:9489`).
fn listen_hint(value: &Value) -> String {
    let port = value
        .as_str()
        .and_then(|s| s.rsplit_once(':'))
        .and_then(|(_, port)| port.trim().parse::<u16>().ok())
        .unwrap_or(9469);
    format!(
        "write an IP address and a port: 127.0.0.1:{port} for this host only, or 0.0.0.0:{port} for every interface (a host name such as localhost is not accepted)"
    )
}
