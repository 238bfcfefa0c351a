//! One step of one request: read its progress, ask the planner what to do, do it under a claim,
//! and record the result by compare-and-swap.
//!
//! # The protocol
//!
//! Every side effect follows the same claim → act → record shape:
//!
//! 1. **claim**: CAS expecting exactly the progress we planned from, setting a claim with a
//!    deadline. A lost race (`Conflict`) means someone else moved first: re-read and re-plan.
//! 2. **act**: the backend call (or Teleport review), **confirmed**: an asynchronous write
//!    (Opsgenie answers 202) is followed through its request status until the backend says it was
//!    applied; only then is it done. Then the planner is asked again, and while the next step is
//!    one that writes to the backend (or learns the alert id), it is done under the same claim:
//!    a claim covers a *run* of steps. Every write is **fenced** by the claim: it is not sent
//!    once the claim, less a fifth of its TTL, has run out (`Attempt::send`), and the run is cut
//!    short before the claim ends, so no write of ours is sent after the claim has passed on.
//! 3. **record**: CAS expecting our claim still in place, writing the run's result and releasing
//!    the claim.
//!
//! So two replicas never act on the same request at once. The orphan sweep goes through the same
//! steps (it hands the requests it finds gone to the pipeline), so it too waits for a live claim:
//! a create still being retried cannot open a second alert after the sweep closed the first.
//!
//! # What repeating a write does (`backend::Operation` has the details)
//!
//! - The **create** is idempotent while the alert is open (the backend de-duplicates on the
//!   alias), and nobody closes the alert while a create holds the claim.
//! - **Notes** are not: each accepted note is one more. Each carries a marker naming its step
//!   (`verify::with_marker`), so the alert's notes say whether it was posted.
//! - The **close** carries the resolution's note; whether closing a closed alert adds that note
//!   again is not documented, so a close of unknown outcome is verified like a note (its request
//!   status, else the alert's state, and "still open" counts only once it had time to apply).
//! - The **review** (auto-approval) is idempotent in Teleport: a second review by the same user
//!   is refused, which reads as "already done".
//!
//! Once the alert id is known, notes and close address the alert by id.
//!
//! # Unknown outcomes
//!
//! A write whose answer was lost or unreadable (a 5xx or timeout after it was sent, a 2xx that is
//! not the API's), that was not confirmed before the step ended, or whose step was cut short by
//! shutdown may have happened or not. It is not a failure: the claim is released with the write
//! recorded as unconfirmed (in the same write, so it costs nothing extra), and it is retried with
//! backoff. A claim found expired means the same: its holder died mid-step. Either way the next
//! attempt first finds out (`pipeline::verify`), then records the write or does it again.
//!
//! The mark names the latest write that may have happened: an attempt that sent a write marks
//! that write (its request id if accepted, else the time), never an earlier one whose request
//! status said "failed". It is cleared only by a record of the step it names; a mark of another
//! step, or a claim taken over (its holder's run may hold steps this run did not plan, because
//! replicas hold snapshots of different ages), leaves `*`: every later step verifies before it
//! writes. A note not found among the alert's notes is taken for absent only
//! `verify::NOTE_SETTLE` after the last moment it can have been sent (the mark's time, or the end
//! of a claim left over).
//!
//! # What a failed request status says
//!
//! `isSuccess:false` is read for what it says. "Alert does not exist" for a **close**: the alert is
//! gone, the request is recorded closed; "Alert is already closed": what the close wanted holds,
//! recorded closed too. For a **note**: the alert was deleted in the backend by
//! someone; it is not re-created (that would page the on-call engineers again for an alert a
//! person removed), the note is dropped with a warning and the request moves on. A failed
//! **create** is forgotten and made again. Anything else is a refusal, logged, and the request
//! waits for a change.
//!
//! # Writes to Teleport
//!
//! A run costs two plugin-data writes (claim and record), whatever it does. Which claims are
//! needed for which side effects:
//!
//! - The **create** is idempotent on the backend only while the alert is open: one landing
//!   after the close opens a second alert. So it is claimed (the claim also writes the requester
//!   ahead, so that a creation whose answer is lost is still closed by alias), and the close,
//!   also under a claim, cannot overlap it. Its alert id is learnt within the same run (the
//!   request status is polled until the fence), so the record carries the id: no write of its
//!   own for the id, unless the backend is slower than the claim allows (then a claim-free
//!   step records it, guarded by the creation it belongs to).
//! - The **decision** comes first when auto-approval is on and nothing was sent for the request
//!   yet (`core::plan`): its review goes out before the create, so access never waits for the
//!   backend, and its note waits in the progress until the alert's id is known, later in the
//!   same run or, when the backend refuses writes, in a later one. Since that run creates, its
//!   claim writes the requester ahead like a creation's.
//! - **Notes** are not idempotent: two replicas posting at once would both post, so they need
//!   the claim's exclusion. The review's note and the close (idempotent, by id) of a request
//!   that is resolved by that review share one run.
//! - The **close**'s record is the run's record.
//!
//! So an ordinary life (created, one approving review that resolves it, approved) costs 4
//! writes, with auto-approval or without: claim and record of the creation run, claim and record
//! of the resolution run. A third write could only be saved by creating without a claim, which
//! gives up the exclusion between a create and a close (a second alert) and the write-ahead of
//! the requester (an alert left open when its creator dies before recording it). Confirming a
//! write costs backend reads only.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::SystemTime;

