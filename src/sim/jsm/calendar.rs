//! The window a JSM timeline answers (opsgenie-api.md §13): the `intervalUnit` (day, ISO week
//! from Monday, or month, in UTC) containing `date`, times `interval`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: u64 = 86_400;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn at_day(days: i64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(
        u64::try_from(days).ok()?.checked_mul(DAY)?,
    ))
}

/// The unit of a timeline window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `days`.
    Days,
    /// `weeks` (Monday to Monday).
    Weeks,
    /// `months`.
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

/// `[start, end)` of the window: the `unit` holding `date`, `interval` units long. `None` for
/// dates before 1970 or absurdly far ahead.
pub fn window(date: SystemTime, unit: Unit, interval: u32) -> Option<(SystemTime, SystemTime)> {
    let days = i64::try_from(date.duration_since(UNIX_EPOCH).ok()?.as_secs() / DAY).ok()?;
    let n = i64::from(interval);
    match unit {
        Unit::Days => Some((at_day(days)?, at_day(days.checked_add(n)?)?)),
        Unit::Weeks => {
            // 1970-01-01 was a Thursday: Monday is 3 days earlier.
            let monday = days - (days + 3).rem_euclid(7);
            Some((at_day(monday)?, at_day(monday.checked_add(7 * n)?)?))
        }
        Unit::Months => {
            let (y, m, _) = civil_from_days(days);
            let first = days_from_civil(y, m, 1);
            let months = i64::from(m) - 1 + n;
            let next = days_from_civil(
                y + months.div_euclid(12),
                (months.rem_euclid(12) + 1) as u32,
                1,
            );
            Some((at_day(first)?, at_day(next)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn windows_by_unit() {
        let date = t("2024-02-01T08:11:21Z"); // a Thursday
        assert_eq!(
            window(date, Unit::Days, 2),
            Some((t("2024-02-01T00:00:00Z"), t("2024-02-03T00:00:00Z")))
        );
        assert_eq!(
            window(date, Unit::Weeks, 2),
            Some((t("2024-01-29T00:00:00Z"), t("2024-02-12T00:00:00Z")))
        );
        assert_eq!(
            window(date, Unit::Months, 1),
            Some((t("2024-02-01T00:00:00Z"), t("2024-03-01T00:00:00Z")))
        );
        // Across a year end.
        assert_eq!(
            window(t("2024-12-31T23:59:59Z"), Unit::Months, 2),
            Some((t("2024-12-01T00:00:00Z"), t("2025-02-01T00:00:00Z")))
        );
    }
}
