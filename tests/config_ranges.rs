//! Property tests: arbitrary durations and integers, through the environment layer or set in
//! code, go through configuration validation without panicking, and out-of-range values are
//! refused naming their key.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use tempfile::TempDir;

use teleport_opsgenie::config::{self, Config, Sources};

const DURATION_KEYS: &[&str] = &[
    "teleport.refresh_identity_interval",
    "teleport.dial_timeout",
    "teleport.call_timeout",
    "teleport.watch_silence_timeout",
    "opsgenie.request_timeout",
    "auto_approval.max_duration",
    "auto_approval.cache_ttl",
    "http.ready_backend_window",
    "daemon.shutdown_timeout",
    "daemon.claim_ttl",
    "daemon.retry_min_delay",
    "daemon.retry_max_delay",
    "daemon.orphan_sweep_interval",
];

const COUNT_KEYS: &[&str] = &[
    "opsgenie.max_concurrency",
    "opsgenie.rate_limits.heartbeat.per_second",
    "opsgenie.rate_limits.schedule_oncalls.per_minute",
    "auto_approval.lookup_retries",
];

/// An identity and an API key file, shared by every case (validation only checks that they
/// can be read).
fn files() -> &'static (TempDir, HashMap<String, String>) {
    static FILES: OnceLock<(TempDir, HashMap<String, String>)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = TempDir::new().expect("temp dir");
        let identity = dir.path().join("identity");
        let key = dir.path().join("api-key");
        std::fs::write(&identity, "read, not parsed").expect("identity");
        std::fs::write(&key, "0123").expect("key");
        let env = HashMap::from([
            (
                "TELEPORT_OPSGENIE__TELEPORT__IDENTITY".to_owned(),
                identity.display().to_string(),
            ),
            (
                "TELEPORT_OPSGENIE__OPSGENIE__API_KEY_FILE".to_owned(),
                key.display().to_string(),
            ),
        ]);
        (dir, env)
    })
}

fn env_name(key: &str) -> String {
    format!(
        "TELEPORT_OPSGENIE__{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// Loads with `key` set to `value` through the environment; the problems' paths, if any.
fn load_with(key: &str, value: &str) -> Result<Config, Vec<String>> {
    let mut env = files().1.clone();
    env.insert(env_name(key), value.to_owned());
    config::load(&Sources {
        env: Some(env),
        ..Sources::default()
    })
    .map_err(|e| e.problems.into_iter().map(|p| p.path).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_durations_are_loaded_or_refused_at_their_key(
        key in prop::sample::select(DURATION_KEYS),
        amount in any::<u64>(),
        unit in prop::sample::select(&["ns", "us", "ms", "s", "m", "h", "d", "w", "M", "y", "", "parsecs"][..]),
    ) {
        let text = format!("{amount}{unit}");
        match load_with(key, &text) {
            Ok(config) => {
                // What loads is in range, so adding it to a clock reading cannot overflow.
                let d = match key {
                    "daemon.claim_ttl" => config.daemon.claim_ttl,
                    "daemon.orphan_sweep_interval" => config.daemon.orphan_sweep_interval,
                    "auto_approval.cache_ttl" => config.auto_approval.cache_ttl,
                    _ => Duration::ZERO,
                };
                prop_assert!(d <= Duration::from_secs(7 * 24 * 3600));
                let _ = std::time::Instant::now() + d;
            }
            Err(paths) => {
                // Retry delays are also checked against each other; every other problem is
                // at the key that was set.
                prop_assert!(
                    paths.iter().all(|p| p == key || p.starts_with("daemon.retry_")),
                    "{key}={text}: {paths:?}"
                );
            }
        }
    }

    #[test]
    fn arbitrary_integers_are_loaded_or_refused_at_their_key(
        key in prop::sample::select(COUNT_KEYS),
        value in prop_oneof![any::<i64>().prop_map(|v| v.to_string()), any::<u64>().prop_map(|v| v.to_string()), any::<u128>().prop_map(|v| v.to_string())],
    ) {
        if let Err(paths) = load_with(key, &value) {
            prop_assert_eq!(paths, vec![key.to_owned()], "{}={}", key, value);
        }
    }

    #[test]
    fn arbitrary_durations_and_counts_set_in_code_never_panic(
        secs in any::<u64>(),
        nanos in 0u32..1_000_000_000,
        count in any::<usize>(),
        small in any::<u32>(),
    ) {
        let d = Duration::new(secs, nanos);
        let mut config = Config::default();
        config.teleport.identity = Some(files().0.path().join("identity"));
        config.opsgenie.api_key_file = Some(files().0.path().join("api-key"));
        config.daemon.claim_ttl = d;
        config.daemon.retry_max_delay = d;
        config.daemon.orphan_sweep_interval = d;
        config.auto_approval.cache_ttl = d;
        config.auto_approval.max_duration = Some(d);
        config.http.ready_backend_window = d;
        config.opsgenie.max_concurrency = count;
        config.auto_approval.lookup_retries = small;
        if let Err(err) = config::validate(config) {
            for problem in &err.problems {
                prop_assert!(problem.message.contains("Range:") || problem.path == "daemon.retry_max_delay", "{}", problem);
            }
        }
    }
}
