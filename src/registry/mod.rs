//! The registry: gateways, tools, resources, prompts, virtual servers and
//! teams. Reads come from an atomically swapped [`Snapshot`]; writes go to the
//! database and then rebuild the snapshot.

pub mod input;
pub mod model;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::store::{Store, StoreError};
pub use snapshot::Snapshot;

pub struct Registry {
    store: Store,
    current: ArcSwap<Snapshot>,
    reload_lock: tokio::sync::Mutex<()>,
    /// Told of every change (this instance's writes and other instances'),
    /// so cached copies at the edge stop being served.
    pub invalidation: std::sync::OnceLock<Arc<mcpgate_proxy::Generations>>,
}

impl Registry {
    pub async fn load(store: Store) -> Result<Arc<Registry>, StoreError> {
        let snapshot = build(&store).await?;
        Ok(Arc::new(Registry {
            store,
            current: ArcSwap::from_pointee(snapshot),
            reload_lock: tokio::sync::Mutex::new(()),
            invalidation: std::sync::OnceLock::new(),
        }))
    }

    /// The current snapshot. Cheap: an atomic load and a reference count.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Rebuilds the snapshot from the database, unless it is already current.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _guard = self.reload_lock.lock().await;
        let version = self.store.registry_version().await?;
        if version == self.current.load().version {
            return Ok(());
        }
        let snapshot = build(&self.store).await?;
        self.current.store(Arc::new(snapshot));
        if let Some(g) = self.invalidation.get() {
            g.bump_all();
        }
        Ok(())
    }

    /// Keeps this instance's snapshot in step with writes made by other
    /// instances sharing the database, by polling the registry version.
    pub fn spawn_sync(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let registry = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(r) = registry.upgrade() else { return };
                if let Err(e) = r.reload().await {
                    tracing::warn!(error = %e, "registry sync failed; serving the last snapshot");
                }
            }
        })
    }
}

async fn build(store: &Store) -> Result<Snapshot, StoreError> {
    // Read the version first: a write that lands during the build is then
    // picked up by the next reload rather than missed.
    let version = store.registry_version().await?;
    Ok(Snapshot::build(snapshot::Parts {
        version,
        tools: store.load_all().await?,
        gateways: store.load_all().await?,
        resources: store.load_all().await?,
        prompts: store.load_all().await?,
        servers: store.load_all().await?,
        server_tools: store
            .load_pairs("server_tool_association", "server_id", "tool_id")
            .await?,
        server_resources: store
            .load_pairs("server_resource_association", "server_id", "resource_id")
            .await?,
        server_prompts: store
            .load_pairs("server_prompt_association", "server_id", "prompt_id")
            .await?,
        teams: store.load_all().await?,
        members: store.load_all().await?,
    }))
}
