//! Integration tests of the decision core.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure, and tests read their corpus files"
)]

mod api;
mod corpus;
mod leaks;
mod props;
mod resolve_last;
