//! Tests of the sandbox with real kernel features and real MCP servers.

// Test helpers outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod escape;
mod fetch;
mod filesystem;
mod proxy;
mod support;
