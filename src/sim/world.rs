//! A whole world on loopback: the fake Teleport with the users and roles of Teleport's guide
//! "Access Requests with Opsgenie", the fake Opsgenie with its schedules, identity files, and a
//! configuration for the daemon that points at both. Tests, the sandbox and the load test all
//! start from here, so they exercise the same setup a user would deploy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{BackendKind, Config, ConnectMode, Secret};
use crate::sim::jsm::{FakeJsm, FakeJsmOptions};
use crate::sim::opsgenie::{FakeOpsgenie, FakeOpsgenieOptions};
use crate::sim::pki::KeyKind;
use crate::sim::proxy::FakeProxy;
use crate::sim::teleport::{FakeTeleport, FakeTeleportOptions};

/// The plugin's Teleport user.
pub const PLUGIN_USER: &str = "access-plugin";
/// The guide's requester.
pub const REQUESTER: &str = "myuser";
/// A requester whose requests need two approvals.
pub const TEAM_REQUESTER: &str = "requester1@example.com";
/// Reviewers allowed to review `editor` requests.
pub const REVIEWERS: [&str; 2] = ["reviewer1@example.com", "reviewer2@example.com"];
/// A requester who is on call in the sandbox, so the daemon approves her requests.
pub const ON_CALL_REQUESTER: &str = "alice@example.com";
/// A requester on call on JSM whose Atlassian profile hides her e-mail: only an
/// `auto_approval.users` entry naming her accountId can match her.
pub const HIDDEN_REQUESTER: &str = "carol@example.com";
/// The Atlassian accountIds of the JSM world's users.
pub const ON_CALL_ACCOUNT: &str = "5b2b0e011b3a756623f4e25a";
/// The accountId of [`HIDDEN_REQUESTER`].
pub const HIDDEN_ACCOUNT: &str = "5b2b0e011b3a756623f4e25c";
/// The accountId of [`REQUESTER`] (`myuser@example.com` on JSM, not on call).
pub const REQUESTER_ACCOUNT: &str = "5b2b0e011b3a756623f4e25b";
/// An administrator for the `request` example (create, approve, deny, delete, list).
pub const ADMIN: &str = "admin";
/// The schedules the guide's requester role names.
pub const NOTIFY_SCHEDULE: &str = "teleport-access-request-notifications";
/// The team the guide's requester role names.
pub const NOTIFY_TEAM: &str = "teleport-team";
/// The schedule checked for auto-approval.
pub const APPROVAL_SCHEDULE: &str = "teleport-access-alert-schedules";

/// One user of the world: who they are, their roles, and what they are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldUser {
    /// The Teleport user name.
    pub name: &'static str,
    /// Their roles.
    pub roles: &'static [&'static str],
    /// What they are for, in a few words.
    pub purpose: &'static str,
}

/// Every user the world creates, in the order the sandbox lists them.
pub const USERS: [WorldUser; 8] = [
    WorldUser {
        name: PLUGIN_USER,
        roles: &["access-plugin", "access-plugin-approver"],
        purpose: "the daemon's own identity",
    },
    WorldUser {
        name: REQUESTER,
        roles: &["requester"],
        purpose: "the guide's requester (not on call)",
    },
    WorldUser {
        name: TEAM_REQUESTER,
        roles: &["team-requester"],
        purpose: "a requester whose requests need two approvals",
    },
    WorldUser {
        name: ON_CALL_REQUESTER,
        roles: &["requester"],
        purpose: "a requester on call in the sandbox, so the daemon approves her requests",
    },
    WorldUser {
        name: HIDDEN_REQUESTER,
        roles: &["requester"],
        purpose:
            "on call on JSM with a hidden e-mail, matched through an auto_approval.users entry",
    },
    WorldUser {
        name: REVIEWERS[0],
        roles: &["reviewer"],
        purpose: "may review editor requests",
    },
    WorldUser {
        name: REVIEWERS[1],
        roles: &["reviewer"],
        purpose: "may review editor requests",
    },
    WorldUser {
        name: ADMIN,
        roles: &["sandbox-admin"],
        purpose: "creates, reviews and deletes requests for the `request` example",
    },
];

/// Roles shipped in `config/`, so the sandbox uses exactly what users are told to create.
const SHIPPED_ROLES: [&str; 4] = [
    include_str!("../../config/access-plugin.yaml"),
    include_str!("../../config/requester.yaml"),
    include_str!("../../config/reviewer.yaml"),
    include_str!("../../config/editor.yaml"),
];

/// Roles only the sandbox needs: auto-approval rights for the plugin, a requester whose
/// requests need two approvals, and an administrator.
const SANDBOX_ROLES: [&str; 3] = [
    r#"
kind: role
version: v7
metadata:
  name: access-plugin-approver
spec:
  allow:
    review_requests:
      roles: ['editor']
"#,
    r#"
kind: role
version: v7
metadata:
  name: team-requester
spec:
  allow:
    request:
      roles: ['editor']
      thresholds:
        - approve: 2
          deny: 2
      annotations:
        teleport.dev/notify-services: ['teleport-access-request-notifications']
        teleport.dev/teams: ['teleport-team']
        teleport.dev/schedules: ['teleport-access-alert-schedules']
"#,
    r#"
kind: role
version: v7
metadata:
  name: sandbox-admin
spec:
  allow:
    rules:
      - resources: ['access_request']
        verbs: ['list', 'read', 'create', 'update', 'delete']
      - resources: ['access_plugin_data']
        verbs: ['list', 'read', 'update']
    review_requests:
      roles: ['editor']
"#,
];

