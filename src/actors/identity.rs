//! `IdentityWatcher`: picks up a rewritten identity file (tbot renews it in place, teleport-wire.md
//! §4.4). Every `refresh_identity_interval` it reads the file; when the content changed and the
//! new identity is valid and connects, the daemon's client is swapped and the watch reconnects,
//! so the next INIT's resync covers whatever happened meanwhile: no event is lost. A bad file
//! keeps the old connection, with a warning saying what is wrong.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{info, warn};

use crate::actors::event_stream::Reconnect;
use crate::config::TeleportConfig;
use crate::metrics::Metrics;
use crate::teleport::client::TeleportClient;
use crate::teleport::identity::Identity;
use crate::teleport::ClientHandle;

/// A fingerprint of the file's content (not a secret: a hash only compared in memory).
fn fingerprint(content: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    content.hash(&mut h);
    h.finish()
}

/// Watches the identity file named by the configuration.
pub struct IdentityWatcher {
    cfg: TeleportConfig,
    interval: Duration,
    client: ClientHandle,
    stream: Recipient<Reconnect>,
    /// The content last acted on (loaded, or refused for good).
    seen: Option<u64>,
    reloads: u64,
    /// Changed files that could not be used (each is logged once).
    refused: u64,
    metrics: Option<Arc<Metrics>>,
}

impl IdentityWatcher {
    /// A watcher for `cfg.identity`. `cfg.mode` should be the mode that worked at start, so a
    /// reload does not try the other route first. `initial` is the file's content at start.
    pub fn new(
        cfg: TeleportConfig,
        client: ClientHandle,
        stream: Recipient<Reconnect>,
        initial: Option<&[u8]>,
    ) -> Self {
        Self {
            interval: cfg.refresh_identity_interval,
            cfg,
            client,
            stream,
            seen: initial.map(fingerprint),
            reloads: 0,
            refused: 0,
            metrics: None,
        }
    }

    /// Also publishes the expiry of each identity it switches to.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        let Some(path) = self.cfg.identity.clone() else {
            return;
        };
        let content = match std::fs::read(&path) {
            Ok(content) => content,
            Err(error) => {
                // tbot replaces the file by renaming; a missing file is usually a moment's gap.
                warn!(path = %path.display(), %error, "Cannot read the identity file; keeping the current connection.");
                return;
            }
        };
        let print = fingerprint(&content);
        if self.seen == Some(print) {
            return;
        }
        let identity = match Identity::load(&self.cfg) {
            Ok(identity) => identity,
            Err(error) => {
                // Includes certificates dated outside 1970..9999: the parser refuses them, so a
                // bad renewal can never take the process down.
                self.seen = Some(print);
                self.refused += 1;
                warn!(%error, "The identity file changed but cannot be used; keeping the current connection.");
                return;
            }
        };
        let cfg = self.cfg.clone();
        let not_after = identity.not_after;
        let fut = async move { TeleportClient::connect(&cfg, &identity).await };
        ctx.wait(fut.into_actor(self).map(move |result, act, _| match result {
            Ok((client, connected)) => {
                act.seen = Some(print);
                act.reloads += 1;
                act.client.replace(client);
                if let Some(metrics) = &act.metrics {
                    metrics.set_identity_expiry(not_after);
                }
                info!(
                    mode = ?connected.mode,
                    cluster = %connected.ping.cluster_name,
                    "The identity file changed; now using the new certificate."
                );
                act.stream.do_send(Reconnect);
            }
            Err(error) => {
                // A network failure is retried at the next tick; anything else waits for the
                // file to change again.
                if !error.is_retryable() {
                    act.seen = Some(print);
                }
                warn!(%error, "The identity file changed but connecting with it failed; keeping the current connection.");
            }
        }));
    }
}

impl Actor for IdentityWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.check(ctx));
    }
}

/// Asks how many times the identity was reloaded (tests and metrics).
#[derive(Debug, Message)]
#[rtype(result = "u64")]
pub struct Reloads;

impl Handler<Reloads> for IdentityWatcher {
    type Result = u64;

    fn handle(&mut self, _: Reloads, _: &mut Self::Context) -> u64 {
        self.reloads
    }
}

/// Asks how many changed identity files were refused (tests).
#[derive(Debug, Message)]
#[rtype(result = "u64")]
pub struct Refusals;

impl Handler<Refusals> for IdentityWatcher {
    type Result = u64;

    fn handle(&mut self, _: Refusals, _: &mut Self::Context) -> u64 {
        self.refused
    }
}

/// Stops watching the file (shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopReloading;

impl Handler<StopReloading> for IdentityWatcher {
    type Result = ();

    fn handle(&mut self, _: StopReloading, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(all(test, feature = "sim"))]
#[path = "identity_tests.rs"]
mod tests;
