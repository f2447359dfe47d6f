//! The client side of a request, whichever lane serves it: the proxy's
//! session (cacheable requests, upgrades, purges; Pingora's modules
//! compress) or a bare HTTP/1 session (requests that never touch a cache;
//! compressed here). The code that answers and hands requests to the
//! application is written once against this trait.

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::modules::http::compression::ResponseCompression;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::http::compression::{Algorithm, ResponseCompressionCtx};
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::config::Compression;
use crate::encoding::Encoding;

#[async_trait]
pub(crate) trait Downstream: Send {
    fn http(&self) -> &ServerSession;
    fn http_mut(&mut self) -> &mut ServerSession;
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

#[async_trait]
impl Downstream for Session {
    fn http(&self) -> &ServerSession {
        self.as_downstream()
    }

    fn http_mut(&mut self) -> &mut ServerSession {
        self.as_downstream_mut()
    }

    async fn send_header(&mut self, header: Box<ResponseHeader>, end: bool) -> Result<()> {
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

/// A request served without the proxy's state machine.
pub(crate) struct Direct {
    pub session: ServerSession,
    /// Built only for a response that is compressed.
    compression: Option<ResponseCompressionCtx>,
}

impl Direct {
    pub fn new(session: ServerSession) -> Self {
        Direct {
            session,
            compression: None,
        }
    }
}

#[async_trait]
impl Downstream for Direct {
    fn http(&self) -> &ServerSession {
        &self.session
    }

    fn http_mut(&mut self) -> &mut ServerSession {
        &mut self.session
    }

    async fn send_header(&mut self, mut header: Box<ResponseHeader>, end: bool) -> Result<()> {
        if let Some(c) = &mut self.compression {
            c.response_header_filter(&mut header, end);
        }
        self.session.write_response_header(header).await
    }

    async fn send_body(&mut self, mut body: Option<Bytes>, end: bool) -> Result<()> {
        if let Some(c) = &mut self.compression
            && c.is_enabled()
            && let Some(compressed) = c.response_body_filter(body.as_ref(), end)
        {
            body = Some(compressed);
        }
        if body.is_none() && !end {
            return Ok(());
        }
        self.session
            .write_response_body(body.unwrap_or_default(), end)
            .await
    }

    fn compress(&mut self, config: &Compression, encoding: Encoding, on: bool) {
        self.compression = chosen(config, encoding, on).map(|(algorithm, level)| {
            let mut c = ResponseCompressionCtx::new(0, false, false);
            c.adjust_algorithm_level(algorithm, level);
            // Reads Accept-Encoding, already reduced to our one choice.
            c.request_filter(self.session.req_header());
            c
        });
    }
}
