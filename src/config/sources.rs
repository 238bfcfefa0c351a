//! Where the configuration comes from: the files, the drop-in folder and the environment. Kept
//! apart from the loader so that the layers (which read these) and the loader (which calls the
//! layers) do not import each other.

use std::collections::HashMap;
use std::path::PathBuf;

/// Where the daemon looks for its file when no `-c` is given; it may be absent.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/teleport-opsgenie.yaml";

/// The drop-in folder read after the files when no `--config-dir` is given; it may be absent.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/teleport-opsgenie.d";

/// Prefix of the environment variables that override the file, including the separator.
pub const ENV_PREFIX: &str = "TELEPORT_OPSGENIE__";

/// Where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The files to read, in order; later wins.
    pub files: Vec<PathBuf>,
    /// Whether a missing file is an error (true when the user named them explicitly).
    pub require_files: bool,
    /// The drop-in folder, read after the files.
    pub dir: Option<PathBuf>,
    /// Whether a missing folder is an error (true when the user named it explicitly).
    pub require_dir: bool,
    /// The environment; `None` reads the process environment. Tests pass a map here instead of
    /// changing the process environment.
    pub env: Option<HashMap<String, String>>,
}

impl Sources {
    /// The sources for the command line: the files given with `-c` (which must exist), or
    /// [`DEFAULT_CONFIG_PATH`] (which may be absent); the folder given with `--config-dir`
    /// (which must exist), or [`DEFAULT_CONFIG_DIR`] (which may be absent); and the process
    /// environment.
    pub fn from_cli(files: Vec<PathBuf>, dir: Option<PathBuf>) -> Self {
        let require_files = !files.is_empty();
        let files = if files.is_empty() {
            vec![PathBuf::from(DEFAULT_CONFIG_PATH)]
        } else {
            files
        };
        Self {
            files,
            require_files,
            require_dir: dir.is_some(),
            dir: Some(dir.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR))),
            env: None,
        }
    }

    /// One file, which must exist, and the given environment instead of the process's.
    pub fn file(path: impl Into<PathBuf>, env: HashMap<String, String>) -> Self {
        Self {
            files: vec![path.into()],
            require_files: true,
            env: Some(env),
            ..Self::default()
        }
    }
}
