//! Per-request state of the edge, and the facts read once from a request
//! head (negotiated encoding, correlation id).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;
use http::header::ACCEPT_ENCODING;
use once_cell::sync::Lazy;
use pingora_error::Result;

use mcpgate_cache_zones::Zone;

use crate::config::EdgeConfig;
use crate::downstream::Downstream;
use crate::encoding::{Encoding, negotiate};
use crate::limits::ConnGuard;
use crate::metrics::InFlight;
use crate::routes::RouteClass;

pub(crate) use crate::forwarding::X_CORRELATION_ID;

/// Per-request state.
pub struct Ctx {
    pub(crate) start: Instant,
    pub(crate) class: RouteClass,
    pub(crate) encoding: Encoding,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) correlation_id: HeaderValue,
    pub(crate) scope: Option<String>,
    pub(crate) zone: Option<&'static Zone>,
    /// The lookup found an expired entry (nginx's EXPIRED when the refresh
    /// answer is not stored).
    pub(crate) found_expired: bool,
    pub(crate) status: u16,
    pub(crate) conn: Option<ConnGuard>,
    pub(crate) _inflight: InFlight,
    pub(crate) config: Arc<EdgeConfig>,
}

impl Ctx {
    pub(crate) fn new(inflight: InFlight, config: Arc<EdgeConfig>) -> Ctx {
        Ctx {
            _inflight: inflight,
            start: Instant::now(),
            class: RouteClass::Bypass,
            encoding: Encoding::Identity,
            client_ip: None,
            correlation_id: HeaderValue::from_static(""),
            scope: None,
            zone: None,
            found_expired: false,
            status: 0,
            conn: None,
            config,
        }
    }
}

/// Facts read once from the request head: the encoding negotiated (the
/// request's Accept-Encoding is reduced to it) and the correlation id.
pub(crate) fn prepare<D: Downstream>(session: &mut D, ctx: &mut Ctx) -> Result<()> {
    let headers = &session.request().headers;
    ctx.encoding = negotiate(headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
    ctx.correlation_id = headers
        .get(X_CORRELATION_ID)
        .filter(|v| {
            let v = v.as_bytes();
            !v.is_empty() && v.len() <= 128 && v.iter().all(u8::is_ascii_graphic)
        })
        .cloned()
        .unwrap_or_else(new_correlation_id);
    session.reduce_accept_encoding(ctx.encoding)
}

/// A unique request id without a system call: a random per-process prefix
/// and a counter (in hex).
fn new_correlation_id() -> HeaderValue {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: Lazy<String> =
        Lazy::new(|| uuid::Uuid::new_v4().simple().to_string()[..16].to_owned());
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    let mut id = String::with_capacity(PREFIX.len() + 1 + 16);
    id.push_str(&PREFIX);
    id.push('-');
    for i in (0..digits).rev() {
        id.push(char::from(
            b"0123456789abcdef"[((n >> (i * 4)) & 0xf) as usize],
        ));
    }
    HeaderValue::try_from(id).expect("hex digits are a valid header value")
}
