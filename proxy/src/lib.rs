//! The mcpgate edge (port 8080), on Pingora.
//!
//! This crate knows HTTP, route classes, limits, caching and compression; it
//! knows nothing about MCP. The application behind it is anything that
//! implements [`EdgeApp`]: requests the edge does not answer from cache are
//! handed to it in-process (no network hop); cache fills and WebSocket
//! upgrades go to the application's own listener.

mod admission;
mod answers;
pub mod app;
pub mod config;
mod context;
mod direct;
mod downstream;
pub mod edge;
pub mod encoding;
mod forwarding;
mod inprocess;
mod lanes;
pub mod limits;
pub mod metrics;
mod percore;
mod postcache;
mod purge;
pub mod routes;
pub mod server;

pub use answers::LINGER;

pub use app::{BoxFuture, EdgeApp, EdgeBody, Generations, PostCache, PostCachePolicy, Rejection};
pub use config::{Compression, EdgeConfig};
pub use edge::EdgeProxy;
pub use routes::{RouteClass, RouteTable};
pub use server::EdgeHandle;
pub use server::Stop;
