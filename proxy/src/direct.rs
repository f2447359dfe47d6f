//! The direct lane: plain writes read and answered on the connection.
//!
//! A write (POST, PUT, PATCH, DELETE) can never be answered from a cache.
//! When its whole head is among the bytes read ahead, in HTTP/1.1, with its
//! body framed by a `Content-Length` (or without a body), it is parsed here
//! with `httparse`, handed to the application in-process and answered with
//! the same classification, limits, forwarding headers, compression and
//! metrics as on the proxy. Anything else (reads, upgrades, purges, chunked
//! or `Expect` bodies, HTTP/1.0, heads split over several reads) takes the
//! proxy, which handles every case.
//!
//! Why not Pingora's session: measured with callgrind on this project's load
//! test (`POST /rpc tools/list`), Pingora's HTTP/1 session costs ~37,000
//! instructions per request around the application, against ~13,000 for
//! hyper on the application's own port; most of it is the head parse into
//! Pingora's case-preserving header maps and the response head
//! serialization. The edge's writes then ran at 0.8× the direct port. This
//! lane parses into an `http::HeaderMap` that moves to the application
//! without a copy (header values are slices of the bytes read).

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{
    ACCEPT_ENCODING, CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderName, HeaderValue, Method, Uri, Version};
use pingora_core::protocols::http::compression::ResponseCompressionCtx;
use pingora_core::protocols::http::date::get_cached_date;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Compression;
use crate::downstream::{
    Downstream, accept_encoding, bodiless, chosen, content_length, parse_length, request_parts,
};
use crate::encoding::Encoding;
use crate::percore::Buffered;

/// More headers than this take the proxy lane.
const MAX_HEADERS: usize = 64;

/// How long a request body may take to arrive once its head has.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// A body still on its way is read in steps of at most this much.
const READ_CHUNK: usize = 64 * 1024;

/// A request the direct lane serves, found in the bytes read ahead: where
/// its parts are in those bytes.
#[derive(Debug)]
pub(crate) struct Plan {
    head_len: usize,
    method: Method,
    target: Range<usize>,
    headers: Vec<(HeaderName, Range<usize>)>,
    body_len: usize,
    close: bool,
}

/// The request at the start of `buf`, when the direct lane may serve it.
pub(crate) fn plan(buf: &[u8]) -> Option<Plan> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let httparse::Status::Complete(head_len) = req.parse(buf).ok()? else {
        return None;
    };
    if req.version != Some(1) {
        return None;
    }
    let method = match req.method? {
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        _ => return None,
    };
    let path = req.path?;
    if !path.starts_with('/') || crate::purge::is_purge(path) {
        return None;
    }
    // httparse hands out slices of `buf`: keep their places instead.
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    let mut body_len = None;
    let mut close = false;
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == CONTENT_LENGTH {
            // Two lengths (request smuggling) or a malformed one: the proxy
            // refuses those.
            if body_len.is_some() {
                return None;
            }
            body_len = Some(usize::try_from(parse_length(h.value)?).ok()?);
        } else if name == TRANSFER_ENCODING || name == EXPECT || name == UPGRADE {
            return None;
        } else if name == CONNECTION {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return None;
                }
            }
        }
        headers.push((name, at(h.value)));
    }
    Some(Plan {
        head_len,
        method,
        target: at(path.as_bytes()),
        headers,
        body_len: body_len.unwrap_or(0),
        close,
    })
}

impl Plan {
    /// The request head, over `head` (the bytes the plan was made from).
    fn into_parts(self, head: &Bytes) -> Result<http::request::Parts> {
        fn bad(e: impl std::error::Error + Send + Sync + 'static) -> Box<Error> {
            Error::because(ErrorType::InvalidHTTPHeader, "request head", e)
        }
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = self.method;
        parts.uri = Uri::from_maybe_shared(head.slice(self.target)).map_err(bad)?;
        parts.version = Version::HTTP_11;
        // Room for the forwarding headers the edge adds.
        parts.headers.reserve(self.headers.len() + 6);
        for (name, value) in self.headers {
            let value = HeaderValue::from_maybe_shared(head.slice(value)).map_err(bad)?;
            parts.headers.append(name, value);
        }
        Ok(parts)
    }
}

