//! Translation between Teleport's wire types (`crate::pb`) and the daemon's model
//! (`crate::core::model`), so that nothing outside `teleport` sees protobuf.
//!
//! Two timestamp traps (teleport-wire.md §2.1) are handled here: Go sends an unset
//! non-nullable time as 0001-01-01 (`seconds == -62135596800`), which we read as "unset"; and
//! when sending, an unset time is omitted, never sent as `Timestamp{0,0}` (1970, which Go
//! would treat as set).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::core::model::{AccessRequest, RequestState, ResourceId, Review, Snapshot};
use crate::pb;

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds.
pub const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// The resource kind of access requests in events and filters.
pub const ACCESS_REQUEST_KIND: &str = "access_request";

/// A wire message that cannot be turned into the model. Not retryable: the same message will
/// fail the same way; callers skip it with a warning.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConvertError {
    /// The access request carries no metadata.
    #[error("access request without metadata")]
    MissingMetadata,
    /// The access request (or delete header) has an empty name, i.e. no id.
    #[error("access request without a name (id)")]
    MissingName,
}

/// What a watch event means to the daemon.
// Events are handled one at a time and never stored in bulk, so the size of `Put` is fine.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The watch is established; events from now on are live.
    Init,
    /// An access request changed or went away.
    Put(Snapshot),
    /// Not about access requests (or a shape we do not use).
    Skip,
}

