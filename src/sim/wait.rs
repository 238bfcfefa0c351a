//! Waiting for a fake's state to satisfy a condition, the way every fake's `wait_until` does:
//! re-check after every change (and, for fakes that queue work, when the next queued item falls
//! due), up to a deadline on tokio's clock, so tests synchronise on conditions, never on sleeps.

use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Far enough for any test, and no overflow for an absurd timeout.
const LONGEST_WAIT: Duration = Duration::from_secs(86_400 * 365);

/// Whether `holds` became true within `timeout`. It is checked at once, after every
/// notification of `changed`, at the instant `next_due` names (queued work that may be what is
/// awaited; `None` when nothing is queued), and once more at the deadline.
pub(crate) async fn until(
    changed: &Notify,
    timeout: Duration,
    mut holds: impl FnMut() -> bool,
    mut next_due: impl FnMut() -> Option<Instant>,
) -> bool {
    let deadline = Instant::now() + timeout.min(LONGEST_WAIT);
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        // Register before checking, so a change between the check and the wait is not lost.
        notified.as_mut().enable();
        if holds() {
            return true;
        }
        let wake = next_due().map_or(deadline, |t| t.min(deadline));
        if tokio::time::timeout_at(wake, notified).await.is_err() && Instant::now() >= deadline {
            return holds();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_after_a_change_and_times_out_otherwise() {
        let changed = Arc::new(Notify::new());
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, f) = (changed.clone(), flag.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            f.store(true, std::sync::atomic::Ordering::SeqCst);
            c.notify_waiters();
        });
        let started = Instant::now();
        let held = until(
            &changed,
            Duration::from_secs(10),
            || flag.load(std::sync::atomic::Ordering::SeqCst),
            || None,
        )
        .await;
        assert!(held);
        assert_eq!(started.elapsed(), Duration::from_secs(1));

        let started = Instant::now();
        assert!(!until(&changed, Duration::from_secs(3), || false, || None).await);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn rechecks_when_queued_work_falls_due_without_a_notification() {
        let changed = Notify::new();
        let due = Instant::now() + Duration::from_secs(2);
        let checks = Cell::new(0);
        let held = until(
            &changed,
            Duration::from_secs(60),
            || {
                checks.set(checks.get() + 1);
                Instant::now() >= due
            },
            || Some(due),
        )
        .await;
        assert!(held);
        assert_eq!(checks.get(), 2, "once at once, once when the work fell due");
    }
}
