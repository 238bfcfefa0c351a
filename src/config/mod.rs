//! Settings: the schema, with a default for every field.
//!
//! Layers, later wins: built-in defaults, YAML or TOML files (each `-c`, then the drop-in
//! folder), then environment variables `TELEPORT_OPSGENIE__SECTION__KEY`. Unknown keys are errors. Loading and validation live in
//! [`mod@load`]; this file is the schema and its documentation.

mod aliases;
mod env;
mod files;
mod formats;
mod jsm_checks;
mod layers;
pub mod load;
mod problem;
mod ranges;
mod safe;
mod settings;
mod sources;
mod suggest;
mod tree;
mod typo;
mod validate;
mod walk;

#[cfg(test)]
mod tests;

pub use load::{
    load, load_for_check, load_with_warnings, validate, ConfigError, ConfigProblem, Level, Loaded,
    Sources, Warning, DEFAULT_CONFIG_DIR, DEFAULT_CONFIG_PATH, SAMPLE_TOML, SAMPLE_YAML,
};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How to reach Teleport and where progress is recorded.
    pub teleport: TeleportConfig,
    /// The on-call backend: Opsgenie (US or EU) or JSM Operations.
    pub opsgenie: OpsgenieConfig,
    /// Approving requests from on-call engineers.
    pub auto_approval: AutoApprovalConfig,
    /// Health and metrics listener.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// Process behaviour: shutdown deadline, retries, orphan sweep.
    pub daemon: DaemonConfig,
}

/// How to reach Teleport's Auth Service (directly or through the Proxy).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeleportConfig {
    /// `host:port` of the Auth Service (usually 3025) or of the Proxy (443 or 3080).
    pub addr: String,
    /// `auto` tries the Auth Service directly, then TLS routing through the Proxy; `auth` and
    /// `proxy` force one.
    pub mode: ConnectMode,
    /// Identity file from `tctl auth sign --format=file` or tbot. Exclusive with the three below.
    pub identity: Option<PathBuf>,
    /// Client private key (PEM), with `client_crt` and `root_cas`.
    pub client_key: Option<PathBuf>,
    /// Client certificate (PEM), with `client_key` and `root_cas`.
    pub client_crt: Option<PathBuf>,
    /// Teleport's host CA certificates (PEM), with `client_key` and `client_crt`.
    pub root_cas: Option<PathBuf>,
    /// Re-read the identity file when it changes (tbot rewrites it).
    pub refresh_identity: bool,
    /// How often to check the identity file for changes.
    /// Range: 10ms to 1day.
    #[serde(with = "humantime_serde")]
    pub refresh_identity_interval: Duration,
    /// Cluster name, needed for Proxy routing; read from the identity when unset.
    pub cluster_name: Option<String>,
    /// Public address of the Teleport web UI (`teleport.example.com` or
    /// `https://teleport.example.com:443`), for links in alerts. No link when unset.
    pub web_proxy_addr: Option<String>,
    /// Name under which progress is stored in Teleport's plugin data.
    pub plugin_name: String,
    /// Timeout for establishing a connection.
    /// Range: 1ms to 1h.
    #[serde(with = "humantime_serde")]
    pub dial_timeout: Duration,
    /// Timeout for each unary call.
    /// Range: 1ms to 1h.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// A watch that delivers nothing for this long is closed and reopened (with a resync), in
    /// case the connection died without anyone noticing. `0s` turns this off.
    /// Range: 0s (off), or 10ms to 1day.
    #[serde(with = "humantime_serde")]
    pub watch_silence_timeout: Duration,
}

impl Default for TeleportConfig {
    fn default() -> Self {
        Self {
            addr: "localhost:3025".into(),
            mode: ConnectMode::Auto,
            identity: None,
            client_key: None,
            client_crt: None,
            root_cas: None,
            refresh_identity: true,
            refresh_identity_interval: Duration::from_secs(60),
            cluster_name: None,
            web_proxy_addr: None,
            plugin_name: "opsgenie".into(),
            dial_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(30),
            watch_silence_timeout: Duration::from_secs(600),
        }
    }
}