enum Framing {
    /// Nothing sent yet.
    Unsent,
    /// A body of a declared length: how much of it is still to come.
    Plain(u64),
    Chunked,
    /// The response is complete.
    Done,
}

/// One request on the direct lane.
pub(crate) struct DirectSession<'a> {
    stream: &'a mut Buffered,
    req: http::request::Parts,
    /// Why the head is not a request, when it is not.
    invalid: Option<Box<Error>>,
    body_left: usize,
    keepalive: bool,
    framing: Framing,
    /// The status written, once it is.
    pub status: Option<u16>,
    /// Built only for a response that is compressed.
    compression: Option<ResponseCompressionCtx>,
}

impl<'a> DirectSession<'a> {
    /// Takes the planned request's head from the bytes read ahead.
    pub fn new(stream: &'a mut Buffered, plan: Plan, closing: bool) -> Self {
        let head = stream.take_ahead(plan.head_len);
        let (body_left, keepalive) = (plan.body_len, !plan.close && !closing);
        let (req, invalid) = match plan.into_parts(&head) {
            Ok(req) => (req, None),
            Err(e) => (http::Request::new(()).into_parts().0, Some(e.into_down())),
        };
        DirectSession {
            stream,
            req,
            invalid,
            body_left,
            keepalive,
            framing: Framing::Unsent,
            status: None,
            compression: None,
        }
    }

    /// Fails for a head httparse took but `http` does not (an odd target):
    /// such a request is answered 400 like any other that fails.
    pub fn check_head(&mut self) -> Result<()> {
        self.invalid.take().map_or(Ok(()), Err)
    }

    /// Whether the connection may carry another request.
    pub fn reusable(&self) -> bool {
        self.keepalive && self.body_left == 0 && matches!(self.framing, Framing::Done)
    }

    /// Answers a failed request that got no answer yet; the connection
    /// closes.
    pub async fn respond_error(&mut self, status: u16) {
        self.keepalive = false;
        self.compression = None;
        let Ok(mut h) = ResponseHeader::build(status, Some(1)) else {
            return;
        };
        if h.insert_header(CONTENT_LENGTH, "0").is_ok() {
            let _ = self.send_header(Box::new(h), true).await;
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await.map_err(write_failed)
    }

    async fn flush(&mut self) -> Result<()> {
        self.stream.flush().await.map_err(write_failed)
    }
}

fn write_failed(e: std::io::Error) -> Box<Error> {
    Error::because(ErrorType::WriteError, "writing the response", e).into_down()
}

#[async_trait]
impl Downstream for DirectSession<'_> {
    fn request(&self) -> &http::request::Parts {
        &self.req
    }

    fn peer(&self) -> Option<IpAddr> {
        Some(self.stream.peer.ip())
    }

    fn reduce_accept_encoding(&mut self, encoding: Encoding) -> Result<()> {
        match accept_encoding(encoding) {
            None => {
                self.req.headers.remove(ACCEPT_ENCODING);
            }
            Some(v) => {
                self.req.headers.insert(ACCEPT_ENCODING, v);
            }
        }
        Ok(())
    }

