//! What a test sets as a schedule's final timeline, and how the fake keeps it. A leaf: the
//! directory stores it, the timeline handler serves it.

use std::time::SystemTime;

use uuid::Uuid;

/// Who a period names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimelineRecipient {
    /// A user, by username (e-mail).
    User(String),
    /// A team, by name.
    Team(String),
    /// An escalation, by name.
    Escalation(String),
}

/// One period of a schedule's final timeline, as a test sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelinePeriod {
    /// The rotation's name (rotations are listed in the order their names first appear).
    pub rotation: String,
    /// Inclusive start.
    pub start: SystemTime,
    /// Exclusive end.
    pub end: SystemTime,
    /// Who is on call.
    pub recipient: TimelineRecipient,
}

/// A schedule's settable timeline: its periods and made-up, stable rotation ids. Until a test
/// sets one, the schedule's on-call users are on call for every window (as in a permanent
/// rotation), so the fake's on-call and timeline answers agree.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredTimeline {
    /// Whether a test set it (`FakeOpsgenie::set_timeline`).
    pub(super) set: bool,
    pub(super) periods: Vec<TimelinePeriod>,
    /// (rotation name, id), in order of first appearance.
    pub(super) rotations: Vec<(String, String)>,
}

impl StoredTimeline {
    /// `periods`, with a made-up, stable id for each rotation, in order of first appearance.
    pub(super) fn new(periods: &[TimelinePeriod]) -> Self {
        let mut stored = StoredTimeline {
            set: true,
            periods: periods.to_vec(),
            rotations: Vec::new(),
        };
        for p in periods {
            if !stored.rotations.iter().any(|(name, _)| *name == p.rotation) {
                stored
                    .rotations
                    .push((p.rotation.clone(), Uuid::new_v4().to_string()));
            }
        }
        stored
    }
}
