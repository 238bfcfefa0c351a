//! Locks in the fake (teleport-wire.md §9): `UpsertLock`, `GetLock` and `DeleteLock` with
//! Teleport's RBAC check on the `lock` resource, the admin-action MFA refusal as a knob, and a
//! query telling whether a request's access is revoked by a lock targeting it.
//!
//! What it simplifies: only locks targeting an access request revoke anything here (a lock on a
//! user or role is recorded but not applied to requests), and there is no lock watcher.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tonic::Status;

use super::store::ts;
use super::{lock, FakeTeleport, Inner};
use crate::pb::types;
use crate::teleport::convert::time_from_pb;

const KIND_LOCK: &str = "lock";

/// The fake's locks, by name.
pub(crate) type Locks = BTreeMap<String, types::LockV2>;

/// Teleport's check: every verb on `lock`, with deny rules winning.
fn check(inner: &Inner, user: &str, verbs: &[&str]) -> Result<(), Status> {
    let store = lock(&inner.store);
    for verb in verbs {
        if !store.dir.allows(user, KIND_LOCK, verb) {
            return Err(Status::permission_denied(format!(
                "access denied to perform action {verb:?} on {KIND_LOCK:?}"
            )));
        }
    }
    Ok(())
}

fn not_found(name: &str) -> Status {
    Status::not_found(format!("lock {name:?} is not found"))
}

fn target_is_empty(t: &types::LockTarget) -> bool {
    [
        &t.user,
        &t.role,
        &t.login,
        &t.node,
        &t.mfa_device,
        &t.windows_desktop,
        &t.access_request,
        &t.device,
        &t.server_id,
    ]
    .iter()
    .all(|f| f.is_empty())
}

/// `UpsertLock`: RBAC (`create` and `update`, as older servers check in `UpsertLock`), then
/// the admin-action MFA requirement if switched on, then validation; the server fills in
/// `created_at` and `created_by`.
pub(super) fn upsert(inner: &Inner, user: &str, mut new: types::LockV2) -> Result<(), Status> {
    check(inner, user, &["create", "update"])?;
    if inner.mfa_required_for_locks.load(Ordering::SeqCst) {
        return Err(Status::permission_denied(
            "admin-level API request requires MFA verification",
        ));
    }
    let name = new
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    if name.is_empty() {
        return Err(Status::invalid_argument("missing parameter Name"));
    }
    let spec = new.spec.get_or_insert_with(Default::default);
    if spec.target.as_ref().is_none_or(target_is_empty) {
        return Err(Status::invalid_argument(
            "at least one target field must be set",
        ));
    }
    if spec.created_at.is_none() {
        spec.created_at = Some(ts(SystemTime::now()));
    }
    spec.created_by = user.to_owned();
    new.kind = KIND_LOCK.to_owned();
    if new.version.is_empty() {
        new.version = "v2".to_owned();
    }
    lock(&inner.locks).insert(name, new);
    inner.changed.notify_waiters();
    Ok(())
}

/// `GetLock`: needs `lock` `read`.
pub(super) fn get(inner: &Inner, user: &str, name: &str) -> Result<types::LockV2, Status> {
    check(inner, user, &["read"])?;
    lock(&inner.locks)
        .get(name)
        .cloned()
        .ok_or_else(|| not_found(name))
}

/// `DeleteLock`: needs `lock` `delete`.
pub(super) fn delete(inner: &Inner, user: &str, name: &str) -> Result<(), Status> {
    check(inner, user, &["delete"])?;
    lock(&inner.locks)
        .remove(name)
        .map(|_| inner.changed.notify_waiters())
        .ok_or_else(|| not_found(name))
}

fn in_force_at(l: &types::LockV2, at: SystemTime) -> bool {
    let expires = l
        .spec
        .as_ref()
        .and_then(|s| time_from_pb(s.expires.as_ref()));
    expires.is_none_or(|e| at < e)
}

fn targets_request(l: &types::LockV2, request_id: &str) -> bool {
    l.spec
        .as_ref()
        .and_then(|s| s.target.as_ref())
        .is_some_and(|t| t.access_request == request_id)
}

impl FakeTeleport {
    /// Turns the admin-action MFA requirement for lock writes on or off (newer servers may
    /// treat them as admin actions, teleport-wire.md §9).
    pub fn set_mfa_required_for_locks(&self, required: bool) {
        self.inner
            .mfa_required_for_locks
            .store(required, Ordering::SeqCst);
    }

    /// Every lock, by name.
    pub fn locks(&self) -> Vec<types::LockV2> {
        lock(&self.inner.locks).values().cloned().collect()
    }

    /// The lock named `name`, if any.
    pub fn lock_named(&self, name: &str) -> Option<types::LockV2> {
        lock(&self.inner.locks).get(name).cloned()
    }

    /// Whether a lock in force at `at` targets the request: its access is revoked then.
    pub fn access_revoked_at(&self, request_id: &str, at: SystemTime) -> bool {
        lock(&self.inner.locks)
            .values()
            .any(|l| targets_request(l, request_id) && in_force_at(l, at))
    }

    /// [`FakeTeleport::access_revoked_at`] now.
    pub fn access_revoked(&self, request_id: &str) -> bool {
        self.access_revoked_at(request_id, SystemTime::now())
    }
}
