//! The types of the destination check: classes, the resolver, the policy section as
//! written, and what the check reports.

use std::collections::HashMap;
use std::net::IpAddr;

use conductor_types::{JsonPath, RuleId};
use serde::Serialize;

/// A built-in class of destinations that is blocked unless the policy's
/// `destinations.permit` opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Every provider's metadata service addresses and names (`169.254.169.254`,
    /// `fd00:ec2::254`, `metadata.google.internal`, ...).
    CloudMetadata,
    /// `127.0.0.0/8`, `::1`, `localhost`.
    Loopback,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// RFC 1918, unique local (`fc00::/7`), CGNAT (`100.64.0.0/10`).
    Private,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// Documentation, benchmarking, broadcast and other special-purpose ranges.
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
    /// The name has no address.
    #[error("`{host}` does not resolve")]
    NotFound {
        /// The canonical name asked for.
        host: String,
    },
    /// The resolver gave no answer in time.
    #[error("resolving `{host}` timed out")]
    Timeout {
        /// The canonical name asked for.
        host: String,
    },
    /// The resolver failed otherwise.
    #[error("resolving `{host}` failed: {message}")]
    Failed {
        /// The canonical name asked for.
        host: String,
        /// What the resolver said (lowercase).
        message: String,
    },
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
    /// `destinations.allow`: patterns a destination must match (one of).
    pub allow: Vec<String>,
    /// `destinations.deny`: patterns no destination may match.
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
    /// The string as found in the arguments (or the declared literal), a userinfo
    /// password replaced by `***`; bounded, not cut for display (the core does that).
    pub input: String,
    /// Where it was found: a JSON pointer into the arguments; `None` for a literal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<JsonPath>,
    /// Lowercase scheme; empty for a bare host or `//host`.
    pub scheme: String,
    /// Canonical host: an IP address in canonical text form, or a lowercase
    /// ASCII (punycode) name without trailing dot. Empty if the input did not parse.
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Explicit port or the scheme's default; `None` when neither is known.
    pub port: Option<u16>,
    /// The address host, or every address the name resolved to (empty when it was not
    /// resolved).
    pub addresses: Vec<IpAddr>,
    /// Every built-in class of the host or its addresses, sorted.
    pub classes: Vec<Class>,
}

/// A reason the destination check fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Stable rule id, e.g. `destinations.blocked.cloud-metadata`, `destinations.deny[0]`,
    /// `destinations.allow` (matched no allow entry), `destinations.unparseable`, ...
    pub rule: RuleId,
    /// Human message, lowercase, no trailing period.
    pub message: String,
    /// Index into [`DestOutcome::destinations`] of the destination concerned.
    pub destination: usize,
}

/// What the destination check found for one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestOutcome {
    /// Every destination checked, in order of discovery.
    pub destinations: Vec<Destination>,
    /// Every failing check, in the order of the destinations.
    pub violations: Vec<Violation>,
}
