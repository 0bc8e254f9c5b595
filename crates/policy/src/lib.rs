//! The Conductor policy file, version 1: load, validate, compile.
//!
//! CONTRACT (used by `conductor-core` and the CLI; keep these signatures):
//! - [`load_file`], [`load_str`] → [`Policy`] or [`LoadError`]
//! - [`Policy::sha256`]
//! - [`LoadError::render`]: every problem as `file:line:col` with a caret
//!
//! Additions (used by `conductor-core`): [`LoadError::problems`] / [`Problem`],
//! the compiled model ([`Agent`], [`Rule`], [`ToolFact`], [`Workflow`],
//! [`DataPolicy`], [`Condition::eval`]) with [`Policy::agent`],
//! [`Policy::candidate_rules`], [`Policy::tool_fact`], [`Policy::action_of`],
//! [`Policy::workflow`], [`Policy::destinations`], [`Policy::data`]; the glob
//! dialect in [`glob`].
//!
//! Loading happens in three steps, each refusing hostile input early:
//! 1. size: files over [`MAX_POLICY_BYTES`] are refused before parsing;
//! 2. YAML → spanned tree (module `node`), under serde-saphyr budgets: nesting depth 32,
//!    at most 1,000 aliases and 20,000 replayed alias events (alias bombs), one
//!    document, 200,000 nodes;
//! 3. tree → `Raw*` structs (unknown keys are errors) → validated, compiled
//!    [`Policy`]. Steps 3's problems are all collected and reported together.
//!
//! Compiled form: per agent, the rules of its roles with `extends` flattened
//! (diamonds deduplicated), each with a stable id such as `roles.operator.allow[0]`;
//! tool globs compiled (dialect in [`glob`]); `tools:` facts looked up by exact
//! name first, then by glob, most specific (most literal characters) first, file
//! order breaking ties.

mod compile;
mod de;
mod error;
pub mod glob;
mod model;
mod node;
mod raw;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use compile::{DEFAULT_LEVELS, check_pointer, parse_duration};
pub use error::{LoadError, Problem};
pub use model::{
    Action, ActionSet, Agent, Condition, DataPolicy, EgressRule, Eval, Rule, RuleIndex, RuleKind,
    Test, ToolFact, Workflow, json_eq,
};
pub use node::MAX_POLICY_BYTES;

use conductor_net::DestPolicy;
use model::Compiled;

/// A validated, compiled policy. Immutable; cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Policy {
    sha256: String,
    c: Compiled,
}

impl Policy {
    /// `sha256:<hex>` naming exactly what is in force: for a policy that references
    /// no other file, the SHA-256 of the policy file's bytes; for one that does (a
    /// `gitleaks` rules file), the SHA-256 of a framed record of the policy file's
    /// digest and each referenced file's name and digest, so that editing a rules
    /// file changes it (audit records and reload both go by it).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The files besides the policy file that loading it read (a `gitleaks` rules
    /// file of a `detect` entry), as the loader opened them: a process that keeps a
    /// policy loaded watches these for changes too.
    pub fn referenced_files(&self) -> &[std::path::PathBuf] {
        &self.c.files
    }

    /// The agent named `name`.
    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.c.agents.get(name)
    }

    /// Every agent, in no particular order.
    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.c.agents.values()
    }

    /// Every rule of the agent's (effective) roles.
    pub fn rules_of<'a>(&'a self, agent: &'a Agent) -> impl Iterator<Item = &'a Rule> + 'a {
        agent
            .rules
            .iter()
            .filter_map(|&i| self.c.rules.get(i as usize))
    }

    /// The rules of the agent whose tool globs could match `tool`: its exact-name
    /// bucket, its server's bucket and every rule with a wildcard over the server
    /// id (callers still test [`Rule::names_tool`]). Rules come in the agent's rule
    /// order, each once.
    pub fn candidate_rules<'a>(
        &'a self,
        agent: &'a Agent,
        tool: &str,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        let ix = &agent.index;
        let exact = ix.exact.get(tool).map_or(&[][..], Vec::as_slice);
        let server = tool
            .split_once('.')
            .and_then(|(s, _)| ix.by_server.get(s))
            .map_or(&[][..], Vec::as_slice);
        Merge::new(
            Merge::new(exact.iter().copied(), server.iter().copied()),
            ix.wild.iter().copied(),
        )
        .filter_map(|pos| agent.rules.get(pos as usize))
        .filter_map(|&i| self.c.rules.get(i as usize))
    }

    /// The `tools:` fact for `tool`: exact-name entry first, else the most
    /// specific matching glob entry.
    pub fn tool_fact(&self, tool: &str) -> Option<&ToolFact> {
        if let Some(&i) = self.c.tools_exact.get(tool) {
            return self.c.tools.get(i);
        }
        let server = tool
            .split_once('.')
            .and_then(|(s, _)| self.c.tools_glob_by_server.get(s))
            .map_or(&[][..], Vec::as_slice);
        Merge::new(
            server.iter().copied(),
            self.c.tools_glob_any.iter().copied(),
        )
        .filter_map(|pos| self.c.tools_glob.get(pos as usize))
        .filter_map(|&i| self.c.tools.get(i))
        .find(|f| f.pattern.matches(tool))
    }

    /// The action `tool` performs (`execute` when the policy does not say).
    pub fn action_of(&self, tool: &str) -> Action {
        self.tool_fact(tool).map_or(Action::Execute, |f| f.action)
    }

    pub fn workflow(&self, name: &str) -> Option<&Workflow> {
        self.c.workflows.get(name)
    }

    /// The compiled `destinations:` section.
    pub fn destinations(&self) -> &DestPolicy {
        &self.c.destinations
    }

    /// The compiled `data:` section (or its secure default).
    pub fn data(&self) -> &DataPolicy {
        &self.c.data
    }

    /// Whether `methods.pass` lets the protocol method `method` through undecided
    /// (only methods the gate does not know; known methods are always decided).
    pub fn method_passes(&self, method: &str) -> bool {
        self.c.pass_methods.iter().any(|g| g.matches(method))
    }

    /// `sessions.label_ttl`, when the policy sets it.
    pub fn label_ttl(&self) -> Option<std::time::Duration> {
        self.c.label_ttl
    }

    /// `sessions.approval_ttl`, when the policy sets it.
    pub fn approval_ttl(&self) -> Option<std::time::Duration> {
        self.c.approval_ttl
    }

    /// `sessions.approve_in_client`: whether a held call may be put to the person at
    /// the MCP client (default false: only approvers outside the agent's channel decide).
    pub fn approve_in_client(&self) -> bool {
        self.c.approve_in_client
    }

    /// How long a call held by the approve rules `rules` waits (the rule ids of its
    /// decision's reasons; ids of other rules are ignored): the shortest `expires` of
    /// those rules, else `sessions.approval_ttl`. `None`: the caller's default.
    pub fn approval_ttl_of<'a>(
        &self,
        rules: impl Iterator<Item = &'a conductor_types::RuleId>,
    ) -> Option<std::time::Duration> {
        rules
            .filter_map(|id| {
                self.c
                    .rules
                    .iter()
                    .find(|r| r.kind == RuleKind::Approve && &r.id == id)
            })
            .filter_map(|r| r.expires)
            .min()
            .or(self.c.approval_ttl)
    }
}

