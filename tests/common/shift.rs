//! Helpers of the shift-end tests (`tests/shift.rs` on Opsgenie, `tests/shift_jsm.rs` on JSM):
//! the `lock` rule, the daemon's config and start on an adjustable clock, stored times.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use teleport_opsgenie::clock::Clock;
use teleport_opsgenie::config::Config;
use teleport_opsgenie::core::shift_policy::ShiftEndMode;
use teleport_opsgenie::daemon::{Daemon, RunOptions};
use teleport_opsgenie::sim::world::{World, PLUGIN_USER};

/// The `lock` rule of config/access-plugin.yaml, uncommented.
pub const LOCKER: &str = r#"
kind: role
version: v7
metadata:
  name: shift-locker
spec:
  allow:
    rules:
      - resources: ['lock']
        verbs: ['create', 'update', 'read']
"#;

/// Gives the plugin's user the `lock` rule.
pub fn plugin_may_lock(world: &World) {
    world.teleport.add_role_yaml(LOCKER).expect("role");
    world.teleport.add_user(
        PLUGIN_USER,
        ["access-plugin", "access-plugin-approver", "shift-locker"],
    );
}

pub fn config(world: &World, mode: ShiftEndMode) -> Config {
    let mut config = world.config();
    config.auto_approval.enabled = true;
    config.auto_approval.lookup_retries = 1;
    config.auto_approval.shift_end = mode;
    config
}

pub async fn start(config: Config, clock: &Clock, replica: &str) -> Daemon {
    Daemon::start(
        config,
        RunOptions {
            replica: Some(replica.to_owned()),
            clock: clock.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("daemon starts")
}

pub fn ms(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
        .to_string()
}
