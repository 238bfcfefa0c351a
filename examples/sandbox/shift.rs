//! The sandbox's shift scenario (`auto_approval.shift_end`, issue 12): an on-call engineer whose
//! shift ends a few seconds into the run.
//!
//! 1. Under `decline`, she asks for an hour of `editor`: longer than the rest of her shift, so
//!    the daemon leaves the request to a human and puts both times on the alert.
//! 2. The daemon is restarted with `revoke` (the plugin's role given the `lock` rule); she asks
//!    again: approved, and when her shift ends the request is locked in Teleport and the alert
//!    says so.
//!
//! It touches the backend's fake only through [`ShiftBackend`], so it runs on either backend's
//! world; waits follow the plugin data in the fake Teleport, which the daemon writes only after
//! the backend confirmed each note.

use std::time::{Duration, SystemTime};

use teleport_opsgenie::config::Config;
use teleport_opsgenie::core::shift::{lock_name, LOCK_NAME_PREFIX};
use teleport_opsgenie::core::shift_policy::ShiftEndMode;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::sim::teleport::{FakeTeleport, NewRequest};
use teleport_opsgenie::sim::world::PLUGIN_USER;

/// The engineer whose shift ends during the run.
pub const SHIFT_ENGINEER: &str = "erin@example.com";

/// How long into the scenario her shift ends.
const SHIFT_LEFT: Duration = Duration::from_secs(6);

const WAIT: Duration = Duration::from_secs(20);

/// The `lock` rule of config/access-plugin.yaml, uncommented, as an operator adds it for
/// `shift_end: revoke`.
const LOCKER: &str = r#"
kind: role
version: v7
metadata:
  name: access-plugin-locker
spec:
  allow:
    rules:
      - resources: ['lock']
        verbs: ['create', 'update', 'read']
"#;

/// Puts these users on call now in the approval schedule, each until the time given, in both
/// the on-call answer and the schedule's timeline.
pub type SetOnCall<'a> = Box<dyn Fn(&[(&str, SystemTime)]) + 'a>;
/// The texts of the notes on a request's alert.
pub type Notes<'a> = Box<dyn Fn(&str) -> Vec<String> + 'a>;

/// What the scenario needs from the backend's fake.
pub struct ShiftBackend<'a> {
    /// See [`SetOnCall`].
    pub on_call_until: SetOnCall<'a>,
    /// See [`Notes`].
    pub notes: Notes<'a>,
}

/// Where the scenario says what happens and records each expectation.
pub trait Report {
    /// A line of the timeline.
    fn say(&self, what: &str);
    /// An expectation, held or not.
    fn check(&mut self, ok: bool, what: &str);
}

/// What the scenario counted, for the summary.
#[derive(Debug, Default)]
pub struct ShiftCounts {
    /// Locks created at shift end.
    pub revoked: usize,
    /// Requests declined for the shift alone.
    pub shift_declined: usize,
}

/// Whether a note is a decline for the shift alone (not counted again among the declines).
pub fn is_shift_decline(note: &str) -> bool {
    note.starts_with("Not auto-approved") && note.contains("auto_approval.shift_end")
}

