//! Table tests of [`judge`] and [`recheck`]: each mode against each kind of shift answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

const MIN: Duration = Duration::from_secs(60);

/// 2026-12-01T00:00:00Z plus `m` minutes.
fn at(m: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_083_200 + m * 60)
}

fn judged(
    mode: ShiftEndMode,
    grace: u64,
    access_end: u64,
    answer: Result<ShiftEnd, String>,
) -> ShiftVerdict {
    judge(
        mode,
        MIN * grace as u32,
        "alice",
        "Primary",
        Some(at(access_end)),
        answer,
    )
}

#[test]
fn decline_approves_access_within_the_shift_and_declines_longer_access_with_both_times() {
    use ShiftEndMode::Decline;
    // The shift ends at minute 60.
    let ends = || Ok(ShiftEnd::EndsAt(at(60)));
    match judged(Decline, 0, 45, ends()) {
        ShiftVerdict::Approve(text) => {
            assert!(text.contains("2026-12-01T00:45:00Z"), "{text}");
            assert!(text.contains("2026-12-01T01:00:00Z"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(judged(Decline, 0, 60, ends()), ShiftVerdict::Approve(_)),
        "ending exactly at shift end"
    );
    match judged(Decline, 0, 480, ends()) {
        ShiftVerdict::Decline(text) => {
            assert!(text.starts_with("Not auto-approved:"), "{text}");
            assert!(text.contains("ends at 2026-12-01T01:00:00Z"), "{text}");
            assert!(text.contains("until 2026-12-01T08:00:00Z"), "{text}");
            assert!(text.contains("shift_end: decline"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // The grace stretches the shift: 15 minutes past its end is still fine, 16 are not.
    assert!(matches!(
        judged(Decline, 15, 75, ends()),
        ShiftVerdict::Approve(_)
    ));
    match judged(Decline, 15, 76, ends()) {
        ShiftVerdict::Decline(text) => assert!(text.contains("shift_grace of 15m"), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn revoke_approves_and_plans_the_lock_at_shift_end_plus_grace() {
    let verdict = judged(ShiftEndMode::Revoke, 10, 480, Ok(ShiftEnd::EndsAt(at(60))));
    match verdict {
        ShiftVerdict::ApproveAndRevoke {
            at: when,
            access_end,
            text,
        } => {
            assert_eq!(when, at(70));
            assert_eq!(access_end, at(480));
            assert!(text.contains("revoked at 2026-12-01T01:10:00Z"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // Access within the shift needs no lock.
    assert!(matches!(
        judged(ShiftEndMode::Revoke, 0, 30, Ok(ShiftEnd::EndsAt(at(60)))),
        ShiftVerdict::Approve(_)
    ));
}

#[test]
fn a_shift_covering_the_access_approves_in_every_mode_and_adds_nothing() {
    for mode in [ShiftEndMode::Decline, ShiftEndMode::Revoke] {
        assert_eq!(
            judged(mode, 0, 480, Ok(ShiftEnd::CoversAccess)),
            ShiftVerdict::Approve(String::new())
        );
    }
}

#[test]
fn an_unknown_end_is_never_fine_under_decline_or_revoke() {
    let unknowns: Vec<(Result<ShiftEnd, String>, &str)> = vec![
        (
            Ok(ShiftEnd::Unknowable {
                reason: "on call only through team \"sre\"".into(),
            }),
            "team \"sre\"",
        ),
        (Ok(ShiftEnd::NotOnCall), "does not show them on call"),
        (Err("HTTP 503".into()), "HTTP 503"),
        (
            Ok(ShiftEnd::ContinuesPastWindow { at: at(10) }),
            "not followed past",
        ),
    ];
    for mode in [ShiftEndMode::Decline, ShiftEndMode::Revoke] {
        for (answer, says) in &unknowns {
            match judged(mode, 0, 480, answer.clone()) {
                ShiftVerdict::Decline(text) => {
                    assert!(text.contains(says), "{text}");
                    assert!(text.contains("unknown"), "{text}");
                    assert!(text.contains(mode.as_str()), "{text}");
                }
                other => panic!("{mode:?} {answer:?}: {other:?}"),
            }
        }
        match judge(
            mode,
            Duration::ZERO,
            "alice",
            "Primary",
            None,
            Ok(ShiftEnd::CoversAccess),
        ) {
            ShiftVerdict::Decline(text) => assert!(text.contains("when its access ends"), "{text}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn ignore_approves_without_looking() {
    assert_eq!(
        judged(ShiftEndMode::Ignore, 0, 480, Err("not looked up".into())),
        ShiftVerdict::Approve(String::new())
    );
}

#[test]
fn the_recheck_moves_the_lock_only_for_a_known_later_end() {
    let now = at(60);
    assert_eq!(
        recheck(now, MIN, Ok(ShiftEnd::EndsAt(at(120)))),
        Recheck::MoveTo(at(121))
    );
    assert_eq!(
        recheck(now, Duration::ZERO, Ok(ShiftEnd::EndsAt(at(60)))),
        Recheck::Lock
    );
    assert_eq!(
        recheck(now, Duration::ZERO, Ok(ShiftEnd::CoversAccess)),
        Recheck::NotNeeded
    );
    for unknown in [
        Ok(ShiftEnd::NotOnCall),
        Ok(ShiftEnd::Unknowable {
            reason: "team".into(),
        }),
        Err("HTTP 503".into()),
    ] {
        assert_eq!(recheck(now, MIN, unknown), Recheck::Lock);
    }
}

#[test]
fn the_mode_is_read_in_lower_case_and_decline_is_the_default() {
    assert_eq!(ShiftEndMode::default(), ShiftEndMode::Decline);
    let mode: ShiftEndMode = serde_json::from_str("\"revoke\"").unwrap();
    assert_eq!(mode, ShiftEndMode::Revoke);
    assert!(serde_json::from_str::<ShiftEndMode>("\"Revoke\"").is_err());
}
