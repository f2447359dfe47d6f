//! The Model Context Protocol: JSON-RPC messages, one dispatcher, sessions
//! and the transports (plain JSON-RPC, Streamable HTTP, legacy SSE,
//! WebSocket, stdio). Generic over an [`dispatch::McpHandler`], so the
//! gateway and the test fixture server share every transport.

pub mod conn;
pub mod dispatch;
pub mod http;
pub mod jsonrpc;
pub mod protocol;
pub mod sealed;
pub mod session;
pub mod stateless;

pub use dispatch::{Ctx, Dispatcher, McpHandler, Reply};