/// Plays the scenario with daemons configured from `base` (whose other daemons must be
/// stopped: the scenario's daemons share their plugin data).
pub async fn play(
    teleport: &FakeTeleport,
    backend: &ShiftBackend<'_>,
    base: &Config,
    t: &mut dyn Report,
) -> Result<ShiftCounts, Box<dyn std::error::Error>> {
    teleport.add_user(SHIFT_ENGINEER, ["requester"]);
    // A whole second, as timelines write it.
    let secs = (SystemTime::now() + SHIFT_LEFT)
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 1;
    let shift_end = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    let day = SystemTime::now() + Duration::from_secs(24 * 3600);
    (backend.on_call_until)(&[
        (teleport_opsgenie::sim::world::ON_CALL_REQUESTER, day),
        (SHIFT_ENGINEER, shift_end),
    ]);
    t.say(&format!(
        "{SHIFT_ENGINEER} is on call until {} ({}s from now)",
        humantime::format_rfc3339_seconds(shift_end),
        SHIFT_LEFT.as_secs()
    ));
    let mut counts = ShiftCounts::default();

    // 1. decline: an hour is longer than the rest of the shift.
    let daemon = start(base, ShiftEndMode::Decline).await?;
    t.say("daemon started with auto_approval.shift_end: decline");
    let long = request(teleport, "an hour, shift ends in seconds")?;
    let decided = decision(teleport, &long).await;
    let notes = (backend.notes)(&long);
    let declined = notes.iter().any(|n| is_shift_decline(n));
    t.check(
        decided.as_deref() == Some("declined") && declined,
        "decline: a request outlasting the shift is left to a human, both times on the alert",
    );
    if let Some(n) = notes.iter().find(|n| is_shift_decline(n)) {
        t.say(&format!("    {}", first_line(n)));
    }
    counts.shift_declined += usize::from(declined);
    daemon.shutdown().await;

    // 2. revoke: approved now, locked when the shift ends.
    teleport.add_role_yaml(LOCKER)?;
    teleport.add_user(
        PLUGIN_USER,
        [
            "access-plugin",
            "access-plugin-approver",
            "access-plugin-locker",
        ],
    );
    let daemon = start(base, ShiftEndMode::Revoke).await?;
    t.say("daemon restarted with auto_approval.shift_end: revoke (the plugin's role has the lock rule)");
    let id = request(teleport, "an hour again, shift ends in seconds")?;
    let decided = decision(teleport, &id).await;
    let planned = teleport
        .plugin_data(&id, "opsgenie")
        .is_some_and(|d| d.get("shift_revoke_state").map(String::as_str) == Some("planned"));
    t.check(
        decided.as_deref() == Some("approved") && planned && !teleport.access_revoked(&id),
        "revoke: approved, the revocation planned for the end of the shift, not locked yet",
    );
    t.say("waiting for the shift to end...");
    let noted = teleport
        .wait_until(WAIT, "revocation noted", |t| {
            t.plugin_data(&id, "opsgenie")
                .is_some_and(|d| d.get("shift_revoke_state").map(String::as_str) == Some("noted"))
        })
        .await
        .is_ok();
    let note = (backend.notes)(&id)
        .into_iter()
        .find(|n| n.starts_with("Access revoked at the end of the shift"));
    t.check(
        noted
            && teleport.access_revoked(&id)
            && teleport.lock_named(&lock_name(&id)).is_some()
            && SystemTime::now() >= shift_end
            && note.is_some(),
        "revoke: at shift end the request is locked in Teleport and the alert says why",
    );
    if let Some(n) = note {
        t.say(&format!("    {}", first_line(&n)));
    }
    daemon.shutdown().await;
    counts.revoked = teleport
        .locks()
        .iter()
        .filter(|l| {
            l.metadata
                .as_ref()
                .is_some_and(|m| m.name.starts_with(LOCK_NAME_PREFIX))
        })
        .count();
    Ok(counts)
}

async fn start(base: &Config, mode: ShiftEndMode) -> Result<Daemon, Box<dyn std::error::Error>> {
    let mut config = base.clone();
    config.auto_approval.enabled = true;
    config.auto_approval.shift_end = mode;
    Ok(Daemon::start(config, RunOptions::default()).await?)
}

/// A request by the engineer for an hour of `editor`.
fn request(teleport: &FakeTeleport, reason: &str) -> Result<String, Box<dyn std::error::Error>> {
    let made = teleport.create_request_with(NewRequest {
        user: SHIFT_ENGINEER.to_owned(),
        roles: vec!["editor".into()],
        reason: reason.to_owned(),
        access_expiry: Some(SystemTime::now() + Duration::from_secs(3600)),
        ..Default::default()
    })?;
    Ok(made.metadata.map(|m| m.name).ok_or("no id")?)
}

/// The auto-approval decision once recorded (after its note was confirmed).
async fn decision(teleport: &FakeTeleport, id: &str) -> Option<String> {
    teleport
        .wait_until(WAIT, "decision", |t| {
            t.plugin_data(id, "opsgenie")
                .is_some_and(|d| d.get("approval_decision").is_some_and(|v| !v.is_empty()))
        })
        .await
        .ok()?;
    teleport
        .plugin_data(id, "opsgenie")?
        .get("approval_decision")
        .cloned()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}
