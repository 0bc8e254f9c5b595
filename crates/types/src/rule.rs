//! [`RuleId`]: the stable id of the rule (or built-in check) behind a reason.
//!
//! Rule ids are paths into the policy (`roles.operator.allow[0]`) or names of
//! built-in rules (`destinations.blocked.cloud-metadata`). Every crate builds them
//! through the constructors here, so the spelling of a rule id lives in one place.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The id of a rule. Build it with a constructor; compare it with [`RuleId::as_str`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(String);

impl RuleId {
    /// A rule id read back from storage (an audit record, a decision from elsewhere).
    /// Code that decides uses the constructors instead.
    pub fn from_stored(id: String) -> RuleId {
        RuleId(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `request.<field>`: the request itself is malformed at `field` (`tool`,
    /// `arguments`, `id`, `uri`, `method`, `params`, …).
    pub fn request(field: &str) -> RuleId {
        RuleId(format!("request.{field}"))
    }

    /// `request`: the input is not a request at all (unparseable JSON, not an object).
    pub fn unreadable_request() -> RuleId {
        RuleId("request".into())
    }

    /// `agents`: the agent is not defined.
    pub fn agents() -> RuleId {
        RuleId("agents".into())
    }

    /// `agents.<agent>.roles`: none of the agent's roles names the tool.
    pub fn agent_roles(agent: &str) -> RuleId {
        RuleId(format!("agents.{agent}.roles"))
    }

    /// `roles.<role>.<kind>[<index>]`, kind being `allow`, `approve` or `deny`.
    pub fn role_rule(role: &str, kind: &str, index: usize) -> RuleId {
        RuleId(format!("roles.{role}.{kind}[{index}]"))
    }

    /// `workflows`: the named workflow does not exist.
    pub fn workflows() -> RuleId {
        RuleId("workflows".into())
    }

    /// `workflows.<w>.roles`: the workflow does not list one of the agent's roles.
    pub fn workflow_roles(workflow: &str) -> RuleId {
        RuleId(format!("workflows.{workflow}.roles"))
    }

    /// `workflows.<w>.tools`: the workflow does not include the tool.
    pub fn workflow_tools(workflow: &str) -> RuleId {
        RuleId(format!("workflows.{workflow}.tools"))
    }

    /// `data.labels.<label>`: a finding is above the agent's clearance.
    pub fn data_label(label: &str) -> RuleId {
        RuleId(format!("data.labels.{label}"))
    }

    /// `data.egress[<index>]`: a finding or a session label is above that egress maximum.
    pub fn data_egress(index: usize) -> RuleId {
        RuleId(format!("data.egress[{index}]"))
    }

    /// `data.default_egress`: above the maximum for destinations no egress rule names.
    pub fn default_egress() -> RuleId {
        RuleId("data.default_egress".into())
    }

    /// `tools.<key>`: the `tools:` entry whose facts (action, destinations) apply.
    pub fn tool_fact(key: &str) -> RuleId {
        RuleId(format!("tools.{key}"))
    }

    /// `destinations.<what>`: a built-in destination rule (`limit`, `unparseable`,
    /// `scheme`, `parser-mismatch`, `unresolvable`, `allow`, `name-carries-data`, …).
    pub fn destinations(what: &str) -> RuleId {
        RuleId(format!("destinations.{what}"))
    }

    /// `destinations.deny[<index>]`.
    pub fn destination_deny(index: usize) -> RuleId {
        RuleId(format!("destinations.deny[{index}]"))
    }

    /// `destinations.blocked.<class>`: a built-in blocked class.
    pub fn destination_blocked(class: &str) -> RuleId {
        RuleId(format!("destinations.blocked.{class}"))
    }

    /// `pin.<tool>`: the tool's descriptor changed during the session.
    pub fn pin(tool: &str) -> RuleId {
        RuleId(format!("pin.{tool}"))
    }

    /// `sessions`: the session state (labels, pins) could not be read or written.
    pub fn sessions() -> RuleId {
        RuleId("sessions".into())
    }

    /// `egress.<what>`: a rule of the sandbox's egress proxy (`internal`, `sni`,
    /// `redirect`, …) rather than of the call's arguments.
    pub fn egress(what: &str) -> RuleId {
        RuleId(format!("egress.{what}"))
    }

    /// `audit`: the decision could not be recorded.
    pub fn audit() -> RuleId {
        RuleId("audit".into())
    }

    /// `methods.<method>`: a protocol method the gate does not let pass.
    pub fn method(method: &str) -> RuleId {
        RuleId(format!("methods.{method}"))
    }

    /// `approval.<what>`: a held call was denied (`denied`) or expired (`expired`).
    pub fn approval(what: &str) -> RuleId {
        RuleId(format!("approval.{what}"))
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RuleId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RuleId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(
            RuleId::role_rule("operator", "allow", 0),
            "roles.operator.allow[0]"
        );
        assert_eq!(
            RuleId::destination_blocked("cloud-metadata"),
            "destinations.blocked.cloud-metadata"
        );
        assert_eq!(RuleId::data_egress(2).as_str(), "data.egress[2]");
        assert_eq!(serde_json::to_value(RuleId::audit()).unwrap(), "audit");
    }
}
