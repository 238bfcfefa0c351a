//! Addressing values in an untyped tree by key path.

use serde_json::{Map, Value};

/// Sets `value` at `path`, creating (or replacing non-table) sections on the way.
pub(super) fn set_at(tree: &mut Value, path: &[String], value: Value) {
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

pub(super) fn get_at<'a>(tree: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(tree, |node, segment| node.as_object()?.get(*segment))
}

pub(super) fn collect_paths(node: &Value, prefix: &mut Vec<String>, out: &mut Vec<String>) {
    if let Value::Object(map) = node {
        for (key, child) in map {
            prefix.push(key.clone());
            out.push(prefix.join("."));
            collect_paths(child, prefix, out);
            prefix.pop();
        }
    }
}
