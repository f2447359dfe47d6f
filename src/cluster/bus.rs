//! The event bus: local subscribers are called in order, in the task that
//! publishes (so a write is answered only after this replica applied it);
//! the copy for other replicas leaves through a [`BusTransport`] without
//! being awaited.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::{Envelope, Event};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Published by this replica (its own write, already applied to its
    /// snapshot).
    Local,
    /// Received from another replica, or synthesized by the database poll.
    Remote,
}

pub trait Subscriber: Send + Sync + 'static {
    fn on_event<'a>(&'a self, event: &'a Event, origin: Origin) -> BoxFuture<'a, ()>;
}

/// How events reach other replicas.
pub trait BusTransport: Send + Sync + 'static {
    /// Queues an envelope for the other replicas. Never blocks.
    fn send(&self, envelope: Envelope);
    /// `local`, `redis`.
    fn kind(&self) -> &'static str;
    /// Whether events currently reach other replicas.
    fn connected(&self) -> bool;
}

/// The transport of a single instance: other instances sharing its database
/// learn of changes through the registry-version poll.
pub struct LocalOnly;

impl BusTransport for LocalOnly {
    fn send(&self, _envelope: Envelope) {}
    fn kind(&self) -> &'static str {
        "local"
    }
    fn connected(&self) -> bool {
        false
    }
}

pub struct Bus {
    replica: String,
    subscribers: RwLock<Vec<Arc<dyn Subscriber>>>,
    transport: RwLock<Arc<dyn BusTransport>>,
    seq: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
}

impl Bus {
    pub fn new(replica: String) -> Arc<Bus> {
        Arc::new(Bus {
            replica,
            subscribers: RwLock::new(Vec::new()),
            transport: RwLock::new(Arc::new(LocalOnly)),
            seq: AtomicU64::new(0),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Replaces how events leave this replica (set once at start).
    pub fn set_transport(&self, transport: Arc<dyn BusTransport>) {
        *self.transport.write() = transport;
    }

    pub fn transport(&self) -> Arc<dyn BusTransport> {
        self.transport.read().clone()
    }

    /// Adds a subscriber; subscribers are called in the order they were added.
    pub fn subscribe(&self, s: Arc<dyn Subscriber>) {
        self.subscribers.write().push(s);
    }

    /// Announces a committed change: applied here, then sent to the others.
    pub async fn publish(&self, event: Event) {
        self.published.fetch_add(1, Ordering::Relaxed);
        self.deliver(&event, Origin::Local).await;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.transport().send(Envelope {
            origin: self.replica.clone(),
            seq,
            event,
        });
    }

    /// Applies an event from elsewhere; this replica's own echoes are ignored.
    pub async fn receive(&self, envelope: Envelope) {
        if envelope.origin == self.replica {
            return;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        self.deliver(&envelope.event, Origin::Remote).await;
    }

    /// Applies an event that no replica sent (the database poll found a
    /// newer registry version).
    pub async fn synthesize(&self, event: Event) {
        self.deliver(&event, Origin::Remote).await;
    }

    async fn deliver(&self, event: &Event, origin: Origin) {
        let subscribers: Vec<Arc<dyn Subscriber>> = self.subscribers.read().clone();
        for s in subscribers {
            s.on_event(event, origin).await;
        }
    }

    /// Events published by this replica.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events received from other replicas.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// A subscriber that records what it sees (tests and diagnostics).
#[derive(Default)]
pub struct Recorder {
    pub events: parking_lot::Mutex<Vec<(Event, Origin)>>,
}

impl Subscriber for Recorder {
    fn on_event<'a>(&'a self, event: &'a Event, origin: Origin) -> BoxFuture<'a, ()> {
        self.events.lock().push((event.clone(), origin));
        Box::pin(async {})
    }
}

impl Recorder {
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock())
            .into_iter()
            .map(|(e, _)| e)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Captured(parking_lot::Mutex<Vec<Envelope>>);
    impl BusTransport for Captured {
        fn send(&self, envelope: Envelope) {
            self.0.lock().push(envelope);
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn connected(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn local_subscribers_see_events_before_they_leave() {
        let bus = Bus::new("a".into());
        let rec = Arc::new(Recorder::default());
        bus.subscribe(rec.clone());
        let out = Arc::new(Captured(parking_lot::Mutex::new(Vec::new())));
        bus.set_transport(out.clone());
        bus.publish(Event::RegistryChanged { version: 3 }).await;
        assert_eq!(rec.take(), vec![Event::RegistryChanged { version: 3 }]);
        let sent = out.0.lock().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].origin, "a");
        assert_eq!(sent[0].seq, 1);
    }

    #[tokio::test]
    async fn own_echoes_are_ignored_and_others_are_remote() {
        let bus = Bus::new("a".into());
        let rec = Arc::new(Recorder::default());
        bus.subscribe(rec.clone());
        let ev = Event::TokenRevoked { jti: "j".into() };
        bus.receive(Envelope {
            origin: "a".into(),
            seq: 1,
            event: ev.clone(),
        })
        .await;
        assert!(rec.events.lock().is_empty());
        bus.receive(Envelope {
            origin: "b".into(),
            seq: 1,
            event: ev.clone(),
        })
        .await;
        assert_eq!(rec.events.lock()[0], (ev, Origin::Remote));
        assert_eq!(bus.received(), 1);
    }

    #[test]
    fn envelopes_round_trip_as_json() {
        let env = Envelope {
            origin: "r1".into(),
            seq: 9,
            event: Event::EdgePurge {
                target: super::super::PurgeTarget::Path("/v1/tools".into()),
            },
        };
        let text = serde_json::to_string(&env).unwrap();
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), env);
    }
}
