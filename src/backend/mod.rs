//! The on-call backends: Opsgenie v2 and JSM Operations. A backend is a codec: it turns an
//! [`Operation`] into an HTTP request and an HTTP response into an [`Outcome`]. The gateway
//! actor (`actors::gateway`) is the only code that sends them, so rate limits and retries live in
//! one place.

pub mod backoff;
pub mod jsm;
pub mod limiter;
pub mod opsgenie;
pub mod processing;
pub mod retry;
pub mod timeline;

// The alert's shape belongs to the core (render produces it); re-exported so callers keep
// naming it `backend::AlertPayload`.
pub use crate::core::alert::{AlertPayload, Responder};

/// Which alert a call acts on. Once the alert id is known, calls address the alert by id: an
/// alias names whichever alert carries it (the open one, else the newest), which after a close and
/// a re-creation is not necessarily the one the daemon means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertRef {
    /// The backend's alert id (`identifierType=id`).
    Id(String),
    /// The alias the daemon gave it (`identifierType=alias`), before the id is known.
    Alias(String),
}

impl AlertRef {
    /// The identifier and its `identifierType`.
    pub fn parts(&self) -> (&str, &'static str) {
        match self {
            Self::Id(id) => (id, "id"),
            Self::Alias(alias) => (alias, "alias"),
        }
    }
}

/// One call to the backend.
///
/// What repeating a write does on the backend, which decides what the gateway may retry blindly
/// ([`Operation::retry_blind`]) and what the request pipeline must verify after an unknown
/// outcome (`pipeline::reconcile`, "Unknown outcomes"):
///
/// - `CreateAlert` is idempotent while the alert is open: the backend de-duplicates creates on
///   the alias. The daemon never closes an alert while a create for it may still be in flight
///   (both need the request's claim), so a repeated create lands on the same alert.
/// - `CloseAlert` is idempotent in effect (closing a closed alert changes nothing and adds no
///   note), but it carries a note, so it is not repeated blindly either: after an unknown outcome
///   the alert is read first.
/// - `AddNote` is not idempotent: every accepted note is one more note. After an unknown
///   outcome the alert's notes are read, looking for the note's marker, before posting again.
/// - Reads (`RequestStatus`, `GetAlert`, `ListNotes`, `OnCall`, `ScheduleTimeline`,
///   `ListOpenAlerts`, `Heartbeat`, and JSM's `FindSchedule`, `GetUser`, `TenantInfo`) change
///   nothing and may be repeated freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Create an alert (asynchronous: answers a request id).
    CreateAlert(AlertPayload),
    /// Add a note to an alert (asynchronous).
    AddNote {
        /// The alert.
        alert: AlertRef,
        /// At most 25,000 characters.
        note: String,
    },
    /// Close an alert, leaving a note (asynchronous).
    CloseAlert {
        /// The alert.
        alert: AlertRef,
        /// At most 25,000 characters.
        note: String,
    },
    /// Ask how an asynchronous request went.
    RequestStatus {
        /// The request id from a 202 answer.
        request_id: String,
    },
    /// Read one alert: whether it exists, its id, whether it is open.
    GetAlert {
        /// The alert.
        alert: AlertRef,
    },
    /// One page of an alert's notes, newest first.
    ListNotes {
        /// The alert's id.
        alert_id: String,
        /// Where the page starts (the previous page's last `offset`); `None` for the first.
        offset: Option<String>,
    },
    /// Who is on call now in a schedule (by UUID or name).
    OnCall {
        /// Schedule id or name.
        schedule: String,
    },
    /// One window of a schedule's final timeline (overrides and forwarding applied), the one
    /// containing `date` (opsgenie-api.md §13): when the requester's shift ends.
    ScheduleTimeline {
        /// Schedule id or name.
        schedule: String,
        /// An instant the window must contain.
        date: std::time::SystemTime,
    },
    /// Ping a heartbeat: proves reachability, region and key.
    Heartbeat {
        /// The heartbeat's name.
        name: String,
    },
    /// Look a heartbeat up (`check`): the ping answers even for a name that does not exist,
    /// this answers 404.
    GetHeartbeat {
        /// The heartbeat's name.
        name: String,
    },
    /// One page of open alerts carrying a tag (for the orphan sweep).
    ListOpenAlerts {
        /// The tag.
        tag: String,
        /// Offset of the page.
        offset: u32,
    },
    /// JSM only: the id of the schedule with this name (the REST API takes ids only).
    FindSchedule {
        /// The schedule's name (matched ignoring case, as the search does).
        name: String,
    },
    /// JSM only: a Jira user's profile, for the e-mail behind an on-call accountId.
    GetUser {
        /// The Atlassian accountId.
        account_id: String,
    },
    /// JSM only: the site's cloudId (`/_edge/tenant_info`), which every REST path carries.
    TenantInfo,
}

