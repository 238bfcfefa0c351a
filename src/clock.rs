//! The daemon's wall clock, injectable so that tests can move the time of day (for shift ends
//! hours away) without sleeping.
//!
//! In production it is the system's clock. Tests and the sandbox (feature `sim`) may use an
//! adjustable one: the system's time plus an offset that [`Clock::advance`] moves forward, waking
//! every [`Clock::sleep_until`] so that what fell due runs at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// Longest single sleep of [`Clock::sleep_until`]: the wall clock and tokio's monotonic timers
/// drift apart (suspend, NTP steps), so a long wait is re-measured on the wall clock now and then.
const RECHECK: Duration = Duration::from_secs(60);

/// A wall clock: the system's, or (tests) one that can be moved forward.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    adjustable: Option<Arc<Adjustable>>,
}

#[derive(Debug)]
struct Adjustable {
    /// The offset from the system clock, and a change notification for sleepers.
    offset: watch::Sender<Duration>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The time now.
    pub fn now(&self) -> SystemTime {
        let now = SystemTime::now();
        match &self.adjustable {
            None => now,
            Some(a) => now + *a.offset.borrow(),
        }
    }

    /// Waits until [`Clock::now`] is at or past `at`.
    pub async fn sleep_until(&self, at: SystemTime) {
        let mut changes = self.adjustable.as_ref().map(|a| a.offset.subscribe());
        loop {
            let Ok(left) = at.duration_since(self.now()) else {
                return;
            };
            if left.is_zero() {
                return;
            }
            let nap = tokio::time::sleep(left.min(RECHECK));
            match changes.as_mut() {
                None => nap.await,
                Some(rx) => {
                    tokio::select! {
                        () = nap => {}
                        changed = rx.changed() => {
                            // The clock's owner is gone: only the system part moves now.
                            if changed.is_err() {
                                changes = None;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(any(test, feature = "sim"))]
impl Clock {
    /// A clock that starts at the system's time and that [`Clock::advance`] moves forward.
    pub fn adjustable() -> Self {
        Self {
            adjustable: Some(Arc::new(Adjustable {
                offset: watch::channel(Duration::ZERO).0,
            })),
        }
    }

    /// Moves an adjustable clock forward by `by` and wakes its sleepers; nothing for the
    /// system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(a) = &self.adjustable {
            a.offset.send_modify(|offset| *offset += by);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advancing_wakes_a_sleeper_whose_time_came() {
        let clock = Clock::adjustable();
        let due = clock.now() + Duration::from_secs(3600);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(due).await })
        };
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(3601));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken at once")
            .expect("no panic");
        assert!(clock.now() >= due);
    }

    #[tokio::test(start_paused = true)]
    async fn a_past_time_returns_at_once_and_the_system_clock_cannot_be_moved() {
        let clock = Clock::system();
        tokio::time::timeout(
            Duration::from_millis(1),
            clock.sleep_until(SystemTime::UNIX_EPOCH),
        )
        .await
        .expect("at once");
        let before = clock.now();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now() < before + Duration::from_secs(60));
    }
}
