//! The vocabulary every Conductor crate shares, so that no two crates spell the same
//! concept differently: [`JsonPath`] (where in a JSON value something was found),
//! [`RuleId`] (which rule of the policy or which built-in check decided), [`Check`]
//! (which of the gate's questions a reason answers) and [`FailureClass`] (whose fault
//! a failure is, mapped once to exit codes, JSON-RPC codes and HTTP statuses), and the
//! [`strict`] JSON reader that refuses what readers could read differently.
//!
//! This crate is pure: no I/O, no clock, no environment.
#![warn(missing_docs, unreachable_pub)]

mod check;
pub mod display;
pub mod failure;
mod path;
mod rule;
pub mod strict;

pub use check::Check;
pub use failure::{FailureClass, jsonrpc_code};
pub use path::{JsonPath, PathError, Segment, Step, fold_eq, fold_name, member, member_mut};
pub use rule::RuleId;
