//! Starting and stopping the whole daemon: the wiring of design.md's picture.
//!
//! `Daemon::start` connects to Teleport (ping and version check), checks the backend, and starts
//! the actors: the gateway, the request registry and the supervised event stream. Tests,
//! examples and `main` all go through it, so they run exactly the daemon that ships.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{info, warn};

use crate::actors::event_stream::{EventStream, StopWatching, WatchHealth, WatchTiming};
use crate::actors::gateway::{
    BackendCallObserver, Gateway, GatewayClient, GatewayError, GatewayHandle, RetryPolicy,
};
use crate::actors::identity::{IdentityWatcher, Reloads, StopReloading};
use crate::actors::oncall::OnCallCache;
use crate::actors::oncall_jsm::{jsm_on_call_lookup, jsm_timeline_lookup};
use crate::actors::sweeper::{StopSweeping, SweepFn, Sweeper};
use crate::actors::timelines::TimelineCache;
use crate::clock::Clock;
use crate::config::BackendKind;
use crate::config::Config;
use crate::core::render::{web_proxy_url, AlertSettings};
use crate::http::{Heartbeat, HttpError, Monitor, Probes};
use crate::metrics::Metrics;
use crate::pipeline::effects::{on_call_lookup, timeline_lookup, LiveEffects, TeleportSource};
use crate::pipeline::reconcile::Settings;
use crate::pipeline::request::Observe;
use crate::pipeline::requests::{CountActive, Requests};
use crate::pipeline::shared::Shared;
use crate::teleport::client::{Connected, TeleportClient};
use crate::teleport::error::TeleportError;
use crate::teleport::identity::{Identity, IdentityError};
use crate::teleport::ClientHandle;

/// How long the backend may take to process an alert creation before we give up for now (the
/// step is retried later with the same creation).
const ALERT_ID_DEADLINE: Duration = Duration::from_secs(180);
/// How long the start waits for the backend's first health check before going on without it.
const STARTUP_HEALTH_WAIT: Duration = Duration::from_secs(5);
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
    /// The wall clock (the system's; tests move an adjustable one to reach shift ends).
    pub clock: Clock,
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
    /// The health and metrics listener could not bind its address.
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl StartError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            // A file that cannot be read is 69 (as `check` and the config loader say): a
            // volume or tbot may not have written it yet.
            Self::Identity(IdentityError::Unreadable { .. }) => exit::UNAVAILABLE,
            Self::Identity(_) => exit::CONFIG,
            Self::Teleport(err) if err.is_retryable() => exit::UNAVAILABLE,
            Self::Teleport(_) => exit::CONFIG,
            Self::Backend(err) if err.is_retryable() => exit::UNAVAILABLE,
            Self::Backend(_) => exit::CONFIG,
            // The port may be held by a process that is still exiting; anything else is
            // `http.listen` itself.
            Self::Http(err) if err.source.kind() == std::io::ErrorKind::AddrInUse => {
                exit::UNAVAILABLE
            }
            Self::Http(_) => exit::CONFIG,
        }
    }
}

/// How long steps cut short at shutdown get to release their claims (one compare-and-swap each).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// A running daemon.
pub struct Daemon {
    stream: Addr<EventStream<TeleportSource>>,
    registry: Addr<Requests<LiveEffects>>,
    shared: Rc<Shared<LiveEffects>>,
    health: Rc<WatchHealth>,
    identity_watcher: Option<Addr<IdentityWatcher>>,
    shutdown_timeout: Duration,
    metrics: Arc<Metrics>,
    http: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    sweep: Option<Addr<Sweeper>>,
}

