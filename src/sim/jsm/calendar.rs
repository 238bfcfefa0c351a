//! The window a JSM timeline answers (opsgenie-api.md §13): the `intervalUnit` (day, ISO week
//! from Monday, or month, in UTC) containing `date`, times `interval`.

use std::time::SystemTime;

pub use crate::sim::calendar::Unit;
use crate::sim::calendar::{add, start_of};

/// `[start, end)` of the window: the `unit` holding `date`, `interval` units long. `None` for
/// dates before 1970 or windows reaching past 9999.
pub fn window(date: SystemTime, unit: Unit, interval: u32) -> Option<(SystemTime, SystemTime)> {
    let start = start_of(date, unit)?;
    Some((start, add(start, unit, u64::from(interval))?))
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
