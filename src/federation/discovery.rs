//! Discovery: what an upstream offers (tools, resources, resource
//! templates, prompts), written into the registry under the gateway, keeping
//! the ids of items that were already known so associations survive.

use std::collections::HashMap;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Federation;
use super::client::UpstreamError;
use crate::registry::Registry;
use crate::registry::model::{Gateway, Prompt, Resource, Tool};
use crate::store::{Record, Store, StoreError, Tx, Val};
use crate::util::{new_id, now, slugify};

#[derive(Debug, Default)]
pub struct Discovered {
    pub capabilities: Value,
    pub tools: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
    pub prompts: Vec<Value>,
}

const MAX_PAGES: usize = 100;

async fn list_all(
    fed: &Federation,
    gw: &Gateway,
    method: &str,
    key: &str,
) -> Result<Vec<Value>, UpstreamError> {
    let up = fed.shared(gw).await?;
    let mut out = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let r = up
            .call(
                method,
                params,
                None,
                fed.cfg.federation_timeout,
                CancellationToken::new(),
            )
            .await?;
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

pub async fn discover(fed: &Federation, gw: &Gateway) -> Result<Discovered, UpstreamError> {
    let up = fed.shared(gw).await?;
    let caps = up.server_capabilities.clone();
    let mut d = Discovered {
        capabilities: caps.clone(),
        ..Discovered::default()
    };
    if caps.get("tools").is_some() {
        d.tools = list_all(fed, gw, "tools/list", "tools").await?;
    }
    if caps.get("resources").is_some() {
        d.resources = list_all(fed, gw, "resources/list", "resources").await?;
        // Templates are optional even for servers with resources.
        d.templates = list_all(fed, gw, "resources/templates/list", "resourceTemplates")
            .await
            .unwrap_or_default();
    }
    if caps.get("prompts").is_some() {
        d.prompts = list_all(fed, gw, "prompts/list", "prompts").await?;
    }
    Ok(d)
}

/// A tool name as exposed under a gateway: characters outside the
/// 2025-11-25 tool-name alphabet become `-`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

pub fn exposed_name(gw: &Gateway, sep: &str, original: &str) -> String {
    format!("{}{sep}{}", slugify(&gw.name), sanitize(original))
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// Inserts a newly discovered item, or updates one already known.
async fn put<R: Record>(tx: &mut Tx<'_>, item: &R, known: bool) -> Result<(), StoreError> {
    if known {
        tx.update(item).await.map(|_| ())
    } else {
        tx.insert(item).await
    }
}

/// Deletes the known items the upstream no longer offers.
async fn drop_missing<R: Record>(
    tx: &mut Tx<'_>,
    known: &HashMap<String, R>,
    seen: &[String],
) -> Result<(), StoreError> {
    for (key, item) in known {
        if !seen.contains(key) {
            tx.delete(R::TABLE, item.id()).await?;
        }
    }
    Ok(())
}

/// Writes what was discovered into the registry, in one transaction.
pub async fn sync(store: &Store, gw: &Gateway, d: Discovered, sep: &str) -> Result<(), StoreError> {
    let ts = now();
    let old_tools: HashMap<String, Tool> = store
        .fetch_where::<Tool>("gateway_id", gw.id.as_str().into())
        .await?
        .into_iter()
        .map(|t| (t.original_name.clone(), t))
        .collect();
    let old_res: HashMap<String, Resource> = store
        .fetch_where::<Resource>("gateway_id", gw.id.as_str().into())
        .await?
        .into_iter()
        .map(|r| (r.uri.clone(), r))
        .collect();
    let old_prompts: HashMap<String, Prompt> = store
        .fetch_where::<Prompt>("gateway_id", gw.id.as_str().into())
        .await?
        .into_iter()
        .map(|p| (p.original_name.clone(), p))
        .collect();

    let mut tx = store.begin().await?;
    let mut seen = Vec::new();
    for t in &d.tools {
        let Some(original) = s(t, "name") else {
            continue;
        };
        let existing = old_tools.get(&original);
        let tool = Tool {
            id: existing.map_or_else(new_id, |e| e.id.clone()),
            name: exposed_name(gw, sep, &original),
            original_name: original.clone(),
            custom_name: None,
            display_name: existing.and_then(|e| e.display_name.clone()),
            title: s(t, "title"),
            url: Some(gw.url.clone()),
            description: s(t, "description"),
            integration_type: "MCP".into(),
            request_type: gw.transport.clone(),
            headers: json!({}),
            input_schema: t
                .get("inputSchema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"})),
            output_schema: t.get("outputSchema").cloned(),
            annotations: t.get("annotations").cloned().unwrap_or_else(|| json!({})),
            jsonpath_filter: None,
            auth_type: None,
            auth_value: None,
            timeout_ms: existing.and_then(|e| e.timeout_ms),
            enabled: existing.is_none_or(|e| e.enabled),
            reachable: true,
            gateway_id: Some(gw.id.clone()),
            tags: existing.map_or_else(|| gw.tags.clone(), |e| e.tags.clone()),
            team_id: gw.team_id.clone(),
            owner_email: gw.owner_email.clone(),
            visibility: gw.visibility,
            created_at: existing.map_or_else(|| ts.clone(), |e| e.created_at.clone()),
            updated_at: ts.clone(),
        };
        put(&mut tx, &tool, existing.is_some()).await?;
        seen.push(original);
    }
    drop_missing(&mut tx, &old_tools, &seen).await?;

    let mut seen = Vec::new();
    let entries = d.resources.iter().map(|r| (r, s(r, "uri"), None)).chain(
        d.templates
            .iter()
            .map(|r| (r, s(r, "uriTemplate"), s(r, "uriTemplate"))),
    );
    for (r, uri, template) in entries {
        let Some(uri) = uri else { continue };
        if seen.contains(&uri) {
            continue;
        }
        let existing = old_res.get(&uri);
        let res = Resource {
            id: existing.map_or_else(new_id, |e| e.id.clone()),
            uri: uri.clone(),
            name: s(r, "name").unwrap_or_else(|| uri.clone()),
            description: s(r, "description"),
            mime_type: s(r, "mimeType"),
            size: r.get("size").and_then(Value::as_i64),
            uri_template: template,
            text_content: None,
            gateway_id: Some(gw.id.clone()),
            enabled: existing.is_none_or(|e| e.enabled),
            tags: existing.map_or_else(|| gw.tags.clone(), |e| e.tags.clone()),
            team_id: gw.team_id.clone(),
            owner_email: gw.owner_email.clone(),
            visibility: gw.visibility,
            created_at: existing.map_or_else(|| ts.clone(), |e| e.created_at.clone()),
            updated_at: ts.clone(),
        };
        put(&mut tx, &res, existing.is_some()).await?;
        seen.push(uri);
    }
    drop_missing(&mut tx, &old_res, &seen).await?;

    let mut seen = Vec::new();
    for p in &d.prompts {
        let Some(original) = s(p, "name") else {
            continue;
        };
        let existing = old_prompts.get(&original);
        let prompt = Prompt {
            id: existing.map_or_else(new_id, |e| e.id.clone()),
            name: exposed_name(gw, sep, &original),
            original_name: original.clone(),
            description: s(p, "description"),
            template: String::new(),
            argument_schema: p.get("arguments").cloned().unwrap_or_else(|| json!([])),
            gateway_id: Some(gw.id.clone()),
            enabled: existing.is_none_or(|e| e.enabled),
            tags: existing.map_or_else(|| gw.tags.clone(), |e| e.tags.clone()),
            team_id: gw.team_id.clone(),
            owner_email: gw.owner_email.clone(),
            visibility: gw.visibility,
            created_at: existing.map_or_else(|| ts.clone(), |e| e.created_at.clone()),
            updated_at: ts.clone(),
        };
        put(&mut tx, &prompt, existing.is_some()).await?;
        seen.push(original);
    }
    drop_missing(&mut tx, &old_prompts, &seen).await?;
    tx.execute(
        "UPDATE gateways SET capabilities = $1, last_seen = $2, reachable = 1, last_error = NULL WHERE id = $3",
        vec![d.capabilities.to_string().into(), ts.into(), Val::from(gw.id.as_str())],
    )
    .await?;
    tx.execute(
        "UPDATE tools SET reachable = 1 WHERE gateway_id = $1",
        vec![gw.id.as_str().into()],
    )
    .await?;
    tx.commit().await
}

