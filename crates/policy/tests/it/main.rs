//! Integration tests of the policy loader.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod compiled;
mod errors;
mod hostile;

use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Load text that must be refused; return its rendering (no colors).
pub fn refuse(text: &str) -> String {
    match conductor_policy::load_str(text, "policy.yaml", None) {
        Ok(_) => panic!("the policy was accepted:\n{text}"),
        Err(e) => e.render(false),
    }
}