    fn take_request(&mut self) -> http::request::Parts {
        // Only the method, target and version are read after this.
        let headers = std::mem::take(&mut self.req.headers);
        request_parts(&self.req, headers)
    }

    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        let want = self.body_left;
        if want == 0 {
            return Ok(None);
        }
        let have = self.stream.ahead_len();
        if have >= want {
            self.body_left = 0;
            return Ok(Some(self.stream.take_ahead(want)));
        }
        // The rest is still on its way: gather it in one buffer, grown as
        // bytes arrive (a declared length reserves nothing by itself).
        let mut body = BytesMut::with_capacity(want.min(READ_CHUNK));
        body.extend_from_slice(&self.stream.take_ahead(have));
        let stream = &mut *self.stream;
        let read_all = async {
            while body.len() < want {
                let room = want - body.len();
                body.reserve(room.min(READ_CHUNK));
                match stream.read_buf(&mut (&mut body).limit(room)).await {
                    Ok(0) => {
                        return Error::e_explain(
                            ErrorType::ConnectionClosed,
                            "client closed mid-body",
                        );
                    }
                    Ok(_) => {}
                    Err(e) => return Err(Error::because(ErrorType::ReadError, "request body", e)),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(BODY_TIMEOUT, read_all).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into_down()),
            Err(_) => {
                return Error::e_explain(ErrorType::ReadTimedout, "request body")
                    .map_err(|e| e.into_down());
            }
        }
        self.body_left = 0;
        Ok(Some(body.freeze()))
    }

    async fn drain_body(&mut self) {
        let mut scratch = [0u8; 8192];
        while self.body_left > 0 {
            let have = self.stream.ahead_len();
            if have > 0 {
                let n = have.min(self.body_left);
                self.stream.take_ahead(n);
                self.body_left -= n;
                continue;
            }
            let room = self.body_left.min(scratch.len());
            match self.stream.read(&mut scratch[..room]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => self.body_left -= n,
            }
        }
    }

    fn close_after(&mut self) {
        self.keepalive = false;
    }

    async fn send_header(&mut self, mut header: Box<ResponseHeader>, end: bool) -> Result<()> {
        if !matches!(self.framing, Framing::Unsent) {
            return Ok(());
        }
        if let Some(c) = &mut self.compression {
            c.response_header_filter(&mut header, end);
        }
        let status = header.status;
        let bodiless = end || bodiless(status);
        let declared = content_length(&header.headers);
        // As Pingora's session: a length that is not a number is dropped and
        // the body goes chunked.
        self.framing = match (bodiless, declared) {
            (true, _) => Framing::Done,
            (false, Some(n)) => Framing::Plain(n),
            (false, None) => Framing::Chunked,
        };
        let chunked = matches!(self.framing, Framing::Chunked);
        // Written here from the header map (names as the map holds them,
        // lowercase, as hyper writes them); date and connection as Pingora's
        // session sets them.
        let mut wire = Vec::with_capacity(256 + 64 * header.headers.len());
        wire.put_slice(b"HTTP/1.1 ");
        wire.put_slice(status.as_str().as_bytes());
        wire.put_u8(b' ');
        if let Some(reason) = header.get_reason_phrase() {
            wire.put_slice(reason.as_bytes());
        }
        wire.put_slice(b"\r\n");
        for (name, value) in header.headers.iter() {
            if name == TRANSFER_ENCODING
                || name == CONNECTION
                || name == DATE
                || (chunked && name == CONTENT_LENGTH)
            {
                continue;
            }
            wire.put_slice(name.as_str().as_bytes());
            wire.put_slice(b": ");
            wire.put_slice(value.as_bytes());
            wire.put_slice(b"\r\n");
        }
        if chunked {
            wire.put_slice(b"transfer-encoding: chunked\r\n");
        }
        wire.put_slice(b"date: ");
        wire.put_slice(get_cached_date().as_bytes());
        wire.put_slice(if self.keepalive {
            b"\r\nconnection: keep-alive\r\n\r\n".as_slice()
        } else {
            b"\r\nconnection: close\r\n\r\n".as_slice()
        });
        // The status counts as sent from here: a failed write is not
        // followed by another answer.
        self.status = Some(status.as_u16());
        self.write(&wire).await?;
        if bodiless {
            self.flush().await?;
        }
        Ok(())
    }

