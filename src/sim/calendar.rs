//! The calendar the fakes cut schedule timeline windows on (opsgenie-api.md §13): the start of
//! the UTC day, ISO week (from Monday) or month containing an instant, and an instant plus a
//! number of those units. Both fakes' schedules live in UTC, so no zone rules are needed.
//!
//! The date arithmetic is the `time` crate's (already in the tree through x509-parser), so the
//! fakes carry no hand-written civil-calendar conversions. Every answer is bounded to
//! 1970-01-01 ..= 9999-12-31: the fakes write instants with `humantime`, which can write
//! neither an instant before the epoch nor a five-digit year, so anything outside is `None`
//! and the caller refuses the request instead of failing to write its answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime, Time};

/// The unit of a timeline window, as both APIs' `intervalUnit` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `days`.
    Days,
    /// `weeks`, Monday to Monday.
    Weeks,
    /// `months`, calendar months.
    Months,
}

impl Unit {
    /// Reads `intervalUnit`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "days" => Some(Self::Days),
            "weeks" => Some(Self::Weeks),
            "months" => Some(Self::Months),
            _ => None,
        }
    }
}

/// Midnight UTC starting the `unit` containing `t`: its day, the Monday of its week, or the
/// first of its month. `None` outside 1970 ..= 9999 (the Monday before 1970-01-01 included).
pub fn start_of(t: SystemTime, unit: Unit) -> Option<SystemTime> {
    let date = utc(t)?.date();
    let first = match unit {
        Unit::Days => date,
        Unit::Weeks => date.checked_sub(time::Duration::days(i64::from(
            date.weekday().number_days_from_monday(),
        )))?,
        Unit::Months => date.replace_day(1).ok()?,
    };
    system(first.with_time(Time::MIDNIGHT).assume_utc())
}

/// `t` plus `n` units. Days and weeks are fixed lengths (UTC has no daylight saving); months
/// are calendar months: the same day and time of day `n` months on, clamped to the last day of
/// a shorter month (31 January plus one month is 28 or 29 February). `None` past 9999.
pub fn add(t: SystemTime, unit: Unit, n: u64) -> Option<SystemTime> {
    let at = utc(t)?;
    let n = i64::try_from(n).ok()?;
    let end = match unit {
        Unit::Days => at.checked_add(time::Duration::seconds(n.checked_mul(86_400)?))?,
        Unit::Weeks => at.checked_add(time::Duration::seconds(n.checked_mul(604_800)?))?,
        Unit::Months => {
            let (year, month, day) = at.to_calendar_date();
            let index = (i64::from(year) * 12 + i64::from(u8::from(month)) - 1).checked_add(n)?;
            let year = i32::try_from(index.div_euclid(12)).ok()?;
            let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
            let date = Date::from_calendar_date(year, month, day.min(month.length(year))).ok()?;
            at.replace_date(date)
        }
    };
    system(end)
}

