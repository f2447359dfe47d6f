//! Cache zones for the mcpgate edge: a production [`Storage`] for
//! pingora-cache (Pingora's own `MemCache` is test-only).
//!
//! A zone is a named, bounded in-memory cache with its own byte budget,
//! default TTL, LRU eviction (pingora's sharded LRU manager, weighted by body
//! bytes) and counters. Finished entries hold the body as one `Bytes` and the
//! response header parsed, so a hit costs no parsing and no copy. A fill in
//! progress is readable while it is written (streaming partial writes): the
//! requests that were waiting on the cache lock stream the chunks stored so
//! far instead of waiting for the whole object.
//! A [`Generation`] embedded in cache keys makes a whole collection or zone
//! unservable at once, without walking the zone.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use pingora_cache::eviction::{EvictionManager, lru};
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType, Storage,
};
#[cfg(test)]
use pingora_cache::trace::Span;
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheEntryKey, CacheKey, CacheMeta};
use pingora_error::{Error, ErrorType, Result};

/// The static definition of a zone, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    pub name: String,
    pub max_bytes: u64,
    pub default_ttl: Duration,
}

impl ZoneSpec {
    /// The three zones of the reference deployment.
    pub fn defaults() -> Vec<ZoneSpec> {
        const DAY: u64 = 24 * 3600;
        vec![
            ZoneSpec::new("static", 1 << 30, Duration::from_secs(30 * DAY)),
            ZoneSpec::new("api", 512 << 20, Duration::from_secs(300)),
            ZoneSpec::new("schema", 256 << 20, Duration::from_secs(DAY)),
        ]
    }

