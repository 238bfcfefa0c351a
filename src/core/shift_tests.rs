//! Table tests of [`shift_end`], one row per case the issue names, and of [`lock_name`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

/// 2026-12-01T00:00:00Z plus `h` hours (fractions allowed, in minutes' precision).
fn at(h: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_083_200) + Duration::from_secs((h * 3600.0) as u64)
}

fn user(who: &str, from: f64, to: f64, rotation: &str) -> Period {
    Period {
        start: at(from),
        end: at(to),
        kind: RecipientKind::User,
        identity: who.to_owned(),
        rotation: rotation.to_owned(),
    }
}

fn group(kind: RecipientKind, name: &str, from: f64, to: f64) -> Period {
    Period {
        start: at(from),
        end: at(to),
        kind,
        identity: name.to_owned(),
        rotation: "primary".to_owned(),
    }
}

/// A one-day window (hours 0 to 24).
fn day(periods: Vec<Period>) -> Timeline {
    Timeline {
        window_start: at(0.0),
        window_end: at(24.0),
        periods,
    }
}

#[test]
fn the_table() {
    let alice = "alice@example.com";
    struct Row {
        name: &'static str,
        timeline: Timeline,
        now: f64,
        access_end: f64,
        want: ShiftEnd,
    }
    let rows = vec![
        Row {
            name: "one period: ends at its end",
            timeline: day(vec![
                user(alice, 8.0, 16.0, "primary"),
                user("bob@example.com", 16.0, 24.0, "primary"),
            ]),
            now: 10.0,
            access_end: 20.0,
            want: ShiftEnd::EndsAt(at(16.0)),
        },
        Row {
            name: "adjacent periods of the same person are one shift",
            timeline: day(vec![
                user(alice, 8.0, 12.0, "primary"),
                user(alice, 12.0, 14.0, "primary"),
                user(alice, 14.0, 15.5, "primary"),
            ]),
            now: 9.0,
            access_end: 20.0,
            want: ShiftEnd::EndsAt(at(15.5)),
        },
        Row {
            name: "overlapping periods across rotations extend the shift",
            timeline: day(vec![
                user(alice, 8.0, 12.0, "primary"),
                user(alice, 11.0, 17.0, "override"),
                user("bob@example.com", 12.0, 20.0, "primary"),
            ]),
            now: 9.0,
            access_end: 22.0,
            want: ShiftEnd::EndsAt(at(17.0)),
        },
        Row {
            name: "a gap ends the shift, even if the person comes back later",
            timeline: day(vec![
                user(alice, 8.0, 12.0, "primary"),
                user(alice, 13.0, 18.0, "primary"),
            ]),
            now: 9.0,
            access_end: 20.0,
            want: ShiftEnd::EndsAt(at(12.0)),
        },
        Row {
            name: "the username matches case-insensitively",
            timeline: day(vec![user("Alice@Example.com", 8.0, 12.0, "primary")]),
            now: 9.0,
            access_end: 20.0,
            want: ShiftEnd::EndsAt(at(12.0)),
        },
        Row {
            name: "runs to the window's end before the access end: continue at the window end",
            timeline: day(vec![user(alice, 20.0, 24.0, "primary")]),
            now: 21.0,
            access_end: 30.0,
            want: ShiftEnd::ContinuesPastWindow { at: at(24.0) },
        },
        Row {
            name: "runs to the window's end, which covers the access: covered",
            timeline: day(vec![user(alice, 0.0, 24.0, "primary")]),
            now: 21.0,
            access_end: 23.0,
            want: ShiftEnd::CoversAccess,
        },
        Row {
            name: "ends after the access end: covered",
            timeline: day(vec![user(alice, 8.0, 16.0, "primary")]),
            now: 10.0,
            access_end: 12.0,
            want: ShiftEnd::CoversAccess,
        },
        Row {
            name: "ends exactly at the access end: covered",
            timeline: day(vec![user(alice, 8.0, 16.0, "primary")]),
            now: 10.0,
            access_end: 16.0,
            want: ShiftEnd::CoversAccess,
        },
        Row {
            name: "someone else is on call: not on call",
            timeline: day(vec![user("bob@example.com", 0.0, 24.0, "primary")]),
            now: 10.0,
            access_end: 12.0,
            want: ShiftEnd::NotOnCall,
        },
        Row {
            name: "the person's period is over: not on call",
            timeline: day(vec![
                user(alice, 0.0, 10.0, "primary"),
                user(alice, 12.0, 14.0, "primary"),
            ]),
            now: 10.0,
            access_end: 12.0,
            want: ShiftEnd::NotOnCall,
        },
        Row {
            name: "a period starting exactly now counts; one ending exactly now does not",
            timeline: day(vec![
                user(alice, 6.0, 10.0, "primary"),
                user("carol@example.com", 10.0, 11.0, "primary"),
                user(alice, 10.0, 13.0, "override"),
            ]),
            now: 10.0,
            access_end: 20.0,
            want: ShiftEnd::EndsAt(at(13.0)),
        },
        Row {
            name: "an empty slot names nobody",
            timeline: day(vec![group(
                RecipientKind::Other("none".into()),
                "",
                0.0,
                24.0,
            )]),
            now: 10.0,
            access_end: 12.0,
            want: ShiftEnd::NotOnCall,
        },
        Row {
            name: "a user period wins over a team covering now",
            timeline: day(vec![
                group(RecipientKind::Team, "sre", 0.0, 24.0),
                user(alice, 8.0, 11.0, "secondary"),
            ]),
            now: 10.0,
            access_end: 20.0,
            want: ShiftEnd::EndsAt(at(11.0)),
        },
    ];
    for row in rows {
        let got = shift_end(&row.timeline, alice, at(row.now), at(row.access_end));
        assert_eq!(got, Ok(row.want), "{}", row.name);
    }
}

