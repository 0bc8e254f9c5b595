//! Integration tests of the gate service.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code, helpers included: a failed unwrap is a failed test"
)]

mod ask;
mod egress;
mod reload;
mod resolver;
mod service;
