//! Integration tests of the audit crate (one test binary).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code, helpers included: a failed unwrap is a failed test"
)]

mod approvals;
mod common;
mod concurrency;
mod crash;
mod jcs;
mod store;
mod submit;
mod tamper;
