//! The checks a reason can name.

use serde::{Deserialize, Serialize};

/// Which of the checks produced a reason (DESIGN.md: the `check` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// The agent is not known to the policy (or its credential did not prove it).
    Identity,
    /// No rule lets the agent call the tool, or a deny rule names it.
    Tool,
    /// Rules name the tool, but not for this action or with conditions this call fails.
    Role,
    /// The call is outside the named workflow.
    Workflow,
    /// A destination of the call is out of scope.
    Destination,
    /// The data sent is above the agent's clearance or a destination's egress maximum.
    Data,
    /// The session has received data that may not flow to a destination of the call.
    Flow,
    /// A tool descriptor changed during the session.
    Pin,
    /// The request itself is malformed or ambiguous.
    Input,
    /// The decision could not be recorded in the audit store.
    Audit,
    /// A held call was denied by a person or expired.
    Approval,
}

impl Check {
    /// Every check, in the order reasons are listed.
    pub const ALL: [Check; 11] = [
        Check::Identity,
        Check::Tool,
        Check::Role,
        Check::Workflow,
        Check::Destination,
        Check::Data,
        Check::Flow,
        Check::Pin,
        Check::Input,
        Check::Audit,
        Check::Approval,
    ];

    /// The name used in decisions (`tool`, `role`, …).
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

    /// The check with this name.
    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for c in Check::ALL {
            assert_eq!(Check::from_name(c.name()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
        assert_eq!(Check::from_name("nope"), None);
    }
}