    async fn send_body(&mut self, mut body: Option<Bytes>, end: bool) -> Result<()> {
        if let Some(c) = &mut self.compression
            && c.is_enabled()
        {
            body = c.response_body_filter(body.as_ref(), end);
        }
        let data = body.filter(|b| !b.is_empty());
        match self.framing {
            Framing::Unsent => {
                debug_assert!(false, "a body before its header");
                return Ok(());
            }
            Framing::Done => return Ok(()),
            Framing::Plain(left) => {
                if let Some(data) = data {
                    // Never more than declared: the rest would be read as
                    // the start of the next answer.
                    let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.write(&data[..n]).await?;
                    self.framing = Framing::Plain(left - n as u64);
                }
                if end && !matches!(self.framing, Framing::Plain(0)) {
                    // Shorter than declared: only closing tells the client.
                    self.keepalive = false;
                }
            }
            Framing::Chunked => {
                if let Some(data) = &data {
                    self.write(format!("{:x}\r\n", data.len()).as_bytes())
                        .await?;
                    self.write(data).await?;
                    self.write(b"\r\n").await?;
                }
                if end {
                    self.write(b"0\r\n\r\n").await?;
                }
            }
        }
        if end {
            self.framing = Framing::Done;
        }
        // Each piece leaves now: a stream's events must not wait.
        self.flush().await
    }

    fn compress(&mut self, config: &Compression, encoding: Encoding, on: bool) {
        self.compression = chosen(config, encoding, on).and_then(|(algorithm, level)| {
            let mut c = ResponseCompressionCtx::new(0, false, false);
            c.adjust_algorithm_level(algorithm, level);
            // The compressor learns the one encoding chosen from a request
            // head of its own (the real one has moved to the application).
            let mut req = RequestHeader::build(Method::POST, b"/", Some(1)).ok()?;
            req.insert_header(ACCEPT_ENCODING, accept_encoding(encoding)?)
                .ok()?;
            c.request_filter(&req);
            Some(c)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn plain_writes_take_the_direct_lane() {
        let head =
            b"POST /rpc HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\n{}";
        let p = plan(head).expect("a plain POST");
        assert_eq!(p.head_len, head.len() - 2);
        assert_eq!(p.body_len, 2);
        assert!(!p.close);
        let bytes = bytes::Bytes::from_static(head);
        let parts = p.into_parts(&bytes).expect("valid head");
        assert_eq!(parts.method, http::Method::POST);
        assert_eq!(parts.uri, "/rpc");
        let a: Vec<_> = parts.headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(parts.headers["host"], "a");

        for head in [
            &b"PUT /v1/tools/1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n"[..],
            b"PATCH /v1/tools/1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"DELETE /v1/tools/1 HTTP/1.1\r\n\r\n",
            b"POST /servers/x/mcp?a=1 HTTP/1.1\r\nContent-Length: 10\r\n\r\n",
        ] {
            assert!(plan(head).is_some(), "{}", String::from_utf8_lossy(head));
        }
        let p = plan(b"DELETE /v1/tools/1 HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n")
            .expect("a DELETE");
        assert!(p.close);
        assert_eq!(p.body_len, 0);
    }

    #[test]
    fn everything_else_takes_the_proxy() {
        for head in [
            // Reads, upgrades and the purge endpoint.
            &b"GET /v1/tools HTTP/1.1\r\n\r\n"[..],
            b"HEAD /v1/tools HTTP/1.1\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"POST /ws HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            b"POST /edge/purge?zone=api HTTP/1.1\r\n\r\n",
            // Unusual framing.
            b"POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /rpc HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            b"POST /rpc HTTP/1.1\r\nContent-Length: +2\r\n\r\n",
            b"POST /rpc HTTP/1.1\r\nContent-Length: \r\n\r\n",
            b"POST /rpc HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST /rpc HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            b"POST /rpc HTTP/1.0\r\nContent-Length: 2\r\n\r\n",
            b"POST http://a/rpc HTTP/1.1\r\n\r\n",
            b"post /rpc HTTP/1.1\r\n\r\n",
            // Heads not read whole, or not HTTP.
            b"POST /rpc HTTP/1.1\r\nHost: a\r\n",
            b"POS",
            b"",
            b"\x16\x03\x01\x02\x00",
        ] {
            assert!(plan(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
        let mut many = b"POST /rpc HTTP/1.1\r\n".to_vec();
        for i in 0..=super::MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(plan(&many).is_none());
    }
}
