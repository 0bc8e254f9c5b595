//! Integration tests of `conductor-serve` through its public API (the gateway file).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod approvals;
mod ask;
mod auth;
mod authzen;
mod config;
mod listen;
mod python_sdk;
mod tls;
mod upstream_tls;
