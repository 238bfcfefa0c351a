//! Keys under other names: the habits of Teleport's access plugins (`teleport.auth_server`,
//! `[log] severity`, `opsgenie.api_endpoint`, …) and this daemon's own renamed keys
//! (`opsgenie.rate_limits.alert_write`). Each is either accepted, moved to its new name with a
//! warning that names it, or refused with the exact replacement. Runs on the layered tree,
//! before the schema walk, so that an alias is never reported as an unknown key.

use std::collections::HashMap;

use serde_json::Value;

use super::problem::{ConfigProblem, Warning};
use super::tree::{get_at, set_at};

/// What to do with an old key.
enum Action {
    /// Move the value to `new` and warn.
    Rename,
    /// Move the value to `new` after mapping it (`[log] severity: err` → `level: error`).
    RenameWith(fn(Value) -> Value),
    /// Refuse, with `why` and the replacement.
    Refuse(&'static str),
    /// Accept values `ok` says are what we do anyway (with a warning to remove the key);
    /// refuse the others with `why`.
    AcceptIf(fn(&Value) -> bool, &'static str),
}

struct Alias {
    old: &'static str,
    new: &'static str,
    /// Said after "… is …": where the old name comes from.
    origin: &'static str,
    action: Action,
}

const TELEPORT_PLUGINS: &str = "the name Teleport's access plugins use";

const ALIASES: &[Alias] = &[
    Alias {
        old: "teleport.auth_server",
        new: "teleport.addr",
        origin: TELEPORT_PLUGINS,
        action: Action::Rename,
    },
    Alias {
        old: "log.severity",
        new: "log.level",
        origin: TELEPORT_PLUGINS,
        action: Action::RenameWith(severity_to_level),
    },
    Alias {
        old: "log.output",
        new: "log",
        origin: TELEPORT_PLUGINS,
        action: Action::AcceptIf(
            is_stderr,
            "teleport-opsgenie always logs to standard error (systemd's journal or the container runtime collects it); redirect it there instead",
        ),
    },
    Alias {
        old: "opsgenie.addr",
        new: "opsgenie.api_url",
        origin: "a Teleport-style name",
        action: Action::Rename,
    },
    Alias {
        old: "opsgenie.api_endpoint",
        new: "opsgenie.api_url",
        origin: "the name of Teleport's hosted Opsgenie plugin",
        action: Action::Rename,
    },
    Alias {
        old: "opsgenie.alert_tags",
        new: "opsgenie.tags",
        origin: "the name in Teleport's Opsgenie design",
        action: Action::Rename,
    },
    Alias {
        old: "alert_tags",
        new: "opsgenie.tags",
        origin: "the name in Teleport's Opsgenie design",
        action: Action::Rename,
    },
    Alias {
        old: "opsgenie.token",
        new: "opsgenie.api_key_file",
        origin: "the name of Teleport's hosted Opsgenie plugin",
        action: Action::Refuse("write the key into a file readable only by the daemon and name that file in `opsgenie.api_key_file` (or, less safely, set `opsgenie.api_key`)"),
    },
    Alias {
        old: "opsgenie.recipients",
        new: "opsgenie.default_schedules",
        origin: "the name Teleport's access plugins use",
        action: Action::Rename,
    },
    Alias {
        old: "role_to_recipients",
        new: "opsgenie.default_schedules",
        origin: "a setting of Teleport's access plugins",
        action: Action::Refuse("name the schedules in the role's `teleport.dev/notify-services` annotation (see config/requester.yaml), or for every request in `opsgenie.default_schedules`"),
    },
    Alias {
        old: "opsgenie.rate_limits.alert_write",
        new: "opsgenie.rate_limits.alert",
        origin: "the old name (the limits now follow Opsgenie's own domains)",
        action: Action::Rename,
    },
    Alias {
        old: "opsgenie.rate_limits.alert_read",
        new: "opsgenie.rate_limits.search",
        origin: "the old name (the limits now follow Opsgenie's own domains: request status now counts under `opsgenie.rate_limits.alert`, with creates; `search` covers listing alerts)",
        action: Action::Rename,
    },
];

/// An alias's old name close to `key` under `parent`, and its new name: "alert_writes" is a
/// typo of the old `alert_write`, whose new name is `alert`.
pub(super) fn near_old_name(parent: &str, key: &str) -> Option<&'static str> {
    let candidates = ALIASES.iter().filter_map(|a| {
        let (alias_parent, leaf) = a.old.rsplit_once('.').unwrap_or(("", a.old));
        (alias_parent == parent).then_some((leaf, a.new))
    });
    let candidates: Vec<(&str, &str)> = candidates.collect();
    let best = super::typo::closest(key, candidates.iter().map(|(leaf, _)| *leaf))?;
    candidates
        .iter()
        .find(|(leaf, _)| *leaf == best)
        .map(|(_, new)| *new)
}

/// The new name of `dotted` (or of the section it is in) when it is simply renamed, e.g. for an
/// environment variable with the old name.
pub(super) fn renamed(dotted: &str) -> Option<(String, &'static str)> {
    ALIASES.iter().find_map(|a| {
        let rest = dotted.strip_prefix(a.old)?;
        (matches!(a.action, Action::Rename) && (rest.is_empty() || rest.starts_with('.')))
            .then(|| (format!("{}{rest}", a.new), a.origin))
    })
}

/// The replacement for `dotted` if it is an alias, for "did you mean" elsewhere (an
/// environment variable with an old name).
pub(super) fn replacement(dotted: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|a| a.old == dotted || dotted.starts_with(&format!("{}.", a.old)))
        .map(|a| a.new)
}

