//! The orphan sweep: closes open alerts whose access request no longer exists.
//!
//! A request deleted or expired while every replica was down leaves an open alert behind: its
//! deletion event is never seen, and the resync after a restart only lists requests that still
//! exist. Every `daemon.orphan_sweep_interval` the daemon lists the open alerts carrying its
//! first tag, lists Teleport's requests, and closes the alerts of requests that are gone (the
//! decision is [`crate::core::sweep::orphans`]). Closing is idempotent, so replicas may sweep
//! at the same time without harm.

use std::collections::HashSet;

use actix::Addr;
use tracing::{debug, info, warn};

use crate::actors::gateway::{Call, Gateway};
use crate::backend::{Operation, Outcome};
use crate::core::plugin_data::{PluginData, Resolution};
use crate::core::render::resolution_note;
use crate::core::sweep::orphans;
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
    /// Of those, closed now.
    pub closed: usize,
}

/// One sweep: list open alerts tagged `tag`, then the requests, then close the orphans and
/// record `resolution = expired` in their plugin data where it still exists.
pub async fn sweep_once(
    teleport: &TeleportClient,
    gateway: &Addr<Gateway>,
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
        match gateway.send(Call(op)).await {
            Ok(Ok(Outcome::Alerts { alerts, more })) => {
                let n = u32::try_from(alerts.len()).unwrap_or(u32::MAX);
                open.extend(alerts.into_iter().map(|(alias, _)| alias));
                if !more || n == 0 {
                    break;
                }
                offset = offset.saturating_add(n);
            }
            Ok(Ok(other)) => {
                return Err(SweepError::ListAlerts(format!(
                    "unexpected answer: {other:?}"
                )))
            }
            Ok(Err(err)) => return Err(SweepError::ListAlerts(err.to_string())),
            Err(err) => return Err(SweepError::ListAlerts(err.to_string())),
        }
    }
    let existing: HashSet<String> = teleport
        .list_access_requests()
        .await
        .map_err(|e| SweepError::ListRequests(e.to_string()))?
        .into_iter()
        .map(|r| r.id)
        .collect();

    let found = orphans(&open, &existing);
    let mut report = SweepReport {
        open: open.len(),
        orphans: found.len(),
        closed: 0,
    };
    for orphan in found {
        let op = Operation::CloseAlert {
            alias: orphan.alias.clone(),
            note: resolution_note(Resolution::Expired, ""),
        };
        match gateway.send(Call(op)).await {
            Ok(Ok(_)) => {
                report.closed += 1;
                record_expired(teleport, &orphan.request_id).await;
            }
            Ok(Err(err)) => {
                warn!(request_id = %orphan.request_id, error = %err, "Could not close an orphaned alert; the next sweep retries.");
            }
            Err(err) => {
                warn!(request_id = %orphan.request_id, error = %err, "The gateway stopped during the sweep.");
            }
        }
    }
    if report.orphans > 0 {
        info!(
            open = report.open,
            orphans = report.orphans,
            closed = report.closed,
            "Orphan sweep closed alerts of requests that no longer exist."
        );
    } else {
        debug!(open = report.open, "Orphan sweep found nothing to close.");
    }
    Ok(report)
}

/// Records the resolution in the request's plugin data, if any is left, so a replica that later
/// sees the request (it cannot: it is gone, but its data may be read) knows the alert is closed.
/// Best effort: a conflict or failure leaves it for the next sweep or nobody.
async fn record_expired(teleport: &TeleportClient, request_id: &str) {
    let map = match teleport.get_plugin_data(request_id).await {
        Ok(map) if !map.is_empty() => map,
        Ok(_) => return,
        Err(err) => {
            debug!(request_id, error = %err, "Could not read plugin data of an orphan.");
            return;
        }
    };
    let data = PluginData::decode(&map);
    if data.is_closed() {
        return;
    }
    let after = PluginData {
        resolution: Some(Resolution::Expired),
        claim: None,
        ..data.clone()
    };
    if let Err(err) = teleport
        .update_plugin_data(request_id, after.encode(), data.expect_exactly())
        .await
    {
        debug!(request_id, error = %err, "Could not record the resolution of an orphan.");
    }
}
