//! The compiled policy: everything validated, globs and regexes compiled, role
//! inheritance flattened per agent.

use std::collections::HashMap;

use conductor_net::{DestPattern, DestPolicy};
use conductor_scan::Scanner;
use conductor_types::{JsonPath, RuleId};
use serde_json::Value;

use crate::glob::Glob;

/// The action a tool performs. Declared in the policy's `tools:` facts;
/// `execute` when the policy says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Read,
    Write,
    Delete,
    Execute,
    Admin,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Read,
        Action::Write,
        Action::Delete,
        Action::Execute,
        Action::Admin,
    ];
    pub const NAMES: [&'static str; 5] = ["read", "write", "delete", "execute", "admin"];

    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Execute => "execute",
            Action::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of actions (a rule's `actions:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActionSet(u8);

impl ActionSet {
    pub fn insert(&mut self, a: Action) {
        self.0 |= a.bit();
    }
    pub fn contains(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }
    pub fn names(self) -> Vec<&'static str> {
        Action::ALL
            .into_iter()
            .filter(|a| self.contains(*a))
            .map(Action::name)
            .collect()
    }
}

/// Which list of a role a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKind {
    Allow,
    Approve,
    Deny,
}

impl RuleKind {
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Allow => "allow",
            RuleKind::Approve => "approve",
            RuleKind::Deny => "deny",
        }
    }
}

/// One rule of a role.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Stable id: `roles.<role>.<allow|approve|deny>[<index>]`.
    pub id: RuleId,
    pub role: String,
    pub kind: RuleKind,
    pub tools: Vec<Glob>,
    /// `None`: any action.
    pub actions: Option<ActionSet>,
    /// Every condition must hold.
    pub when: Vec<Condition>,
    /// `approve` rules: how long a call it holds waits (overrides
    /// `sessions.approval_ttl`).
    pub expires: Option<std::time::Duration>,
}

impl Rule {
    /// Whether one of the rule's tool globs matches `tool`.
    pub fn names_tool(&self, tool: &str) -> bool {
        self.tools.iter().any(|g| g.matches(tool))
    }

    /// Whether the rule applies to `action`.
    pub fn covers_action(&self, action: Action) -> bool {
        self.actions.is_none_or(|s| s.contains(action))
    }
}

/// One `when:` entry: a JSON pointer into the arguments and the tests its value must pass.
#[derive(Debug, Clone)]
pub struct Condition {
    pub pointer: JsonPath,
    pub tests: Vec<Test>,
}

/// One constraint on an argument.
#[derive(Debug, Clone)]
pub enum Test {
    Glob(Glob),
    /// Matched against the whole string (the pattern is anchored at both ends).
    Regex {
        source: String,
        regex: regex::Regex,
    },
    Equals(Value),
    OneOf(Vec<Value>),
    Min(f64),
    Max(f64),
}

/// The result of evaluating a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eval {
    Holds,
    /// The argument is missing or does not satisfy the test (message names the pointer).
    Fails(String),
    /// The test cannot be applied to the argument (wrong type). Never allows; a
    /// `deny` rule whose condition errs applies.
    Error(String),
}

impl Condition {
    /// Evaluate against the call's arguments. Messages never contain argument values.
    pub fn eval(&self, arguments: &Value) -> Eval {
        let Some(v) = self.pointer.get(arguments) else {
            return Eval::Fails(format!("argument `{}` is missing", self.pointer));
        };
        for t in &self.tests {
            let r = t.eval(v, &self.pointer);
            if r != Eval::Holds {
                return r;
            }
        }
        Eval::Holds
    }
}