/// Why the world could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// A fake or a file could not be set up.
    #[error("{0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> WorldError + '_ {
    move |e| WorldError::Setup(format!("{what}: {e}"))
}

/// How to build a world.
#[derive(Debug, Clone, Default)]
pub struct WorldOptions {
    /// The fake Teleport.
    pub teleport: FakeTeleportOptions,
    /// The fake Opsgenie.
    pub opsgenie: FakeOpsgenieOptions,
    /// Where identity files go (a fresh temporary folder when unset).
    pub dir: Option<PathBuf>,
    /// A fake JSM Operations too, and the daemon's configuration on `backend: jsm`.
    pub jsm: Option<FakeJsmOptions>,
}

/// The fakes, and the files the daemon needs to talk to them.
pub struct World {
    /// The fake Teleport Auth server.
    pub teleport: FakeTeleport,
    /// The fake Opsgenie.
    pub opsgenie: FakeOpsgenie,
    /// The fake JSM Operations, in a world on `backend: jsm`.
    pub jsm: Option<FakeJsm>,
    /// The schedule ids of the fake JSM, by name.
    pub jsm_schedules: Vec<(String, String)>,
    /// Folder with the identity files.
    pub dir: PathBuf,
    /// The plugin's identity file.
    pub plugin_identity: PathBuf,
    /// The administrator's identity file.
    pub admin_identity: PathBuf,
    /// Whether `dir` is a temporary folder this world made (removed when it is dropped), rather
    /// than one the caller named (kept, like the sandbox's `--serve` folder).
    made_dir: bool,
}

