//! "Did you mean …?" for unknown keys.

use serde_json::Value;

use super::tree::{collect_paths, get_at};

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

/// The candidate closest to `key` by edit distance, if close enough to be a typo.
pub(super) fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
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
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