    pub fn new(name: &str, max_bytes: u64, default_ttl: Duration) -> Self {
        ZoneSpec {
            name: name.to_owned(),
            max_bytes,
            default_ttl,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZoneError {
    #[error("zone {0} has a zero byte budget")]
    EmptyBudget(String),
    #[error("zone {0} is defined twice")]
    Duplicate(String),
}

/// Validates a zone table: every zone has a budget and a unique name.
pub fn validate(zones: &[ZoneSpec]) -> Result<(), ZoneError> {
    for (i, z) in zones.iter().enumerate() {
        if z.max_bytes == 0 {
            return Err(ZoneError::EmptyBudget(z.name.clone()));
        }
        if zones[..i].iter().any(|o| o.name == z.name) {
            return Err(ZoneError::Duplicate(z.name.clone()));
        }
    }
    Ok(())
}

/// A monotonically increasing generation. Cache keys embed the generation of
/// their collection, so bumping it makes every older entry unservable at once.
#[derive(Debug, Default)]
pub struct Generation(AtomicU64);

impl Generation {
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    pub fn bump(&self) -> u64 {
        self.0.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// Counters of one zone.
#[derive(Debug, Default)]
pub struct ZoneStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stores: AtomicU64,
    pub evictions: AtomicU64,
    pub purges: AtomicU64,
}

/// A point-in-time copy of a zone's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZoneSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub stores: u64,
    pub evictions: u64,
    pub purges: u64,
    pub bytes: u64,
    pub entries: u64,
    pub budget: u64,
}

const SHARDS: usize = 16;
const LRU_SHARDS: usize = 16;

/// What readers of a fill in progress can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Writing,
    Done,
    Failed,
}

/// A fill in progress: its chunks so far, shared with the readers that
/// joined it. A chunk is pushed before the progress changes, so a reader
/// that saw a progress finds at least the chunks it implies.
struct Partial {
    /// The fill's streaming write tag (a per-zone counter).
    tag: [u8; 8],
    /// The response head (its body stays empty).
    head: Entry,
    chunks: RwLock<Vec<Bytes>>,
    progress: tokio::sync::watch::Sender<Progress>,
}

impl Partial {
    fn reader(self: &Arc<Self>) -> (CacheMeta, HitHandler) {
        let hit = PartialHit {
            progress: self.progress.subscribe(),
            partial: self.clone(),
            next: 0,
        };
        (self.head.meta(), Box::new(hit))
    }
}

/// One shard of a zone: finished entries and fills in progress.
#[derive(Default)]
struct Shard {
    done: HashMap<HashBinary, Arc<Entry>>,
    filling: HashMap<HashBinary, Vec<Arc<Partial>>>,
}

/// The stored response: header parsed once, body frozen.
struct Entry {
    fresh_until: SystemTime,
    created: SystemTime,
    stale_while_revalidate: u32,
    stale_if_error: u32,
    header: pingora_http::ResponseHeader,
    body: Bytes,
}

impl Entry {
    fn from_meta(meta: &CacheMeta, body: Bytes) -> Entry {
        Entry {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            stale_while_revalidate: meta.stale_while_revalidate_sec(),
            stale_if_error: meta.stale_if_error_sec(),
            header: meta.response_header().clone(),
            body,
        }
    }

    /// The same response head with another body.
    fn with_body(&self, body: Bytes) -> Entry {
        Entry {
            fresh_until: self.fresh_until,
            created: self.created,
            stale_while_revalidate: self.stale_while_revalidate,
            stale_if_error: self.stale_if_error,
            header: self.header.clone(),
            body,
        }
    }

    fn meta(&self) -> CacheMeta {
        CacheMeta::new(
            self.fresh_until,
            self.created,
            self.stale_while_revalidate,
            self.stale_if_error,
            self.header.clone(),
        )
    }
}

pub struct Zone {
    pub name: String,
    pub default_ttl: parking_lot::RwLock<Duration>,
    budget: AtomicUsize,
    /// Largest single object; bigger responses are not stored.
    max_object: AtomicUsize,
    shards: Vec<RwLock<Shard>>,
    lru: lru::Manager<LRU_SHARDS>,
    next_fill: AtomicU64,
    pub stats: ZoneStats,
    pub generation: Generation,
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone")
            .field("name", &self.name)
            .field("stats", &self.snapshot())
            .finish()
    }
}

impl Zone {
    /// Creates a zone for the life of the process (pingora wants `'static`).
    pub fn leak(spec: &ZoneSpec) -> &'static Zone {
        let budget = spec.max_bytes as usize;
        Box::leak(Box::new(Zone {
            name: spec.name.clone(),
            default_ttl: RwLock::new(spec.default_ttl),
            budget: AtomicUsize::new(budget),
            max_object: AtomicUsize::new((budget / 8).max(1)),
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            lru: lru::Manager::with_capacity(budget, 1024),
            next_fill: AtomicU64::new(1),
            stats: ZoneStats::default(),
            generation: Generation::default(),
        }))
    }