/// Which API a request goes to; the gateway picks the base URL and the credential by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Opsgenie's v2 API, or JSM's Integration Events API: `opsgenie.api_url` (or the
    /// region's or JSM's host), `Authorization: GenieKey`.
    Primary,
    /// JSM Operations' REST API: `opsgenie.jsm.rest_url` + `/{cloudId}`, HTTP Basic with the
    /// account's e-mail and API token.
    JsmRest,
    /// The Jira platform user API: the site (`opsgenie.jsm.site`), else
    /// `api.atlassian.com/ex/jira/{cloudId}`; HTTP Basic as [`Api::JsmRest`].
    JiraUsers,
    /// `https://<site>/_edge/tenant_info`: no credential.
    TenantInfo,
}

/// The API domain a call counts against; each has its own rate limits. These are Opsgenie's
/// documented request domains (opsgenie-api.md §8), so a domain here trips exactly when the
/// backend's bucket of the same name would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// Opsgenie's `Alert` domain: every alert endpoint, reads included: create, note, close,
    /// request status, get alert.
    Alert,
    /// Opsgenie's `Search` domain: listing alerts (the orphan sweep).
    Search,
    /// Opsgenie's `Schedule-oncalls` domain: who-is-on-call lookups.
    ScheduleOnCalls,
    /// Opsgenie's `Heartbeat` domain: heartbeat pings.
    Heartbeat,
    /// Opsgenie's `Configuration` domain: the schedule APIs, of which the daemon reads only
    /// schedule timelines (opsgenie-api.md §8, §13).
    Configuration,
}

impl Domain {
    /// A short label for logs and metrics; also the domain's key under
    /// `opsgenie.rate_limits`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Search => "search",
            Self::ScheduleOnCalls => "schedule_oncalls",
            Self::Heartbeat => "heartbeat",
            Self::Configuration => "configuration",
        }
    }
}

impl Operation {
    /// The domain this call counts against.
    pub fn domain(&self) -> Domain {
        match self {
            Self::CreateAlert(_)
            | Self::AddNote { .. }
            | Self::CloseAlert { .. }
            | Self::RequestStatus { .. }
            | Self::GetAlert { .. }
            | Self::ListNotes { .. } => Domain::Alert,
            Self::ListOpenAlerts { .. } => Domain::Search,
            // Resolving a schedule and the people on it is part of an on-call lookup, and
            // counts with it.
            Self::OnCall { .. }
            | Self::FindSchedule { .. }
            | Self::GetUser { .. }
            | Self::TenantInfo => Domain::ScheduleOnCalls,
            Self::ScheduleTimeline { .. } => Domain::Configuration,
            Self::Heartbeat { .. } | Self::GetHeartbeat { .. } => Domain::Heartbeat,
        }
    }

    /// A short, bounded label for logs and metrics (`create_alert`, `add_note`, ...).
    pub fn endpoint(&self) -> &'static str {
        match self {
            Self::CreateAlert(_) => "create_alert",
            Self::AddNote { .. } => "add_note",
            Self::CloseAlert { .. } => "close_alert",
            Self::RequestStatus { .. } => "request_status",
            Self::OnCall { .. } => "on_call",
            Self::ScheduleTimeline { .. } => "schedule_timeline",
            Self::Heartbeat { .. } => "heartbeat",
            Self::GetHeartbeat { .. } => "get_heartbeat",
            Self::ListOpenAlerts { .. } => "list_alerts",
            Self::GetAlert { .. } => "get_alert",
            Self::ListNotes { .. } => "list_notes",
            Self::FindSchedule { .. } => "find_schedule",
            Self::GetUser { .. } => "get_user",
            Self::TenantInfo => "tenant_info",
        }
    }

    /// Whether the call writes.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Self::CreateAlert(_) | Self::AddNote { .. } | Self::CloseAlert { .. }
        )
    }

    /// Whether the gateway may send the call again after an answer that does not say whether it
    /// took effect (a 5xx, a timeout): reads, and the create, which the backend de-duplicates on
    /// the alias (see [`Operation`]). Notes and closes are not: their unknown outcome goes back
    /// to the step, which verifies before sending again.
    pub fn retry_blind(&self) -> bool {
        !matches!(self, Self::AddNote { .. } | Self::CloseAlert { .. })
    }
}