impl Test {
    fn eval(&self, v: &Value, ptr: &JsonPath) -> Eval {
        match self {
            Test::Glob(g) => match v.as_str() {
                Some(s) if g.matches(s) => Eval::Holds,
                Some(_) => Eval::Fails(format!(
                    "argument `{ptr}` does not match glob `{}`",
                    g.as_str()
                )),
                None => Eval::Error(format!(
                    "argument `{ptr}` is not a string, so glob `{}` cannot apply",
                    g.as_str()
                )),
            },
            Test::Regex { source, regex } => match v.as_str() {
                Some(s) if regex.is_match(s) => Eval::Holds,
                Some(_) => Eval::Fails(format!("argument `{ptr}` does not match regex `{source}`")),
                None => Eval::Error(format!(
                    "argument `{ptr}` is not a string, so regex `{source}` cannot apply"
                )),
            },
            Test::Equals(want) => {
                if json_eq(v, want) {
                    Eval::Holds
                } else {
                    Eval::Fails(format!("argument `{ptr}` does not equal `{want}`"))
                }
            }
            Test::OneOf(set) => {
                if set.iter().any(|w| json_eq(v, w)) {
                    Eval::Holds
                } else {
                    Eval::Fails(format!(
                        "argument `{ptr}` is not one of the {} allowed values",
                        set.len()
                    ))
                }
            }
            Test::Min(min) => match v.as_f64() {
                Some(x) if x >= *min => Eval::Holds,
                Some(_) => Eval::Fails(format!("argument `{ptr}` is below the minimum `{min}`")),
                None => Eval::Error(format!(
                    "argument `{ptr}` is not a number, so `min` cannot apply"
                )),
            },
            Test::Max(max) => match v.as_f64() {
                Some(x) if x <= *max => Eval::Holds,
                Some(_) => Eval::Fails(format!("argument `{ptr}` is above the maximum `{max}`")),
                None => Eval::Error(format!(
                    "argument `{ptr}` is not a number, so `max` cannot apply"
                )),
            },
        }
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// An agent with its role rules flattened (`extends` followed, diamonds deduplicated).
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    /// Roles as listed in the policy.
    pub roles: Vec<String>,
    /// The listed roles and every role they extend, transitively, without duplicates.
    pub effective_roles: Vec<String>,
    /// Index into [`DataPolicy::levels`].
    pub clearance: usize,
    /// Indices into the policy's rules: every rule of every effective role.
    pub rules: Vec<u32>,
    /// Lookup of `rules` by tool name.
    pub(crate) index: RuleIndex,
}

/// An agent's rules by tool name; entries are positions in [`Agent::rules`].
#[derive(Debug, Clone, Default)]
pub struct RuleIndex {
    /// Rules with an exact-name glob, by that name.
    pub(crate) exact: HashMap<String, Vec<u32>>,
    /// Rules with a wildcard glob under a literal `<server>.`, by server.
    pub(crate) by_server: HashMap<String, Vec<u32>>,
    /// Rules with a wildcard glob over the server id (`*.x`, `*`, `git*.x`).
    pub(crate) wild: Vec<u32>,
}

/// Facts about the tools one `tools:` entry matches.
#[derive(Debug, Clone)]
pub struct ToolFact {
    /// `tools.<key>`.
    pub id: RuleId,
    pub pattern: Glob,
    pub action: Action,
    /// Entries starting with `/`: JSON pointers whose values are destinations.
    pub pointers: Vec<JsonPath>,
    /// Other entries: literal destinations the tool always reaches.
    pub literals: Vec<String>,
    /// Whether the fact says `destinations:` at all. `destinations: []` declares a
    /// tool that sends nothing out; a fact without `destinations` leaves them unknown
    /// (the call then goes to an unknown destination: `default_egress` applies).
    pub declares_destinations: bool,
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub roles: Vec<String>,
    pub tools: Vec<Glob>,
}

/// One `data.egress` entry.
#[derive(Debug, Clone)]
pub struct EgressRule {
    /// `data.egress[<index>]`.
    pub id: RuleId,
    pub to: Vec<DestPattern>,
    /// Index into [`DataPolicy::levels`].
    pub max: usize,
}

/// The `data:` section (or its secure default).
#[derive(Debug, Clone)]
pub struct DataPolicy {
    /// Ordered, lowest first.
    pub levels: Vec<String>,
    /// Label name → level index.
    pub labels: HashMap<String, usize>,
    pub egress: Vec<EgressRule>,
    /// Level index for destinations no egress rule names.
    pub default_egress: usize,
    pub scanner: Scanner,
    /// `false` when the policy has no `data:` section and the secure default applies.
    pub declared: bool,
}

impl DataPolicy {
    pub fn level_name(&self, i: usize) -> &str {
        self.levels.get(i).map_or("?", String::as_str)
    }

    /// The highest level index.
    pub fn top(&self) -> usize {
        self.levels.len().saturating_sub(1)
    }
}

/// What the compiled policy holds (see [`crate::Policy`]).
#[derive(Debug, Clone)]
pub struct Compiled {
    pub agents: HashMap<String, Agent>,
    pub rules: Vec<Rule>,
    /// Exact-name facts.
    pub tools_exact: HashMap<String, usize>,
    /// Glob facts, most specific first.
    pub tools_glob: Vec<usize>,
    /// Positions in `tools_glob` of the glob facts under a literal `<server>.`, by server.
    pub tools_glob_by_server: HashMap<String, Vec<u32>>,
    /// Positions in `tools_glob` of the other glob facts.
    pub tools_glob_any: Vec<u32>,
    pub tools: Vec<ToolFact>,
    pub workflows: HashMap<String, Workflow>,
    pub destinations: DestPolicy,
    pub data: DataPolicy,
    /// `methods.pass`: protocol methods let through without a decision.
    pub pass_methods: Vec<Glob>,
    /// `sessions.label_ttl`: how long a received label restricts the agent.
    pub label_ttl: Option<std::time::Duration>,
    /// `sessions.approval_ttl`: how long a held call waits for a person.
    pub approval_ttl: Option<std::time::Duration>,
    /// `sessions.approve_in_client`: a held call may be put to the client's user.
    pub approve_in_client: bool,
    /// The files besides the policy file that compiling it read (gitleaks rules).
    pub files: Vec<std::path::PathBuf>,
    /// Each referenced file compiled, as the policy names it, with the SHA-256 of the
    /// bytes read: part of [`crate::Policy::sha256`].
    pub file_digests: Vec<(String, [u8; 32])>,
}
