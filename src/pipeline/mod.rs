//! The request pipeline: everything between a request snapshot arriving from the watch and the
//! side effects it causes.
//!
//! - [`requests`]: the registry actor, one [`request::RequestActor`] per request id, bounded;
//! - [`resync`]: the listing after each (re)connect, handed over a page at a time;
//! - [`request`]: the per-request state actor; keeps the newest snapshot and runs one step at a
//!   time;
//! - [`reconcile`]: one step: read plugin data, plan, claim, act, record by compare-and-swap;
//! - [`port`]: the `Effects` reconcile acts through and the typed errors they fail with;
//! - [`settings`]: what shapes every step;
//! - [`attempt`]: one attempt of a backend write, confirmed before it counts;
//! - [`decide`]: the auto-approval step;
//! - [`revoke`]: the shift check at approval and the revocation at shift end;
//! - [`effects`]: the real effects behind reconcile's `Effects` trait (Teleport, the gateway);
//! - [`sweep`]: the orphan sweep, closing alerts whose request no longer exists;
//! - [`error_policy`]: what a failed step means: retry, verify first, wait for a change, give up;
//! - [`verify`]: after an unknown outcome, whether a write already took effect;
//! - [`stop`]: the shutdown switch that cuts steps short so they release their claims;
//! - [`shared`]: what the request actors share.

pub mod attempt;
pub mod decide;
pub mod effect_error;
pub mod effects;
pub mod error_policy;
pub mod port;
pub mod reconcile;
pub mod request;
pub mod requests;
pub mod resync;
pub mod revoke;
pub mod settings;
pub mod shared;
pub mod stop;
pub mod sweep;
pub mod verify;
