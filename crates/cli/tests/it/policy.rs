//! Tests of `conductor policy`.
