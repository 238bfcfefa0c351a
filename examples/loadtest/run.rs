//! One run of the load test: the fakes in this process, the daemon as a child process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use teleport_opsgenie::config::Limit;
use teleport_opsgenie::core::plugin_data::PluginData;
use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::pb::types::RequestState;
use teleport_opsgenie::sim::opsgenie::{AlertStatus, FakeOpsgenieOptions, FakeRateLimits};
use teleport_opsgenie::sim::teleport::FakeTeleportOptions;
use teleport_opsgenie::sim::world::{
    World, WorldOptions, APPROVAL_SCHEDULE, ON_CALL_REQUESTER, PLUGIN_USER, REQUESTER, REVIEWERS,
};

use crate::process::{usage, DaemonProcess};
use crate::stats::{ms_between, percentiles, round};

/// The requested role of every load-test request (the guide's requester may ask for it).
const ROLE: &str = "editor";

/// The daemon's Teleport calls that write to Teleport's backend.
const TELEPORT_WRITES: [&str; 4] = [
    "UpdatePluginData",
    "SubmitAccessReview",
    "UpsertLock",
    "DeleteLock",
];
/// The daemon's Teleport calls that read single resources (the listing is counted apart).
const TELEPORT_READS: [&str; 2] = ["GetPluginData", "GetLock"];

/// How the requests of a run get approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// An administrator sets the state (`tctl request approve`): no review, so no review note.
    Tctl,
    /// A human reviewer submits one approving review, with `SubmitAccessReview`'s rules, and
    /// the request's threshold of one approves it: a request's ordinary life.
    Review,
    /// The daemon approves: auto-approval on, every requester on call. A first request warms
    /// the on-call (and timeline) caches and is not measured.
    Auto,
}

/// One case of the load test.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub name: &'static str,
    pub requests: usize,
    pub rate: f64,
    pub backend_limit: u32,
    pub processing_delay_ms: u64,
    pub backlog: usize,
    pub approval: Approval,
}

impl RunSpec {
    /// A case that does nothing until its fields are set.
    pub const fn empty() -> Self {
        RunSpec {
            name: "",
            requests: 0,
            rate: 0.0,
            backend_limit: 0,
            processing_delay_ms: 0,
            backlog: 0,
            approval: Approval::Tctl,
        }
    }
}

/// Whether a call to the fake Opsgenie is in Opsgenie's `Alert` rate-limit domain: create,
/// request status, get alert, notes, close, acknowledge (opsgenie-api.md §8). Listing and
/// counting alerts are `Search`.
fn alert_domain(method: &str, api_path: &str) -> bool {
    match api_path.strip_prefix("/v2/alerts") {
        Some("") => method.eq_ignore_ascii_case("POST"),
        Some(rest) => rest.starts_with('/') && rest != "/count",
        None => false,
    }
}

/// The daemon's Teleport calls so far, by method.
fn daemon_calls(world: &World) -> BTreeMap<&'static str, usize> {
    world.teleport.calls_by(PLUGIN_USER)
}

