//! The registry: gateways, tools, resources, prompts, virtual servers,
//! users and teams. Reads come from an atomically swapped [`Snapshot`]
//! (`Arc<Registry>` is the read-only handle); every write goes through the
//! [`Updater`], which rebuilds the snapshot and announces the change.

pub mod discovered;
pub mod input;
pub mod model;
pub mod snapshot;
pub mod updater;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Bus, Event, Origin, Subscriber, bus::BoxFuture};
use crate::store::{Store, StoreError};
pub use snapshot::Snapshot;
pub use updater::Updater;

pub struct Registry {
    store: Store,
    current: ArcSwap<Snapshot>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    pub async fn load(store: Store) -> Result<Arc<Registry>, StoreError> {
        let snapshot = build(&store).await?;
        Ok(Arc::new(Registry {
            store,
            current: ArcSwap::from_pointee(snapshot),
            reload_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// The current snapshot. Cheap: an atomic load and a reference count.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The version of the snapshot being served.
    pub fn version(&self) -> i64 {
        self.current.load().version
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Rebuilds the snapshot from the database, unless it is already current.
    /// Returns the version now served.
    pub async fn reload(&self) -> Result<i64, StoreError> {
        let _guard = self.reload_lock.lock().await;
        let version = self.store.registry_version().await?;
        if version == self.version() {
            return Ok(version);
        }
        let snapshot = build(&self.store).await?;
        let v = snapshot.version;
        self.current.store(Arc::new(snapshot));
        Ok(v)
    }

    /// The safety net under the bus: compares the database's registry
    /// version with the snapshot's and, when another replica wrote something
    /// this one missed, announces it locally (as if it had been received).
    pub async fn catch_up(&self, bus: &Bus) -> Result<bool, StoreError> {
        let db = self.store.registry_version().await?;
        if db == self.version() {
            return Ok(false);
        }
        // Memberships may be among what was missed: treat it as everything.
        bus.synthesize(Event::PrincipalsChanged { version: db })
            .await;
        Ok(true)
    }

    /// Polls the database version every `every` until `stop`.
    pub async fn run_sync(
        self: Arc<Self>,
        bus: Arc<Bus>,
        every: Duration,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            match self.catch_up(&bus).await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("registry sync works again");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "registry sync failed; serving the last snapshot");
                }
                Err(_) => {}
            }
        }
    }
}

/// Another replica's write: bring the snapshot up to its version before the
/// later subscribers (auth, edge) drop what they cached from the old one.
impl Subscriber for Registry {
    fn on_event<'a>(&'a self, event: &'a Event, origin: Origin) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(version) = event.registry_version() else {
                return;
            };
            if origin == Origin::Local || version <= self.version() {
                return;
            }
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, version, "cannot load a newer registry; the sync task retries");
            }
        })
    }
}

async fn build(store: &Store) -> Result<Snapshot, StoreError> {
    // One read transaction: the version and every table as of one moment.
    let mut tx = store.begin_read().await?;
    let snapshot = Snapshot::build(snapshot::Parts {
        version: tx.registry_version().await?,
        tools: tx.load_all().await?,
        gateways: tx.load_all().await?,
        resources: tx.load_all().await?,
        prompts: tx.load_all().await?,
        servers: tx.load_all().await?,
        server_tools: tx
            .load_pairs("server_tool_association", "server_id", "tool_id")
            .await?,
        server_resources: tx
            .load_pairs("server_resource_association", "server_id", "resource_id")
            .await?,
        server_prompts: tx
            .load_pairs("server_prompt_association", "server_id", "prompt_id")
            .await?,
        teams: tx.load_all().await?,
        members: tx.load_all().await?,
        users: tx.load_all().await?,
    });
    tx.commit().await?;
    Ok(snapshot)
}
