//! The types of the destination check: classes, the resolver, the policy section as
//! written, and what the check reports.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

/// A built-in class of destinations that is blocked unless the policy's
/// `destinations.permit` opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    CloudMetadata,
    Loopback,
    LinkLocal,
    Private,
    Unspecified,
    Multicast,
    Reserved,
}

impl Class {
    /// Every class, in a stable order.
    pub const ALL: [Class; 7] = [
        Class::CloudMetadata,
        Class::Loopback,
        Class::LinkLocal,
        Class::Private,
        Class::Unspecified,
        Class::Multicast,
        Class::Reserved,
    ];

    /// The name used in policies and decisions (`cloud-metadata`, `loopback`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Class::CloudMetadata => "cloud-metadata",
            Class::Loopback => "loopback",
            Class::LinkLocal => "link-local",
            Class::Private => "private",
            Class::Unspecified => "unspecified",
            Class::Multicast => "multicast",
            Class::Reserved => "reserved",
        }
    }

    /// The class with this policy name, if any.
    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Why a host name could not be resolved. Every variant ends in a deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("`{host}` does not resolve")]
    NotFound { host: String },
    #[error("resolving `{host}` timed out")]
    Timeout { host: String },
    #[error("resolving `{host}` failed: {message}")]
    Failed { host: String, message: String },
}

/// Resolves host names to addresses. Injected into the pure core by its caller
/// (the CLI's system resolver with timeout and cache, a fixed map in tests).
pub trait Resolver {
    /// Every address `host` (already canonical: lowercase ASCII, no trailing dot)
    /// resolves to. An empty `Ok` list is treated like [`ResolveError::NotFound`].
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError>;
}

/// The answers a caller collected for [`crate::DestPlan::hosts_to_resolve`] (from an
/// async or caching resolver, say), as a [`Resolver`] for [`crate::DestPlan::finish`].
/// A host it holds no answer for does not resolve (which denies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers(pub HashMap<String, Result<Vec<IpAddr>, ResolveError>>);

impl Resolver for Answers {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        self.0.get(host).cloned().unwrap_or_else(|| {
            Err(ResolveError::NotFound {
                host: host.to_string(),
            })
        })
    }
}

/// The `destinations:` section of a policy, as written (already type-checked by
/// the policy loader).
#[derive(Debug, Clone, Default)]
pub struct DestPolicySpec {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// Names of built-in classes to open up (see [`Class::name`]).
    pub permit: Vec<String>,
    /// Also treat URL-looking strings anywhere in the arguments as destinations.
    pub scan: bool,
}

/// An entry of a [`DestPolicySpec`] list that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// `"allow"`, `"deny"` or `"permit"`.
    pub list: &'static str,
    /// Index into that list.
    pub index: usize,
    /// Lowercase message, user input in backticks, no trailing period.
    pub message: String,
}

/// One destination of a call, as the decision shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    /// The string as found in the arguments (or the declared literal).
    pub input: String,
    /// Where it was found: a JSON pointer into the arguments; `None` for a literal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    pub scheme: String,
    /// Canonical host: an IP address in canonical text form, or a lowercase
    /// ASCII (punycode) name without trailing dot. Empty if the input did not parse.
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub addresses: Vec<IpAddr>,
    pub classes: Vec<Class>,
}

/// A reason the destination check fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Stable rule id, e.g. `destinations.blocked.cloud-metadata`, `destinations.deny[0]`,
    /// `destinations.allow` (matched no allow entry), `destinations.unparseable`, ...
    pub rule: String,
    /// Human message, lowercase, no trailing period.
    pub message: String,
    /// Index into [`DestOutcome::destinations`] of the destination concerned.
    pub destination: usize,
}

/// What the destination check found for one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestOutcome {
    pub destinations: Vec<Destination>,
    pub violations: Vec<Violation>,
}
