//! Integration tests of the policy loader.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn design_example_loads() {
    let p = conductor_policy::load_file(&fixture("design.yaml"))
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert!(p.sha256().starts_with("sha256:"));
}

#[test]
fn many_errors() {
    let e = conductor_policy::load_file(&fixture("many_errors.yaml")).unwrap_err();
    let places: Vec<(u32, u32)> = e
        .problems()
        .iter()
        .map(|p| (p.line.unwrap(), p.column.unwrap()))
        .collect();
    // undefined role, unknown level, unknown key, bad glob, unknown action, bad
    // pointers, bad regex, min > max, cycle, missing/unknown key, workflow errors,
    // data label errors: all in one report.
    for want in [
        (4, 13),
        (5, 16),
        (6, 5),
        (11, 28),
        (12, 25),
        (14, 11),
        (15, 11),
        (15, 26),
        (16, 21),
        (18, 15),
        (20, 9),
        (23, 13),
        (24, 12),
        (27, 18),
        (27, 34),
    ] {
        assert!(places.contains(&want), "no problem at {want:?}: {places:?}");
    }
}
