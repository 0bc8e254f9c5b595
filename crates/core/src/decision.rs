//! The decision and its parts, and what the core needs from the world.

use conductor_net::{Destination, Resolver};
use conductor_scan::{Finding, FingerprintKey};
use serde::{Deserialize, Serialize};

/// The outcome. Order of strength: `deny` > `approve` > `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Approve,
    Deny,
}

/// Which of the checks produced a reason (DESIGN.md: the `check` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Identity,
    Tool,
    Role,
    Workflow,
    Destination,
    Data,
    Flow,
    Pin,
    Input,
    /// Added by transports: the audit record could not be written.
    Audit,
}

impl Check {
    /// The name used in decisions (`tool`, `role`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Check::Identity => "identity",
            Check::Tool => "tool",
            Check::Role => "role",
            Check::Workflow => "workflow",
            Check::Destination => "destination",
            Check::Data => "data",
            Check::Flow => "flow",
            Check::Pin => "pin",
            Check::Input => "input",
            Check::Audit => "audit",
        }
    }
}

/// One failing check (or, for `approve`, the rule that requires approval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub check: Check,
    /// Stable id: a path into the policy such as `roles.operator.allow[0]`.
    pub rule: String,
    pub message: String,
}

/// The decision (DESIGN.md, "The decision").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub decision: Effect,
    pub reasons: Vec<Reason>,
    pub destinations: Vec<Destination>,
    pub findings: Vec<Finding>,
    /// `sha256:<hex>` of the policy that decided.
    pub policy: String,
}

/// What the core needs from the world, injected by its caller.
pub struct World<'a> {
    pub resolver: &'a dyn Resolver,
    pub fingerprint_key: &'a FingerprintKey,
}
