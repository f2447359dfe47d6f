//! `POST /edge/purge?zone=NAME` or `?path=/PATH`: drops cached entries, for
//! platform admins. Both lanes recognise the endpoint with [`is_purge`].

use pingora_error::Result;
use pingora_proxy::Session;

use crate::answers::{EdgeAnswer, send};
use crate::app::EdgeApp;
use crate::context::Ctx;
use crate::edge::EdgeProxy;

pub(crate) const PURGE_PATH: &str = "/edge/purge";

/// Whether a request target (path and query) names the purge endpoint.
pub(crate) fn is_purge(target: &str) -> bool {
    target.split(['?', '#']).next() == Some(PURGE_PATH)
}

/// The percent-decoded value of `key` in a query string.
fn param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

impl<A: EdgeApp> EdgeProxy<A> {
    pub(crate) async fn purge(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let auth = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let scope = match self.app.scope_of(auth).await {
            Ok(s) => s,
            Err(r) => return send(session, ctx, EdgeAnswer::Refused(r)).await,
        };
        if !self.app.can_purge(&scope) {
            return send(session, ctx, EdgeAnswer::PurgeForbidden).await;
        }
        let query = session.req_header().uri.query().unwrap_or("").to_owned();
        let answer = match (param(&query, "zone"), param(&query, "path")) {
            (Some(z), _) => match self.zones.get(&z) {
                Some(zone) => {
                    let entries = zone.purge_all() as u64;
                    self.app.purged(Some(&z), None);
                    EdgeAnswer::PurgedZone { zone: z, entries }
                }
                None => EdgeAnswer::PurgeUnknownZone(z),
            },
            (None, Some(p)) => {
                self.generations.bump(&format!("path:{p}"));
                self.app.purged(None, Some(&p));
                EdgeAnswer::PurgedPath { path: p }
            }
            (None, None) => EdgeAnswer::PurgeNeedsTarget,
        };
        send(session, ctx, answer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `purge_path_matches_alike_on_both_lanes`. The direct lane
    /// matched `/edge/purge` as a prefix, the proxy lane exactly.
    #[test]
    fn purge_path_matches_alike_on_both_lanes() {
        assert!(is_purge("/edge/purge"));
        assert!(is_purge("/edge/purge?zone=api"));
        assert!(!is_purge("/edge/purged"));
        assert!(!is_purge("/edge/purge/x"));
        assert!(!is_purge("/edge"));
    }

    /// Regression: `purge_query_is_percent_decoded`.
    #[test]
    fn purge_query_is_percent_decoded() {
        assert_eq!(
            param("path=%2Fv1%2Ftools&x=1", "path").as_deref(),
            Some("/v1/tools")
        );
        assert_eq!(param("zone=api", "zone").as_deref(), Some("api"));
        assert_eq!(param("zone=api", "path"), None);
    }
}
