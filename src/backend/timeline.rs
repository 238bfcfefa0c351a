//! Decoders for schedule timelines (opsgenie-api.md §13): Opsgenie's `getScheduleTimeline`
//! (`{data: {startDate, endDate, finalTimeline: {rotations: [{periods: [{startDate, endDate,
//! type, recipient: {id, name, type}}]}]}}}`) and JSM Operations' `getTimeline` (the same
//! object without the `data` envelope, periods naming a `responder: {id, type}` by accountId),
//! into the core's [`Timeline`]. Pure: bytes in, a timeline or a typed error out.
//!
//! Times are ISO 8601 with any offset (`Z`, `+02:00`, `-0500`): schedules keep their own time
//! zone and answer in it, so every instant is converted here and the core sees only
//! [`SystemTime`]s.
//!
//! Groundwork for issue 12: nothing sends the timeline requests yet.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::core::shift::{Period, RecipientKind, Timeline};

/// Most periods accepted in one answer: a month of hourly rotations is ~750, so this only
/// guards against a runaway answer.
pub const MAX_PERIODS: usize = 20_000;

/// Why a timeline answer cannot be used. Never retryable: the same answer will not become
/// readable; the caller reports it (naming the schedule) and treats the end as unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimelineError {
    /// Not JSON, or a field has the wrong JSON type. The position, never the content, is kept:
    /// the body names people.
    #[error("the schedule timeline answer is not the expected JSON ({category} at line {line}, column {column})")]
    Json {
        /// serde's category (syntax, data, eof).
        category: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A required field is absent.
    #[error("the schedule timeline answer has no `{0}`")]
    Missing(String),
    /// A time is not ISO 8601 with an offset.
    #[error("`{0}` in the schedule timeline answer is not an ISO 8601 time with an offset (like 2026-12-01T08:00:00+01:00)")]
    BadTime(String),
    /// A period or the window ends before it starts.
    #[error("`{0}` in the schedule timeline answer ends before it starts")]
    Reversed(String),
    /// More than [`MAX_PERIODS`] periods.
    #[error("the schedule timeline answer has more than {MAX_PERIODS} periods; ask for a shorter interval")]
    TooManyPeriods,
}

impl TimelineError {
    /// Always false: see the type's documentation.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

#[derive(Deserialize)]
struct OpsgenieEnvelope {
    data: Option<Window<OpsgenieRecipient>>,
}

/// The timeline object both backends answer; `R` is how a period names its recipient.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Window<R> {
    start_date: Option<String>,
    end_date: Option<String>,
    final_timeline: Option<Rotations<R>>,
}