use tracing::{debug, info, warn};

use crate::actors::gateway::GatewayError;
use crate::backend::{AlertRef, Operation, Outcome};
use crate::core::model::Snapshot;
use crate::core::plan::{self, Step};
use crate::core::plugin_data::{millis, Claim, PluginData, Unconfirmed};
use crate::core::render;
use crate::pipeline::attempt::{note_once, Attempt, Failed};
use crate::pipeline::decide::{decide, is_own_explained, note_decision};
use crate::pipeline::error_policy::{self, Class};
use crate::pipeline::verify::{self, Found};

pub use crate::pipeline::port::{EffectError, Effects, ReviewResult, MFA_REQUIRED_FIX};
use crate::pipeline::settings::done;
pub use crate::pipeline::settings::Settings;

/// What happened, and what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A step was done; call again at once.
    Continue,
    /// Nothing to do until Teleport says something new.
    Idle,
    /// Another replica holds the request; try again at this time.
    WaitUntil(SystemTime),
    /// The next step falls due at this time (a revocation at shift end): run again then.
    DueAt(SystemTime),
    /// Nothing is ever left to do for this request.
    Finished,
}

/// The result of one reconcile step: the progress as now stored, and what to do next.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// Progress after the step (what is in Teleport, as far as we know).
    pub data: PluginData,
    /// The step that was planned.
    pub step: Step,
    /// The steps performed under the claim, in order (empty when none was: waiting, finished,
    /// held by another replica). A run may do several (see "Writes to Teleport").
    pub performed: Vec<Step>,
    /// What the caller should do next.
    pub next: Next,
}