/// Discovers a gateway again and rewrites its items.
pub async fn refresh(
    fed: &Federation,
    registry: &Registry,
    gateway_id: &str,
) -> Result<(), String> {
    let snap = registry.snapshot();
    let gw = snap
        .gateways
        .get(gateway_id)
        .map(|e| e.item.clone())
        .ok_or_else(|| format!("gateway {gateway_id} not found"))?;
    let d = discover(fed, &gw).await.map_err(|e| e.to_string())?;
    sync(registry.store(), &gw, d, &fed.cfg.separator)
        .await
        .map_err(|e| e.to_string())?;
    registry.reload().await.map_err(|e| e.to_string())
}

/// Refreshes a gateway whenever its upstream says a list changed.
pub fn spawn_refresher(fed: std::sync::Arc<Federation>, registry: std::sync::Arc<Registry>) {
    let Some(mut rx) = fed.take_list_changed() else {
        return;
    };
    tokio::spawn(async move {
        while let Some((gateway_id, method)) = rx.recv().await {
            // Coalesce a burst of notifications into one refresh.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            match refresh(&fed, &registry, &gateway_id).await {
                Ok(()) => {
                    tracing::info!(%gateway_id, %method, "gateway refreshed after list_changed")
                }
                Err(e) => {
                    tracing::warn!(%gateway_id, error = %e, "refresh after list_changed failed")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("get weather/now"), "get-weather-now");
        assert_eq!(sanitize("test_simple.text-1"), "test_simple.text-1");
    }
}
