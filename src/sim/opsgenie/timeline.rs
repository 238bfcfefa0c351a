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
//! A schedule whose timeline no test set answers with its on-call users on call for the whole
//! window (a permanent rotation), so that its on-call and timeline answers agree.
//!
//! What it simplifies: only the final timeline is served (`expand` is accepted and ignored),
//! and every period's `type` is `default`.

use std::time::SystemTime;

use axum::http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use super::ctx::{query_param, Ctx};
use super::lock;
use super::params::{int_in, one_of};
use super::reply::Reply;
use super::timeline_data::{StoredTimeline, TimelinePeriod, TimelineRecipient};
use super::validate::FieldErrors;
use crate::backend::timeline::parse_instant;
use crate::sim::calendar::{add, start_of, Unit};

fn refuse(name: &str, reason: String) -> Reply {
    Reply::unprocessable(FieldErrors::from([(name.to_owned(), reason)]))
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The window `[start, end)` for `date`: its UTC day, then `interval` units.
fn window(date: SystemTime, interval: usize, unit: &str) -> Option<(SystemTime, SystemTime)> {
    let start = start_of(date, Unit::Days)?;
    let end = add(start, Unit::parse(unit)?, u64::try_from(interval).ok()?)?;
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
    let mut schedule = st.directory.schedules[i].clone();
    if !schedule.timeline.set {
        // Never set: the on-call users hold the whole window, one rotation for all.
        let periods: Vec<TimelinePeriod> = schedule
            .on_call
            .iter()
            .map(|u| TimelinePeriod {
                rotation: "on-call".into(),
                start,
                end,
                recipient: TimelineRecipient::User(u.clone()),
            })
            .collect();
        schedule.timeline = StoredTimeline::new(&periods);
    }
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
