//! Schedule timelines: windows cut from the periods a test set, in the real shapes, read back
//! by the daemon's own decoder; refusals of bad parameters and unknown schedules.

use std::time::SystemTime;

use super::*;

use crate::backend::timeline::decode_opsgenie;
use crate::core::shift::{shift_end, RecipientKind, ShiftEnd};
use crate::sim::opsgenie::{TimelinePeriod, TimelineRecipient};

fn t(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).expect("time")
}

fn period(rotation: &str, from: &str, to: &str, who: TimelineRecipient) -> TimelinePeriod {
    TimelinePeriod {
        rotation: rotation.to_owned(),
        start: t(from),
        end: t(to),
        recipient: who,
    }
}

fn user(name: &str) -> TimelineRecipient {
    TimelineRecipient::User(name.to_owned())
}

async fn fake_with_timeline() -> (FakeOpsgenie, String) {
    let fake = start(Duration::ZERO).await;
    let id = fake.add_schedule("platform", None, &["alice@example.com"]);
    fake.add_team("platform-sre", None);
    assert!(fake.set_timeline(
        "platform",
        &[
            period(
                "day",
                "2026-11-30T20:00:00Z",
                "2026-12-01T12:00:00Z",
                user("alice@example.com")
            ),
            period(
                "day",
                "2026-12-01T12:00:00Z",
                "2026-12-02T12:00:00Z",
                user("bob@example.com")
            ),
            period(
                "night",
                "2026-12-01T22:00:00Z",
                "2026-12-02T06:00:00Z",
                TimelineRecipient::Team("platform-sre".into())
            ),
            period(
                "day",
                "2026-12-02T12:00:00Z",
                "2026-12-03T12:00:00Z",
                user("alice@example.com")
            ),
        ],
    ));
    (fake, id)
}

