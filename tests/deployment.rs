//! The process supervision files (`config/teleport-opsgenie.service`, `Dockerfile`,
//! `config/kubernetes.yaml`) against the binary they run: every command line parses with the
//! real CLI, every flag exists, and ports and paths match the defaults and the sample
//! configuration.

use std::path::Path;
use std::process::Command;

use teleport_opsgenie::config::load::DEFAULT_CONFIG_PATH;
use teleport_opsgenie::config::{Config, HttpConfig, SAMPLE_YAML};

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn default_port() -> u16 {
    HttpConfig::default().listen.port()
}

/// Checks a command line (after the binary) against the CLI: `<args> --help` must succeed, and
/// every flag must appear in the subcommand's help.
fn check_cli(args: &[String]) {
    let bin = env!("CARGO_BIN_EXE_teleport-opsgenie");
    let sub = args.first().expect("a subcommand");
    let help = Command::new(bin)
        .args([sub.as_str(), "--help"])
        .output()
        .expect("binary runs");
    assert!(
        help.status.success(),
        "`{sub} --help` fails: not a subcommand"
    );
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    for arg in &args[1..] {
        if arg.starts_with('-') {
            assert!(
                help.contains(&format!("{arg} ")) || help.contains(&format!("{arg},")),
                "`{sub}` has no flag {arg}:\n{help}"
            );
        }
    }
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let status = Command::new(bin)
        .args(&with_help)
        .output()
        .expect("binary runs")
        .status;
    assert!(status.success(), "{args:?} does not parse");
    // The config flag names the default path, which `start` reads when `-c` is omitted.
    if let Some(i) = args.iter().position(|a| a == "-c" || a == "--config") {
        assert_eq!(args[i + 1], DEFAULT_CONFIG_PATH);
    }
}

/// The directory of the identity and key files in the sample configuration.
fn sample_secret_dir() -> String {
    let sample: Config = serde_yaml::from_str(SAMPLE_YAML).expect("sample parses");
    let identity = sample.teleport.identity.expect("sample identity");
    let key = sample.opsgenie.api_key_file.expect("sample key file");
    let dir = identity.parent().expect("identity dir");
    assert_eq!(Some(dir), key.parent(), "identity and key share a folder");
    dir.display().to_string()
}

#[test]
fn systemd_unit_matches_the_cli_and_the_sample() {
    let unit = read("config/teleport-opsgenie.service");
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    for required in [
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
    ] {
        assert!(unit.lines().any(|l| l == required), "missing {required}");
    }
    let user = value("User");
    assert_eq!(user.len(), 1);
    assert!(user[0] != "root" && !user[0].is_empty());
    let execs: Vec<String> = value("ExecStart")
        .into_iter()
        .chain(value("ExecStartPre"))
        .collect();
    assert!(!execs.is_empty());
    for exec in execs {
        let words: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
        assert!(words[0].ends_with("/teleport-opsgenie"), "{exec}");
        check_cli(&words[1..]);
    }
    assert_eq!(
        value("ExecStart")[0].split_whitespace().nth(1),
        Some("start")
    );
    // The exit codes not worth restarting on are the daemon's own.
    let prevent = value("RestartPreventExitStatus").join(" ");
    for code in prevent.split_whitespace() {
        let code: u8 = code.parse().expect("numeric exit status");
        assert!(
            [
                teleport_opsgenie::daemon::exit::USAGE,
                teleport_opsgenie::daemon::exit::CONFIG
            ]
            .contains(&code),
            "{code}"
        );
    }
    // Both codes not worth restarting on are listed: a bad configuration is not retried.
    for code in [
        teleport_opsgenie::daemon::exit::USAGE,
        teleport_opsgenie::daemon::exit::CONFIG,
    ] {
        assert!(prevent.split_whitespace().any(|c| c == code.to_string()));
    }
    // `check` runs first, but its status is ignored: RestartPreventExitStatus= reads only the
    // main process's code, so a failing ExecStartPre would be retried even after a 78.
    for pre in value("ExecStartPre") {
        assert!(pre.starts_with('-'), "ExecStartPre without `-`: {pre}");
    }
    // Every read-only path may be missing (a tbot-only host has no `tctl auth sign` folder, a
    // `tctl` host no tbot output): the `-` prefix keeps the unit from failing on it.
    let paths: Vec<String> = value("ReadOnlyPaths")
        .join(" ")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    for path in &paths {
        assert!(
            path.starts_with('-'),
            "ReadOnlyPaths entry without `-`: {path}"
        );
    }
    let paths: Vec<&str> = paths.iter().map(|p| p.trim_start_matches('-')).collect();
    assert!(paths.contains(&DEFAULT_CONFIG_PATH));
    assert!(paths.contains(&sample_secret_dir().as_str()));
    // The descriptor limit leaves room above the HTTP listener's connection cap.
    let nofile: usize = value("LimitNOFILE")[0]
        .parse()
        .expect("LimitNOFILE is a number");
    let cap = teleport_opsgenie::http::Limits::default().max_connections;
    assert!(nofile >= 4 * cap, "LimitNOFILE={nofile} for a cap of {cap}");
    assert_eq!(value("MemoryMax").len(), 1, "MemoryMax is set");
}

