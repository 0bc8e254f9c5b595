//! `conductor serve`: the Streamable HTTP gateway in front of many MCP servers.
//!
//! The HTTP adapter over the gate: every decided method goes through the same gate as
//! `wrap` (module [`gate_glue`], the only place that knows the gate's API). Endpoints:
//! `/mcp` (every upstream, names `<server>.<tool>`), `/mcp/<server>` (one upstream under
//! its own names), `/healthz`, `/readyz`, `/metrics`, and the AuthZEN decision API
//! (module [`authzen`]).
//!
//! INVARIANT: only the transport adapters know JSON-RPC and HTTP; nothing here decides:
//! every `tools/call`, `resources/read`, `resources/subscribe` is decided and recorded by
//! the gate before any upstream sees it.

pub mod approvals_api;
pub mod auth;
pub mod authzen;
pub mod config;
mod conn_timing;
pub mod gate_glue;
pub mod http;
mod json_seq;
pub mod listen;
pub mod metrics;
pub mod reload;
pub mod session;
pub mod upstream;
pub mod upstream_tls;
pub mod webhook;
mod yaml;

pub use config::{GatewayConfig, load_file, load_str};
pub use http::{ServeError, ServeOptions, serve, serve_with};
pub use yaml::error::{LoadError, Problem};

/// Structured logs: JSON lines on standard error (`RUST_LOG`-style filter in
/// `CONDUCTOR_LOG`, default `info`). Messages carry ids, names and reasons, never
/// arguments, headers or secrets.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONDUCTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}
