//! Destination parsing, canonicalization and classification.
//!
//! This crate answers question 2 of the gate ("is the destination of this call within
//! the permitted scope?"). It is pure: it never opens a socket or asks DNS itself;
//! host names are resolved through the [`Resolver`] it is given.
//!
//! # Entry points
//!
//! - [`DestPolicySpec`] → [`DestPolicy::compile`] (the policy loader does this).
//! - [`DestPolicy::prepare`] → [`DestPlan::hosts_to_resolve`] → [`DestPlan::finish`]:
//!   the check of a call in two phases, DNS last; [`DestPolicy::evaluate`] is both
//!   with one [`Resolver`]. The result is a [`DestOutcome`].
//! - [`DestPattern::parse`] / [`DestPattern::matches`]: patterns, also used by data
//!   egress rules; [`canonicalize`] and [`classes_of`] for single strings.
//!
//! Where a typical change goes: finding destination strings in arguments →
//! `collect.rs` and `extract.rs` (the scanner); reading one string → `canon.rs`;
//! a blocked class or range → `classes.rs`; a rule on a destination → `evaluate.rs`.

#![warn(missing_docs, unreachable_pub)]

pub mod canon;
mod classes;
mod collect;
mod evaluate;
mod extract;
pub mod ip;
mod model;
mod pattern;

pub use canon::{CanonError, Canonical, Host, canonicalize};
pub use classes::{classes_of, name_hit};
pub use evaluate::{DestPlan, DestPolicy, MAX_DESTINATIONS};
pub use extract::find_in_text;
pub use model::{
    Answers, Class, DestOutcome, DestPolicySpec, Destination, PatternError, ResolveError, Resolver,
    Violation,
};
pub use pattern::DestPattern;
