//! mcpgate: an MCP gateway. See `README.md` and `DESIGN.md` in the shared
//! reference for the architecture.

pub mod access;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod edge;
pub mod federation;
pub mod gateway;
pub mod lifecycle;
pub mod mcp;
pub mod observability;
pub mod registry;
pub mod relay;
pub mod server;
pub mod store;
pub mod util;
