//! Fakes that behave like the real services, for tests, the sandbox and the load test.
//! Compiled only with the `sim` feature; never part of the daemon's own path.

pub mod calendar;
pub mod chaos;
pub mod fixtures;
pub mod jsm;
pub mod opsgenie;
pub mod pki;
pub mod proxy;
mod stop_on_drop;
pub mod teleport;
pub mod wait;
pub mod world;
