//! Starting and stopping the whole daemon.

/// A running daemon.
pub struct Daemon;

/// Runs the daemon.
pub fn run() {}
