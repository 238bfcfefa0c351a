//! The functional core: plain functions and data, no I/O, no clocks, no actors.

pub mod alert;
pub mod model;
pub mod oncall_user;
pub mod plan;
pub mod plugin_data;
pub mod policy;
pub mod render;
pub mod revocation;
pub mod revoke;
pub mod shift;
pub mod shift_policy;
pub mod step;
pub mod sweep;
