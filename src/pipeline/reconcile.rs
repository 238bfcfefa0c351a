//! One step of one request: read its progress, ask the planner what to do, do it under a claim,
//! and record the result by compare-and-swap.
//!
//! Every side effect follows the same three writes-and-a-call shape:
//!
//! 1. **claim**: CAS expecting exactly the progress we planned from, setting a claim with a
//!    deadline. A lost race (`Conflict`) means someone else moved first: re-read and re-plan.
//! 2. **act**: the backend call (or Teleport review).
//! 3. **record**: CAS expecting our claim still in place, writing the result and releasing the
//!    claim.
//!
//! So two replicas never act on the same request at once, and a replica that dies between 2 and
//! 3 leaves a claim that expires; whoever takes over repeats the step. For the alert itself that
//! is harmless (the backend de-duplicates open alerts by alias); for a note it is the one
//! duplicate design.md allows.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tracing::{debug, error, info, warn};

use crate::backend::{Operation, Outcome};
use crate::core::model::{AccessRequest, Snapshot};
use crate::core::plan::{self, PlanOptions, Step};
use crate::core::plugin_data::{millis, Claim, Decision, Encoded, PluginData};
use crate::core::policy::{self, PolicySettings, Verdict};
use crate::core::render::{self, AlertSettings};

/// What an effect can fail with, as far as the reconcile loop cares.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// Plugin data changed since it was read (a lost compare-and-swap). Re-read and re-plan at
    /// once; not a failure.
    #[error("plugin data was changed by someone else")]
    Conflict,
    /// Worth retrying later with backoff (network, throttling, Teleport unavailable).
    #[error("{0}")]
    Retryable(String),
    /// Retrying the same call will not help (bad key, rejected payload, missing permission).
    #[error("{0}")]
    Permanent(String),
    /// The backend processed the alert creation and says it failed; it should be created again.
    #[error("the backend could not create the alert: {0}")]
    CreateFailed(String),
}

impl EffectError {
    /// Whether the step should be tried again later.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Permanent(_))
    }
}

/// What submitting the daemon's approving review achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewResult {
    /// The review was recorded now.
    Submitted,
    /// Nothing was recorded now, and nothing needs to be: Teleport says the daemon already
    /// reviewed the request (a repeat after a crash), or the request is already resolved.
    AlreadyDone,
}

/// What Teleport says when the daemon's identity needs MFA for admin actions, and how to fix it.
pub const MFA_REQUIRED_FIX: &str = "Teleport requires MFA for admin actions: run the plugin with a Machine ID (tbot) identity, or sign its identity with `tctl auth sign` on the Auth host";

/// The outside world, as one request's reconcile sees it. The daemon's implementation talks to
/// Teleport and the gateway; tests can substitute their own.
pub trait Effects {
    /// Reads the request's plugin data (default when there is none).
    fn read(&self, request_id: &str) -> impl Future<Output = Result<PluginData, EffectError>>;
    /// Compare-and-swap on the request's plugin data.
    fn write(
        &self,
        request_id: &str,
        set: Encoded,
        expect: Encoded,
    ) -> impl Future<Output = Result<(), EffectError>>;
    /// One backend call through the gateway.
    fn call(&self, op: Operation) -> impl Future<Output = Result<Outcome, EffectError>>;
    /// Waits until the backend has processed the creation with this request id; its alert id.
    fn await_alert_id(&self, request_id: &str)
        -> impl Future<Output = Result<String, EffectError>>;
    /// Who is on call now in `schedule` (through the on-call cache). Any error means "unknown",
    /// never "nobody".
    fn on_call(&self, schedule: &str) -> impl Future<Output = Result<Vec<String>, EffectError>>;
    /// Submits the daemon's approving review of the request, with `reason`. A repeated review
    /// or an already resolved request is [`ReviewResult::AlreadyDone`]; an admin-action MFA
    /// refusal is [`EffectError::Permanent`] with [`MFA_REQUIRED_FIX`]. In dry-run mode they
    /// submit nothing and answer [`ReviewResult::Submitted`].
    fn submit_review(
        &self,
        request_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<ReviewResult, EffectError>>;
    /// The time now.
    fn now(&self) -> SystemTime;
}

/// Settings that shape every request's reconcile.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This replica's name in claims.
    pub replica: String,
    /// What alerts look like.
    pub alert: AlertSettings,
    /// How long a claim lasts; longer than any one side effect (for the decision, all its
    /// on-call lookups and the review together).
    pub claim_ttl: Duration,
    /// The auto-approval policy. The planner asks for a decision only when it is enabled.
    pub auto_approval: PolicySettings,
    /// The daemon's own Teleport user: its reviews are already explained on the alert by the
    /// decision note, so they get no review note of their own.
    pub own_user: String,
    /// Whether a request that arrives live as brand new (pending, no reviews) may skip the
    /// first read of its progress and claim it expecting none. A wrong guess only loses the
    /// compare-and-swap and reads after all; off in dry runs, whose writes always "succeed".
    pub claim_new_without_reading: bool,
}

