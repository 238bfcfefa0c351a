//! How a request's progress is stored in Teleport's plugin data: a flat string map, updated only
//! by compare-and-swap. Teleport is the daemon's only database, so this is what makes restarts
//! and replicas safe.
//!
//! The keys shared with Teleport's hosted plugin keep its meaning (`alert_id`, `user`, `roles`,
//! `created`, `request_reason`, `reviews_count`, `resolution`, `resolve_reason`), so alerts it
//! opened can be closed by us. Ours add what exactly-once needs: the backend's request id of the
//! alert creation, the auto-approval decision, and a claim that one replica holds while it acts.
//!
//! Writes: every write is a compare-and-swap, and a claimed run of steps costs two (the claim,
//! then the record that releases it), so an ordinary request's life costs four
//! (`pipeline::reconcile`, "Writes to Teleport"). The unconfirmed mark (`unconfirmed`) rides in
//! those same writes. Its value `*` (any step) is new; versions that do not know it read it as a
//! step they never plan, and records they wrote read as before, so a rolling upgrade is safe.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why an alert was closed, in the hosted plugin's lower-case words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The request was approved.
    Approved,
    /// The request was denied.
    Denied,
    /// The request was promoted to an access list.
    Promoted,
    /// The request is gone: deleted, by a user or by Teleport when it expired (Teleport cannot
    /// tell which). Stored as `expired`, the hosted plugin's word; the alert's note says
    /// "was deleted".
    Expired,
}

impl Resolution {
    /// The stored tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Promoted => "promoted",
            Self::Expired => "expired",
        }
    }

    fn parse(tag: &str) -> Option<Self> {
        match tag {
            "approved" => Some(Self::Approved),
            "denied" => Some(Self::Denied),
            "promoted" => Some(Self::Promoted),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// The outcome of the auto-approval policy for a request, decided once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An approving review was submitted.
    Approved,
    /// Not approved automatically; the reason is on the alert.
    Declined,
}

impl Decision {
    /// The stored tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Declined => "declined",
        }
    }

    fn parse(tag: &str) -> Option<Self> {
        match tag {
            "approved" => Some(Self::Approved),
            "declined" => Some(Self::Declined),
            _ => None,
        }
    }
}

/// A replica's exclusive right to act on a request until a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Which replica holds it.
    pub holder: String,
    /// Until when, in milliseconds since the Unix epoch.
    pub until_ms: u64,
}

impl Claim {
    /// Whether the claim still holds at `now`.
    pub fn is_live(&self, now: SystemTime) -> bool {
        millis(now) < self.until_ms
    }

    /// When the claim ends.
    pub fn until(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.until_ms)
    }
}

/// A write whose outcome is not known yet: it was sent (or may have been) by an attempt that
/// failed or was cut short before the backend confirmed it. The next attempt of the same step
/// finds out whether it took effect before doing it again (`pipeline::verify`). Recorded when
/// the failed attempt releases its claim, so it costs no write of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconfirmed {
    /// The step's key (`plan::Step::key`), e.g. `review-2`.
    pub step: String,
    /// The backend's request id of the write, when its 202 arrived (empty otherwise).
    pub request_id: String,
    /// When the attempt was made, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl Unconfirmed {
    /// The step of a mark that stands for every step: some write of the request, which one is
    /// not known, may have happened and is not recorded.
    pub const ANY: &'static str = "*";

    /// A mark for "some step's write may have happened, at the latest at `at_ms`".
    pub fn any(at_ms: u64) -> Self {
        Self {
            step: Self::ANY.to_owned(),
            request_id: String::new(),
            at_ms,
        }
    }

    /// Whether this mark concerns step `key`.
    pub fn covers(&self, key: &str) -> bool {
        self.step == key || self.step == Self::ANY
    }

    /// What to store when `new` is to be recorded while `existing` is stored. The record has
    /// one slot, and a mark may only be cleared by the step it names once that step's write is
    /// confirmed: so `new` replaces a mark of its own step, and a mark of another step turns
    /// both into [`Unconfirmed::ANY`] (every later step verifies before it writes). Losing the
    /// other step's mark is what once posted notes twice: replicas with snapshots of different
    /// ages plan different steps (a pending one decides, a resolved one notes reviews), and a
    /// record of one step cleared the other's unknown note.
    pub fn merge(existing: Option<&Unconfirmed>, new: Unconfirmed) -> Unconfirmed {
        match existing {
            Some(old) if old.step != new.step => Self::any(old.at_ms.max(new.at_ms)),
            _ => new,
        }
    }

    fn encode(&self) -> String {
        format!("{} {} {}", self.step, self.at_ms, self.request_id)
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ' ');
        let step = parts.next().filter(|s| !s.is_empty())?.to_owned();
        let at_ms = parts.next()?.parse().ok()?;
        let request_id = parts.next().unwrap_or("").trim().to_owned();
        Some(Self {
            step,
            request_id,
            at_ms,
        })
    }
}

