//! The layering, done by the `config` crate: the built-in defaults, then each file in order,
//! then the environment, merged into one untyped tree. Reading the files (bounded) and the
//! drop-in folder is ours; so is turning the merged tree into JSON for the schema walk, with
//! a note of where every value came from.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{Source, Value as CValue, ValueKind};
use serde_json::{Map, Value};

use super::env::{self, EnvLayer, UserEntries, ENV_ORIGIN};
use super::formats::{FileFormat, Kind, ParseError};
use super::problem::{ConfigProblem, Warning};
use super::safe;
use super::sources::{Sources, DEFAULT_CONFIG_PATH};
use super::Config;

/// Largest configuration file read: far above any real one (the annotated sample is 12 KiB),
/// small enough that a wrong file (a log, a core dump) is refused at once.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Most files read from the drop-in folder.
pub const MAX_DROP_IN_FILES: usize = 100;

/// The layered tree and what was learnt on the way.
pub(super) struct Layered {
    /// Defaults, files and environment merged; environment values typed by their key.
    pub tree: Value,
    /// Dotted path → where its value was written, for every value not from the defaults.
    pub origins: HashMap<String, String>,
}

/// Reads the sources and layers them. Problems with the files themselves (missing, unreadable,
/// unparsable) and with environment variable names go to `problems`; when a file cannot be
/// parsed, nothing is layered (`None`): checking the rest against a half-read configuration
/// would only add errors that are not there.
pub(super) fn layer(
    sources: &Sources,
    defaults: &Value,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<Warning>,
) -> Option<Layered> {
    let sections = Arc::new(section_paths(defaults));
    let mut files = Vec::new();
    let mut unreadable = false;
    let mut named_read = 0;
    for (i, (path, required)) in file_list(sources, problems, warnings)
        .into_iter()
        .enumerate()
    {
        match read_one(&path, required, &sections) {
            Ok(Some(file)) => {
                named_read += usize::from(i < sources.files.len());
                files.push(file);
            }
            Ok(None) => {}
            Err(problem) => {
                unreadable = true;
                problems.push(problem);
            }
        }
    }
    if !sources.require_files && !sources.files.is_empty() && named_read == 0 && !unreadable {
        let shown: Vec<String> = sources
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let also = if files.is_empty() {
            ""
        } else {
            ", the drop-in files"
        };
        warnings.push(
            Warning::info(
                shown.join(", "),
                format!("no configuration file there; using the built-in defaults{also} and the environment"),
            )
            .hint(format!(
                "write one with `teleport-opsgenie configure > {DEFAULT_CONFIG_PATH}`, or name one with -c"
            )),
        );
    }

    let env = env::scan(defaults, sources.env.as_ref(), problems, warnings);
    if unreadable {
        return None;
    }

    let defaults_layer = match config::Config::try_from(&Config::default()) {
        Ok(layer) => layer,
        Err(e) => {
            problems.push(ConfigProblem::new(
                "(defaults)",
                format!("cannot be layered: {e}"),
            ));
            return None;
        }
    };
    let mut builder = config::Config::builder().add_source(defaults_layer);
    for file in &files {
        builder = builder.add_source(config::File::from_str(&file.text, file.format.clone()));
    }
    let built = builder
        .add_source(env.environment())
        .add_source(UserEntries(env.entries.clone()))
        .build()
        .and_then(|merged| merged.collect());
    let merged = match built {
        Ok(merged) => merged,
        Err(e) => {
            // Every file parsed on its own above, so this is unexpected; still no panic, and the
            // text is cut and escaped.
            problems.push(ConfigProblem::new(
                "(config)",
                format!(
                    "the layers cannot be merged: {}",
                    safe::cut(&e.to_string(), 200)
                ),
            ));
            return None;
        }
    };

    let mut origins = HashMap::new();
    let mut tree = Value::Object(Map::new());
    if let Value::Object(map) = &mut tree {
        for (key, value) in merged {
            let json = to_json(value, &key, &env, &mut origins);
            map.insert(key, json);
        }
    }
    env::retype(&mut tree, defaults, &env);
    Some(Layered { tree, origins })
}

/// One file, read and checked to parse on its own.
struct ReadFile {
    text: String,
    format: FileFormat,
}

