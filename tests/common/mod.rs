//! Helpers shared by the integration tests: a World and waits on what the daemon does to it,
//! the daemon's HTTP endpoints, reading Prometheus text, and running the real binary as a
//! child process against a World. Each test file uses some of them.
#![allow(dead_code)]
// The waits here have real deadlines: they poll real servers and child processes, which no
// paused clock drives.
#![allow(clippy::disallowed_methods)]

pub mod jsm;
pub mod shift;

use std::collections::BTreeMap;
use std::time::Duration;

use teleport_opsgenie::core::render::alias;
use teleport_opsgenie::sim::opsgenie::{Alert, AlertStatus};
use teleport_opsgenie::sim::teleport::FakeTeleport;
use teleport_opsgenie::sim::world::{World, WorldOptions};

/// How long to wait for anything the daemon should do.
pub const WAIT: Duration = Duration::from_secs(30);

/// A World with the default options.
pub async fn world() -> World {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    World::start(WorldOptions::default())
        .await
        .expect("world starts")
}

/// Creates a request by `user` for `editor`; its id.
pub fn request(world: &World, user: &str, reason: &str) -> String {
    world
        .teleport
        .create_request(user, &["editor"], reason)
        .expect("request created")
        .metadata
        .expect("metadata")
        .name
}

/// Waits until the alert of request `id` exists and satisfies `f`; the alert.
pub async fn alert_where(world: &World, id: &str, what: &str, f: impl Fn(&Alert) -> bool) -> Alert {
    let alias = alias(id);
    world
        .opsgenie
        .wait_until(WAIT, what, |o| {
            o.alert_by_alias(&alias).is_some_and(|a| f(&a))
        })
        .await
        .unwrap_or_else(|e| panic!("{id}: {what}: {e}"));
    world.opsgenie.alert_by_alias(&alias).expect("alert")
}

/// Waits until request `id` has an alert; the alert.
pub async fn alert(world: &World, id: &str) -> Alert {
    alert_where(world, id, "alert created", |_| true).await
}

/// Waits until the alert of request `id` is closed; the alert.
pub async fn closed(world: &World, id: &str) -> Alert {
    alert_where(world, id, "alert closed", |a| {
        a.status == AlertStatus::Closed
    })
    .await
}

/// Whether request `id`'s plugin data holds an alert id.
pub fn has_alert_id(teleport: &FakeTeleport, id: &str) -> bool {
    teleport
        .plugin_data(id, "opsgenie")
        .is_some_and(|d| d.get("alert_id").is_some_and(|v| !v.is_empty()))
}

/// Waits until request `id`'s plugin data holds `key = value`; the whole entry.
pub async fn recorded(world: &World, id: &str, key: &str, value: &str) -> BTreeMap<String, String> {
    world
        .teleport
        .wait_until(WAIT, "plugin data recorded", |t| {
            t.plugin_data(id, "opsgenie")
                .is_some_and(|d| d.get(key).map(String::as_str) == Some(value))
        })
        .await
        .unwrap_or_else(|e| panic!("{id}: {key}={value} in plugin data: {e}"));
    world
        .teleport
        .plugin_data(id, "opsgenie")
        .expect("plugin data")
}

/// Waits until request `id`'s plugin data records its alert's id; that id.
pub async fn alert_id_recorded(world: &World, id: &str) -> String {
    world
        .teleport
        .wait_until(WAIT, "alert id recorded", |t| has_alert_id(t, id))
        .await
        .unwrap_or_else(|e| panic!("{id}: alert id recorded: {e}"));
    world
        .teleport
        .plugin_data(id, "opsgenie")
        .expect("plugin data")["alert_id"]
        .clone()
}

/// Alert creations the backend received (not notes or closes, which share the path prefix).
pub fn creates(world: &World) -> usize {
    world
        .opsgenie
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.api_path == "/v2/alerts")
        .count()
}

pub mod http {
    //! The daemon's HTTP endpoints.

    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use super::prom::{parse, value, Sample};
    use super::WAIT;

    /// `GET http://addr/path`: the status and the body.
    pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let response = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("HTTP answer");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// Polls `path` until it answers `status`; the body.
    pub async fn until_status(addr: SocketAddr, path: &str, status: u16) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let (got, body) = get(addr, path).await;
            if got == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} still answers {got} ({body:?}), expected {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `/metrics`, parsed.
    pub async fn scrape(addr: SocketAddr) -> Vec<Sample> {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        parse(&body).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{body}"))
    }

    /// Scrapes until metric `name` (summed over the series with `labels`) is at least `min`;
    /// that scrape.
    pub async fn until_metric(
        addr: SocketAddr,
        name: &str,
        labels: &[(&str, &str)],
        min: f64,
    ) -> Vec<Sample> {
        let deadline = Instant::now() + WAIT;
        loop {
            let samples = scrape(addr).await;
            if value(&samples, name, labels).is_some_and(|v| v >= min) {
                return samples;
            }
            assert!(Instant::now() < deadline, "{name} never reached {min}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub mod prom {
    //! Reads Prometheus' text exposition format with the `prometheus-parse` crate.

    use std::collections::BTreeMap;

    /// One sample line.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        /// Metric name (with `_bucket`, `_sum`, `_count` for histograms).
        pub name: String,
        /// Label pairs.
        pub labels: BTreeMap<String, String>,
        /// The value.
        pub value: f64,
    }

    /// Parses a whole exposition into one [`Sample`] per sample line. The crate skips lines it
    /// cannot read; counting the sample lines makes such a skip an error here.
    pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
        use prometheus_parse::{Scrape, Value};
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .map_err(|e| format!("unreadable exposition: {e}"))?;
        let mut samples = Vec::new();
        for s in scrape.samples {
            let labels: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => samples.push(Sample {
                    name: s.metric,
                    labels,
                    value: v,
                }),
                Value::Histogram(buckets) => {
                    for bucket in buckets {
                        let mut labels = labels.clone();
                        labels.insert("le".into(), bucket.less_than.to_string());
                        samples.push(Sample {
                            name: format!("{}_bucket", s.metric),
                            labels,
                            value: bucket.count,
                        });
                    }
                }
                Value::Summary(_) => return Err(format!("{}: unexpected summary", s.metric)),
            }
        }
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        if lines != samples.len() {
            return Err(format!(
                "{lines} sample lines but {} samples read",
                samples.len()
            ));
        }
        Ok(samples)
    }

    /// The sum of the values of metric `name` over the series with `labels` (a subset).
    pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        if matching.is_empty() {
            None
        } else {
            Some(matching.iter().sum())
        }
    }
}