/// One request's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginData {
    /// The alert's id, once the backend has processed its creation.
    pub alert_id: String,
    /// The backend's request id of the alert creation, to learn the alert id.
    pub alert_request_id: String,
    /// The requester.
    pub user: String,
    /// Requested roles.
    pub roles: Vec<String>,
    /// When the request was made (stored in whole seconds).
    pub created: Option<SystemTime>,
    /// The requester's reason.
    pub request_reason: String,
    /// How many of the request's reviews have been posted as notes.
    pub reviews_count: usize,
    /// Set once the alert is closed.
    pub resolution: Option<Resolution>,
    /// Why the request was resolved.
    pub resolve_reason: String,
    /// The auto-approval decision, once made.
    pub decision: Option<Decision>,
    /// The note that explains the decision, while it waits for the alert: the decision is
    /// made before the alert exists (access does not wait for the backend), and the note is
    /// posted once the alert's id is known, then cleared. Empty otherwise, and in data written
    /// before the key existed (the note was then posted with the decision).
    pub decision_note: String,
    /// Failed on-call lookups so far.
    pub lookup_failures: u32,
    /// A write of the current step whose outcome is unknown, if any.
    pub unconfirmed: Option<Unconfirmed>,
    /// The replica acting on the request, if any.
    pub claim: Option<Claim>,
    /// The revocation planned at approval under `auto_approval.shift_end: revoke`, if any
    /// (its own keys, `core::revoke::KEYS`; absent in data written before them).
    pub revocation: Option<crate::core::revocation::Revocation>,
}

const ALERT_ID: &str = "alert_id";
const ALERT_REQUEST_ID: &str = "alert_request_id";
const USER: &str = "user";
const ROLES: &str = "roles";
const CREATED: &str = "created";
const REQUEST_REASON: &str = "request_reason";
const REVIEWS_COUNT: &str = "reviews_count";
const RESOLUTION: &str = "resolution";
const RESOLVE_REASON: &str = "resolve_reason";
const DECISION: &str = "approval_decision";
const DECISION_NOTE: &str = "approval_decision_note";
const LOOKUP_FAILURES: &str = "approval_lookup_failures";
const UNCONFIRMED: &str = "unconfirmed";
const CLAIMED_BY: &str = "claimed_by";
const CLAIMED_UNTIL: &str = "claimed_until";

/// Every key the daemon writes, in a fixed order.
pub const KEYS: [&str; 15] = [
    ALERT_ID,
    ALERT_REQUEST_ID,
    USER,
    ROLES,
    CREATED,
    REQUEST_REASON,
    REVIEWS_COUNT,
    RESOLUTION,
    RESOLVE_REASON,
    DECISION,
    DECISION_NOTE,
    LOOKUP_FAILURES,
    UNCONFIRMED,
    CLAIMED_BY,
    CLAIMED_UNTIL,
];

/// The stored map. Every key is present; an empty value means "absent", which is how Teleport's
/// compare-and-swap reads it too.
pub type Encoded = BTreeMap<String, String>;

impl PluginData {
    /// Whether an alert was created (or at least accepted) for the request.
    pub fn alert_created(&self) -> bool {
        !self.alert_id.is_empty() || !self.alert_request_id.is_empty()
    }

    /// Whether an alert creation was ever attempted: the requester is written ahead of the
    /// creation call, so a creation whose answer was lost still leaves this mark.
    pub fn create_attempted(&self) -> bool {
        self.alert_created() || !self.user.is_empty()
    }

    /// Whether the alert is closed.
    pub fn is_closed(&self) -> bool {
        self.resolution.is_some()
    }

