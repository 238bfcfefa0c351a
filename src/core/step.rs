//! The steps a request goes through (`plan` chooses the next one; `revoke` the shift-end ones),
//! in a file of their own so that both can name them without importing each other.

use std::time::SystemTime;

use crate::core::plugin_data::Resolution;

/// The next thing to do for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the request's alert.
    CreateAlert,
    /// Learn the alert's id from the backend's answer to its creation. Notes and close wait for
    /// it: a close processed before its alert's creation would leave the alert open.
    ResolveAlertId,
    /// Decide on auto-approval: the review, and the note that explains it. Made before the
    /// alert exists when nothing was sent for the request yet (access never waits for the
    /// backend); the note then waits in the progress for [`Step::NoteDecision`].
    Decide,
    /// Post the note explaining a decision made before the alert existed.
    NoteDecision,
    /// Post review number `index` (0-based) as a note, or skip it if the daemon wrote it.
    NoteReview {
        /// Index into the request's reviews.
        index: usize,
    },
    /// Close the alert.
    Close {
        /// Why.
        resolution: Resolution,
        /// Teleport's resolve reason (empty for deletions).
        reason: String,
    },
    /// Lock the approved request at `due`, the end of the requester's shift
    /// (`core::revoke`); before then, wait for it.
    Revoke {
        /// When the lock is due.
        due: SystemTime,
    },
    /// Write on the alert, once, that Teleport refused the lock and how to fix it.
    NoteLockRefused,
    /// Write on the alert that the access was revoked at the end of the shift.
    NoteRevoked,
    /// Nothing to do until Teleport says something new.
    Wait,
    /// Nothing will ever be left to do: the request can be forgotten.
    Finished,
}

impl Step {
    /// A stable name for a step that writes to the backend, unique within one request: what an
    /// unconfirmed write is recorded under, and the marker of the note it posts.
    pub fn key(&self) -> Option<String> {
        match self {
            Self::CreateAlert => Some("create".into()),
            // One marker for the decision's note, whichever step posts it.
            Self::Decide | Self::NoteDecision => Some("decision".into()),
            Self::NoteReview { index } => Some(format!("review-{index}")),
            Self::Close { .. } => Some("close".into()),
            Self::Revoke { .. } => Some("revoke".into()),
            Self::NoteLockRefused => Some("revoke-refused".into()),
            Self::NoteRevoked => Some("revoked".into()),
            Self::ResolveAlertId | Self::Wait | Self::Finished => None,
        }
    }
}