impl Daemon {
    /// Connects and starts every actor. Must run inside an actix `System`.
    pub async fn start(config: Config, options: RunOptions) -> Result<Daemon, StartError> {
        crate::file_mode::warn_loose_files(&config);
        // Read before loading, so a rewrite racing with start is still seen as a change.
        let identity_text = config
            .teleport
            .identity
            .as_ref()
            .and_then(|path| std::fs::read(path).ok());
        let identity = Identity::load(&config.teleport)?;
        let (teleport, connected) = TeleportClient::connect(&config.teleport, &identity).await?;
        info!(
            cluster = %connected.ping.cluster_name,
            version = %connected.ping.server_version,
            mode = ?connected.mode,
            user = %identity.username,
            "Connected to Teleport."
        );
        // Without these rights every request would fail later, one by one; say it now.
        if let Some(denied) = teleport.probe_permissions().await.first_denial() {
            return Err(StartError::Teleport(denied));
        }
        let teleport = ClientHandle::new(teleport);

        let metrics = Arc::new(Metrics::new());
        metrics.set_identity_expiry(identity.not_after);

        let api_key = config.opsgenie.api_key.clone().unwrap_or_default();
        let observer = Arc::clone(&metrics) as Arc<dyn BackendCallObserver>;
        let client = GatewayClient::with_policy(
            &config.opsgenie,
            api_key,
            RetryPolicy::default(),
            Some(observer),
        )
        .map_err(StartError::Backend)?;
        // The actor owns the client from here on; every backend call goes through it.
        let gateway = Gateway::start_supervised(client);
        let backend_check = startup_backend_check(&gateway, &config).await?;
        // Bound before any actor starts, so a bad `http.listen` fails the start cleanly.
        let listener = if config.http.enabled {
            Some(crate::http::bind(config.http.listen).await?)
        } else {
            None
        };

        let settings = settings(&config, &options, &connected, &identity);
        if options.dry_run {
            info!("Dry run: decisions are logged, nothing is written.");
        }
        let on_call = Supervisor::start({
            let lookup = match config.opsgenie.backend {
                BackendKind::Opsgenie => on_call_lookup(gateway.clone()),
                BackendKind::Jsm => jsm_on_call_lookup(gateway.clone()),
            };
            let ttl = config.auto_approval.cache_ttl;
            move |_| OnCallCache::new(lookup, ttl)
        });
        let timelines = Supervisor::start({
            let lookup = match config.opsgenie.backend {
                BackendKind::Opsgenie => timeline_lookup(gateway.clone()),
                BackendKind::Jsm => jsm_timeline_lookup(gateway.clone()),
            };
            let ttl = config.auto_approval.cache_ttl;
            move |_| TimelineCache::new(lookup, ttl)
        });
        let effects = LiveEffects {
            teleport: teleport.clone(),
            gateway: gateway.clone(),
            on_call: on_call.clone(),
            timelines: timelines.clone(),
            clock: options.clock.clone(),
            alert_id_deadline: ALERT_ID_DEADLINE,
            dry_run: options.dry_run,
        };
        let shared = Rc::new(
            Shared::new(
                effects,
                settings,
                MAX_STEPS_IN_FLIGHT,
                config.daemon.retry_min_delay,
                config.daemon.retry_max_delay,
            )
            .with_metrics(Arc::clone(&metrics)),
        );
        let registry = Requests::new(Rc::clone(&shared)).start();
        let sweep = start_sweep(
            &config,
            &options,
            &teleport,
            &gateway,
            registry.clone().recipient(),
        );
        let health = Rc::new(WatchHealth::default());
        let source = Rc::new(TeleportSource(teleport.clone()));
        let (sink, resync, h) = (
            registry.clone().recipient(),
            registry.clone().recipient(),
            Rc::clone(&health),
        );
        let timing = WatchTiming {
            silence_timeout: Some(config.teleport.watch_silence_timeout).filter(|t| !t.is_zero()),
            ..WatchTiming::default()
        };
        let stream = Supervisor::start(move |_| EventStream::new(source, sink, resync, h, timing));
        let identity_watcher =
            (config.teleport.refresh_identity && config.teleport.identity.is_some()).then(|| {
                // Reconnect the way that worked, without trying the other route first.
                let mut cfg = config.teleport.clone();
                cfg.mode = connected.mode;
                IdentityWatcher::new(
                    cfg,
                    teleport,
                    stream.clone().recipient(),
                    identity_text.as_deref(),
                )
                .with_metrics(Arc::clone(&metrics))
                .start()
            });

        let probes = Probes {
            watch: Rc::clone(&health),
            steps_in_flight: {
                let shared = Rc::clone(&shared);
                Box::new(move || shared.steps_in_flight())
            },
            alive: vec![
                ("gateway", alive(gateway.addr())),
                ("on-call cache", alive(&on_call)),
                ("timeline cache", alive(&timelines)),
                ("request registry", alive(&registry)),
            ],
            heartbeat: heartbeat(
                gateway,
                Monitor::heartbeat_interval(config.http.ready_backend_window),
            ),
        };
        let monitor = Monitor::new(
            probes,
            Arc::clone(&metrics),
            config.http.ready_backend_window,
            backend_check,
        )
        .start();
        let http = match listener {
            Some(listener) => {
                let addr = listener.local_addr().map_err(|source| HttpError {
                    addr: config.http.listen,
                    source,
                })?;
                Some((addr, crate::http::spawn(listener, monitor)))
            }
            None => None,
        };
        Ok(Daemon {
            stream,
            registry,
            shared,
            health,
            identity_watcher,
            shutdown_timeout: config.daemon.shutdown_timeout,
            metrics,
            http,
            sweep,
        })
    }

    /// The watch's health: connected, resynced, counters.
    pub fn watch_health(&self) -> &WatchHealth {
        &self.health
    }

    /// Where the health and metrics listener listens (`None` when `http.enabled` is off).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(addr, _)| *addr)
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Requests with work in hand now (a pending request waiting for reviews has none).
    pub async fn active_requests(&self) -> usize {
        self.registry.send(CountActive).await.unwrap_or(0)
    }

    /// How many times a changed identity file was loaded and put to use since start.
    pub async fn identity_reloads(&self) -> u64 {
        match &self.identity_watcher {
            Some(watcher) => watcher.send(Reloads).await.unwrap_or(0),
            None => 0,
        }
    }

    /// Steps that failed for good since start.
    pub fn permanent_failures(&self) -> u64 {
        self.shared.permanent_failures()
    }