/// How to connect to Teleport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectMode {
    /// Try the Auth Service directly, then TLS routing through the Proxy.
    Auto,
    /// Directly to the Auth Service.
    Auth,
    /// Through the Proxy with TLS routing.
    Proxy,
}

/// Which on-call product to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Opsgenie's REST API v2.
    Opsgenie,
    /// Jira Service Management Operations (Opsgenie's successor): alert writes on its
    /// Integration Events API (`api_key`), everything else on its REST API (`jsm`).
    Jsm,
}

/// Opsgenie's regions; an account lives in exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// `api.opsgenie.com`.
    Us,
    /// `api.eu.opsgenie.com`.
    Eu,
}

/// A secret string. Never printed: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The on-call backend.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsgenieConfig {
    /// `opsgenie` or `jsm`.
    pub backend: BackendKind,
    /// `us` or `eu` (Opsgenie only); ignored when `api_url` is set.
    pub region: Region,
    /// Explicit base URL, e.g. `https://api.eu.opsgenie.com` or a test server.
    pub api_url: Option<String>,
    /// API key of an API integration. Prefer `api_key_file`.
    pub api_key: Option<Secret>,
    /// File holding the API key (trimmed).
    pub api_key_file: Option<PathBuf>,
    /// Alert priority, `P1` to `P5`.
    pub priority: String,
    /// Tags put on every alert; the first one also finds the daemon's alerts for the sweep.
    pub tags: Vec<String>,
    /// Schedules notified when a request names none in `teleport.dev/notify-services`.
    pub default_schedules: Vec<String>,
    /// Teams notified when a request names none in `teleport.dev/teams`.
    pub default_teams: Vec<String>,
    /// `source` field of alerts and notes.
    pub source: String,
    /// Name of the heartbeat pinged as a health check.
    pub heartbeat_name: String,
    /// Timeout of one HTTP call.
    /// Range: 1ms to 1h.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most calls in flight to the backend at once.
    /// Range: 1 to 1024.
    pub max_concurrency: usize,
    /// Per-domain limits, per second and per minute.
    pub rate_limits: RateLimits,
    /// JSM Operations' REST API credential and site (`backend: jsm` only, where it is required).
    pub jsm: JsmConfig,
}

/// The JSM Operations REST API: request status, alerts by alias, listing alerts and notes,
/// schedules, on-calls and users. Atlassian documents only four writes on the Integration
/// Events API (create, close, add note, acknowledge, with the GenieKey in `api_key`); every
/// read lives here, behind HTTP Basic auth with an Atlassian account's e-mail and API token
/// and the site's cloudId in the path.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsmConfig {
    /// E-mail of the Atlassian account whose API token is used (an agent with JSM Operations
    /// access; service accounts are not entitled to the REST API).
    pub email: Option<String>,
    /// API token of that account (id.atlassian.com > Security > API tokens). Prefer
    /// `api_token_file`.
    pub api_token: Option<Secret>,
    /// File holding the API token (trimmed).
    pub api_token_file: Option<PathBuf>,
    /// The Jira site, `<name>.atlassian.net` (an `https://` URL also works): its cloudId is
    /// looked up once from `/_edge/tenant_info`, and its user API maps accountIds to e-mails.
    pub site: Option<String>,
    /// The site's cloudId, instead of looking it up from `site`.
    pub cloud_id: Option<String>,
    /// Base URL of the REST API, without the cloudId; for proxies and test servers.
    pub rest_url: Option<String>,
    /// Id of the team whose heartbeat (`opsgenie.heartbeat_name`) is pinged: JSM's
    /// heartbeats belong to a team. Unset: readiness reads one page of alerts instead.
    pub heartbeat_team_id: Option<String>,
}

/// The REST API's base URL when `opsgenie.jsm.rest_url` is unset.
pub const JSM_REST_URL: &str = "https://api.atlassian.com/jsm/ops/api";

