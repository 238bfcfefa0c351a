//! The fake cluster's state and every rule the access-request API applies to it.
//!
//! Both the gRPC service and the direct test API call into [`Store`], so a request created with
//! `FakeTeleport::create_request` goes through exactly the validation, defaults and events of
//! `CreateAccessRequestV2`. All methods are synchronous and run under one mutex; events are
//! broadcast while the lock is held so every watcher sees them in commit order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;
use tokio::sync::{broadcast, Notify};
use tonic::Status;

mod events;
mod list;
mod plugin_data;

pub(crate) use self::events::{delete_event, put_event, WatchFilter};
use super::roles::Directory;
use crate::pb::{proto, types, wrappers};

/// Kind, version and namespace Teleport uses for access requests.
pub(crate) const KIND_ACCESS_REQUEST: &str = "access_request";
const KIND_PLUGIN_DATA: &str = "access_plugin_data";
const VERSION_V3: &str = "v3";
const NAMESPACE: &str = "default";
/// Go's zero `time.Time` as a protobuf Timestamp (0001-01-01): treated as unset.
const GO_ZERO_SECONDS: i64 = -62_135_596_800;
/// Longest request reason Teleport accepts.
const MAX_REASON_LEN: usize = 4096;
/// Approximation of Teleport's maximum marshaled resource size for plugin data.
const MAX_PLUGIN_DATA_BYTES: usize = 1_000_000;
/// Plugin data outlives the request's access expiry by this much (teleport-wire.md §2.9).
const PLUGIN_DATA_GRACE: Duration = Duration::from_secs(3600);

/// Who performs an operation: a user identified by certificate, or the test harness (which, like
/// `tctl` on the Auth host, bypasses RBAC).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Actor<'a> {
    Admin,
    User(&'a str),
}

/// Tunables copied from the options at start.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub access_ttl: Duration,
    pub pending_ttl: Duration,
    pub default_page: usize,
    pub max_page: usize,
}

struct PluginRecord {
    entries: BTreeMap<String, BTreeMap<String, String>>,
    expires: Option<Timestamp>,
}

/// Sort key of the created-order index: (created as Unix nanoseconds, id).
type OrderKey = (i128, String);

pub(crate) struct Store {
    pub dir: Directory,
    requests: HashMap<String, types::AccessRequestV3>,
    order: BTreeSet<OrderKey>,
    plugin_data: HashMap<String, PluginRecord>,
    revision: u64,
    events: broadcast::Sender<Arc<proto::Event>>,
    changed: Arc<Notify>,
    limits: Limits,
    /// Plugin-data keys whose first value is timestamped (for the load test).
    tracked_keys: BTreeSet<String>,
    /// (request id, key, when) each time a tracked key went from absent to set, in order.
    pub first_set: Vec<(String, String, SystemTime)>,
}

pub(crate) fn ts(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// `now + d`, saturating (at 9999-12-31) instead of panicking on an absurd option.
fn later(now: SystemTime, d: Duration) -> SystemTime {
    use crate::teleport::identity::MAX_UNIX_SECONDS;
    now.checked_add(d)
        .filter(|t| ts(*t).seconds <= MAX_UNIX_SECONDS)
        .unwrap_or(UNIX_EPOCH + Duration::from_secs(MAX_UNIX_SECONDS.unsigned_abs()))
}

fn ts_nanos(t: &Timestamp) -> i128 {
    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
}

/// A timestamp the client actually meant to set (not absent, not Go's zero time, not 1970).
fn meaningful(t: Option<&Timestamp>) -> Option<&Timestamp> {
    t.filter(|t| t.seconds != GO_ZERO_SECONDS && !(t.seconds == 0 && t.nanos == 0))
}

fn state_of(r: &types::AccessRequestV3) -> types::RequestState {
    r.spec
        .as_ref()
        .and_then(|s| types::RequestState::try_from(s.state).ok())
        .unwrap_or(types::RequestState::None)
}

fn is_resolved(s: types::RequestState) -> bool {
    matches!(
        s,
        types::RequestState::Approved | types::RequestState::Denied | types::RequestState::Promoted
    )
}

fn created_key(r: &types::AccessRequestV3) -> OrderKey {
    let created = r
        .spec
        .as_ref()
        .and_then(|s| s.created.as_ref())
        .map(ts_nanos)
        .unwrap_or(0);
    (created, request_id(r).to_owned())
}

fn request_id(r: &types::AccessRequestV3) -> &str {
    r.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
}

fn access_denied(verb: &str, resource: &str) -> Status {
    Status::permission_denied(format!(
        "access denied to perform action {verb:?} on {resource:?}"
    ))
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("access request {id:?} is not found"))
}