/// Runs one case and returns its JSON line.
pub async fn run(daemon_bin: &Path, spec: &RunSpec, timeout: Duration) -> Result<Value, String> {
    let limit = spec.backend_limit;
    let world = World::start(WorldOptions {
        opsgenie: FakeOpsgenieOptions {
            processing_delay: Duration::from_millis(spec.processing_delay_ms),
            rate_limits: FakeRateLimits {
                create_per_second: (limit > 0).then_some(limit),
                ..Default::default()
            },
            ..Default::default()
        },
        // Approving a 100,000 backlog at once emits that many events back to back; the
        // watcher must not be dropped for lagging behind them.
        teleport: FakeTeleportOptions {
            event_buffer: (spec.requests + spec.backlog).max(65_536) * 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut config = world.config();
    let plugin = config.teleport.plugin_name.clone();

    // The backlog: requests the daemon already handled before this start.
    let backlog_started = Instant::now();
    let mut backlog_ids = Vec::with_capacity(spec.backlog);
    for i in 0..spec.backlog {
        let req = world
            .teleport
            .create_request(REQUESTER, &[ROLE], "load test backlog")
            .map_err(|s| format!("creating a backlog request: {}", s.message()))?;
        let id = req.metadata.map(|m| m.name).unwrap_or_default();
        let spec_v3 = req.spec.unwrap_or_default();
        let alert_id = world.opsgenie.insert_alert(&alias(&id), "backlog");
        let data = PluginData {
            alert_id,
            alert_request_id: format!("backlog-{i}"),
            user: spec_v3.user,
            roles: spec_v3.roles,
            created: spec_v3
                .created
                .map(|t| UNIX_EPOCH + Duration::from_secs(t.seconds.max(0) as u64)),
            request_reason: spec_v3.request_reason,
            ..Default::default()
        };
        world
            .teleport
            .set_plugin_data(&id, &plugin, data.encode())
            .map_err(|s| format!("writing backlog plugin data: {}", s.message()))?;
        backlog_ids.push(id);
    }
    let backlog_setup_s = backlog_started.elapsed().as_secs_f64();
    world.teleport.track_plugin_data_key("alert_id");
    world.teleport.track_plugin_data_key("resolution");

    // The daemon's configuration: the world's, quiet, with the backend limit.
    config.log.level = "warn".into();
    config.opsgenie.rate_limits.alert = Limit::new(limit, 0);
    let requester = if spec.approval == Approval::Auto {
        config.auto_approval.enabled = true;
        world
            .opsgenie
            .set_on_call(APPROVAL_SCHEDULE, &[ON_CALL_REQUESTER]);
        ON_CALL_REQUESTER
    } else {
        REQUESTER
    };
    let config_file = world
        .write_config_file(config, "teleport-opsgenie.yaml")
        .map_err(|e| e.to_string())?;
    let log_file = world.dir.join("daemon.log");
    let log = std::fs::File::create(&log_file).map_err(|e| e.to_string())?;

    let started = Instant::now();
    let child = Command::new(daemon_bin)
        .arg("start")
        .arg("-c")
        .arg(&config_file)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", daemon_bin.display()))?;
    let mut daemon = DaemonProcess { child };
    let pid = daemon.pid();
    let deadline = started + timeout;
    let died = |d: &mut DaemonProcess| {
        d.exited().map(|status| {
            format!(
                "the daemon exited ({status}); its log: {}",
                log_file.display()
            )
        })
    };

    // Connected: the watch is open.
    while world.teleport.watchers() == 0 {
        if let Some(e) = died(&mut daemon) {
            return Err(e);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the daemon did not connect; its log: {}",
                log_file.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let connected = usage(pid);
    let connect_s = started.elapsed().as_secs_f64();
    // Writes before this point belong to start-up (the permission probe writes nothing, but it
    // is an UpdatePluginData call), not to the resync.
    let writes_at_connect = world.teleport.count_calls("UpdatePluginData")
        + world.teleport.count_calls("SubmitAccessReview")
        + world.opsgenie.count_calls("POST", "/v2/alerts");

    // The resync: every backlog request's plugin data read.
    while world.teleport.count_calls("GetPluginData") < spec.backlog {
        if let Some(e) = died(&mut daemon) {
            return Err(e);
        }
        if Instant::now() > deadline {
            return Err("the resync did not finish".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let resync_s = started.elapsed().as_secs_f64();
    let resynced = usage(pid);
    // Writes caused by the resync would follow the reads at once; give them time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backend_writes = |w: &World| w.opsgenie.count_calls("POST", "/v2/alerts");
    let teleport_writes = |w: &World| {
        w.teleport.count_calls("UpdatePluginData") + w.teleport.count_calls("SubmitAccessReview")
    };
    let resync_writes =
        (teleport_writes(&world) + backend_writes(&world)).saturating_sub(writes_at_connect);
    // Idle after the resync: what the process keeps of what the resync needed.
    let before_load = usage(pid);
    let calls_before_load = daemon_calls(&world);

    // The load.
    let load_started_at = SystemTime::now();
    let mut created_at: HashMap<String, SystemTime> = HashMap::with_capacity(spec.requests);
    let mut order: Vec<String> = Vec::with_capacity(spec.requests);
    let mut alert_id_at: HashMap<String, SystemTime> = HashMap::new();
    let mut resolved_at: HashMap<String, SystemTime> = HashMap::new();
    let mut approved: HashSet<String> = HashSet::new();
    let mut awaiting_approval: Vec<String> = Vec::new();
    let mut cursor = 0usize;
    let backlog_set: HashSet<&str> = backlog_ids.iter().map(String::as_str).collect();
    let mut backlog_closed = 0usize;
    let set_approved = |w: &World, id: &str| {
        w.teleport
            .set_state(id, RequestState::Approved, "load test")
            .map_err(|s| format!("approving {id}: {}", s.message()))
    };
    let approve = |w: &World, id: &str| match spec.approval {
        Approval::Tctl => set_approved(w, id),
        Approval::Review => w
            .teleport
            .review(id, REVIEWERS[0], true, "load test")
            .map(|_| ())
            .map_err(|s| format!("reviewing {id}: {}", s.message())),
        // The daemon approves.
        Approval::Auto => Ok(()),
    };
    // The backlog's alerts exist already: approve those requests at once.
    for id in &backlog_ids {
        set_approved(&world, id)?;
    }
    let create = |w: &World| {
        w.teleport
            .create_request(requester, &[ROLE], "load test")
            .map_err(|s| format!("creating a request: {}", s.message()))
            .map(|req| req.metadata.map(|m| m.name).unwrap_or_default())
    };
    // Auto-approval is measured with warm caches: one request first, approved before the
    // measured ones start. It is handled like the others but not measured.
    let warm_up = if spec.approval == Approval::Auto {
        let id = create(&world)?;
        while approved_by_daemon(&world, &id).is_none() {
            if let Some(e) = died(&mut daemon) {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err("the warm-up request was not approved".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Some(id)
    } else {
        None
    };
    let load_started = Instant::now();
    let mut timed_out = false;
    loop {
        // Create what is due.
        let due = if spec.rate > 0.0 {
            ((load_started.elapsed().as_secs_f64() * spec.rate).floor() as usize + 1)
                .min(spec.requests)
        } else {
            spec.requests
        };
        while order.len() < due {
            let at = SystemTime::now();
            let id = create(&world)?;
            created_at.insert(id.clone(), at);
            order.push(id);
        }
        // What the daemon stored since the last look.
        let news = world.teleport.first_set_since(cursor);
        cursor += news.len();
        for (id, key, at) in news {
            match key.as_str() {
                "alert_id" => {
                    alert_id_at.entry(id.clone()).or_insert(at);
                    if created_at.contains_key(&id) {
                        awaiting_approval.push(id);
                    }
                }
                "resolution" => {
                    if backlog_set.contains(id.as_str()) {
                        backlog_closed += 1;
                    } else if created_at.contains_key(&id) {
                        resolved_at.entry(id).or_insert(at);
                    }
                }
                _ => {}
            }
        }
        // With a backend limit, closes wait until every alert exists, so that they do not
        // compete with the creations being measured for the same write budget.
        let all_created = order.len() == spec.requests
            && awaiting_approval.len() + approved.len() >= spec.requests;
        if limit == 0 || all_created {
            for id in awaiting_approval.drain(..) {
                if approved.insert(id.clone()) {
                    approve(&world, &id)?;
                }
            }
        }
        if order.len() == spec.requests
            && resolved_at.len() >= spec.requests
            && backlog_closed >= spec.backlog
        {
            break;
        }
        if let Some(e) = died(&mut daemon) {
            return Err(e);
        }
        if Instant::now() > deadline {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Closes are applied by the fake after its processing delay: let it catch up before
    // counting closed alerts.
    let _ = world
        .opsgenie
        .wait_until(
            Duration::from_millis(spec.processing_delay_ms) + Duration::from_secs(10),
            "every accepted request to be processed",
            |o| o.pending_requests() == 0,
        )
        .await;
    let load_s = load_started.elapsed().as_secs_f64();
    let end = usage(pid);
    // Before the stop: shutdown's own calls (releasing claims) are not a request's.
    let calls_at_end = daemon_calls(&world);
    daemon.stop().await;

    // Figures, from what the fakes saw.
    let alias_to_id: HashMap<String, &str> = order
        .iter()
        .chain(backlog_ids.iter())
        .chain(warm_up.iter())
        .map(|id| (alias(id), id.as_str()))
        .collect();
    let mut create_received: HashMap<&str, SystemTime> = HashMap::new();
    let mut create_posts = 0usize;
    let backend_calls = world.opsgenie.calls();
    for call in &backend_calls {
        if call.method == "POST" && call.api_path == "/v2/alerts" {
            create_posts += 1;
            let id = call
                .body
                .as_ref()
                .and_then(|b| b.get("alias"))
                .and_then(Value::as_str)
                .and_then(|a| alias_to_id.get(a).copied());
            if let Some(id) = id {
                let t = create_received.entry(id).or_insert(call.received_at);
                *t = (*t).min(call.received_at);
            }
        }
    }
    let mut alerts_per_id: HashMap<&str, (usize, bool)> = HashMap::new();
    for alert in world.opsgenie.alerts() {
        if let Some(id) = alias_to_id.get(&alert.alias) {
            let e = alerts_per_id.entry(id).or_insert((0, true));
            e.0 += 1;
            e.1 &= alert.status == AlertStatus::Closed;
        }
    }
    let load_alerts: usize = order
        .iter()
        .filter_map(|id| alerts_per_id.get(id.as_str()))
        .map(|(n, _)| n)
        .sum();
    let duplicate_alerts: usize = alerts_per_id
        .values()
        .map(|(n, _)| n.saturating_sub(1))
        .sum();
    let all_ids = || order.iter().chain(backlog_ids.iter()).chain(warm_up.iter());
    let lost = all_ids()
        .filter(|id| !alerts_per_id.contains_key(id.as_str()))
        .count();
    let closed = all_ids()
        .filter(|id| alerts_per_id.get(id.as_str()).is_some_and(|(_, c)| *c))
        .count();
    let unclosed = all_ids().count() - closed;

    let e2c: Vec<f64> = order
        .iter()
        .filter_map(|id| {
            Some(ms_between(
                created_at[id],
                *create_received.get(id.as_str())?,
            ))
        })
        .collect();
    let aid: Vec<f64> = order
        .iter()
        .filter_map(|id| {
            Some(ms_between(
                *create_received.get(id.as_str())?,
                *alert_id_at.get(id)?,
            ))
        })
        .collect();
    let first_created = order
        .first()
        .map(|id| created_at[id])
        .unwrap_or(load_started_at);
    let last_create = create_received
        .iter()
        .filter(|(id, _)| created_at.contains_key(**id))
        .map(|(_, t)| *t)
        .max();
    let create_throughput = last_create
        .map(|t| ms_between(first_created, t) / 1e3)
        .filter(|s| *s > 0.0)
        .map(|s| {
            create_received
                .iter()
                .filter(|(id, _)| created_at.contains_key(**id))
                .count() as f64
                / s
        });
    let last_resolved = resolved_at.values().max().copied();
    let e2e_throughput = last_resolved
        .map(|t| ms_between(first_created, t) / 1e3)
        .filter(|s| *s > 0.0)
        .map(|s| resolved_at.len() as f64 / s);
    // What the limiter meters: every Alert-domain call while the alerts were being created
    // (closes wait for the last create in limited runs, so this is creates and status polls).
    let alert_calls_per_s = first_create_received(&create_received, &created_at)
        .zip(last_create)
        .and_then(|(from, to)| {
            let s = ms_between(from, to) / 1e3;
            let n = backend_calls
                .iter()
                .filter(|c| c.received_at >= from && c.received_at <= to)
                .filter(|c| alert_domain(&c.method, &c.api_path))
                .count();
            (s > 0.0).then(|| n as f64 / s)
        });
    let approve_ms: Vec<f64> = order
        .iter()
        .filter_map(|id| Some(ms_between(created_at[id], approved_by_daemon(&world, id)?)))
        .collect();
    // A request's cost, from a run without a backlog (whose approvals and closes would be
    // counted too): the daemon's Teleport calls and every backend call during the load.
    let lifecycles = order.len() + warm_up.iter().count();
    let per_request = |n: usize| {
        (spec.backlog == 0 && lifecycles > 0).then(|| round(n as f64 / lifecycles as f64, 2))
    };
    let delta = |methods: &[&str]| -> usize {
        methods
            .iter()
            .map(|m| {
                let at = |calls: &BTreeMap<&str, usize>| calls.get(m).copied().unwrap_or(0);
                at(&calls_at_end).saturating_sub(at(&calls_before_load))
            })
            .sum()
    };
    let teleport_calls: serde_json::Map<String, Value> = calls_at_end
        .keys()
        .map(|m| (m.to_string(), json!(per_request(delta(&[m])))))
        .collect();
    let load_backend_calls = backend_calls
        .iter()
        .filter(|c| c.received_at >= load_started_at)
        .count();
    let handled = (spec.requests + spec.backlog).max(1) as f64;
    let load_cpu = (end.sched_s - before_load.sched_s).max(0.0);
    let resync_cpu = (resynced.sched_s - connected.sched_s).max(0.0);
    let mib = |v: f64| round(v, 1);

    Ok(json!({
        "run": spec.name,
        "requests": spec.requests,
        "rate_per_s": spec.rate,
        "processing_delay_ms": spec.processing_delay_ms,
        "backlog": spec.backlog,
        "alerts_created": load_alerts,
        "create_posts": create_posts,
        "duplicate_alerts": duplicate_alerts,
        "lost": lost,
        "closed": closed,
        "unclosed": unclosed,
        "timed_out": timed_out,
        "http_429": world.opsgenie.throttled_count(),
        "create_throughput_per_s": create_throughput.map(|v| round(v, 1)),
        "e2e_throughput_per_s": e2e_throughput.map(|v| round(v, 1)),
        "backend_limit_per_s": limit,
        "alert_calls_per_s": alert_calls_per_s.map(|v| round(v, 1)),
        // Alert-domain calls per second against the limit: whether the daemon uses the budget
        // it is given (creates share it with their status polls, opsgenie-api.md §8).
        "throughput_ratio": alert_calls_per_s.filter(|_| limit > 0).map(|v| round(v / f64::from(limit), 3)),
        "create_ratio": create_throughput.filter(|_| limit > 0).map(|v| round(v / f64::from(limit), 3)),
        "event_to_create_ms": percentiles(e2c, &[("p50", 0.5), ("p95", 0.95), ("p99", 0.99)]),
        "alert_id_ms": percentiles(aid, &[("p50", 0.5), ("p99", 0.99)]),
        "approve_ms": percentiles(approve_ms, &[("p50", 0.5), ("p99", 0.99)]),
        "teleport_writes_per_request": per_request(delta(&TELEPORT_WRITES)),
        "teleport_reads_per_request": per_request(delta(&TELEPORT_READS)),
        "backend_calls_per_request": per_request(load_backend_calls),
        "teleport_calls_per_request": teleport_calls,
        "connect_s": round(connect_s, 3),
        "resync_s": round(resync_s, 3),
        "resync_writes": resync_writes,
        "resync_cpu_s": round(resync_cpu, 4),
        "resync_cpu_us_per_request": (spec.backlog > 0).then(|| round(resync_cpu * 1e6 / spec.backlog as f64, 1)),
        "backlog_setup_s": round(backlog_setup_s, 2),
        "load_s": round(load_s, 3),
        // After the resync and a pause: the peak it caused, and what the process kept.
        "resync_peak_rss_mib": mib(before_load.hwm_mib),
        "idle_rss_mib": mib(before_load.rss_mib),
        "end_rss_mib": mib(end.rss_mib),
        "peak_rss_mib": mib(end.hwm_mib),
        "cpu_s": round(end.cpu_s, 2),
        "load_cpu_s": round(load_cpu, 3),
        "cpu_us_per_request": round(load_cpu * 1e6 / handled, 1),
    }))
}

/// When the first load request's create reached the fake.
fn first_create_received(
    create_received: &HashMap<&str, SystemTime>,
    created_at: &HashMap<String, SystemTime>,
) -> Option<SystemTime> {
    create_received
        .iter()
        .filter(|(id, _)| created_at.contains_key(**id))
        .map(|(_, t)| *t)
        .min()
}

/// When the daemon's approving review of `id` arrived, if it has reviewed it.
fn approved_by_daemon(world: &World, id: &str) -> Option<SystemTime> {
    let request = world.teleport.request(id)?;
    let review =
        request.spec?.reviews.into_iter().find(|r| {
            r.author == PLUGIN_USER && r.proposed_state == RequestState::Approved as i32
        })?;
    let at = review.created?;
    Some(
        UNIX_EPOCH
            + Duration::new(
                u64::try_from(at.seconds).ok()?,
                u32::try_from(at.nanos).ok()?,
            ),
    )
}