/// Load and compile the policy at `path` (files it references, such as gitleaks
/// rule files, are resolved relative to its directory).
pub fn load_file(path: &Path) -> Result<Policy, LoadError> {
    let name = path.display().to_string();
    let text = match compile::read_limited(path, MAX_POLICY_BYTES as u64) {
        Ok(t) => t,
        Err(m) => {
            return Err(LoadError::new(
                &name,
                "",
                vec![Problem::at(
                    None,
                    format!("cannot read the policy file: {m}"),
                )],
            ));
        }
    };
    let base = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    load_str(&text, &name, base)
}

/// Load and compile policy text. `name` is used in diagnostics; `base_dir` resolves
/// referenced files (none allowed when `None`).
pub fn load_str(source: &str, name: &str, base_dir: Option<&Path>) -> Result<Policy, LoadError> {
    let root = match node::parse(source) {
        Ok(n) => n,
        Err(e) => {
            return Err(LoadError::new(
                name,
                source,
                vec![Problem::at(e.loc, e.message)],
            ));
        }
    };
    let (raw, de_problems) = de::collect::<raw::RawPolicy>(&root);
    let Some(raw) = raw else {
        return Err(LoadError::new(
            name,
            source,
            problems_or_default(de_problems),
        ));
    };
    let mut problems = problems_from(de_problems);
    let start = node::Loc {
        line: 1,
        col: 1,
        offset: 0,
        len: 0,
    };
    match compile::compile(raw, start, base_dir) {
        Ok(c) if problems.is_empty() => Ok(Policy {
            sha256: policy_digest(source, &c.file_digests),
            c,
        }),
        Ok(_) => Err(LoadError::new(name, source, problems)),
        Err(more) => {
            problems.extend(more);
            Err(LoadError::new(name, source, problems))
        }
    }
}

/// The digest [`Policy::sha256`] returns. With referenced files the input is framed
/// (a domain tag that no policy text can begin with — YAML forbids NUL — then
/// fixed-size digests and length-prefixed names), so no two different sets of files
/// frame to the same bytes.
fn policy_digest(source: &str, files: &[(String, [u8; 32])]) -> String {
    if files.is_empty() {
        return format!("sha256:{}", hex::encode(Sha256::digest(source.as_bytes())));
    }
    let mut h = Sha256::new();
    h.update(b"\0conductor policy with referenced files v1\0");
    h.update(Sha256::digest(source.as_bytes()));
    h.update((files.len() as u64).to_be_bytes());
    for (name, digest) in files {
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update(digest);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn problems_from(p: Vec<de::DeProblem>) -> Vec<Problem> {
    p.into_iter()
        .map(|p| Problem::at(p.loc, p.message))
        .collect()
}

fn problems_or_default(p: Vec<de::DeProblem>) -> Vec<Problem> {
    let out = problems_from(p);
    if out.is_empty() {
        vec![Problem::at(None, "the policy could not be read")]
    } else {
        out
    }
}

/// Merge two ascending sequences into one ascending sequence without duplicates.
struct Merge<A: Iterator<Item = u32>, B: Iterator<Item = u32>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = u32>, B: Iterator<Item = u32>> Merge<A, B> {
    fn new(a: A, b: B) -> Self {
        Merge {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<A: Iterator<Item = u32>, B: Iterator<Item = u32>> Iterator for Merge<A, B> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        match (self.a.peek().copied(), self.b.peek().copied()) {
            (Some(x), Some(y)) => {
                if x <= y {
                    self.a.next();
                }
                if y <= x {
                    self.b.next();
                }
                Some(x.min(y))
            }
            (Some(_), None) => self.a.next(),
            (None, Some(_)) => self.b.next(),
            (None, None) => None,
        }
    }
}
