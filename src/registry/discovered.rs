//! What an upstream offers, and how it becomes registry rows: names exposed
//! under the gateway, ids kept for items already known (so virtual servers
//! keep them), items the upstream no longer offers dropped.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::model::{Gateway, IntegrationType, Prompt, Resource, Tool};
use crate::util::{new_id, now, slugify};

/// The lists an upstream answered, as it sent them.
#[derive(Debug, Default, Clone)]
pub struct Discovered {
    pub capabilities: Value,
    pub tools: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
    pub prompts: Vec<Value>,
}

/// What asking an upstream gave: its offer, or why it could not be asked
/// (recorded as the gateway's `last_error`).
#[derive(Debug, Clone)]
pub enum Discovery {
    Offered(Discovered),
    Unreachable { error: String },
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

/// The rows a discovery writes: each item with whether it was known (update)
/// or is new (insert), and the `(table, id)` of known items now gone.
#[derive(Debug, Default)]
pub struct DiscoveryRows {
    pub tools: Vec<(Tool, bool)>,
    pub resources: Vec<(Resource, bool)>,
    pub prompts: Vec<(Prompt, bool)>,
    pub gone: Vec<(&'static str, String)>,
}

impl DiscoveryRows {
    pub fn build(
        gw: &Gateway,
        d: &Discovered,
        sep: &str,
        known_tools: Vec<Tool>,
        known_resources: Vec<Resource>,
        known_prompts: Vec<Prompt>,
    ) -> DiscoveryRows {
        let ts = now();
        let mut rows = DiscoveryRows::default();
        let old_tools: HashMap<String, Tool> = known_tools
            .into_iter()
            .map(|t| (t.original_name.clone(), t))
            .collect();
        let old_res: HashMap<String, Resource> = known_resources
            .into_iter()
            .map(|r| (r.uri.clone(), r))
            .collect();
        let old_prompts: HashMap<String, Prompt> = known_prompts
            .into_iter()
            .map(|p| (p.original_name.clone(), p))
            .collect();

        let mut seen = Vec::new();
        for t in &d.tools {
            let Some(original) = s(t, "name") else {
                continue;
            };
            if seen.contains(&original) {
                continue;
            }
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
                integration_type: IntegrationType::Mcp,
                request_type: gw.transport.as_str().to_owned(),
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
            rows.tools.push((tool, existing.is_some()));
            seen.push(original);
        }
        gone(&mut rows.gone, "tools", &old_tools, &seen, |t| &t.id);

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
            rows.resources.push((res, existing.is_some()));
            seen.push(uri);
        }
        gone(&mut rows.gone, "resources", &old_res, &seen, |r| &r.id);

        let mut seen = Vec::new();
        for p in &d.prompts {
            let Some(original) = s(p, "name") else {
                continue;
            };
            if seen.contains(&original) {
                continue;
            }
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
            rows.prompts.push((prompt, existing.is_some()));
            seen.push(original);
        }
        gone(&mut rows.gone, "prompts", &old_prompts, &seen, |p| &p.id);
        rows
    }
}

fn gone<T>(
    out: &mut Vec<(&'static str, String)>,
    table: &'static str,
    known: &HashMap<String, T>,
    seen: &[String],
    id: impl Fn(&T) -> &String,
) {
    let mut ids: Vec<String> = known
        .iter()
        .filter(|(key, _)| !seen.contains(key))
        .map(|(_, item)| id(item).clone())
        .collect();
    ids.sort();
    out.extend(ids.into_iter().map(|i| (table, i)));
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
