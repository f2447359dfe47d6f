//! Cache zones for the mcpgate edge.
//!
//! A zone is a named, bounded cache with its own byte budget and default TTL.
//! The pingora-cache `Storage` implementation lands with the edge work; this
//! crate already owns the zone definitions and the generation counter that
//! makes a whole zone (or one collection in it) unservable after a write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
/// their collection, so bumping it makes every older entry unservable at once
/// without walking the zone.
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
}
