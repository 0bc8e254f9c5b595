//! Tests of `conductor audit`.
