//! "Did you mean …?" for unknown keys.

use serde_json::Value;

use super::tree::{collect_paths, get_at};
use super::typo::closest;

/// "did you mean" for an unknown `key` under the section `parent` ("" for the top level).
pub(super) fn suggest_key(defaults: &Value, parent: &str, key: &str) -> Option<String> {
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
    // A typo of an old name.
    if let Some(new) = super::aliases::near_old_name(parent, key) {
        return Some(format!(
            "did you mean \"{}\"?",
            new.rsplit('.').next().unwrap_or(new)
        ));
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