    /// Stops taking events, lets steps in flight finish within the shutdown timeout. Returns
    /// whether everything in flight finished in time.
    pub async fn shutdown(self) -> bool {
        self.stream.do_send(StopWatching);
        if let Some(watcher) = &self.identity_watcher {
            watcher.do_send(StopReloading);
        }
        if let Some(sweep) = &self.sweep {
            sweep.do_send(StopSweeping);
        }
        self.shared.drain();
        let finished = tokio::time::timeout(self.shutdown_timeout, self.shared.wait_idle())
            .await
            .is_ok();
        if finished {
            info!("Stopped cleanly.");
        } else {
            // Cut the rest short: each releases its claim, recording what it sent as
            // unconfirmed, so a restart (or the next pod) resumes at once and verifies it.
            let in_flight = self.shared.steps_in_flight();
            self.shared.settings.stop.stop();
            let released = tokio::time::timeout(RELEASE_TIMEOUT, self.shared.wait_idle())
                .await
                .is_ok();
            warn!(
                in_flight,
                released,
                "Stopped with steps still in flight; they released their claims and are verified and redone after restart."
            );
        }
        if let Some((_, server)) = &self.http {
            server.abort();
        }
        finished
    }
}

/// The backend's first health check. A wrong key or region stops the start (`Err`); a backend
/// that is slow, throttled or down does not: work waits in the gateway, and readiness reports the
/// backend meanwhile. The result seeds the [`Monitor`] (`None`: no result to report).
async fn startup_backend_check(
    gateway: &GatewayHandle,
    config: &Config,
) -> Result<Option<Result<(), String>>, StartError> {
    Ok(
        match tokio::time::timeout(STARTUP_HEALTH_WAIT, gateway.health()).await {
            Ok(Ok(())) => {
                info!(url = %config.opsgenie.base_url(), "The on-call backend answers.");
                Some(Ok(()))
            }
            Ok(Err(GatewayError::Stopped { .. })) => {
                warn!("The gateway stopped during its health check.");
                None
            }
            Ok(Err(err)) if err.is_retryable() => {
                warn!(error = %err, "The on-call backend is not reachable yet; work will wait for it.");
                Some(Err(err.to_string()))
            }
            Ok(Err(err)) => return Err(StartError::Backend(err)),
            Err(_) => {
                warn!(
                    waited_s = STARTUP_HEALTH_WAIT.as_secs(),
                    "The on-call backend has not answered its health check yet; starting anyway."
                );
                Some(Err("no answer to the start-up health check".into()))
            }
        },
    )
}

/// What the request actors need to know, from the configuration and the connection.
fn settings(
    config: &Config,
    options: &RunOptions,
    connected: &Connected,
    identity: &Identity,
) -> Settings {
    let web_proxy = config
        .teleport
        .web_proxy_addr
        .clone()
        .or_else(|| Some(connected.ping.proxy_public_addr.clone()))
        .filter(|a| !a.trim().is_empty())
        .map(|a| web_proxy_url(&a));
    Settings {
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
        claim_ttl: config.daemon.claim_ttl,
        auto_approval: (&config.auto_approval).into(),
        own_user: identity.username.clone(),
        claim_new_without_reading: !options.dry_run,
        dry_run: options.dry_run,
        stop: Default::default(),
    }
}

/// A liveness check: whether `addr`'s actor still takes messages.
fn alive<A: Actor>(addr: &Addr<A>) -> Box<dyn Fn() -> bool> {
    let addr = addr.clone();
    Box::new(move || addr.connected())
}

/// The [`Monitor`]'s backend check: a heartbeat through the gateway. A check that is still
/// retrying after `patience` (when the next one is due) counts as failed: readiness should
/// reflect the backend now, not two minutes of retries.
fn heartbeat(gateway: GatewayHandle, patience: Duration) -> Heartbeat {
    Rc::new(move || {
        let gateway = gateway.clone();
        Box::pin(async move {
            // Past `patience` the ping is dropped, and with it the call in the gateway.
            match tokio::time::timeout(patience, gateway.health()).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {}ms", patience.as_millis())),
            }
        })
    })
}

/// Starts the supervised orphan sweeper (`daemon.orphan_sweep_interval`, `0s` disables; never in
/// a dry run, which writes nothing). The first sweep comes one interval after start.
fn start_sweep(
    config: &Config,
    options: &RunOptions,
    teleport: &ClientHandle,
    gateway: &GatewayHandle,
    pipeline: Recipient<Observe>,
) -> Option<Addr<Sweeper>> {
    let every = config.daemon.orphan_sweep_interval;
    let tag = config.opsgenie.tags.first()?.trim().to_owned();
    if every.is_zero() || options.dry_run || tag.is_empty() {
        return None;
    }
    let (teleport, gateway) = (teleport.clone(), gateway.clone());
    let sweep: SweepFn = Rc::new(move || {
        // The client of the moment: the identity may have been renewed since start.
        let (client, gateway, pipeline, tag) = (
            teleport.get(),
            gateway.clone(),
            pipeline.clone(),
            tag.clone(),
        );
        Box::pin(async move {
            crate::pipeline::sweep::sweep_once(&client, &gateway, &pipeline, &tag).await
        })
    });
    Some(Supervisor::start(move |_| Sweeper::new(sweep, every)))
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
