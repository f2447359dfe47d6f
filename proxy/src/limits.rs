//! Per-client-IP limits with nginx semantics and bounded memory.
//!
//! `limit_req rate=R burst=B nodelay` is a GCRA (generic cell rate
//! algorithm) per IP: up to B requests beyond the sustained rate pass at once,
//! then one every 1/R s; a rejected request learns when the next one would
//! pass (`Retry-After`). State is one atomic per IP in a bounded cache, so
//! memory stays bounded whatever the number of IPs. `limit_conn` counts
//! in-flight requests per IP with pingora-limits' fixed-size estimator.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct RateLimiter {
    cells: moka::sync::Cache<IpAddr, Arc<AtomicU64>>,
    epoch: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(200_000)
    }
}

impl RateLimiter {
    pub fn new(max_ips: u64) -> RateLimiter {
        RateLimiter {
            cells: moka::sync::Cache::builder()
                .max_capacity(max_ips)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            epoch: Instant::now(),
        }
    }

    /// Admits one request from `ip`, or says how long until one would pass.
    pub fn check(&self, ip: IpAddr, rate: u32, burst: u32) -> Result<(), Duration> {
        if rate == 0 {
            return Ok(());
        }
        let t = 1_000_000_000u64 / rate as u64;
        let tau = t * burst as u64;
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        let cell = self.cells.get_with(ip, || Arc::new(AtomicU64::new(0)));
        let mut stored = cell.load(Ordering::Acquire);
        loop {
            let tat = stored.max(now);
            if tat - now > tau {
                return Err(Duration::from_nanos(tat - now - tau));
            }
            match cell.compare_exchange_weak(stored, tat + t, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => stored = actual,
            }
        }
    }
}

pub struct ConnLimiter {
    inflight: pingora_limits::inflight::Inflight,
}

pub type ConnGuard = pingora_limits::inflight::Guard;

/// An address already has its maximum of requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many concurrent requests from this address")]
pub struct TooMany;

impl Default for ConnLimiter {
    fn default() -> Self {
        ConnLimiter {
            inflight: pingora_limits::inflight::Inflight::new(),
        }
    }
}

impl ConnLimiter {
    /// Counts a request of `ip` in flight until the guard drops; `Err` when
    /// that would exceed `limit` (0 = off).
    pub fn enter(&self, ip: IpAddr, limit: u32) -> Result<Option<ConnGuard>, TooMany> {
        if limit == 0 {
            return Ok(None);
        }
        let (guard, n) = self.inflight.incr(ip, 1);
        if n > limit as isize {
            Err(TooMany)
        } else {
            Ok(Some(guard))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let l = RateLimiter::new(10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        // burst 5 at 1 r/s: the first 6 pass at once (1 + burst), the 7th waits ~1 s.
        for i in 0..6 {
            assert!(l.check(ip, 1, 5).is_ok(), "request {i}");
        }
        let wait = l.check(ip, 1, 5).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another IP is independent.
        assert!(l.check("10.0.0.2".parse().unwrap(), 1, 5).is_ok());
        // Off.
        for _ in 0..100 {
            assert!(l.check(ip, 0, 0).is_ok());
        }
    }

    #[test]
    fn memory_is_bounded() {
        let l = RateLimiter::new(100);
        for i in 0..10_000u32 {
            let _ = l.check(IpAddr::from(i.to_be_bytes()), 10, 10);
        }
        l.cells.run_pending_tasks();
        assert!(l.cells.entry_count() <= 110, "{}", l.cells.entry_count());
    }

    #[test]
    fn concurrent_requests_per_ip() {
        let c = ConnLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let g1 = c.enter(ip, 2).unwrap();
        let g2 = c.enter(ip, 2).unwrap();
        assert!(c.enter(ip, 2).is_err());
        drop(g1);
        assert!(c.enter(ip, 2).is_ok());
        drop(g2);
        assert!(c.enter(ip, 0).unwrap().is_none());
    }
}
