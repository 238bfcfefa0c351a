//! Fixtures shared by the crate's unit tests, the integration tests and the examples, so each
//! builds requests the same way instead of keeping its own copy of every field.
//!
//! They are inherent methods of the core's types, defined here so that they exist only with
//! the `sim` feature (which every test build enables) and never in the daemon.

use std::collections::BTreeMap;

use crate::core::model::{AccessRequest, RequestState, Review};

impl AccessRequest {
    /// A pending request `id` by `user` for `roles`, with nothing else set.
    pub fn example(id: &str, user: &str, roles: &[&str]) -> Self {
        Self {
            id: id.into(),
            user: user.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            state: RequestState::Pending,
            created: None,
            access_expiry: None,
            max_duration: None,
            request_reason: String::new(),
            resolve_reason: String::new(),
            system_annotations: BTreeMap::new(),
            reviews: vec![],
            resources: vec![],
        }
    }

    /// The same request with `n` approving reviews, by `rev0`, `rev1`, ...
    pub fn with_approvals(mut self, n: usize) -> Self {
        self.reviews = (0..n)
            .map(|i| Review {
                author: format!("rev{i}"),
                proposed_state: RequestState::Approved,
                reason: String::new(),
                created: None,
            })
            .collect();
        self
    }
}