impl Settings {
    /// The planner's switches, derived from the settings so that they cannot disagree.
    pub fn plan(&self) -> PlanOptions {
        PlanOptions {
            auto_approval: self.auto_approval.enabled,
        }
    }
}

/// What happened, and what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A step was done; call again at once.
    Continue,
    /// Nothing to do until Teleport says something new.
    Idle,
    /// Another replica holds the request; try again at this time.
    WaitUntil(SystemTime),
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

    let now = fx.now();
    if let Some(until) = plan::held_by_other(&data, &settings.replica, now) {
        debug!(
            request_id = id,
            "Another replica is acting on the request; waiting."
        );
        return done(data, step, Next::WaitUntil(until));
    }
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
    // call still being retried here (the gateway retries for up to minutes) could land after
    // that replica's work, e.g. an alert creation arriving after the close, which makes a
    // second alert. Dropping the step cancels its backend call in flight.
    let budget = settings.claim_ttl.saturating_sub(settings.claim_ttl / 5);
    let result =
        match tokio::time::timeout(budget, act(fx, settings, snapshot, &step, &claimed)).await {
            Ok(result) => result,
            Err(_) => Err(Failed::from(EffectError::Retryable(format!(
                "the step took longer than its claim allows ({budget:?}); it is retried"
            )))),
        };
    let after = match result {
        Ok(after) => after,
        Err(Failed { keep, error: err }) => {
            // Release the claim so that no replica waits for it (recording what the failed step
            // asked to keep, such as a failure count), then report the failure. If the release
            // fails too, the claim simply expires.
            let released = PluginData {
                claim: None,
                ..keep.unwrap_or_else(|| claimed.clone())
            };
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
        ..after
    };
    fx.write(id, after.encode(), claimed.expect_claim()).await?;
    done(after, step, Next::Continue)
}

/// A failed step: the error, and progress to record anyway when releasing the claim.
struct Failed {
    keep: Option<PluginData>,
    error: EffectError,
}

impl From<EffectError> for Failed {
    fn from(error: EffectError) -> Self {
        Self { keep: None, error }
    }
}

/// Performs `step` (which needs the claim) and returns the progress to record.
async fn act<E: Effects>(
    fx: &E,
    settings: &Settings,
    snapshot: &Snapshot,
    step: &Step,
    data: &PluginData,
) -> Result<PluginData, Failed> {
    let id = snapshot.id();
    let alias = render::alias(id);
    let mut after = data.clone();
    match (step, snapshot) {
        (Step::CreateAlert, Snapshot::Present(request)) => {
            let payload = render::alert(request, &settings.alert);
            match fx.call(Operation::CreateAlert(payload)).await? {
                Outcome::Accepted { request_id } => {
                    info!(request_id = id, alias = %alias, backend_request_id = %request_id, "Created the alert.");
                    after.alert_request_id = request_id;
                    after.user = request.user.clone();
                    after.roles = request.roles.clone();
                    after.created = request.created;
                    after.request_reason = render::truncate(&request.request_reason, 1_000);
                }
                other => return Err(unexpected("create_alert", &other).into()),
            }
        }
        (Step::Decide, Snapshot::Present(request)) => {
            return decide(fx, settings, request, &alias, after).await;
        }
        (Step::NoteReview { index }, Snapshot::Present(request)) => {
            let review = request.reviews.get(*index);
            if let Some(review) = review.filter(|r| is_own_explained(r, settings, data)) {
                debug!(request_id = id, reviewer = %review.author, "Our own review is explained by the decision note; no review note.");
            } else if let Some(review) = review {
                let note = render::review_note(review);
                fx.call(Operation::AddNote {
                    alias: alias.clone(),
                    note,
                })
                .await?;
                info!(request_id = id, alias = %alias, reviewer = %review.author, "Posted a review note.");
            }
            after.reviews_count = index + 1;
        }
        (Step::Close { resolution, reason }, _) => {
            let note = render::resolution_note(*resolution, reason);
            fx.call(Operation::CloseAlert {
                alias: alias.clone(),
                note,
            })
            .await?;
            info!(request_id = id, alias = %alias, resolution = resolution.as_str(), "Closed the alert.");
            after.resolution = Some(*resolution);
            after.resolve_reason = render::truncate(reason, 1_000);
        }
        (step, _) => {
            return Err(EffectError::Permanent(format!(
                "step {step:?} is not implemented for this snapshot"
            ))
            .into())
        }
    }
    Ok(after)
}