fn label_values(map: BTreeMap<String, Vec<String>>) -> wrappers::LabelValues {
    wrappers::LabelValues {
        values: map
            .into_iter()
            .map(|(k, values)| (k, wrappers::StringValues { values }))
            .collect(),
    }
}

fn filter_matches(f: &types::AccessRequestFilter, r: &types::AccessRequestV3) -> bool {
    let spec = r.spec.as_ref();
    (f.id.is_empty() || f.id == request_id(r))
        && (f.user.is_empty() || spec.is_some_and(|s| s.user == f.user))
        && (f.state == 0 || spec.is_some_and(|s| s.state == f.state))
}
impl Store {
    pub fn new(
        events: broadcast::Sender<Arc<proto::Event>>,
        changed: Arc<Notify>,
        limits: Limits,
    ) -> Self {
        Self {
            dir: Directory::default(),
            requests: HashMap::new(),
            order: BTreeSet::new(),
            plugin_data: HashMap::new(),
            revision: 0,
            events,
            changed,
            limits,
            tracked_keys: BTreeSet::new(),
            first_set: Vec::new(),
        }
    }

    /// Starts timestamping when `key` first gets a value in any request's plugin data.
    pub fn track_key(&mut self, key: &str) {
        self.tracked_keys.insert(key.to_owned());
    }

    fn emit(&self, ev: proto::Event) {
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(Arc::new(ev));
        self.changed.notify_waiters();
    }

    fn next_revision(&mut self) -> String {
        self.revision += 1;
        format!("{:016x}", self.revision)
    }

    fn check(&self, actor: Actor<'_>, resource: &str, verbs: &[&str]) -> Result<(), Status> {
        let Actor::User(user) = actor else {
            return Ok(());
        };
        for verb in verbs {
            if !self.dir.allows(user, resource, verb) {
                return Err(access_denied(verb, resource));
            }
        }
        Ok(())
    }

    /// RBAC for watching/listing/reading access requests (`access_request: list, read`).
    pub fn check_read(&self, actor: Actor<'_>) -> Result<(), Status> {
        self.check(actor, KIND_ACCESS_REQUEST, &["list", "read"])
    }

