//! teleport-opsgenie: turns Teleport access requests into Opsgenie (or Jira Service Management
//! Operations) alerts, notes every review, closes the alert when the request is resolved, and
//! approves requests from engineers who are on call, under a configurable policy.
//!
//! # Layout (the README's "Architecture" section has the picture and the rules)
//!
//! - [`core`]: the functional core. What to do next for a request (`plan`), what the alert says
//!   (`render`, `alert`), how progress is stored in Teleport (`plugin_data`), whether to
//!   auto-approve (`policy`), who of those on call is the requester (`oncall_user`: e-mails,
//!   JSM accountIds), which alerts are orphans (`sweep`), when a shift ends (`shift`),
//!   what that does to an approval (`shift_policy`) and the revocation at shift end (`revocation` as stored, `revoke` its steps; the steps themselves are `step`).
//!   Plain functions and data; imports nothing but std, serde, thiserror and time types.
//! - [`pipeline`]: the request pipeline. `Requests` keeps one `RequestActor` per request id;
//!   `reconcile` is one step under a claim (plan, act, confirm, record by compare-and-swap);
//!   `attempt` and `verify` confirm writes and settle unknown outcomes; `error_policy` maps each
//!   typed error to what happens next; `effects` are the real Teleport and backend; `sweep` hands
//!   orphaned alerts to the same steps.
//! - [`actors`]: the long-lived, supervised actors. `EventStream` watches Teleport and resyncs
//!   after every (re)connect, `Gateway` is the only HTTP caller (rate limits, concurrency,
//!   retries), `OnCallCache` answers "who is on call" (on JSM through
//!   `oncall_jsm`: schedule ids, accountIds, e-mails), `TimelineCache` when shifts end,
//!   `Sweeper` runs the orphan sweep,
//!   `IdentityWatcher` picks up renewed identities, `Monitor` is what the probes read.
//! - [`teleport`]: the gRPC client, identity files, TLS, the identity's own roles.
//! - [`backend`]: the on-call backends as codecs (Opsgenie v2, JSM Operations), the limiter, the
//!   one backoff, retry classification, timeline and JSM REST decoders.
//! - [`clock`]: the wall clock, injectable so that tests reach shift ends without sleeping.
//! - [`config`]: layered settings (the `config` crate), their schema walk and validation.
//! - [`http`]: the bounded listener for the probes and `/metrics`.
//! - `sim` (feature `sim`): the fakes (Teleport, Opsgenie, JSM Operations, a Proxy, a PKI) for
//!   tests, examples and load tests.

// Lints for the whole library; `clippy.toml` adds the async daemon's footguns.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]
#![warn(clippy::dbg_macro, clippy::todo, clippy::unimplemented)]

pub mod actors;
pub mod backend;
pub mod check;
pub mod clock;
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
