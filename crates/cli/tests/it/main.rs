//! Integration tests of the `conductor` binary (one test binary for the crate).

mod audit;
mod check;
mod policy;
mod wrap;
