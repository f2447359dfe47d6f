//! Leader election. One replica at a time holds the lease and runs the jobs
//! that must run once (upstream health checks, clean-up). A holder that
//! cannot renew stops acting as leader *before* its lease can expire for the
//! others, and every leader write carries the lease's fencing token, so a
//! stale leader's late write is refused by the database.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::bus::BoxFuture;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease store unavailable: {0}")]
    Unavailable(String),
}

/// A lease in some shared store.
pub trait Lease: Send + Sync + 'static {
    /// Takes the lease if it is free or renews it if this replica holds it.
    /// `Some(token)` while held; the token grows with every new holder.
    fn acquire_or_renew(&self) -> BoxFuture<'_, Result<Option<u64>, LeaseError>>;
    /// Gives the lease up (shutdown), so another replica takes over at once.
    fn release(&self) -> BoxFuture<'_, ()>;
    /// `always`, `database`, `redis`.
    fn kind(&self) -> &'static str;
}

/// The lease of a lone instance: always held, token 0.
pub struct AlwaysLeader;

impl Lease for AlwaysLeader {
    fn acquire_or_renew(&self) -> BoxFuture<'_, Result<Option<u64>, LeaseError>> {
        Box::pin(async { Ok(Some(0)) })
    }
    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn kind(&self) -> &'static str {
        "always"
    }
}

/// This replica's view of the lease, kept fresh by a heartbeat task.
pub struct Leadership {
    lease: Arc<dyn Lease>,
    ttl: Duration,
    heartbeat: Duration,
    held: Mutex<Option<(u64, Instant)>>,
    changes: watch::Sender<Option<u64>>,
}

impl Leadership {
    pub fn new(lease: Arc<dyn Lease>, ttl: Duration, heartbeat: Duration) -> Arc<Leadership> {
        Arc::new(Leadership {
            lease,
            ttl,
            heartbeat,
            held: Mutex::new(None),
            changes: watch::channel(None).0,
        })
    }

    pub fn kind(&self) -> &'static str {
        self.lease.kind()
    }

    /// The fencing token while this replica leads. Leadership ends on its
    /// own one heartbeat before the lease could expire for the others, even
    /// if the heartbeat task is stuck.
    pub fn token(&self) -> Option<u64> {
        let held = *self.held.lock();
        held.filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t)
    }

    pub fn is_leader(&self) -> bool {
        self.token().is_some()
    }

    /// Leadership changes (`Some(token)` when gained).
    pub fn watch(&self) -> watch::Receiver<Option<u64>> {
        self.changes.subscribe()
    }

    /// One heartbeat: renew or take the lease, or lose it.
    pub async fn beat(&self) {
        let started = Instant::now();
        let result = self.lease.acquire_or_renew().await;
        let valid_until = started + self.ttl.saturating_sub(self.heartbeat);
        let now = match result {
            Ok(Some(token)) => Some((token, valid_until)),
            Ok(None) => None,
            Err(e) => {
                let was = self.token();
                if was.is_some() {
                    tracing::warn!(error = %e, "cannot renew the leader lease; stepping down");
                }
                None
            }
        };
        let before = self.token();
        *self.held.lock() = now;
        let after = now.map(|(t, _)| t);
        if before != after {
            match after {
                Some(t) => tracing::info!(token = t, lease = self.kind(), "this replica leads"),
                None => tracing::info!(lease = self.kind(), "this replica no longer leads"),
            }
            self.changes.send_replace(after);
        }
    }

    /// Heartbeats until `stop`, then gives the lease up.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first beat is the caller's (before serving).
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.beat().await,
                _ = stop.cancelled() => break,
            }
        }
        if self.token().is_some() {
            *self.held.lock() = None;
            self.changes.send_replace(None);
            self.lease.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flaky {
        up: AtomicBool,
    }
    impl Lease for Flaky {
        fn acquire_or_renew(&self) -> BoxFuture<'_, Result<Option<u64>, LeaseError>> {
            let up = self.up.load(Ordering::Relaxed);
            Box::pin(async move {
                if up {
                    Ok(Some(7))
                } else {
                    Err(LeaseError::Unavailable("down".into()))
                }
            })
        }
        fn release(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
        fn kind(&self) -> &'static str {
            "test"
        }
    }

    #[tokio::test]
    async fn a_failed_renewal_steps_down_at_once() {
        let lease = Arc::new(Flaky {
            up: AtomicBool::new(true),
        });
        let l = Leadership::new(
            lease.clone(),
            Duration::from_secs(15),
            Duration::from_secs(5),
        );
        assert_eq!(l.token(), None);
        l.beat().await;
        assert_eq!(l.token(), Some(7));
        lease.up.store(false, Ordering::Relaxed);
        l.beat().await;
        assert_eq!(l.token(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_lapses_without_heartbeats() {
        let l = Leadership::new(
            Arc::new(AlwaysLeader),
            Duration::from_secs(15),
            Duration::from_secs(5),
        );
        l.beat().await;
        assert!(l.is_leader());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!l.is_leader(), "valid only ttl - heartbeat after a renewal");
    }
}
