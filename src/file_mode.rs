//! Secret files that other users of the host can read: the Teleport identity (or client key)
//! and the backend's API key file. Either lets whoever reads it act as the plugin, so `check`
//! and the daemon's start warn about a group- or world-accessible one, with the `chmod` that
//! fixes it. A warning, not a failure: the daemon works, and some setups (a shared group for
//! tbot and the plugin) grant group access on purpose.
//!
//! Unix only: elsewhere there are no mode bits to read, and nothing is reported.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// A secret file whose mode lets users other than its owner in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseFile {
    /// The setting that names the file, e.g. `teleport.identity`.
    pub key: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Its permission bits (e.g. `0o644`).
    pub mode: u32,
}

impl LooseFile {
    /// Who besides the owner may read the file.
    fn readers(&self) -> &'static str {
        match (self.mode & 0o040 != 0, self.mode & 0o004 != 0) {
            (true, true) => "its group and all other users",
            (false, true) => "all other users",
            (true, false) => "its group",
            // Only write or execute bits for others: still more than a secret needs.
            (false, false) => "users other than its owner (write or execute)",
        }
    }

    /// The command that fixes it.
    pub fn fix(&self) -> String {
        format!("chmod 600 {}", self.path.display())
    }
}

impl fmt::Display for LooseFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` {} is accessible to {} (mode {:04o}); it holds a secret: fix with `{}`",
            self.key,
            self.path.display(),
            self.readers(),
            self.mode & 0o7777,
            self.fix()
        )
    }
}

/// The secret files the configuration names, with their settings.
fn secret_files(config: &Config) -> Vec<(&'static str, &Path)> {
    [
        ("teleport.identity", config.teleport.identity.as_deref()),
        ("teleport.client_key", config.teleport.client_key.as_deref()),
        (
            "opsgenie.api_key_file",
            config.opsgenie.api_key_file.as_deref(),
        ),
        (
            "opsgenie.jsm.api_token_file",
            config.opsgenie.jsm.api_token_file.as_deref(),
        ),
    ]
    .into_iter()
    .filter_map(|(key, path)| Some((key, path?)))
    .collect()
}

/// The mode of `path` when users other than its owner may access it. A file that cannot be
/// examined is reported elsewhere (it cannot be read either), so it is skipped here.
#[cfg(unix)]
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    // Follows symlinks on purpose: tbot and Kubernetes secrets link to the real file, and its
    // mode is what matters.
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_: &Path) -> Option<u32> {
    None
}

/// Every secret file the configuration names that users other than its owner may access.
pub fn loose_files(config: &Config) -> Vec<LooseFile> {
    secret_files(config)
        .into_iter()
        .filter_map(|(key, path)| {
            loose_mode(path).map(|mode| LooseFile {
                key,
                path: path.to_owned(),
                mode,
            })
        })
        .collect()
}

/// Logs one warning per loose secret file (called once, at start).
pub fn warn_loose_files(config: &Config) {
    for file in loose_files(config) {
        tracing::warn!(
            key = file.key,
            path = %file.path.display(),
            mode = format_args!("{:04o}", file.mode & 0o7777),
            fix = %file.fix(),
            "A secret file is readable by other users of this host."
        );
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn write(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "secret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn group_or_world_readable_secrets_are_reported_with_the_chmod() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut config = Config::default();
        config.teleport.identity = Some(write(tmp.path(), "identity", 0o644));
        config.opsgenie.api_key_file = Some(write(tmp.path(), "api-key", 0o640));
        let found = loose_files(&config);
        assert_eq!(found.len(), 2, "{found:?}");
        let identity = &found[0];
        assert_eq!(identity.key, "teleport.identity");
        let text = identity.to_string();
        let path = tmp.path().join("identity").display().to_string();
        assert!(text.contains(&format!("`chmod 600 {path}`")), "{text}");
        assert!(text.contains("its group and all other users"), "{text}");
        assert!(text.contains("mode 0644"), "{text}");
        let key = found[1].to_string();
        assert!(key.contains("opsgenie.api_key_file"), "{key}");
        assert!(key.contains("accessible to its group (mode 0640)"), "{key}");
    }

    #[test]
    fn the_client_key_of_the_trio_is_checked_and_private_files_pass() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut config = Config::default();
        config.teleport.client_key = Some(write(tmp.path(), "auth.key", 0o604));
        // Certificates are public: only the key matters.
        config.teleport.client_crt = Some(write(tmp.path(), "auth.crt", 0o644));
        config.opsgenie.api_key_file = Some(write(tmp.path(), "api-key", 0o600));
        let found = loose_files(&config);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "teleport.client_key");
        assert!(found[0].to_string().contains("all other users"));
        // Fixed as the message says: nothing left to report.
        std::fs::set_permissions(&found[0].path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        assert_eq!(loose_files(&config), vec![]);
    }

    #[test]
    fn missing_files_are_left_to_the_other_checks() {
        let mut config = Config::default();
        config.teleport.identity = Some(PathBuf::from("/nonexistent/identity"));
        assert_eq!(loose_files(&config), vec![]);
    }
}
