//! What a person does by hand with `tsh request create` and `tctl request approve/deny/rm`,
//! over the same gRPC API the daemon uses: for the `request` example and tests against the
//! fake. Not part of the daemon, which never creates, resolves or deletes requests.

use std::collections::BTreeMap;

use crate::core::model::{AccessRequest, RequestState};
use crate::pb;
use crate::teleport::client::TeleportClient;
use crate::teleport::convert;
use crate::teleport::error::{Operation, TeleportError};

/// Why a hand-made request action failed.
#[derive(Debug, thiserror::Error)]
pub enum RequesterError {
    /// Teleport refused to create the request because the *requesting user* may not ask for
    /// a role (or any role): a matter of that user's roles, not of the identity making the
    /// call. Not retryable.
    #[error("Teleport refused the request: {message}; the requesting user's roles must allow it (`allow.request.roles` in one of their roles): ask for a role they may request, or grant it with `tctl edit role/<their role>`")]
    NotRequestable {
        /// Teleport's message, e.g. `user "myuser" can not request role "nope"`.
        message: String,
    },
    /// Anything else, as the daemon classifies it.
    #[error(transparent)]
    Teleport(TeleportError),
}

impl RequesterError {
    fn from_create(error: TeleportError) -> Self {
        match error {
            // Teleport's wording when the requester's roles do not allow the request.
            TeleportError::PermissionDenied { message, .. }
                if message.contains("can not request") =>
            {
                Self::NotRequestable { message }
            }
            other => Self::Teleport(other),
        }
    }
}

impl From<TeleportError> for RequesterError {
    fn from(error: TeleportError) -> Self {
        Self::Teleport(error)
    }
}

/// Request actions as a person (an administrator identity) takes them.
#[derive(Debug, Clone)]
pub struct Requester(pub TeleportClient);

impl Requester {
    /// Creates a pending request for `user` (tests and demos; needs `access_request:create`).
    pub async fn create(
        &self,
        user: &str,
        roles: &[String],
        reason: &str,
    ) -> Result<AccessRequest, RequesterError> {
        let request = AccessRequest {
            id: uuid::Uuid::new_v4().to_string(),
            user: user.to_owned(),
            roles: roles.to_vec(),
            state: RequestState::Pending,
            created: None,
            access_expiry: None,
            max_duration: None,
            request_reason: reason.to_owned(),
            resolve_reason: String::new(),
            system_annotations: BTreeMap::new(),
            reviews: vec![],
            resources: vec![],
        };
        let mut inner = self.0.raw();
        let pb = self
            .0
            .unary(
                Operation::CreateAccessRequest,
                inner.create_access_request_v2(convert::access_request_to_pb(&request)),
            )
            .await
            .map_err(RequesterError::from_create)?;
        convert::access_request_from_pb(pb)
            .map_err(|error| TeleportError::Convert {
                operation: Operation::CreateAccessRequest,
                error,
            })
            .map_err(RequesterError::Teleport)
    }

    /// Sets a request's state directly, bypassing review thresholds (tests and demos; needs
    /// `access_request:update`).
    pub async fn set_state(
        &self,
        id: &str,
        state: RequestState,
        reason: &str,
    ) -> Result<(), RequesterError> {
        let mut inner = self.0.raw();
        let setter = pb::proto::RequestStateSetter {
            id: id.to_owned(),
            state: convert::state_to_pb(state),
            reason: reason.to_owned(),
            ..Default::default()
        };
        self.0
            .unary(
                Operation::SetAccessRequestState,
                inner.set_access_request_state(setter),
            )
            .await
            .map_err(RequesterError::Teleport)
    }

    /// Deletes a request (tests and demos; needs `access_request:delete`).
    pub async fn delete(&self, id: &str) -> Result<(), RequesterError> {
        let mut inner = self.0.raw();
        self.0
            .unary(
                Operation::DeleteAccessRequest,
                inner.delete_access_request(pb::proto::RequestId { id: id.to_owned() }),
            )
            .await
            .map_err(RequesterError::Teleport)
    }
}