    pub fn eviction(&'static self) -> &'static lru::Manager<LRU_SHARDS> {
        &self.lru
    }

    /// Applies a new spec (reload): budget and default TTL change live;
    /// entries that no longer fit are evicted as new ones arrive.
    pub fn reconfigure(&self, spec: &ZoneSpec) {
        let budget = spec.max_bytes as usize;
        self.budget.store(budget, Ordering::Relaxed);
        self.max_object
            .store((budget / 8).max(1), Ordering::Relaxed);
        self.lru.set_weight_limit(budget);
        *self.default_ttl.write() = spec.default_ttl;
    }

    fn shard(&self, hash: &HashBinary) -> &RwLock<Shard> {
        &self.shards[hash[0] as usize % SHARDS]
    }

    /// The largest object the zone stores; larger responses pass uncached.
    pub fn max_object_bytes(&self) -> usize {
        self.max_object.load(Ordering::Relaxed)
    }

    /// Drops every entry and bumps the zone generation.
    pub fn purge_all(&self) -> usize {
        self.generation.bump();
        let mut n = 0;
        for s in &self.shards {
            let mut s = s.write();
            n += s.done.len();
            s.done.clear();
            s.filling.clear();
        }
        self.stats.purges.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    pub fn snapshot(&self) -> ZoneSnapshot {
        let s = &self.stats;
        ZoneSnapshot {
            hits: s.hits.load(Ordering::Relaxed),
            misses: s.misses.load(Ordering::Relaxed),
            stores: s.stores.load(Ordering::Relaxed),
            evictions: s.evictions.load(Ordering::Relaxed),
            purges: s.purges.load(Ordering::Relaxed),
            bytes: self
                .shards
                .iter()
                .map(|s| {
                    s.read()
                        .done
                        .values()
                        .map(|e| e.body.len() as u64)
                        .sum::<u64>()
                })
                .sum(),
            entries: self.shards.iter().map(|s| s.read().done.len() as u64).sum(),
            budget: self.budget.load(Ordering::Relaxed) as u64,
        }
    }

    pub fn evicted_total(&self) -> usize {
        self.lru.evicted_items()
    }

    /// A fresh whole object stored by [`Self::put_object`] under `hash`
    /// (the caller's collision-resistant hash of everything the object
    /// depends on), for callers that serve outside Pingora's cache machinery
    /// (the edge's cache of POST answers). Counts a hit or a miss.
    pub fn get_object(&self, hash: HashBinary) -> Option<Bytes> {
        let found = self.shard(&hash).read().done.get(&hash).cloned();
        match found.filter(|e| e.fresh_until > SystemTime::now()) {
            Some(e) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                self.lru
                    .access(&object_key(hash), e.body.len(), e.fresh_until);
                Some(e.body.clone())
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stores a whole object for `ttl` in the zone's budget; what the LRU
    /// evicts to make room is dropped. Larger than the zone's object limit:
    /// not stored (false).
    pub fn put_object(
        &self,
        hash: HashBinary,
        header: pingora_http::ResponseHeader,
        body: Bytes,
        ttl: Duration,
    ) -> bool {
        if body.len() > self.max_object_bytes() || ttl.is_zero() {
            return false;
        }
        let now = SystemTime::now();
        let entry = Entry {
            fresh_until: now + ttl,
            created: now,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            header,
            body,
        };
        let (size, fresh_until) = (entry.body.len(), entry.fresh_until);
        self.shard(&hash).write().done.insert(hash, Arc::new(entry));
        self.stats.stores.fetch_add(1, Ordering::Relaxed);
        for e in self.lru.admit(object_key(hash), size, fresh_until) {
            let hash = e.key().combined_bin();
            if self.shard(&hash).write().done.remove(&hash).is_some() {
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }
}

/// The LRU's name for a whole object: its hash is its key.
fn object_key(hash: HashBinary) -> pingora_cache::eviction::CacheEntryKey {
    pingora_cache::eviction::CacheEntryKey::KeyOnly(pingora_cache::key::CompactCacheKey {
        primary: hash,
        variance: None,
        user_tag: "".into(),
    })
}

struct Hit {
    body: Option<Bytes>,
    weight: usize,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        Ok(self.body.take())
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.weight
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// A reader of a fill in progress.
struct PartialHit {
    partial: Arc<Partial>,
    progress: tokio::sync::watch::Receiver<Progress>,
    next: usize,
}

#[async_trait]
impl HandleHit for PartialHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            // Progress first, chunks second: see `Partial`.
            let progress = *self.progress.borrow_and_update();
            if let Some(chunk) = self.partial.chunks.read().get(self.next) {
                self.next += 1;
                return Ok(Some(chunk.clone()));
            }
            match progress {
                Progress::Done => return Ok(None),
                Progress::Failed => {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "the cache fill this response was read from failed",
                    );
                }
                Progress::Writing => {
                    if self.progress.changed().await.is_err() {
                        return Error::e_explain(
                            ErrorType::InternalError,
                            "the cache fill this response was read from was dropped",
                        );
                    }
                }
            }
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn should_count_access(&self) -> bool {
        // The writer admits the object once it is finished.
        false
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

struct Miss {
    zone: &'static Zone,
    hash: HashBinary,
    partial: Arc<Partial>,
    size: usize,
}

impl Miss {
    /// Takes the fill off the readable fills (finished or abandoned).
    fn retire(&self, shard: &mut Shard) {
        if let Some(fills) = shard.filling.get_mut(&self.hash) {
            fills.retain(|p| p.tag != self.partial.tag);
            if fills.is_empty() {
                shard.filling.remove(&self.hash);
            }
        }
    }
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.size + data.len() > self.zone.max_object_bytes() {
            return Error::e_explain(
                ErrorType::InternalError,
                "object larger than the zone's object limit",
            );
        }
        if data.is_empty() {
            return Ok(());
        }
        self.size += data.len();
        self.partial.chunks.write().push(data);
        self.partial.progress.send_replace(Progress::Writing);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let body = {
            // One chunk is stored as is; several are joined once.
            let chunks = self.partial.chunks.read();
            match chunks.len() {
                1 => chunks[0].clone(),
                _ => Bytes::from(chunks.concat()),
            }
        };
        let entry = self.partial.head.with_body(body);
        {
            let mut shard = self.zone.shard(&self.hash).write();
            shard.done.insert(self.hash, Arc::new(entry));
            self.retire(&mut shard);
        }
        self.partial.progress.send_replace(Progress::Done);
        self.zone.stats.stores.fetch_add(1, Ordering::Relaxed);
        Ok(MissFinishType::Created(self.size))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(&self.partial.tag)
    }
}

impl Drop for Miss {
    /// A fill dropped before `finish` failed: its readers get an error
    /// rather than a silently short body, and nothing is stored.
    fn drop(&mut self) {
        if *self.partial.progress.borrow() != Progress::Done {
            self.retire(&mut self.zone.shard(&self.hash).write());
            self.partial.progress.send_replace(Progress::Failed);
        }
    }
}

#[async_trait]
impl Storage for Zone {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let hash = key.combined_bin();
        let found = {
            let shard = self.shard(&hash).read();
            // A fill in progress is newer than a stored (expired) entry.
            if let Some(p) = shard.filling.get(&hash).and_then(|f| f.last()) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(p.reader()));
            }
            shard.done.get(&hash).cloned()
        };
        match found {
            Some(e) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                let hit = Hit {
                    weight: e.body.len(),
                    body: Some(e.body.clone()),
                };
                Ok(Some((e.meta(), Box::new(hit))))
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(tag) = streaming_write_tag else {
            return self.lookup(key, trace).await;
        };
        let Ok(tag) = <[u8; 8]>::try_from(tag) else {
            return Error::e_explain(ErrorType::InternalError, "foreign streaming write tag");
        };
        let hash = key.combined_bin();
        let shard = self.shard(&hash).read();
        // Only this fill's own body, never another writer's.
        Ok(shard
            .filling
            .get(&hash)
            .and_then(|f| f.iter().find(|p| p.tag == tag))
            .map(|p| p.reader()))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let tag = self.next_fill.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let (progress, _) = tokio::sync::watch::channel(Progress::Writing);
        let partial = Arc::new(Partial {
            tag,
            head: Entry::from_meta(meta, Bytes::new()),
            chunks: RwLock::new(Vec::new()),
            progress,
        });
        let hash = key.combined_bin();
        self.shard(&hash)
            .write()
            .filling
            .entry(hash)
            .or_default()
            .push(partial.clone());
        Ok(Box::new(Miss {
            zone: self,
            hash,
            partial,
            size: 0,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        kind: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            return Ok(PurgeOutcome::NotFound);
        }
        let hash = target.key().combined_bin();
        let removed = {
            let mut shard = self.shard(&hash).write();
            // Readers that already joined a fill finish it; new ones do not.
            shard.filling.remove(&hash);
            shard.done.remove(&hash).is_some()
        };
        if !removed {
            return Ok(PurgeOutcome::NotFound);
        }
        match kind {
            PurgeType::Eviction => self.stats.evictions.fetch_add(1, Ordering::Relaxed),
            PurgeType::Invalidation => self.stats.purges.fetch_add(1, Ordering::Relaxed),
        };
        Ok(PurgeOutcome::Purged(None))
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let hash = key.combined_bin();
        let mut shard = self.shard(&hash).write();
        let Some(old) = shard.done.get(&hash).cloned() else {
            return Ok(false);
        };
        shard
            .done
            .insert(hash, Arc::new(Entry::from_meta(meta, old.body.clone())));
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_reference() {
        let zones = ZoneSpec::defaults();
        validate(&zones).unwrap();
        assert_eq!(zones[1].name, "api");
        assert_eq!(zones[1].default_ttl, Duration::from_secs(300));
    }

    #[test]
    fn duplicates_and_empty_budgets_are_rejected() {
        let mut zones = ZoneSpec::defaults();
        zones.push(ZoneSpec::new("api", 1, Duration::from_secs(1)));
        assert_eq!(validate(&zones), Err(ZoneError::Duplicate("api".into())));
        let zones = vec![ZoneSpec::new("x", 0, Duration::from_secs(1))];
        assert_eq!(validate(&zones), Err(ZoneError::EmptyBudget("x".into())));
    }

    #[test]
    fn generation_bumps() {
        let g = Generation::default();
        assert_eq!(g.current(), 0);
        assert_eq!(g.bump(), 1);
        assert_eq!(g.current(), 1);
    }

    fn meta(ttl: u64) -> CacheMeta {
        let now = SystemTime::now();
        let mut h = pingora_http::ResponseHeader::build(200, None).unwrap();
        h.insert_header("content-type", "application/json").unwrap();
        CacheMeta::new(now + Duration::from_secs(ttl), now, 10, 20, h)
    }

    async fn store(zone: &'static Zone, key: &CacheKey, body: &'static [u8]) {
        let mut miss = zone
            .get_miss_handler(key, &meta(60), &Span::inactive().handle())
            .await
            .unwrap();
        miss.write_body(Bytes::from_static(&body[..body.len() / 2]), false)
            .await
            .unwrap();
        miss.write_body(Bytes::from_static(&body[body.len() / 2..]), true)
            .await
            .unwrap();
        assert!(
            matches!(miss.finish().await.unwrap(), MissFinishType::Created(n) if n == body.len())
        );
    }

    #[test]
    fn whole_objects_are_kept_for_their_ttl_within_the_budget() {
        let zone = Zone::leak(&ZoneSpec::new("o", 4096, Duration::from_secs(60)));
        let head = || pingora_http::ResponseHeader::build(200, None).unwrap();
        let key = |i: usize| CacheKey::new(format!("POST /rpc {i}"), "").combined_bin();
        assert!(zone.get_object(key(0)).is_none());
        assert!(zone.put_object(
            key(0),
            head(),
            Bytes::from_static(b"zero"),
            Duration::from_secs(60)
        ));
        assert_eq!(
            zone.get_object(key(0)).unwrap(),
            Bytes::from_static(b"zero")
        );
        // Expired: not served.
        assert!(zone.put_object(
            key(1),
            head(),
            Bytes::from_static(b"one"),
            Duration::from_nanos(1)
        ));
        std::thread::sleep(Duration::from_millis(2));
        assert!(zone.get_object(key(1)).is_none());
        // Over the object limit (budget / 8): refused.
        assert!(!zone.put_object(
            key(2),
            head(),
            Bytes::from(vec![b'x'; 600]),
            Duration::from_secs(60)
        ));
        // The budget holds: old entries are evicted as new ones come.
        for i in 3..40 {
            assert!(zone.put_object(
                key(i),
                head(),
                Bytes::from(vec![b'y'; 500]),
                Duration::from_secs(60)
            ));
        }
        // (Which entries go is the LRU's choice: it evicts from shards picked
        // at random, so even a new entry may go; the budget is what holds.)
        let s = zone.snapshot();
        assert!(s.bytes <= 4096, "{s:?}");
        assert!(s.evictions > 0, "{s:?}");
        let small = u64::from(zone.get_object(key(0)).is_some());
        assert_eq!(
            s.bytes,
            (s.entries - small) * 500 + small * 4,
            "what is counted is what is kept: {s:?}"
        );
    }

    #[tokio::test]
    async fn store_hit_purge() {
        let zone = Zone::leak(&ZoneSpec::new("t", 1 << 20, Duration::from_secs(60)));
        let key = CacheKey::new("GET /v1/tools", "");
        assert!(
            zone.lookup(&key, &Span::inactive().handle())
                .await
                .unwrap()
                .is_none()
        );
        store(zone, &key, b"hello world").await;
        let (m, mut hit) = zone
            .lookup(&key, &Span::inactive().handle())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.stale_while_revalidate_sec(), 10);
        assert_eq!(
            m.response_header().headers.get("content-type").unwrap(),
            "application/json"
        );
        assert_eq!(
            hit.read_body().await.unwrap().unwrap(),
            Bytes::from_static(b"hello world")
        );
        assert!(hit.read_body().await.unwrap().is_none());
        let s = zone.snapshot();
        assert_eq!(
            (s.hits, s.misses, s.stores, s.entries, s.bytes),
            (1, 1, 1, 1, 11)
        );
        let compact = key.to_compact();
        assert_eq!(
            zone.purge(
                PurgeTarget::Active(&compact),
                PurgeType::Invalidation,
                &Span::inactive().handle()
            )
            .await
            .unwrap(),
            PurgeOutcome::Purged(None)
        );
        assert!(
            zone.lookup(&key, &Span::inactive().handle())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            zone.purge(
                PurgeTarget::Active(&compact),
                PurgeType::Eviction,
                &Span::inactive().handle()
            )
            .await
            .unwrap(),
            PurgeOutcome::NotFound
        );
    }

    #[tokio::test]
    async fn objects_over_the_limit_are_refused_and_zones_purge_whole() {
        let zone = Zone::leak(&ZoneSpec::new("small", 64, Duration::from_secs(60)));
        let key = CacheKey::new("big", "");
        let mut miss = zone
            .get_miss_handler(&key, &meta(60), &Span::inactive().handle())
            .await
            .unwrap();
        assert!(
            miss.write_body(Bytes::from(vec![0u8; 100]), true)
                .await
                .is_err()
        );
        let zone = Zone::leak(&ZoneSpec::new("z", 1 << 20, Duration::from_secs(60)));
        store(zone, &CacheKey::new("a", ""), b"aaaa").await;
        store(zone, &CacheKey::new("b", ""), b"bbbb").await;
        let gen_before = zone.generation.current();
        assert_eq!(zone.purge_all(), 2);
        assert_eq!(zone.generation.current(), gen_before + 1);
        assert_eq!(zone.snapshot().entries, 0);
    }

    #[tokio::test]
    async fn update_meta_keeps_the_body() {
        let zone = Zone::leak(&ZoneSpec::new("u", 1 << 20, Duration::from_secs(60)));
        let key = CacheKey::new("k", "");
        store(zone, &key, b"body").await;
        assert!(
            zone.update_meta(&key, &meta(600), &Span::inactive().handle())
                .await
                .unwrap()
        );
        let (m, mut hit) = zone
            .lookup(&key, &Span::inactive().handle())
            .await
            .unwrap()
            .unwrap();
        assert!(m.fresh_until() > SystemTime::now() + Duration::from_secs(500));
        assert_eq!(
            hit.read_body().await.unwrap().unwrap(),
            Bytes::from_static(b"body")
        );
        assert!(
            !zone
                .update_meta(
                    &CacheKey::new("missing", ""),
                    &meta(1),
                    &Span::inactive().handle()
                )
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn readers_join_a_fill_in_progress() {
        let zone = Zone::leak(&ZoneSpec::new("p", 1 << 20, Duration::from_secs(60)));
        let key = CacheKey::new("slow", "");
        let span = Span::inactive().handle();
        let mut miss = zone.get_miss_handler(&key, &meta(60), &span).await.unwrap();
        miss.write_body(Bytes::from_static(b"one;"), false)
            .await
            .unwrap();
        let (_, mut reader) = zone
            .lookup(&key, &span)
            .await
            .unwrap()
            .expect("partial hit");
        let (_, mut own) = zone
            .lookup_streaming_write(&key, miss.streaming_write_tag(), &span)
            .await
            .unwrap()
            .expect("the writer finds its own fill");
        assert_eq!(&reader.read_body().await.unwrap().unwrap()[..], b"one;");
        assert_eq!(&own.read_body().await.unwrap().unwrap()[..], b"one;");
        // The next read waits for the writer.
        let pending = tokio::spawn(async move {
            let next = reader.read_body().await.unwrap();
            (next, reader.read_body().await.unwrap())
        });
        tokio::task::yield_now().await;
        assert!(!pending.is_finished());
        miss.write_body(Bytes::from_static(b"two"), true)
            .await
            .unwrap();
        assert!(matches!(
            miss.finish().await.unwrap(),
            MissFinishType::Created(7)
        ));
        let (next, end) = pending.await.unwrap();
        assert_eq!(&next.unwrap()[..], b"two");
        assert!(end.is_none());
        // The finished entry is one body, and no fill is left behind.
        let (_, mut hit) = zone.lookup(&key, &span).await.unwrap().unwrap();
        assert_eq!(&hit.read_body().await.unwrap().unwrap()[..], b"one;two");
        assert!(zone.shard(&key.combined_bin()).read().filling.is_empty());
    }

    #[tokio::test]
    async fn an_abandoned_fill_fails_its_readers_and_stores_nothing() {
        let zone = Zone::leak(&ZoneSpec::new("a", 1 << 20, Duration::from_secs(60)));
        let key = CacheKey::new("dies", "");
        let span = Span::inactive().handle();
        let mut miss = zone.get_miss_handler(&key, &meta(60), &span).await.unwrap();
        miss.write_body(Bytes::from_static(b"half"), false)
            .await
            .unwrap();
        let (_, mut reader) = zone.lookup(&key, &span).await.unwrap().unwrap();
        assert_eq!(&reader.read_body().await.unwrap().unwrap()[..], b"half");
        drop(miss);
        assert!(reader.read_body().await.is_err());
        assert!(zone.lookup(&key, &span).await.unwrap().is_none());
        assert_eq!(zone.snapshot().stores, 0);
    }

    #[tokio::test]
    async fn a_writer_never_reads_another_writers_fill() {
        let zone = Zone::leak(&ZoneSpec::new("w", 1 << 20, Duration::from_secs(60)));
        let key = CacheKey::new("k", "");
        let span = Span::inactive().handle();
        let mut first = zone.get_miss_handler(&key, &meta(60), &span).await.unwrap();
        let mut second = zone.get_miss_handler(&key, &meta(60), &span).await.unwrap();
        first
            .write_body(Bytes::from_static(b"first"), false)
            .await
            .unwrap();
        second
            .write_body(Bytes::from_static(b"second"), false)
            .await
            .unwrap();
        let (_, mut own) = zone
            .lookup_streaming_write(&key, first.streaming_write_tag(), &span)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&own.read_body().await.unwrap().unwrap()[..], b"first");
        assert!(
            zone.lookup_streaming_write(&key, Some(&[0u8; 8]), &span)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            zone.lookup_streaming_write(&key, Some(b"bad"), &span)
                .await
                .is_err()
        );
    }
}
