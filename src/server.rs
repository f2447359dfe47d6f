//! Wiring: open the store, migrate, load the registry, bind and serve.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::api::{AppState, router};
use crate::auth::{Auth, Secrets, SetupError, resolve_secrets};
use crate::config::Config;
use crate::crypto::Sealer;
use crate::federation::service::GatewayService;
use crate::federation::{Federation, discovery, health};
use crate::mcp::Dispatcher;
use crate::mcp::http::{Endpoint, OriginGuard};
use crate::mcp::session::Sessions;
use crate::observability::Metrics;
use crate::registry::Registry;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// A running gateway: its address, state and a handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    pub secrets: Secrets,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    sync: Option<tokio::task::JoinHandle<()>>,
    health: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, closes the pool.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        if let Some(s) = self.sync {
            s.abort();
        }
        self.health.abort();
        let r = self.task.await.unwrap_or(Ok(()));
        self.state.registry.store().close().await;
        r
    }

    /// Resolves when the server ends on its own (e.g. a fatal accept error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.task).await.unwrap_or(Ok(()))
    }

    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    let store = Store::connect(config).await?;
    store.migrate().await?;
    Ok(store)
}

/// Starts the application on `HOST:PORT` (port 0 picks a free one).
pub async fn start(config: Config) -> Result<Running, StartError> {
    let secrets = resolve_secrets(&config)?;
    let store = open_store(&config).await?;
    let registry = Registry::load(store.clone()).await?;
    let auth = Arc::new(Auth::new(&config, &secrets, store)?);
    let sealer = Sealer::new(&secrets.encryption_secret);
    let federation = Federation::new(&config, sealer.clone());
    let sessions = Sessions::new(
        Duration::from_secs(config.session_ttl.max(1)),
        config.max_sessions,
    );
    sessions.spawn_sweeper();
    let mcp = Arc::new(Endpoint {
        dispatcher: Dispatcher::new(Arc::new(GatewayService {
            registry: registry.clone(),
            fed: federation.clone(),
            page_size: config.mcp_page_size,
        })),
        sessions,
        guard: OriginGuard::for_bind(
            &config.host,
            &config.mcp_allowed_hosts,
            &config.mcp_allowed_origins,
        ),
        keepalive: Duration::from_secs(config.sse_keepalive_interval),
        stateful: config.use_stateful_sessions,
    });
    discovery::spawn_refresher(federation.clone(), registry.clone());
    let health = health::spawn(federation.clone(), registry.clone());
    let state = AppState {
        federation,
        mcp,
        sealer,
        config: Arc::new(config),
        registry: registry.clone(),
        auth,
        metrics: Arc::new(Metrics::new()),
        started: Instant::now(),
    };
    let addr = format!("{}:{}", state.config.host, state.config.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let sync = (state.config.registry_sync_interval > 0)
        .then(|| registry.spawn_sync(Duration::from_secs(state.config.registry_sync_interval)));
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.wait_for(|v| *v).await;
        })
        .await
    });
    tracing::info!(%local, database = state.registry.store().backend().as_str(), "mcpgate listening");
    Ok(Running {
        addr: local,
        state,
        secrets,
        shutdown: tx,
        task,
        sync,
        health,
    })
}
