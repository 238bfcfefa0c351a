//! The range of every duration and count in the configuration, in one table.
//!
//! Out-of-range values are refused by validation, with the key path and the range, so that
//! `check` reports them and `start` exits 78 instead of panicking later: a duration of
//! `500000000000y` overflows the first `Instant` it is added to, and a `max_concurrency` past
//! tokio's semaphore limit aborts the process. The bounds are generous (they exist to refuse
//! nonsense, not to second-guess an operator); the same texts appear in the field docs and the
//! sample files, and a test keeps them in step.

use std::time::Duration;

use super::problem::ConfigProblem;
use super::safe;
use super::Config;

const MS: Duration = Duration::from_millis(1);
const TEN_MS: Duration = Duration::from_millis(10);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The range of one duration.
pub(super) struct Span {
    /// Dotted key path.
    pub key: &'static str,
    /// The value, or `None` where the key does not apply (unset, or ignored by the rest).
    pub get: fn(&Config) -> Option<Duration>,
    /// Whether `0s` is allowed, meaning "off", below `min`.
    pub zero_is_off: bool,
    pub min: Duration,
    pub max: Duration,
    /// Said with the problem, when there is more to say than the range.
    pub hint: Option<&'static str>,
}

/// The range of one count.
pub(super) struct Count {
    pub key: &'static str,
    pub get: fn(&Config) -> u64,
    pub min: u64,
    pub max: u64,
}

/// Every duration in the configuration.
pub(super) const SPANS: &[Span] = &[
    Span {
        key: "teleport.refresh_identity_interval",
        // Only read for an identity file that is refreshed.
        get: |c| {
            (c.teleport.identity.is_some() && c.teleport.refresh_identity)
                .then_some(c.teleport.refresh_identity_interval)
        },
        zero_is_off: false,
        min: TEN_MS,
        max: DAY,
        hint: Some("set teleport.refresh_identity to false to stop re-reading the file"),
    },
    Span {
        key: "teleport.dial_timeout",
        get: |c| Some(c.teleport.dial_timeout),
        zero_is_off: false,
        min: MS,
        max: HOUR,
        hint: None,
    },
    Span {
        key: "teleport.call_timeout",
        get: |c| Some(c.teleport.call_timeout),
        zero_is_off: false,
        min: MS,
        max: HOUR,
        hint: None,
    },
    Span {
        key: "teleport.watch_silence_timeout",
        get: |c| Some(c.teleport.watch_silence_timeout),
        zero_is_off: true,
        min: TEN_MS,
        max: DAY,
        hint: None,
    },
    Span {
        key: "opsgenie.request_timeout",
        get: |c| Some(c.opsgenie.request_timeout),
        zero_is_off: false,
        min: MS,
        max: HOUR,
        hint: None,
    },
    Span {
        key: "auto_approval.max_duration",
        get: |c| c.auto_approval.max_duration,
        zero_is_off: false,
        min: SECOND,
        max: Duration::from_secs(30 * 24 * 3600),
        hint: Some("remove it for no limit; 0s would approve nothing"),
    },
    Span {
        key: "auto_approval.cache_ttl",
        get: |c| Some(c.auto_approval.cache_ttl),
        zero_is_off: true,
        min: MS,
        max: DAY,
        hint: None,
    },
    Span {
        key: "auto_approval.shift_grace",
        get: |c| Some(c.auto_approval.shift_grace),
        zero_is_off: true,
        min: SECOND,
        max: DAY,
        hint: None,
    },
    Span {
        key: "http.ready_backend_window",
        get: |c| Some(c.http.ready_backend_window),
        zero_is_off: false,
        min: TEN_MS,
        max: DAY,
        hint: None,
    },
    Span {
        key: "daemon.shutdown_timeout",
        get: |c| Some(c.daemon.shutdown_timeout),
        zero_is_off: true,
        min: MS,
        max: HOUR,
        hint: None,
    },
    Span {
        key: "daemon.claim_ttl",
        get: |c| Some(c.daemon.claim_ttl),
        zero_is_off: false,
        min: TEN_MS,
        max: DAY,
        hint: None,
    },
    Span {
        key: "daemon.retry_min_delay",
        get: |c| Some(c.daemon.retry_min_delay),
        zero_is_off: false,
        min: MS,
        max: HOUR,
        hint: None,
    },
    Span {
        key: "daemon.retry_max_delay",
        get: |c| Some(c.daemon.retry_max_delay),
        zero_is_off: false,
        min: MS,
        max: DAY,
        hint: None,
    },
    Span {
        key: "daemon.orphan_sweep_interval",
        get: |c| Some(c.daemon.orphan_sweep_interval),
        zero_is_off: true,
        min: TEN_MS,
        max: Duration::from_secs(7 * 24 * 3600),
        hint: None,
    },
];

