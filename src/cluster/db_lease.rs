//! The leader lease in the database, for replicas that share one without
//! Redis: one row updated with plain statements (no session-level advisory
//! locks), so it works through PgBouncer's transaction pooling. Expiry uses
//! the replicas' clocks (milliseconds since the epoch): keep them within a
//! fraction of the TTL of each other (NTP does).

use super::bus::BoxFuture;
use super::lease::{Lease, LeaseError};
use crate::store::{Store, Val};

pub struct DbLease {
    store: Store,
    replica: String,
    ttl_ms: i64,
}

impl DbLease {
    pub fn new(store: Store, replica: String, ttl: std::time::Duration) -> DbLease {
        DbLease {
            store,
            replica,
            ttl_ms: ttl.as_millis() as i64,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The highest fencing token a leader has written with.
pub async fn fence(store: &Store) -> Result<i64, crate::store::StoreError> {
    Ok(store
        .scalar_i64(
            "SELECT token FROM cluster_fences WHERE name = 'leader'",
            vec![],
        )
        .await?
        .unwrap_or(0))
}

impl Lease for DbLease {
    fn acquire_or_renew(&self) -> BoxFuture<'_, Result<Option<u64>, LeaseError>> {
        Box::pin(async move {
            let unavailable = |e: crate::store::StoreError| LeaseError::Unavailable(e.to_string());
            let floor = fence(&self.store).await.map_err(unavailable)?;
            let now = now_ms();
            let mut tx = self.store.begin().await.map_err(unavailable)?;
            // A new holder's token exceeds both the last holder's and every
            // token already used for a write.
            let token = tx
                .run_returning(
                    "UPDATE cluster_leases SET \
                       token = CASE WHEN holder = $1 THEN token \
                                    ELSE (CASE WHEN token > $4 THEN token ELSE $4 END) + 1 END, \
                       holder = $1, expires_at_ms = $2 \
                     WHERE name = 'leader' AND (holder = $1 OR holder IS NULL OR expires_at_ms < $3) \
                     RETURNING token"
                        .to_owned(),
                    vec![
                        Val::from(self.replica.as_str()),
                        Val::from(now + self.ttl_ms),
                        Val::from(now),
                        Val::from(floor),
                    ],
                )
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            Ok(token.and_then(|t| u64::try_from(t).ok()))
        })
    }

    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let r = async {
                let mut tx = self.store.begin().await?;
                tx.run(
                    "UPDATE cluster_leases SET holder = NULL, expires_at_ms = 0 WHERE name = 'leader' AND holder = $1".to_owned(),
                    vec![self.replica.as_str().into()],
                )
                .await?;
                tx.commit().await
            }
            .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "could not release the leader lease; it expires on its own");
            }
        })
    }

    fn kind(&self) -> &'static str {
        "database"
    }
}