#[tokio::test]
async fn a_day_window_is_cut_from_the_periods_in_the_real_shape() {
    let (fake, id) = fake_with_timeline().await;
    let a = call(
        &fake,
        "GET",
        "/v2/schedules/platform/timeline?identifierType=name&interval=1&intervalUnit=days&date=2026-12-01T09:30:00%2B01:00",
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let data = &a.body["data"];
    assert_eq!(data["_parent"]["id"], json!(id));
    assert_eq!(data["startDate"], json!("2026-12-01T00:00:00Z"));
    assert_eq!(data["endDate"], json!("2026-12-02T00:00:00Z"));
    let rotations = data["finalTimeline"]["rotations"]
        .as_array()
        .expect("rotations");
    assert_eq!(rotations.len(), 2);
    assert_eq!(rotations[0]["name"], json!("day"));
    assert_eq!(rotations[0]["order"], json!(1));
    let day = rotations[0]["periods"].as_array().expect("periods");
    // Alice's period began the day before: cut at the window's start; bob's runs on: cut at
    // its end; the next day's period is outside.
    assert_eq!(day.len(), 2);
    assert_eq!(day[0]["startDate"], json!("2026-12-01T00:00:00Z"));
    assert_eq!(day[0]["endDate"], json!("2026-12-01T12:00:00Z"));
    assert_eq!(day[0]["type"], json!("default"));
    assert_eq!(day[0]["recipient"]["name"], json!("alice@example.com"));
    assert_eq!(day[0]["recipient"]["type"], json!("user"));
    assert!(day[0]["recipient"]["id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(day[1]["endDate"], json!("2026-12-02T00:00:00Z"));
    let night = &rotations[1]["periods"][0];
    assert_eq!(night["recipient"]["type"], json!("team"));
    assert_eq!(
        night["recipient"]["id"],
        json!(fake.team_id("platform-sre").expect("team"))
    );

    // The daemon's decoder and the core read it as intended.
    let timeline = decode_opsgenie(a.text.as_bytes()).expect("decodes");
    assert_eq!(timeline.periods.len(), 3);
    assert_eq!(timeline.periods[2].kind, RecipientKind::Team);
    assert_eq!(
        shift_end(
            &timeline,
            "alice@example.com",
            t("2026-12-01T08:30:00Z"),
            t("2026-12-01T20:00:00Z")
        ),
        Ok(ShiftEnd::EndsAt(t("2026-12-01T12:00:00Z")))
    );
    assert_eq!(
        shift_end(
            &timeline,
            "bob@example.com",
            t("2026-12-01T13:00:00Z"),
            t("2026-12-02T08:00:00Z")
        ),
        Ok(ShiftEnd::ContinuesPastWindow {
            at: t("2026-12-02T00:00:00Z")
        })
    );
}

#[tokio::test]
async fn the_next_window_continues_the_shift_and_ids_stay_stable() {
    let (fake, id) = fake_with_timeline().await;
    let path = |date: &str| format!("/v2/schedules/{id}/timeline?intervalUnit=days&date={date}");
    let first = call(&fake, "GET", &path("2026-12-01T13:00:00Z"), None).await;
    let second = call(&fake, "GET", &path("2026-12-02T00:00:00Z"), None).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(
        first.body["data"]["finalTimeline"]["rotations"][0]["id"],
        second.body["data"]["finalTimeline"]["rotations"][0]["id"],
        "rotation ids are stable"
    );
    let timeline = decode_opsgenie(second.text.as_bytes()).expect("decodes");
    assert_eq!(
        shift_end(
            &timeline,
            "bob@example.com",
            t("2026-12-02T00:00:00Z"),
            t("2026-12-02T20:00:00Z")
        ),
        Ok(ShiftEnd::EndsAt(t("2026-12-02T12:00:00Z")))
    );
}

#[tokio::test]
async fn the_default_window_is_a_week_and_months_are_calendar_months() {
    let (fake, id) = fake_with_timeline().await;
    let week = call(
        &fake,
        "GET",
        &format!("/v2/schedules/{id}/timeline?date=2026-12-01T10:00:00Z"),
        None,
    )
    .await;
    assert_eq!(week.body["data"]["endDate"], json!("2026-12-08T00:00:00Z"));
    let day = week.body["data"]["finalTimeline"]["rotations"][0]["periods"]
        .as_array()
        .expect("periods");
    assert_eq!(day.len(), 3, "all three day periods fall in the week");
    let months = call(
        &fake,
        "GET",
        &format!(
            "/v2/schedules/{id}/timeline?interval=2&intervalUnit=months&date=2026-12-01T10:00:00Z"
        ),
        None,
    )
    .await;
    assert_eq!(
        months.body["data"]["endDate"],
        json!("2027-02-01T00:00:00Z")
    );
}

#[tokio::test]
async fn bad_parameters_and_unknown_schedules_are_refused() {
    let (fake, id) = fake_with_timeline().await;
    for (query, param) in [
        ("intervalUnit=hours", "intervalUnit"),
        ("intervalUnit=Days", "intervalUnit"),
        ("identifierType=username", "identifierType"),
        ("interval=0", "interval"),
        ("interval=-1", "interval"),
        ("interval=many", "interval"),
        ("date=yesterday", "date"),
        ("date=2026-12-01T10:00:00", "date"),
    ] {
        let a = call(
            &fake,
            "GET",
            &format!("/v2/schedules/{id}/timeline?{query}"),
            None,
        )
        .await;
        assert_eq!(a.status, 422, "{query}: {}", a.text);
        assert!(a.body["errors"][param].is_string(), "{query}: {}", a.text);
    }
    let a = call(&fake, "GET", "/v2/schedules/nope/timeline", None).await;
    assert_eq!(a.status, 404);
    assert!(a.text.contains("[nope] does not exist"), "{}", a.text);
    // By name without saying so: looked up as an id, so not found.
    let a = call(&fake, "GET", "/v2/schedules/platform/timeline", None).await;
    assert_eq!(a.status, 404, "{}", a.text);
    let a = call(&fake, "POST", &format!("/v2/schedules/{id}/timeline"), None).await;
    assert_eq!(a.status, 405);
    let a = send(
        "GET",
        &format!("{}/v2/schedules/{id}/timeline", fake.url()),
        None,
        None,
    )
    .await;
    assert_eq!(a.status, 401);
    assert!(!fake.set_timeline("nope", &[]));
}

#[tokio::test]
async fn timelines_are_limited_in_the_configuration_domain() {
    let fake = FakeOpsgenie::start(FakeOpsgenieOptions {
        rate_limits: FakeRateLimits {
            configuration: Some((1, 1)),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("start");
    let id = fake.add_schedule("platform", None, &["alice@example.com"]);
    let path = format!("/v2/schedules/{id}/timeline");
    assert_eq!(call(&fake, "GET", &path, None).await.status, 200);
    let throttled = call(&fake, "GET", &path, None).await;
    assert_eq!(throttled.status, 429);
    // Other domains are not affected.
    let on_calls = call(&fake, "GET", &format!("/v2/schedules/{id}/on-calls"), None).await;
    assert_eq!(on_calls.status, 200);
}

#[tokio::test]
async fn a_timeline_never_set_agrees_with_the_on_call_answer() {
    let fake = start(Duration::ZERO).await;
    fake.add_schedule("steady", None, &["carol@example.com"]);
    let a = call(
        &fake,
        "GET",
        "/v2/schedules/steady/timeline?identifierType=name&interval=1&intervalUnit=weeks&date=2026-12-01T09:30:00Z",
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let timeline = decode_opsgenie(a.text.as_bytes()).expect("decodes");
    assert_eq!(timeline.periods.len(), 1);
    assert_eq!(timeline.periods[0].start, timeline.window_start);
    assert_eq!(timeline.periods[0].end, timeline.window_end);
    assert_eq!(
        shift_end(
            &timeline,
            "carol@example.com",
            t("2026-12-01T09:30:00Z"),
            t("2026-12-01T17:30:00Z")
        ),
        Ok(ShiftEnd::CoversAccess)
    );
    // Once a test sets a timeline, it is served instead.
    assert!(fake.set_timeline("steady", &[]));
    let a = call(
        &fake,
        "GET",
        "/v2/schedules/steady/timeline?identifierType=name&date=2026-12-01T09:30:00Z",
        None,
    )
    .await;
    let timeline = decode_opsgenie(a.text.as_bytes()).expect("decodes");
    assert!(timeline.periods.is_empty());
}
