//! Redis as the cluster's shared medium (`CACHE_TYPE=redis`): the bus over
//! pub/sub, and the leader lease with `SET NX PX` and a fencing token.
//!
//! Two connections per process, made in the runtime that uses them: a
//! multiplexed command connection (reconnecting on its own) and one pub/sub
//! connection, re-established by a task whenever it drops. Nothing on a
//! request path awaits either: publishing queues, receiving runs in its own
//! task, the lease is renewed by the leadership task.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::BoxFuture;
use super::lease::{Lease, LeaseError};
use super::{Bus, BusTransport, Envelope};
use crate::config::Config;

/// The Redis settings, with the reference's names and defaults.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub prefix: String,
    pub max_connections: u32,
    pub socket_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry_on_timeout: bool,
    pub max_retries: u32,
    pub retry_interval: Duration,
    pub health_check_interval: Duration,
}

impl RedisSettings {
    /// `Some` when `CACHE_TYPE=redis`.
    pub fn from_config(c: &Config) -> Option<RedisSettings> {
        if !c.uses_redis() {
            return None;
        }
        Some(RedisSettings {
            url: c.redis_url.clone().unwrap_or_default(),
            prefix: c.cache_prefix.clone(),
            max_connections: c.redis_max_connections.max(1),
            socket_timeout: Duration::from_secs_f64(c.redis_socket_timeout),
            connect_timeout: Duration::from_secs_f64(c.redis_socket_connect_timeout),
            retry_on_timeout: c.redis_retry_on_timeout,
            max_retries: c.redis_max_retries,
            retry_interval: Duration::from_millis(c.redis_retry_interval_ms.max(50)),
            health_check_interval: Duration::from_secs(c.redis_health_check_interval.max(1)),
        })
    }

    /// A key or channel name under `CACHE_PREFIX`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("REDIS_URL is not usable: {0}")]
    Url(String),
    #[error("Redis: {0}")]
    Command(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// The process's Redis: settings, client and command connection.
pub struct Redis {
    pub settings: RedisSettings,
    client: redis::Client,
    commands: ConnectionManager,
    /// Commands sent through this handle, for the "none on the hot path"
    /// accounting of the load tests and metrics.
    sent: AtomicU64,
}

impl Redis {
    /// Prepares the connections; the command connection is made on first
    /// use, so a replica starts (and serves from its database) while Redis
    /// is down.
    pub fn open(settings: RedisSettings) -> Result<Arc<Redis>, RedisError> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| RedisError::Url(e.to_string()))?;
        let retries = if settings.retry_on_timeout {
            settings.max_retries as usize
        } else {
            0
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.socket_timeout))
            .set_number_of_retries(retries)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(settings.retry_interval)
            .set_concurrency_limit(settings.max_connections as usize * 16);
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Arc::new(Redis {
            settings,
            client,
            commands,
            sent: AtomicU64::new(0),
        }))
    }

    /// A command connection (a cheap clone of the multiplexed one).
    pub fn commands(&self) -> ConnectionManager {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.commands.clone()
    }

    /// Commands sent by this process.
    pub fn commands_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Runs a command future within the socket timeout.
    pub async fn timed<T>(
        &self,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        let t = self.settings.socket_timeout;
        match tokio::time::timeout(t, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(RedisError::Timeout(t)),
        }
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.commands();
        let _: String = self.timed(redis::cmd("PING").query_async(&mut c)).await?;
        Ok(())
    }
}

type Handler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, ()> + Send + Sync>;
type OnConnect = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The pub/sub side: one connection carrying every channel this replica
/// listens on, re-made when it drops. Messages of one channel are handled
/// in order.
pub struct Subscriptions {
    redis: Arc<Redis>,
    handlers: Mutex<HashMap<String, Handler>>,
    on_connect: Mutex<Vec<OnConnect>>,
    connected: AtomicBool,
}

impl Subscriptions {
    pub fn new(redis: Arc<Redis>) -> Arc<Subscriptions> {
        Arc::new(Subscriptions {
            redis,
            handlers: Mutex::new(HashMap::new()),
            on_connect: Mutex::new(Vec::new()),
            connected: AtomicBool::new(false),
        })
    }

    /// Handles every message of `channel` (set before [`Self::run`]).
    pub fn on(&self, channel: String, handler: Handler) {
        self.handlers.lock().insert(channel, handler);
    }

