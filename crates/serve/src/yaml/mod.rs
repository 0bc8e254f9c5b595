//! The spanned YAML reader and its diagnostics, the same as the policy's.
//!
//! NOTE for the lead: these three files are copies of `crates/policy/src/{node,de,error}.rs`
//! (messages say "file" instead of "policy"); they belong in one shared crate.

pub mod de;
pub mod error;
pub mod node;
