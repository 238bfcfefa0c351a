//! Starting and stopping the whole daemon: the wiring of design.md's picture.
//!
//! `Daemon::start` connects to Teleport (ping and version check), checks the backend, and starts
//! the actors: the gateway, the request registry and the supervised event stream. Tests,
//! examples and `main` all go through it, so they run exactly the daemon that ships.

use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{info, warn};

use crate::actors::event_stream::{EventStream, StopWatching, WatchHealth, WatchTiming};
use crate::actors::gateway::{Gateway, GatewayError, Health};
use crate::actors::oncall::OnCallCache;
use crate::actors::requests::{CountActive, Requests, Shared};
use crate::config::Config;
use crate::core::plan::PlanOptions;
use crate::core::render::{web_proxy_url, AlertSettings};
use crate::effects::{on_call_lookup, LiveEffects, TeleportSource};
use crate::reconcile::Settings;
use crate::teleport::client::TeleportClient;
use crate::teleport::error::TeleportError;
use crate::teleport::identity::{Identity, IdentityError};

/// How long the backend may take to process an alert creation before we give up for now (the
/// step is retried later with the same creation).
const ALERT_ID_DEADLINE: Duration = Duration::from_secs(180);
/// Steps in flight at once across all requests.
const MAX_STEPS_IN_FLIGHT: usize = 256;

/// Process exit codes (sysexits).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Bad command line.
    pub const USAGE: u8 = 64;
    /// A service could not be reached.
    pub const UNAVAILABLE: u8 = 69;
    /// Bad configuration (including credentials that cannot work).
    pub const CONFIG: u8 = 78;
}

/// Options that are not configuration: how this process runs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Decide and log, write nothing anywhere.
    pub dry_run: bool,
    /// This replica's name in claims; generated when unset.
    pub replica: Option<String>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The identity could not be used. Not retryable: fix the file.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Teleport could not be reached or refused us.
    #[error(transparent)]
    Teleport(#[from] TeleportError),
    /// The backend refused our configuration (key, region, URL).
    #[error("the on-call backend: {0}")]
    Backend(#[source] GatewayError),
}

impl StartError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Identity(_) => exit::CONFIG,
            Self::Teleport(err) if err.is_retryable() => exit::UNAVAILABLE,
            Self::Teleport(_) => exit::CONFIG,
            Self::Backend(err) if err.is_retryable() => exit::UNAVAILABLE,
            Self::Backend(_) => exit::CONFIG,
        }
    }
}

/// A running daemon.
pub struct Daemon {
    stream: Addr<EventStream<TeleportSource>>,
    registry: Addr<Requests<LiveEffects>>,
    shared: Rc<Shared<LiveEffects>>,
    health: Rc<WatchHealth>,
    shutdown_timeout: Duration,
    sweep: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Connects and starts every actor. Must run inside an actix `System`.
    pub async fn start(config: Config, options: RunOptions) -> Result<Daemon, StartError> {
        let identity = Identity::load(&config.teleport)?;
        let (teleport, connected) = TeleportClient::connect(&config.teleport, &identity).await?;
        info!(
            cluster = %connected.ping.cluster_name,
            version = %connected.ping.server_version,
            mode = ?connected.mode,
            user = %identity.username,
            "Connected to Teleport."
        );

        let api_key = config.opsgenie.api_key.clone().unwrap_or_default();
        let gateway = Gateway::new(&config.opsgenie, api_key).map_err(StartError::Backend)?;
        let client = gateway.client().clone();
        let gateway = gateway.start();
        match gateway.send(Health).await {
            Ok(Ok(())) => info!(url = %config.opsgenie.base_url(), "The on-call backend answers."),
            Ok(Err(err)) if err.is_retryable() => {
                warn!(error = %err, "The on-call backend is not reachable yet; work will wait for it.")
            }
            Ok(Err(err)) => return Err(StartError::Backend(err)),
            Err(_) => warn!("The gateway stopped during its health check."),
        }

        let web_proxy = config
            .teleport
            .web_proxy_addr
            .clone()
            .or_else(|| Some(connected.ping.proxy_public_addr.clone()))
            .filter(|a| !a.trim().is_empty())
            .map(|a| web_proxy_url(&a));
        let settings = Settings {
            replica: options.replica.clone().unwrap_or_else(replica_name),
            alert: AlertSettings {
                web_proxy_url: web_proxy,
                cluster: connected.ping.cluster_name.clone(),
                priority: config.opsgenie.priority.clone(),
                tags: config.opsgenie.tags.clone(),
                default_schedules: config.opsgenie.default_schedules.clone(),
                default_teams: config.opsgenie.default_teams.clone(),
                source: config.opsgenie.source.clone(),
            },
            plan: PlanOptions {
                auto_approval: config.auto_approval.enabled,
            },
            claim_ttl: config.daemon.claim_ttl,
            auto_approval: config.auto_approval.clone(),
            own_user: identity.username.clone(),
        };
        if options.dry_run {
            info!("Dry run: decisions are logged, nothing is written.");
        }
        let on_call = Supervisor::start({
            let (lookup, ttl) = (
                on_call_lookup(gateway.clone()),
                config.auto_approval.cache_ttl,
            );
            move |_| OnCallCache::new(lookup, ttl)
        });
        let sweep = start_sweep(&config, &options, &teleport, &gateway);
        let effects = LiveEffects {
            teleport: teleport.clone(),
            gateway,
            client,
            on_call,
            alert_id_deadline: ALERT_ID_DEADLINE,
            dry_run: options.dry_run,
        };
        let shared = Rc::new(Shared::new(
            effects,
            settings,
            MAX_STEPS_IN_FLIGHT,
            config.daemon.retry_min_delay,
            config.daemon.retry_max_delay,
        ));
        let registry = Requests::new(Rc::clone(&shared)).start();
        let health = Rc::new(WatchHealth::default());
        let source = Rc::new(TeleportSource(teleport));
        let (sink, h) = (registry.clone().recipient(), Rc::clone(&health));
        let stream =
            Supervisor::start(move |_| EventStream::new(source, sink, h, WatchTiming::default()));
        Ok(Daemon {
            stream,
            registry,
            shared,
            health,
            shutdown_timeout: config.daemon.shutdown_timeout,
            sweep,
        })
    }

