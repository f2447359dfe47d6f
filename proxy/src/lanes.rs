//! Two lanes through the edge, chosen per request from its head.
//!
//! Plain writes are read and answered by the direct lane ([`crate::direct`])
//! and handed to the application in-process; everything else (reads that
//! may be cached, WebSocket upgrades, the purge endpoint, unusual framing)
//! goes through Pingora's proxy state machine. One keep-alive connection
//! moves between the lanes from one request to the next.
//!
//! The lane is decided from the bytes read ahead; the proxy's parser then
//! reads those same bytes.

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
use tokio::io::AsyncWriteExt;

use crate::app::EdgeApp;
use crate::context::prepare;
use crate::direct::{DirectSession, Plan, plan};
use crate::edge::EdgeProxy;
use crate::percore::{Buffered, Front};

/// How long a connection may wait for (the first bytes of) its next
/// request; Pingora's own default for idle keep-alive connections.
const KEEPALIVE_SECS: u64 = 60;

pub(crate) struct EdgeFront<A: EdgeApp> {
    pub proxy: Arc<HttpProxy<EdgeProxy<A>>>,
    pub edge: EdgeProxy<A>,
}

type Reused = (Stream, Option<HttpPersistentSettings>);

impl<A: EdgeApp> EdgeFront<A> {
    /// Serves one request on the direct lane; whether the connection may
    /// carry another.
    async fn direct(&self, stream: &mut Buffered, plan: Plan, closing: bool) -> bool {
        let edge = &self.edge;
        let mut ctx = edge.new_ctx();
        let mut d = DirectSession::new(stream, plan, closing);
        let served = async {
            d.check_head()?;
            prepare(&mut d, &mut ctx)?;
            if !edge.admit(&mut d, &mut ctx).await? {
                edge.serve_in_process(&mut d, &mut ctx).await?;
            }
            Ok::<_, Box<pingora_error::Error>>(())
        }
        .await;
        if let Err(e) = served {
            // As the proxy does: an error status when nothing was sent yet
            // and the client is still there (0: it is not), then the
            // connection closes.
            let status = match (&e.etype, &e.esource) {
                (ErrorType::HTTPStatus(code), _) => *code,
                (
                    ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
                    ErrorSource::Downstream,
                ) => 0,
                (_, ErrorSource::Downstream) => 400,
                (_, ErrorSource::Upstream) => 502,
                _ => 500,
            };
            tracing::debug!(error = %e, "edge request failed");
            let answered = d.status;
            if answered.is_none() && status != 0 {
                d.respond_error(status).await;
            }
            edge.record(&ctx, answered.unwrap_or(status));
            return false;
        }
        let status = match ctx.status {
            0 => d.status.unwrap_or(0),
            s => s,
        };
        edge.record(&ctx, status);
        d.reusable()
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
                .map(|head| head.map(plan));
            let planned = match ready {
                Some(Ok(planned)) => planned,
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
                            Ok(Ok(head)) => plan(head),
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
            if let Some(plan) = planned {
                let closing = *shutdown.borrow();
                if !self.direct(&mut stream, plan, closing).await {
                    let _ = AsyncWriteExt::shutdown(&mut *stream).await;
                    return;
                }
                settings = None;
                first = false;
                continue;
            }
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => session.set_keepalive(Some(KEEPALIVE_SECS)),
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let reused: Option<Reused> = self
                .proxy
                .process_new_http(session, &shutdown)
                .await
                .map(|r| r.consume());
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
