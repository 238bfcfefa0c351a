//! Access that ends with the shift: the shift check at approval (`auto_approval.shift_end`) and
//! the steps that revoke at shift end (`core::revoke` plans them). Each runs inside a claimed
//! step of `pipeline::reconcile`, so one replica performs it, once, whenever it falls due.

use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use crate::core::model::AccessRequest;
use crate::core::plan::Step;
use crate::core::plugin_data::PluginData;
use crate::core::revoke::{self, Revocation, RevokeState};
use crate::core::shift::lock_name;
use crate::core::shift_policy::{self, rfc3339, Recheck, ShiftEndMode, ShiftVerdict};
use crate::pipeline::attempt::{note_once, Attempt, Failed};
use crate::pipeline::port::{EffectError, Effects};
use crate::pipeline::settings::{done, Settings};
use crate::teleport::client::RequestLock;

/// What the shift says about an approval the rest of the policy would make.
pub(crate) enum ShiftCheck {
    /// Approve: `suffix` goes after the approval's reason; `revocation` is planned with it.
    Approve {
        /// Appended to the reason.
        suffix: String,
        /// The lock to make at shift end, if the access outlasts the shift.
        revocation: Option<Revocation>,
    },
    /// Decline, with the text for the alert.
    Decline(String),
}

/// Judges an approval of `request` (whose requester is `person` on call in `schedule`) by the
/// shift's end. A failed timeline lookup is retried like a failed on-call lookup
/// (`auto_approval.lookup_retries`, counted in `after`), then declines: it is never "fine".
pub(crate) async fn check_shift<E: Effects>(
    fx: &E,
    settings: &Settings,
    request: &AccessRequest,
    schedule: &str,
    person: &str,
    after: &mut PluginData,
) -> Result<ShiftCheck, Failed> {
    let cfg = &settings.auto_approval;
    if cfg.shift_end == ShiftEndMode::Ignore {
        return Ok(ShiftCheck::Approve {
            suffix: String::new(),
            revocation: None,
        });
    }
    let now = fx.now();
    let access_end = shift_policy::access_end(request);
    let answer = match access_end {
        // Without an end nothing is looked up: `judge` declines.
        None => Err(String::new()),
        Some(end) => match fx.shift_end(schedule, person, now, end, false).await {
            Ok(found) => Ok(found),
            Err(err) if err.is_retryable() && after.lookup_failures < cfg.lookup_retries => {
                after.lookup_failures += 1;
                return Err(Failed {
                    keep: Some(after.clone()),
                    error: EffectError::LookupsFailed {
                        reason: format!("Not auto-approved yet: {err}"),
                    },
                });
            }
            Err(err) if err.is_retryable() => Err(format!(
                "{err} (gave up after {} attempts)",
                after.lookup_failures + 1
            )),
            Err(err) => Err(format!("{err} (refused; not retried)")),
        },
    };
    let verdict = shift_policy::judge(
        cfg.shift_end,
        cfg.shift_grace,
        &request.user,
        schedule,
        access_end,
        answer,
    );
    Ok(match verdict {
        ShiftVerdict::Approve(suffix) => ShiftCheck::Approve {
            suffix,
            revocation: None,
        },
        ShiftVerdict::ApproveAndRevoke {
            at,
            access_end,
            text,
        } => ShiftCheck::Approve {
            suffix: text,
            revocation: Some(Revocation {
                due: at,
                access_end,
                schedule: schedule.to_owned(),
                person: person.to_owned(),
                state: RevokeState::Planned,
                refusal: String::new(),
                refusal_noted: false,
            }),
        },
        ShiftVerdict::Decline(text) => {
            info!(request_id = %request.id, user = %request.user, reason = %text, "Declined auto-approval: the access would outlast the shift.");
            ShiftCheck::Decline(text)
        }
    })
}

/// Performs a revocation step (`Step::Revoke`, `NoteLockRefused`, `NoteRevoked`) for an
/// approved `request`; the progress to record.
pub(crate) async fn act<E: Effects>(
    fx: &E,
    settings: &Settings,
    request: &AccessRequest,
    step: &Step,
    data: &PluginData,
    attempt: &Attempt,
) -> Result<PluginData, Failed> {
    let id = request.id.as_str();
    let mut after = data.clone();
    let Some(r) = after.revocation.as_mut() else {
        return Err(EffectError::Unexpected {
            endpoint: "revoke",
            outcome: format!("step {step:?} without a planned revocation"),
        }
        .into());
    };
    match step {
        Step::Revoke { .. } => {
            let now = fx.now();
            let grace = settings.auto_approval.shift_grace;
            // Is the person still on call in the shift that was to end at `due - grace`? Asked
            // at its last second, afresh: an override made since may have extended it.
            let last_second = r
                .due
                .checked_sub(grace + Duration::from_secs(1))
                .unwrap_or(r.due);
            let answer = fx
                .shift_end(&r.schedule, &r.person, last_second, r.access_end, true)
                .await
                .map_err(|e| {
                    warn!(request_id = id, error = %e, "Could not look at the timeline again; revoking as planned.");
                    e.to_string()
                });
            match shift_policy::recheck(now, grace, answer) {
                Recheck::MoveTo(later) => {
                    info!(request_id = id, from = %rfc3339(r.due), to = %rfc3339(later), "The shift was extended; the revocation moves with it.");
                    r.due = later;
                }
                Recheck::NotNeeded => {
                    info!(
                        request_id = id,
                        "The shift now lasts as long as the access; nothing to revoke."
                    );
                    r.state = RevokeState::NotNeeded;
                }
                Recheck::Lock => {
                    let lock = RequestLock::for_request(
                        id,
                        &revoke::lock_message(id, &r.schedule),
                        Some(r.access_end),
                    );
                    match fx.upsert_lock(&lock).await {
                        Ok(()) => {
                            done!(settings, "Locked the request at the end of the shift.", "Would lock the request at the end of the shift (dry run).", request_id = id, lock = %lock.name, expires = %rfc3339(r.access_end));
                            r.state = RevokeState::Locked;
                            // From now on `due` is when the lock was made, for the note.
                            r.due = now;
                            r.refusal.clear();
                        }
                        Err(refused @ EffectError::LockRefused { .. }) => {
                            error!(request_id = id, lock = %lock.name, error = %refused, "Teleport refused the lock that ends the access at shift end; retrying with backoff.");
                            r.refusal = format!("Teleport refused lock `{}`: {refused}", lock.name);
                            return Err(Failed {
                                keep: Some(after),
                                error: refused,
                            });
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
            }
        }
        Step::NoteLockRefused => {
            let note = revoke::refused_note(&r.refusal);
            note_once(fx, data, attempt, note).await?;
            r.refusal_noted = true;
        }
        Step::NoteRevoked => {
            let note = revoke::revoked_note(&request.user, r, &lock_name(id));
            if note_once(fx, data, attempt, note).await? {
                done!(
                    settings,
                    "Noted the revocation on the alert.",
                    "Would note the revocation (dry run).",
                    request_id = id
                );
            }
            r.state = RevokeState::Noted;
        }
        other => {
            return Err(EffectError::Unexpected {
                endpoint: "revoke",
                outcome: format!("step {other:?} is not a revocation step"),
            }
            .into())
        }
    }
    Ok(after)
}

/// Whether `step` is due at `now`; otherwise when it is.
pub(crate) fn due_later(step: &Step, now: SystemTime) -> Option<SystemTime> {
    match step {
        Step::Revoke { due } if *due > now => Some(*due),
        _ => None,
    }
}