/// `major.minor` of a `rust-version`-like string (`1.89`, `1.89.0`).
fn minor_version(v: &str) -> (u64, u64) {
    let mut parts = v
        .trim()
        .split('.')
        .map(|p| p.parse::<u64>().expect("numeric version"));
    (
        parts.next().expect("major"),
        parts.next().unwrap_or_default(),
    )
}

#[test]
fn rust_version_is_the_locked_dependencies_floor_and_the_image_uses_it() {
    // The host's dependency graph, from the lock file and the fetched sources (the build
    // fetched them; `--offline` keeps the test off the network).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let (floor, by) = packages
        .iter()
        .filter(|p| p["name"] != env!("CARGO_PKG_NAME"))
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            Some((minor_version(v), format!("{} {}", p["name"], p["version"])))
        })
        .max()
        .expect("some dependency declares a rust-version");
    let ours = minor_version(env!("CARGO_PKG_RUST_VERSION"));
    assert_eq!(
        ours,
        floor,
        "rust-version is {}, but the locked dependencies need {}.{} ({by}): set it to that",
        env!("CARGO_PKG_RUST_VERSION"),
        floor.0,
        floor.1
    );
    let docker = read("Dockerfile");
    let image = docker
        .lines()
        .find_map(|l| l.trim().strip_prefix("FROM rust:"))
        .expect("the build stage is FROM rust:<version>");
    let tag = image.split(['-', ' ']).next().unwrap_or_default();
    assert_eq!(
        minor_version(tag),
        ours,
        "the Dockerfile builds with rust:{tag}, Cargo.toml says {}",
        env!("CARGO_PKG_RUST_VERSION")
    );
}

#[test]
fn the_docker_build_context_leaves_out_target_and_git() {
    let ignore = read(".dockerignore");
    let entries: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for needed in ["target", ".git"] {
        assert!(entries.contains(&needed), "{needed} not in .dockerignore");
    }
    // What the build needs stays in the context: the manifest, the sources, the protos, and
    // the sample configuration the binary embeds.
    for kept in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "proto",
        "config",
        "build.rs",
        "examples",
    ] {
        assert!(
            !entries
                .iter()
                .any(|e| *e == kept || e.starts_with(&format!("{kept}/"))),
            "{kept} is ignored but the build needs it"
        );
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_matches_the_cli() {
    let docker = read("Dockerfile");
    let lines: Vec<&str> = docker
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2);
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(uid != "0" && uid != "root", "{user}");
    let expose: Vec<u16> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .map(|p| p.trim().parse().expect("port"))
        .collect();
    assert_eq!(expose, vec![default_port()]);
    let json = |prefix: &str| -> Vec<String> {
        let raw = lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix}"));
        serde_json::from_str(raw).expect("exec form")
    };
    let entry = json("ENTRYPOINT ");
    assert_eq!(entry.len(), 1);
    let copied = lines
        .iter()
        .filter(|l| l.starts_with("COPY --from="))
        .any(|l| l.ends_with(&format!(" {}", entry[0])));
    assert!(
        copied,
        "the entrypoint {} is what the build copies",
        entry[0]
    );
    check_cli(&json("CMD "));
}

