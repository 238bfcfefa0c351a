//! One attempt of a step that writes to the backend: its write, confirmed through the backend's
//! request status before it counts as done, and what an attempt that ends unconfirmed leaves for
//! the next one (`pipeline::verify`).

use std::cell::{Cell, RefCell};
use std::time::SystemTime;

use tracing::{debug, warn};

use crate::actors::gateway::GatewayError;
use crate::backend::{AlertRef, Operation, Outcome, Processed};
use crate::core::plugin_data::{millis, PluginData, Unconfirmed};
use crate::pipeline::port::{EffectError, Effects};
use crate::pipeline::verify::{self, Found};

/// The attempt in progress: its step, what is known of an earlier unconfirmed attempt, whether
/// it sent a write of its own, and the backend's request id of that write once accepted (kept
/// even if the step is cut short).
pub(crate) struct Attempt {
    pub(crate) key: String,
    pub(crate) unconfirmed: Option<Unconfirmed>,
    pub(crate) request_id: RefCell<String>,
    /// Whether this attempt sent a write (or may have: the call was started).
    pub(crate) sent: Cell<bool>,
    /// No write is sent at or after this moment: the end of the claim, less the margin that
    /// lets a write sent just before it land while the claim still holds. A replica that takes
    /// over an expired claim can then rely on every write of the old holder having been sent
    /// before the claim ended (`pipeline::verify` waits for them to land).
    pub(crate) not_after: SystemTime,
}

impl Attempt {
    /// An attempt of step `key` under a claim whose writes must be sent before `not_after`.
    pub(crate) fn new(
        key: String,
        unconfirmed: Option<Unconfirmed>,
        not_after: SystemTime,
    ) -> Self {
        Self {
            key,
            unconfirmed,
            request_id: RefCell::new(String::new()),
            sent: Cell::new(false),
            not_after,
        }
    }

    /// The unconfirmed write this attempt leaves behind. Its own when it sent one: by request
    /// id when the backend accepted it, else by the time (the alert's notes are read for it).
    /// An earlier write's record, and in particular its request status, says nothing about a
    /// later one: a first note that failed when processed and a second one whose answer was
    /// lost must not be settled by the first one's "failed". Only when this attempt sent
    /// nothing does the earlier record stand.
    pub(crate) fn unconfirmed_now(&self, now: SystemTime) -> Unconfirmed {
        let request_id = self.request_id.borrow().clone();
        match &self.unconfirmed {
            Some(earlier) if !self.sent.get() => earlier.clone(),
            _ => Unconfirmed {
                step: self.key.clone(),
                request_id,
                at_ms: millis(now),
            },
        }
    }

    /// Sends a backend write of this attempt, fenced by the claim: refused (nothing sent) once
    /// `not_after` has passed, however late the process got to run.
    pub(crate) async fn send<E: Effects>(&self, fx: &E, op: Operation) -> Result<Outcome, Failed> {
        if fx.now() >= self.not_after {
            return Err(EffectError::ClaimRanOut {
                step: self.key.clone(),
            }
            .into());
        }
        self.sent.set(true);
        Ok(fx.call(op).await?)
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
        match self.send(fx, op).await? {
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