/// Plans and performs one step for `snapshot`. `cached` is the progress as this replica last
/// stored it; `None` reads it from Teleport. On [`EffectError::Conflict`] the caller must drop
/// its cache and call again.
pub async fn step<E: Effects>(
    fx: &E,
    settings: &Settings,
    snapshot: &Snapshot,
    cached: Option<PluginData>,
) -> Result<Reconciled, EffectError> {
    let id = snapshot.id();
    let data = match cached {
        Some(data) => data,
        None => fx.read(id).await?,
    };
    let step = plan::next_step(snapshot, &data, settings.plan());
    let done = |data: PluginData, step: Step, next: Next| {
        Ok(Reconciled {
            data,
            step,
            performed: Vec::new(),
            next,
        })
    };
    match &step {
        Step::Finished => return done(data, step, Next::Finished),
        Step::Wait => return done(data, step, Next::Idle),
        Step::ResolveAlertId => {
            let data = resolve_alert_id(fx, id, data).await?;
            return Ok(Reconciled {
                data,
                performed: vec![step.clone()],
                step,
                next: Next::Continue,
            });
        }
        _ => {}
    }
    if let Some(due) = crate::pipeline::revoke::due_later(&step, fx.now()) {
        return done(data, step, Next::DueAt(due));
    }

    let now = fx.now();
    if let Some(until) = plan::held_by_other(&data, &settings.replica, now) {
        debug!(
            request_id = id,
            "Another replica is acting on the request; waiting."
        );
        return done(data, step, Next::WaitUntil(until));
    }
    let key = step.key().unwrap_or_default();
    let unconfirmed = unconfirmed_for(&key, &data);
    let mut claimed = PluginData {
        claim: Some(Claim {
            holder: settings.replica.clone(),
            until_ms: millis(now + settings.claim_ttl),
        }),
        ..data.clone()
    };
    let may_create = match step {
        Step::CreateAlert => true,
        // A decision made before the alert is followed by its creation in the same run.
        Step::Decide => !data.alert_created(),
        _ => false,
    };
    if let (true, Snapshot::Present(request)) = (may_create, snapshot) {
        // Written ahead of the creation: if its answer is lost, the request is still known to
        // maybe have an alert, so resolving it closes the alert by alias
        // (`PluginData::create_attempted`).
        claimed.user = request.user.clone();
    }
    fx.write(id, claimed.encode(), data.expect_exactly())
        .await?;

    // The run must end while the claim holds: once it lapses another replica may act, and a
    // call still being retried here could land after that replica's work, e.g. an alert creation
    // arriving after the close, which makes a second alert. Writes are fenced at `not_after`
    // (`Attempt::send`); the whole run is cut short a little later, before the claim ends.
    // Dropping the run cancels its backend call in flight. Shutdown cuts it short the same way.
    let budget = settings.claim_ttl.saturating_sub(settings.claim_ttl / 10);
    let not_after = now + settings.claim_ttl.saturating_sub(settings.claim_ttl / 5);
    let run = Run {
        progress: RefCell::new(claimed.clone()),
        performed: RefCell::new(Vec::new()),
        attempt: RefCell::new(Rc::new(Attempt::new(key, unconfirmed, not_after))),
    };
    let work = run.perform(fx, settings, snapshot, step.clone(), &data, not_after);
    let result = tokio::select! {
        result = tokio::time::timeout(budget, work) => match result {
            Ok(result) => result,
            Err(_) => Err(Failed::from(EffectError::StepTimedOut { budget })),
        },
        () = settings.stop.stopped() => Err(Failed::from(EffectError::Cancelled)),
    };
    let attempt = Rc::clone(&run.attempt.borrow());
    if let Err(Failed { keep, error: err }) = result {
        // Release the claim so that no replica waits for it (recording what the steps before
        // did, what the failed step asked to keep, such as a failure count, and a write whose
        // outcome is unknown), then report the failure. If the release fails too, the claim
        // simply expires.
        let mut released = PluginData {
            claim: None,
            ..keep.unwrap_or_else(|| run.progress.borrow().clone())
        };
        // Unconfirmed: the outcome is unknown, or the write was accepted and whatever failed
        // afterwards (e.g. its request status could not be read) says nothing about it.
        if error_policy::classify(&err) == Class::MaybeDone || attempt.accepted() {
            let now_unconfirmed = attempt.unconfirmed_now(fx.now());
            released.unconfirmed = Some(Unconfirmed::merge(
                released.unconfirmed.as_ref(),
                now_unconfirmed,
            ));
        }
        released.unconfirmed = taken_over(&data, released.unconfirmed.take());
        if let Err(release) = fx
            .write(id, released.encode(), claimed.expect_claim())
            .await
        {
            debug!(request_id = id, error = %release, "Could not release the claim.");
        }
        return Err(err);
    }
    let mut after = PluginData {
        claim: None,
        ..run.progress.into_inner()
    };
    after.unconfirmed = taken_over(&data, after.unconfirmed.take());
    fx.write(id, after.encode(), claimed.expect_claim()).await?;
    Ok(Reconciled {
        data: after,
        step,
        performed: run.performed.into_inner(),
        next: Next::Continue,
    })
}

