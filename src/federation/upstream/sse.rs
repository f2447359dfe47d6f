//! Legacy HTTP+SSE: a GET stream that names the endpoint to POST to, then
//! carries every message from the upstream.

use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::stream::StreamConn;
use super::{UpstreamError, UpstreamSpec};

pub(super) async fn connect(
    spec: &UpstreamSpec,
    http: &reqwest::Client,
    timeout: Duration,
    on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
) -> Result<Arc<StreamConn>, UpstreamError> {
    let name = spec.name.clone();
    let mut req = http.get(&spec.url).header("accept", "text/event-stream");
    for (k, v) in &spec.headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| UpstreamError::Connect(name.clone(), e.to_string()))?;
    if !resp.status().is_success() {
        return Err(UpstreamError::Connect(
            name.clone(),
            format!("HTTP {}", resp.status()),
        ));
    }
    let mut events = resp.bytes_stream().eventsource();
    let endpoint = tokio::time::timeout(timeout, async {
        while let Some(Ok(ev)) = events.next().await {
            if ev.event == "endpoint" {
                return Some(ev.data);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| {
        UpstreamError::Connect(name.clone(), "no endpoint event on the SSE stream".into())
    })?;
    let post_url = url::Url::parse(&spec.url)
        .and_then(|base| base.join(endpoint.trim()))
        .map_err(|e| UpstreamError::Failed(name.clone(), format!("bad endpoint URL: {e}")))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let conn = StreamConn::new(tx, on_unsolicited);
    let reader = conn.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) if ev.event == "message" || ev.event.is_empty() => reader.incoming(ev.data.as_bytes()),
                    Some(Ok(_)) => {}
                    _ => break,
                },
                _ = reader.stop.cancelled() => break,
            }
        }
        reader.fail_all();
    });
    let writer = conn.clone();
    let client = http.clone();
    let headers = spec.headers.clone();
    tokio::spawn(async move {
        while let Some(body) =
            tokio::select! { b = rx.recv() => b, _ = writer.stop.cancelled() => None }
        {
            let mut req = client
                .post(post_url.clone())
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            if req.send().await.is_err() {
                writer.fail_all();
                break;
            }
        }
    });
    Ok(conn)
}
