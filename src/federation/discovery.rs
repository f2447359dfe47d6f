//! Discovery: asks an upstream what it offers (tools, resources, resource
//! templates, prompts); the write door turns the answer into registry rows.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Federation;
use super::upstream::{self, Transport, Upstream, UpstreamError, UpstreamSpec};
use crate::registry::Updater;
pub use crate::registry::discovered::{Discovered, exposed_name, sanitize};
use crate::registry::model::Gateway;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("gateway {0} not found")]
    UnknownGateway(String),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

const MAX_PAGES: usize = 100;

/// Where a gateway's discovered capabilities record the protocol versions
/// its upstream announced in `server/discover` (the stateless revision).
pub const VERSIONS_KEY: &str = "supportedVersions";

/// How a list is asked for: over the discovery session, or statelessly.
enum Asker<'a> {
    Session(&'a Upstream),
    Stateless(&'a UpstreamSpec),
}

async fn list_all(
    fed: &Federation,
    asker: &Asker<'_>,
    method: &str,
    key: &str,
) -> Result<Vec<Value>, UpstreamError> {
    let mut out = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let mut params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let timeout = fed.cfg.federation_timeout;
        let r = match asker {
            Asker::Session(up) => {
                up.call(method, params, None, timeout, CancellationToken::new())
                    .await?
            }
            Asker::Stateless(spec) => {
                params["_meta"] = stateless_meta();
                upstream::stateless::call(
                    &fed.http,
                    spec,
                    method,
                    params,
                    &[],
                    None,
                    timeout,
                    CancellationToken::new(),
                )
                .await?
            }
        };
        if let Some(items) = r.get(key).and_then(Value::as_array) {
            out.extend(items.iter().cloned());
        }
        match r.get("nextCursor").filter(|c| !c.is_null()) {
            Some(c) => cursor = Some(c.clone()),
            None => break,
        }
    }
    Ok(out)
}

/// What discovery declares about itself: a client that can answer every
/// kind of request, so that an upstream shows every tool it may gate on
/// sampling, elicitation or roots.
fn all_capabilities() -> Value {
    json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}})
}

