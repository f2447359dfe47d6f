//! stdio: a command the gateway runs, one JSON-RPC message per line.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::stream::StreamConn;
use super::{UpstreamError, UpstreamSpec};

pub(super) fn spawn(
    spec: &UpstreamSpec,
    on_unsolicited: Option<mpsc::UnboundedSender<(String, Value)>>,
) -> Result<Arc<StreamConn>, UpstreamError> {
    let name = spec.name.clone();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&spec.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| UpstreamError::Connect(name.clone(), format!("cannot start command: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let conn = StreamConn::new(tx, on_unsolicited);
    let reader = conn.clone();
    let log_name = name.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            tracing::debug!(upstream = %log_name, "stderr: {l}");
        }
    });
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        loop {
            tokio::select! {
                l = lines.next_line() => match l {
                    Ok(Some(l)) if !l.trim().is_empty() => reader.incoming(l.as_bytes()),
                    Ok(Some(_)) => {}
                    _ => break,
                },
                _ = reader.stop.cancelled() => break,
            }
        }
        reader.fail_all();
        // Shutdown as the spec asks: close stdin, then terminate.
        drop(child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    });
    let stopper = conn.clone();
    tokio::spawn(async move {
        while let Some(line) =
            tokio::select! { l = rx.recv() => l, _ = stopper.stop.cancelled() => None }
        {
            if stdin.write_all(line.as_bytes()).await.is_err()
                || stdin.write_all(b"\n").await.is_err()
                || stdin.flush().await.is_err()
            {
                break;
            }
        }
    });
    Ok(conn)
}
