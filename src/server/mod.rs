//! Wiring: open the store, migrate, load the registry, bind and serve.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use arc_swap::ArcSwap;
use mcpgate_cache_zones::Zone;
use mcpgate_proxy::metrics::EdgeMetrics;
use mcpgate_proxy::server::{EdgeOptions, Stop};
use mcpgate_proxy::{EdgeConfig, EdgeHandle, EdgeProxy, Generations};

use crate::api::{AppInner, AppState, router};
use crate::auth::{Auth, Secrets, SetupError, resolve_secrets};
use crate::cluster::db_lease::{DbLease, fence};
use crate::cluster::redis::{
    Redis, RedisError, RedisLease, RedisSettings, RedisTransport, Subscriptions,
};
use crate::cluster::{Bus, Leadership, Lease, new_replica_id};
use crate::config::{Config, LiveConfig, ReloadReport};
use crate::crypto::Sealer;
use crate::federation::{Federation, discovery, health};
use crate::gateway::GatewayService;
pub use crate::lifecycle::{Phase, Readiness, Tasks};
use crate::mcp::Dispatcher;
use crate::mcp::http::{Endpoint, OriginGuard};
use crate::mcp::sealed::SessionSealer;
use crate::mcp::session::{LocalNet, SessionNet, Sessions};
use crate::observability::Metrics;
use crate::registry::{Registry, Updater};
use crate::relay::{RedisNet, SessionEndings};
use crate::store::{Store, StoreError};

/// How long background tasks get to stop at shutdown.
const TASK_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// A running gateway: its addresses, state and a handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// The edge's address, when it runs.
    pub edge_addr: Option<SocketAddr>,
    /// The scrape listener's address, when `METRICS_PORT` is set.
    pub metrics_addr: Option<SocketAddr>,
    edge: Option<EdgeHandle>,
    edge_config: Arc<ArcSwap<EdgeConfig>>,
    pub state: AppState,
    pub secrets: Secrets,
    pub leadership: Arc<Leadership>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    tasks: Tasks,
    /// How long a stop lets in-flight requests finish (`EDGE_GRACE_PERIOD`).
    grace: Duration,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, stops the
    /// background tasks, closes the pool.
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop_with(Stop::Terminate).await
    }

    /// Stops; with `Stop::Upgrade` the edge hands its listening socket to a
    /// process started with `serve --upgrade`.
    pub async fn stop_with(mut self, how: Stop) -> std::io::Result<()> {
        self.state.readiness.set(Phase::Draining);
        let deadline = tokio::time::Instant::now() + self.grace;
        // The edge first: what it still forwards needs the application.
        if let Some(edge) = self.edge.take() {
            let _ = tokio::task::spawn_blocking(move || edge.stop(how)).await;
        }
        let _ = self.shutdown.send(true);
        // What is still open then (long streams, slow calls) gets what is
        // left of the grace period, and at least a second.
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_secs(1));
        let r = match tokio::time::timeout(left, &mut self.task).await {
            Ok(joined) => joined.unwrap_or(Ok(())),
            Err(_) => {
                tracing::info!("grace period over; closing the remaining connections");
                Ok(())
            }
        };
        self.tasks.shutdown(TASK_GRACE).await;
        self.state.registry.store().close().await;
        r
    }

    /// Resolves when the server ends on its own (e.g. a fatal accept error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.task).await.unwrap_or(Ok(()))
    }

    /// The names of the background tasks that run.
    pub fn task_names(&self) -> Vec<&'static str> {
        self.tasks.names()
    }

    /// Applies a new configuration's live values (both the application and
    /// the edge read them); reports the changed settings that need a
    /// restart (or a graceful binary upgrade).
    pub fn reload(&self, new: &Config) -> ReloadReport {
        let report = self.state.config.apply(new);
        let now = self.state.config();
        self.state.auth.apply_live(&now);
        crate::observability::set_log_level(&now);
        let edge = crate::edge::edge_config(&now);
        for zone in self.state.edge_zones.iter() {
            if let Some(spec) = edge.zones.iter().find(|z| z.name == zone.name) {
                zone.reconfigure(spec);
            }
        }
        self.edge_config.store(Arc::new(edge));
        report
    }

    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// The scrape listener: Prometheus reads it without a token, so it serves
