//! Files the configuration names: the API key file is read (bounded); the others are only
//! checked for being readable.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use super::problem::ConfigProblem;
use super::safe;
use super::Secret;

/// An API key file larger than this is surely the wrong file.
pub(super) const MAX_API_KEY_FILE_BYTES: u64 = 4096;

/// Reads the API key file, trimmed; the key itself never reaches a message.
pub(super) fn read_api_key_file(path: &Path) -> Result<Secret, ConfigProblem> {
    read_secret_file("opsgenie.api_key_file", "the API key", path)
}

/// Reads a file holding one secret (`what`, e.g. "the API token") named by `key`, trimmed;
/// the secret itself never reaches a message.
pub(super) fn read_secret_file(
    key: &str,
    what: &str,
    path: &Path,
) -> Result<Secret, ConfigProblem> {
    let shown = safe::show_path(path);
    let file = open_readable(key, path)?;
    let mut text = String::new();
    // Read one byte past the limit to tell "too large" from "exactly at the limit".
    let read = file
        .take(MAX_API_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text);
    if let Err(e) = read {
        return Err(ConfigProblem::new(key, format!("cannot read {shown}: {e}")));
    }
    if text.len() as u64 > MAX_API_KEY_FILE_BYTES {
        return Err(ConfigProblem::new(
            key,
            format!(
                "{shown} is larger than {MAX_API_KEY_FILE_BYTES} bytes; it should hold only {what}"
            ),
        ));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ConfigProblem::new(key, format!("{shown} is empty")));
    }
    if trimmed.contains(['\n', '\r']) {
        return Err(ConfigProblem::new(
            key,
            format!("{shown} holds several lines; it should hold only {what}"),
        ));
    }
    Ok(Secret::new(trimmed))
}

pub(super) fn check_readable(key: &str, path: &Path, problems: &mut Vec<ConfigProblem>) {
    if let Err(problem) = open_readable(key, path) {
        problems.push(problem.about_a_file());
    }
}

/// Opens `path` for reading, explaining in a problem why that is impossible.
pub(super) fn open_readable(key: &str, path: &Path) -> Result<fs::File, ConfigProblem> {
    let shown = safe::show_path(path);
    if path.as_os_str().is_empty() {
        return Err(
            ConfigProblem::new(key, "is an empty path").hint("remove the key or give a path")
        );
    }
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ConfigProblem::new(
                key,
                format!("file {shown} does not exist"),
            ))
        }
        Err(e) => {
            return Err(ConfigProblem::new(
                key,
                format!("cannot access {shown}: {e}"),
            ))
        }
        Ok(meta) if meta.is_dir() => {
            // tbot writes its identity output into a folder, as a file named `identity`; the
            // folder itself is the common mistake.
            let inside = path.join("identity");
            let hint = if inside.is_file() {
                format!(
                    "set `{key}: {}` (tbot's identity output in that folder)",
                    safe::show_path(&inside)
                )
            } else {
                format!(
                    "name a file; if this is tbot's destination folder, its identity output is `{}`",
                    safe::show_path(&inside)
                )
            };
            return Err(
                ConfigProblem::new(key, format!("{shown} is a directory, not a file")).hint(hint),
            );
        }
        Ok(_) => {}
    }
    fs::File::open(path).map_err(|e| {
        ConfigProblem::new(key, format!("cannot read {shown}: {e}"))
            .hint("check the file's owner and mode against the user the daemon runs as")
    })
}
