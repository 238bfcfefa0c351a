//! Talking to Teleport: identity files, TLS (direct to Auth, or through the Proxy with ALPN
//! routing), and the gRPC client.

pub mod client;
pub mod convert;
pub mod error;
pub mod handle;
pub mod identity;
pub mod own_roles;
pub mod rbac;
pub mod tls;
pub mod version;

pub use handle::ClientHandle;
