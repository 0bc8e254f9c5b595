//! Tests of `conductor wrap`.
