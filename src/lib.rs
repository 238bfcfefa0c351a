//! teleport-opsgenie: turns Teleport access requests into Opsgenie (or Jira Service Management
//! Operations) alerts, notes every review, closes the alert when the request is resolved, and
//! approves requests from engineers who are on call, under a configurable policy.
//!
//! # Layout
//!
//! - [`core`]: the functional core. What to do next for a request (`plan`), what the alert says
//!   (`render`), how progress is stored in Teleport (`plugin_data`), whether to auto-approve
//!   (`policy`). Plain functions, no I/O.
//! - [`actors`]: thin actix shells around the core. `EventStream` watches Teleport and resyncs
//!   after every (re)connect, `Gateway` is the only HTTP caller, `OnCallCache` answers "who is on
//!   call".
//! - [`pipeline`]: the request pipeline. `Requests` keeps one `RequestActor` per request id;
//!   `reconcile` is one request's side effects: read plugin data, plan, act, record by
//!   compare-and-swap; `effects` are the real ones; `sweep` closes orphaned alerts.
//! - [`teleport`]: the gRPC client, identity files and TLS.
//! - [`backend`]: the on-call backends (Opsgenie v2, JSM Operations), retry classification and
//!   rate limiting.
//! - [`config`]: layered settings and their validation.
//! - `sim` (feature `sim`): fake Teleport and fake Opsgenie for tests, examples and load tests.

// Lints for the whole library; `clippy.toml` adds the async daemon's footguns.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]
#![warn(clippy::dbg_macro, clippy::todo, clippy::unimplemented)]

pub mod actors;
pub mod backend;
pub mod check;
pub mod config;
pub mod core;
pub mod daemon;
pub mod file_mode;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod telemetry;
pub mod teleport;

#[cfg(feature = "sim")]
pub mod sim;

/// Code generated from our subset of Teleport's Auth API in `proto/`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    /// Teleport's `wrappers` package.
    pub mod wrappers {
        tonic::include_proto!("wrappers");
    }
    /// Teleport's `types` package.
    pub mod types {
        tonic::include_proto!("types");
    }
    /// Teleport's `proto` package: the Auth service.
    pub mod proto {
        tonic::include_proto!("proto");
    }
}

pub use daemon::{run, Daemon};