/// The Atlassian API host's origin, for the Jira user API by cloudId when no site is set.
pub const ATLASSIAN_API_URL: &str = "https://api.atlassian.com";

impl JsmConfig {
    /// The REST API's base URL, without the cloudId.
    pub fn rest_base(&self) -> String {
        self.rest_url
            .as_deref()
            .unwrap_or(JSM_REST_URL)
            .trim_end_matches('/')
            .to_owned()
    }

    /// The site's base URL (`https://<name>.atlassian.net`), if a site is set.
    pub fn site_url(&self) -> Option<String> {
        let site = self.site.as_deref()?.trim().trim_end_matches('/');
        if site.is_empty() {
            return None;
        }
        Some(if site.contains("://") {
            site.to_owned()
        } else {
            format!("https://{site}")
        })
    }
}

impl Default for OpsgenieConfig {
    fn default() -> Self {
        Self {
            backend: BackendKind::Opsgenie,
            region: Region::Us,
            api_url: None,
            api_key: None,
            api_key_file: None,
            priority: "P3".into(),
            tags: vec!["teleport-access-request".into()],
            default_schedules: vec![],
            default_teams: vec![],
            source: "teleport-opsgenie".into(),
            heartbeat_name: "teleport-access-heartbeat".into(),
            request_timeout: Duration::from_secs(10),
            max_concurrency: 16,
            rate_limits: RateLimits::default(),
            jsm: JsmConfig::default(),
        }
    }
}

/// Token buckets, one per API domain, as Opsgenie counts them: its limits apply separately per
/// request domain, each with a per-second and a per-minute bucket.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Opsgenie's `Alert` domain: create, close, add note, request status and get alert.
    /// Formerly `alert_write` (still read, with a warning).
    pub alert: Limit,
    /// Opsgenie's `Search` domain: listing alerts (the orphan sweep). Formerly `alert_read`
    /// (still read, with a warning; request status moved to `alert`).
    pub search: Limit,
    /// Opsgenie's `Schedule-oncalls` domain: who-is-on-call lookups.
    pub schedule_oncalls: Limit,
    /// Opsgenie's `Heartbeat` domain: heartbeat pings.
    pub heartbeat: Limit,
    /// Opsgenie's `Configuration` domain: schedule timelines (when a requester's shift ends,
    /// for `auto_approval.shift_end`).
    pub configuration: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            alert: Limit::new(10, 300),
            search: Limit::new(10, 300),
            schedule_oncalls: Limit::new(5, 100),
            heartbeat: Limit::new(1, 30),
            // Timelines are cached and asked once per decision or revocation at most.
            configuration: Limit::new(2, 60),
        }
    }
}

/// One domain's limits. Zero means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limit {
    /// Calls per second.
    /// Range: 0 to 10000.
    pub per_second: u32,
    /// Calls per minute.
    /// Range: 0 to 600000.
    pub per_minute: u32,
}

impl Limit {
    /// A limit of `per_second` and `per_minute`.
    pub const fn new(per_second: u32, per_minute: u32) -> Self {
        Self {
            per_second,
            per_minute,
        }
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::new(10, 300)
    }
}

