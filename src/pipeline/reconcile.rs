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
//!    applied; only then is it done. The act ends well inside the claim (a fifth of the TTL to
//!    spare), or is cut short, so that no call of ours lands after the claim has passed on.
//! 3. **record**: CAS expecting our claim still in place, writing the result and releasing the
//!    claim.
//!
//! So two replicas never act on the same request at once. The orphan sweep goes through the same
//! steps (it hands the requests it finds gone to the pipeline), so it too waits for a live claim:
//! a create still being retried cannot open a second alert after the sweep closed the first.
//!
//! # What repeating a write does (`backend::Operation` has the details)
//!
//! - The **create** is idempotent while the alert is open (the backend de-duplicates on the
//!   alias), and nobody closes the alert while a create holds the claim.
//! - The **close** is idempotent (closing a closed alert changes nothing and adds no note).
//! - **Notes** are not: each accepted note is one more. Each carries a marker naming its step
//!   (`verify::with_marker`), so the alert's notes say whether it was posted.
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
//! # What a failed request status says
//!
//! `isSuccess:false` is read for what it says. "Alert does not exist" for a **close**: the alert is
//! gone, the request is recorded closed. For a **note**: the alert was deleted in the backend by
//! someone; it is not re-created (that would page the on-call engineers again for an alert a
//! person removed), the note is dropped with a warning and the request moves on. A failed
//! **create** is forgotten and made again. Anything else is a refusal, logged, and the request
//! waits for a change.
//!
//! # Writes to Teleport
//!
//! An ordinary step costs two plugin-data writes (claim and record); learning the alert id costs
//! one (it needs no claim: it only records what the backend says, guarded by the creation it
//! belongs to). Confirming a write costs backend reads only.

use std::cell::RefCell;
use std::time::SystemTime;

use tracing::{debug, info, warn};

use crate::actors::gateway::GatewayError;
use crate::backend::{AlertRef, Operation, Outcome};
use crate::core::model::Snapshot;
use crate::core::plan::{self, Step};
use crate::core::plugin_data::{millis, Claim, PluginData, Unconfirmed};
use crate::core::render;
use crate::pipeline::attempt::{note_once, Attempt, Failed};
use crate::pipeline::decide::{decide, is_own_explained};
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
    let done = |data: PluginData, step: Step, next: Next| Ok(Reconciled { data, step, next });
    match &step {
        Step::Finished => return done(data, step, Next::Finished),
        Step::Wait => return done(data, step, Next::Idle),
        Step::ResolveAlertId => {
            let data = resolve_alert_id(fx, id, data).await?;
            return done(data, step, Next::Continue);
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
    // A claim left in place (its holder died, or could not release it) means its write may have
    // happened: treat it as unconfirmed, so this attempt verifies first.
    let unconfirmed = match (&data.unconfirmed, &data.claim) {
        (Some(u), _) if u.step == key => Some(u.clone()),
        (_, Some(claim)) => Some(Unconfirmed {
            step: key.clone(),
            request_id: String::new(),
            // When the claim was taken.
            at_ms: claim
                .until_ms
                .saturating_sub(settings.claim_ttl.as_millis() as u64),
        }),
        _ => None,
    };
    let mut claimed = PluginData {
        claim: Some(Claim {
            holder: settings.replica.clone(),
            until_ms: millis(now + settings.claim_ttl),
        }),
        ..data.clone()
    };
    if let (Step::CreateAlert, Snapshot::Present(request)) = (&step, snapshot) {
        // Written ahead of the creation: if its answer is lost, the request is still known to
        // maybe have an alert, so resolving it closes the alert by alias
        // (`PluginData::create_attempted`).
        claimed.user = request.user.clone();
    }
    fx.write(id, claimed.encode(), data.expect_exactly())
        .await?;

    // The step must end while the claim holds: once it lapses another replica may act, and a
    // call still being retried here could land after that replica's work, e.g. an alert creation
    // arriving after the close, which makes a second alert. Dropping the step cancels its
    // backend call in flight. Shutdown cuts it short the same way.
    let budget = settings.claim_ttl.saturating_sub(settings.claim_ttl / 5);
    let attempt = Attempt {
        key,
        unconfirmed,
        request_id: RefCell::new(String::new()),
    };
    let work = act(fx, settings, snapshot, &step, &claimed, &attempt);
    let result = tokio::select! {
        result = tokio::time::timeout(budget, work) => match result {
            Ok(result) => result,
            Err(_) => Err(Failed::from(EffectError::StepTimedOut { budget })),
        },
        () = settings.stop.stopped() => Err(Failed::from(EffectError::Cancelled)),
    };
    let after = match result {
        Ok(after) => after,
        Err(Failed { keep, error: err }) => {
            // Release the claim so that no replica waits for it (recording what the failed step
            // asked to keep, such as a failure count, and a write whose outcome is unknown),
            // then report the failure. If the release fails too, the claim simply expires.
            let mut released = PluginData {
                claim: None,
                ..keep.unwrap_or_else(|| claimed.clone())
            };
            // Unconfirmed: the outcome is unknown, or the write was accepted and whatever failed
            // afterwards (e.g. its request status could not be read) says nothing about it.
            if error_policy::classify(&err) == Class::MaybeDone || attempt.accepted() {
                released.unconfirmed = Some(attempt.unconfirmed_now(fx.now()));
            }
            if let Err(release) = fx
                .write(id, released.encode(), claimed.expect_claim())
                .await
            {
                debug!(request_id = id, error = %release, "Could not release the claim.");
            }
            return Err(err);
        }
    };
    let after = PluginData {
        claim: None,
        unconfirmed: None,
        ..after
    };
    fx.write(id, after.encode(), claimed.expect_claim()).await?;
    done(after, step, Next::Continue)
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
            match fx.call(Operation::CreateAlert(payload)).await? {
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
            let verified = match attempt.unconfirmed {
                Some(_) => verify::closed(fx, alert.clone()).await?,
                None => Found::NotDone,
            };
            if verified == Found::NotDone {
                let note = render::resolution_note(*resolution, reason);
                let processed = attempt
                    .write(fx, Operation::CloseAlert { alert, note })
                    .await?;
                if processed.alert_missing() {
                    warn!(request_id = id, alias = %alias, "The alert does not exist any more; recording the request as closed.");
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

/// Learns the alert id of the recorded creation and records it. Needs no claim: it only records
/// what the backend says, guarded by the creation it belongs to.
async fn resolve_alert_id<E: Effects>(
    fx: &E,
    id: &str,
    data: PluginData,
) -> Result<PluginData, EffectError> {
    let alert_id = match fx.await_request(&data.alert_request_id).await {
        Ok(processed) if processed.success => processed.alert_id,
        Ok(processed) => {
            // The creation was processed and failed: forget it, so the alert is created again.
            warn!(request_id = id, status = %processed.status, "The backend failed to create the alert; creating it again.");
            return forget_creation(fx, id, data).await;
        }
        // The backend no longer knows the request: whether the alert exists is read instead.
        Err(EffectError::Backend(GatewayError::UnknownRequest { .. })) => {
            match verify::created(fx, &render::alias(id)).await? {
                Found::Done(Some(alert_id)) => alert_id,
                _ => {
                    warn!(request_id = id, "The backend does not know the alert's creation and has no such alert; creating it again.");
                    return forget_creation(fx, id, data).await;
                }
            }
        }
        Err(err) => return Err(err),
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
