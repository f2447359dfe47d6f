//! Which MCP POSTs the edge may answer from its `mcp` zone, and the key:
//! the reads whose answers say how long they may be kept (`tools/list`,
//! `prompts/list`, `resources/list`, `resources/templates/list`,
//! `resources/read`, `server/discover`), on `/rpc`, `/mcp` and
//! `/servers/{id}/mcp`, when the request would be answered as it stands for
//! its caller. The key is the route, the method, the protocol version and
//! the canonical parameters, plus the caller's visibility scope — except for
//! a `resources/read` whose upstream said `public`: one entry then serves
//! every caller who may read that resource (checked here, per request,
//! against the snapshot).

use axum::body::Bytes;
use axum::http::header;
use mcpgate_proxy::{BoxFuture, PostCache, PostCachePolicy};

use super::{AppState, resolve_principal};
use crate::auth::bearer;
use crate::mcp::http;

pub struct McpPostCache(pub AppState);

/// `(virtual server, Streamable HTTP?)` of an MCP POST route.
fn route(path: &str) -> Option<(Option<&str>, bool)> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    match path {
        "/rpc" | "/" => Some((None, false)),
        "/mcp" => Some((None, true)),
        _ => {
            let id = path.strip_prefix("/servers/")?.strip_suffix("/mcp")?;
            (!id.is_empty() && !id.contains('/')).then_some((Some(id), true))
        }
    }
}

impl PostCachePolicy for McpPostCache {
    fn plan<'a>(
        &'a self,
        head: &'a axum::http::request::Parts,
        body: &'a Bytes,
    ) -> BoxFuture<'a, Option<PostCache>> {
        Box::pin(async move {
            let st = &self.0;
            let path = head.uri.path();
            let (server_id, streamable) = route(path)?;
            let token = head
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer)
                .map(str::to_owned);
            // Anything that would not be served (a bad token, ...) is
            // answered by the application.
            let required = st.config().mcp_auth_required();
            let principal = resolve_principal(st, token, required).await.ok()?;
            let plan = http::cache_plan(
                &st.mcp,
                Some(&principal),
                server_id,
                &head.headers,
                body,
                streamable,
            )
            .await?;
            let gateway = &st.mcp.dispatcher.handler;
            let shared = plan.uri.as_deref().is_some_and(|uri| {
                plan.method == "resources/read"
                    && gateway.read_scopes.is_public(server_id, uri)
                    && gateway.can_read(&principal, server_id, uri)
            });
            let who = if shared {
                "public".to_owned()
            } else {
                principal.scope_key()
            };
            let route = path.trim_end_matches('/');
            let mut key = String::with_capacity(
                route.len()
                    + plan.method.len()
                    + plan.version.len()
                    + plan.params.len()
                    + who.len()
                    + 4,
            );
            for part in [route, &plan.method, &plan.version, &plan.params, &who] {
                key.push_str(part);
                key.push('\n');
            }
            Some(PostCache {
                key,
                shared,
                own: Bytes::from(plan.own),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn mcp_routes() {
        assert_eq!(route("/rpc"), Some((None, false)));
        assert_eq!(route("/"), Some((None, false)));
        assert_eq!(route("/mcp/"), Some((None, true)));
        assert_eq!(route("/servers/abc/mcp"), Some((Some("abc"), true)));
        assert_eq!(route("/servers/abc/mcp/"), Some((Some("abc"), true)));
        assert_eq!(route("/servers//mcp"), None);
        assert_eq!(route("/servers/a/b/mcp"), None);
        assert_eq!(route("/v1/tools"), None);
    }
}
