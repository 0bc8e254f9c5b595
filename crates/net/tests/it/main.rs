//! Integration tests of `conductor-net` through its public API (one binary).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions may fail loudly"
)]

mod common;
mod corpus;
mod evaluate;
mod props;