/// Whether `review` is the daemon's own approval, already explained by the decision note. A
/// review of ours without a recorded approval (the note failed after the review went through)
/// is noted like any other, so the alert never lacks the explanation.
fn is_own_explained(
    review: &crate::core::model::Review,
    settings: &Settings,
    data: &PluginData,
) -> bool {
    !settings.own_user.is_empty()
        && review.author == settings.own_user
        && data.decision == Some(Decision::Approved)
}

/// The auto-approval decision: check the policy, look up who is on call (stopping at the first
/// schedule the requester is on call in), then approve or decline and explain it on the alert.
async fn decide<E: Effects>(
    fx: &E,
    settings: &Settings,
    request: &AccessRequest,
    alias: &str,
    mut after: PluginData,
) -> Result<PluginData, Failed> {
    let cfg = &settings.auto_approval;
    let id = request.id.as_str();
    let now = fx.now();
    let mut lookups: Vec<(String, Result<Vec<String>, String>)> = Vec::new();
    if let Ok(schedules) = policy::precheck(request, cfg, now) {
        for schedule in schedules {
            let answer = fx.on_call(&schedule).await.map_err(|e| e.to_string());
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
            match fx.submit_review(id, &reason).await {
                Ok(result) => {
                    info!(request_id = id, user = %request.user, schedule = %schedule, rule = matched.rule.as_str(), "Auto-approved the request.");
                    after.decision = Some(Decision::Approved);
                    match result {
                        ReviewResult::Submitted => reason,
                        ReviewResult::AlreadyDone => format!(
                            "{reason} (Teleport already had this review, or the request was already resolved)"
                        ),
                    }
                }
                // Teleport refuses for good (admin-action MFA, a missing `review_requests`
                // rule): the request needs a human, and the alert says why and what to fix.
                Err(EffectError::Permanent(refusal)) => {
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
            if after.lookup_failures < cfg.lookup_retries {
                after.lookup_failures += 1;
                let reason = policy::lookup_failed_reason(&errors, None);
                return Err(Failed {
                    keep: Some(after),
                    error: EffectError::Retryable(reason),
                });
            }
            let reason = policy::lookup_failed_reason(&errors, Some(after.lookup_failures + 1));
            warn!(request_id = id, %reason, "Declined auto-approval: on-call lookups kept failing.");
            after.decision = Some(Decision::Declined);
            reason
        }
    };
    fx.call(Operation::AddNote {
        alias: alias.to_owned(),
        note: render::truncate(&note, render::limits::NOTE),
    })
    .await?;
    Ok(after)
}

/// Learns the alert id of the recorded creation and records it.
async fn resolve_alert_id<E: Effects>(
    fx: &E,
    id: &str,
    data: PluginData,
) -> Result<PluginData, EffectError> {
    match fx.await_alert_id(&data.alert_request_id).await {
        Ok(alert_id) => {
            fx.write(
                id,
                PluginData::set_alert_id(&alert_id),
                data.expect_alert_id_unset(),
            )
            .await?;
            debug!(request_id = id, alert_id = %alert_id, "Recorded the alert id.");
            Ok(PluginData { alert_id, ..data })
        }
        Err(EffectError::CreateFailed(status)) => {
            // The creation was processed and failed: forget it, so the alert is created again.
            warn!(request_id = id, %status, "The backend failed to create the alert; creating it again.");
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
        Err(err) => Err(err),
    }
}

fn unexpected(endpoint: &str, outcome: &Outcome) -> EffectError {
    EffectError::Permanent(format!(
        "the backend answered {endpoint} with an unexpected result: {outcome:?}"
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::model::{AccessRequest, RequestState, Review};
    use crate::core::plugin_data::Resolution;
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};

    /// In-memory effects with Teleport's compare-and-swap semantics, recording every call.
    #[derive(Default)]
    pub(crate) struct Memory {
        store: RefCell<HashMap<String, BTreeMap<String, String>>>,
        pub(crate) calls: RefCell<Vec<String>>,
        /// The text of every note posted (add and close).
        notes: RefCell<Vec<String>>,
        fail_next_call: RefCell<Option<EffectError>>,
        /// What the next wait for an alert id fails with, if anything.
        fail_next_await: RefCell<Option<EffectError>>,
        now_ms: u64,
        /// Who is on call per schedule; a missing schedule fails its lookup.
        on_call: RefCell<HashMap<String, Result<Vec<String>, String>>>,
        /// Requests the daemon has reviewed, with the reason, as Teleport would remember them.
        reviewed: RefCell<Vec<(String, String)>>,
        /// When set, Teleport refuses every review for good with this message.
        refuse_reviews: RefCell<Option<String>>,
    }

    impl Effects for Memory {
        async fn read(&self, id: &str) -> Result<PluginData, EffectError> {
            Ok(self
                .store
                .borrow()
                .get(id)
                .map(PluginData::decode)
                .unwrap_or_default())
        }
        async fn write(&self, id: &str, set: Encoded, expect: Encoded) -> Result<(), EffectError> {
            let mut store = self.store.borrow_mut();
            let entry = store.entry(id.to_owned()).or_default();
            for (k, v) in &expect {
                if entry.get(k).map(String::as_str).unwrap_or("") != v {
                    return Err(EffectError::Conflict);
                }
            }
            for (k, v) in set {
                if v.is_empty() {
                    entry.remove(&k);
                } else {
                    entry.insert(k, v);
                }
            }
            Ok(())
        }
        async fn call(&self, op: Operation) -> Result<Outcome, EffectError> {
            if let Some(err) = self.fail_next_call.borrow_mut().take() {
                return Err(err);
            }
            self.calls.borrow_mut().push(op.endpoint().to_owned());
            if let Operation::AddNote { note, .. } | Operation::CloseAlert { note, .. } = op {
                self.notes.borrow_mut().push(note);
            }
            Ok(Outcome::Accepted {
                request_id: "rq-1".into(),
            })
        }
        async fn await_alert_id(&self, request_id: &str) -> Result<String, EffectError> {
            self.calls.borrow_mut().push(format!("await {request_id}"));
            match self.fail_next_await.borrow_mut().take() {
                Some(err) => Err(err),
                None => Ok("alert-1".into()),
            }
        }
        async fn on_call(&self, schedule: &str) -> Result<Vec<String>, EffectError> {
            self.calls.borrow_mut().push(format!("on_call {schedule}"));
            match self.on_call.borrow().get(schedule) {
                Some(Ok(users)) => Ok(users.clone()),
                Some(Err(e)) => Err(EffectError::Retryable(e.clone())),
                None => Err(EffectError::Retryable("no such schedule".into())),
            }
        }
        async fn submit_review(
            &self,
            request_id: &str,
            reason: &str,
        ) -> Result<ReviewResult, EffectError> {
            self.calls.borrow_mut().push("review".into());
            if let Some(refusal) = self.refuse_reviews.borrow().clone() {
                return Err(EffectError::Permanent(refusal));
            }
            let mut reviewed = self.reviewed.borrow_mut();
            if reviewed.iter().any(|(id, _)| id == request_id) {
                // As Teleport answers a repeated review by the same author.
                return Ok(ReviewResult::AlreadyDone);
            }
            reviewed.push((request_id.to_owned(), reason.to_owned()));
            Ok(ReviewResult::Submitted)
        }
        fn now(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_millis(self.now_ms)
        }
    }

    pub(crate) fn settings(replica: &str) -> Settings {
        Settings {
            replica: replica.into(),
            alert: AlertSettings::default(),
            claim_ttl: Duration::from_secs(60),
            auto_approval: PolicySettings::default(),
            own_user: OWN.into(),
            claim_new_without_reading: true,
        }
    }

    const OWN: &str = "teleport-opsgenie";

    /// Settings with auto-approval on, checking schedule "Primary" by default.
    fn approving(replica: &str) -> Settings {
        Settings {
            auto_approval: PolicySettings {
                enabled: true,
                default_schedules: vec!["Primary".into()],
                lookup_retries: 2,
                ..PolicySettings::default()
            },
            ..settings(replica)
        }
    }

    fn request(state: RequestState, reviews: usize) -> Snapshot {
        Snapshot::Present(AccessRequest {
            state,
            request_reason: "why".into(),
            resolve_reason: "ok".into(),
            ..AccessRequest::example("r1", "alice", &["editor"]).with_approvals(reviews)
        })
    }

    /// Steps until idle or finished, as the request actor does.
    async fn drive(fx: &Memory, s: &Settings, snapshot: &Snapshot) -> Next {
        let mut cached = None;
        for _ in 0..20 {
            let r = step(fx, s, snapshot, cached.take()).await.expect("step");
            if r.next != Next::Continue {
                return r.next;
            }
            cached = Some(r.data);
        }
        panic!("did not settle");
    }

    #[actix_rt::test]
    async fn a_request_lifecycle_makes_exactly_the_expected_calls() {
        let fx = Memory::default();
        let s = settings("me");
        assert_eq!(
            drive(&fx, &s, &request(RequestState::Pending, 0)).await,
            Next::Idle
        );
        assert_eq!(
            drive(&fx, &s, &request(RequestState::Pending, 1)).await,
            Next::Idle
        );
        assert_eq!(
            drive(&fx, &s, &request(RequestState::Approved, 2)).await,
            Next::Finished
        );
        assert_eq!(
            *fx.calls.borrow(),
            vec![
                "create_alert",
                "await rq-1",
                "add_note",
                "add_note",
                "close_alert"
            ]
        );
        let stored = PluginData::decode(&fx.store.borrow()["r1"]);
        assert_eq!(stored.alert_id, "alert-1");
        assert_eq!(stored.reviews_count, 2);
        assert!(stored.is_closed());
        assert_eq!(stored.claim, None, "the claim is released");
        // Replaying everything changes nothing.
        assert_eq!(
            drive(&fx, &s, &request(RequestState::Approved, 2)).await,
            Next::Finished
        );
        assert_eq!(fx.calls.borrow().len(), 5);
    }

    #[actix_rt::test]
    async fn a_live_claim_of_another_replica_is_respected_and_an_expired_one_taken_over() {
        // One step at `now_ms` on a request that "other" holds until 5 s.
        async fn step_at(now_ms: u64) -> (Memory, Next) {
            let fx = Memory {
                now_ms,
                ..Memory::default()
            };
            let other = PluginData {
                claim: Some(Claim {
                    holder: "other".into(),
                    until_ms: 5_000,
                }),
                ..Default::default()
            };
            fx.store.borrow_mut().insert("r1".into(), other.encode());
            let snapshot = request(RequestState::Pending, 0);
            let r = step(&fx, &settings("me"), &snapshot, None)
                .await
                .expect("step");
            (fx, r.next)
        }

        let (fx, next) = step_at(0).await;
        assert_eq!(
            next,
            Next::WaitUntil(SystemTime::UNIX_EPOCH + Duration::from_secs(5))
        );
        assert!(fx.calls.borrow().is_empty());

        let (fx, next) = step_at(5_000).await;
        assert_eq!(next, Next::Continue);
        assert_eq!(*fx.calls.borrow(), vec!["create_alert"]);
        assert_eq!(stored(&fx).claim, None, "our claim replaced and released");
    }

    #[actix_rt::test]
    async fn a_stale_cache_loses_the_race_instead_of_acting_twice() {
        let fx = Memory::default();
        let s = settings("me");
        let snapshot = request(RequestState::Pending, 0);
        let first = step(&fx, &s, &snapshot, None).await.expect("first");
        assert_eq!(first.step, Step::CreateAlert);
        // A second replica that read before the first one acted.
        let err = step(
            &fx,
            &settings("other"),
            &snapshot,
            Some(PluginData::default()),
        )
        .await
        .expect_err("must conflict");
        assert!(matches!(err, EffectError::Conflict));
        assert_eq!(*fx.calls.borrow(), vec!["create_alert"]);
    }

    #[actix_rt::test]
    async fn a_failed_call_releases_the_claim_and_records_nothing() {
        let fx = Memory::default();
        *fx.fail_next_call.borrow_mut() = Some(EffectError::Retryable("503".into()));
        let err = step(
            &fx,
            &settings("me"),
            &request(RequestState::Pending, 0),
            None,
        )
        .await
        .expect_err("must fail");
        assert!(err.is_retryable());
        let stored = PluginData::decode(&fx.store.borrow()["r1"]);
        // Only the write-ahead mark of the attempted creation is left: no claim, no alert.
        assert_eq!(stored.claim, None);
        assert!(!stored.alert_created());
        assert!(stored.create_attempted());
        assert_eq!(
            stored,
            PluginData {
                user: stored.user.clone(),
                ..PluginData::default()
            }
        );
    }

    #[actix_rt::test]
    async fn a_creation_the_backend_failed_is_forgotten_and_made_again() {
        let fx = Memory::default();
        *fx.fail_next_await.borrow_mut() = Some(EffectError::CreateFailed("500".into()));
        let s = settings("me");
        let snapshot = request(RequestState::Pending, 0);
        let first = step(&fx, &s, &snapshot, None).await.expect("create");
        let forgot = step(&fx, &s, &snapshot, Some(first.data))
            .await
            .expect("forget");
        assert_eq!(forgot.step, Step::ResolveAlertId);
        assert_eq!(forgot.data, stored(&fx), "the cache matches storage");
        assert!(!stored(&fx).alert_created());
        assert_eq!(drive(&fx, &s, &snapshot).await, Next::Idle);
        assert_eq!(
            *fx.calls.borrow(),
            vec!["create_alert", "await rq-1", "create_alert", "await rq-1"]
        );
        assert_eq!(stored(&fx).alert_id, "alert-1");
    }

    #[actix_rt::test]
    async fn deletion_closes_the_alert_as_expired() {
        let fx = Memory::default();
        let s = settings("me");
        drive(&fx, &s, &request(RequestState::Pending, 0)).await;
        let gone = Snapshot::Gone { id: "r1".into() };
        assert_eq!(drive(&fx, &s, &gone).await, Next::Finished);
        assert_eq!(
            fx.calls.borrow().last().map(String::as_str),
            Some("close_alert")
        );
        assert_eq!(
            fx.notes.borrow().last().map(String::as_str),
            Some("Access request was deleted (by a user, or by Teleport once it expired).")
        );
        assert_eq!(stored(&fx).resolution, Some(Resolution::Expired));
    }

    fn pending_by(user: &str) -> AccessRequest {
        match request(RequestState::Pending, 0) {
            Snapshot::Present(r) => AccessRequest {
                user: user.into(),
                ..r
            },
            Snapshot::Gone { .. } => unreachable!(),
        }
    }

    fn stored(fx: &Memory) -> PluginData {
        PluginData::decode(&fx.store.borrow()["r1"])
    }

    fn count(fx: &Memory, call: &str) -> usize {
        fx.calls.borrow().iter().filter(|c| *c == call).count()
    }

    fn on_call(fx: &Memory, schedule: &str, users: &[&str]) {
        fx.on_call.borrow_mut().insert(
            schedule.into(),
            Ok(users.iter().map(|u| u.to_string()).collect()),
        );
    }

    #[actix_rt::test]
    async fn on_call_requester_gets_one_review_and_one_note() {
        let fx = Memory::default();
        on_call(&fx, "Primary", &["bob@example.com", "alice@example.com"]);
        let s = approving("me");
        let snapshot = Snapshot::Present(pending_by("alice@example.com"));
        assert_eq!(drive(&fx, &s, &snapshot).await, Next::Idle);
        assert_eq!(
            *fx.calls.borrow(),
            vec![
                "create_alert",
                "await rq-1",
                "on_call Primary",
                "review",
                "add_note"
            ]
        );
        let reason = "Auto-approved: alice@example.com is on call in Opsgenie schedule \"Primary\" (matched by username)";
        assert_eq!(*fx.notes.borrow(), vec![reason]);
        assert_eq!(
            *fx.reviewed.borrow(),
            vec![("r1".to_string(), reason.to_string())]
        );
        assert_eq!(stored(&fx).decision, Some(Decision::Approved));
        assert_eq!(stored(&fx).claim, None);

        // Teleport applies the review: our own review gets no second note, the alert closes.
        let mut approved = pending_by("alice@example.com");
        approved.state = RequestState::Approved;
        approved.reviews = vec![Review {
            author: OWN.into(),
            proposed_state: RequestState::Approved,
            reason: reason.into(),
            created: None,
        }];
        let approved = Snapshot::Present(approved);
        assert_eq!(drive(&fx, &s, &approved).await, Next::Finished);
        assert_eq!(count(&fx, "add_note"), 1);
        assert_eq!(count(&fx, "close_alert"), 1);
        assert_eq!(stored(&fx).reviews_count, 1);
    }

    #[actix_rt::test]
    async fn a_refused_review_declines_with_the_fix_on_the_alert() {
        let fx = Memory::default();
        on_call(&fx, "Primary", &["alice@example.com"]);
        *fx.refuse_reviews.borrow_mut() = Some(MFA_REQUIRED_FIX.into());
        let s = approving("me");
        let snapshot = Snapshot::Present(pending_by("alice@example.com"));
        assert_eq!(drive(&fx, &s, &snapshot).await, Next::Idle);
        assert_eq!(
            *fx.notes.borrow(),
            vec![format!(
                "Not auto-approved: alice@example.com is on call, but Teleport refused the approving review: {MFA_REQUIRED_FIX}"
            )]
        );
        assert!(fx.reviewed.borrow().is_empty());
        assert_eq!(stored(&fx).decision, Some(Decision::Declined));
        assert_eq!(stored(&fx).claim, None);
        // Decided once: replaying asks Teleport nothing more.
        drive(&fx, &s, &snapshot).await;
        assert_eq!(count(&fx, "review"), 1);
    }

    #[actix_rt::test]
    async fn the_first_matching_schedule_stops_the_lookups() {
        let fx = Memory::default();
        on_call(&fx, "S1", &["alice"]);
        on_call(&fx, "S2", &["alice"]);
        let mut req = pending_by("alice");
        req.system_annotations.insert(
            crate::core::model::SCHEDULES_ANNOTATION.into(),
            vec!["S1".into(), "S2".into()],
        );
        drive(&fx, &approving("me"), &Snapshot::Present(req)).await;
        assert_eq!(count(&fx, "on_call S1"), 1);
        assert_eq!(count(&fx, "on_call S2"), 0);
        assert_eq!(count(&fx, "review"), 1);
    }

    #[actix_rt::test]
    async fn requester_not_on_call_gets_no_review_and_a_note_saying_why() {
        let fx = Memory::default();
        on_call(&fx, "Primary", &["bob"]);
        let s = approving("me");
        assert_eq!(
            drive(&fx, &s, &Snapshot::Present(pending_by("alice"))).await,
            Next::Idle
        );
        assert_eq!(count(&fx, "review"), 0);
        assert_eq!(
            *fx.notes.borrow(),
            vec!["Not auto-approved: alice is not on call in \"Primary\""]
        );
        assert_eq!(stored(&fx).decision, Some(Decision::Declined));
    }

    #[actix_rt::test]
    async fn failed_lookups_are_retried_then_declined_with_a_note() {
        let fx = Memory::default();
        fx.on_call
            .borrow_mut()
            .insert("Primary".into(), Err("HTTP 503".into()));
        let s = approving("me");
        let snapshot = Snapshot::Present(pending_by("alice"));
        // Alert created and its id learnt.
        let mut cached = None;
        for _ in 0..2 {
            cached = Some(step(&fx, &s, &snapshot, cached).await.expect("step").data);
        }
        // `lookup_retries` is 2: two retryable failures, each counted and without a note.
        for attempt in 1..=2 {
            let err = step(&fx, &s, &snapshot, None)
                .await
                .expect_err("lookup fails");
            assert!(err.is_retryable());
            assert_eq!(
                err.to_string(),
                "Not auto-approved yet: could not look up who is on call in \"Primary\": HTTP 503"
            );
            let data = stored(&fx);
            assert_eq!(data.lookup_failures, attempt);
            assert_eq!(data.decision, None);
            assert_eq!(data.claim, None, "the claim is released");
            assert!(fx.notes.borrow().is_empty());
        }
        // The third failure exhausts the retries: declined, and said so.
        let r = step(&fx, &s, &snapshot, None).await.expect("declines");
        assert_eq!(r.step, Step::Decide);
        assert_eq!(r.data.decision, Some(Decision::Declined));
        assert_eq!(
            *fx.notes.borrow(),
            vec!["Not auto-approved: could not look up who is on call in \"Primary\": HTTP 503 (gave up after 3 attempts)"]
        );
        assert_eq!(count(&fx, "on_call Primary"), 3);
        assert_eq!(count(&fx, "review"), 0);
    }

    #[actix_rt::test]
    async fn policy_declines_need_no_lookup() {
        type Tweak = Box<dyn Fn(&mut AccessRequest, &mut PolicySettings)>;
        let cases: Vec<(&str, Tweak, &str)> = vec![
            (
                "role denied",
                Box::new(|r, c| {
                    r.roles = vec!["db-admin".into()];
                    c.denied_roles = vec!["db-*".into()];
                }),
                "Not auto-approved: role `db-admin` is denied by auto_approval.denied_roles",
            ),
            (
                "too long",
                Box::new(|r, c| {
                    let t = SystemTime::UNIX_EPOCH;
                    r.created = Some(t);
                    r.access_expiry = Some(t + Duration::from_secs(12 * 3600));
                    c.max_duration = Some(Duration::from_secs(8 * 3600));
                }),
                "Not auto-approved: access of 12h exceeds the maximum of 8h",
            ),
            (
                "resource request",
                Box::new(|r, _| {
                    r.resources = vec![crate::core::model::ResourceId {
                        cluster: "c".into(),
                        kind: "node".into(),
                        name: "web-1".into(),
                        sub_resource: String::new(),
                    }];
                }),
                "Not auto-approved: requests for specific resources need a human reviewer",
            ),
        ];
        for (name, tweak, want) in cases {
            let fx = Memory::default();
            on_call(&fx, "Primary", &["alice"]);
            let mut s = approving("me");
            let mut req = pending_by("alice");
            tweak(&mut req, &mut s.auto_approval);
            assert_eq!(
                drive(&fx, &s, &Snapshot::Present(req)).await,
                Next::Idle,
                "{name}"
            );
            assert_eq!(count(&fx, "review"), 0, "{name}");
            assert_eq!(count(&fx, "on_call Primary"), 0, "{name}");
            assert_eq!(*fx.notes.borrow(), vec![want], "{name}");
            assert_eq!(stored(&fx).decision, Some(Decision::Declined), "{name}");
        }
    }

    #[actix_rt::test]
    async fn a_restart_after_deciding_does_not_decide_again() {
        let fx = Memory::default();
        on_call(&fx, "Primary", &["alice"]);
        let s = approving("me");
        let snapshot = Snapshot::Present(pending_by("alice"));
        drive(&fx, &s, &snapshot).await;
        let calls = fx.calls.borrow().len();
        // A new process: nothing cached, progress read back from storage.
        assert_eq!(
            plan::next_step(&snapshot, &stored(&fx), s.plan()),
            Step::Wait
        );
        assert_eq!(
            drive(&fx, &approving("me-again"), &snapshot).await,
            Next::Idle
        );
        assert_eq!(fx.calls.borrow().len(), calls);
        assert_eq!(count(&fx, "review"), 1);
    }

    #[actix_rt::test]
    async fn a_review_that_went_through_before_a_crash_is_not_repeated() {
        // The review was submitted but the note failed: the retry finds the review done.
        let fx = Memory::default();
        on_call(&fx, "Primary", &["alice"]);
        let s = approving("me");
        let snapshot = Snapshot::Present(pending_by("alice"));
        let mut cached = None;
        for _ in 0..2 {
            cached = Some(step(&fx, &s, &snapshot, cached).await.expect("step").data);
        }
        fx.reviewed
            .borrow_mut()
            .push(("r1".into(), "earlier".into()));
        drive(&fx, &s, &snapshot).await;
        assert_eq!(fx.reviewed.borrow().len(), 1);
        assert_eq!(stored(&fx).decision, Some(Decision::Approved));
        let note = &fx.notes.borrow()[0];
        assert!(
            note.starts_with("Auto-approved: alice is on call"),
            "{note}"
        );
        assert!(
            note.ends_with(
                "(Teleport already had this review, or the request was already resolved)"
            ),
            "{note}"
        );
    }

    #[actix_rt::test]
    async fn two_replicas_submit_one_review() {
        let fx = Memory::default();
        on_call(&fx, "Primary", &["alice"]);
        let (a, b) = (approving("a"), approving("b"));
        let snapshot = Snapshot::Present(pending_by("alice"));
        // Both learn the alert and read the same progress, just before the decision.
        let mut cached = None;
        for _ in 0..2 {
            cached = Some(step(&fx, &a, &snapshot, cached).await.expect("step").data);
        }
        let read = fx.read("r1").await.expect("read");
        assert_eq!(plan::next_step(&snapshot, &read, a.plan()), Step::Decide);

        let first = step(&fx, &a, &snapshot, Some(read.clone()))
            .await
            .expect("a decides");
        assert_eq!(first.step, Step::Decide);
        let err = step(&fx, &b, &snapshot, Some(read))
            .await
            .expect_err("b loses the race");
        assert!(matches!(err, EffectError::Conflict));
        assert_eq!(drive(&fx, &b, &snapshot).await, Next::Idle);
        assert_eq!(drive(&fx, &a, &snapshot).await, Next::Idle);
        assert_eq!(count(&fx, "review"), 1);
        assert_eq!(count(&fx, "add_note"), 1);
    }

    #[actix_rt::test]
    async fn a_replica_holding_the_claim_for_a_decision_is_waited_for() {
        let fx = Memory::default();
        on_call(&fx, "Primary", &["alice"]);
        let (a, b) = (approving("a"), approving("b"));
        let snapshot = Snapshot::Present(pending_by("alice"));
        let mut cached = None;
        for _ in 0..2 {
            cached = Some(step(&fx, &a, &snapshot, cached).await.expect("step").data);
        }
        // Replica `a` claimed the decision and died before recording it.
        let held = PluginData {
            claim: Some(Claim {
                holder: "a".into(),
                until_ms: 60_000,
            }),
            ..fx.read("r1").await.expect("read")
        };
        fx.store.borrow_mut().insert("r1".into(), held.encode());
        let r = step(&fx, &b, &snapshot, None).await.expect("waits");
        assert_eq!(r.step, Step::Decide);
        assert_eq!(
            r.next,
            Next::WaitUntil(SystemTime::UNIX_EPOCH + Duration::from_secs(60))
        );
        assert_eq!(count(&fx, "on_call Primary"), 0);
        assert_eq!(count(&fx, "review"), 0);
    }

    #[actix_rt::test]
    async fn own_reviews_are_noted_when_no_approval_was_recorded() {
        // Our review with no recorded decision (e.g. auto-approval was switched off since):
        // it is the only explanation the alert can get, so it is noted.
        let fx = Memory::default();
        let s = settings("me");
        let mut req = pending_by("alice");
        req.reviews = vec![Review {
            author: OWN.into(),
            proposed_state: RequestState::Approved,
            reason: "Auto-approved: ...".into(),
            created: None,
        }];
        drive(&fx, &s, &Snapshot::Present(req)).await;
        assert_eq!(
            *fx.notes.borrow(),
            vec![format!(
                "{OWN} approved the request.\nReason: Auto-approved: ..."
            )]
        );
    }
}
