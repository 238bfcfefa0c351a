//! Schedule timelines (opsgenie-api.md §13): `GET /v2/schedules/{identifier}/timeline` with
//! `identifierType`, `interval`, `intervalUnit` and `date`, answered as `getScheduleTimeline`
//! shapes it: `{data: {_parent, startDate, endDate, finalTimeline: {rotations: [{id, name,
//! order, periods: [{startDate, endDate, type, recipient: {id, name, type}}]}]}}}`.
//!
//! Tests set a schedule's final timeline as periods ([`super::TimelinePeriod`]); each answer cuts
//! its window out of them. The window starts at the beginning (UTC, the fake schedules' zone)
//! of the day containing `date` and lasts `interval` days, weeks or calendar months; periods
//! crossing its edges are cut at them, as Opsgenie cuts them.
//!
//! What it simplifies: only the final timeline is served (`expand` is accepted and ignored),
//! and every period's `type` is `default`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use super::ctx::{query_param, Ctx};
use super::lock;
use super::params::{int_in, one_of};
use super::reply::Reply;
use super::timeline_data::TimelineRecipient;
use super::validate::FieldErrors;
use crate::backend::timeline::parse_instant;

const DAY: u64 = 86_400;

fn refuse(name: &str, reason: String) -> Reply {
    Reply::unprocessable(FieldErrors::from([(name.to_owned(), reason)]))
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Days since 1970-01-01 to (year, month, day), the inverse of the era-based conversion.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The window `[start, end)` for `date`: its UTC day, then `interval` units.
fn window(date: SystemTime, interval: usize, unit: &str) -> Option<(SystemTime, SystemTime)> {
    let secs = date.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let day = secs / DAY;
    let start = UNIX_EPOCH + Duration::from_secs(day * DAY);
    let n = u64::try_from(interval).ok()?;
    let end_day = match unit {
        "days" => day.checked_add(n)?,
        "weeks" => day.checked_add(n.checked_mul(7)?)?,
        _ => {
            // Calendar months: the same day of the month `n` months later, clamped to its end.
            let (y, m, d) = civil_from_days(i64::try_from(day).ok()?);
            let months = (m - 1).checked_add(i64::try_from(n).ok()?)?;
            let (y2, m2) = (
                y.checked_add(months.div_euclid(12))?,
                months.rem_euclid(12) + 1,
            );
            let first_next = days_from_civil(y2 + i64::from(m2 == 12), m2 % 12 + 1, 1);
            let last = first_next - days_from_civil(y2, m2, 1);
            u64::try_from(days_from_civil(y2, m2, d.min(last))).ok()?
        }
    };
    let end = UNIX_EPOCH.checked_add(Duration::from_secs(end_day.checked_mul(DAY)?))?;
    Some((start, end))
}

/// `GET /v2/schedules/{identifier}/timeline`.
pub(super) fn timeline(ctx: &Ctx<'_>, ident: &str) -> Reply {
    let by_name = match one_of(ctx, "identifierType", &["id", "name"], "id") {
        Ok(t) => t == "name",
        Err(r) => return r,
    };
    let unit = match one_of(ctx, "intervalUnit", &["days", "weeks", "months"], "weeks") {
        Ok(u) => u,
        Err(r) => return r,
    };
    let interval = match int_in(ctx, "interval", 1, usize::MAX, 1) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let date = match query_param(ctx.query, "date") {
        None => SystemTime::now(),
        Some(d) => match parse_instant(&d) {
            Some(t) => t,
            None => {
                return refuse(
                    "date",
                    format!("date must be an ISO 8601 date-time with an offset, got '{d}'"),
                )
            }
        },
    };
    let Some((start, end)) = window(date, interval, unit) else {
        return refuse(
            "interval",
            format!(
                "interval {interval} {unit} from '{}' is out of range",
                rfc3339(date)
            ),
        );
    };
    let mut st = lock(&ctx.inner.state);
    let Some(i) = st.directory.schedule(ident, by_name) else {
        return Reply::message(
            StatusCode::NOT_FOUND,
            &format!("Schedule with identifier [{ident}] does not exist"),
        );
    };
    let schedule = st.directory.schedules[i].clone();
    let mut rotations = Vec::new();
    for (order, (name, id)) in schedule.timeline.rotations.iter().enumerate() {
        let mut periods = Vec::new();
        for p in &schedule.timeline.periods {
            if p.rotation != *name || p.end <= start || p.start >= end || p.end <= p.start {
                continue;
            }
            let recipient = match &p.recipient {
                TimelineRecipient::User(u) => {
                    json!({"id": st.directory.user_id(u), "name": u, "type": "user"})
                }
                TimelineRecipient::Team(t) => {
                    let id = st
                        .directory
                        .team_id(t)
                        .unwrap_or_else(|| Uuid::new_v4().to_string());
                    json!({"id": id, "name": t, "type": "team"})
                }
                TimelineRecipient::Escalation(e) => {
                    json!({"id": Uuid::new_v4().to_string(), "name": e, "type": "escalation"})
                }
            };
            periods.push(json!({
                "startDate": rfc3339(p.start.max(start)),
                "endDate": rfc3339(p.end.min(end)),
                "type": "default",
                "recipient": recipient,
            }));
        }
        rotations.push(json!({"id": id, "name": name, "order": order + 1, "periods": periods}));
    }
    let data: Value = json!({
        "_parent": {"id": schedule.id, "name": schedule.name, "enabled": true},
        "startDate": rfc3339(start),
        "endDate": rfc3339(end),
        "finalTimeline": {"rotations": rotations},
    });
    Reply::json(StatusCode::OK, json!({ "data": data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).expect("time")
    }

    #[test]
    fn windows_start_at_the_day_and_last_the_interval() {
        let date = t("2026-12-01T15:20:00Z");
        let day = t("2026-12-01T00:00:00Z");
        assert_eq!(
            window(date, 1, "days"),
            Some((day, t("2026-12-02T00:00:00Z")))
        );
        assert_eq!(
            window(date, 2, "weeks"),
            Some((day, t("2026-12-15T00:00:00Z")))
        );
        assert_eq!(
            window(date, 1, "months"),
            Some((day, t("2027-01-01T00:00:00Z")))
        );
        assert_eq!(
            window(t("2026-01-31T01:00:00Z"), 1, "months").map(|w| w.1),
            Some(t("2026-02-28T00:00:00Z")),
            "clamped to the shorter month"
        );
        assert_eq!(
            window(t("2026-11-15T01:00:00Z"), 14, "months").map(|w| w.1),
            Some(t("2028-01-15T00:00:00Z"))
        );
        assert_eq!(window(date, usize::MAX, "days"), None);
    }
}
