//! Every answer the edge gives on its own (limits, oversize bodies, refused
//! credentials, purges): one enum, rendered by one function with real JSON
//! encoding.

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use serde_json::json;

use crate::app::Rejection;
use crate::context::{Ctx, X_CORRELATION_ID};
use crate::downstream::Downstream;

/// How long a refused request's body is read and discarded before closing
/// (the application on its own port lingers as long).
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EdgeAnswer {
    /// `limit_conn`: too many requests in flight from one address.
    TooManyConnections,
    /// `limit_req`: over the rate; retry after this many seconds.
    RateLimited {
        retry_after: u64,
    },
    /// The body is over `MAX_REQUEST_BODY_BYTES`.
    TooLarge {
        limit: usize,
    },
    /// The application refused the caller's credentials (401, 503).
    Refused(Rejection),
    PurgeForbidden,
    PurgeUnknownZone(String),
    PurgeNeedsTarget,
    PurgedZone {
        zone: String,
        entries: u64,
    },
    PurgedPath {
        path: String,
    },
}

impl EdgeAnswer {
    pub(crate) fn status(&self) -> u16 {
        match self {
            EdgeAnswer::TooManyConnections | EdgeAnswer::RateLimited { .. } => 429,
            EdgeAnswer::TooLarge { .. } => 413,
            EdgeAnswer::Refused(r) => r.status,
            EdgeAnswer::PurgeForbidden => 403,
            EdgeAnswer::PurgeUnknownZone(_) => 404,
            EdgeAnswer::PurgeNeedsTarget => 400,
            EdgeAnswer::PurgedZone { .. } | EdgeAnswer::PurgedPath { .. } => 200,
        }
    }

    pub(crate) fn body(&self) -> String {
        let detail = |code: &str, detail: String| json!({"error": code, "detail": detail});
        let v = match self {
            EdgeAnswer::TooManyConnections => detail(
                "too_many_requests",
                "too many concurrent requests from this address".into(),
            ),
            EdgeAnswer::RateLimited { retry_after } => detail(
                "too_many_requests",
                format!("rate limit exceeded; retry in {retry_after} s"),
            ),
            EdgeAnswer::TooLarge { limit } => detail(
                "payload_too_large",
                format!("request body is larger than {limit} bytes"),
            ),
            EdgeAnswer::Refused(r) => return r.body.clone(),
            EdgeAnswer::PurgeForbidden => {
                detail("forbidden", "purging needs a platform admin".into())
            }
            EdgeAnswer::PurgeUnknownZone(z) => detail("not_found", format!("no zone {z}")),
            EdgeAnswer::PurgeNeedsTarget => {
                detail("bad_request", "give zone=NAME or path=/PATH".into())
            }
            EdgeAnswer::PurgedZone { zone, entries } => {
                json!({"status": "purged", "zone": zone, "entries": entries})
            }
            EdgeAnswer::PurgedPath { path } => json!({"status": "purged", "path": path}),
        };
        v.to_string()
    }

    /// Refusals of a request whose body is unwanted close the connection.
    fn closes(&self) -> bool {
        matches!(
            self,
            EdgeAnswer::TooManyConnections
                | EdgeAnswer::RateLimited { .. }
                | EdgeAnswer::TooLarge { .. }
        )
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            EdgeAnswer::TooManyConnections => vec![("retry-after", "1".into())],
            EdgeAnswer::RateLimited { retry_after } => {
                vec![("retry-after", retry_after.to_string())]
            }
            EdgeAnswer::Refused(r) if r.status == 401 => {
                vec![("www-authenticate", "Bearer".into())]
            }
            EdgeAnswer::Refused(r) if r.status == 503 => vec![("retry-after", "1".into())],
            _ => vec![],
        }
    }
}

/// Sends an edge answer and records its status in the request's context.
pub(crate) async fn send<D: Downstream>(
    session: &mut D,
    ctx: &mut Ctx,
    answer: EdgeAnswer,
) -> Result<()> {
    let status = answer.status();
    ctx.status = status;
    let body = answer.body();
    let extra = answer.headers();
    let mut h = ResponseHeader::build(status, Some(extra.len() + 4))?;
    h.insert_header("content-type", "application/json")?;
    if !ctx.correlation_id.is_empty() {
        h.insert_header(X_CORRELATION_ID, ctx.correlation_id.clone())?;
    }
    h.insert_header("content-length", body.len().to_string())?;
    h.insert_header("x-cache-status", "BYPASS")?;
    for (k, v) in extra {
        h.insert_header(k, v.as_str())?;
    }
    let close = answer.closes();
    if close {
        // An unwanted body is not worth keeping the connection for.
        session.close_after();
    }
    session.send_header(Box::new(h), false).await?;
    session.send_body(Some(Bytes::from(body)), true).await?;
    if close {
        // Lingering close (as nginx): read and discard what the client is
        // still sending, for a bounded time, so that it gets to read the
        // answer instead of a reset on a write into a closed socket.
        let _ = tokio::time::timeout(LINGER, session.drain_body()).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `purge_answers_are_valid_json`. Purge answers
    /// interpolated the query text, so `path=a"b` made invalid JSON.
    #[test]
    fn purge_answers_are_valid_json() {
        for a in [
            EdgeAnswer::PurgedPath {
                path: "/a\"b\\c".into(),
            },
            EdgeAnswer::PurgeUnknownZone("x\"}".into()),
            EdgeAnswer::PurgedZone {
                zone: "api".into(),
                entries: 3,
            },
            EdgeAnswer::RateLimited { retry_after: 2 },
            EdgeAnswer::TooLarge { limit: 1024 },
        ] {
            let v: serde_json::Value = serde_json::from_str(&a.body()).expect("valid JSON");
            assert!(v.is_object());
        }
        let v: serde_json::Value = serde_json::from_str(
            &EdgeAnswer::PurgedPath {
                path: "/a\"b".into(),
            }
            .body(),
        )
        .unwrap();
        assert_eq!(v["path"], "/a\"b");
    }
}