    pub fn request(&self, id: &str) -> Option<&types::AccessRequestV3> {
        self.requests.get(id)
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// All requests in created order.
    pub fn all(&self) -> Vec<types::AccessRequestV3> {
        self.order
            .iter()
            .filter_map(|(_, id)| self.requests.get(id).cloned())
            .collect()
    }

    /// `CreateAccessRequestV2`.
    pub fn create(
        &mut self,
        actor: Actor<'_>,
        mut req: types::AccessRequestV3,
    ) -> Result<types::AccessRequestV3, Status> {
        let mut meta = req.metadata.take().unwrap_or_default();
        let id = meta.name.clone();
        if uuid::Uuid::parse_str(&id).is_err() {
            return Err(Status::invalid_argument(format!(
                "access request ID {id:?} is not a valid UUID"
            )));
        }
        let mut spec = req.spec.take().unwrap_or_default();
        if spec.user.is_empty() {
            match actor {
                Actor::User(caller) => spec.user = caller.to_owned(),
                Actor::Admin => {
                    return Err(Status::invalid_argument("access request user is required"))
                }
            }
        }
        let user = spec.user.clone();
        if let Actor::User(caller) = actor {
            if caller != user {
                self.check(actor, KIND_ACCESS_REQUEST, &["create"])?;
            }
        }
        if !self.dir.has_user(&user) {
            return Err(Status::not_found(format!("user {user:?} is not found")));
        }
        if self.requests.contains_key(&id) {
            return Err(Status::already_exists(format!(
                "access request {id:?} already exists"
            )));
        }
        if spec.request_reason.len() > MAX_REASON_LEN {
            return Err(Status::invalid_argument(format!(
                "request reason is too long, max {MAX_REASON_LEN} bytes"
            )));
        }
        if !matches!(
            types::RequestState::try_from(spec.state),
            Ok(types::RequestState::None | types::RequestState::Pending)
        ) {
            return Err(Status::invalid_argument(
                "a new access request must be in state PENDING",
            ));
        }
        let resource_request = !spec.requested_resource_ids.is_empty();
        let search_as = self.dir.search_as_roles(&user);
        if spec.roles.is_empty() {
            // An empty role list means "everything I may request", as with `tsh request create`
            // without --roles; resource requests use the search_as_roles instead.
            spec.roles = if resource_request {
                search_as.clone()
            } else {
                self.dir.requestable_roles(&user)
            };
            if spec.roles.is_empty() {
                return Err(Status::permission_denied(format!(
                    "user {user:?} can not request any roles"
                )));
            }
        }
        for role in &spec.roles {
            let via_search = resource_request
                && search_as
                    .iter()
                    .any(|p| super::roles::pattern_matches(p, role));
            if !via_search && !self.dir.can_request(&user, role) {
                return Err(Status::permission_denied(format!(
                    "user {user:?} can not request role {role:?}"
                )));
            }
        }

        let now = SystemTime::now();
        let now_ts = ts(now);
        let access_expiry = meaningful(spec.expires.as_ref())
            .filter(|t| ts_nanos(t) > ts_nanos(&now_ts))
            .cloned()
            .unwrap_or_else(|| ts(later(now, self.limits.access_ttl)));
        let mut pending_expiry = ts(later(now, self.limits.pending_ttl));
        if let Some(re) = meaningful(spec.resource_expiry.as_ref()) {
            if ts_nanos(re) < ts_nanos(&pending_expiry) {
                pending_expiry = *re;
            }
        }
        if ts_nanos(&access_expiry) < ts_nanos(&pending_expiry) {
            pending_expiry = access_expiry;
        }
        spec.state = types::RequestState::Pending as i32;
        spec.created = Some(now_ts);
        spec.expires = Some(access_expiry);
        spec.max_duration = meaningful(spec.max_duration.as_ref()).cloned();
        spec.session_ttl = meaningful(spec.session_ttl.as_ref())
            .cloned()
            .or(Some(access_expiry));
        spec.assume_start_time = meaningful(spec.assume_start_time.as_ref()).cloned();
        spec.resource_expiry = meaningful(spec.resource_expiry.as_ref()).cloned();
        spec.resolve_reason.clear();
        spec.resolve_annotations = Some(wrappers::LabelValues::default());
        spec.reviews.clear();
        spec.system_annotations = Some(label_values(self.dir.annotations(&user)));
        let mut thresholds: Vec<types::AccessReviewThreshold> = self
            .dir
            .thresholds(&user, &spec.roles)
            .into_iter()
            .map(|t| types::AccessReviewThreshold {
                name: t.name,
                filter: t.filter,
                approve: t.approve.max(1),
                deny: t.deny.max(1),
            })
            .collect();
        if thresholds.is_empty() {
            thresholds.push(types::AccessReviewThreshold {
                name: "default".to_owned(),
                filter: String::new(),
                approve: 1,
                deny: 1,
            });
        }
        let all: Vec<u32> = (0..thresholds.len())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        spec.role_threshold_mapping = spec
            .roles
            .iter()
            .map(|r| {
                (
                    r.clone(),
                    types::ThresholdIndexSets {
                        sets: vec![types::ThresholdIndexSet {
                            indexes: all.clone(),
                        }],
                    },
                )
            })
            .collect();
        spec.thresholds = thresholds;

        meta.namespace = NAMESPACE.to_owned();
        meta.expires = Some(pending_expiry);
        let out = types::AccessRequestV3 {
            kind: KIND_ACCESS_REQUEST.to_owned(),
            sub_kind: req.sub_kind,
            version: VERSION_V3.to_owned(),
            metadata: Some(meta),
            spec: Some(spec),
        };
        if out.spec.as_ref().is_some_and(|s| s.dry_run) {
            return Ok(out);
        }
        let mut out = out;
        if let Some(m) = out.metadata.as_mut() {
            m.revision = self.next_revision();
        }
        self.order.insert(created_key(&out));
        self.requests.insert(id, out.clone());
        self.emit(put_event(&out));
        Ok(out)
    }

    /// `SubmitAccessReview`, performed by `caller`.
    pub fn review(
        &mut self,
        caller: &str,
        sub: types::AccessReviewSubmission,
        mfa_required: bool,
    ) -> Result<types::AccessRequestV3, Status> {
        let mut review = sub.review.unwrap_or_default();
        if review.author.is_empty() {
            review.author = caller.to_owned();
        }
        if review.author != caller {
            return Err(Status::permission_denied(format!(
                "user {caller:?} cannot submit reviews on behalf of {:?}",
                review.author
            )));
        }
        if mfa_required {
            return Err(Status::permission_denied(
                "admin-level API request requires MFA verification",
            ));
        }
        match types::RequestState::try_from(review.proposed_state) {
            Ok(types::RequestState::Approved | types::RequestState::Denied) => {}
            Ok(types::RequestState::Promoted) => {
                return Err(Status::invalid_argument(
                    "state promoted can be only set when promoting to access list",
                ))
            }
            other => {
                let name = other.map(|s| s.as_str_name()).unwrap_or("UNKNOWN");
                return Err(Status::invalid_argument(format!(
                    "invalid state proposal: {name} (only APPROVED and DENIED are allowed)"
                )));
            }
        }
        if review
            .annotations
            .as_ref()
            .is_some_and(|a| !a.values.is_empty())
        {
            return Err(Status::unimplemented(
                "annotations on reviews are not supported",
            ));
        }
        if !review.roles.is_empty() {
            return Err(Status::unimplemented(
                "reviewing a subset of the requested roles is not supported",
            ));
        }
        if !self.dir.is_reviewer(caller) {
            return Err(Status::permission_denied(format!(
                "user {caller:?} cannot submit reviews"
            )));
        }
        let id = sub.request_id;
        let Some(existing) = self.requests.get(&id) else {
            return Err(not_found(&id));
        };
        let spec = existing.spec.clone().unwrap_or_default();
        if spec.user == caller {
            return Err(Status::permission_denied(format!(
                "user {caller:?} cannot review their own access request"
            )));
        }
        if !self.dir.can_review(caller, &spec.roles) {
            return Err(Status::permission_denied(format!(
                "access denied: user {caller:?} cannot review access request {id:?}"
            )));
        }
        if spec.reviews.iter().any(|r| r.author == caller) {
            return Err(Status::permission_denied(format!(
                "user {caller:?} has already reviewed this request"
            )));
        }
        let current = state_of(existing);
        if is_resolved(current) {
            return Err(Status::permission_denied(format!(
                "the access request has been already {}",
                current.as_str_name().to_ascii_lowercase()
            )));
        }

        if meaningful(review.created.as_ref()).is_none() {
            review.created = Some(ts(SystemTime::now()));
        }
        review.annotations = Some(wrappers::LabelValues::default());
        review.threshold_indexes = (0..spec.thresholds.len())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        let reason = review.reason.clone();
        let revision = self.next_revision();
        let Some(req) = self.requests.get_mut(&id) else {
            return Err(not_found(&id));
        };
        let spec = req.spec.get_or_insert_with(Default::default);
        spec.reviews.push(review);
        let count = |want: types::RequestState| {
            spec.reviews
                .iter()
                .filter(|r| r.proposed_state == want as i32)
                .count()
        };
        let approvals = count(types::RequestState::Approved);
        let denials = count(types::RequestState::Denied);
        // Simplified threshold model: any threshold's deny count reached denies; every
        // threshold's approve count reached approves. With the usual single threshold this is
        // exactly Teleport's behaviour.
        let default_threshold = [types::AccessReviewThreshold {
            approve: 1,
            deny: 1,
            ..Default::default()
        }];
        let thresholds: &[types::AccessReviewThreshold] = if spec.thresholds.is_empty() {
            &default_threshold
        } else {
            &spec.thresholds
        };
        let new_state = if thresholds.iter().any(|t| denials >= t.deny.max(1) as usize) {
            Some(types::RequestState::Denied)
        } else if thresholds
            .iter()
            .all(|t| approvals >= t.approve.max(1) as usize)
        {
            Some(types::RequestState::Approved)
        } else {
            None
        };
        if let Some(s) = new_state {
            spec.state = s as i32;
            spec.resolve_reason = reason;
            let access_expiry = spec.expires;
            if let Some(m) = req.metadata.as_mut() {
                m.expires = access_expiry;
            }
        }
        if let Some(m) = req.metadata.as_mut() {
            m.revision = revision;
        }
        let out = req.clone();
        self.emit(put_event(&out));
        Ok(out)
    }

    /// `SetAccessRequestState`: bypasses thresholds. A denied request stays denied.
    pub fn set_state(
        &mut self,
        actor: Actor<'_>,
        setter: proto::RequestStateSetter,
    ) -> Result<(), Status> {
        self.check(actor, KIND_ACCESS_REQUEST, &["update"])?;
        let target = types::RequestState::try_from(setter.state)
            .ok()
            .filter(|s| *s != types::RequestState::None)
            .ok_or_else(|| Status::invalid_argument("a target request state is required"))?;
        let revision = self.next_revision();
        let Some(req) = self.requests.get_mut(&setter.id) else {
            return Err(not_found(&setter.id));
        };
        let current = state_of(req);
        if current == types::RequestState::Denied && target != types::RequestState::Denied {
            return Err(Status::invalid_argument(format!(
                "cannot set request-state {} (already denied)",
                target.as_str_name()
            )));
        }
        let spec = req.spec.get_or_insert_with(Default::default);
        if !setter.roles.is_empty() {
            if let Some(r) = setter.roles.iter().find(|r| !spec.roles.contains(r)) {
                return Err(Status::invalid_argument(format!(
                    "role {r:?} was not requested"
                )));
            }
            spec.roles = setter.roles;
        }
        spec.state = target as i32;
        spec.resolve_reason = setter.reason;
        if let Some(a) = setter.annotations {
            spec.resolve_annotations = Some(a);
        }
        if let Some(t) = meaningful(setter.assume_start_time.as_ref()) {
            spec.assume_start_time = Some(*t);
        }
        if is_resolved(target) {
            let access_expiry = spec.expires;
            if let Some(m) = req.metadata.as_mut() {
                m.expires = access_expiry;
            }
        }
        if let Some(m) = req.metadata.as_mut() {
            m.revision = revision;
        }
        let ev = put_event(req);
        self.emit(ev);
        Ok(())
    }

    /// `DeleteAccessRequest`. Plugin data is deliberately kept: it outlives the request.
    pub fn delete(&mut self, actor: Actor<'_>, id: &str) -> Result<(), Status> {
        self.check(actor, KIND_ACCESS_REQUEST, &["delete"])?;
        let Some(req) = self.requests.remove(id) else {
            return Err(not_found(id));
        };
        self.order.remove(&created_key(&req));
        self.emit(delete_event(id));
        Ok(())
    }
}