fn stateless_meta() -> Value {
    json!({
        crate::mcp::protocol::META_VERSION: crate::mcp::protocol::STATELESS,
        crate::mcp::stateless::META_CAPABILITIES: all_capabilities(),
        "io.modelcontextprotocol/clientInfo": {"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// Adds the items of `more` that `into` lacks (by `key`).
fn merge(into: &mut Vec<Value>, more: Vec<Value>, key: &str) {
    for item in more {
        if !into.iter().any(|x| x.get(key) == item.get(key)) {
            into.push(item);
        }
    }
}

/// Asks an upstream what it offers, in each revision it speaks: the
/// handshake's (on a session of its own, declaring every client
/// capability), and, when `server/discover` says it speaks the stateless
/// revision, what it lists there too (some tools exist only there).
pub async fn discover(fed: &Federation, gw: &Gateway) -> Result<Discovered, UpstreamError> {
    let up = fed.connect(gw, all_capabilities(), None).await?;
    let listed = discover_on(fed, &Asker::Session(&up), &up.server_capabilities).await;
    up.close().await;
    let mut d = listed?;
    if gw.transport == Transport::StreamableHttp {
        let spec = fed.spec(gw)?;
        if let Some(versions) =
            upstream::stateless::discover(&fed.http, &spec, fed.cfg.federation_timeout).await
        {
            // What the stateless revision offers besides: best effort, the
            // handshake's lists stand on their own.
            if let Ok(more) = discover_on(fed, &Asker::Stateless(&spec), &d.capabilities).await {
                merge(&mut d.tools, more.tools, "name");
                merge(&mut d.resources, more.resources, "uri");
                merge(&mut d.templates, more.templates, "uriTemplate");
                merge(&mut d.prompts, more.prompts, "name");
            }
            d.capabilities[VERSIONS_KEY] = json!(versions);
        }
    }
    // The pooled connection hears the upstream's list changes from now on.
    fed.shared(gw).await?;
    Ok(d)
}

async fn discover_on(
    fed: &Federation,
    asker: &Asker<'_>,
    caps: &Value,
) -> Result<Discovered, UpstreamError> {
    let mut d = Discovered {
        capabilities: caps.clone(),
        ..Discovered::default()
    };
    if caps.get("tools").is_some() {
        d.tools = list_all(fed, asker, "tools/list", "tools").await?;
    }
    if caps.get("resources").is_some() {
        d.resources = list_all(fed, asker, "resources/list", "resources").await?;
        // Templates are optional even for servers with resources.
        d.templates = list_all(fed, asker, "resources/templates/list", "resourceTemplates")
            .await
            .unwrap_or_default();
    }
    if caps.get("prompts").is_some() {
        d.prompts = list_all(fed, asker, "prompts/list", "prompts").await?;
    }
    Ok(d)
}

/// Discovers a gateway again and rewrites its items.
pub async fn refresh(
    fed: &Federation,
    updater: &Updater,
    gateway_id: &str,
) -> Result<(), RefreshError> {
    let snap = updater.registry().snapshot();
    let gw = snap
        .gateways
        .get(gateway_id)
        .map(|e| e.item.clone())
        .ok_or_else(|| RefreshError::UnknownGateway(gateway_id.to_owned()))?;
    let d = discover(fed, &gw).await?;
    if !updater.apply_discovery(&gw, d, &fed.cfg.separator).await? {
        return Err(RefreshError::UnknownGateway(gateway_id.to_owned()));
    }
    Ok(())
}

/// How long notifications are gathered before refreshing: a burst from one
/// upstream (tools, resources and prompts changed together) is one refresh.
const COALESCE: Duration = Duration::from_millis(200);

/// What upstreams said within one window.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Heard {
    /// Gateways whose lists changed, each once.
    pub changed: BTreeSet<String>,
    /// `(gateway, uri)` of resources that changed.
    pub updated: BTreeSet<(String, String)>,
}

impl Heard {
    fn add(&mut self, id: String, said: &Value) {
        match said.get("method").and_then(Value::as_str) {
            Some("notifications/resources/updated") => {
                let uri = said.get("uri").and_then(Value::as_str).unwrap_or("");
                self.updated.insert((id, uri.to_owned()));
            }
            _ => {
                self.changed.insert(id);
            }
        }
    }
}

/// Takes `first` and every notification that arrives within `window` of it.
pub async fn gather(
    first: (String, Value),
    rx: &mut mpsc::UnboundedReceiver<(String, Value)>,
    window: Duration,
) -> Heard {
    let mut heard = Heard::default();
    heard.add(first.0, &first.1);
    let deadline = tokio::time::sleep(window);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some((id, said)) => heard.add(id, &said),
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    heard
}

/// Refreshes a gateway whenever its upstream says a list changed, and
/// tells every replica when a resource changed (what was kept of it is
/// stale), until `stop`.
pub async fn run_refresher(fed: Arc<Federation>, updater: Arc<Updater>, stop: CancellationToken) {
    let Some(mut rx) = fed.take_list_changed() else {
        return;
    };
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = stop.cancelled() => return,
        };
        let heard = gather(first, &mut rx, COALESCE).await;
        for (gateway_id, uri) in heard.updated {
            updater
                .bus()
                .publish(crate::cluster::Event::UpstreamResourceUpdated { gateway_id, uri })
                .await;
        }
        for gateway_id in heard.changed {
            match refresh(&fed, &updater, &gateway_id).await {
                Ok(()) => tracing::info!(%gateway_id, "gateway refreshed after list_changed"),
                Err(e) => {
                    tracing::warn!(%gateway_id, error = %e, "refresh after list_changed failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `discovery_coalescing_keeps_other_gateways`. Draining the
    /// channel lost a notification from a second gateway that arrived in the
    /// same window.
    #[tokio::test(start_paused = true)]
    async fn discovery_coalescing_keeps_other_gateways() {
        let list = || json!({"method": "notifications/tools/list_changed"});
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(("a".to_owned(), list())).unwrap();
        tx.send(("b".to_owned(), list())).unwrap();
        tx.send((
            "b".to_owned(),
            json!({"method": "notifications/resources/updated", "uri": "x://1"}),
        ))
        .unwrap();
        tx.send(("a".to_owned(), list())).unwrap();
        let first = rx.recv().await.unwrap();
        let heard = gather(first, &mut rx, COALESCE).await;
        assert_eq!(
            heard.changed.into_iter().collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(
            heard.updated.into_iter().collect::<Vec<_>>(),
            vec![("b".to_owned(), "x://1".to_owned())]
        );
        // Something after the window is left for the next round.
        let later = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(COALESCE * 2).await;
            later.send(("c".to_owned(), list())).unwrap();
        });
        let heard = gather(("d".into(), list()), &mut rx, COALESCE).await;
        assert_eq!(heard.changed.into_iter().collect::<Vec<_>>(), vec!["d"]);
        assert_eq!(rx.recv().await.unwrap().0, "c");
    }
}