/// Approving requests of on-call engineers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoApprovalConfig {
    /// Off by default.
    pub enabled: bool,
    /// Schedules checked when a request names none in `teleport.dev/schedules`.
    pub default_schedules: Vec<String>,
    /// Appended as `@domain` to Teleport user names that have no `@`.
    pub user_domain: Option<String>,
    /// Explicit Teleport user → on-call user map: an e-mail address (Opsgenie, JSM), or on
    /// JSM an Atlassian accountId (needed for users whose profile hides their e-mail).
    pub users: BTreeMap<String, String>,
    /// Roles that may be auto-approved (exact names or `*` globs). Empty allows all.
    pub allowed_roles: Vec<String>,
    /// Roles that are never auto-approved (exact names or `*` globs).
    pub denied_roles: Vec<String>,
    /// Longest access that may be auto-approved; unlimited when unset.
    /// Range: 1s to 30days.
    #[serde(with = "humantime_serde")]
    pub max_duration: Option<Duration>,
    /// Whether requests for specific resources may be auto-approved.
    pub allow_resource_requests: bool,
    /// How long an on-call answer is reused.
    /// Range: 0s (off), or 1ms to 1day.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Failed on-call lookups retried before declining.
    /// Range: 0 to 100.
    pub lookup_retries: u32,
    /// Most schedules consulted for one decision, after duplicates (names ignoring case, ids
    /// exactly) are dropped: a request may name many, and each is looked up on every attempt.
    /// Past the cap the rest are not consulted, and a decline says how many were left out.
    /// Range: 1 to 100.
    pub max_schedules: usize,
    /// What the end of the requester's on-call shift does to an approval: `decline` approves
    /// only access that ends by the shift's end (plus `shift_grace`), `revoke` approves and
    /// locks the request in Teleport at shift end (needs the `lock` rule), `ignore` approves
    /// whatever the shift. An end that cannot be known is never taken as fine.
    pub shift_end: crate::core::shift_policy::ShiftEndMode,
    /// How long past the end of the shift an approved access may last (a handover).
    /// Range: 0s (off), or 1s to 1day.
    #[serde(with = "humantime_serde")]
    pub shift_grace: Duration,
}

impl Default for AutoApprovalConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default_schedules: vec![],
            user_domain: None,
            users: BTreeMap::new(),
            allowed_roles: vec![],
            denied_roles: vec![],
            max_duration: None,
            allow_resource_requests: false,
            cache_ttl: Duration::from_secs(30),
            lookup_retries: 3,
            max_schedules: crate::core::policy::DEFAULT_MAX_SCHEDULES,
            shift_end: Default::default(),
            shift_grace: Duration::ZERO,
        }
    }
}

/// The health and metrics listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Whether to serve `/healthz`, `/readyz` and `/metrics`.
    pub enabled: bool,
    /// Address to listen on; loopback by default.
    pub listen: SocketAddr,
    /// `/readyz` fails when the backend's last successful health check (a heartbeat ping,
    /// repeated every minute) is older than this.
    /// Range: 10ms to 1day.
    #[serde(with = "humantime_serde")]
    pub ready_backend_window: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9469)),
            ready_backend_window: Duration::from_secs(300),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Process behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// How long side effects in flight may take to finish after SIGTERM.
    /// Range: 0s (off), or 1ms to 1h.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// How long a replica holds a request while acting on it; a dead holder's claim expires.
    /// Range: 10ms to 1day.
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
    /// First delay before retrying a failed request; doubles up to `retry_max_delay`.
    /// Range: 1ms to 1h.
    #[serde(with = "humantime_serde")]
    pub retry_min_delay: Duration,
    /// Longest delay between retries of a failed request.
    /// Range: 1ms to 1day.
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// How often to close alerts whose request no longer exists; `0s` disables.
    /// Range: 0s (off), or 10ms to 7days.
    #[serde(with = "humantime_serde")]
    pub orphan_sweep_interval: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            shutdown_timeout: Duration::from_secs(10),
            claim_ttl: Duration::from_secs(60),
            retry_min_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(60),
            orphan_sweep_interval: Duration::from_secs(600),
        }
    }
}

impl OpsgenieConfig {
    /// The base URL calls go to: `api_url` if set, else the product's and region's host.
    pub fn base_url(&self) -> String {
        if let Some(url) = &self.api_url {
            return url.trim_end_matches('/').to_owned();
        }
        match (self.backend, self.region) {
            (BackendKind::Jsm, _) => "https://api.atlassian.com/jsm/ops/integration".into(),
            (BackendKind::Opsgenie, Region::Us) => "https://api.opsgenie.com".into(),
            (BackendKind::Opsgenie, Region::Eu) => "https://api.eu.opsgenie.com".into(),
        }
    }
}