#[test]
fn kubernetes_manifest_matches_the_cli_ports_and_paths() {
    let text = read("config/kubernetes.yaml");
    let docs: Vec<serde_json::Value> = text
        .split("\n---")
        .map(|d| serde_yaml::from_str(d).expect("YAML document"))
        .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let deployment = kind("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    let args: Vec<String> =
        serde_json::from_value(container["args"].clone()).expect("container args");
    check_cli(&args);

    // Probes on the right paths and port.
    let ports = container["ports"].as_array().expect("ports");
    let port_of = |p: &serde_json::Value| -> u64 {
        match p {
            serde_json::Value::Number(n) => n.as_u64().expect("port"),
            serde_json::Value::String(name) => ports
                .iter()
                .find(|x| x["name"] == name.as_str())
                .and_then(|x| x["containerPort"].as_u64())
                .expect("named port"),
            _ => panic!("bad port {p}"),
        }
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(port_of(&get["port"]), u64::from(default_port()), "{probe}");
    }
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    // The embedded configuration is valid schema, listens on the default port on every
    // interface, and names files where the volumes put them.
    let map = kind("ConfigMap");
    let embedded = map["data"]["teleport-opsgenie.yaml"]
        .as_str()
        .expect("embedded config");
    let config: Config = serde_yaml::from_str(embedded).expect("embedded config parses");
    assert_eq!(config.http.listen.port(), default_port());
    assert!(config.http.listen.ip().is_unspecified());
    assert!(config.http.enabled);

    let mounts = container["volumeMounts"].as_array().expect("mounts");
    let mount = |name: &str| -> String {
        mounts
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("no mount {name}"))
            .to_owned()
    };
    assert_eq!(mount("config"), DEFAULT_CONFIG_PATH);
    let secrets = mount("secrets");
    assert_eq!(secrets, sample_secret_dir());
    let volumes = pod["volumes"].as_array().expect("volumes");
    let projected = volumes
        .iter()
        .find(|v| v["name"] == "secrets")
        .expect("secrets volume");
    let mut files = Vec::new();
    for source in projected["projected"]["sources"]
        .as_array()
        .expect("sources")
    {
        assert!(
            source["secret"]["name"].is_string(),
            "secrets come from Secrets"
        );
        for item in source["secret"]["items"].as_array().expect("items") {
            files.push(format!(
                "{secrets}/{}",
                item["path"].as_str().expect("path")
            ));
        }
    }
    let identity = config
        .teleport
        .identity
        .expect("identity")
        .display()
        .to_string();
    let key = config
        .opsgenie
        .api_key_file
        .expect("key file")
        .display()
        .to_string();
    assert!(files.contains(&identity), "{identity} not in {files:?}");
    // The identity comes from the secret key tbot's `kubernetes_secret` output writes.
    let identity_keys: Vec<String> = projected["projected"]["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .flat_map(|s| s["secret"]["items"].as_array().cloned().unwrap_or_default())
        .filter(|item| {
            identity.ends_with(&format!("/{}", item["path"].as_str().unwrap_or_default()))
        })
        .map(|item| item["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        identity_keys,
        vec!["identity".to_owned()],
        "the identity secret key"
    );
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert!(files.contains(&key), "{key} not in {files:?}");
    assert!(
        config.opsgenie.api_key.is_none(),
        "the key comes from a Secret"
    );
}

/// Every family name the daemon exports (each family given a series, so all are rendered).
fn exported_families() -> Vec<String> {
    use teleport_opsgenie::actors::gateway::{BackendCallObserver as _, CallEvent};
    use teleport_opsgenie::backend::Domain;
    use teleport_opsgenie::metrics::{Metrics, ResolutionLabel, StateLabel};
    let m = Metrics::new();
    m.on_call(&CallEvent {
        endpoint: "create_alert",
        domain: Domain::Alert,
        status: Some(429),
        duration: std::time::Duration::from_millis(5),
        attempt: 1,
        throttled: true,
        retry_in: Some(std::time::Duration::from_secs(1)),
    });
    m.requests_observed
        .get_or_create(&StateLabel { state: "pending" })
        .inc();
    m.alerts_closed
        .get_or_create(&ResolutionLabel {
            resolution: "approved",
        })
        .inc();
    m.render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The `teleport_opsgenie_*` names in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("teleport_opsgenie_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The dashboard's query expressions, with Grafana's variables replaced by what PromQL reads.
fn dashboard_exprs() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("config/monitoring/dashboard.json")).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("a target has an expr")
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$instance", ".*")
        })
        .collect()
}

#[test]
fn monitoring_files_name_only_metrics_the_daemon_exports() {
    let families = exported_families();
    assert!(families.len() >= 21, "{families:?}");
    let known = |name: &str| {
        families.iter().any(|f| {
            name == f
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.as_str()))
        })
    };
    let rules = read("config/monitoring/alerts.yaml");
    let exprs = dashboard_exprs();
    for (file, text) in [
        ("alerts.yaml", rules.clone()),
        ("dashboard.json", exprs.join("\n")),
    ] {
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} names no metric");
        for name in names {
            assert!(
                known(&name),
                "{file} names {name}, which the daemon does not export"
            );
        }
    }
    // The alerts the issue asks for are there.
    for metric in [
        "teleport_opsgenie_identity_expiry_timestamp_seconds",
        "teleport_opsgenie_backend_up",
        "teleport_opsgenie_watch_ready",
        "teleport_opsgenie_step_failures_total",
        "teleport_opsgenie_backend_throttles_total",
    ] {
        assert!(rules.contains(metric), "no alert on {metric}");
    }
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // promtool comes with Debian's `prometheus` package, which .ci/run installs.
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing in CI: .ci/run installs Debian's prometheus package"
        );
        eprintln!("promtool not installed: `apt-get install prometheus` to run this check");
        return;
    }
    // Each query as a recording rule: `promtool check rules` parses every expression.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_exprs().iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(expr).expect("JSON string is a YAML string")
        ));
    }
    let dir = std::env::temp_dir().join(format!(
        "teleport-opsgenie-dashboard-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("dashboard-rules.yaml");
    std::fs::write(&file, rules).expect("write");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "promtool check rules on the dashboard's queries: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
