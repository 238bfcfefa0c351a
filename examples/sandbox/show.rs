//! What the sandbox prints besides its checks: the users, an alert as the on-call engineer
//! reads it, what the summary's counts mean, and how to look at the fake's alerts with `curl`.

use std::path::Path;

use teleport_opsgenie::sim::opsgenie::{Alert, AlertStatus, Note};
use teleport_opsgenie::sim::world::USERS;

const BAR: &str = "    │ ";

/// The sandbox's Teleport users, their roles and what each is for.
pub fn users() {
    println!("Teleport users in the sandbox:");
    for u in USERS {
        println!("  {:<24} {:<38} {}", u.name, u.roles.join(", "), u.purpose);
    }
}

/// An alert as Opsgenie shows it to the on-call engineer: title, state, responders,
/// description and notes, oldest first.
pub fn alert(a: &Alert) {
    let state = match (a.status, a.acknowledged) {
        (AlertStatus::Closed, _) => "closed",
        (AlertStatus::Open, true) => "open, acknowledged",
        (AlertStatus::Open, false) => "open",
    };
    println!(
        "    ┌ #{} {}  [{state}, {}]",
        a.tiny_id, a.message, a.priority
    );
    let responders: Vec<String> = a
        .routed_to
        .iter()
        .map(|r| format!("{} {}", r.kind, r.name))
        .collect();
    println!("{BAR}responders: {}", none_if_empty(&responders.join(", ")));
    let missing = a.responders.len() - a.routed_to.len();
    if missing > 0 {
        println!("{BAR}  ({missing} responder(s) named nothing Opsgenie knows, and were dropped)");
    }
    println!("{BAR}tags: {}", none_if_empty(&a.tags.join(", ")));
    println!("{BAR}alias: {}", a.alias);
    println!("{BAR}description:");
    for line in a.description.as_deref().unwrap_or("").lines() {
        println!("{BAR}  {line}");
    }
    println!("{BAR}notes ({}, oldest first):", a.notes.len());
    for n in &a.notes {
        note(n);
    }
    println!("    └");
}

fn note(n: &Note) {
    let when = humantime::format_rfc3339_seconds(n.added_at);
    let mut lines = n.text.lines();
    println!("{BAR}  {when}  {}", lines.next().unwrap_or(""));
    for line in lines {
        println!("{BAR}  {:20}  {line}", "");
    }
}

fn none_if_empty(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        s
    }
}

/// The kinds of note the daemon writes, told apart by how each starts.
fn is_decision(n: &Note) -> bool {
    n.text.starts_with("Auto-approved:") || n.text.starts_with("Not auto-approved")
}

fn is_closing(n: &Note) -> bool {
    n.text.starts_with("Access request ")
}

fn is_review(n: &Note) -> bool {
    !is_decision(n) && !is_closing(n) && n.text.contains(" the request")
}

/// What the JSON summary's counts are, computed from the alerts themselves.
pub fn explain(alerts: &[Alert]) {
    let closed = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Closed)
        .count();
    println!();
    println!("What the summary below counts:");
    println!(
        "  alerts_created {}: one alert per access request (no duplicates).",
        alerts.len()
    );
    println!(
        "  closed {closed}: an alert closes when its request is over (approved, denied, or \
         deleted); a request still pending keeps its alert open:"
    );
    for a in alerts {
        let why = match a.status {
            AlertStatus::Closed => a
                .notes
                .iter()
                .rev()
                .find(|n| is_closing(n))
                .and_then(|n| n.text.lines().next())
                .unwrap_or("closed")
                .to_owned(),
            AlertStatus::Open => "open: the request is still pending".to_owned(),
        };
        println!("    #{:<3} {:<45} {why}", a.tiny_id, a.message);
    }
    let all: Vec<&Note> = alerts.iter().flat_map(|a| &a.notes).collect();
    let count = |f: fn(&Note) -> bool| all.iter().filter(|n| f(n)).count();
    println!(
        "  notes {}: {} review notes (one per reviewer's review), {} auto-approval decisions \
         (why the daemon did or did not approve; written for requests still pending when it \
         decided), {} closing notes.",
        all.len(),
        count(is_review),
        count(is_decision),
        count(is_closing)
    );
    let with = |prefix: &str| {
        alerts
            .iter()
            .filter(|a| a.notes.iter().any(|n| n.text.starts_with(prefix)))
            .count()
    };
    println!(
        "  auto_approved {}: alerts whose decision says \"Auto-approved\" (the requester was \
         on call).",
        with("Auto-approved:")
    );
    println!(
        "  declined {}: alerts whose decision says \"Not auto-approved\" (left to human \
         reviewers, who may still approve or deny).",
        with("Not auto-approved")
    );
    println!("  failures: the checks above that did not hold (none when scenario is ok).");
}

/// `curl` commands for the fake's alerts, with the key read from its file (never printed).
pub fn curl(url: &str, key_file: &Path) {
    let auth = format!(
        "-H \"Authorization: GenieKey $(cat {})\"",
        key_file.display()
    );
    println!("Look at the fake's alerts as Opsgenie's API shows them:");
    println!("  curl -s {auth} '{url}/v2/alerts?limit=100'");
    println!(
        "  curl -s {auth} '{url}/v2/alerts/teleport-access-request%2F<ID>?identifierType=alias'"
    );
    println!(
        "  curl -s {auth} \
         '{url}/v2/alerts/teleport-access-request%2F<ID>/notes?identifierType=alias&order=asc'"
    );
}

/// Where to look at alerts yourself (this run's fakes stop with it).
pub fn curl_hint() {
    println!(
        "  To look at alerts yourself: `cargo run --example sandbox -- --serve` keeps the fakes \
         running and prints the curl commands."
    );
}
