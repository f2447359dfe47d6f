//! The headers the application learns the client from (`X-Real-IP`,
//! `X-Forwarded-*`, `X-Correlation-ID`), set by the edge so that a client
//! cannot speak for it.

use std::net::IpAddr;

use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora_error::{Error, Result};

use crate::config::EdgeConfig;
use crate::context::Ctx;

pub(crate) const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The client's address: the socket peer, or `X-Forwarded-For` when the
/// peer is a trusted proxy (the rightmost untrusted hop).
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    config: &EdgeConfig,
) -> Option<IpAddr> {
    let peer = peer?;
    let trusted = |ip: &IpAddr| config.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    let xff = headers
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let hops: Vec<IpAddr> = xff
        .split(',')
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    Some(
        hops.into_iter()
            .rev()
            .find(|ip| !trusted(ip))
            .unwrap_or(peer),
    )
}

/// The text of a client address, formatted once per thread for as long as
/// the same client keeps coming (formatting costs more than the rest of the
/// forwarding headers together).
fn ip_text(ip: IpAddr) -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((seen, text)) if *seen == ip => text.clone(),
        _ => {
            let text = HeaderValue::from_str(&ip.to_string())
                .expect("an IP address is a valid header value");
            *last = Some((ip, text.clone()));
            text
        }
    })
}

/// The headers the application learns the client from, read from the
/// request's `headers` (`None`: the header must go, so that a client cannot
/// speak for the edge).
pub(crate) fn forwarded_headers(
    headers: &HeaderMap,
    ctx: &Ctx,
) -> Result<[(HeaderName, Option<HeaderValue>); 5]> {
    let (real, xff) = match ctx.client_ip {
        Some(ip) => {
            let text = ip_text(ip);
            let xff = match headers.get(X_FORWARDED_FOR).map(|v| v.as_bytes()) {
                Some(prev) => {
                    let mut v = Vec::with_capacity(prev.len() + 2 + text.len());
                    v.extend_from_slice(prev);
                    v.extend_from_slice(b", ");
                    v.extend_from_slice(text.as_bytes());
                    HeaderValue::from_bytes(&v).map_err(|e| {
                        Error::because(
                            pingora_error::ErrorType::InvalidHTTPHeader,
                            "forwarded header",
                            e,
                        )
                    })?
                }
                None => text.clone(),
            };
            (Some(text), Some(xff))
        }
        None => (None, None),
    };
    Ok([
        (X_CORRELATION_ID, Some(ctx.correlation_id.clone())),
        (X_FORWARDED_PROTO, Some(HeaderValue::from_static("http"))),
        (X_REAL_IP, real),
        (X_FORWARDED_FOR, xff),
        (X_FORWARDED_HOST, headers.get(HOST).cloned()),
    ])
}