impl Drop for World {
    fn drop(&mut self) {
        if self.made_dir {
            // Best effort: a test that fails leaves nothing worse than before.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl World {
    /// Keeps the folder when the world is dropped (a failed chaos run keeps its replicas' logs
    /// for whoever reads the failure).
    pub fn keep_dir(&mut self) {
        self.made_dir = false;
    }

    /// Starts both fakes with the guide's users, roles and schedules.
    pub async fn start(options: WorldOptions) -> Result<World, WorldError> {
        let teleport = FakeTeleport::start(options.teleport)
            .await
            .map_err(setup("starting the fake Teleport"))?;
        for text in SHIPPED_ROLES.iter().chain(SANDBOX_ROLES.iter()) {
            for doc in text.split("\n---") {
                if doc.contains("kind: role") {
                    teleport
                        .add_role_yaml(doc)
                        .map_err(setup("loading a role"))?;
                }
            }
        }
        for user in USERS {
            teleport.add_user(user.name, user.roles.iter().copied());
        }

        let opsgenie = FakeOpsgenie::start(options.opsgenie)
            .await
            .map_err(setup("starting the fake Opsgenie"))?;
        opsgenie.add_schedule(NOTIFY_SCHEDULE, None, &[]);
        opsgenie.add_schedule(APPROVAL_SCHEDULE, None, &[]);
        // Responders are resolved by name, as Opsgenie does: the team the guide's roles name
        // must exist for the alert to reach it.
        opsgenie.add_team(NOTIFY_TEAM, None);

        let (jsm, jsm_schedules) = match options.jsm {
            Some(jsm_options) => {
                let (jsm, schedules) = start_jsm(jsm_options).await?;
                (Some(jsm), schedules)
            }
            None => (None, Vec::new()),
        };

        let made_dir = options.dir.is_none();
        let dir = match options.dir {
            Some(dir) => dir,
            None => temp_dir()?,
        };
        std::fs::create_dir_all(&dir).map_err(setup("creating the world's folder"))?;
        let plugin_identity = dir.join("plugin-identity");
        let admin_identity = dir.join("admin-identity");
        write_identity(&teleport, &plugin_identity, PLUGIN_USER)?;
        write_identity(&teleport, &admin_identity, ADMIN)?;
        Ok(World {
            teleport,
            opsgenie,
            jsm,
            jsm_schedules,
            dir,
            plugin_identity,
            admin_identity,
            made_dir,
        })
    }

    /// A configuration for the daemon against this world: direct to the fake Auth server,
    /// the fake Opsgenie's URL and key, no HTTP listener, quick retries.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.teleport.addr = self.teleport.addr().to_string();
        config.teleport.mode = ConnectMode::Auth;
        config.teleport.identity = Some(self.plugin_identity.clone());
        config.teleport.web_proxy_addr = Some("teleport.example.com".into());
        config.opsgenie.api_url = Some(self.opsgenie.url());
        config.opsgenie.api_key = Some(Secret::new(self.opsgenie.api_key()));
        config.opsgenie.rate_limits.alert.per_second = 0;
        config.opsgenie.rate_limits.alert.per_minute = 0;
        config.opsgenie.rate_limits.search.per_second = 0;
        config.opsgenie.rate_limits.search.per_minute = 0;
        config.opsgenie.rate_limits.schedule_oncalls.per_second = 0;
        config.opsgenie.rate_limits.schedule_oncalls.per_minute = 0;
        if let Some(jsm) = &self.jsm {
            let o = &mut config.opsgenie;
            o.backend = BackendKind::Jsm;
            o.api_url = Some(jsm.integration_url());
            o.api_key = Some(Secret::new(crate::sim::jsm::DEFAULT_GENIE_KEY));
            o.jsm.email = Some(crate::sim::jsm::DEFAULT_EMAIL.into());
            o.jsm.api_token = Some(Secret::new(crate::sim::jsm::DEFAULT_API_TOKEN));
            // The site, so the cloudId is looked up as a user's `site:` makes it.
            o.jsm.site = Some(jsm.url());
            o.jsm.rest_url = Some(format!("{}{}", jsm.url(), crate::sim::jsm::REST_PREFIX));
        }
        config.opsgenie.rate_limits.configuration.per_second = 0;
        config.opsgenie.rate_limits.configuration.per_minute = 0;
        config.http.enabled = false;
        config.daemon.retry_min_delay = Duration::from_millis(20);
        config.daemon.retry_max_delay = Duration::from_millis(500);
        config.daemon.shutdown_timeout = Duration::from_secs(5);
        config
    }

    /// Starts a fake Proxy with TLS routing in front of the fake Auth server. Point
    /// `teleport.addr` at its [`FakeProxy::addr`] to connect the way Teleport Cloud users do.
    pub async fn start_proxy(&self) -> Result<FakeProxy, WorldError> {
        FakeProxy::start(self.teleport.cluster_name(), self.teleport.addr())
            .await
            .map_err(setup("starting the fake Proxy"))
    }

    /// Writes `config` as YAML to `name` in the world's folder, for a daemon process; its API
    /// key goes to a file of its own next to it (`api_key_file`), as users are told to. The
    /// configuration file's path.
    pub fn write_config_file(&self, mut config: Config, name: &str) -> Result<PathBuf, WorldError> {
        let key_file = self.dir.join("opsgenie-api-key");
        let key = config
            .opsgenie
            .api_key
            .take()
            .map(|k| k.expose().to_owned())
            .unwrap_or_default();
        std::fs::write(&key_file, key).map_err(setup("writing the API key file"))?;
        config.opsgenie.api_key_file = Some(key_file);
        if let Some(token) = config.opsgenie.jsm.api_token.take() {
            let token_file = self.dir.join("jsm-api-token");
            std::fs::write(&token_file, token.expose())
                .map_err(setup("writing the API token file"))?;
            config.opsgenie.jsm.api_token_file = Some(token_file);
        }
        let yaml = serde_yaml::to_string(&config).map_err(setup("writing the configuration"))?;
        let path = self.dir.join(name);
        std::fs::write(&path, yaml).map_err(setup("writing the configuration"))?;
        Ok(path)
    }

    /// The id of the fake JSM's schedule `name`, if this world has it.
    pub fn jsm_schedule(&self, name: &str) -> Option<&str> {
        self.jsm_schedules
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.as_str())
    }

    /// Rewrites the plugin's identity file with a fresh certificate.
    pub fn rotate_plugin_identity(&self) -> Result<(), WorldError> {
        write_identity(&self.teleport, &self.plugin_identity, PLUGIN_USER)
    }
}

/// The fake JSM with the guide's schedules, its team, and the users: the on-call requester with
/// a visible e-mail, the hidden-e-mail requester, the guide's requester.
async fn start_jsm(
    options: FakeJsmOptions,
) -> Result<(FakeJsm, Vec<(String, String)>), WorldError> {
    let jsm = FakeJsm::start(options)
        .await
        .map_err(setup("starting the fake JSM"))?;
    jsm.add_user(ON_CALL_ACCOUNT, "Alice", ON_CALL_REQUESTER, true);
    jsm.add_user(HIDDEN_ACCOUNT, "Carol", HIDDEN_REQUESTER, false);
    jsm.add_user(REQUESTER_ACCOUNT, "My User", "myuser@example.com", true);
    let schedules = [NOTIFY_SCHEDULE, APPROVAL_SCHEDULE]
        .into_iter()
        .map(|name| (name.to_owned(), jsm.add_schedule(name, None, &[])))
        .collect();
    Ok((jsm, schedules))
}

fn write_identity(teleport: &FakeTeleport, path: &Path, user: &str) -> Result<(), WorldError> {
    teleport
        .pki()
        .write_identity_file(
            path,
            user,
            Duration::from_secs(24 * 3600),
            KeyKind::EcdsaP256,
        )
        .map_err(setup("writing an identity file"))
}

fn temp_dir() -> Result<PathBuf, WorldError> {
    let dir = std::env::temp_dir().join(format!(
        "teleport-opsgenie-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).map_err(setup("creating a temporary folder"))?;
    Ok(dir)
}
