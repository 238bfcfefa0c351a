//! The fake's knobs (faults, latency, server behaviours) and what tests can observe of it.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tonic::Code;

use super::{lock, CallRecord, FakeTeleport};

impl FakeTeleport {
    // ----- faults and knobs -----

    /// Ends every open watch stream with UNAVAILABLE, as an Auth restart or cache reset does.
    pub fn drop_watchers(&self) {
        self.inner.drop_gen.send_modify(|g| *g += 1);
    }

    /// Makes every open watch stream go silent without closing: no more events reach it, but
    /// the stream (and its HTTP/2 connection) stays open, as with a half-dead load balancer or a
    /// stuck Auth cache. Watches opened afterwards work normally.
    pub fn stall_watchers(&self) {
        self.inner.stall_gen.send_modify(|g| *g += 1);
    }

    /// Makes the next `n` RPCs (of any method) fail with `code`.
    pub fn fail_next(&self, n: u32, code: Code) {
        *lock(&self.inner.fail_code) = code;
        self.inner.fail_remaining.store(n, Ordering::SeqCst);
    }

    /// Delays every RPC by `latency` before it is handled (tokio time, so a paused clock works).
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.inner.latency) = latency;
    }

    /// Turns the admin-action MFA requirement for reviews on or off.
    pub fn set_mfa_required(&self, required: bool) {
        self.inner.mfa_required.store(required, Ordering::SeqCst);
    }

    /// Paces `GetAccessRequestsV2` streams like a slow server: `gap` before each item (tokio
    /// time), and after `stall_after` items (if set) nothing more, with the stream left open.
    pub fn set_list_stream_pacing(&self, gap: Duration, stall_after: Option<usize>) {
        *lock(&self.inner.list_stream) = (gap, stall_after);
    }

    /// Switches `ListAccessRequests` between served and UNIMPLEMENTED.
    pub fn set_list_access_requests_implemented(&self, implemented: bool) {
        self.inner
            .list_implemented
            .store(implemented, Ordering::SeqCst);
    }

    // ----- observation -----

    /// Starts timestamping the moment `key` first gets a value in a request's plugin data
    /// (through any writer); read the timestamps with [`FakeTeleport::first_set_since`].
    pub fn track_plugin_data_key(&self, key: &str) {
        lock(&self.inner.store).track_key(key);
    }

    /// `(request id, key, when)` for every tracked key that went from absent to set, in order,
    /// starting at entry `from` (pass the count seen so far to read only new entries).
    pub fn first_set_since(&self, from: usize) -> Vec<(String, String, SystemTime)> {
        let store = lock(&self.inner.store);
        store
            .first_set
            .get(from..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// Every gRPC call so far, in arrival order.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.inner.calls).clone()
    }

    /// How many calls of `method` (e.g. `"SubmitAccessReview"`) arrived so far, from anyone.
    pub fn count_calls(&self, method: &str) -> usize {
        lock(&self.inner.call_counts)
            .iter()
            .filter(|((m, _), _)| *m == method)
            .map(|(_, n)| n)
            .sum()
    }

    /// How many calls of `method` `caller` (the user of the client certificate) made so far:
    /// the daemon's own calls, apart from what reviewers and requesters do.
    pub fn count_calls_by(&self, method: &str, caller: &str) -> usize {
        lock(&self.inner.call_counts)
            .iter()
            .filter(|((m, c), _)| *m == method && c == caller)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every call `caller` made so far, by method.
    pub fn calls_by(&self, caller: &str) -> std::collections::BTreeMap<&'static str, usize> {
        let mut out = std::collections::BTreeMap::new();
        for ((method, c), n) in lock(&self.inner.call_counts).iter() {
            if c == caller {
                *out.entry(*method).or_insert(0) += n;
            }
        }
        out
    }

    /// Open watch streams.
    pub fn watchers(&self) -> usize {
        self.inner.watchers.load(Ordering::SeqCst)
    }
}
