//! Two lanes through the edge, chosen per request from its request line.
//!
//! A write (POST, PUT, PATCH, DELETE) can never be answered from a cache:
//! it is read and answered on Pingora's bare HTTP/1 session and handed to
//! the application in-process, with the same classification, limits,
//! forwarding headers, compression and metrics as on the proxy. Everything
//! else (reads that may be cached, WebSocket upgrades, the purge endpoint)
//! goes through Pingora's proxy state machine. Why: that machine costs
//! about 5 µs per request before any work is done (measured on this
//! project's load test: 16 µs of CPU to answer a fixed body from
//! `request_filter` against 11 µs on the bare session), which is a third of
//! the cost of a whole MCP call through the edge.
//!
//! The lane is decided before the head is parsed, by looking at the bytes
//! read ahead; the parser then reads those same bytes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp};
use pingora_core::protocols::Stream;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_error::{ErrorSource, ErrorType};
use pingora_proxy::{HttpProxy, ProxyHttp};

use crate::app::EdgeApp;
use crate::downstream::Direct;
use crate::edge::{EdgeProxy, prepare};
use crate::percore::{Buffered, Front};

/// How long a connection may wait for (the first bytes of) its next
/// request; Pingora's own default for idle keep-alive connections.
const KEEPALIVE_SECS: u64 = 60;

pub(crate) struct EdgeFront<A: EdgeApp> {
    pub proxy: Arc<HttpProxy<EdgeProxy<A>>>,
    pub edge: EdgeProxy<A>,
}

/// Whether the request starting with `head` takes the direct lane: a write
/// in origin form, other than the purge endpoint. Anything unusual or not
/// yet readable takes the proxy, which handles every case.
fn takes_direct_lane(head: &[u8]) -> bool {
    let mut parts = head.splitn(3, |b| *b == b' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return false;
    };
    matches!(method, b"POST" | b"PUT" | b"PATCH" | b"DELETE")
        && target.starts_with(b"/")
        && !target.starts_with(b"/edge/purge")
}

type Reused = (Stream, Option<HttpPersistentSettings>);

impl<A: EdgeApp> EdgeFront<A> {
    /// Serves one request on the direct lane; the connection back when it
    /// may carry another.
    async fn direct(&self, mut session: ServerSession) -> Option<Reused> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                if matches!(e.etype, ErrorType::InvalidHTTPHeader) {
                    let _ = session.respond_error(400).await;
                }
                session.shutdown().await;
                return None;
            }
        }
        let edge = &self.edge;
        let mut ctx = edge.new_ctx();
        let mut d = Direct::new(session);
        let served = async {
            prepare(d.session.req_header_mut(), &mut ctx)?;
            if !edge.admit(&mut d, &mut ctx).await? {
                edge.serve_in_process(&mut d, &mut ctx).await?;
            }
            Ok::<_, Box<pingora_error::Error>>(())
        }
        .await;
        let answered = d.session.response_written().map(|r| r.status.as_u16());
        if let Err(e) = served {
            // As the proxy does: an error status when nothing was sent yet,
            // then the connection closes.
            let status = match e.etype {
                ErrorType::HTTPStatus(code) => code,
                _ if matches!(e.esource, ErrorSource::Downstream) => 400,
                _ => 500,
            };
            tracing::debug!(error = %e, "edge request failed");
            if answered.is_none() {
                let _ = d.session.respond_error(status).await;
            }
            edge.record(&ctx, answered.unwrap_or(status));
            d.session.shutdown().await;
            return None;
        }
        let status = match ctx.status {
            0 => answered.unwrap_or(0),
            s => s,
        };
        edge.record(&ctx, status);
        let settings = HttpPersistentSettings::for_session(&d.session);
        match d.session.finish().await {
            Ok(Some(reusable)) => Some((reusable.into_parts().0, Some(settings))),
            _ => None,
        }
    }
}

#[async_trait]
impl<A: EdgeApp> Front for EdgeFront<A> {
    async fn serve(self: Arc<Self>, stream: Buffered, shutdown: ShutdownWatch) {
        let mut stream = Box::new(stream);
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            // The next request is usually there already: only a connection
            // that has to wait watches for a stop (a waiter per request
            // costs measurable time).
            let ready = stream
                .read_ahead()
                .now_or_never()
                .map(|head| head.map(takes_direct_lane));
            let direct = match ready {
                Some(Ok(direct)) => direct,
                Some(Err(_)) => return,
                None => {
                    // A new connection's first request is served even when a
                    // stop comes in meanwhile (it was accepted before the
                    // stop); an idle keep-alive connection just closes.
                    let mut stop = shutdown.clone();
                    let stopped = async move {
                        if first {
                            std::future::pending::<()>().await;
                        }
                        let _ = stop.wait_for(|stop| *stop).await;
                    };
                    tokio::select! {
                        head = tokio::time::timeout(
                            Duration::from_secs(KEEPALIVE_SECS),
                            stream.read_ahead(),
                        ) => match head {
                            Ok(Ok(head)) => takes_direct_lane(head),
                            // Failed or idle for too long.
                            _ => return,
                        },
                        _ = stopped => return,
                    }
                }
            };
            if stream.at_end() {
                return;
            }
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => session.set_keepalive(Some(KEEPALIVE_SECS)),
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let reused = if direct {
                self.direct(session).await
            } else {
                self.proxy
                    .process_new_http(session, &shutdown)
                    .await
                    .map(|r| r.consume())
            };
            let Some((next, next_settings)) = reused else {
                return;
            };
            let Ok(next) = next.into_any().downcast::<Buffered>() else {
                return;
            };
            stream = next;
            settings = next_settings;
            first = false;
        }
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::takes_direct_lane;

    #[test]
    fn writes_take_the_direct_lane_and_everything_else_the_proxy() {
        for head in [
            &b"POST /rpc HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"PUT /v1/tools/1 HTTP/1.1\r\n",
            b"PATCH /v1/tools/1 HTTP/1.1\r\n",
            b"DELETE /v1/tools/1 HTTP/1.1\r\n",
            b"POST /servers/x/mcp HTTP/1.1\r\n",
        ] {
            assert!(takes_direct_lane(head), "{}", String::from_utf8_lossy(head));
        }
        for head in [
            &b"GET /v1/tools HTTP/1.1\r\n"[..],
            b"HEAD /v1/tools HTTP/1.1\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n",
            b"POST /edge/purge?zone=api HTTP/1.1\r\n",
            b"POST http://a/rpc HTTP/1.1\r\n",
            b"POS",
            b"POST",
            b"post /rpc HTTP/1.1\r\n",
            b"",
        ] {
            assert!(
                !takes_direct_lane(head),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
