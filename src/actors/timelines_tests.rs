//! The timeline cache under tokio's paused clock: shared lookups, the TTL, fresh re-reads,
//! failures not cached, a wedged lookup restarting the cache; and `find_shift_end` following a
//! shift into the next window but never past the access's end.

use std::cell::RefCell;

use super::*;
use crate::core::shift::{Period, RecipientKind};

/// 2026-12-01T00:00:00Z plus `h` hours.
fn at(h: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_083_200 + h * 3600)
}

fn alice(from: u64, to: u64) -> Period {
    Period {
        start: at(from),
        end: at(to),
        kind: RecipientKind::User,
        identity: "alice@example.com".into(),
        rotation: "primary".into(),
    }
}

/// Day-long windows (day `d` is hours 24d..24d+24) cut from `periods`; every lookup takes a
/// second and is recorded as (schedule, instant).
/// The lookups made: (schedule, instant).
type Asked = Rc<RefCell<Vec<(String, SystemTime)>>>;

fn days(periods: Vec<Period>) -> (TimelineLookup, Asked) {
    let asked = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&asked);
    let periods = Rc::new(RefCell::new(periods));
    let lookup: TimelineLookup = Rc::new(move |schedule: String, date: SystemTime| {
        log.borrow_mut().push((schedule, date));
        let start = UNIX_EPOCH + Duration::from_secs(day_of(date) * 86_400);
        let end = start + Duration::from_secs(86_400);
        let cut: Vec<Period> = periods
            .borrow()
            .iter()
            .filter(|p| p.end > start && p.start < end)
            .map(|p| Period {
                start: p.start.max(start),
                end: p.end.min(end),
                ..p.clone()
            })
            .collect();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Timeline {
                window_start: start,
                window_end: end,
                periods: cut,
            })
        }
        .boxed_local()
    });
    (lookup, asked)
}

#[actix_rt::test]
async fn concurrent_asks_share_one_lookup_and_windows_expire_or_are_skipped_when_fresh() {
    tokio::time::pause();
    let (lookup, asked) = days(vec![alice(8, 16)]);
    let cache = TimelineCache::new(lookup, Duration::from_secs(30)).start();
    let answers = futures::future::join_all((0..50).map(|_| {
        find_shift_end(
            &cache,
            "Primary",
            "alice@example.com",
            at(10),
            at(20),
            false,
        )
    }))
    .await;
    assert_eq!(asked.borrow().len(), 1);
    for answer in answers {
        assert_eq!(answer, Ok(ShiftEnd::EndsAt(at(16))));
    }
    // Cached within the TTL, for any instant of the window.
    let later = find_shift_end(
        &cache,
        "Primary",
        "alice@example.com",
        at(11),
        at(20),
        false,
    )
    .await;
    assert_eq!(later, Ok(ShiftEnd::EndsAt(at(16))));
    assert_eq!(asked.borrow().len(), 1);
    // Fresh skips the cache.
    find_shift_end(&cache, "Primary", "alice@example.com", at(11), at(20), true)
        .await
        .expect("fresh");
    assert_eq!(asked.borrow().len(), 2);
    // Past the TTL it is read again.
    tokio::time::advance(Duration::from_secs(31)).await;
    find_shift_end(
        &cache,
        "Primary",
        "alice@example.com",
        at(11),
        at(20),
        false,
    )
    .await
    .expect("expired");
    assert_eq!(asked.borrow().len(), 3);
}

#[actix_rt::test]
async fn a_shift_is_followed_into_the_next_window_but_not_past_the_access_end() {
    tokio::time::pause();
    // Alice from 18:00 on day 0 to 06:00 on day 1: two windows.
    let (lookup, asked) = days(vec![alice(18, 24), alice(24, 30)]);
    let cache = TimelineCache::new(lookup, Duration::from_secs(30)).start();
    assert_eq!(
        find_shift_end(&cache, "S", "alice@example.com", at(20), at(40), false).await,
        Ok(ShiftEnd::EndsAt(at(30)))
    );
    assert_eq!(asked.borrow().len(), 2);
    assert_eq!(
        asked.borrow()[1].1,
        at(24),
        "the next window starts where the first ended"
    );
    // Access ending before the window does: one window, covered.
    assert_eq!(
        find_shift_end(&cache, "T", "alice@example.com", at(20), at(23), false).await,
        Ok(ShiftEnd::CoversAccess)
    );
    assert_eq!(asked.borrow().len(), 3);
    // A shift ending exactly at the window's end: the next window names nobody at its start.
    let (lookup, _) = days(vec![alice(18, 24)]);
    let cache = TimelineCache::new(lookup, Duration::from_secs(30)).start();
    assert_eq!(
        find_shift_end(&cache, "S", "alice@example.com", at(20), at(40), false).await,
        Ok(ShiftEnd::EndsAt(at(24)))
    );
}

#[actix_rt::test]
async fn a_permanent_rotation_costs_a_bounded_number_of_windows() {
    tokio::time::pause();
    let (lookup, asked) = days(vec![alice(0, 24 * 365)]);
    let cache = TimelineCache::new(lookup, Duration::from_secs(30)).start();
    // Access of a year: not followed for 365 windows.
    let answer = find_shift_end(&cache, "S", "alice@example.com", at(1), at(24 * 365), false).await;
    assert!(
        matches!(answer, Err(ShiftLookupError::TooLong { .. })),
        "{answer:?}"
    );
    assert!(!answer.unwrap_err().is_retryable());
    assert_eq!(asked.borrow().len(), MAX_WINDOWS);
}

#[actix_rt::test]
async fn failures_reach_the_askers_and_are_not_cached() {
    tokio::time::pause();
    let calls = Rc::new(RefCell::new(0));
    let c = Rc::clone(&calls);
    let lookup: TimelineLookup = Rc::new(move |_, _| {
        *c.borrow_mut() += 1;
        async {
            Err(GatewayError::Exhausted {
                endpoint: "schedule_timeline",
                attempts: 3,
                last: "HTTP 503".into(),
            })
        }
        .boxed_local()
    });
    let cache = TimelineCache::new(lookup, Duration::from_secs(30)).start();
    for expected in 1..=2 {
        let err = find_shift_end(&cache, "S", "a", at(1), at(2), false)
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("HTTP 503"), "{err}");
        assert_eq!(*calls.borrow(), expected);
    }
}

#[actix_rt::test]
async fn a_wedged_lookup_restarts_the_cache() {
    tokio::time::pause();
    let lookup: TimelineLookup = Rc::new(|_, _| futures::future::pending().boxed_local());
    let cache = Supervisor::start(move |_| TimelineCache::new(lookup, Duration::from_secs(30)));
    let start = Instant::now();
    let err = find_shift_end(&cache, "S", "a", at(1), at(2), false)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ShiftLookupError::Window {
            schedule: "S".into(),
            source: WindowError::Stopped
        }
    );
    assert!(err.is_retryable());
    assert!(start.elapsed() >= STUCK_AFTER);
}
