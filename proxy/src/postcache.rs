//! Answers to POSTs that the application calls cacheable (its reads over
//! POST: MCP `tools/list`, `resources/read`, ...). The application names the
//! key — its caller's authorization context in it, unless the answer is
//! shared — and the bytes of the answer that are the request's own (its
//! JSON-RPC id). The answer is kept without them and each hit gets its own.
//! The lifetime is the answer's `Cache-Control: max-age`, capped by the
//! zone's TTL; answers without one, errors and anything but JSON are not
//! kept. Concurrent misses on one key make one fill; the others wait for it
//! (up to [`LOCK_WAIT`], as nginx's `proxy_cache_lock`).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use once_cell::sync::Lazy;
use parking_lot::Mutex;
use pingora_cache::key::HashBinary;
use pingora_error::Result;
use tokio::sync::watch;

use mcpgate_cache_zones::Zone;

use crate::app::{BoxError, EdgeApp, EdgeBody, PostCache};
use crate::context::Ctx;
use crate::downstream::Downstream;
use crate::edge::EdgeProxy;

/// How long a request waits for another's fill of the same key.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Fills in flight, by key: waiters watch for the fill to end.
static FILLS: Lazy<Mutex<HashMap<HashBinary, watch::Receiver<bool>>>> =
    Lazy::new(|| Mutex::new(HashMap::new()));

/// Ends a fill however it ends: waiters wake and look again.
struct Filling {
    hash: HashBinary,
    done: watch::Sender<bool>,
}

impl Drop for Filling {
    fn drop(&mut self) {
        FILLS.lock().remove(&self.hash);
        let _ = self.done.send(true);
    }
}

enum Turn {
    Fill(Filling),
    Wait(watch::Receiver<bool>),
}

fn turn(hash: HashBinary) -> Turn {
    let mut fills = FILLS.lock();
    if let Some(rx) = fills.get(&hash) {
        return Turn::Wait(rx.clone());
    }
    let (done, rx) = watch::channel(false);
    fills.insert(hash, rx);
    Turn::Fill(Filling { hash, done })
}

/// A kept answer: where the request's own bytes go, then the answer
/// without them.
fn template(answer: &[u8], own: &[u8]) -> Option<Bytes> {
    if own.is_empty() {
        return None;
    }
    let at = answer.windows(own.len()).position(|w| w == own)?;
    let mut t = BytesMut::with_capacity(8 + answer.len() - own.len());
    t.put_u64_le(at as u64);
    t.put_slice(&answer[..at]);
    t.put_slice(&answer[at + own.len()..]);
    Some(t.freeze())
}

/// The kept answer with this request's own bytes in their place.
fn render(template: &Bytes, own: &[u8]) -> Option<Bytes> {
    let at = u64::from_le_bytes(template.get(..8)?.try_into().ok()?) as usize;
    let rest = template.get(8..)?;
    let (head, tail) = (rest.get(..at)?, rest.get(at..)?);
    let mut out = BytesMut::with_capacity(rest.len() + own.len());
    out.put_slice(head);
    out.put_slice(own);
    out.put_slice(tail);
    Some(out.freeze())
}