/// Every count in the configuration.
pub(super) const COUNTS: &[Count] = &[
    Count {
        key: "opsgenie.max_concurrency",
        get: |c| c.opsgenie.max_concurrency as u64,
        min: 1,
        max: 1024,
    },
    Count {
        key: "opsgenie.rate_limits.alert.per_second",
        get: |c| c.opsgenie.rate_limits.alert.per_second.into(),
        min: 0,
        max: 10_000,
    },
    Count {
        key: "opsgenie.rate_limits.alert.per_minute",
        get: |c| c.opsgenie.rate_limits.alert.per_minute.into(),
        min: 0,
        max: 600_000,
    },
    Count {
        key: "opsgenie.rate_limits.search.per_second",
        get: |c| c.opsgenie.rate_limits.search.per_second.into(),
        min: 0,
        max: 10_000,
    },
    Count {
        key: "opsgenie.rate_limits.search.per_minute",
        get: |c| c.opsgenie.rate_limits.search.per_minute.into(),
        min: 0,
        max: 600_000,
    },
    Count {
        key: "opsgenie.rate_limits.schedule_oncalls.per_second",
        get: |c| c.opsgenie.rate_limits.schedule_oncalls.per_second.into(),
        min: 0,
        max: 10_000,
    },
    Count {
        key: "opsgenie.rate_limits.schedule_oncalls.per_minute",
        get: |c| c.opsgenie.rate_limits.schedule_oncalls.per_minute.into(),
        min: 0,
        max: 600_000,
    },
    Count {
        key: "opsgenie.rate_limits.heartbeat.per_second",
        get: |c| c.opsgenie.rate_limits.heartbeat.per_second.into(),
        min: 0,
        max: 10_000,
    },
    Count {
        key: "opsgenie.rate_limits.heartbeat.per_minute",
        get: |c| c.opsgenie.rate_limits.heartbeat.per_minute.into(),
        min: 0,
        max: 600_000,
    },
    Count {
        key: "opsgenie.rate_limits.configuration.per_second",
        get: |c| c.opsgenie.rate_limits.configuration.per_second.into(),
        min: 0,
        max: 10_000,
    },
    Count {
        key: "opsgenie.rate_limits.configuration.per_minute",
        get: |c| c.opsgenie.rate_limits.configuration.per_minute.into(),
        min: 0,
        max: 600_000,
    },
    Count {
        key: "auto_approval.lookup_retries",
        get: |c| c.auto_approval.lookup_retries.into(),
        min: 0,
        max: 100,
    },
    Count {
        key: "auto_approval.max_schedules",
        get: |c| c.auto_approval.max_schedules as u64,
        min: 1,
        max: 100,
    },
];

impl Span {
    /// The range in words, as the docs and the sample write it: "Range: 1ms to 1h." or
    /// "Range: 0s (off), or 10ms to 1day."
    pub(super) fn text(&self) -> String {
        let range = format!("{} to {}", fmt(self.min), fmt(self.max));
        if self.zero_is_off {
            format!("Range: 0s (off), or {range}.")
        } else {
            format!("Range: {range}.")
        }
    }

    fn contains(&self, value: Duration) -> bool {
        (self.zero_is_off && value.is_zero()) || (self.min..=self.max).contains(&value)
    }
}

impl Count {
    /// "Range: 1 to 1024."
    pub(super) fn text(&self) -> String {
        format!("Range: {} to {}.", self.min, self.max)
    }
}

/// A problem for every duration and count outside its range.
pub(super) fn check_ranges(config: &Config, problems: &mut Vec<ConfigProblem>) {
    for span in SPANS {
        let Some(value) = (span.get)(config) else {
            continue;
        };
        if !span.contains(value) {
            let shown = safe::cut(&fmt(value), safe::SHOWN_CHARS);
            let mut problem = ConfigProblem::new(
                span.key,
                format!("{shown} is out of range. {}", span.text()),
            );
            if let Some(hint) = span.hint {
                problem = problem.hint(hint);
            }
            problems.push(problem);
        }
    }
    for count in COUNTS {
        let value = (count.get)(config);
        if !(count.min..=count.max).contains(&value) {
            problems.push(ConfigProblem::new(
                count.key,
                format!("{value} is out of range. {}", count.text()),
            ));
        }
    }
}

