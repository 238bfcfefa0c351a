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

use tracing::{debug, info, warn};

use crate::backend::{Operation, Outcome};
use crate::core::model::Snapshot;
use crate::core::plan::{self, PlanOptions, Step};
use crate::core::plugin_data::{millis, Claim, Encoded, PluginData};
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
    /// Planner switches.
    pub plan: PlanOptions,
    /// How long a claim lasts; longer than any one side effect.
    pub claim_ttl: Duration,
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
    let step = plan::next_step(snapshot, &data, settings.plan);
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
    let claimed = PluginData {
        claim: Some(Claim {
            holder: settings.replica.clone(),
            until_ms: millis(now + settings.claim_ttl),
        }),
        ..data.clone()
    };
    fx.write(id, claimed.encode(), data.expect_exactly())
        .await?;

    let result = act(fx, settings, snapshot, &step, &claimed).await;
    let after = match result {
        Ok(after) => after,
        Err(err) => {
            // Release the claim so that no replica waits for it, then report the failure. If
            // the release fails too, the claim simply expires.
            let released = PluginData {
                claim: None,
                ..claimed.clone()
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

/// Performs `step` (which needs the claim) and returns the progress to record.
async fn act<E: Effects>(
    fx: &E,
    settings: &Settings,
    snapshot: &Snapshot,
    step: &Step,
    data: &PluginData,
) -> Result<PluginData, EffectError> {
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
                    after.created = request.created.map(whole_seconds);
                    after.request_reason = render::truncate(&request.request_reason, 1_000);
                }
                other => return Err(unexpected("create_alert", &other)),
            }
        }
        (Step::NoteReview { index }, Snapshot::Present(request)) => {
            if let Some(review) = request.reviews.get(*index) {
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
            )))
        }
    }
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
            let mut set = Encoded::new();
            set.insert("alert_request_id".into(), String::new());
            fx.write(id, set, data.expect_alert_id_unset()).await?;
            Ok(PluginData {
                alert_request_id: String::new(),
                ..data
            })
        }
        Err(err) => Err(err),
    }
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn unexpected(endpoint: &str, outcome: &Outcome) -> EffectError {
    EffectError::Permanent(format!(
        "the backend answered {endpoint} with an unexpected result: {outcome:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{AccessRequest, RequestState, Review};
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};

    /// In-memory effects with Teleport's compare-and-swap semantics, recording every call.
    #[derive(Default)]
    struct Memory {
        store: RefCell<HashMap<String, BTreeMap<String, String>>>,
        calls: RefCell<Vec<String>>,
        fail_next_call: RefCell<Option<EffectError>>,
        now_ms: u64,
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
            Ok(Outcome::Accepted {
                request_id: "rq-1".into(),
            })
        }
        async fn await_alert_id(&self, request_id: &str) -> Result<String, EffectError> {
            self.calls.borrow_mut().push(format!("await {request_id}"));
            Ok("alert-1".into())
        }
        fn now(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_millis(self.now_ms)
        }
    }

    fn settings(replica: &str) -> Settings {
        Settings {
            replica: replica.into(),
            alert: AlertSettings::default(),
            plan: PlanOptions::default(),
            claim_ttl: Duration::from_secs(60),
        }
    }

    fn request(state: RequestState, reviews: usize) -> Snapshot {
        Snapshot::Present(AccessRequest {
            id: "r1".into(),
            user: "alice".into(),
            roles: vec!["editor".into()],
            state,
            created: None,
            access_expiry: None,
            max_duration: None,
            request_reason: "why".into(),
            resolve_reason: "ok".into(),
            system_annotations: Default::default(),
            reviews: (0..reviews)
                .map(|i| Review {
                    author: format!("rev{i}"),
                    proposed_state: RequestState::Approved,
                    reason: String::new(),
                    created: None,
                })
                .collect(),
            resources: vec![],
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
        let fx = Memory::default();
        let other = PluginData {
            claim: Some(Claim {
                holder: "other".into(),
                until_ms: 5_000,
            }),
            ..Default::default()
        };
        fx.store.borrow_mut().insert("r1".into(), other.encode());
        let r = step(
            &fx,
            &settings("me"),
            &request(RequestState::Pending, 0),
            None,
        )
        .await
        .expect("step");
        assert_eq!(
            r.next,
            Next::WaitUntil(SystemTime::UNIX_EPOCH + Duration::from_secs(5))
        );
        assert!(fx.calls.borrow().is_empty());

        let fx = Memory {
            now_ms: 5_000,
            ..Memory::default()
        };
        fx.store.borrow_mut().insert("r1".into(), other.encode());
        let r = step(
            &fx,
            &settings("me"),
            &request(RequestState::Pending, 0),
            None,
        )
        .await
        .expect("step");
        assert_eq!(r.next, Next::Continue);
        assert_eq!(*fx.calls.borrow(), vec!["create_alert"]);
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
        assert_eq!(stored, PluginData::default());
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
    }
}