/// Reads a wire timestamp, treating absence and Go's zero time as unset.
///
/// A time outside 1970..9999 is also read as unset: no access request carries one, and the
/// daemon shows request times on alerts, so such a value must not reach a formatter that
/// cannot render it (humantime panics before 1970).
pub fn time_from_pb(ts: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    if ts.seconds == GO_ZERO_TIME_SECONDS && ts.nanos == 0 {
        return None;
    }
    let nanos = u32::try_from(ts.nanos.clamp(0, 999_999_999)).unwrap_or(0);
    crate::teleport::identity::unix_seconds_in_range(ts.seconds)?
        .checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// Writes a time; `None` stays absent on the wire (trap 2).
pub fn time_to_pb(time: Option<SystemTime>) -> Option<prost_types::Timestamp> {
    let time = time?;
    let ts = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => prost_types::Timestamp {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        },
        Err(e) => {
            // Before 1970: express as negative seconds plus non-negative nanos.
            let d = e.duration();
            let mut seconds = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let mut nanos = i32::try_from(d.subsec_nanos()).unwrap_or(0);
            if nanos > 0 {
                seconds -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            prost_types::Timestamp { seconds, nanos }
        }
    };
    Some(ts)
}

/// Wire state to model state; unknown values are `None`.
pub fn state_from_pb(value: i32) -> RequestState {
    match pb::types::RequestState::try_from(value) {
        Ok(pb::types::RequestState::Pending) => RequestState::Pending,
        Ok(pb::types::RequestState::Approved) => RequestState::Approved,
        Ok(pb::types::RequestState::Denied) => RequestState::Denied,
        Ok(pb::types::RequestState::Promoted) => RequestState::Promoted,
        Ok(pb::types::RequestState::None) | Err(_) => RequestState::None,
    }
}

/// Model state to wire state.
pub fn state_to_pb(state: RequestState) -> i32 {
    let s = match state {
        RequestState::None => pb::types::RequestState::None,
        RequestState::Pending => pb::types::RequestState::Pending,
        RequestState::Approved => pb::types::RequestState::Approved,
        RequestState::Denied => pb::types::RequestState::Denied,
        RequestState::Promoted => pb::types::RequestState::Promoted,
    };
    s as i32
}

/// `LabelValues` to a plain map; absent means empty.
pub fn label_values_from_pb(
    lv: Option<pb::wrappers::LabelValues>,
) -> BTreeMap<String, Vec<String>> {
    lv.map(|lv| lv.values.into_iter().map(|(k, v)| (k, v.values)).collect())
        .unwrap_or_default()
}

fn review_from_pb(r: pb::types::AccessReview) -> Review {
    Review {
        author: r.author,
        proposed_state: state_from_pb(r.proposed_state),
        reason: r.reason,
        created: time_from_pb(r.created.as_ref()),
    }
}

fn resource_from_pb(r: pb::types::ResourceId) -> ResourceId {
    ResourceId {
        cluster: r.cluster_name,
        kind: r.kind,
        name: r.name,
        sub_resource: r.sub_resource_name,
    }
}

/// The id (`metadata.name`) of a wire object; errors when missing or empty.
fn id_of(metadata: Option<&pb::types::Metadata>) -> Result<String, ConvertError> {
    let metadata = metadata.ok_or(ConvertError::MissingMetadata)?;
    if metadata.name.is_empty() {
        return Err(ConvertError::MissingName);
    }
    Ok(metadata.name.clone())
}

/// Converts a wire access request. A missing spec reads as an empty one, as Go would decode it.
pub fn access_request_from_pb(
    pb: pb::types::AccessRequestV3,
) -> Result<AccessRequest, ConvertError> {
    let id = id_of(pb.metadata.as_ref())?;
    let spec = pb.spec.unwrap_or_default();
    Ok(AccessRequest {
        id,
        user: spec.user,
        roles: spec.roles,
        state: state_from_pb(spec.state),
        created: time_from_pb(spec.created.as_ref()),
        access_expiry: time_from_pb(spec.expires.as_ref()),
        max_duration: time_from_pb(spec.max_duration.as_ref()),
        request_reason: spec.request_reason,
        resolve_reason: spec.resolve_reason,
        system_annotations: label_values_from_pb(spec.system_annotations),
        reviews: spec.reviews.into_iter().map(review_from_pb).collect(),
        resources: spec
            .requested_resource_ids
            .into_iter()
            .map(resource_from_pb)
            .collect(),
    })
}

/// Classifies a watch event (teleport-wire.md §7): INIT; PUT with an access request; DELETE
/// with a resource header (how expiry and deletion arrive) or, tolerated, with a full request.
pub fn snapshot_from_event(ev: pb::proto::Event) -> Result<EventKind, ConvertError> {
    use pb::proto::event::Resource;
    use pb::proto::Operation;

    let Ok(op) = Operation::try_from(ev.operation) else {
        return Ok(EventKind::Skip);
    };
    match (op, ev.resource) {
        (Operation::Init, _) => Ok(EventKind::Init),
        (Operation::Put, Some(Resource::AccessRequest(req))) => Ok(EventKind::Put(
            Snapshot::Present(access_request_from_pb(req)?),
        )),
        (Operation::Delete, Some(Resource::ResourceHeader(header)))
            if header.kind == ACCESS_REQUEST_KIND =>
        {
            Ok(EventKind::Put(Snapshot::Gone {
                id: id_of(header.metadata.as_ref())?,
            }))
        }
        (Operation::Delete, Some(Resource::AccessRequest(req))) => {
            Ok(EventKind::Put(Snapshot::Gone {
                id: id_of(req.metadata.as_ref())?,
            }))
        }
        _ => Ok(EventKind::Skip),
    }
}

/// A minimal wire access request for `CreateAccessRequestV2`: id, user, roles, reason, and
/// state. Server-computed fields (times, thresholds, annotations) are left for the server;
/// unset times are omitted (trap 2).
pub fn access_request_to_pb(req: &AccessRequest) -> pb::types::AccessRequestV3 {
    pb::types::AccessRequestV3 {
        kind: ACCESS_REQUEST_KIND.into(),
        sub_kind: String::new(),
        version: "v3".into(),
        metadata: Some(pb::types::Metadata {
            name: req.id.clone(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(pb::types::AccessRequestSpecV3 {
            user: req.user.clone(),
            roles: req.roles.clone(),
            state: state_to_pb(req.state),
            created: time_to_pb(req.created),
            expires: time_to_pb(req.access_expiry),
            max_duration: time_to_pb(req.max_duration),
            request_reason: req.request_reason.clone(),
            resolve_reason: req.resolve_reason.clone(),
            requested_resource_ids: req
                .resources
                .iter()
                .map(|r| pb::types::ResourceId {
                    cluster_name: r.cluster.clone(),
                    kind: r.kind.clone(),
                    name: r.name.clone(),
                    sub_resource_name: r.sub_resource.clone(),
                })
                .collect(),
            ..Default::default()
        }),
    }
}

/// A review for `SubmitAccessReview`. The author is left empty (the server fills in the
/// caller; anything else is refused) and `created` is omitted so the server uses "now".
pub fn review_to_pb(state: RequestState, reason: &str) -> pb::types::AccessReview {
    pb::types::AccessReview {
        author: String::new(),
        proposed_state: state_to_pb(state),
        reason: reason.to_owned(),
        created: None,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos })
    }

    fn wire_request() -> pb::types::AccessRequestV3 {
        let mut annotations = pb::wrappers::LabelValues::default();
        annotations.values.insert(
            "teleport.dev/schedules".into(),
            pb::wrappers::StringValues {
                values: vec!["primary".into(), "secondary".into()],
            },
        );
        pb::types::AccessRequestV3 {
            kind: ACCESS_REQUEST_KIND.into(),
            version: "v3".into(),
            metadata: Some(pb::types::Metadata {
                name: "0190a5f2-aaaa-7bbb-8ccc-000000000001".into(),
                ..Default::default()
            }),
            spec: Some(pb::types::AccessRequestSpecV3 {
                user: "alice".into(),
                roles: vec!["editor".into()],
                state: pb::types::RequestState::Pending as i32,
                created: ts(1_700_000_000, 500),
                expires: ts(1_700_003_600, 0),
                max_duration: ts(GO_ZERO_TIME_SECONDS, 0),
                session_ttl: ts(GO_ZERO_TIME_SECONDS, 0),
                request_reason: "deploy".into(),
                system_annotations: Some(annotations),
                reviews: vec![pb::types::AccessReview {
                    author: "bob".into(),
                    proposed_state: pb::types::RequestState::Approved as i32,
                    reason: "ok".into(),
                    created: ts(GO_ZERO_TIME_SECONDS, 0),
                    ..Default::default()
                }],
                requested_resource_ids: vec![pb::types::ResourceId {
                    cluster_name: "example.com".into(),
                    kind: "node".into(),
                    name: "web-1".into(),
                    sub_resource_name: String::new(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn converts_a_full_request() {
        let req = access_request_from_pb(wire_request()).expect("converts");
        assert_eq!(req.id, "0190a5f2-aaaa-7bbb-8ccc-000000000001");
        assert_eq!(req.user, "alice");
        assert_eq!(req.state, RequestState::Pending);
        assert_eq!(
            req.created,
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 500))
        );
        assert_eq!(
            req.access_expiry,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_003_600))
        );
        // Trap 1: Go's zero time is "unset".
        assert_eq!(req.max_duration, None);
        assert_eq!(req.reviews[0].created, None);
        assert_eq!(req.reviews[0].proposed_state, RequestState::Approved);
        assert_eq!(
            req.annotation("teleport.dev/schedules"),
            vec!["primary", "secondary"]
        );
        assert_eq!(req.resources[0].to_string(), "/example.com/node/web-1");
    }

    #[test]
    fn missing_metadata_or_name_is_an_error() {
        let mut pb = wire_request();
        pb.metadata.as_mut().expect("metadata").name.clear();
        assert_eq!(
            access_request_from_pb(pb.clone()),
            Err(ConvertError::MissingName)
        );
        pb.metadata = None;
        assert_eq!(
            access_request_from_pb(pb),
            Err(ConvertError::MissingMetadata)
        );
    }

    #[test]
    fn missing_spec_reads_as_empty() {
        let mut pb = wire_request();
        pb.spec = None;
        let req = access_request_from_pb(pb).expect("converts");
        assert_eq!(req.state, RequestState::None);
        assert!(req.roles.is_empty());
    }

    #[test]
    fn unknown_state_is_none() {
        assert_eq!(state_from_pb(42), RequestState::None);
        for s in [
            RequestState::None,
            RequestState::Pending,
            RequestState::Approved,
            RequestState::Denied,
            RequestState::Promoted,
        ] {
            assert_eq!(state_from_pb(state_to_pb(s)), s);
        }
    }

    #[test]
    fn times_round_trip_and_unset_stays_absent() {
        assert_eq!(time_to_pb(None), None);
        for t in [UNIX_EPOCH, UNIX_EPOCH + Duration::new(1_700_000_000, 123)] {
            assert_eq!(time_from_pb(time_to_pb(Some(t)).as_ref()), Some(t));
        }
        // Before 1970 or after 9999: never a real request's, and unrenderable, so unset.
        let before = UNIX_EPOCH - Duration::new(100, 250);
        assert_eq!(time_from_pb(time_to_pb(Some(before)).as_ref()), None);
        assert_eq!(time_from_pb(ts(253_402_300_800, 0).as_ref()), None);
        assert_eq!(time_from_pb(ts(i64::MIN, 0).as_ref()), None);
        assert_eq!(time_from_pb(ts(i64::MAX, i32::MAX).as_ref()), None);
        // Timestamp{0,0} is a real time (1970), not "unset".
        assert_eq!(time_from_pb(ts(0, 0).as_ref()), Some(UNIX_EPOCH));
    }

    #[test]
    fn review_omits_author_and_created_on_the_wire() {
        let review = review_to_pb(RequestState::Approved, "on call");
        let bytes = review.encode_to_vec();
        let decoded = pb::types::AccessReview::decode(bytes.as_slice()).expect("decodes");
        assert!(decoded.created.is_none());
        assert!(decoded.author.is_empty());
        // Only fields 3 (state) and 4 (reason) are on the wire.
        assert_eq!(bytes[0], 3 << 3);
    }

    #[test]
    fn create_request_omits_unset_times() {
        let mut req = access_request_from_pb(wire_request()).expect("converts");
        req.created = None;
        req.access_expiry = None;
        let pb = access_request_to_pb(&req);
        let spec = pb.spec.expect("spec");
        assert!(spec.created.is_none() && spec.expires.is_none());
        assert!(spec.max_duration.is_none() && spec.session_ttl.is_none());
        assert_eq!(pb.metadata.expect("metadata").name, req.id);
    }

    fn event(
        op: pb::proto::Operation,
        resource: Option<pb::proto::event::Resource>,
    ) -> pb::proto::Event {
        pb::proto::Event {
            operation: op as i32,
            resource,
        }
    }

    #[test]
    fn event_shapes() {
        use pb::proto::event::Resource;
        use pb::proto::Operation;

        assert_eq!(
            snapshot_from_event(event(Operation::Init, None)),
            Ok(EventKind::Init)
        );
        match snapshot_from_event(event(
            Operation::Put,
            Some(Resource::AccessRequest(wire_request())),
        )) {
            Ok(EventKind::Put(Snapshot::Present(req))) => assert_eq!(req.user, "alice"),
            other => panic!("unexpected {other:?}"),
        }
        let header = pb::types::ResourceHeader {
            kind: ACCESS_REQUEST_KIND.into(),
            version: "v3".into(),
            metadata: Some(pb::types::Metadata {
                name: "r1".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            snapshot_from_event(event(
                Operation::Delete,
                Some(Resource::ResourceHeader(header.clone()))
            )),
            Ok(EventKind::Put(Snapshot::Gone { id: "r1".into() }))
        );
        match snapshot_from_event(event(
            Operation::Delete,
            Some(Resource::AccessRequest(wire_request())),
        )) {
            Ok(EventKind::Put(Snapshot::Gone { id })) => assert!(id.starts_with("0190")),
            other => panic!("unexpected {other:?}"),
        }
        // Another kind's delete, a PUT of a header, an unknown oneof member, an unknown op.
        let mut other = header.clone();
        other.kind = "node".into();
        assert_eq!(
            snapshot_from_event(event(
                Operation::Delete,
                Some(Resource::ResourceHeader(other))
            )),
            Ok(EventKind::Skip)
        );
        assert_eq!(
            snapshot_from_event(event(
                Operation::Put,
                Some(Resource::ResourceHeader(header))
            )),
            Ok(EventKind::Skip)
        );
        assert_eq!(
            snapshot_from_event(event(Operation::Put, None)),
            Ok(EventKind::Skip)
        );
        let unknown = pb::proto::Event {
            operation: 9,
            resource: None,
        };
        assert_eq!(snapshot_from_event(unknown), Ok(EventKind::Skip));
        // A delete header without a name is an error.
        let nameless = pb::types::ResourceHeader {
            kind: ACCESS_REQUEST_KIND.into(),
            metadata: Some(pb::types::Metadata::default()),
            ..Default::default()
        };
        assert_eq!(
            snapshot_from_event(event(
                Operation::Delete,
                Some(Resource::ResourceHeader(nameless))
            )),
            Err(ConvertError::MissingName)
        );
    }

    #[test]
    fn go_zero_time_is_0001_01_01() {
        // 1969 years of 365.2425 days, from 0001-01-01 to 1970-01-01.
        assert_eq!(GO_ZERO_TIME_SECONDS, -(719_162 * 86_400));
    }
}