#[test]
fn on_call_through_a_team_or_escalation_is_unknowable_with_the_reason() {
    for (kind, word) in [
        (RecipientKind::Team, "team"),
        (RecipientKind::Escalation, "escalation"),
    ] {
        let timeline = day(vec![
            group(kind, "platform-sre", 0.0, 12.0),
            user("bob@example.com", 12.0, 24.0, "primary"),
        ]);
        match shift_end(&timeline, "alice@example.com", at(9.0), at(20.0)) {
            Ok(ShiftEnd::Unknowable { reason }) => {
                assert!(reason.contains(word), "{reason}");
                assert!(reason.contains("platform-sre"), "{reason}");
                assert!(reason.contains("2026-12-01T12:00:00Z"), "{reason}");
            }
            other => panic!("{word}: {other:?}"),
        }
    }
}

#[test]
fn following_into_the_next_window_ends_where_the_next_window_says() {
    // Window 1 (day 1) says "continues at 24:00"; window 2 (day 2) is asked with now = 24:00.
    let first = day(vec![user("alice@example.com", 18.0, 24.0, "primary")]);
    let second = Timeline {
        window_start: at(24.0),
        window_end: at(48.0),
        periods: vec![user("alice@example.com", 24.0, 26.0, "primary")],
    };
    let access_end = at(30.0);
    let Ok(ShiftEnd::ContinuesPastWindow { at: next }) =
        shift_end(&first, "alice@example.com", at(20.0), access_end)
    else {
        panic!("the first window must say to continue");
    };
    assert_eq!(next, at(24.0));
    assert_eq!(
        shift_end(&second, "alice@example.com", next, access_end),
        Ok(ShiftEnd::EndsAt(at(26.0)))
    );
}

#[test]
fn a_window_without_now_is_an_error_not_a_guess() {
    let timeline = day(vec![user("alice@example.com", 0.0, 24.0, "primary")]);
    for now in [-1.0, 24.0, 30.0] {
        let now = if now < 0.0 {
            at(0.0) - Duration::from_secs(3600)
        } else {
            at(now)
        };
        let err = shift_end(&timeline, "alice@example.com", now, at(30.0)).unwrap_err();
        assert!(
            matches!(err, ShiftError::NowOutsideWindow { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("fetch the window"), "{err}");
    }
}

#[test]
fn an_empty_window_is_an_error() {
    let timeline = Timeline {
        window_start: at(5.0),
        window_end: at(5.0),
        periods: vec![],
    };
    assert!(matches!(
        shift_end(&timeline, "alice@example.com", at(5.0), at(6.0)),
        Err(ShiftError::EmptyWindow { .. })
    ));
}

#[test]
fn reversed_periods_are_ignored() {
    // A period whose end is before its start covers nothing.
    let timeline = day(vec![user("alice@example.com", 12.0, 8.0, "primary")]);
    assert_eq!(
        shift_end(&timeline, "alice@example.com", at(10.0), at(20.0)),
        Ok(ShiftEnd::NotOnCall)
    );
}

#[test]
fn lock_names_are_deterministic_and_tame() {
    let id = "0b0e5a8c-6a4e-4cf5-9a4f-6e1f3c2d1a00";
    assert_eq!(lock_name(id), lock_name(id));
    assert_eq!(lock_name(id), format!("opsgenie-shift-end-{id}"));
    assert_ne!(
        lock_name(id),
        lock_name("0b0e5a8c-6a4e-4cf5-9a4f-6e1f3c2d1a01")
    );
    assert_eq!(lock_name("a/b c"), "opsgenie-shift-end-a-b-c");
}
