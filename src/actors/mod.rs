//! Thin actix shells around the functional core; see design.md for the picture.

pub mod event_stream;
pub mod gateway;
pub mod identity;
pub mod oncall;
pub mod request;
pub mod requests;
