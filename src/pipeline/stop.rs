//! The shutdown signal that cuts steps in flight short, so they release their claims before the
//! process exits instead of leaving them to expire (which would stall a restart or the next pod
//! of a rolling deploy for a claim's TTL).

use std::sync::Arc;

use tokio::sync::watch;

/// A one-way switch, shared by clones: once [`Stop::stop`] is called, every
/// [`Stop::stopped`] resolves.
#[derive(Debug, Clone)]
pub struct Stop(Arc<watch::Sender<bool>>);

impl Default for Stop {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl Stop {
    /// Flips the switch.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Whether the switch was flipped.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the switch is flipped (at once if it already was).
    pub async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        // `wait_for` fails only if the sender is gone, which it cannot be while `self` lives.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn stopped_resolves_for_every_clone_once_stopped() {
        let stop = Stop::default();
        let other = stop.clone();
        let waiting = tokio::spawn(async move { other.stopped().await });
        assert!(
            tokio::time::timeout(Duration::from_secs(60), stop.clone().stopped())
                .await
                .is_err(),
            "not stopped yet"
        );
        stop.stop();
        assert!(stop.is_stopped());
        waiting.await.expect("the waiter ends");
        stop.stopped().await;
    }
}
