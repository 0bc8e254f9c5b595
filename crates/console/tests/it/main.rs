//! Integration tests of the console: HTTP-level (the router in-process) and a real
//! headless Chromium.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod browser;
mod chromium;
mod http;
