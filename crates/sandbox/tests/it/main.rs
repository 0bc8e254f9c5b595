//! Tests of the sandbox with real kernel features and real MCP servers.

mod escape;
mod fetch;
mod filesystem;
mod proxy;
mod support;
