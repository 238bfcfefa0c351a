//! The auto-approval step: the policy, the on-call lookups, the review, and the note that
//! explains the decision on the alert (at once when the alert exists; otherwise it waits in the
//! progress for `Step::NoteDecision`, so access never waits for the backend).

use tracing::{error, info, warn};

use crate::core::model::{AccessRequest, Review};
use crate::core::oncall_user::OnCallUser;
use crate::core::plugin_data::{Decision, PluginData};
use crate::core::policy::{self, Verdict};
use crate::core::render;
use crate::pipeline::attempt::{note_once, Attempt, Failed};
use crate::pipeline::error_policy::{self, Class};
use crate::pipeline::port::{EffectError, Effects, ReviewResult};
use crate::pipeline::revoke::{check_shift, ShiftCheck};
use crate::pipeline::settings::{done, Settings};

/// Whether `review` is the daemon's own approval, already explained by the decision note. A
/// review of ours without a recorded approval (the note failed after the review went through)
/// is noted like any other, so the alert never lacks the explanation.
pub(crate) fn is_own_explained(review: &Review, settings: &Settings, data: &PluginData) -> bool {
    !settings.own_user.is_empty()
        && review.author == settings.own_user
        && data.decision == Some(Decision::Approved)
}

/// The auto-approval decision: check the policy, look up who is on call (stopping at the first
/// schedule the requester is on call in), then approve or decline and explain it on the alert.
pub(crate) async fn decide<E: Effects>(
    fx: &E,
    settings: &Settings,
    request: &AccessRequest,
    mut after: PluginData,
    attempt: &Attempt,
) -> Result<PluginData, Failed> {
    let cfg = &settings.auto_approval;
    let id = request.id.as_str();
    let now = fx.now();
    let mut lookups: Vec<(String, Result<Vec<OnCallUser>, String>)> = Vec::new();
    // A lookup the backend refused for good (403, an unknown schedule) is not retried.
    let mut refused = false;
    if let Ok(schedules) = policy::precheck(request, cfg, now) {
        for schedule in schedules {
            let answer = fx.on_call(&schedule).await;
            if let Err(err) = &answer {
                refused |= lookup_refused(err);
            }
            let answer = answer.map_err(|e| match e {
                EffectError::OnCall { source, .. } => source.to_string(),
                other => other.to_string(),
            });
            let matched = matches!(&answer, Ok(users) if policy::match_user(&request.user, users, cfg).is_some());
            lookups.push((schedule, answer));
            if matched {
                break;
            }
        }
    }
    let note = match policy::decide(request, cfg, now, &lookups) {
        Verdict::Approve { schedule, matched } => {
            let reason = policy::approval_reason(&request.user, &schedule, &matched);
            // The shift's end may decline, or plan a revocation (`auto_approval.shift_end`).
            let check = check_shift(
                fx,
                settings,
                request,
                &schedule,
                &matched.backend_id,
                &mut after,
            )
            .await?;
            let (reason, revocation) = match check {
                ShiftCheck::Approve { suffix, revocation } => (reason + &suffix, revocation),
                ShiftCheck::Decline(text) => {
                    after.decision = Some(Decision::Declined);
                    return explain(fx, after, attempt, text).await;
                }
            };
            match fx.submit_review(id, &reason).await {
                Ok(result) => {
                    done!(settings, "Auto-approved the request.", "Would auto-approve the request (dry run).", request_id = id, user = %request.user, schedule = %schedule, rule = matched.rule.as_str());
                    after.decision = Some(Decision::Approved);
                    after.revocation = revocation;
                    match result {
                        ReviewResult::Submitted => reason,
                        ReviewResult::AlreadyDone => format!(
                            "{reason} (Teleport already had this review, or the request was already resolved)"
                        ),
                    }
                }
                // Teleport refuses for good (admin-action MFA, a missing `review_requests`
                // rule): the request needs a human, and the alert says why and what to fix.
                Err(refusal @ EffectError::ReviewRefused { .. }) => {
                    error!(request_id = id, %refusal, "Teleport refused the approving review.");
                    after.decision = Some(Decision::Declined);
                    format!(
                        "Not auto-approved: {} is on call, but Teleport refused the approving review: {refusal}",
                        request.user
                    )
                }
                Err(err) => return Err(err.into()),
            }
        }
        Verdict::Decline(reason) => {
            info!(request_id = id, user = %request.user, %reason, "Declined auto-approval.");
            after.decision = Some(Decision::Declined);
            reason
        }
        Verdict::LookupFailed { errors } => {
            if !refused && after.lookup_failures < cfg.lookup_retries {
                after.lookup_failures += 1;
                let reason = policy::lookup_failed_reason(&errors, None);
                return Err(Failed {
                    keep: Some(after),
                    error: EffectError::LookupsFailed { reason },
                });
            }
            let reason = if refused {
                policy::lookup_failed_reason(&errors, None).replacen(
                    "Not auto-approved yet:",
                    "Not auto-approved:",
                    1,
                ) + " (refused by the backend; not retried)"
            } else {
                policy::lookup_failed_reason(&errors, Some(after.lookup_failures + 1))
            };
            warn!(request_id = id, %reason, "Declined auto-approval: on-call lookups failed.");
            after.decision = Some(Decision::Declined);
            reason
        }
    };
    explain(fx, after, attempt, note).await
}

/// The most characters of a decision's note kept in the progress while it waits for the alert
/// (the policy's texts are a few hundred; lookup errors are cut to fit).
const WAITING_NOTE_MAX: usize = 2_000;

/// Explains the decision recorded in `after`: a note on the alert when its id is known, else
/// the note is kept in the progress and posted by `Step::NoteDecision` once it is.
async fn explain<E: Effects>(
    fx: &E,
    mut after: PluginData,
    attempt: &Attempt,
    note: String,
) -> Result<PluginData, Failed> {
    if after.alert_id.is_empty() {
        after.decision_note = render::truncate(&note, WAITING_NOTE_MAX);
        return Ok(after);
    }
    note_once(fx, &after, attempt, note).await?;
    Ok(after)
}

/// Posts the note of a decision made before the alert existed, once, and clears it.
pub(crate) async fn note_decision<E: Effects>(
    fx: &E,
    data: &PluginData,
    attempt: &Attempt,
) -> Result<PluginData, Failed> {
    note_once(fx, data, attempt, data.decision_note.clone()).await?;
    Ok(PluginData {
        decision_note: String::new(),
        ..data.clone()
    })
}

/// Whether a failed on-call lookup is a final refusal.
fn lookup_refused(err: &EffectError) -> bool {
    match err {
        EffectError::OnCall { source, .. } => error_policy::on_call(source) == Class::Refused,
        other => error_policy::classify(other) == Class::Refused,
    }
}