fn fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SAMPLE_YAML;

    /// The schema's source, whose field docs must state each range.
    const SCHEMA: &str = include_str!("mod.rs");

    fn all_texts() -> Vec<(&'static str, String)> {
        SPANS
            .iter()
            .map(|s| (s.key, s.text()))
            .chain(COUNTS.iter().map(|c| (c.key, c.text())))
            .collect()
    }

    #[test]
    fn every_range_is_documented_at_its_field_and_in_the_sample() {
        for (key, text) in all_texts() {
            let leaf = key.rsplit('.').next().unwrap();
            // The field's doc comment, in the lines just above `pub <leaf>:`.
            let lines: Vec<&str> = SCHEMA.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.trim_start().starts_with(&format!("pub {leaf}:")))
                .unwrap_or_else(|| panic!("no field {leaf}"));
            let doc = lines[at.saturating_sub(6)..at].join("\n");
            assert!(
                doc.contains(&format!("/// {text}")),
                "{key}: doc lacks {text:?}"
            );
            // The sample: above the key, or for the rate limits once above the block.
            if key.starts_with("opsgenie.rate_limits.") {
                assert!(SAMPLE_YAML.contains(&format!("{leaf}: {text}")), "{key}");
                continue;
            }
            let lines: Vec<&str> = SAMPLE_YAML.lines().collect();
            let at = lines
                .iter()
                .position(|l| {
                    let l = l.trim_start().trim_start_matches("# ");
                    l.starts_with(&format!("{leaf}:"))
                })
                .unwrap_or_else(|| panic!("sample lacks {leaf}"));
            assert!(
                lines[at - 1].trim_start() == format!("# {text}"),
                "{key}: the sample's line above says {:?}, not {text:?}",
                lines[at - 1]
            );
        }
    }

    #[test]
    fn values_outside_each_range_are_refused_with_the_key_and_the_range() {
        let huge = Duration::from_secs(u64::MAX);
        let mut config = Config::default();
        config.teleport.identity = Some("/x".into());
        config.teleport.dial_timeout = Duration::ZERO;
        config.teleport.watch_silence_timeout = Duration::from_millis(1);
        config.daemon.claim_ttl = huge;
        config.daemon.orphan_sweep_interval = huge;
        config.auto_approval.cache_ttl = huge;
        config.auto_approval.max_duration = Some(Duration::ZERO);
        config.opsgenie.max_concurrency = 4_611_686_018_427_387_904;
        config.opsgenie.rate_limits.heartbeat.per_minute = u32::MAX;
        config.auto_approval.lookup_retries = 101;
        let mut problems = Vec::new();
        check_ranges(&config, &mut problems);
        let found: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("teleport.dial_timeout", "0s is out of range. Range: 1ms to 1h."),
                (
                    "teleport.watch_silence_timeout",
                    "1ms is out of range. Range: 0s (off), or 10ms to 1day."
                ),
                (
                    "auto_approval.max_duration",
                    "0s is out of range. Range: 1s to 30days."
                ),
                (
                    "auto_approval.cache_ttl",
                    "584542046090years 7months 15days 17h 5m … (42 characters) is out of range. Range: 0s (off), or 1ms to 1day."
                ),
                (
                    "daemon.claim_ttl",
                    "584542046090years 7months 15days 17h 5m … (42 characters) is out of range. Range: 10ms to 1day."
                ),
                (
                    "daemon.orphan_sweep_interval",
                    "584542046090years 7months 15days 17h 5m … (42 characters) is out of range. Range: 0s (off), or 10ms to 7days."
                ),
                (
                    "opsgenie.max_concurrency",
                    "4611686018427387904 is out of range. Range: 1 to 1024."
                ),
                (
                    "opsgenie.rate_limits.heartbeat.per_minute",
                    "4294967295 is out of range. Range: 0 to 600000."
                ),
                (
                    "auto_approval.lookup_retries",
                    "101 is out of range. Range: 0 to 100."
                ),
            ]
        );
        // The defaults are all in range; zero is "off" where the table says so.
        let mut problems = Vec::new();
        let mut config = Config::default();
        config.daemon.orphan_sweep_interval = Duration::ZERO;
        config.auto_approval.cache_ttl = Duration::ZERO;
        check_ranges(&config, &mut problems);
        assert_eq!(problems, []);
    }
}
