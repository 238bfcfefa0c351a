//! The decoders against bodies shaped like the real answers, and their refusals.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::core::shift::{shift_end, ShiftEnd};

fn t(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).expect("test time")
}

/// An Opsgenie answer for a schedule kept in Europe/Berlin (+01:00 in December): two
/// rotations, an override in the second, a team in the night slot, an empty slot.
const OPSGENIE: &str = r#"{
  "data": {
    "_parent": {"id": "d875alp4-9b4e-4219-a803-0c26936d18de", "name": "platform_schedule", "enabled": true},
    "startDate": "2026-12-01T00:00:00+01:00",
    "endDate": "2026-12-02T00:00:00+01:00",
    "finalTimeline": {
      "rotations": [
        {
          "id": "4a4a6f5c-0d1e-4b8a-9a53-2b1f3f0f9a11",
          "name": "day",
          "order": 1,
          "periods": [
            {"startDate": "2026-12-01T08:00:00+01:00", "endDate": "2026-12-01T12:00:00+01:00", "type": "default",
             "recipient": {"id": "b3f6a3a2-aaaa-4bbb-8ccc-000000000001", "name": "alice@example.com", "type": "user"}},
            {"startDate": "2026-12-01T12:00:00+01:00", "endDate": "2026-12-01T18:00:00+01:00", "type": "default",
             "recipient": {"id": "b3f6a3a2-aaaa-4bbb-8ccc-000000000002", "name": "bob@example.com", "type": "user"}},
            {"startDate": "2026-12-01T18:00:00+01:00", "endDate": "2026-12-02T00:00:00+01:00", "type": "default",
             "recipient": {"id": "7c1d0e2f-1111-4222-8333-444455556666", "name": "platform-sre", "type": "team"}}
          ]
        },
        {
          "id": "5b5b7f6d-1e2f-4c9b-8b64-3c2f4f1f0b22",
          "name": "cover",
          "order": 2,
          "periods": [
            {"startDate": "2026-12-01T11:00:00.000Z", "endDate": "2026-12-01T13:30:00.000Z", "type": "override",
             "recipient": {"id": "b3f6a3a2-aaaa-4bbb-8ccc-000000000001", "name": "alice@example.com", "type": "user"}},
            {"startDate": "2026-12-01T13:30:00Z", "endDate": "2026-12-01T16:00:00Z", "type": "default",
             "recipient": {"type": "none"}}
          ]
        }
      ]
    }
  },
  "took": 0.041,
  "requestId": "1f3e1b39-0f8e-4d55-9d1e-2a2f9b8c7d6e"
}"#;