pub mod child {
    //! The real binary as a child process, configured for a World.

    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use teleport_opsgenie::sim::world::World;

    /// A YAML configuration for the binary against `world`, with JSON logs at `level`, the HTTP
    /// listener on a free loopback port, and `extra` appended (top-level sections).
    pub fn write_config(world: &World, level: &str, shutdown_timeout: &str) -> PathBuf {
        let key_file = world.dir.join("api-key");
        std::fs::write(&key_file, world.opsgenie.api_key()).expect("key file");
        let path = world.dir.join("teleport-opsgenie.yaml");
        let zero = "{ per_second: 0, per_minute: 0 }";
        let text = format!(
            "teleport:\n  addr: \"{addr}\"\n  mode: auth\n  identity: \"{identity}\"\n  web_proxy_addr: teleport.example.com\n\
             opsgenie:\n  api_url: \"{url}\"\n  api_key_file: \"{key}\"\n  rate_limits:\n    alert: {zero}\n    search: {zero}\n    schedule_oncalls: {zero}\n    heartbeat: {zero}\n\
             http:\n  enabled: true\n  listen: 127.0.0.1:0\n\
             log:\n  level: {level}\n  format: json\n\
             daemon:\n  retry_min_delay: 20ms\n  retry_max_delay: 500ms\n  shutdown_timeout: {shutdown_timeout}\n",
            addr = world.teleport.addr(),
            identity = world.plugin_identity.display(),
            url = world.opsgenie.url(),
            key = key_file.display(),
        );
        std::fs::write(&path, text).expect("config file");
        path
    }

    /// A running `teleport-opsgenie start`, its standard error collected line by line.
    pub struct Daemon {
        pub child: Child,
        pub lines: Arc<Mutex<Vec<String>>>,
        pub stdout: Arc<Mutex<Vec<String>>>,
        /// The threads reading standard error and output; they end at end of file.
        readers: Vec<JoinHandle<()>>,
    }

    fn collect(
        reader: impl std::io::Read + Send + 'static,
    ) -> (Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let thread = std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        (lines, thread)
    }

    /// Runs the binary with `args`, logs collected.
    pub fn spawn(args: &[&str], config: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_teleport-opsgenie"))
            .args(args)
            .arg("-c")
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        let (lines, stderr_reader) = collect(child.stderr.take().expect("stderr"));
        let (stdout, stdout_reader) = collect(child.stdout.take().expect("stdout"));
        Daemon {
            child,
            lines,
            stdout,
            readers: vec![stderr_reader, stdout_reader],
        }
    }

    impl Daemon {
        /// Everything logged so far.
        pub fn logs(&self) -> Vec<String> {
            self.lines.lock().unwrap().clone()
        }

        /// Waits (polling, with a deadline) for a log line satisfying `f`; the line.
        pub async fn wait_log(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(line) = self.logs().into_iter().find(|l| f(l)) {
                    return line;
                }
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "the daemon exited ({status}) before {what}:\n{}",
                        self.logs().join("\n")
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}:\n{}",
                    self.logs().join("\n")
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        /// The HTTP listener's address, from its log line.
        pub async fn http_addr(&mut self) -> SocketAddr {
            let line = self
                .wait_log("the HTTP listener", |l| l.contains("Serving /healthz"))
                .await;
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            v["addr"]
                .as_str()
                .expect("addr field")
                .parse()
                .expect("address")
        }

        /// Sends a signal with `kill`.
        pub fn signal(&self, name: &str) {
            let status = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(self.child.id().to_string())
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill -{name} failed");
        }

        /// Waits for the process to exit within `limit`; its status and how long it took.
        pub async fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
            let start = Instant::now();
            loop {
                if let Some(status) = self.child.try_wait().expect("try_wait") {
                    let took = start.elapsed();
                    self.drained().await;
                    return (status, took);
                }
                if start.elapsed() > limit {
                    let _ = self.child.kill();
                    panic!(
                        "the daemon did not exit within {limit:?}:\n{}",
                        self.logs().join("\n")
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        /// Waits (polling, with a deadline) until everything the exited process wrote has been
        /// read, so that [`Daemon::logs`] is complete.
        pub async fn drained(&self) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !self.readers.iter().all(JoinHandle::is_finished) {
                assert!(Instant::now() < deadline, "the daemon's output never ended");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