#[derive(Deserialize)]
struct Rotations<R> {
    #[serde(default = "Vec::new")]
    rotations: Vec<Rotation<R>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rotation<R> {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    /// JSM marks rotations removed from the schedule; they only carry history and page nobody.
    #[serde(default)]
    deleted: bool,
    #[serde(default = "Vec::new")]
    periods: Vec<RawPeriod<R>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPeriod<R> {
    start_date: Option<String>,
    end_date: Option<String>,
    /// Opsgenie's name for who the period names.
    recipient: Option<R>,
    /// JSM's name for it.
    responder: Option<R>,
}

#[derive(Deserialize)]
struct OpsgenieRecipient {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct JsmResponder {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "type")]
    kind: String,
}

/// How a backend names a recipient: its kind and the identity the core matches people by.
trait Named {
    fn kind(&self) -> &str;
    fn identity(&self) -> String;
}

impl Named for OpsgenieRecipient {
    fn kind(&self) -> &str {
        &self.kind
    }
    /// Users by username (what on-call answers and the requester mapping use); teams and
    /// escalations by name, or id when the name is absent.
    fn identity(&self) -> String {
        if self.name.is_empty() {
            self.id.clone()
        } else {
            self.name.clone()
        }
    }
}

impl Named for JsmResponder {
    fn kind(&self) -> &str {
        &self.kind
    }
    /// JSM names everyone by id: an accountId for a user.
    fn identity(&self) -> String {
        self.id.clone()
    }
}

fn json_error(e: &serde_json::Error) -> TimelineError {
    use serde_json::error::Category;
    TimelineError::Json {
        category: match e.classify() {
            Category::Io => "i/o",
            Category::Syntax => "syntax error",
            Category::Data => "wrong type",
            Category::Eof => "unexpected end",
        },
        line: e.line(),
        column: e.column(),
    }
}

/// Decodes Opsgenie's `GET /v2/schedules/{identifier}/timeline` answer.
pub fn decode_opsgenie(body: &[u8]) -> Result<Timeline, TimelineError> {
    let envelope: OpsgenieEnvelope = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let window = envelope
        .data
        .ok_or_else(|| TimelineError::Missing("data".into()))?;
    convert(window, "data.")
}

/// Decodes JSM Operations' `GET /v1/schedules/{scheduleId}/timeline` answer.
pub fn decode_jsm(body: &[u8]) -> Result<Timeline, TimelineError> {
    let window: Window<JsmResponder> = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    convert(window, "")
}

fn convert<R: Named>(window: Window<R>, prefix: &str) -> Result<Timeline, TimelineError> {
    let time = |value: Option<String>, field: String| -> Result<SystemTime, TimelineError> {
        let value = value.ok_or_else(|| TimelineError::Missing(field.clone()))?;
        parse_instant(&value).ok_or(TimelineError::BadTime(field))
    };
    let window_start = time(window.start_date, format!("{prefix}startDate"))?;
    let window_end = time(window.end_date, format!("{prefix}endDate"))?;
    if window_end < window_start {
        return Err(TimelineError::Reversed(format!(
            "{prefix}startDate/endDate"
        )));
    }
    let rotations = window
        .final_timeline
        .ok_or_else(|| TimelineError::Missing(format!("{prefix}finalTimeline")))?
        .rotations;
    let mut periods = Vec::new();
    for (r, rotation) in rotations.into_iter().enumerate() {
        if rotation.deleted {
            continue;
        }
        let rotation_name = if rotation.name.is_empty() {
            rotation.id
        } else {
            rotation.name
        };
        for (p, raw) in rotation.periods.into_iter().enumerate() {
            if periods.len() >= MAX_PERIODS {
                return Err(TimelineError::TooManyPeriods);
            }
            let at = format!("{prefix}finalTimeline.rotations[{r}].periods[{p}]");
            let start = time(raw.start_date, format!("{at}.startDate"))?;
            let end = time(raw.end_date, format!("{at}.endDate"))?;
            if end < start {
                return Err(TimelineError::Reversed(at));
            }
            let (kind, identity) = match raw.recipient.or(raw.responder) {
                // An empty slot (nobody on call) may come without a recipient.
                None => (RecipientKind::Other(String::new()), String::new()),
                Some(who) => (recipient_kind(who.kind()), who.identity()),
            };
            periods.push(Period {
                start,
                end,
                kind,
                identity,
                rotation: rotation_name.clone(),
            });
        }
    }
    Ok(Timeline {
        window_start,
        window_end,
        periods,
    })
}

fn recipient_kind(kind: &str) -> RecipientKind {
    match kind {
        "user" => RecipientKind::User,
        "team" => RecipientKind::Team,
        "escalation" => RecipientKind::Escalation,
        other => RecipientKind::Other(other.to_owned()),
    }
}

/// Parses an ISO 8601 / RFC 3339 instant with an offset: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM|
/// ±HHMM)`. `None` for anything else, including a time without an offset (whose instant
/// depends on a zone we do not know) and impossible dates.
pub fn parse_instant(s: &str) -> Option<SystemTime> {
    let b = s.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (k, c) in b[i..i + digits].iter().enumerate().take(9) {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - k as u32);
        }
        i += digits;
    }
    let offset_secs: i64 = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    let d = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
                    (d(h1)? * 10 + d(h2)?, d(m1)? * 10 + d(m2)?)
                }
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_len = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap(year) => 29,
        2 => 28,
        _ => return None,
    };
    // Second 60 (a leap second) is not accepted: no schedule boundary falls on one.
    if day < 1 || day > month_len || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let utc = local - offset_secs;
    let secs = u64::try_from(utc).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the well-known era-based conversion).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
