//! Integration tests of `conductor-net` through its public API (one binary).
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
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
