//! Admission: the route class, then the per-IP connection and rate limits
//! (nginx's `limit_conn` and `limit_req`), answered 429 when over.

use pingora_error::Result;

use crate::answers::{EdgeAnswer, send};
use crate::app::EdgeApp;
use crate::context::Ctx;
use crate::downstream::Downstream;
use crate::edge::EdgeProxy;
use crate::forwarding::client_ip;
use crate::routes::RouteClass;

impl<A: EdgeApp> EdgeProxy<A> {
    /// Classifies the request and applies the per-IP limits: `Ok(true)`
    /// when it was refused (answered 429).
    pub(crate) async fn admit<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
    ) -> Result<bool> {
        let config = ctx.config.clone();
        let req = session.request();
        ctx.class = config
            .routes
            .classify(&req.method, req.uri.path(), &req.headers);
        ctx.client_ip = client_ip(session.peer(), &req.headers, &config);
        if ctx.class == RouteClass::Health {
            return Ok(false);
        }
        let Some(ip) = ctx.client_ip else {
            return Ok(false);
        };
        let refusal = match self.conns.enter(ip, config.conn_limit) {
            Ok(g) => {
                ctx.conn = g;
                match self.rate.check(ip, config.rate, config.burst) {
                    Ok(()) => None,
                    Err(wait) => Some((
                        "rate",
                        EdgeAnswer::RateLimited {
                            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                        },
                    )),
                }
            }
            Err(_) => Some(("conn", EdgeAnswer::TooManyConnections)),
        };
        let Some((limit, answer)) = refusal else {
            return Ok(false);
        };
        self.metrics.rejected.with_label_values(&[limit]).inc();
        send(session, ctx, answer).await?;
        Ok(true)
    }

    /// Records a finished request.
    pub(crate) fn record(&self, ctx: &Ctx, status: u16) {
        self.metrics
            .observe(ctx.class, status, ctx.start.elapsed().as_secs_f64());
    }
}
