//! Tests of `conductor check`.