    /// Encodes every field; empty strings stand for "absent".
    pub fn encode(&self) -> Encoded {
        let count = |n: usize| if n == 0 { String::new() } else { n.to_string() };
        let values: [String; 15] = [
            self.alert_id.clone(),
            self.alert_request_id.clone(),
            self.user.clone(),
            self.roles.join(","),
            self.created
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs().to_string())
                .unwrap_or_default(),
            self.request_reason.clone(),
            count(self.reviews_count),
            self.resolution
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
            self.resolve_reason.clone(),
            self.decision
                .map(|d| d.as_str().to_owned())
                .unwrap_or_default(),
            self.decision_note.clone(),
            count(self.lookup_failures as usize),
            self.unconfirmed
                .as_ref()
                .map(Unconfirmed::encode)
                .unwrap_or_default(),
            self.claim
                .as_ref()
                .map(|c| c.holder.clone())
                .unwrap_or_default(),
            self.claim
                .as_ref()
                .map(|c| c.until_ms.to_string())
                .unwrap_or_default(),
        ];
        let mut map: Encoded = KEYS.iter().map(|k| k.to_string()).zip(values).collect();
        crate::core::revocation::encode(self.revocation.as_ref(), &mut map);
        map
    }

    /// Decodes a stored map. Unknown keys are ignored and unparsable numbers read as zero,
    /// as the hosted plugin does, so data written by other versions never blocks a request.
    pub fn decode(map: &BTreeMap<String, String>) -> Self {
        let get = |key: &str| map.get(key).map(String::as_str).unwrap_or("");
        let claim = match (get(CLAIMED_BY), get(CLAIMED_UNTIL).parse::<u64>()) {
            ("", _) | (_, Err(_)) => None,
            (holder, Ok(until_ms)) => Some(Claim {
                holder: holder.to_owned(),
                until_ms,
            }),
        };
        Self {
            alert_id: get(ALERT_ID).to_owned(),
            alert_request_id: get(ALERT_REQUEST_ID).to_owned(),
            user: get(USER).to_owned(),
            roles: match get(ROLES) {
                "" => vec![],
                roles => roles.split(',').map(str::to_owned).collect(),
            },
            created: get(CREATED)
                .parse::<u64>()
                .ok()
                .map(|s| UNIX_EPOCH + Duration::from_secs(s)),
            request_reason: get(REQUEST_REASON).to_owned(),
            reviews_count: get(REVIEWS_COUNT).parse().unwrap_or(0),
            resolution: Resolution::parse(get(RESOLUTION)),
            resolve_reason: get(RESOLVE_REASON).to_owned(),
            decision: Decision::parse(get(DECISION)),
            decision_note: get(DECISION_NOTE).to_owned(),
            lookup_failures: get(LOOKUP_FAILURES).parse().unwrap_or(0),
            unconfirmed: Unconfirmed::decode(get(UNCONFIRMED)),
            claim,
            revocation: crate::core::revocation::decode(map),
        }
    }

    /// The expectation for a compare-and-swap that must see exactly `self` in storage.
    pub fn expect_exactly(&self) -> Encoded {
        self.encode()
    }

    /// The expectation for a compare-and-swap that must only see our own claim still in place.
    pub fn expect_claim(&self) -> Encoded {
        let encoded = self.encode();
        [CLAIMED_BY, CLAIMED_UNTIL]
            .iter()
            .map(|k| (k.to_string(), encoded[*k].clone()))
            .collect()
    }

    /// The expectation for recording the alert id: the creation it belongs to is still the
    /// stored one, and no id was recorded yet. Independent of the claim, so it never waits.
    pub fn expect_alert_id_unset(&self) -> Encoded {
        BTreeMap::from([
            (ALERT_ID.to_owned(), String::new()),
            (ALERT_REQUEST_ID.to_owned(), self.alert_request_id.clone()),
        ])
    }

    /// The update that records only the alert id.
    pub fn set_alert_id(alert_id: &str) -> Encoded {
        BTreeMap::from([(ALERT_ID.to_owned(), alert_id.to_owned())])
    }

    /// The update that forgets a failed creation, so that the alert is created again.
    pub fn forget_creation() -> Encoded {
        BTreeMap::from([(ALERT_REQUEST_ID.to_owned(), String::new())])
    }
}