/// `t` in UTC; `None` before the epoch or past the `time` crate's year 9999.
fn utc(t: SystemTime) -> Option<OffsetDateTime> {
    let nanos = i128::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// Back to a `SystemTime`; `None` before the epoch, which `humantime` cannot write.
fn system(at: OffsetDateTime) -> Option<SystemTime> {
    let secs = u64::try_from(at.unix_timestamp()).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, at.nanosecond()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).expect("test time")
    }

    #[test]
    fn starts_of_days_weeks_and_months() {
        for (at, unit, want) in [
            ("2026-12-01T15:20:00Z", Unit::Days, "2026-12-01T00:00:00Z"),
            ("2026-12-01T00:00:00Z", Unit::Days, "2026-12-01T00:00:00Z"),
            // A Sunday belongs to the week that began the Monday before.
            ("2026-12-06T23:59:59Z", Unit::Weeks, "2026-11-30T00:00:00Z"),
            // A Monday starts its own week.
            ("2026-11-30T08:00:00Z", Unit::Weeks, "2026-11-30T00:00:00Z"),
            // A week that began in the previous year.
            ("2027-01-01T12:00:00Z", Unit::Weeks, "2026-12-28T00:00:00Z"),
            ("2024-02-29T12:00:00Z", Unit::Months, "2024-02-01T00:00:00Z"),
            ("2026-12-31T23:59:59Z", Unit::Months, "2026-12-01T00:00:00Z"),
            ("1970-01-05T00:00:00Z", Unit::Weeks, "1970-01-05T00:00:00Z"),
        ] {
            assert_eq!(start_of(t(at), unit), Some(t(want)), "{at} {unit:?}");
        }
    }

    #[test]
    fn adding_units_ends_months_at_their_last_day() {
        for (at, unit, n, want) in [
            (
                "2026-12-01T00:00:00Z",
                Unit::Days,
                1,
                "2026-12-02T00:00:00Z",
            ),
            (
                "2026-12-31T00:00:00Z",
                Unit::Days,
                1,
                "2027-01-01T00:00:00Z",
            ),
            (
                "2024-02-28T00:00:00Z",
                Unit::Days,
                1,
                "2024-02-29T00:00:00Z",
            ),
            (
                "2026-12-28T00:00:00Z",
                Unit::Weeks,
                1,
                "2027-01-04T00:00:00Z",
            ),
            (
                "2026-01-31T00:00:00Z",
                Unit::Months,
                1,
                "2026-02-28T00:00:00Z",
            ),
            (
                "2024-01-31T00:00:00Z",
                Unit::Months,
                1,
                "2024-02-29T00:00:00Z",
            ),
            (
                "2026-03-31T00:00:00Z",
                Unit::Months,
                1,
                "2026-04-30T00:00:00Z",
            ),
            // 2000 is a leap year (divisible by 400), 2100 is not (by 100 only).
            (
                "2000-01-31T00:00:00Z",
                Unit::Months,
                1,
                "2000-02-29T00:00:00Z",
            ),
            (
                "2100-01-31T00:00:00Z",
                Unit::Months,
                1,
                "2100-02-28T00:00:00Z",
            ),
            (
                "2024-02-29T00:00:00Z",
                Unit::Months,
                12,
                "2025-02-28T00:00:00Z",
            ),
            (
                "2024-02-29T00:00:00Z",
                Unit::Months,
                48,
                "2028-02-29T00:00:00Z",
            ),
            // Across year ends, keeping the time of day.
            (
                "2026-12-01T00:00:00Z",
                Unit::Months,
                1,
                "2027-01-01T00:00:00Z",
            ),
            (
                "2026-11-15T06:30:00Z",
                Unit::Months,
                14,
                "2028-01-15T06:30:00Z",
            ),
            (
                "9999-11-30T00:00:00Z",
                Unit::Months,
                1,
                "9999-12-30T00:00:00Z",
            ),
        ] {
            assert_eq!(add(t(at), unit, n), Some(t(want)), "{at} + {n} {unit:?}");
        }
    }

    #[test]
    fn instants_humantime_cannot_write_are_none() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(start_of(before, Unit::Days), None);
        assert_eq!(add(before, Unit::Days, 1), None);
        // 1970-01-01 was a Thursday: its week began in 1969.
        assert_eq!(start_of(t("1970-01-01T12:00:00Z"), Unit::Weeks), None);
        assert_eq!(
            start_of(t("1970-01-01T12:00:00Z"), Unit::Months),
            Some(UNIX_EPOCH)
        );
        let last = t("9999-12-31T00:00:00Z");
        assert_eq!(add(last, Unit::Days, 1), None);
        assert_eq!(add(last, Unit::Weeks, 1), None);
        assert_eq!(add(last, Unit::Months, 1), None);
        assert_eq!(add(UNIX_EPOCH, Unit::Days, u64::MAX), None);
        assert_eq!(add(UNIX_EPOCH, Unit::Weeks, u64::MAX / 2), None);
        assert_eq!(add(UNIX_EPOCH, Unit::Months, u64::MAX), None);
    }

    #[test]
    fn units_read_the_api_words_only() {
        assert_eq!(Unit::parse("days"), Some(Unit::Days));
        assert_eq!(Unit::parse("weeks"), Some(Unit::Weeks));
        assert_eq!(Unit::parse("months"), Some(Unit::Months));
        assert_eq!(Unit::parse("Weeks"), None);
        assert_eq!(Unit::parse("years"), None);
    }
}