/// the metrics and nothing else, and is off unless `METRICS_PORT` is set.
async fn serve_metrics(
    addr: &str,
    state: AppState,
    tasks: &mut Tasks,
) -> Result<SocketAddr, StartError> {
    let bind_error = |source| StartError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let app = crate::api::metrics::scrape_router(state);
    tasks.spawn("metrics-listener", move |stop| async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    });
    tracing::info!(metrics = %local, "metrics listening");
    Ok(local)
}

/// `count` listening sockets on one address with SO_REUSEPORT (the first
/// one decides the port when the address asks for port 0).
fn bind_reuseport(addr: &str, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut resolved: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(addr)?
        .next()
        .ok_or_else(|| std::io::Error::other("address does not resolve"))?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(resolved),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&resolved.into())?;
        socket.listen(4096)?;
        let l: std::net::TcpListener = socket.into();
        resolved = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// Connects and migrates, retrying an unreachable database
/// `DB_MAX_RETRIES` times `DB_RETRY_INTERVAL_MS` apart (a pod may start
/// before its database).
pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    let mut attempt = 0;
    loop {
        match Store::connect(config).await {
            Ok(store) => {
                store.migrate().await?;
                return Ok(store);
            }
            Err(StoreError::Unavailable(m)) if attempt < config.db_max_retries => {
                attempt += 1;
                tracing::warn!(error = %m, attempt, "database unreachable; retrying");
                tokio::time::sleep(Duration::from_millis(config.db_retry_interval_ms)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Starts the application on `HOST:PORT` (port 0 picks a free one).
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with(config, false).await
}

/// As [`start`]; `upgrade` takes the edge's listening socket over from a
/// running mcpgate (Pingora's graceful binary upgrade).
pub async fn start_with(config: Config, upgrade: bool) -> Result<Running, StartError> {
    let secrets = resolve_secrets(&config)?;
    let readiness = Arc::new(Readiness::default());
    let store = open_store(&config).await?;
    let registry = Registry::load(store.clone()).await?;
    let replica = new_replica_id();
    let bus = Bus::new(replica.clone());
    let redis = RedisSettings::from_config(&config)
        .map(Redis::open)
        .transpose()?;
    let lease_ttl = Duration::from_secs(config.redis_leader_ttl);
    // With Redis the lease lives there; without, in the database the
    // replicas share (a lone instance simply always gets it).
    let lease: Arc<dyn Lease> = match &redis {
        Some(r) => {
            let store = store.clone();
            let floor = Arc::new(move || {
                let store = store.clone();
                Box::pin(async move {
                    fence(&store)
                        .await
                        .ok()
                        .and_then(|t| u64::try_from(t).ok())
                        .unwrap_or(0)
                }) as crate::cluster::bus::BoxFuture<'static, u64>
            });
            Arc::new(RedisLease::new(
                r.clone(),
                replica.clone(),
                lease_ttl,
                floor,
            ))
        }
        None => Arc::new(DbLease::new(store.clone(), replica.clone(), lease_ttl)),
    };
    let leadership = Leadership::new(
        lease,
        lease_ttl,
        Duration::from_secs(config.redis_leader_heartbeat_interval),
    );
    let auth = Arc::new(Auth::new(&config, &secrets, registry.clone())?);
    let updater = Arc::new(Updater::new(registry.clone(), bus.clone()));
    let live = LiveConfig::new(config.clone());
    let sealer = Sealer::new(&secrets.encryption_secret);
    let federation = Federation::new(&config, sealer.clone());
    let session_ttl = Duration::from_secs(config.session_ttl.max(1));
    let session_sealer = Arc::new(SessionSealer::new(
        config.session_key.as_deref(),
        config.session_key_previous.as_deref(),
        &secrets.encryption_secret,
    ));
    // With Redis, sessions cross replicas through the relay; alone, they
    // stay in this process (their sealed ids still open after a restart).
    let relay = redis.as_ref().map(|r| {
        RedisNet::new(
            r.clone(),
            bus.clone(),
            session_ttl,
            Duration::from_secs(config.message_ttl.max(1)),
        )
    });
    let session_net: Arc<dyn SessionNet> = match &relay {
        Some((net, _)) => net.clone(),
        None => Arc::new(LocalNet),
    };
    let sessions = Sessions::with(
        session_ttl,
        config.max_sessions,
        session_sealer,
        session_net,
    );
    let list_changes = tokio::sync::broadcast::channel(64).0;
    let metrics = Arc::new(Metrics::new());
    let _ = metrics
        .registry
        .register(Box::new(registry.store().query_durations()));
    let mcp = Arc::new(Endpoint {
        dispatcher: Dispatcher::new(Arc::new(GatewayService {
            registry: registry.clone(),
            fed: federation.clone(),
            config: live.clone(),
            read_scopes: Default::default(),
            changes: list_changes.clone(),
            metrics: crate::gateway::McpMetrics {
                requests: metrics.mcp_requests.clone(),
                tool_calls: metrics.tool_calls.clone(),
                tool_latency: metrics.tool_latency.clone(),
            },
        })),
        sessions: sessions.clone(),
        guard: OriginGuard::for_bind(
            &config.host,
            &config.mcp_allowed_hosts,
            &config.mcp_allowed_origins,
        ),
        keepalive: Duration::from_secs(config.sse_keepalive_interval),
        stateful: config.use_stateful_sessions,
    });
    // Subscribers in order: the snapshot catches up first, then the caches
    // built from the old one are dropped.
    bus.subscribe(registry.clone());
    bus.subscribe(auth.clone());
    bus.subscribe(Arc::new(crate::relay::ListChanges(list_changes)));
    let generations = Arc::new(Generations::default());
    let edge_zones: Vec<&'static Zone> = if config.edge_enabled {
        crate::edge::make_zones(&config)
    } else {
        Vec::new()
    };
    bus.subscribe(Arc::new(crate::edge::EdgeInvalidation {
        generations: generations.clone(),
        zones: edge_zones.clone(),
    }));
    let mut tasks = Tasks::default();
    {
        let fed = federation.clone();
        bus.subscribe(Arc::new(SessionEndings(
            Arc::downgrade(&sessions),
            Arc::new(move |s| fed.session_closed(s)),
        )));
    }
    if let Some(r) = &redis {
        let subscriptions = Subscriptions::new(r.clone());
        if let Some((net, ops)) = relay {
            net.serve(&sessions);
            net.listen(&subscriptions);
            tasks.spawn("session-relay", move |stop| net.run(ops, stop));
        }
        let catch_up = {
            let (registry, bus) = (registry.clone(), bus.clone());
            Arc::new(move || {
                let (registry, bus) = (registry.clone(), bus.clone());
                Box::pin(async move {
                    if let Err(e) = registry.catch_up(&bus).await {
                        tracing::warn!(error = %e, "cannot compare the registry version after reconnecting");
                    }
                }) as crate::cluster::bus::BoxFuture<'static, ()>
            })
        };
        let (transport, publisher) =
            RedisTransport::new(r.clone(), subscriptions.clone(), bus.clone(), catch_up);
        bus.set_transport(transport);
        tasks.spawn("bus-publisher", move |stop| async move {
            tokio::select! {
                _ = publisher => {}
                _ = stop.cancelled() => {}
            }
        });
        tasks.spawn("redis-subscriptions", move |stop| subscriptions.run(stop));
    }
    // The first heartbeat before serving: a lone instance leads at once.
    leadership.beat().await;
    tasks.spawn("leader-lease", {
        let l = leadership.clone();
        move |stop| l.run(stop)
    });
    tasks.spawn("health-checks", {
        let (f, u, l) = (federation.clone(), updater.clone(), leadership.clone());
        move |stop| health::run(f, u, l, stop)
    });
    tasks.spawn("discovery-refresh", {
        let (f, u) = (federation.clone(), updater.clone());
        move |stop| discovery::run_refresher(f, u, stop)
    });
    if config.registry_sync_interval > 0 {
        let every = Duration::from_secs(config.registry_sync_interval);
        let (r, b) = (registry.clone(), bus.clone());
        tasks.spawn("registry-sync", move |stop| r.run_sync(b, every, stop));
    }
    tasks.spawn("session-sweeper", {
        let s = sessions.clone();
        move |stop| s.run_sweeper(stop)
    });
    let edge_metrics = Arc::new(EdgeMetrics::default());
    let edge_config = Arc::new(ArcSwap::from_pointee(crate::edge::edge_config(&config)));
    let state = AppState::new(AppInner {
        edge_zones: Arc::new(edge_zones.clone()),
        edge_metrics: edge_metrics.clone(),
        federation,
        mcp,
        sealer: Arc::new(sealer),
        config: live.clone(),
        registry: registry.clone(),
        updater,
        readiness: readiness.clone(),
        auth,
        redis: redis.clone(),
        bus: bus.clone(),
        leadership: leadership.clone(),
        metrics,
        started: Instant::now(),
    });
    let config = live.snapshot();
    let addr = format!("{}:{}", config.host, config.port);
    let threads = match config.server_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let listeners = bind_reuseport(&addr, threads).map_err(|source| StartError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let local = listeners[0]
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let app = router(state.clone());
    // One single-threaded runtime per core, each accepting on its own
    // SO_REUSEPORT socket: requests never hop threads (as nginx workers do),
    // which on small machines halves the scheduling overhead of a shared pool.
    let mut threads_done = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let app = app.clone();
        let mut rx = rx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("mcpgate-http-{i}"))
            .spawn(move || -> std::io::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    use axum::serve::ListenerExt;
                    // Small JSON answers must not wait for Nagle.
                    let listener = TcpListener::from_std(listener)?.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|v| *v).await;
                    })
                    .await
                })
            })
            .map_err(|source| StartError::Bind {
                addr: local.to_string(),
                source,
            })?;
        threads_done.push(handle);
    }
    let task = tokio::task::spawn_blocking(move || {
        let mut result = Ok(());
        for h in threads_done {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(std::io::Error::other("a server thread panicked")),
            }
        }
        result
    });
    let edge = if config.edge_enabled {
        let upstream = if local.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], local.port()))
        } else {
            local
        };
        let app = crate::edge::AppEdge {
            router: router(state.clone()),
            auth: state.auth.clone(),
            config: live.clone(),
            bus: bus.clone(),
            upstream,
            post_cache: Some(Arc::new(crate::api::mcp_cache::McpPostCache(state.clone()))),
        };
        let zones = edge_zones.iter().map(|z| (z.name.clone(), *z)).collect();
        let proxy = EdgeProxy::new(
            Arc::new(app),
            edge_config.clone(),
            zones,
            generations,
            edge_metrics,
        );
        let host = if config.host == "localhost" {
            "127.0.0.1"
        } else {
            config.host.as_str()
        };
        let edge_addr: SocketAddr =
            format!("{host}:{}", config.edge_port)
                .parse()
                .map_err(|_| StartError::Bind {
                    addr: host.to_owned(),
                    source: std::io::Error::other("bad edge address"),
                })?;
        let options = EdgeOptions {
            threads: match config.edge_threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
            upgrade,
            upgrade_sock: config.edge_upgrade_sock.clone(),
            grace_period_seconds: config.edge_grace_period,
            work_stealing: config.edge_work_stealing,
        };
        let handle =
            tokio::task::spawn_blocking(move || EdgeHandle::start(proxy, edge_addr, options))
                .await
                .map_err(|e| StartError::Bind {
                    addr: edge_addr.to_string(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .map_err(|source| StartError::Bind {
                    addr: edge_addr.to_string(),
                    source,
                })?;
        tracing::info!(edge = %handle.addr, "edge listening");
        Some(handle)
    } else {
        None
    };
    tracing::info!(%local, database = state.registry.store().backend().as_str(), replica = bus.replica(), "mcpgate listening");
    let metrics_addr = match config.metrics_addr() {
        Some(addr) => Some(serve_metrics(&addr, state.clone(), &mut tasks).await?),
        None => None,
    };
    readiness.set(Phase::Ready);
    Ok(Running {
        addr: local,
        metrics_addr,
        edge_addr: edge.as_ref().map(|e| e.addr),
        edge,
        edge_config,
        state,
        secrets,
        leadership,
        shutdown: tx,
        task,
        tasks,
        grace: Duration::from_secs(config.edge_grace_period),
    })
}