/// A JSM answer: no envelope, accountIds, a deleted rotation, New York time (-05:00).
const JSM: &str = r#"{
  "startDate": "2026-12-01T00:00:00-05:00",
  "endDate": "2026-12-08T00:00:00-05:00",
  "finalTimeline": {
    "rotations": [
      {
        "id": "9e8d7c6b-0000-4000-8000-000000000001",
        "name": "follow-the-sun",
        "order": 1.0,
        "periods": [
          {"startDate": "2026-12-01T09:00:00-05:00", "endDate": "2026-12-01T17:00:00-05:00", "type": "default",
           "responder": {"id": "557058:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "type": "user"}},
          {"startDate": "2026-12-01T17:00:00-05:00", "endDate": "2026-12-02T01:00:00-05:00", "type": "default",
           "responder": {"id": "5b10ac8d82e05b22cc7d4ef5", "type": "noone"}}
        ]
      },
      {
        "id": "9e8d7c6b-0000-4000-8000-000000000002",
        "name": "retired",
        "deleted": true,
        "periods": [
          {"startDate": "2026-12-01T00:00:00-05:00", "endDate": "2026-12-08T00:00:00-05:00", "type": "historical",
           "responder": {"id": "557058:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "type": "user"}}
        ]
      }
    ]
  }
}"#;

#[test]
fn opsgenie_answer_decodes_with_offsets_converted() {
    let tl = decode_opsgenie(OPSGENIE.as_bytes()).expect("decodes");
    assert_eq!(tl.window_start, t("2026-11-30T23:00:00Z"));
    assert_eq!(tl.window_end, t("2026-12-01T23:00:00Z"));
    assert_eq!(tl.periods.len(), 5);
    let first = &tl.periods[0];
    assert_eq!(first.start, t("2026-12-01T07:00:00Z"));
    assert_eq!(first.end, t("2026-12-01T11:00:00Z"));
    assert_eq!(first.kind, RecipientKind::User);
    assert_eq!(first.identity, "alice@example.com");
    assert_eq!(first.rotation, "day");
    assert_eq!(tl.periods[2].kind, RecipientKind::Team);
    assert_eq!(tl.periods[2].identity, "platform-sre");
    assert_eq!(tl.periods[4].kind, RecipientKind::Other("none".into()));
}

#[test]
fn opsgenie_shift_across_rotations_and_zones() {
    // Alice: 07:00-11:00Z in "day" (written +01:00), then 11:00-13:30Z in "cover" (written Z):
    // one shift, ending 13:30Z although bob's slot runs on.
    let tl = decode_opsgenie(OPSGENIE.as_bytes()).expect("decodes");
    let got = shift_end(
        &tl,
        "alice@example.com",
        t("2026-12-01T08:00:00Z"),
        t("2026-12-01T20:00:00Z"),
    );
    assert_eq!(got, Ok(ShiftEnd::EndsAt(t("2026-12-01T13:30:00Z"))));
    // At 18:30Z only the team covers.
    let got = shift_end(
        &tl,
        "carol@example.com",
        t("2026-12-01T18:30:00Z"),
        t("2026-12-01T20:00:00Z"),
    );
    assert!(matches!(got, Ok(ShiftEnd::Unknowable { .. })), "{got:?}");
}

#[test]
fn jsm_answer_decodes_by_account_id_and_skips_deleted_rotations() {
    let tl = decode_jsm(JSM.as_bytes()).expect("decodes");
    assert_eq!(tl.window_start, t("2026-12-01T05:00:00Z"));
    assert_eq!(
        tl.periods.len(),
        2,
        "the deleted rotation's period is left out"
    );
    assert_eq!(
        tl.periods[0].identity,
        "557058:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    );
    assert_eq!(tl.periods[1].kind, RecipientKind::Other("noone".into()));
    let got = shift_end(
        &tl,
        "557058:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        t("2026-12-01T15:00:00Z"),
        t("2026-12-02T03:00:00Z"),
    );
    assert_eq!(got, Ok(ShiftEnd::EndsAt(t("2026-12-01T22:00:00Z"))));
}

#[test]
fn malformed_answers_name_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("not json", "not the expected JSON"),
        (r#"{"data": []}"#, "not the expected JSON"),
        (r#"{"took": 1}"#, "no `data`"),
        (
            r#"{"data": {"endDate": "2026-12-02T00:00:00Z", "finalTimeline": {}}}"#,
            "no `data.startDate`",
        ),
        (
            r#"{"data": {"startDate": "2026-12-01T00:00:00", "endDate": "2026-12-02T00:00:00Z", "finalTimeline": {}}}"#,
            "`data.startDate` in the schedule timeline answer is not an ISO 8601 time",
        ),
        (
            r#"{"data": {"startDate": "2026-12-01T00:00:00Z", "endDate": "2026-12-02T00:00:00Z"}}"#,
            "no `data.finalTimeline`",
        ),
        (
            r#"{"data": {"startDate": "2026-12-02T00:00:00Z", "endDate": "2026-12-01T00:00:00Z", "finalTimeline": {}}}"#,
            "ends before it starts",
        ),
        (
            r#"{"data": {"startDate": "2026-12-01T00:00:00Z", "endDate": "2026-12-02T00:00:00Z",
               "finalTimeline": {"rotations": [{"periods": [{"startDate": "2026-12-01T00:00:00Z",
               "recipient": {"type": "user", "name": "a@example.com"}}]}]}}}"#,
            "no `data.finalTimeline.rotations[0].periods[0].endDate`",
        ),
        (
            r#"{"data": {"startDate": "2026-12-01T00:00:00Z", "endDate": "2026-12-02T00:00:00Z",
               "finalTimeline": {"rotations": [{}, {"periods": [{"startDate": "2026-12-01T05:00:00Z",
               "endDate": "2026-12-01T04:00:00Z"}]}]}}}"#,
            "`data.finalTimeline.rotations[1].periods[0]` in the schedule timeline answer ends before it starts",
        ),
    ];
    for (body, want) in cases {
        let err = decode_opsgenie(body.as_bytes()).expect_err(body);
        assert!(err.to_string().contains(want), "{body}: {err}");
        assert!(!err.is_retryable());
    }
    let err = decode_jsm(br#"{"startDate": "2026-12-01T00:00:00Z"}"#).unwrap_err();
    assert_eq!(err, TimelineError::Missing("endDate".into()));
}

#[test]
fn json_errors_do_not_echo_the_body() {
    let err =
        decode_opsgenie(br#"{"data": {"startDate": 12, "secret@example.com": 1}}"#).unwrap_err();
    assert!(!err.to_string().contains("12"), "{err}");
    let err = decode_opsgenie(br#"{"data": "alice@example.com"}"#).unwrap_err();
    assert!(!err.to_string().contains("alice"), "{err}");
}

#[test]
fn too_many_periods_is_refused() {
    let period = r#"{"startDate": "2026-12-01T00:00:00Z", "endDate": "2026-12-01T00:01:00Z", "recipient": {"type": "user", "name": "a"}}"#;
    let periods = vec![period; MAX_PERIODS + 1].join(",");
    let body = format!(
        r#"{{"data": {{"startDate": "2026-12-01T00:00:00Z", "endDate": "2026-12-02T00:00:00Z", "finalTimeline": {{"rotations": [{{"periods": [{periods}]}}]}}}}}}"#
    );
    assert_eq!(
        decode_opsgenie(body.as_bytes()),
        Err(TimelineError::TooManyPeriods)
    );
}

#[test]
fn instants_in_every_offset_form() {
    let base = t("2026-12-01T12:00:00Z");
    for s in [
        "2026-12-01T12:00:00Z",
        "2026-12-01T12:00:00z",
        "2026-12-01T13:00:00+01:00",
        "2026-12-01T13:00:00+0100",
        "2026-12-01T07:00:00-05:00",
        "2026-12-01T17:30:00+05:30",
        "2026-12-02T01:45:00+13:45",
        "2026-12-01 12:00:00Z",
    ] {
        assert_eq!(parse_instant(s), Some(base), "{s}");
    }
    assert_eq!(
        parse_instant("2026-12-01T12:00:00.250Z"),
        Some(base + Duration::from_millis(250))
    );
    assert_eq!(
        parse_instant("2026-12-01T12:00:00.123456789123Z"),
        Some(base + Duration::from_nanos(123_456_789))
    );
    // Day boundaries and leap years.
    assert_eq!(
        parse_instant("2028-02-29T23:30:00-01:00"),
        Some(t("2028-03-01T00:30:00Z"))
    );
    assert_eq!(
        parse_instant("1970-01-01T00:00:00Z"),
        Some(t("1970-01-01T00:00:00Z"))
    );
    for bad in [
        "",
        "2026-12-01",
        "2026-12-01T12:00:00",
        "2026-12-01T12:00:00+1:00",
        "2026-12-01T12:00:00+24:00",
        "2026-12-01T12:00:00.Z",
        "2026-02-29T12:00:00Z",
        "2026-13-01T12:00:00Z",
        "2026-12-01T24:00:00Z",
        "2026-12-01T12:60:00Z",
        "2026-12-01T12:00:60Z",
        "2026-12-01T12:00:00Zjunk",
        "+2026-12-01T12:00:00Z",
        "1969-12-31T23:59:59Z",
        "２０２６-12-01T12:00:00Z",
    ] {
        assert_eq!(parse_instant(bad), None, "{bad:?}");
    }
}

proptest::proptest! {
    /// Any instant written in any zone's local time with its offset parses back to itself.
    #[test]
    fn any_offset_round_trips(secs in 86_400i64..253_402_214_400, offset_min in -1439i64..=1439) {
        let local = secs + offset_min * 60;
        // The local wall-clock reading, written by the `time` crate's calendar.
        let wall = time::OffsetDateTime::from_unix_timestamp(local).expect("within year 9999");
        let (y, mo, d) = wall.to_calendar_date();
        let mo = u8::from(mo);
        let sign = if offset_min < 0 { '-' } else { '+' };
        let text = format!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
            wall.hour(),
            wall.minute(),
            wall.second(),
            offset_min.abs() / 60,
            offset_min.abs() % 60
        );
        let want = UNIX_EPOCH + Duration::from_secs(secs as u64);
        proptest::prop_assert_eq!(parse_instant(&text), Some(want), "{}", text);
    }
}
