//! The daemon as a child process, and what `/proc` says about it.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The daemon process; stopped (TERM, then KILL) when dropped.
pub struct DaemonProcess {
    pub child: Child,
}

impl DaemonProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    pub async fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What `/proc` says about the daemon.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime of the process (all threads, dead ones too), seconds.
    pub cpu_s: f64,
    /// Sum of the live threads' on-CPU time from `schedstat` (nanosecond precision), seconds.
    pub sched_s: f64,
    /// Resident now (`VmRSS`), MiB.
    pub rss_mib: f64,
    /// Highest resident so far (`VmHWM`), MiB.
    pub hwm_mib: f64,
}

pub fn usage(pid: u32) -> Usage {
    let mut u = Usage::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            if let (Some(ut), Some(st)) = (ticks(11), ticks(12)) {
                u.cpu_s = (ut + st) / clock_ticks();
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            let kib = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            };
            if line.starts_with("VmRSS:") {
                u.rss_mib = kib(line).unwrap_or(0.0) / 1024.0;
            } else if line.starts_with("VmHWM:") {
                u.hwm_mib = kib(line).unwrap_or(0.0) / 1024.0;
            }
        }
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                if let Some(ns) = s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    u.sched_s += ns / 1e9;
                }
            }
        }
    }
    u
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}
