//! The request pipeline: everything between a request snapshot arriving from the watch and the
//! side effects it causes.
//!
//! - [`requests`]: the registry actor, one [`request::RequestActor`] per request id, bounded;
//! - [`request`]: the per-request state actor; keeps the newest snapshot and runs one step at a
//!   time;
//! - [`reconcile`]: one step: read plugin data, plan, claim, act, record by compare-and-swap;
//! - [`effects`]: the real effects behind reconcile's `Effects` trait (Teleport, the gateway);
//! - [`sweep`]: the orphan sweep, closing alerts whose request no longer exists;
//! - [`shared`]: what the request actors share.

pub mod effects;
pub mod reconcile;
pub mod request;
pub mod requests;
pub mod shared;
pub mod sweep;
