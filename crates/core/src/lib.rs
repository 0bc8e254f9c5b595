//! The decision core: `decide(&Policy, &Request, &World) -> Decision`.
//!
//! INVARIANT: this crate does no I/O — no sockets, files, clocks or DNS. What it needs
//! from the world (resolved addresses, the fingerprint key) comes in through [`World`].
//!
//! # Entry points
//!
//! - [`prepare`] → [`Prepared::hosts_to_resolve`] → [`Prepared::finish`]: the decision
//!   in two phases, for callers with their own (async, caching) resolver — every check
//!   but DNS first, then the answers for the names that still need them.
//! - [`decide`] / [`decide_with_pointers`]: both phases with [`World::resolver`].
//! - [`Request::from_json`] reads a request; [`label_result`] labels a tool result;
//!   [`may_ever_call`] filters `tools/list`; [`action_of`] names a tool's action.
//!
//! Where a typical change goes: a new check → `checks.rs` and a call in
//! `prepare.rs`; a new destination rule → `conductor-net`; what people read of a
//! decision → `scrub.rs` (scrubbing) and `display.rs` (cutting).
//!
//! # Semantics (DESIGN.md, with the choices it leaves open)
//!
//! Every check but DNS runs and every failing one adds reasons; the decision is
//! `deny` when any reason was added, else `approve` when an approve rule applies,
//! else `allow`. **Resolve last**: host names are resolved only when nothing denies
//! before DNS (see [`prepare`]); a denied call lists the reasons found without DNS.
//!
//! - **input**: the tool name must be `<server>.<tool>` (server `[a-z0-9_-]+`, tool
//!   part non-empty, printable, at most 256 bytes) and the arguments a JSON object.
//!   A malformed tool name skips the tool/role check (it cannot match anything
//!   meaningfully) but every other check still runs.
//! - **identity**: the agent must be defined (`agents`).
//! - **tool / role**: over the agent's rules (roles with `extends` flattened), a
//!   rule *names* the tool when one of its globs matches; it *applies* when it also
//!   covers the tool's action and its `when` conditions hold. A `deny` rule also
//!   applies when a condition cannot be evaluated (wrong argument type: fail
//!   closed); a missing argument fails a condition, so such a deny does not apply.
//!   Applying deny rules → `deny`, check `tool`. Else applying approve rules →
//!   `approve` (reasons carry the approve rule ids, check `tool`). Else an applying
//!   allow rule → allowed. Else `deny`: check `role` with one reason per allow or
//!   approve rule that names the tool but does not apply (action or `when`), or,
//!   when no allow/approve rule names the tool at all, check `tool` with rule
//!   `agents.<agent>.roles`.
//! - **workflow**: a named workflow must exist (`workflows`), list one of the
//!   agent's effective roles (`workflows.<w>.roles`; a role extending a listed
//!   role counts) and match the tool (`workflows.<w>.tools`).
//! - **destination**: the policy's destination check over the tool's declared
//!   pointers and literals (and scanned URLs); each violation is a reason. A name
//!   that carries a value a detector found is denied
//!   ([`NAME_CARRIES_DATA`]) and not resolved.
//! - **data**: the policy's scanner over the arguments (keys too). A finding whose
//!   label level is above the agent's clearance → `data.labels.<label>`; above the
//!   egress maximum of a destination of the call → that egress rule's id. The
//!   egress maximum of a destination is the `max` of the **first** `data.egress`
//!   entry with a matching `to:` pattern (file order, like a firewall), else
//!   `default_egress` (`data.default_egress`). A tool whose facts do not say
//!   `destinations:` has an unknown destination, to which `default_egress` applies
//!   too; `destinations: []` declares a tool that sends nothing out.
//! - **flow**: the same egress maxima apply to the levels of `session_labels`; a
//!   label the policy does not define counts as the highest level.
//!
//! Messages never contain argument values or matched data: they name detectors,
//! labels, JSON pointers and canonical hosts. Before a decision leaves the core,
//! every value a detector matched is scrubbed from all of its strings (a
//! destination's `input`, pointers through secret keys, messages) — see `scrub`.

#![warn(missing_docs, unreachable_pub)]

mod checks;
mod decision;
mod display;
mod prepare;
mod request;
mod scrub;

use std::collections::BTreeSet;

use conductor_policy::{Policy, RuleKind};
use conductor_types::JsonPath;

pub use crate::decision::{Check, Decision, Effect, Reason, World};
pub use crate::prepare::{
    NAME_CARRIES_DATA, Prepared, prepare, prepare_connection, prepare_data_only,
};
pub use crate::request::{
    MAX_REQUEST_BYTES, MAX_TOOL_NAME, Request, RequestError, tool_name_problem,
};

/// Remove from `decision` every value that `findings` matched in `arguments` (see
/// `scrub`). For callers that merge decisions made on different parts of one message
/// (the gate's envelope: a tool name quoted by the other part's messages).
pub fn scrub_decision(
    decision: &mut Decision,
    arguments: &serde_json::Value,
    findings: &[conductor_scan::Finding],
) {
    let scrub = crate::scrub::Scrub::new(arguments, findings);
    let mut findings = findings.to_vec();
    scrub.apply(
        &mut findings,
        &mut decision.destinations,
        &mut decision.reasons,
    );
}

/// Decide one request. Never panics; anything that cannot be evaluated is a deny.
pub fn decide(policy: &Policy, request: &Request, world: &World<'_>) -> Decision {
    decide_with_pointers(policy, request, &[], world)
}

/// [`decide`], with extra JSON pointers whose values are destinations — e.g. the
/// fields a transport learned from the tool's input schema (`format: uri`, a
/// property named `url`). They add to the policy's declared pointers; they never
/// replace or weaken them.
pub fn decide_with_pointers(
    policy: &Policy,
    request: &Request,
    extra_pointers: &[JsonPath],
    world: &World<'_>,
) -> Decision {
    prepare(policy, request, extra_pointers, world.fingerprint_key).finish(world.resolver)
}

/// The data labels a tool *result* carries (for raising a session's labels),
/// sorted and without duplicates.
pub fn label_result(policy: &Policy, result: &serde_json::Value, world: &World<'_>) -> Vec<String> {
    let labels: BTreeSet<String> = policy
        .data()
        .scanner
        .scan(result, world.fingerprint_key)
        .into_iter()
        .map(|f| f.label)
        .collect();
    labels.into_iter().collect()
}

/// Whether `agent` could call `tool` under some arguments (used to filter `tools/list`):
/// some allow or approve rule of the agent names the tool and covers its action, and
/// no deny rule without `when` conditions names it and covers its action.
pub fn may_ever_call(policy: &Policy, agent: &str, tool: &str) -> bool {
    let Some(agent) = policy.agent(agent) else {
        return false;
    };
    if tool_name_problem(tool).is_some() {
        return false;
    }
    let action = policy.action_of(tool);
    let mut some_allow = false;
    for rule in policy.candidate_rules(agent, tool) {
        if !rule.names_tool(tool) || !rule.covers_action(action) {
            continue;
        }
        match rule.kind {
            RuleKind::Deny => {
                if rule.when.is_empty() {
                    return false;
                }
            }
            RuleKind::Allow | RuleKind::Approve => some_allow = true,
        }
    }
    some_allow
}

/// The action a tool performs per the policy's `tools:` facts (default `execute`).
pub fn action_of(policy: &Policy, tool: &str) -> &'static str {
    policy.action_of(tool).name()
}
