use super::*;
use crate::backend::Domain;
use std::time::Duration;

/// Every family the README lists, as exported.
const README_NAMES: &[&str] = &[
    "build_info",
    "requests_observed_total",
    "alerts_created_total",
    "notes_posted_total",
    "alerts_closed_total",
    "auto_approval_decisions_total",
    "shift_revocations_total",
    "step_failures_total",
    "backend_calls_total",
    "backend_call_duration_seconds",
    "backend_throttles_total",
    "backend_retries_total",
    "backend_up",
    "backend_last_healthy_timestamp_seconds",
    "steps_in_flight",
    "watch_up",
    "watch_ready",
    "watch_connects_total",
    "watch_reconnects_total",
    "watch_resyncs_total",
    "watch_events_total",
    "identity_expiry_timestamp_seconds",
];

fn call(status: Option<u16>, millis: u64, throttled: bool, retry: bool) -> CallEvent {
    CallEvent {
        endpoint: "create_alert",
        domain: Domain::Alert,
        status,
        duration: Duration::from_millis(millis),
        attempt: 1,
        throttled,
        retry_in: retry.then(|| Duration::from_secs(1)),
    }
}

#[test]
fn every_family_has_its_readme_name_help_and_type() {
    let m = Metrics::new();
    // Families without a series yet are left out of the text; give each one a series.
    m.on_call(&call(Some(429), 30, true, true));
    m.requests_observed
        .get_or_create(&StateLabel { state: "pending" })
        .inc();
    m.alerts_closed
        .get_or_create(&ResolutionLabel {
            resolution: "approved",
        })
        .inc();
    let text = m.render();
    for name in README_NAMES {
        let full = format!("teleport_opsgenie_{name}");
        assert!(text.contains(&format!("# HELP {full} ")), "{full}:\n{text}");
        assert!(text.contains(&format!("# TYPE {full} ")), "{full}:\n{text}");
    }
    let declared = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(declared, README_NAMES.len(), "{text}");
    // One full stop, not two, after the help text.
    assert!(!text.contains(".."), "{text}");
    assert!(text.contains(&format!(
        "teleport_opsgenie_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
    // Fixed series exist at 0 before anything happened.
    assert!(text.contains("teleport_opsgenie_alerts_created_total 0\n"));
    assert!(text.contains("teleport_opsgenie_step_failures_total{kind=\"conflict\"} 0\n"));
    assert!(text.contains("teleport_opsgenie_notes_posted_total{kind=\"decision\"} 0\n"));
}

#[test]
fn backend_calls_feed_counters_and_latency() {
    let m = Metrics::new();
    m.on_call(&call(Some(429), 30, true, true));
    m.on_call(&call(None, 3, false, false));
    m.on_call(&call(Some(202), 700, false, false));
    let calls = |status: &str| {
        m.backend_calls
            .get_or_create(&CallLabels {
                endpoint: "create_alert",
                status: status.into(),
            })
            .get()
    };
    assert_eq!(calls("429"), 1);
    assert_eq!(calls("error"), 1);
    assert_eq!(calls("202"), 1);
    let domain = Domain::Alert.as_str();
    let throttles = m.backend_throttles.get_or_create(&DomainLabel { domain });
    assert_eq!(throttles.get(), 1);
    let endpoint = EndpointLabel {
        endpoint: "create_alert",
    };
    assert_eq!(m.backend_retries.get_or_create(&endpoint).get(), 1);

    let text = m.render();
    let histogram = "teleport_opsgenie_backend_call_duration_seconds";
    assert!(
        text.contains(&format!("# TYPE {histogram} histogram")),
        "{text}"
    );
    // Buckets are cumulative: 3 ms and 30 ms are under 50 ms, 700 ms only under 1 s.
    for (le, count) in [("0.005", 1), ("0.05", 2), ("0.5", 2), ("1", 3), ("+Inf", 3)] {
        let line = format!("{histogram}_bucket{{endpoint=\"create_alert\",le=\"{le}\"}} {count}\n");
        assert!(text.contains(&line), "{le}:\n{text}");
    }
    assert!(
        text.contains(&format!(
            "{histogram}_count{{endpoint=\"create_alert\"}} 3\n"
        )),
        "{text}"
    );
}

#[test]
fn mirrored_counters_never_go_down() {
    let c = Counter::default();
    set_total(&c, 5);
    set_total(&c, 3);
    assert_eq!(c.get(), 5);
    set_total(&c, 7);
    assert_eq!(c.get(), 7);
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    m.backend_calls
        .get_or_create(&CallLabels {
            endpoint: "x",
            status: "q\"uo\\te\n".into(),
        })
        .inc();
    let text = m.render();
    assert!(
        text.contains("status=\"q\\\"uo\\\\te\\n\""),
        "escaped label value:\n{text}"
    );
}
