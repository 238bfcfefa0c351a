//! The orphan sweep: closes open alerts whose access request no longer exists.
//!
//! A request deleted or expired while every replica was down leaves an open alert behind: its
//! deletion event is never seen, and the resync after a restart only lists requests that still
//! exist. Every `daemon.orphan_sweep_interval` the daemon lists the open alerts carrying its
//! first tag, lists Teleport's requests, and finds the alerts of requests that are gone (the
//! decision is [`crate::core::sweep::orphans`]).
//!
//! The sweep does not close them behind the steps' backs: a step may be in flight for the very
//! request (a create answered 503 after it took effect, being retried), and a close slipped in
//! before that retry would let it open a second alert. So the sweep and the steps agree on who
//! acts through the claim ([`crate::core::sweep::handling`]): a request whose progress exists is
//! handed to the pipeline as deleted, and its request actor closes the alert under a claim,
//! confirms it and records it; a live claim is left alone; only alerts no step will ever act on
//! are closed directly, and without a note (see [`sweep_once`]).

use std::collections::HashSet;

use actix::Recipient;
use tracing::{debug, info, warn};

use crate::actors::gateway::GatewayHandle;
use crate::backend::{AlertRef, Operation, Outcome};
use crate::core::model::Snapshot;
use crate::core::plugin_data::PluginData;
use crate::core::sweep::{handling, orphans, Handling};
use crate::pipeline::request::{Observe, Origin};
use crate::teleport::client::TeleportClient;

/// Pages of open alerts read in one sweep at most (Opsgenie pages hold 100 alerts; its offset
/// stops at 20,000 anyway).
const MAX_PAGES: u32 = 200;

/// Why a sweep stopped early. Every variant is transient: the next sweep tries again.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// Listing the open alerts failed (retryable: next sweep).
    #[error("listing open alerts: {0}")]
    ListAlerts(String),
    /// Listing Teleport's requests failed (retryable: next sweep). Nothing is closed then: an
    /// empty or partial list would make every alert look orphaned.
    #[error("listing access requests: {0}")]
    ListRequests(String),
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Open alerts carrying the tag.
    pub open: usize,
    /// Alerts whose request is gone.
    pub orphans: usize,
    /// Of those, handed to the pipeline to close.
    pub handed_over: usize,
    /// Of those, closed directly.
    pub closed: usize,
    /// Of those, left alone because a replica holds the request.
    pub left: usize,
}

/// One sweep: list open alerts tagged `tag`, then the requests, then see to the orphans: hand
/// them to `pipeline` as deleted, or close them directly (see the module docs).
pub async fn sweep_once(
    teleport: &TeleportClient,
    gateway: &GatewayHandle,
    pipeline: &Recipient<Observe>,
    tag: &str,
) -> Result<SweepReport, SweepError> {
    // Alerts first, requests second: a request created in between cannot have an alert in the
    // first list, so "alert listed, request missing" always means the request is gone.
    let mut open = Vec::new();
    let mut offset = 0u32;
    for _ in 0..MAX_PAGES {
        let op = Operation::ListOpenAlerts {
            tag: tag.to_owned(),
            offset,
        };
        match gateway.call(op).await {
            Ok(Outcome::Alerts { alerts, more }) => {
                let n = u32::try_from(alerts.len()).unwrap_or(u32::MAX);
                open.extend(alerts);
                if !more || n == 0 {
                    break;
                }
                offset = offset.saturating_add(n);
            }
            Ok(other) => {
                return Err(SweepError::ListAlerts(format!(
                    "unexpected answer: {other:?}"
                )))
            }
            Err(err) => return Err(SweepError::ListAlerts(err.to_string())),
        }
    }
    // Only the ids: the requests themselves would make each sweep's memory grow with the backlog.
    let existing: HashSet<String> = teleport
        .list_request_ids()
        .await
        .map_err(|e| SweepError::ListRequests(e.to_string()))?;

    let found = orphans(&open, &existing);
    let mut report = SweepReport {
        open: open.len(),
        orphans: found.len(),
        ..SweepReport::default()
    };
    let now = std::time::SystemTime::now();
    for orphan in found {
        let data = match teleport.get_plugin_data(&orphan.request_id).await {
            Ok(map) if map.is_empty() => None,
            Ok(map) => Some(PluginData::decode(&map)),
            Err(err) => {
                debug!(request_id = %orphan.request_id, error = %err, "Could not read the progress of an orphan; the next sweep tries again.");
                continue;
            }
        };
        match handling(&orphan, data.as_ref(), now) {
            Handling::Leave => report.left += 1,
            Handling::Pipeline => {
                report.handed_over += 1;
                let gone = Snapshot::Gone {
                    id: orphan.request_id.clone(),
                };
                pipeline.do_send(Observe(gone, Origin::Resync));
            }
            Handling::Close => {
                // No note: every replica sweeps, and a listing taken before another replica's
                // close was applied lists the alert open again, so one orphan may be closed
                // directly more than once. A close without a note changes nothing the second
                // time on any backend; whether a backend adds the note of a close that finds the
                // alert already closed is not documented (the fake JSM does, the pessimistic
                // reading). Alerts the pipeline closes get their note, exactly once.
                let op = Operation::CloseAlert {
                    alert: AlertRef::Id(orphan.alert_id.clone()),
                    note: String::new(),
                };
                match gateway.call(op).await {
                    Ok(_) => report.closed += 1,
                    Err(err) => {
                        warn!(request_id = %orphan.request_id, error = %err, "Could not close an orphaned alert; the next sweep retries.");
                    }
                }
            }
        }
    }
    if report.orphans > 0 {
        info!(
            open = report.open,
            orphans = report.orphans,
            handed_over = report.handed_over,
            closed = report.closed,
            left = report.left,
            "Orphan sweep found alerts of requests that no longer exist."
        );
    } else {
        debug!(open = report.open, "Orphan sweep found nothing to close.");
    }
    Ok(report)
}
