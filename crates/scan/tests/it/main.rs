//! Integration tests of `conductor-scan` through its public API.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a harness, not the library: it reads files, the clock and arguments (the purity rules of clippy.toml are for src/)"
)]

mod behaviour;
mod corpus;
mod leaks;
