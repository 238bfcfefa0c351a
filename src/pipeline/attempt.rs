//! One attempt of a step that writes to the backend: its write, confirmed through the backend's
//! request status before it counts as done, and what an attempt that ends unconfirmed leaves for
//! the next one (`pipeline::verify`).

use std::cell::RefCell;
use std::time::SystemTime;

use tracing::{debug, warn};

use crate::actors::gateway::GatewayError;
use crate::backend::{AlertRef, Operation, Outcome, Processed};
use crate::core::plugin_data::{millis, PluginData, Unconfirmed};
use crate::pipeline::port::{EffectError, Effects};
use crate::pipeline::verify::{self, Found};

/// The attempt in progress: its step, what is known of an earlier unconfirmed attempt, and the
/// backend's request id of its own write once accepted (kept even if the step is cut short).
pub(crate) struct Attempt {
    pub(crate) key: String,
    pub(crate) unconfirmed: Option<Unconfirmed>,
    pub(crate) request_id: RefCell<String>,
}

impl Attempt {
    /// The unconfirmed write this attempt leaves behind: its own, or the earlier one it could not
    /// settle.
    pub(crate) fn unconfirmed_now(&self, now: SystemTime) -> Unconfirmed {
        let request_id = self.request_id.borrow().clone();
        match &self.unconfirmed {
            Some(earlier) if request_id.is_empty() => earlier.clone(),
            _ => Unconfirmed {
                step: self.key.clone(),
                request_id,
                at_ms: millis(now),
            },
        }
    }

    /// Whether this attempt's write was accepted by the backend (its request id is known).
    pub(crate) fn accepted(&self) -> bool {
        !self.request_id.borrow().is_empty()
    }

    /// Sends an asynchronous write and waits until the backend confirms it was applied.
    pub(crate) async fn write<E: Effects>(
        &self,
        fx: &E,
        op: Operation,
    ) -> Result<Processed, Failed> {
        let endpoint = op.endpoint();
        match fx.call(op).await? {
            Outcome::Accepted { request_id } => {
                *self.request_id.borrow_mut() = request_id.clone();
                Ok(fx.await_request(&request_id).await?)
            }
            other => Err(verify::unexpected(endpoint, &other).into()),
        }
    }
}

/// A failed step: the error, and progress to record anyway when releasing the claim.
pub(crate) struct Failed {
    pub(crate) keep: Option<PluginData>,
    pub(crate) error: EffectError,
}

impl From<EffectError> for Failed {
    fn from(error: EffectError) -> Self {
        Self { keep: None, error }
    }
}

impl From<GatewayError> for Failed {
    fn from(error: GatewayError) -> Self {
        EffectError::from(error).into()
    }
}

/// Posts the note of this attempt's step exactly once: after an unconfirmed attempt, only if the
/// alert does not have it yet. Whether it was posted now (false: it already was, or the alert is
/// gone).
pub(crate) async fn note_once<E: Effects>(
    fx: &E,
    data: &PluginData,
    attempt: &Attempt,
    note: String,
) -> Result<bool, Failed> {
    if let Some(earlier) = &attempt.unconfirmed {
        match verify::noted(fx, &data.alert_id, &attempt.key, earlier).await? {
            Found::Done(_) => {
                debug!(step = %attempt.key, "The note of an unconfirmed attempt is on the alert.");
                return Ok(false);
            }
            Found::AlertGone => {
                warn!(step = %attempt.key, alert_id = %data.alert_id, "The alert was deleted in the backend; the note is dropped.");
                return Ok(false);
            }
            Found::NotDone => {}
        }
    }
    let op = Operation::AddNote {
        alert: AlertRef::Id(data.alert_id.clone()),
        note: verify::with_marker(&note, &attempt.key),
    };
    let processed = attempt.write(fx, op).await?;
    if processed.alert_missing() {
        warn!(step = %attempt.key, alert_id = %data.alert_id, "The alert was deleted in the backend; the note is dropped.");
        return Ok(false);
    }
    if !processed.success {
        return Err(EffectError::Rejected {
            action: "add the note",
            status: processed.status,
        }
        .into());
    }
    Ok(true)
}
