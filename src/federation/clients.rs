//! HTTP clients for upstream calls, one per thread.
//!
//! A pooled connection is driven by a task on the runtime that opened it.
//! The gateway serves on several runtimes (one per core on :4444, the
//! edge's own, the main one for background work), and a connection shared
//! between them dies with the runtime that opened it: when the edge stops
//! first at shutdown, calls still in flight on :4444 failed with "runtime
//! dropped the dispatch task". Each serving thread runs its own
//! single-threaded runtime, so a client per thread keeps every connection
//! on the runtime that uses it, and a call never wakes another thread.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

type Make = dyn Fn() -> reqwest::Client + Send + Sync;

struct Inner {
    id: u64,
    make: Box<Make>,
}

/// Makes (once per thread) and hands out the upstream HTTP client.
#[derive(Clone)]
pub struct HttpClients(Arc<Inner>);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's clients, by owner; entries of dropped owners are
    /// pruned when a new one is added.
    static CLIENTS: RefCell<Vec<(u64, Weak<Inner>, reqwest::Client)>> =
        const { RefCell::new(Vec::new()) };
}

impl HttpClients {
    /// `make` builds a client with the gateway's settings (resolver,
    /// timeouts, redirects); it runs once on each thread that calls out.
    pub fn new(make: impl Fn() -> reqwest::Client + Send + Sync + 'static) -> HttpClients {
        HttpClients(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            make: Box::new(make),
        }))
    }

    /// This thread's client.
    pub fn get(&self) -> reqwest::Client {
        CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            if let Some((_, _, c)) = clients.iter().find(|(id, _, _)| *id == self.0.id) {
                return c.clone();
            }
            clients.retain(|(_, owner, _)| owner.strong_count() > 0);
            let client = (self.0.make)();
            clients.push((self.0.id, Arc::downgrade(&self.0), client.clone()));
            client
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_thread_and_owner() {
        let made = Arc::new(AtomicU64::new(0));
        let counter = made.clone();
        let clients = HttpClients::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            reqwest::Client::new()
        });
        clients.get();
        clients.get();
        assert_eq!(made.load(Ordering::Relaxed), 1);
        let other = clients.clone();
        std::thread::spawn(move || other.get()).join().unwrap();
        assert_eq!(made.load(Ordering::Relaxed), 2);
        // A dropped owner's client is pruned when another owner adds one.
        drop(clients);
        let next = HttpClients::new(reqwest::Client::new);
        next.get();
        CLIENTS.with(|c| assert_eq!(c.borrow().len(), 1));
    }
}