/// What a successful call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An asynchronous write was accepted; poll `request_id` for its result.
    Accepted {
        /// The backend's request id.
        request_id: String,
    },
    /// The asynchronous request has not been processed yet.
    NotProcessed,
    /// JSM's request status answered 404 "request is not found": JSM says that both for a
    /// request it has not processed yet and for one it does not know. The poller waits it out
    /// for a bounded time, then takes the id for unknown (and the step reads the alert).
    NotFoundYet,
    /// The asynchronous request was processed.
    Processed(Processed),
    /// The alert read by [`Operation::GetAlert`].
    Alert {
        /// Its id.
        id: String,
        /// Whether it is open.
        open: bool,
    },
    /// There is no such alert (a 404 to [`Operation::GetAlert`] or [`Operation::ListNotes`]).
    NoSuchAlert,
    /// One page of an alert's notes.
    Notes {
        /// The notes' texts, newest first.
        texts: Vec<String>,
        /// Where the next page starts, if there is one.
        next: Option<String>,
    },
    /// Users on call (Opsgenie: user names, i.e. e-mail addresses).
    OnCall(Vec<String>),
    /// One window of a schedule's final timeline.
    Timeline(crate::core::shift::Timeline),
    /// One page of alerts: (alias, id) pairs, and whether more pages follow.
    Alerts {
        /// Aliases and ids of the alerts on this page.
        alerts: Vec<(String, String)>,
        /// Whether another page follows.
        more: bool,
    },
    /// The call succeeded and returns nothing of interest.
    Done,
    /// The schedule a [`Operation::FindSchedule`] named: its id, or `None` if there is none.
    Schedule(Option<String>),
    /// The Jira user [`Operation::GetUser`] asked for.
    User {
        /// The accountId.
        account_id: String,
        /// The display name.
        display_name: String,
        /// The e-mail, `None` when the user's profile hides it.
        email: Option<String>,
    },
    /// The site's cloudId.
    CloudId(String),
}

/// What the backend says about a processed asynchronous request (Opsgenie's request status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// Whether it did what was asked (`isSuccess`).
    pub success: bool,
    /// The alert it acted on (empty on failure).
    pub alert_id: String,
    /// The backend's free-text status, e.g. "Created alert" or "Alert does not exist".
    pub status: String,
}

impl Processed {
    /// Whether a failed request failed because its alert does not exist.
    pub fn alert_missing(&self) -> bool {
        !self.success && self.status.to_ascii_lowercase().contains("does not exist")
    }

    /// Whether a failed close failed because the alert was closed already: what the close
    /// wanted holds. Whether Opsgenie calls a close of a closed alert a failure is not
    /// documented; if it does, this is how it reads.
    pub fn already_closed(&self) -> bool {
        !self.success && self.status.to_ascii_lowercase().contains("already closed")
    }
}

/// An HTTP request a [`Codec`] built; the gateway adds the base URL, authentication and the
/// common headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Which API it goes to.
    pub api: Api,
    /// `GET` or `POST`.
    pub method: http::Method,
    /// Path and query, starting with `/`, already percent-encoded (e.g.
    /// `/v2/alerts/teleport-access-request%2Fabc/notes?identifierType=alias`).
    pub path_and_query: String,
    /// The JSON body, if any.
    pub body: Option<serde_json::Value>,
}

/// Why a codec could not build a request or read an answer.
///
/// Only [`BackendError::Status`] can be retryable, and only after the gateway classified the
/// status (`retry::classify`); the others are permanent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The answer's status is not a success for this operation; classify it with
    /// `retry::classify` (it may be a 429 or a 5xx).
    #[error("HTTP status {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// A success answer whose body could not be read (not retryable: the backend is not the
    /// API we expect, e.g. a wrong `api_url`).
    #[error("could not read the answer of {endpoint}: {message}")]
    Decode {
        /// The operation's label.
        endpoint: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The request id is not known to the backend (plain 404: wrong id, region or account, or
    /// expired). Not retryable.
    #[error("unknown request id {request_id}")]
    UnknownRequest {
        /// The id asked about.
        request_id: String,
    },
    /// This backend cannot do this operation. Not retryable.
    #[error("{message}")]
    Unsupported {
        /// The operation's label.
        endpoint: &'static str,
        /// What is missing and what to do instead.
        message: String,
    },
}

/// Translates [`Operation`]s to HTTP and back, without doing any I/O. Implemented by
/// [`opsgenie::OpsgenieCodec`] and [`jsm::JsmCodec`].
pub trait Codec: Send + Sync + 'static {
    /// The product's name for messages (`Opsgenie`, `JSM Operations`).
    fn product(&self) -> &'static str;

    /// The request for `op`, or [`BackendError::Unsupported`].
    fn request(&self, op: &Operation) -> Result<HttpRequest, BackendError>;

    /// Reads the answer to `op`. Statuses that are not a success for `op` come back as
    /// [`BackendError::Status`] for the gateway to classify.
    fn response(
        &self,
        op: &Operation,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Outcome, BackendError>;
}

/// The codec for the configured backend (`source` goes on alerts and notes).
pub fn codec_for(cfg: &crate::config::OpsgenieConfig) -> Box<dyn Codec> {
    match cfg.backend {
        crate::config::BackendKind::Opsgenie => Box::new(opsgenie::OpsgenieCodec::new(&cfg.source)),
        crate::config::BackendKind::Jsm => Box::new(jsm::JsmCodec::new(
            &cfg.source,
            cfg.jsm.heartbeat_team_id.as_deref(),
        )),
    }
}
