//! Integration tests of the decision core.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod api;
mod corpus;
mod leaks;
mod props;
mod resolve_last;
