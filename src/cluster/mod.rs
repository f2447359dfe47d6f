//! The seam between replicas. It knows events, not registries: a [`Bus`]
//! carries typed [`Event`]s from the replica that caused them to every
//! subscriber on every replica, and a [`lease`] elects the one replica that
//! runs the jobs that must run once.
//!
//! Nothing on a request path awaits this room. A write awaits only the local
//! subscribers (cheap: swap a pointer, bump a counter); the copy for other
//! replicas is queued and sent in the background.

pub mod bus;
pub mod db_lease;
pub mod lease;
pub mod redis;

pub use bus::{Bus, BusTransport, Origin, Subscriber};
pub use lease::{AlwaysLeader, Leadership, Lease, LeaseError};

use serde::{Deserialize, Serialize};

/// Something that changed, told to every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A committed write to registry tables; `version` is the registry
    /// version it produced, so a replica can tell whether it is behind.
    RegistryChanged { version: i64 },
    /// As `RegistryChanged`, and users, teams, memberships or roles changed:
    /// cached principals are stale.
    PrincipalsChanged { version: i64 },
    /// A token was revoked: refuse it at once.
    TokenRevoked { jti: String },
    /// A token was issued (it is known not to be revoked).
    TokenIssued { jti: String },
    /// An operator purged edge cache entries.
    EdgePurge { target: PurgeTarget },
    /// An MCP session was ended (`DELETE`): refuse its id everywhere.
    SessionEnded { sid: String },
    /// An upstream said one of its resources changed
    /// (`notifications/resources/updated`): what was kept of it is stale.
    UpstreamResourceUpdated { gateway_id: String, uri: String },
}

impl Event {
    /// The registry version this event brings, if it changed the registry.
    pub fn registry_version(&self) -> Option<i64> {
        match self {
            Event::RegistryChanged { version } | Event::PrincipalsChanged { version } => {
                Some(*version)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeTarget {
    Zone(String),
    Path(String),
}

/// An event on the wire between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The replica that published it.
    pub origin: String,
    /// Per-origin sequence number: gaps tell a receiver it missed messages.
    pub seq: u64,
    pub event: Event,
}

/// A random identity for this process, used to recognise its own messages
/// and to name the leader.
pub fn new_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty() && h.len() <= 64)
        .unwrap_or_else(|| "mcpgate".to_owned());
    format!(
        "{host}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
