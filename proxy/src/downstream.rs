//! The client side of a request, whichever lane serves it: the proxy's
//! session (cacheable requests, upgrades, purges, anything unusual;
//! Pingora's modules compress) or the direct lane's own HTTP/1 framing
//! (plain writes; compressed here). The code that admits requests, answers
//! them and hands them to the application is written once against this
//! trait.

use std::net::IpAddr;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora_core::modules::http::compression::ResponseCompression;
use pingora_core::protocols::http::compression::Algorithm;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::config::Compression;
use crate::encoding::Encoding;

#[async_trait]
pub(crate) trait Downstream: Send {
    /// The request head as the client sent it (with `Accept-Encoding`
    /// reduced by [`Self::reduce_accept_encoding`]).
    fn request(&self) -> &http::request::Parts;
    /// The address of the connection's peer.
    fn peer(&self) -> Option<IpAddr>;
    /// Replaces `Accept-Encoding` with the one encoding chosen (none for
    /// identity): the compressors pick the first token they support and
    /// ignore q-values.
    fn reduce_accept_encoding(&mut self, encoding: Encoding) -> Result<()>;
    /// The request head for the application: a copy, or the head itself
    /// when the lane needs no more than its method, target and version.
    fn take_request(&mut self) -> http::request::Parts;
    /// The next piece of the request body; `None` at its end.
    async fn read_body(&mut self) -> Result<Option<Bytes>>;
    /// Reads and discards the rest of the request body.
    async fn drain_body(&mut self);
    /// The connection closes after this response.
    fn close_after(&mut self);
    /// Writes the response header, through the compressor when one is on.
    async fn send_header(&mut self, header: Box<ResponseHeader>, end: bool) -> Result<()>;
    /// Writes body bytes (`None` with `end`: the body is over).
    async fn send_body(&mut self, body: Option<Bytes>, end: bool) -> Result<()>;
    /// Compresses this response with `encoding` when `on` (and compression
    /// is enabled), or not at all.
    fn compress(&mut self, config: &Compression, encoding: Encoding, on: bool);
}

/// The algorithm and level for `encoding`, when it is to be compressed.
pub(crate) fn chosen(
    config: &Compression,
    encoding: Encoding,
    on: bool,
) -> Option<(Algorithm, u32)> {
    if !on || !config.enabled {
        return None;
    }
    match encoding {
        Encoding::Brotli => Some((Algorithm::Brotli, config.brotli_quality)),
        Encoding::Zstd => Some((Algorithm::Zstd, config.zstd_level)),
        Encoding::Gzip => Some((Algorithm::Gzip, config.gzip_level)),
        Encoding::Identity => None,
    }
}

/// The `Accept-Encoding` value that stands for `encoding` alone.
pub(crate) fn accept_encoding(encoding: Encoding) -> Option<HeaderValue> {
    match encoding {
        Encoding::Identity => None,
        e => Some(HeaderValue::from_static(e.token())),
    }
}

/// A `Content-Length` value: digits only (no sign, no list), as RFC 9110
/// has it; anything else is not a length.
pub(crate) fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The `Content-Length` of a message, when it has a valid one.
pub(crate) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    parse_length(headers.get(CONTENT_LENGTH)?.as_bytes())
}

/// Statuses whose answers never have a body.
pub(crate) fn bodiless(status: http::StatusCode) -> bool {
    status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
}

/// A request head with `req`'s method, target and version and `headers`.
pub(crate) fn request_parts(
    req: &http::request::Parts,
    headers: http::HeaderMap,
) -> http::request::Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = req.method.clone();
    parts.uri = req.uri.clone();
    parts.version = req.version;
    parts.headers = headers;
    parts
}

#[async_trait]
impl Downstream for Session {
    fn request(&self) -> &http::request::Parts {
        self.req_header()
    }

    fn peer(&self) -> Option<IpAddr> {
        self.as_downstream()
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
    }

    fn reduce_accept_encoding(&mut self, encoding: Encoding) -> Result<()> {
        let req = self.req_header_mut();
        match accept_encoding(encoding) {
            None => {
                req.remove_header(&ACCEPT_ENCODING);
            }
            Some(v) => req.insert_header(ACCEPT_ENCODING, v)?,
        }
        Ok(())
    }

    fn take_request(&mut self) -> http::request::Parts {
        // The proxy keeps reading the head (cache, logging): hand over a copy.
        let req = self.req_header();
        request_parts(req, req.headers.clone())
    }

    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        self.as_downstream_mut().read_request_body().await
    }

    async fn drain_body(&mut self) {
        let _ = self.as_downstream_mut().drain_request_body().await;
    }

    fn close_after(&mut self) {
        self.as_downstream_mut().set_keepalive(None);
    }

    async fn send_header(&mut self, mut header: Box<ResponseHeader>, end: bool) -> Result<()> {
        // A body of unknown length is chunked in HTTP/1.1 (Pingora would
        // otherwise end it by closing the connection).
        if !end
            && !bodiless(header.status)
            && self.req_header().version == http::Version::HTTP_11
            && !header.headers.contains_key(CONTENT_LENGTH)
        {
            header.insert_header(TRANSFER_ENCODING, "chunked")?;
        }
        self.write_response_header(header, end).await
    }

    async fn send_body(&mut self, body: Option<Bytes>, end: bool) -> Result<()> {
        self.write_response_body(body, end).await
    }

    fn compress(&mut self, config: &Compression, encoding: Encoding, on: bool) {
        if let Some(m) = self.downstream_modules_ctx.get_mut::<ResponseCompression>() {
            m.adjust_level(0);
            if let Some((algorithm, level)) = chosen(config, encoding, on) {
                m.adjust_algorithm_level(algorithm, level);
            }
        }
    }
}
