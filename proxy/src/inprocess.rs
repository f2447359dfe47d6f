//! The hand-over: a request the edge does not answer from cache is given
//! to the application in-process (no network hop), and its answer streamed
//! back, compressed when asked and worth it.

use bytes::Bytes;
use http::HeaderValue;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http_body_util::BodyExt;
use pingora_error::{Error, Result};
use pingora_http::ResponseHeader;

use crate::answers::{EdgeAnswer, send};
use crate::app::{EdgeApp, EdgeBody};
use crate::context::{Ctx, X_CORRELATION_ID};
use crate::downstream::{Downstream, bodiless, content_length};
use crate::edge::{EdgeProxy, X_CACHE_STATUS};
use crate::forwarding::forwarded_headers;

impl<A: EdgeApp> EdgeProxy<A> {
    /// Hands the request to the application and streams its answer back.
    pub(crate) async fn serve_in_process<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let config = ctx.config.clone();
        // A declared length over the limit is refused before reading a byte.
        let declared = content_length(&session.request().headers);
        if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
            return send(
                session,
                ctx,
                EdgeAnswer::TooLarge {
                    limit: config.max_body_bytes,
                },
            )
            .await;
        }
        // One chunk (the usual case) is handed over as is, without a copy.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total = 0;
        while let Some(chunk) = session.read_body().await? {
            total += chunk.len();
            if total > config.max_body_bytes {
                return send(
                    session,
                    ctx,
                    EdgeAnswer::TooLarge {
                        limit: config.max_body_bytes,
                    },
                )
                .await;
            }
            chunks.push(chunk);
        }
        let body = match chunks.len() {
            1 => chunks.pop().unwrap_or_default(),
            _ => Bytes::from(chunks.concat()),
        };
        if session.request().method == http::Method::POST
            && let Some(zone) = config.post_zone.as_ref().and_then(|z| self.zones.get(z))
            && let Some(plan) = self.app.cacheable_post(session.request(), &body).await
        {
            return self
                .serve_cacheable_post(session, ctx, zone, plan, body)
                .await;
        }
        let response = self.hand_over(session, ctx, body).await?;
        self.answer(session, ctx, response, "BYPASS").await
    }

    /// The request, with the edge's forwarding headers, to the application.
    pub(crate) async fn hand_over<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &Ctx,
        body: Bytes,
    ) -> Result<http::Response<EdgeBody>> {
        let mut parts = session.take_request();
        for (k, v) in forwarded_headers(&parts.headers, ctx)? {
            match v {
                Some(v) => parts.headers.insert(k, v),
                None => parts.headers.remove(k),
            };
        }
        let request = http::Request::from_parts(parts, body);
        Ok(self.app.call(request).await)
    }

    /// Streams the application's answer to the client, marked with
    /// `cache_status`, compressed when asked and worth it.
    pub(crate) async fn answer<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        response: http::Response<EdgeBody>,
        cache_status: &'static str,
    ) -> Result<()> {
        let config = ctx.config.clone();
        let method = session.request().method.clone();
        let (mut parts, mut body) = response.into_parts();
        ctx.status = parts.status.as_u16();
        let is_stream = parts
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let mut length = content_length(&parts.headers);
        if length.is_none()
            && method != http::Method::HEAD
            && !bodiless(parts.status)
            && !parts.headers.contains_key(TRANSFER_ENCODING)
            && let Some(n) = http_body::Body::size_hint(&body).exact()
        {
            // A body that knows its size is sent with it (as hyper does),
            // not chunked.
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            length = Some(n);
        }
        parts
            .headers
            .insert(X_CACHE_STATUS, HeaderValue::from_static(cache_status));
        parts
            .headers
            .insert(X_CORRELATION_ID, ctx.correlation_id.clone());
        // The application's header moves over whole, without a copy.
        let header = ResponseHeader::from(parts);
        let small = length.is_some_and(|l| l < config.compression.minimum_size as u64);
        session.compress(&config.compression, ctx.encoding, !is_stream && !small);
        session.send_header(Box::new(header), false).await?;
        loop {
            let frame = if is_stream {
                match tokio::time::timeout(config.stream_timeout, body.frame()).await {
                    Ok(f) => f,
                    Err(_) => break,
                }
            } else {
                body.frame().await
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        // A body that knows it is done (the usual whole JSON
                        // answer) ends with its data: one pass through the
                        // writer instead of two.
                        let last = http_body::Body::is_end_stream(&body);
                        if let Err(e) = session.send_body(Some(data), last).await {
                            return client_left(&e);
                        }
                        if last {
                            return Ok(());
                        }
                    }
                }
                Some(Err(e)) => {
                    // The answer is cut short: closing without ending the
                    // body tells the client so (as hyper does on :4444).
                    tracing::warn!(error = %e, "in-process response body failed");
                    return Err(Error::explain(
                        pingora_error::ErrorType::ReadError,
                        "in-process response body failed",
                    ));
                }
                None => break,
            }
        }
        match session.send_body(None, true).await {
            Err(e) => client_left(&e),
            Ok(()) => Ok(()),
        }
    }
}

/// Writing the answer failed: the client went away (a reader closing its
/// SSE stream is routine), so the request ends quietly, as answered, rather
/// than as an edge error with a 500.
fn client_left(e: &Error) -> Result<()> {
    tracing::debug!(error = %e, "client left while its answer was being sent");
    Ok(())
}
