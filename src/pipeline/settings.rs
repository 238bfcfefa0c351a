//! What shapes every request's reconcile, from the configuration and the connection.

use std::time::Duration;

use crate::core::plan::PlanOptions;
use crate::core::policy::PolicySettings;
use crate::core::render::AlertSettings;
use crate::pipeline::stop::Stop;

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
    /// Nothing is written (`--dry-run`): the log says what would be done.
    pub dry_run: bool,
    /// Set at shutdown: steps in flight are cut short and release their claims.
    pub stop: Stop,
}

impl Settings {
    /// The planner's switches, derived from the settings so that they cannot disagree.
    pub fn plan(&self) -> PlanOptions {
        PlanOptions {
            auto_approval: self.auto_approval.enabled,
        }
    }
}

/// Logs what a step did, or in a dry run what it would have done.
macro_rules! done {
    ($settings:expr, $did:literal, $would:literal, $($field:tt)*) => {
        if $settings.dry_run {
            tracing::info!($($field)*, $would)
        } else {
            tracing::info!($($field)*, $did)
        }
    };
}
pub(crate) use done;