/// How long the answer may be kept: a `max-age` of at least a second, no
/// `no-store`, and `public` when the entry is shared.
fn lifetime(headers: &http::HeaderMap, shared: bool) -> Option<Duration> {
    let cc = headers
        .get(CACHE_CONTROL)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    let directives: Vec<&str> = cc.split(',').map(str::trim).collect();
    if directives.contains(&"no-store") || directives.contains(&"no-cache") {
        return None;
    }
    if shared && !directives.contains(&"public") {
        return None;
    }
    let secs = directives
        .iter()
        .find_map(|d| d.strip_prefix("max-age="))?
        .parse::<u64>()
        .ok()?;
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn full(body: Bytes) -> EdgeBody {
    Full::new(body)
        .map_err(|never| -> BoxError { match never {} })
        .boxed_unsync()
}

fn json_answer(body: Bytes) -> http::Response<EdgeBody> {
    let mut r = http::Response::new(full(body));
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

impl<A: EdgeApp> EdgeProxy<A> {
    fn count(&self, zone: &Zone, result: &str) {
        self.metrics
            .cache
            .with_label_values(&[zone.name.as_str(), result])
            .inc();
    }

    /// Answers a cacheable POST from `zone`, or fills it.
    pub(crate) async fn serve_cacheable_post<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        zone: &'static Zone,
        plan: PostCache,
        body: Bytes,
    ) -> Result<()> {
        let hash = {
            let mut h = blake3::Hasher::new();
            h.update(zone.name.as_bytes());
            h.update(&zone.generation.current().to_le_bytes());
            h.update(&self.generations.get("registry").to_le_bytes());
            h.update(plan.key.as_bytes());
            let mut out = [0u8; 16];
            out.copy_from_slice(&h.finalize().as_bytes()[..16]);
            out
        };
        let mut waited = false;
        let filling = loop {
            if let Some(kept) = zone.get_object(hash)
                && let Some(answer) = render(&kept, &plan.own)
            {
                ctx.status = 200;
                self.count(zone, "HIT");
                return self.answer(session, ctx, json_answer(answer), "HIT").await;
            }
            if waited {
                // The other fill did not keep an answer in time: go to the
                // application without keeping this one either.
                break None;
            }
            match turn(hash) {
                Turn::Fill(f) => break Some(f),
                Turn::Wait(mut rx) => {
                    let _ = tokio::time::timeout(LOCK_WAIT, rx.wait_for(|done| *done)).await;
                    waited = true;
                }
            }
        };
        self.count(zone, "MISS");
        let response = self.hand_over(session, ctx, body).await?;
        let Some(_filling) = filling else {
            return self.answer(session, ctx, response, "MISS").await;
        };
        let ttl = (response.status() == http::StatusCode::OK
            && response
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json")))
        .then(|| lifetime(response.headers(), plan.shared))
        .flatten();
        let Some(ttl) = ttl else {
            return self.answer(session, ctx, response, "MISS").await;
        };
        let (parts, mut answer_body) = response.into_parts();
        let limit = zone.max_object_bytes();
        let mut whole = BytesMut::new();
        while let Some(frame) = answer_body.frame().await {
            let Ok(frame) = frame else {
                // Cut short: nothing is kept and the client is told so.
                return Err(pingora_error::Error::explain(
                    pingora_error::ErrorType::ReadError,
                    "in-process response body failed",
                ));
            };
            if let Ok(data) = frame.into_data() {
                whole.extend_from_slice(&data);
            }
        }
        let bytes = whole.freeze();
        // Larger than the zone keeps: served, not kept.
        if bytes.len() <= limit
            && let Some(t) = template(&bytes, &plan.own)
        {
            let ttl = ttl.min(*zone.default_ttl.read());
            let mut head = pingora_http::ResponseHeader::build(200, Some(1))?;
            head.insert_header(CONTENT_TYPE, "application/json")?;
            zone.put_object(hash, head, t, ttl);
        }
        let response = http::Response::from_parts(parts, full(bytes));
        self.answer(session, ctx, response, "MISS").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_answer_gets_each_request_its_own_id() {
        let answer = br#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"id":7}]}}"#;
        let t = template(answer, br#""id":7"#).unwrap();
        assert_eq!(
            render(&t, br#""id":"abc""#).unwrap(),
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":"abc","result":{"tools":[{"id":7}]}}"#)
        );
        assert_eq!(
            render(&t, br#""id":7"#).unwrap(),
            Bytes::from_static(answer)
        );
        assert!(template(answer, br#""id":8"#).is_none());
        assert!(template(answer, b"").is_none());
        assert!(
            render(
                &Bytes::from_static(b"\xff\xff\xff\xff\xff\xff\xff\x7fxx"),
                b"1"
            )
            .is_none()
        );
    }

    #[test]
    fn lifetimes_follow_cache_control() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(CACHE_CONTROL, v.parse().unwrap());
            m
        };
        assert_eq!(
            lifetime(&h("private, max-age=5"), false),
            Some(Duration::from_secs(5))
        );
        assert_eq!(lifetime(&h("private, max-age=5"), true), None);
        assert_eq!(
            lifetime(&h("public, max-age=60"), true),
            Some(Duration::from_secs(60))
        );
        assert_eq!(lifetime(&h("public, max-age=0"), false), None);
        assert_eq!(lifetime(&h("no-store, max-age=9"), false), None);
        assert_eq!(lifetime(&http::HeaderMap::new(), false), None);
    }
}