/// Milliseconds since the Unix epoch (zero before it).
pub use crate::core::revocation::millis;

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> PluginData {
        PluginData {
            alert_id: "a-1".into(),
            alert_request_id: "rq-1".into(),
            user: "alice@example.com".into(),
            roles: vec!["editor".into(), "db-admin".into()],
            created: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            request_reason: "incident 42".into(),
            reviews_count: 2,
            resolution: Some(Resolution::Approved),
            resolve_reason: "ok".into(),
            decision: Some(Decision::Declined),
            decision_note: "Not auto-approved: alice is not on call.".into(),
            lookup_failures: 1,
            unconfirmed: Some(Unconfirmed {
                step: "review-2".into(),
                request_id: "rq-9".into(),
                at_ms: 1_700_000_000_123,
            }),
            claim: Some(Claim {
                holder: "host-1".into(),
                until_ms: 1_700_000_060_000,
            }),
            revocation: Some(crate::core::revocation::Revocation {
                due: UNIX_EPOCH + Duration::from_millis(1_700_003_600_000),
                access_end: UNIX_EPOCH + Duration::from_millis(1_700_028_800_000),
                schedule: "Primary".into(),
                person: "alice@example.com".into(),
                state: crate::core::revocation::RevokeState::Planned,
                refusal: String::new(),
                refusal_noted: false,
            }),
        }
    }

    #[test]
    fn round_trips() {
        for data in [full(), PluginData::default()] {
            assert_eq!(PluginData::decode(&data.encode()), data);
        }
    }

    #[test]
    fn an_unconfirmed_write_without_a_request_id_round_trips() {
        let data = PluginData {
            unconfirmed: Some(Unconfirmed {
                step: "close".into(),
                request_id: String::new(),
                at_ms: 5,
            }),
            ..PluginData::default()
        };
        assert_eq!(data.encode()[UNCONFIRMED], "close 5 ");
        assert_eq!(PluginData::decode(&data.encode()), data);
        let garbage = BTreeMap::from([(UNCONFIRMED.to_owned(), "close soon".to_owned())]);
        assert_eq!(PluginData::decode(&garbage).unconfirmed, None);
    }

    #[test]
    fn marks_of_different_steps_merge_into_any() {
        let mark = |step: &str, at_ms: u64| Unconfirmed {
            step: step.into(),
            request_id: format!("rq-{at_ms}"),
            at_ms,
        };
        assert_eq!(
            Unconfirmed::merge(None, mark("review-0", 5)),
            mark("review-0", 5)
        );
        assert_eq!(
            Unconfirmed::merge(Some(&mark("review-0", 5)), mark("review-0", 9)),
            mark("review-0", 9)
        );
        let merged = Unconfirmed::merge(Some(&mark("decision", 9)), mark("review-0", 5));
        assert_eq!(merged, Unconfirmed::any(9));
        assert!(merged.covers("decision") && merged.covers("close"));
        assert!(!mark("decision", 1).covers("review-0"));
        // An old version reads the mark as a step it never plans: harmless.
        let stored = PluginData {
            unconfirmed: Some(merged.clone()),
            ..PluginData::default()
        };
        assert_eq!(stored.encode()[UNCONFIRMED], "* 9 ");
        assert_eq!(
            PluginData::decode(&stored.encode()).unconfirmed,
            Some(merged)
        );
    }

    #[test]
    fn writes_every_key_with_empty_meaning_absent() {
        let encoded = PluginData::default().encode();
        assert_eq!(
            encoded.len(),
            KEYS.len() + crate::core::revocation::KEYS.len()
        );
        assert!(encoded.values().all(String::is_empty));
    }

    #[test]
    fn creation_time_is_stored_in_whole_seconds() {
        let data = PluginData {
            created: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_999)),
            ..PluginData::default()
        };
        assert_eq!(data.encode()[CREATED], "1700000000");
    }

    #[test]
    fn reads_data_written_by_the_hosted_plugin() {
        let map: BTreeMap<String, String> = [
            ("alert_id", "abc"),
            ("service_id", ""),
            ("user", "bob"),
            ("roles", "editor"),
            ("created", "1700000000"),
            ("reviews_count", "1"),
            ("resolution", "denied"),
            ("resolve_reason", "no"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let data = PluginData::decode(&map);
        assert!(data.alert_created());
        assert!(data.is_closed());
        assert_eq!(data.reviews_count, 1);
        assert_eq!(data.resolution, Some(Resolution::Denied));
    }

    #[test]
    fn garbage_numbers_read_as_zero_and_bad_claims_as_none() {
        let map: BTreeMap<String, String> = [
            ("reviews_count", "lots"),
            ("claimed_by", "x"),
            ("claimed_until", "soon"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let data = PluginData::decode(&map);
        assert_eq!(data.reviews_count, 0);
        assert_eq!(data.claim, None);
    }

    #[test]
    fn claim_liveness() {
        let claim = Claim {
            holder: "me".into(),
            until_ms: 2_000,
        };
        assert!(claim.is_live(UNIX_EPOCH + Duration::from_millis(1_999)));
        assert!(!claim.is_live(UNIX_EPOCH + Duration::from_millis(2_000)));
    }

    #[test]
    fn claim_expectation_names_only_the_claim_keys() {
        let expect = full().expect_claim();
        assert_eq!(expect.len(), 2);
        assert_eq!(expect["claimed_by"], "host-1");
    }
}