    /// Called after every (re)connection: the time to catch up with what
    /// may have been missed while disconnected.
    pub fn on_connect(&self, f: OnConnect) {
        self.on_connect.lock().push(f);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Keeps the subscription alive until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let s = &self.redis.settings;
        let mut reported_down = false;
        loop {
            let session = tokio::select! {
                r = self.session() => r,
                _ = stop.cancelled() => return,
            };
            self.connected.store(false, Ordering::Relaxed);
            match session {
                Ok(()) => {
                    tracing::warn!(
                        "Redis subscription closed; reconnecting (replicas converge through the database poll meanwhile)"
                    );
                    reported_down = true;
                }
                Err(e) if !reported_down => {
                    tracing::warn!(error = %e, "Redis unreachable: cross-replica events pause; replicas converge through the database poll until it returns");
                    reported_down = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(s.retry_interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// One connection's life: subscribe, catch up, deliver, ping.
    async fn session(&self) -> Result<(), RedisError> {
        let s = &self.redis.settings;
        let pubsub = self
            .redis
            .timed_connect(self.redis.client.get_async_pubsub())
            .await?;
        let (mut sink, mut stream) = pubsub.split();
        let channels: Vec<String> = self.handlers.lock().keys().cloned().collect();
        self.redis.timed(sink.subscribe(channels)).await?;
        // Catch up before saying so: what was missed while disconnected is
        // read from the database; what arrives meanwhile waits in the stream.
        let hooks: Vec<OnConnect> = self.on_connect.lock().clone();
        for h in hooks {
            h().await;
        }
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!("Redis subscription established");
        let mut health = tokio::time::interval(s.health_check_interval);
        health.tick().await;
        loop {
            tokio::select! {
                m = stream.next() => {
                    let Some(m) = m else { return Ok(()) };
                    let channel = m.get_channel_name().to_owned();
                    let handler = self.handlers.lock().get(&channel).cloned();
                    if let Some(h) = handler {
                        h(m.get_payload_bytes().to_vec()).await;
                    }
                }
                _ = health.tick() => {
                    let _: () = self.redis.timed(sink.ping()).await?;
                }
            }
        }
    }
}

impl Redis {
    async fn timed_connect<T>(
        &self,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        let t = self.settings.connect_timeout;
        match tokio::time::timeout(t, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(RedisError::Timeout(t)),
        }
    }
}

/// The bus's way out over Redis pub/sub: envelopes are queued and published
/// by one task; while Redis is down they are dropped (counted, logged once)
/// and the database poll carries the registry changes.
pub struct RedisTransport {
    queue: mpsc::Sender<Envelope>,
    subscriptions: Arc<Subscriptions>,
    dropped: AtomicU64,
}

const QUEUE: usize = 10_000;

impl RedisTransport {
    /// Wires the bus to Redis: publishing (task `bus-publisher`, returned)
    /// and receiving (through `subscriptions`, with gap detection: a
    /// missing sequence number from another replica runs `catch_up`).
    pub fn new(
        redis: Arc<Redis>,
        subscriptions: Arc<Subscriptions>,
        bus: Arc<Bus>,
        catch_up: OnConnect,
    ) -> (
        Arc<RedisTransport>,
        impl Future<Output = ()> + Send + 'static,
    ) {
        let channel = redis.settings.key("bus");
        let (tx, rx) = mpsc::channel(QUEUE);
        let last_seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let receiver_bus = bus.clone();
        let gap_catch_up = catch_up.clone();
        subscriptions.on(
            channel.clone(),
            Arc::new(move |payload: Vec<u8>| {
                let bus = receiver_bus.clone();
                let last_seen = last_seen.clone();
                let catch_up = gap_catch_up.clone();
                Box::pin(async move {
                    let env: Envelope = match serde_json::from_slice(&payload) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring an unreadable bus message");
                            return;
                        }
                    };
                    let gap = {
                        let mut seen = last_seen.lock();
                        let prev = seen.insert(env.origin.clone(), env.seq);
                        prev.is_some_and(|p| env.seq > p + 1)
                    };
                    if gap {
                        tracing::info!(origin = %env.origin, "bus messages were missed; catching up from the database");
                        catch_up().await;
                    }
                    bus.receive(env).await;
                }) as BoxFuture<'static, ()>
            }),
        );
        subscriptions.on_connect(catch_up);
        let transport = Arc::new(RedisTransport {
            queue: tx,
            subscriptions,
            dropped: AtomicU64::new(0),
        });
        let publisher = publish_loop(redis, channel, rx, transport.clone());
        (transport, publisher)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn publish_loop(
    redis: Arc<Redis>,
    channel: String,
    mut rx: mpsc::Receiver<Envelope>,
    transport: Arc<RedisTransport>,
) {
    let mut failing = false;
    while let Some(env) = rx.recv().await {
        let text = serde_json::to_string(&env).expect("envelopes serialize");
        let mut c = redis.commands();
        let r: Result<i64, _> = redis.timed(c.publish(&channel, text)).await;
        match r {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("publishing to Redis works again");
            }
            Ok(_) => {}
            Err(e) => {
                transport.dropped.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    failing = true;
                    tracing::warn!(error = %e, "cannot publish to Redis; other replicas learn of changes through the database poll");
                }
            }
        }
    }
}

impl BusTransport for RedisTransport {
    fn send(&self, envelope: Envelope) {
        if self.queue.try_send(envelope).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn kind(&self) -> &'static str {
        "redis"
    }
    fn connected(&self) -> bool {
        self.subscriptions.connected()
    }
}

/// Takes the lease when it is free, or renews it when this replica holds
/// it; returns the fencing token, or -1 when another replica holds it. The
/// token counter never falls below `floor` (the highest token the database
/// has seen), so a Redis that lost its data cannot hand out tokens the
/// fence would refuse.
const ACQUIRE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local holder = string.sub(cur, 1, sep - 1)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(cur, sep + 1))
  end
  return -1
end
local token = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[2], token)
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
"#;

const RELEASE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '|' then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

type Floor = Arc<dyn Fn() -> BoxFuture<'static, u64> + Send + Sync>;

/// The leader lease in Redis (`REDIS_LEADER_TTL`).
pub struct RedisLease {
    redis: Arc<Redis>,
    replica: String,
    ttl: Duration,
    floor: Floor,
}

impl RedisLease {
    pub fn new(redis: Arc<Redis>, replica: String, ttl: Duration, floor: Floor) -> RedisLease {
        RedisLease {
            redis,
            replica,
            ttl,
            floor,
        }
    }
}

impl Lease for RedisLease {
    fn acquire_or_renew(&self) -> BoxFuture<'_, Result<Option<u64>, LeaseError>> {
        Box::pin(async move {
            let floor = (self.floor)().await;
            let s = &self.redis.settings;
            let mut c = self.redis.commands();
            let script = redis::Script::new(ACQUIRE);
            let mut inv = script.prepare_invoke();
            inv.key(s.key("leader"))
                .key(s.key("leader:token"))
                .arg(&self.replica)
                .arg(self.ttl.as_millis() as u64)
                .arg(floor);
            let token: i64 = self
                .redis
                .timed(inv.invoke_async(&mut c))
                .await
                .map_err(|e| LeaseError::Unavailable(e.to_string()))?;
            Ok(u64::try_from(token).ok())
        })
    }

    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let s = &self.redis.settings;
            let mut c = self.redis.commands();
            let script = redis::Script::new(RELEASE);
            let mut inv = script.prepare_invoke();
            inv.key(s.key("leader")).arg(&self.replica);
            let r: Result<i64, _> = self.redis.timed(inv.invoke_async(&mut c)).await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "could not release the leader lease; it expires on its own");
            }
        })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// Boxes a future for the hooks above.
pub fn boxed<F: Future<Output = ()> + Send + 'static>(
    f: F,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> RedisSettings {
        RedisSettings::from_config(&Config {
            cache_type: "redis".into(),
            redis_url: Some(url.into()),
            ..Config::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn tls_and_password_urls_are_accepted() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis://:s3cret@127.0.0.1:6379/0",
            "redis://user:s3cret@redis.internal:6380/2",
            "rediss://:s3cret@redis.example.com:6380/0",
        ] {
            assert!(Redis::open(settings(url)).is_ok(), "{url}");
        }
        assert!(matches!(
            Redis::open(settings("http://127.0.0.1")),
            Err(RedisError::Url(_))
        ));
    }

    #[test]
    fn keys_and_channels_carry_the_prefix() {
        let s = settings("redis://127.0.0.1");
        assert_eq!(s.key("bus"), "mcpgw:bus");
        assert_eq!(s.max_connections, 50);
        assert_eq!(s.retry_interval, Duration::from_millis(2000));
    }
}
