//! Integration tests of the gate relay, driven through in-memory pipes with a fake
//! MCP server in the test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code, helpers included: a failed unwrap is a failed test"
)]

mod differential;
mod engine;
mod framing_cr;
mod harness;
pub mod reader;
