//! Locks on access requests (teleport-wire.md §9): the way to end access that was granted,
//! since an approved request cannot be shortened. A child of `client`, so that it uses the
//! client's connection and call timeout.
//!
//! Groundwork for issue 12: nothing creates locks yet. Refusals are
//! [`TeleportError::PermissionDenied`] (the missing `lock` rule, named in the message) or
//! [`TeleportError::MfaRequired`] (admin-action MFA, with the identity to use instead): both
//! answer `true` to [`TeleportError::is_refusal`] and `false` to `is_retryable`.

use std::time::SystemTime;

use super::TeleportClient;
use crate::core::shift::lock_name;
use crate::pb;
use crate::teleport::convert::{time_from_pb, time_to_pb};
use crate::teleport::error::{Operation, TeleportError};

/// Teleport's resource kind and version of locks.
pub const LOCK_KIND: &str = "lock";
const LOCK_VERSION: &str = "v2";

/// A lock whose target is one access request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLock {
    /// The lock's name; [`RequestLock::for_request`] makes it deterministic.
    pub name: String,
    /// The access request it targets; empty for a lock read back that targets something else.
    pub request_id: String,
    /// What the locked-out user is shown.
    pub message: String,
    /// When the lock stops applying (at or after the access expiry, so locks do not pile up);
    /// `None` means never.
    pub expires: Option<SystemTime>,
    /// Set by the server: when it was created (absent when sending).
    pub created_at: Option<SystemTime>,
    /// Set by the server: who created it (empty when sending).
    pub created_by: String,
}

impl RequestLock {
    /// The lock that ends `request_id`'s access, named by [`lock_name`] so every replica and
    /// every retry upserts the same one.
    pub fn for_request(request_id: &str, message: &str, expires: Option<SystemTime>) -> Self {
        RequestLock {
            name: lock_name(request_id),
            request_id: request_id.to_owned(),
            message: message.to_owned(),
            expires,
            created_at: None,
            created_by: String::new(),
        }
    }

    fn to_pb(&self) -> pb::types::LockV2 {
        pb::types::LockV2 {
            kind: LOCK_KIND.to_owned(),
            sub_kind: String::new(),
            version: LOCK_VERSION.to_owned(),
            metadata: Some(pb::types::Metadata {
                name: self.name.clone(),
                ..Default::default()
            }),
            spec: Some(pb::types::LockSpecV2 {
                target: Some(pb::types::LockTarget {
                    access_request: self.request_id.clone(),
                    ..Default::default()
                }),
                message: self.message.clone(),
                expires: time_to_pb(self.expires),
                created_at: time_to_pb(self.created_at),
                created_by: self.created_by.clone(),
            }),
        }
    }

    fn from_pb(lock: pb::types::LockV2) -> Self {
        let spec = lock.spec.unwrap_or_default();
        RequestLock {
            name: lock.metadata.map(|m| m.name).unwrap_or_default(),
            request_id: spec.target.map(|t| t.access_request).unwrap_or_default(),
            message: spec.message,
            expires: time_from_pb(spec.expires.as_ref()),
            created_at: time_from_pb(spec.created_at.as_ref()),
            created_by: spec.created_by,
        }
    }
}

impl TeleportClient {
    /// Creates or replaces the lock (`UpsertLock`; needs `lock` `create` and `update`). The
    /// lock applies from the moment it exists.
    pub async fn upsert_lock(&self, lock: &RequestLock) -> Result<(), TeleportError> {
        if lock.name.is_empty() || lock.request_id.is_empty() {
            return Err(TeleportError::Config(
                "a lock needs a name and an access request to target; build it with RequestLock::for_request".into(),
            ));
        }
        let mut inner = self.inner.clone();
        self.unary(Operation::UpsertLock, inner.upsert_lock(lock.to_pb()))
            .await
    }

    /// The lock named `name` (`GetLock`; needs `lock` `read`); [`TeleportError::NotFound`]
    /// when there is none.
    pub async fn get_lock(&self, name: &str) -> Result<RequestLock, TeleportError> {
        let mut inner = self.inner.clone();
        let request = pb::proto::GetLockRequest {
            name: name.to_owned(),
        };
        let lock = self
            .unary(Operation::GetLock, inner.get_lock(request))
            .await?;
        Ok(RequestLock::from_pb(lock))
    }

    /// Deletes the lock named `name` (`DeleteLock`; needs `lock` `delete`), giving the access
    /// back; [`TeleportError::NotFound`] when there is none.
    pub async fn delete_lock(&self, name: &str) -> Result<(), TeleportError> {
        let mut inner = self.inner.clone();
        let request = pb::proto::DeleteLockRequest {
            name: name.to_owned(),
        };
        self.unary(Operation::DeleteLock, inner.delete_lock(request))
            .await
    }
}
