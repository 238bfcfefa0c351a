//! Which fake the sandbox plays against (`--backend opsgenie|jsm`), seen the same way: JSM's
//! alerts are shown in the fake Opsgenie's shape, so the scenario and its display are shared.

use std::time::Duration;

use teleport_opsgenie::config::Config;
use teleport_opsgenie::sim::jsm::{self, FakeJsm, FakeJsmOptions};
use teleport_opsgenie::sim::opsgenie::{
    Alert, AlertStatus, FakeOpsgenie, Note, ResolvedResponder, Responder,
};
use teleport_opsgenie::sim::world::{
    World, WorldOptions, APPROVAL_SCHEDULE, HIDDEN_ACCOUNT, HIDDEN_REQUESTER, ON_CALL_ACCOUNT,
    ON_CALL_REQUESTER,
};

/// The backend named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The fake Opsgenie (the default).
    Opsgenie,
    /// The fake JSM Operations.
    Jsm,
}

impl Backend {
    /// `--backend <name>` (or `--backend=<name>`) from the arguments; Opsgenie without one.
    pub fn from_args() -> Result<Backend, String> {
        let args: Vec<String> = std::env::args().collect();
        let mut value = None;
        for (i, arg) in args.iter().enumerate() {
            if let Some(v) = arg.strip_prefix("--backend=") {
                value = Some(v.to_owned());
            } else if arg == "--backend" {
                value = Some(
                    args.get(i + 1)
                        .cloned()
                        .ok_or("--backend needs a value: opsgenie or jsm")?,
                );
            }
        }
        match value.as_deref() {
            None | Some("opsgenie") => Ok(Backend::Opsgenie),
            Some("jsm") => Ok(Backend::Jsm),
            Some(other) => Err(format!("--backend {other:?}: expected opsgenie or jsm")),
        }
    }

    /// The name in the JSON summary.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Opsgenie => "opsgenie",
            Backend::Jsm => "jsm",
        }
    }

    /// The world's options for this backend.
    pub fn world_options(self, options: WorldOptions) -> WorldOptions {
        match self {
            Backend::Opsgenie => options,
            Backend::Jsm => WorldOptions {
                jsm: Some(FakeJsmOptions::default()),
                ..options
            },
        }
    }
}

