//! Our fixture MCP server as a real process, and small MCP client helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const FIXTURE: &str = env!("CARGO_BIN_EXE_mcpgate-fixture");

/// A running `mcpgate-fixture --port N`; killed on drop.
pub struct Fixture {
    pub child: Child,
    pub port: u16,
}

impl Fixture {
    pub fn start(port: u16, extra: &[&str]) -> Fixture {
        let mut child = Command::new(FIXTURE)
            .args(["--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fixture");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("fixture banner");
        let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        Fixture { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn sse_url(&self) -> String {
        format!("http://127.0.0.1:{}/sse", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parses an SSE body into its JSON messages.
pub fn sse_messages(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .filter(|d| !d.is_empty())
        .map(|d| serde_json::from_str(&d).expect("SSE data is JSON"))
        .collect()
}

/// A Streamable HTTP client session.
pub struct McpClient {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
    pub next: u64,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    /// Every JSON-RPC message of the answer (one for JSON, all events for SSE).
    pub messages: Vec<Value>,
}

impl Reply {
    /// The final response message.
    pub fn result(&self) -> &Value {
        self.messages
            .iter()
            .rev()
            .find(|m| m.get("id").is_some() && m.get("method").is_none())
            .expect("a response message")
    }
}

impl McpClient {
    pub fn new(url: String, token: Option<String>) -> McpClient {
        McpClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            url,
            token,
            session: None,
            next: 1,
        }
    }

    pub fn request_builder(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        r
    }

    /// One raw exchange on the client's URL: `method`, the token, the
    /// session when `session` is set, extra `headers` and a body sent as is.
    /// For the transport's refusals; the status and the body text.
    pub async fn exchange(
        &self,
        method: reqwest::Method,
        session: bool,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (StatusCode, String) {
        let mut r = self.http.request(method, &self.url);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let (true, Some(s)) = (session, &self.session) {
            r = r.header("mcp-session-id", s);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.body(b.to_owned());
        }
        let resp = r.send().await.expect("send");
        (resp.status(), resp.text().await.unwrap_or_default())
    }

    /// A `ping` POST in the session with extra headers.
    pub async fn ping_with(&self, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut all = vec![
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
        ];
        all.extend_from_slice(headers);
        self.exchange(
            reqwest::Method::POST,
            true,
            &all,
            Some(r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#),
        )
        .await
    }

    pub async fn send(&self, body: &Value) -> Reply {
        let resp = self.request_builder(body).send().await.expect("send");
        let status = resp.status();
        let headers = resp.headers().clone();
        let is_sse = headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        let text = resp.text().await.unwrap();
        let messages = if is_sse {
            sse_messages(&text)
        } else if text.is_empty() {
            vec![]
        } else {
            vec![serde_json::from_str(&text).unwrap_or(Value::String(text))]
        };
        Reply {
            status,
            headers,
            messages,
        }
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Reply {
        let id = self.next;
        self.next += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await
    }

    pub async fn initialize(&mut self, capabilities: Value) -> Reply {
        let r = self
            .call("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "mcpgate-tests", "version": "0"}}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.messages);
        self.session = r
            .headers
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        r
    }

    /// Calls a tool over an SSE answer, answering the server's requests with
    /// `answer(method, params)` as they arrive; returns every message seen.
    pub async fn call_streaming(
        &mut self,
        params: Value,
        answer: impl Fn(&str, &Value) -> Value,
    ) -> Vec<Value> {
        let id = self.next;
        self.next += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let resp = self.request_builder(&body).send().await.expect("send");
        assert_eq!(resp.status(), StatusCode::OK);
        let mut events = resp.bytes_stream().eventsource();
        let mut seen = Vec::new();
        while let Some(ev) = events.next().await {
            let ev = ev.expect("event");
            if ev.data.trim().is_empty() {
                continue;
            }
            let msg: Value = serde_json::from_str(&ev.data).unwrap();
            seen.push(msg.clone());
            if let (Some(mid), Some(method)) =
                (msg.get("id"), msg.get("method").and_then(Value::as_str))
            {
                let result = answer(method, &msg["params"]);
                let reply = json!({"jsonrpc": "2.0", "id": mid, "result": result});
                let r = self.send(&reply).await;
                assert_eq!(r.status, StatusCode::ACCEPTED);
            } else if msg.get("id") == Some(&json!(id)) {
                break;
            }
        }
        seen
    }
}

pub fn tool_text(result: &Value) -> String {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
