//! Destination parsing, canonicalization and classification.
//!
//! This crate answers question 2 of the gate ("is the destination of this call within
//! the permitted scope?"). It is pure: it never opens a socket or asks DNS itself;
//! host names are resolved through the [`Resolver`] it is given.
//!
//! CONTRACT (used by `conductor-policy` and `conductor-core`; keep these signatures):
//! - [`Class`], [`Resolver`], [`ResolveError`]
//! - [`DestPolicySpec`] → [`DestPolicy::compile`] → [`DestPolicy::evaluate`] → [`DestOutcome`]
//! - [`DestPattern::parse`] / [`DestPattern::matches`] (used by data egress rules)

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