/// Applies the aliases to `tree`. `origins` (dotted path → where it was written) tells which
/// new keys the operator set too (the defaults are in the tree as well), and is updated for the
/// values moved.
pub(super) fn apply(
    tree: &mut Value,
    origins: &mut HashMap<String, String>,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<Warning>,
) {
    for alias in ALIASES {
        let old: Vec<&str> = alias.old.split('.').collect();
        let Some(value) = get_at(tree, &old).cloned() else {
            continue;
        };
        remove_at(tree, &old);
        let origin = origins.get(alias.old).cloned();
        let mut problem = |message: String, hint: String| {
            let mut p = ConfigProblem::new(alias.old, message).hint(hint);
            p.origin = origin.clone();
            problems.push(p);
        };
        let value = match &alias.action {
            Action::Refuse(why) => {
                problem(
                    format!("is {}; use `{}`", alias.origin, alias.new),
                    (*why).to_owned(),
                );
                continue;
            }
            Action::AcceptIf(ok, why) => {
                if ok(&value) {
                    warnings.push(
                        Warning::new(
                            alias.old,
                            format!(
                                "is {}; standard error is what teleport-opsgenie does anyway",
                                alias.origin
                            ),
                        )
                        .hint(format!("remove `{}`", alias.old)),
                    );
                } else {
                    problem(
                        format!("is {}, and only standard error is supported", alias.origin),
                        (*why).to_owned(),
                    );
                }
                continue;
            }
            Action::Rename => value,
            Action::RenameWith(map) => map(value),
        };
        // Leaf by leaf: a renamed section may be set partly under each name, but the same
        // value under both would leave us guessing which was meant.
        let mut leaves = Vec::new();
        collect_leaves(value, String::new(), &mut leaves);
        let clash = leaves
            .iter()
            .any(|(suffix, _)| origins.contains_key(&format!("{}{suffix}", alias.new)));
        if clash {
            problem(
                format!("is {} for `{}`, which is set too", alias.origin, alias.new),
                format!("keep only `{}`", alias.new),
            );
            continue;
        }
        warnings.push(
            Warning::new(
                alias.old,
                format!("is {}; read as `{}`", alias.origin, alias.new),
            )
            .hint(format!("rename it to `{}`", alias.new)),
        );
        for (suffix, leaf) in leaves {
            let old_leaf = format!("{}{suffix}", alias.old);
            let new_leaf = format!("{}{suffix}", alias.new);
            let path: Vec<String> = new_leaf.split('.').map(str::to_owned).collect();
            set_at(tree, &path, leaf);
            if let Some(origin) = origins.remove(&old_leaf).or_else(|| origin.clone()) {
                origins.insert(new_leaf, origin);
            }
        }
        origins.retain(|k, _| !(k == alias.old || k.starts_with(&format!("{}.", alias.old))));
    }
}

/// The leaves of `value`, each with its path below `value` (`""` for `value` itself, else
/// `.a.b`). An empty table is a leaf: it sets nothing, but it is still there.
fn collect_leaves(value: Value, suffix: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                collect_leaves(child, format!("{suffix}.{key}"), out);
            }
        }
        other => out.push((suffix, other)),
    }
}

fn remove_at(tree: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for segment in parents {
        match node.as_object_mut().and_then(|m| m.get_mut(*segment)) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(*last);
    }
}

/// Teleport's severities (case-insensitive `info`, `err`/`error`, `debug`, `warn`/`warning`)
/// as our levels; anything else goes through as written, for `log.level`'s own check.
fn severity_to_level(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(match s.trim().to_ascii_lowercase().as_str() {
            "err" | "error" => "error".into(),
            "warn" | "warning" => "warn".into(),
            "info" => "info".into(),
            "debug" => "debug".into(),
            _ => s,
        }),
        other => other,
    }
}

/// `[log] output` values that mean standard error in Teleport's plugins.
fn is_stderr(value: &Value) -> bool {
    matches!(value, Value::String(s) if matches!(s.trim().to_ascii_lowercase().as_str(), "stderr" | "error" | "2"))
}
