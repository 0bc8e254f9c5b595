//! The policy file as written (version 1). Unknown keys are errors; every
//! problem is collected (see [`crate::de`]). Validation and compilation happen
//! in [`crate::compile`].

use serde::Deserialize;

use crate::de::{Entries, Lenient, Sp};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub version: Option<Sp<serde_json::Value>>,
    #[serde(default)]
    pub agents: Lenient<Entries<Lenient<RawAgent>>>,
    #[serde(default)]
    pub roles: Lenient<Entries<Lenient<RawRole>>>,
    #[serde(default)]
    pub tools: Lenient<Entries<Lenient<RawTool>>>,
    #[serde(default)]
    pub destinations: Lenient<Sp<RawDestinations>>,
    #[serde(default)]
    pub data: Lenient<Sp<RawData>>,
    #[serde(default)]
    pub workflows: Lenient<Entries<Lenient<RawWorkflow>>>,
    #[serde(default)]
    pub methods: Lenient<Sp<RawMethods>>,
    #[serde(default)]
    pub sessions: Lenient<Sp<RawSessions>>,
}

/// `sessions:` — how long what an agent received restricts it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    /// How long a label stays on the agent after data carrying it was received
    /// (`90s`, `30m`, `24h`, `7d`).
    pub label_ttl: Option<Sp<String>>,
    /// How long a call the policy marks `approve` is held for a person's decision
    /// before it is denied (default 10 minutes).
    pub approval_ttl: Option<Sp<String>>,
    /// Whether a held call may also be put to the person at the MCP client (an
    /// `elicitation/create` form or an `input_required` result) when the client can ask
    /// its user (default false).
    pub approve_in_client: Option<Sp<bool>>,
}

/// `methods:` — protocol methods the gate does not know, let through explicitly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMethods {
    /// Globs of method names (`vendor/*`) forwarded without a decision.
    #[serde(default)]
    pub pass: Vec<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    #[serde(default)]
    pub roles: Vec<Sp<String>>,
    pub clearance: Option<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    #[serde(default)]
    pub extends: Vec<Sp<String>>,
    #[serde(default)]
    pub allow: Vec<Lenient<Sp<RawRule>>>,
    #[serde(default)]
    pub approve: Vec<Lenient<Sp<RawRule>>>,
    #[serde(default)]
    pub deny: Vec<Lenient<Sp<RawRule>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub tools: Sp<Vec<Sp<String>>>,
    pub actions: Option<Sp<Vec<Sp<String>>>>,
    #[serde(default)]
    pub when: Entries<Lenient<Sp<RawConstraint>>>,
    /// `approve` rules only: how long a call this rule holds waits for a person
    /// (`90s`, `30m`, `24h`, `7d`); overrides `sessions.approval_ttl`.
    pub expires: Option<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConstraint {
    pub glob: Option<Sp<String>>,
    pub regex: Option<Sp<String>>,
    pub equals: Option<Sp<serde_json::Value>>,
    pub one_of: Option<Sp<Vec<serde_json::Value>>>,
    pub min: Option<Sp<f64>>,
    pub max: Option<Sp<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTool {
    pub action: Option<Sp<String>>,
    /// `None` when the key is absent (destinations unknown), `Some([])` for a tool
    /// that sends nothing out.
    #[serde(default)]
    pub destinations: Option<Vec<Sp<String>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDestinations {
    #[serde(default)]
    pub allow: Vec<Sp<String>>,
    #[serde(default)]
    pub deny: Vec<Sp<String>>,
    #[serde(default)]
    pub permit: Vec<Sp<String>>,
    pub scan: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    pub levels: Option<Sp<Vec<Sp<String>>>>,
    #[serde(default)]
    pub labels: Entries<Lenient<RawLabel>>,
    #[serde(default)]
    pub egress: Vec<Lenient<Sp<RawEgress>>>,
    pub default_egress: Option<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLabel {
    pub level: Sp<String>,
    #[serde(default)]
    pub detect: Vec<Sp<serde_json::Value>>,
    #[serde(default, rename = "match")]
    pub patterns: Vec<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    pub to: Sp<Vec<Sp<String>>>,
    pub max: Sp<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    pub roles: Sp<Vec<Sp<String>>>,
    pub tools: Sp<Vec<Sp<String>>>,
}
