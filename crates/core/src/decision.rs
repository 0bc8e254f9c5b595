//! The decision and its parts, and what the core needs from the world.

use conductor_net::{Destination, Resolver};
use conductor_scan::{Finding, FingerprintKey};
use serde::{Deserialize, Serialize};

/// The outcome. Order of strength: `deny` > `approve` > `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The call may be made.
    Allow,
    /// The call is held until a person approves it.
    Approve,
    /// The call is refused.
    Deny,
}

/// Which of the checks produced a reason (DESIGN.md: the `check` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// The agent is not defined.
    Identity,
    /// A deny rule names the tool, or no rule names it.
    Tool,
    /// Rules name the tool, but not for this action or under these arguments.
    Role,
    /// The workflow is unknown, not for the agent's roles, or does not list the tool.
    Workflow,
    /// A destination of the call is blocked, denied, not allowed or cannot be checked.
    Destination,
    /// Data in the arguments is above the agent's clearance or a destination's egress.
    Data,
    /// Data the session has received is above a destination's egress.
    Flow,
    /// Added by transports: a tool's descriptor changed since it was pinned.
    Pin,
    /// The request itself is malformed (tool name, arguments).
    Input,
    /// Added by transports: the audit record could not be written.
    Audit,
    /// Added by the gate service: a held call was denied by a person or expired (or
    /// released by one, on an `allow`).
    Approval,
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
            Check::Approval => "approval",
        }
    }
}

/// One failing check (or, for `approve`, the rule that requires approval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The check that failed.
    pub check: Check,
    /// Stable id: a path into the policy such as `roles.operator.allow[0]`.
    pub rule: String,
    /// What failed, for people: lowercase, no trailing period, user input in
    /// backticks; scrubbed of matched data, then cut (quoted values 120 characters).
    pub message: String,
}

/// The decision (DESIGN.md, "The decision").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The outcome.
    pub decision: Effect,
    /// For a deny every failing check; for an approve the rules that require
    /// approval; empty for an allow.
    pub reasons: Vec<Reason>,
    /// Every destination of the call (a name is without addresses when the call was
    /// decided before DNS).
    pub destinations: Vec<Destination>,
    /// What the detectors found in the arguments (pointers and fingerprints, never
    /// values).
    pub findings: Vec<Finding>,
    /// `sha256:<hex>` of the policy that decided.
    pub policy: String,
}

/// What the core needs from the world, injected by its caller.
pub struct World<'a> {
    /// Resolves host names, asked only when every other check allows the call.
    pub resolver: &'a dyn Resolver,
    /// Keys the fingerprints of findings.
    pub fingerprint_key: &'a FingerprintKey,
}
