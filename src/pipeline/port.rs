//! The outside world as the request pipeline sees it: the [`Effects`] it acts through (Teleport's
//! plugin data and reviews, the backend through the gateway, the on-call cache, the clock), and
//! the typed [`EffectError`] they fail with. The daemon's implementation is
//! `pipeline::effects::LiveEffects`; tests substitute their own.

use std::future::Future;
use std::time::SystemTime;

use crate::actors::timelines::ShiftLookupError;
use crate::backend::{Operation, Outcome, Processed};
use crate::core::plugin_data::{Encoded, PluginData};
use crate::core::shift::ShiftEnd;
use crate::teleport::client::RequestLock;

pub use crate::pipeline::effect_error::EffectError;

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
    /// Waits until the backend has processed the asynchronous request with this id; what it
    /// says (`GatewayError::Timeout` past the deadline).
    fn await_request(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Processed, EffectError>>;
    /// Who is on call now in `schedule` (through the on-call cache). Any error means "unknown",
    /// never "nobody".
    fn on_call(
        &self,
        schedule: &str,
    ) -> impl Future<Output = Result<Vec<crate::core::oncall_user::OnCallUser>, EffectError>>;
    /// Submits the daemon's approving review of the request, with `reason`. A repeated review
    /// or an already resolved request is [`ReviewResult::AlreadyDone`]; an admin-action MFA
    /// refusal is [`EffectError::ReviewRefused`] with [`MFA_REQUIRED_FIX`]. In dry-run mode they
    /// submit nothing and answer [`ReviewResult::Submitted`].
    fn submit_review(
        &self,
        request_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<ReviewResult, EffectError>>;
    /// The time now.
    fn now(&self) -> SystemTime;

    /// When `person`'s shift in `schedule` that covers `at` ends, never looking past
    /// `access_end` (through the timeline cache; `fresh` skips cached windows). The default
    /// is for effects without timelines: it answers that none can be read.
    fn shift_end(
        &self,
        schedule: &str,
        person: &str,
        at: SystemTime,
        access_end: SystemTime,
        fresh: bool,
    ) -> impl Future<Output = Result<ShiftEnd, ShiftLookupError>> {
        let _ = (schedule, person, at, access_end, fresh);
        async { Err(ShiftLookupError::Unavailable) }
    }

    /// Creates or replaces `lock` in Teleport (revocation at shift end). A refusal for good
    /// (missing `lock` rule, admin-action MFA) is [`EffectError::LockRefused`]. The default is
    /// for effects that cannot lock: it says so.
    fn upsert_lock(&self, lock: &RequestLock) -> impl Future<Output = Result<(), EffectError>> {
        let _ = lock;
        async {
            Err(EffectError::Unexpected {
                endpoint: "upsert_lock",
                outcome: "these effects cannot create locks".into(),
            })
        }
    }

    /// Waits until [`Effects::now`] reads `at` or later (a revocation falling due).
    fn sleep_until(&self, at: SystemTime) -> impl Future<Output = ()> {
        tokio::time::sleep(at.duration_since(self.now()).unwrap_or_default())
    }
}
