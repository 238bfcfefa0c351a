//! The daemon's own view of an access request: plain data, decoded from Teleport's wire types
//! by `teleport::convert`, so that the rest of the core never sees protobuf.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// Annotation naming the Opsgenie schedules to add as alert responders.
pub const NOTIFY_SERVICES_ANNOTATION: &str = "teleport.dev/notify-services";
/// Annotation naming the Opsgenie teams to add as alert responders.
pub const TEAMS_ANNOTATION: &str = "teleport.dev/teams";
/// Annotation naming the schedules whose on-call users may be auto-approved.
pub const SCHEDULES_ANNOTATION: &str = "teleport.dev/schedules";

/// The state of an access request, as Teleport reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Unset or unknown to us; nothing is done for such a request.
    None,
    /// Waiting for reviews.
    Pending,
    /// Approved: access can be assumed.
    Approved,
    /// Denied.
    Denied,
    /// Promoted to an access list (counts as resolved).
    Promoted,
}

impl RequestState {
    /// Whether Teleport considers the request resolved.
    pub fn is_resolved(self) -> bool {
        matches!(self, Self::Approved | Self::Denied | Self::Promoted)
    }

    /// The upper-case name Teleport uses for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Denied => "DENIED",
            Self::Promoted => "PROMOTED",
        }
    }
}

/// A review submitted on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// Teleport user who reviewed.
    pub author: String,
    /// `Approved` or `Denied`.
    pub proposed_state: RequestState,
    /// Free text given by the reviewer.
    pub reason: String,
    /// When the review was made, if Teleport said.
    pub created: Option<SystemTime>,
}

/// A specific resource asked for in a resource-based request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId {
    /// Teleport cluster the resource lives in.
    pub cluster: String,
    /// Resource kind, e.g. `node` or `db`.
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// Sub-resource, e.g. a Kubernetes namespace; may be empty.
    pub sub_resource: String,
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}/{}/{}", self.cluster, self.kind, self.name)?;
        if !self.sub_resource.is_empty() {
            write!(f, "/{}", self.sub_resource)?;
        }
        Ok(())
    }
}

/// One access request, as the daemon needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// The request id (a UUID, Teleport's `metadata.name`).
    pub id: String,
    /// The requesting Teleport user.
    pub user: String,
    /// Roles asked for.
    pub roles: Vec<String>,
    /// Current state.
    pub state: RequestState,
    /// When the request was made.
    pub created: Option<SystemTime>,
    /// Latest time elevated access could be valid (Teleport's access expiry).
    pub access_expiry: Option<SystemTime>,
    /// Latest time the requested access may last until (an absolute time).
    pub max_duration: Option<SystemTime>,
    /// Why the user asked.
    pub request_reason: String,
    /// Why it was resolved, once it is.
    pub resolve_reason: String,
    /// Annotations from the requester's roles, e.g. [`NOTIFY_SERVICES_ANNOTATION`].
    pub system_annotations: BTreeMap<String, Vec<String>>,
    /// Reviews, in the order Teleport recorded them.
    pub reviews: Vec<Review>,
    /// Resources asked for, for resource-based requests.
    pub resources: Vec<ResourceId>,
}

impl AccessRequest {
    /// The values of an annotation, trimmed, without empties, de-duplicated, in their given
    /// order. An absent annotation gives an empty list.
    pub fn annotation(&self, key: &str) -> Vec<String> {
        distinct_trimmed(self.system_annotations.get(key).into_iter().flatten())
    }
}

/// `values` trimmed, without empties, de-duplicated, in their given order: how a list of names
/// from an annotation or the configuration is read.
pub fn distinct_trimmed<'a>(values: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        let value = value.trim();
        if !value.is_empty() && !out.iter().any(|v| v == value) {
            out.push(value.to_owned());
        }
    }
    out
}

/// What the watch told us about one request: its newest state, or that it is gone.
// Nearly every snapshot is `Present`; boxing it would add an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    /// The request exists and looks like this.
    Present(AccessRequest),
    /// The request was deleted or expired (Teleport cannot tell which).
    Gone {
        /// The id of the request that is gone.
        id: String,
    },
}

impl Snapshot {
    /// The request id this snapshot is about.
    pub fn id(&self) -> &str {
        match self {
            Self::Present(request) => &request.id,
            Self::Gone { id } => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(annotations: &[(&str, &[&str])]) -> AccessRequest {
        AccessRequest {
            system_annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            ..AccessRequest::example("r1", "alice", &["editor"])
        }
    }

    #[test]
    fn annotation_values_are_trimmed_deduplicated_and_keep_their_order() {
        let req = request_with(&[(TEAMS_ANNOTATION, &["b", " a ", "", "b", "a"])]);
        assert_eq!(req.annotation(TEAMS_ANNOTATION), vec!["b", "a"]);
        assert!(req.annotation(SCHEDULES_ANNOTATION).is_empty());
    }

    #[test]
    fn resolved_states() {
        assert!(!RequestState::Pending.is_resolved());
        assert!(!RequestState::None.is_resolved());
        for s in [
            RequestState::Approved,
            RequestState::Denied,
            RequestState::Promoted,
        ] {
            assert!(s.is_resolved());
        }
    }

    #[test]
    fn resource_id_display() {
        let r = ResourceId {
            cluster: "c".into(),
            kind: "node".into(),
            name: "web-1".into(),
            sub_resource: String::new(),
        };
        assert_eq!(r.to_string(), "/c/node/web-1");
    }
}