    /// The watch's health: connected, resynced, counters.
    pub fn watch_health(&self) -> &WatchHealth {
        &self.health
    }

    /// Request actors alive now (requests with work left or waiting for reviews).
    pub async fn active_requests(&self) -> usize {
        self.registry.send(CountActive).await.unwrap_or(0)
    }

    /// Steps that failed for good since start.
    pub fn permanent_failures(&self) -> u64 {
        self.shared.permanent_failures()
    }

    /// Stops taking events, lets steps in flight finish within the shutdown timeout. Returns
    /// whether everything in flight finished in time.
    pub async fn shutdown(self) -> bool {
        self.stream.do_send(StopWatching);
        if let Some(sweep) = &self.sweep {
            sweep.abort();
        }
        self.shared.drain();
        let finished = tokio::time::timeout(self.shutdown_timeout, self.shared.wait_idle())
            .await
            .is_ok();
        if finished {
            info!("Stopped cleanly.");
        } else {
            warn!(
                in_flight = self.shared.steps_in_flight(),
                "Stopped with steps still in flight; they will be redone after restart."
            );
        }
        finished
    }
}

/// Starts the periodic orphan sweep (`daemon.orphan_sweep_interval`, `0s` disables; never in a
/// dry run, which writes nothing). The first sweep comes one interval after start.
fn start_sweep(
    config: &Config,
    options: &RunOptions,
    teleport: &TeleportClient,
    gateway: &Addr<Gateway>,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = config.daemon.orphan_sweep_interval;
    let tag = config.opsgenie.tags.first()?.trim().to_owned();
    if every.is_zero() || options.dry_run || tag.is_empty() {
        return None;
    }
    let (teleport, gateway) = (teleport.clone(), gateway.clone());
    Some(actix_rt::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(err) = crate::sweep::sweep_once(&teleport, &gateway, &tag).await {
                warn!(error = %err, "Orphan sweep failed; trying again at the next interval.");
            }
        }
    }))
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts down gracefully. A second signal during
/// shutdown stops at once.
pub async fn run(config: Config, options: RunOptions) -> Result<(), StartError> {
    let daemon = Daemon::start(config, options).await?;
    wait_for_signal().await;
    info!("Shutting down.");
    tokio::select! {
        _ = daemon.shutdown() => {}
        _ = wait_for_signal() => warn!("Second signal: stopping at once."),
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A name for this replica that differs between processes and hosts.
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "teleport-opsgenie".into());
    format!(
        "{host}/{}/{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}
