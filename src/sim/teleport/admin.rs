//! The fake's direct API for tests and demos, acting as the cluster admin (like `tctl` on the
//! Auth host): roles and users from YAML, and requests driven through exactly the rules of the
//! RPCs.

use std::collections::{BTreeMap, HashMap};

use tonic::Status;

use super::roles::{Resource, Role, RoleSpec, UserSpec};
use super::store::{self, Actor};
use super::{lock, FakeTeleport, FakeTeleportError, NewRequest};
use crate::pb::{proto, types};

impl FakeTeleport {
    // ----- roles and users -----

    /// Adds (or replaces) roles and users from Teleport YAML. Accepts one or more `---`-separated
    /// documents of `kind: role` or `kind: user`; fields this fake doesn't model are ignored.
    pub fn add_role_yaml(&self, yaml: &str) -> Result<(), FakeTeleportError> {
        use serde::Deserialize as _;
        let mut parsed = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let value = serde_yaml::Value::deserialize(doc)?;
            if value.is_null() {
                continue;
            }
            let res: Resource = serde_yaml::from_value(value)?;
            if res.metadata.name.is_empty() {
                return Err(FakeTeleportError::InvalidResource(
                    "metadata.name is required".to_owned(),
                ));
            }
            parsed.push(res);
        }
        let mut store = lock(&self.inner.store);
        for res in parsed {
            match res.kind.as_str() {
                "role" => {
                    let spec: RoleSpec = if res.spec.is_null() {
                        RoleSpec::default()
                    } else {
                        serde_yaml::from_value(res.spec)?
                    };
                    store.dir.roles.insert(res.metadata.name, Role { spec });
                }
                "user" => {
                    let spec: UserSpec = if res.spec.is_null() {
                        UserSpec::default()
                    } else {
                        serde_yaml::from_value(res.spec)?
                    };
                    store.dir.users.insert(res.metadata.name, spec.roles);
                }
                other => {
                    return Err(FakeTeleportError::InvalidResource(format!(
                        "unsupported kind {other:?} (expected role or user)"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Adds (or replaces) a user holding `roles`.
    pub fn add_user<I, S>(&self, name: &str, roles: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let roles = roles.into_iter().map(|r| r.as_ref().to_owned()).collect();
        lock(&self.inner.store)
            .dir
            .users
            .insert(name.to_owned(), roles);
    }

    // ----- direct request API (same rules as the RPCs, acting as the cluster admin) -----

    /// Creates a pending request for `user`, exactly as `CreateAccessRequestV2` would (the user
    /// must exist and be allowed to request the roles); emits a PUT.
    pub fn create_request<S: AsRef<str>>(
        &self,
        user: &str,
        roles: &[S],
        reason: &str,
    ) -> Result<types::AccessRequestV3, Status> {
        self.create_request_with(NewRequest {
            user: user.to_owned(),
            roles: roles.iter().map(|r| r.as_ref().to_owned()).collect(),
            reason: reason.to_owned(),
            ..Default::default()
        })
    }

    /// Like [`FakeTeleport::create_request`] with resources, expiry and reviewers.
    pub fn create_request_with(&self, req: NewRequest) -> Result<types::AccessRequestV3, Status> {
        let msg = types::AccessRequestV3 {
            kind: "access_request".to_owned(),
            version: "v3".to_owned(),
            metadata: Some(types::Metadata {
                name: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            }),
            spec: Some(types::AccessRequestSpecV3 {
                user: req.user,
                roles: req.roles,
                state: types::RequestState::Pending as i32,
                request_reason: req.reason,
                requested_resource_ids: req.resources,
                expires: req.access_expiry.map(store::ts),
                max_duration: req.max_duration.map(store::ts),
                suggested_reviewers: req.suggested_reviewers,
                ..Default::default()
            }),
            ..Default::default()
        };
        lock(&self.inner.store).create(Actor::Admin, msg)
    }

    /// Submits a review by `author` with `SubmitAccessReview`'s rules (the author needs
    /// `review_requests` rights; MFA is not demanded, as for `tctl` on the Auth host).
    pub fn review(
        &self,
        id: &str,
        author: &str,
        approve: bool,
        reason: &str,
    ) -> Result<types::AccessRequestV3, Status> {
        let state = if approve {
            types::RequestState::Approved
        } else {
            types::RequestState::Denied
        };
        let sub = types::AccessReviewSubmission {
            request_id: id.to_owned(),
            review: Some(types::AccessReview {
                author: author.to_owned(),
                proposed_state: state as i32,
                reason: reason.to_owned(),
                ..Default::default()
            }),
        };
        lock(&self.inner.store).review(author, sub, false)
    }

    /// Sets a request's state directly (like `tctl request approve/deny`); emits a PUT.
    pub fn set_state(
        &self,
        id: &str,
        state: types::RequestState,
        reason: &str,
    ) -> Result<(), Status> {
        let setter = proto::RequestStateSetter {
            id: id.to_owned(),
            state: state as i32,
            reason: reason.to_owned(),
            ..Default::default()
        };
        lock(&self.inner.store).set_state(Actor::Admin, setter)
    }

    /// Deletes a request; emits a DELETE with a `ResourceHeader`. Plugin data is kept.
    pub fn delete_request(&self, id: &str) -> Result<(), Status> {
        lock(&self.inner.store).delete(Actor::Admin, id)
    }

    /// Expires a request. On the wire this is indistinguishable from deletion.
    pub fn expire_request(&self, id: &str) -> Result<(), Status> {
        self.delete_request(id)
    }

    /// One request by id.
    pub fn request(&self, id: &str) -> Option<types::AccessRequestV3> {
        lock(&self.inner.store).request(id).cloned()
    }

    /// The state of one request (cheap; for `wait_until` predicates).
    pub fn request_state(&self, id: &str) -> Option<types::RequestState> {
        let store = lock(&self.inner.store);
        let spec = store.request(id)?.spec.as_ref()?;
        types::RequestState::try_from(spec.state).ok()
    }

    /// All requests in created order.
    pub fn requests(&self) -> Vec<types::AccessRequestV3> {
        lock(&self.inner.store).all()
    }

    /// Number of stored requests.
    pub fn request_count(&self) -> usize {
        lock(&self.inner.store).len()
    }

    /// One plugin's data on a request (still there after the request is deleted).
    pub fn plugin_data(&self, id: &str, plugin: &str) -> Option<BTreeMap<String, String>> {
        lock(&self.inner.store).plugin_entry(id, plugin)
    }

    /// Replaces one plugin's data on a request unconditionally (an empty map removes it). Fails
    /// with NOT_FOUND if neither the request nor any plugin data for it exists.
    pub fn set_plugin_data(
        &self,
        id: &str,
        plugin: &str,
        data: BTreeMap<String, String>,
    ) -> Result<(), Status> {
        let mut store = lock(&self.inner.store);
        let mut set: HashMap<String, String> = store
            .plugin_entry(id, plugin)
            .unwrap_or_default()
            .into_keys()
            .map(|k| (k, String::new()))
            .collect();
        set.extend(data);
        store.update_plugin_data(
            Actor::Admin,
            types::PluginDataUpdateParams {
                kind: "access_request".to_owned(),
                resource: id.to_owned(),
                plugin: plugin.to_owned(),
                set,
                expect: HashMap::new(),
            },
        )
    }
}
