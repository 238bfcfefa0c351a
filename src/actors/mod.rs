//! The long-lived actors: `EventStream` (the watch), `Gateway` (the only backend caller),
//! `OnCallCache` (who is on call), `Sweeper` (the periodic orphan sweep) and `IdentityWatcher`
//! (identity file refresh). The per-request
//! state actor and its registry belong to the request pipeline, in `crate::pipeline`.

pub mod event_stream;
pub mod gateway;
pub mod identity;
pub mod oncall;
pub mod sweeper;
