//! The write door's promise: every committed registry write (items,
//! associations, discovery, reachability, teams, members, tokens) is
//! announced on the cluster bus exactly once, after its commit; a write
//! that fails or changes nothing announces nothing.

mod common;
#[path = "common/fixture.rs"]
mod fixture;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fixture::Fixture;
use mcpgate::cluster::bus::BoxFuture;
use mcpgate::cluster::{Event, Origin, Subscriber};
use mcpgate::config::Config;
use mcpgate::store::Store;
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::json;

/// Records each event with the registry version the database had when it
/// was delivered: an event announced before its commit would see an older
/// one.
struct Seen {
    store: Store,
    events: Mutex<Vec<(Event, i64)>>,
}

impl Subscriber for Seen {
    fn on_event<'a>(&'a self, event: &'a Event, _origin: Origin) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let db = self.store.registry_version().await.unwrap();
            self.events.lock().push((event.clone(), db));
        })
    }
}

impl Seen {
    /// The events since the last call; each registry event's version is
    /// already committed.
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock())
            .into_iter()
            .map(|(e, db)| {
                if let Some(v) = e.registry_version() {
                    assert!(db >= v, "{e:?} announced before its commit (db at {db})");
                }
                e
            })
            .collect()
    }

    fn one(&self, what: &str) -> Event {
        let got = self.take();
        assert_eq!(got.len(), 1, "{what}: expected one event, got {got:?}");
        got.into_iter().next().unwrap()
    }

    fn none(&self, what: &str) {
        let got = self.take();
        assert!(got.is_empty(), "{what}: expected no event, got {got:?}");
    }
}

fn registry_changed(e: &Event) -> bool {
    matches!(e, Event::RegistryChanged { .. })
}

fn principals_changed(e: &Event) -> bool {
    matches!(e, Event::PrincipalsChanged { .. })
}

async fn every_write_announces_once(backend: Backend) {
    let db = Db::new(backend).await;
    let mut fx = Fixture::start(0, &[]);
    let gw = Gw::start(Config {
        health_check_interval: 1,
        unhealthy_threshold: 1,
        gateway_health_check_timeout: 0.5,
        ..mcp_config(&db)
    })
    .await;
    let seen = Arc::new(Seen {
        store: gw.running.state.registry.store().clone(),
        events: Mutex::new(Vec::new()),
    });
    gw.running.state.bus.subscribe(seen.clone());
    let t = gw.admin.clone();

    // Items.
    let tool = gw.tool(&t, rest_tool("a_tool")).await;
    let id = tool["id"].as_str().unwrap().to_owned();
    assert!(registry_changed(&seen.one("create")));
    let (s, _) = gw.post("/v1/tools", &t, rest_tool("a_tool")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    seen.none("a duplicate create fails in its transaction");
    let (s, _) = gw
        .put(&format!("/v1/tools/{id}"), &t, json!({"description": "d"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(registry_changed(&seen.one("update")));
    let (s, _) = gw
        .post(
            &format!("/v1/tools/{id}/state?activate=false"),
            &t,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(registry_changed(&seen.one("state")));
    let (s, _) = gw.delete(&format!("/v1/tools/{id}"), &t).await;
    assert_eq!(s, StatusCode::OK);
    assert!(registry_changed(&seen.one("delete")));
    let (s, _) = gw.delete(&format!("/v1/tools/{id}"), &t).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    seen.none("deleting what is gone");

    // A gateway and its discovered items land in one transaction.
    let g = gw.register("fx", &fx.url(), "STREAMABLEHTTP").await;
    let gid = g["id"].as_str().unwrap().to_owned();
    assert!(registry_changed(&seen.one("gateway with discovery")));
    let (s, v) = gw
        .post(&format!("/v1/gateways/{gid}/tools/refresh"), &t, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(registry_changed(&seen.one("refresh")));
    // Discovery takes time: a gateway deleted meanwhile is not written back
    // (was a foreign-key failure, answered 500).
    let snapshot_gw = gw
        .running
        .state
        .registry
        .snapshot()
        .gateways
        .get(&gid)
        .unwrap()
        .item
        .clone();
    let found =
        mcpgate::federation::discovery::discover(&gw.running.state.federation, &snapshot_gw)
            .await
            .unwrap();
    let (s, _) = gw.delete(&format!("/v1/gateways/{gid}"), &t).await;
    assert_eq!(s, StatusCode::OK);
    assert!(registry_changed(&seen.one("gateway deleted")));
    let written = gw
        .running
        .state
        .updater
        .apply_discovery(&snapshot_gw, found, "-")
        .await
        .unwrap();
    assert!(!written, "nothing is written for a gateway that is gone");
    seen.none("discovery of a deleted gateway");
    let g = gw.register("fx", &fx.url(), "STREAMABLEHTTP").await;
    let gid = g["id"].as_str().unwrap().to_owned();
    assert!(registry_changed(&seen.one("gateway registered again")));
    let (s, _) = gw
        .post(
            "/v1/gateways",
            &t,
            json!({"name": "nowhere", "url": "http://127.0.0.1:9/mcp", "transport": "STREAMABLEHTTP"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    seen.none("a gateway that cannot be reached is not written");

    // A virtual server with its associations.
    let tools: Vec<String> = gw
        .get("/v1/tools", &t)
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let (s, v) = gw
        .post(
            "/v1/servers",
            &t,
            json!({"name": "vs", "associated_tools": tools}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(registry_changed(&seen.one("server")));

    // Reachability, written by the leader's health checks.
    fx.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    let event = loop {
        let got = seen.take();
        if !got.is_empty() {
            break got;
        }
        assert!(Instant::now() < deadline, "no reachability event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(event.len(), 1, "{event:?}");
    assert!(registry_changed(&event[0]));
    let (_, g) = gw.get(&format!("/v1/gateways/{gid}"), &t).await;
    assert_eq!(g["reachable"], false);
    // Further failed checks change nothing and announce nothing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    seen.none("an unchanged verdict");

    // Teams and members change principals.
    let (s, team) = gw.post("/v1/teams", &t, json!({"name": "Blue"})).await;
    assert_eq!(s, StatusCode::CREATED, "{team}");
    let team = team["id"].as_str().unwrap().to_owned();
    assert!(principals_changed(&seen.one("team")));
    let (s, _) = gw
        .post(
            &format!("/v1/teams/{team}/members"),
            &t,
            json!({"email": "dev@example.com", "role": "developer"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(principals_changed(&seen.one("add member")));
    let (s, _) = gw
        .post(
            &format!("/v1/teams/{team}/members"),
            &t,
            json!({"email": "dev@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    seen.none("a member twice");
    let (s, _) = gw
        .put(
            &format!("/v1/teams/{team}/members/dev@example.com"),
            &t,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(principals_changed(&seen.one("role")));
    let (s, _) = gw
        .delete(&format!("/v1/teams/{team}/members/dev@example.com"), &t)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(principals_changed(&seen.one("remove member")));

    // Tokens.
    let (s, tok) = gw
        .post(
            "/v1/tokens",
            &t,
            json!({"name": "ci", "expires_in_days": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tok}");
    let jti = tok["token"]["jti"].as_str().unwrap().to_owned();
    assert_eq!(seen.one("issue"), Event::TokenIssued { jti: jti.clone() });
    let tid = tok["token"]["id"].as_str().unwrap();
    let (s, _) = gw.delete(&format!("/v1/tokens/{tid}"), &t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(seen.one("revoke"), Event::TokenRevoked { jti });

    gw.stop().await;
    db.drop_db().await;
}
both!(
    every_registry_write_announces_exactly_once,
    every_write_announces_once
);