/// The most steps one claim covers.
const MAX_RUN: usize = 16;

/// The steps done under one claim: the progress so far (with the claim) and the attempt of the
/// step in progress. Kept outside the future that performs them, so that a run cut short still
/// records what it did.
struct Run {
    progress: RefCell<PluginData>,
    performed: RefCell<Vec<Step>>,
    attempt: RefCell<Rc<Attempt>>,
}

impl Run {
    /// Performs `first`, then every step the planner asks for next while it is one that writes
    /// to the backend or learns the alert id, under the claim already taken.
    ///
    /// One claim for a run of steps is what keeps Teleport's writes few (see "Writes to
    /// Teleport" above): it is exclusive for the whole run, so a step after the first needs no
    /// claim of its own, and the run's progress is recorded once, at the end. A claim taken
    /// over from a holder that died (`original` still holds it) means that holder may have done
    /// any step of the run, not only the first: every step then verifies before it writes.
    async fn perform<E: Effects>(
        &self,
        fx: &E,
        settings: &Settings,
        snapshot: &Snapshot,
        first: Step,
        original: &PluginData,
        not_after: SystemTime,
    ) -> Result<(), Failed> {
        let mut step = first;
        for done in 0..MAX_RUN {
            if done > 0 {
                let key = step.key().unwrap_or_default();
                *self.attempt.borrow_mut() = Rc::new(Attempt::new(
                    key.clone(),
                    unconfirmed_for(&key, original),
                    not_after,
                ));
            }
            let current = self.progress.borrow().clone();
            let after = if step == Step::ResolveAlertId {
                // Wait for the id only as long as writes may still be sent under the claim;
                // past that, the run ends and the id is learnt by a step of its own.
                let left = not_after.duration_since(fx.now()).unwrap_or_default();
                match tokio::time::timeout(left, learn_alert_id(fx, snapshot.id(), &current)).await
                {
                    Ok(Ok(Some(alert_id))) => PluginData {
                        alert_id,
                        ..current
                    },
                    Ok(Ok(None)) => PluginData {
                        alert_request_id: String::new(),
                        ..current
                    },
                    Ok(Err(err)) => return Err(err.into()),
                    Err(_) => return Ok(()),
                }
            } else {
                let attempt = Rc::clone(&self.attempt.borrow());
                act(fx, settings, snapshot, &step, &current, &attempt).await?
            };
            // The step's write is confirmed (or found done): its mark, and only its mark, is
            // cleared. A mark of another step stays until that step is done.
            let key = step.key().unwrap_or_default();
            let mut after = after;
            if after.unconfirmed.as_ref().is_some_and(|u| u.step == key) {
                after.unconfirmed = None;
            }
            *self.progress.borrow_mut() = after;
            self.performed.borrow_mut().push(step.clone());
            step = plan::next_step(snapshot, &self.progress.borrow(), settings.plan());
            let next_needs_claim = step == Step::ResolveAlertId || step.key().is_some();
            if !next_needs_claim || fx.now() >= not_after {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Performs `step` (which needs the claim) and returns the progress to record.
async fn act<E: Effects>(
    fx: &E,
    settings: &Settings,
    snapshot: &Snapshot,
    step: &Step,
    data: &PluginData,
    attempt: &Attempt,
) -> Result<PluginData, Failed> {
    let id = snapshot.id();
    let alias = render::alias(id);
    let mut after = data.clone();
    match (step, snapshot) {
        (Step::CreateAlert, Snapshot::Present(request)) => {
            after.user = request.user.clone();
            after.roles = request.roles.clone();
            after.created = request.created;
            after.request_reason = render::truncate(&request.request_reason, 1_000);
            if attempt.unconfirmed.is_some() {
                if let Found::Done(Some(alert_id)) = verify::created(fx, &alias).await? {
                    info!(request_id = id, alias = %alias, alert_id = %alert_id, "The alert of an unconfirmed creation exists; recording it.");
                    after.alert_id = alert_id;
                    return Ok(after);
                }
            }
            let payload = render::alert(request, &settings.alert);
            match attempt.send(fx, Operation::CreateAlert(payload)).await? {
                Outcome::Accepted { request_id } => {
                    done!(settings, "Created the alert.", "Would create the alert (dry run).", request_id = id, alias = %alias, backend_request_id = %request_id);
                    after.alert_request_id = request_id;
                }
                other => return Err(verify::unexpected("create_alert", &other).into()),
            }
        }
        (Step::Decide, Snapshot::Present(request)) => {
            return decide(fx, settings, request, after, attempt).await;
        }
        (Step::NoteDecision, _) => return note_decision(fx, data, attempt).await,
        (Step::NoteReview { index }, Snapshot::Present(request)) => {
            let review = request.reviews.get(*index);
            if let Some(review) = review.filter(|r| is_own_explained(r, settings, data)) {
                debug!(request_id = id, reviewer = %review.author, "Our own review is explained by the decision note; no review note.");
            } else if let Some(review) = review {
                let note = render::review_note(review);
                if note_once(fx, data, attempt, note).await? {
                    done!(settings, "Posted a review note.", "Would post a review note (dry run).", request_id = id, alias = %alias, reviewer = %review.author);
                }
            }
            after.reviews_count = index + 1;
        }
        (Step::Close { resolution, reason }, _) => {
            let alert = if data.alert_id.is_empty() {
                // Never learnt (the creation's answer was lost): the alias is all there is.
                AlertRef::Alias(alias.clone())
            } else {
                AlertRef::Id(data.alert_id.clone())
            };
            let verified = match &attempt.unconfirmed {
                Some(earlier) => verify::closed(fx, alert.clone(), &attempt.key, earlier).await?,
                None => Found::NotDone,
            };
            if verified == Found::NotDone {
                let note = render::resolution_note(*resolution, reason);
                let processed = attempt
                    .write(fx, Operation::CloseAlert { alert, note })
                    .await?;
                if processed.alert_missing() {
                    warn!(request_id = id, alias = %alias, "The alert does not exist any more; recording the request as closed.");
                } else if processed.already_closed() {
                    debug!(request_id = id, alias = %alias, "The alert was closed already; recording the request as closed.");
                } else if !processed.success {
                    return Err(EffectError::Rejected {
                        action: "close the alert",
                        status: processed.status,
                    }
                    .into());
                }
            }
            done!(settings, "Closed the alert.", "Would close the alert (dry run).", request_id = id, alias = %alias, resolution = resolution.as_str());
            after.resolution = Some(*resolution);
            after.resolve_reason = render::truncate(reason, 1_000);
        }
        (
            Step::Revoke { .. } | Step::NoteLockRefused | Step::NoteRevoked,
            Snapshot::Present(request),
        ) => {
            return crate::pipeline::revoke::act(fx, settings, request, step, data, attempt).await;
        }
        (step, _) => {
            return Err(EffectError::Unexpected {
                endpoint: "reconcile",
                outcome: format!("step {step:?} is not implemented for this snapshot"),
            }
            .into())
        }
    }
    Ok(after)
}

/// What is unknown about step `key`'s write, given the stored progress.
///
/// A claim left in place (its holder died, was cut off, or could not release it) outranks
/// anything recorded before it: its holder may have sent the step's write at any moment until
/// the claim ended (writes are fenced by the claim, `Attempt::send`), after any earlier attempt
/// whose record is stored, so an earlier request status says nothing about it. Only the backend
/// can tell: the alert by alias, the alert's notes (once the last moment of the claim is
/// [`verify::NOTE_SETTLE`] behind), the alert's state. Without a claim left over, the record
/// an attempt left when it released its claim says what it sent.
pub(crate) fn unconfirmed_for(key: &str, data: &PluginData) -> Option<Unconfirmed> {
    let earlier = data.unconfirmed.as_ref().filter(|u| u.covers(key));
    match (&data.claim, earlier) {
        (Some(claim), earlier) => Some(Unconfirmed {
            step: key.to_owned(),
            request_id: String::new(),
            at_ms: claim.until_ms.max(earlier.map_or(0, |u| u.at_ms)),
        }),
        (None, Some(u)) => Some(u.clone()),
        (None, None) => None,
    }
}

/// What a run that started from `original` leaves as unconfirmed, given what it would record.
///
/// A claim left over in `original` was held by a replica that may have done any step of its
/// own run, and that run may hold steps this one did not plan: its snapshot may have been older
/// or newer (a pending request decides, a resolved one notes reviews and closes). This run
/// verified each step it did; the others may still be done and unrecorded, so the record says
/// so ([`Unconfirmed::ANY`]): every later step verifies before it writes.
fn taken_over(original: &PluginData, unconfirmed: Option<Unconfirmed>) -> Option<Unconfirmed> {
    match &original.claim {
        Some(claim) => Some(Unconfirmed::any(
            claim
                .until_ms
                .max(unconfirmed.as_ref().map_or(0, |u| u.at_ms)),
        )),
        None => unconfirmed,
    }
}

/// Learns the alert id of the recorded creation and records it. Needs no claim: it only records
/// what the backend says, guarded by the creation it belongs to.
async fn resolve_alert_id<E: Effects>(
    fx: &E,
    id: &str,
    data: PluginData,
) -> Result<PluginData, EffectError> {
    let Some(alert_id) = learn_alert_id(fx, id, &data).await? else {
        return forget_creation(fx, id, data).await;
    };
    fx.write(
        id,
        PluginData::set_alert_id(&alert_id),
        data.expect_alert_id_unset(),
    )
    .await?;
    debug!(request_id = id, alert_id = %alert_id, "Recorded the alert id.");
    Ok(PluginData { alert_id, ..data })
}

/// The alert id of the recorded creation, from its request status (or, when the backend no
/// longer knows the request, from the alert by alias); `None` when the creation did not happen
/// and must be made again.
async fn learn_alert_id<E: Effects>(
    fx: &E,
    id: &str,
    data: &PluginData,
) -> Result<Option<String>, EffectError> {
    match fx.await_request(&data.alert_request_id).await {
        Ok(processed) if processed.success => Ok(Some(processed.alert_id)),
        Ok(processed) => {
            warn!(request_id = id, status = %processed.status, "The backend failed to create the alert; creating it again.");
            Ok(None)
        }
        // The backend no longer knows the request: whether the alert exists is read instead.
        Err(EffectError::Backend(GatewayError::UnknownRequest { .. })) => {
            match verify::created(fx, &render::alias(id)).await? {
                Found::Done(Some(alert_id)) => Ok(Some(alert_id)),
                _ => {
                    warn!(request_id = id, "The backend does not know the alert's creation and has no such alert; creating it again.");
                    Ok(None)
                }
            }
        }
        Err(err) => Err(err),
    }
}

/// Forgets a creation that did not happen, so that the alert is created again.
async fn forget_creation<E: Effects>(
    fx: &E,
    id: &str,
    data: PluginData,
) -> Result<PluginData, EffectError> {
    fx.write(
        id,
        PluginData::forget_creation(),
        data.expect_alert_id_unset(),
    )
    .await?;
    Ok(PluginData {
        alert_request_id: String::new(),
        ..data
    })
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
pub(crate) mod tests;