/// The files to read, in order, each with whether it must exist: the `-c` files (or the default
/// path), then the drop-in folder's `*.yaml`, `*.yml` and `*.toml` in name order.
fn file_list(
    sources: &Sources,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<Warning>,
) -> Vec<(PathBuf, bool)> {
    let mut list: Vec<(PathBuf, bool)> = sources
        .files
        .iter()
        .map(|p| (p.clone(), sources.require_files))
        .collect();
    let Some(dir) = &sources.dir else {
        return list;
    };
    let shown = dir.display().to_string();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !sources.require_dir => return list,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            problems.push(
                ConfigProblem::new(shown, "configuration folder not found")
                    .hint("create it, or leave out --config-dir"),
            );
            return list;
        }
        Err(e) => {
            problems.push(ConfigProblem::new(
                shown,
                format!("cannot read the configuration folder: {e}"),
            ));
            return list;
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| Kind::of(path).is_some() && path.is_file())
        .collect();
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if found.len() > MAX_DROP_IN_FILES {
        warnings.push(Warning::new(
            shown,
            format!(
                "holds {} configuration files; only the first {MAX_DROP_IN_FILES} (by name) are read",
                found.len()
            ),
        ));
        found.truncate(MAX_DROP_IN_FILES);
    }
    list.extend(found.into_iter().map(|p| (p, true)));
    list
}

/// Reads `path` (at most [`MAX_FILE_BYTES`]) and checks that it parses; `Ok(None)` when it is
/// optional and absent.
fn read_one(
    path: &Path,
    required: bool,
    sections: &Arc<Vec<String>>,
) -> Result<Option<ReadFile>, ConfigProblem> {
    let shown = path.display().to_string();
    let Some(kind) = Kind::of(path) else {
        return Err(
            ConfigProblem::new(shown, "unsupported configuration file type")
                .hint("name it *.yaml, *.yml or *.toml"),
        );
    };
    let file = match fs::File::open(path) {
        Ok(file) => file,
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
    let mut bytes = Vec::new();
    // One byte past the limit tells "too large" from "exactly at the limit".
    if let Err(e) = file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        return Err(ConfigProblem::new(
            shown,
            format!("cannot read the configuration file: {e}"),
        ));
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigProblem::new(
            shown,
            format!("is larger than {MAX_FILE_BYTES} bytes; a configuration file is far smaller"),
        )
        .hint("check that -c names the configuration file"));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigProblem::new(
            shown.clone(),
            format!(
                "is not valid UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let format = FileFormat {
        kind,
        origin: shown.clone(),
        sections: Arc::clone(sections),
    };
    // Parsed once here on its own, so that every file's syntax error is reported (with its
    // name) before anything is layered.
    if let Err(e) = config::Format::parse(&format, None, &text) {
        let message = match e.downcast_ref::<ParseError>() {
            Some(parse) => parse.message.clone(),
            None => "cannot be parsed".to_owned(),
        };
        return Err(ConfigProblem::new(shown, message));
    }
    Ok(Some(ReadFile { text, format }))
}

/// The dotted paths of the schema's sections.
fn section_paths(defaults: &Value) -> Vec<String> {
    fn walk(node: &Value, prefix: &str, out: &mut Vec<String>) {
        if let Value::Object(map) = node {
            for (key, child) in map {
                if child.is_object() {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    out.push(path.clone());
                    walk(child, &path, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(defaults, "", &mut out);
    out
}

/// A `config` value as JSON, recording the origin of it and everything under it.
fn to_json(
    value: CValue,
    path: &str,
    env: &EnvLayer,
    origins: &mut HashMap<String, String>,
) -> Value {
    match value.origin() {
        Some(ENV_ORIGIN) => {
            if let Some(var) = env.origin.get(path) {
                origins.insert(path.to_owned(), format!("environment variable {var}"));
            }
        }
        Some(file) => {
            origins.insert(path.to_owned(), format!("file `{file}`"));
        }
        None => {}
    }
    match value.kind {
        ValueKind::Nil => Value::Null,
        ValueKind::Boolean(b) => Value::Bool(b),
        ValueKind::I64(i) => Value::from(i),
        ValueKind::U64(u) => Value::from(u),
        ValueKind::I128(i) => {
            i64::try_from(i).map_or_else(|_| Value::String(i.to_string()), Value::from)
        }
        ValueKind::U128(u) => {
            u64::try_from(u).map_or_else(|_| Value::String(u.to_string()), Value::from)
        }
        ValueKind::Float(f) => serde_json::Number::from_f64(f)
            .map_or_else(|| Value::String(f.to_string()), Value::Number),
        ValueKind::String(s) => Value::String(s),
        ValueKind::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| to_json(item, path, env, origins))
                .collect(),
        ),
        ValueKind::Table(table) => {
            let mut map = Map::new();
            for (key, child) in table {
                let child_path = format!("{path}.{key}");
                map.insert(key, to_json(child, &child_path, env, origins));
            }
            Value::Object(map)
        }
    }
}