/// The fake the scenario reads alerts from.
pub enum Fake<'a> {
    /// Opsgenie.
    Opsgenie(&'a FakeOpsgenie),
    /// JSM Operations.
    Jsm(&'a FakeJsm),
}

impl<'a> Fake<'a> {
    /// The world's fake for its backend.
    pub fn of(world: &'a World) -> Fake<'a> {
        match &world.jsm {
            Some(jsm) => Fake::Jsm(jsm),
            None => Fake::Opsgenie(&world.opsgenie),
        }
    }

    /// Its product name, for the timeline.
    pub fn product(&self) -> &'static str {
        match self {
            Fake::Opsgenie(_) => "Opsgenie",
            Fake::Jsm(_) => "JSM",
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        match self {
            Fake::Opsgenie(o) => o.url(),
            Fake::Jsm(j) => j.url(),
        }
    }

    /// All alerts, in creation order.
    pub fn alerts(&self) -> Vec<Alert> {
        match self {
            Fake::Opsgenie(o) => o.alerts(),
            Fake::Jsm(j) => j.alerts().iter().map(as_opsgenie).collect(),
        }
    }

    /// The alert with `alias` (the open one, else the newest).
    pub fn alert_by_alias(&self, alias: &str) -> Option<Alert> {
        match self {
            Fake::Opsgenie(o) => o.alert_by_alias(alias),
            Fake::Jsm(j) => j.alert_by_alias(alias).as_ref().map(as_opsgenie),
        }
    }

    /// Waits until `f` holds, up to `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&Fake<'_>) -> bool,
    ) -> Result<(), String> {
        match self {
            Fake::Opsgenie(o) => o.wait_until(timeout, what, |_| f(self)).await,
            Fake::Jsm(j) => j.wait_until(timeout, what, |_| f(self)).await,
        }
    }

    /// Calls to paths Atlassian does not document (JSM only; none on Opsgenie by definition).
    pub fn undocumented_calls(&self) -> usize {
        match self {
            Fake::Opsgenie(_) => 0,
            Fake::Jsm(j) => j.undocumented_calls().len(),
        }
    }
}

/// Puts the on-call requesters on call in the approval schedule; on JSM, the one whose
/// e-mail is hidden too, and the `users:` entry that matches her by accountId.
pub fn put_on_call(world: &World, config: &mut Config) {
    match &world.jsm {
        None => {
            world
                .opsgenie
                .set_on_call(APPROVAL_SCHEDULE, &[ON_CALL_REQUESTER]);
        }
        Some(jsm) => {
            if let Some(id) = world.jsm_schedule(APPROVAL_SCHEDULE) {
                jsm.set_on_call(id, &[ON_CALL_ACCOUNT, HIDDEN_ACCOUNT]);
            }
            config
                .auto_approval
                .users
                .insert(HIDDEN_REQUESTER.into(), HIDDEN_ACCOUNT.into());
        }
    }
}

/// A JSM alert in the fake Opsgenie's shape, for the shared display.
fn as_opsgenie(a: &jsm::Alert) -> Alert {
    let text =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_owned);
    Alert {
        id: a.id.clone(),
        tiny_id: a.tiny_id.clone(),
        alias: a.alias.clone(),
        message: a.message.clone(),
        description: Some(a.description.clone()),
        responders: a
            .responders
            .iter()
            .map(|r| Responder {
                kind: text(r, "type").unwrap_or_default(),
                id: text(r, "id"),
                name: text(r, "name"),
                username: text(r, "username"),
            })
            .collect(),
        // As sent: the fake JSM keeps responders as given (by name, as the daemon names them).
        routed_to: a
            .responders
            .iter()
            .map(|r| ResolvedResponder {
                kind: text(r, "type").unwrap_or_default(),
                id: text(r, "id").unwrap_or_default(),
                name: text(r, "name")
                    .or_else(|| text(r, "username"))
                    .unwrap_or_default(),
            })
            .collect(),
        visible_to: Vec::new(),
        actions: Vec::new(),
        tags: a.tags.clone(),
        details: a.details.clone(),
        priority: a.priority.clone(),
        entity: Some(a.entity.clone()).filter(|e| !e.is_empty()),
        source: a.source.clone(),
        user: None,
        status: match a.status {
            jsm::AlertStatus::Closed => AlertStatus::Closed,
            _ => AlertStatus::Open,
        },
        acknowledged: a.status == jsm::AlertStatus::Acked,
        count: u64::from(a.count),
        notes: a
            .notes
            .iter()
            .map(|n| Note {
                text: n.note.clone(),
                user: Some(n.owner.clone()),
                source: None,
                added_at: n.created_at,
            })
            .collect(),
        created_at: a.created_at,
        updated_at: a.created_at,
        last_occurred_at: a.created_at,
        acknowledged_at: None,
        acknowledged_by: None,
        closed_at: None,
        closed_by: None,
    }
}

/// `curl` commands for the fake JSM's alerts on its REST API (the token read from its file).
pub fn curl_jsm(rest_url: &str, token_file: &std::path::Path) {
    let auth = format!(
        "-u \"{}:$(cat {})\"",
        jsm::DEFAULT_EMAIL,
        token_file.display()
    );
    println!("Look at the fake's alerts as JSM's REST API shows them:");
    println!("  curl -s {auth} '{rest_url}/v1/alerts?size=100'");
    println!("  curl -s {auth} '{rest_url}/v1/alerts/alias?alias=teleport-access-request%2F<ID>'");
    println!("  curl -s {auth} '{rest_url}/v1/alerts/<ALERT ID>/notes?size=100'");
}
