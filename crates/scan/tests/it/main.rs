//! Integration tests of `conductor-scan` through its public API.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod behaviour;
mod corpus;
mod leaks;
