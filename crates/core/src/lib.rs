//! The decision core: `decide(&Policy, &Request, &World) -> Decision`.
//!
//! INVARIANT: this crate does no I/O — no sockets, files, clocks or DNS. What it needs
//! from the world (resolved addresses, the fingerprint key) comes in through [`World`].
//!
//! CONTRACT (used by the CLI and transports; keep these signatures):
//! [`Request`], [`Request::from_json`], [`Decision`], [`Effect`], [`Check`], [`Reason`],
//! [`World`], [`decide`], [`label_result`], [`may_ever_call`], [`action_of`].

use conductor_net::{Destination, Resolver};
use conductor_policy::Policy;
use conductor_scan::{Finding, FingerprintKey};
use serde::{Deserialize, Serialize};

/// The request the core decides on (DESIGN.md, "The request the core decides on").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub agent: String,
    /// Qualified tool name `<server>.<tool>`.
    pub tool: String,
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_labels: Vec<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A request that could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid request: {message}")]
pub struct RequestError {
    /// Lowercase, names the field and the place (line/column) where possible.
    pub message: String,
}

impl Request {
    /// Parse one request from JSON text; the error names what was wrong and where.
    pub fn from_json(text: &str) -> Result<Request, RequestError> {
        serde_json::from_str(text).map_err(|e| RequestError {
            message: e.to_string(),
        })
    }
}

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

/// Decide one request. Never panics; anything that cannot be evaluated is a deny.
pub fn decide(policy: &Policy, request: &Request, world: &World<'_>) -> Decision {
    let _ = (request, world);
    Decision {
        decision: Effect::Deny,
        reasons: vec![Reason {
            check: Check::Input,
            rule: "core".into(),
            message: "the decision core is not implemented yet".into(),
        }],
        destinations: Vec::new(),
        findings: Vec::new(),
        policy: policy.sha256().to_string(),
    }
}

/// The data labels a tool *result* carries (for raising a session's labels).
pub fn label_result(policy: &Policy, result: &serde_json::Value, world: &World<'_>) -> Vec<String> {
    let _ = (policy, result, world);
    Vec::new()
}

/// Whether `agent` could call `tool` under some arguments (used to filter `tools/list`).
pub fn may_ever_call(policy: &Policy, agent: &str, tool: &str) -> bool {
    let _ = (policy, agent, tool);
    false
}

/// The action a tool performs per the policy's `tools:` facts (default `execute`).
pub fn action_of(policy: &Policy, tool: &str) -> &'static str {
    let _ = (policy, tool);
    "execute"
}
