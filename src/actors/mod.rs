//! The long-lived actors: `EventStream` (the watch), `Gateway` (the only backend caller),
//! `OnCallCache` (who is on call), `Sweeper` (the periodic orphan sweep), `IdentityWatcher`
//! (identity file refresh) and `Monitor` (what the HTTP probes and `/metrics` read). The
//! per-request state actor and its registry belong to the request pipeline, in
//! `crate::pipeline`.

pub mod event_stream;
pub mod gateway;
pub mod identity;
pub mod monitor;
pub mod oncall;
pub mod oncall_jsm;
pub mod sweeper;
pub mod timelines;
