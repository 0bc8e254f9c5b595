//! The decision core: `decide(&Policy, &Request, &World) -> Decision`.
//!
//! INVARIANT: this crate does no I/O — no sockets, files, clocks or DNS. What it needs
//! from the world (resolved addresses, the fingerprint key) comes in through [`World`].
//!
//! CONTRACT (used by the CLI and transports; keep these signatures):
//! [`Request`], [`Request::from_json`], [`Decision`], [`Effect`], [`Check`], [`Reason`],
//! [`World`], [`decide`], [`label_result`], [`may_ever_call`], [`action_of`].
//!
//! Additions: [`RequestError::line`] / [`RequestError::column`], [`MAX_REQUEST_BYTES`],
//! [`tool_name_problem`], [`MAX_TOOL_NAME`], [`Check::name`], [`decide_with_pointers`].
//!
//! # Semantics (DESIGN.md, with the choices it leaves open)
//!
//! Every check runs and every failing one adds reasons; the decision is `deny` when
//! any reason was added, else `approve` when an approve rule applies, else `allow`.
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
//!   pointers and literals (and scanned URLs); each violation is a reason.
//! - **data**: the policy's scanner over the arguments (keys too). A finding whose
//!   label level is above the agent's clearance → `data.labels.<label>`; above the
//!   egress maximum of a destination of the call → that egress rule's id. The
//!   egress maximum of a destination is the `max` of the **first** `data.egress`
//!   entry with a matching `to:` pattern (file order, like a firewall), else
//!   `default_egress` (`data.default_egress`).
//! - **flow**: the same egress maxima apply to the levels of `session_labels`; a
//!   label the policy does not define counts as the highest level.
//!
//! Messages never contain argument values or matched data: they name detectors,
//! labels, JSON pointers and canonical hosts. Before a decision leaves the core,
//! every value a detector matched is scrubbed from all of its strings (a
//! destination's `input`, pointers through secret keys, messages) — see `scrub`.

mod scrub;

use std::collections::BTreeSet;

use conductor_net::{Destination, Resolver};
use conductor_policy::{Action, Agent, DataPolicy, Eval, Policy, Rule, RuleKind};
use conductor_scan::{Finding, FingerprintKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    /// 1-based line of the problem (0 when unknown).
    pub line: usize,
    /// 1-based column of the problem (0 when unknown).
    pub column: usize,
}

/// Largest request accepted by [`Request::from_json`], in bytes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

impl Request {
    /// Parse one request from JSON text; the error names what was wrong and where.
    pub fn from_json(text: &str) -> Result<Request, RequestError> {
        if text.len() > MAX_REQUEST_BYTES {
            return Err(RequestError {
                message: format!(
                    "the request is {} bytes, more than the limit of {MAX_REQUEST_BYTES}",
                    text.len()
                ),
                line: 0,
                column: 0,
            });
        }
        serde_json::from_str(text).map_err(|e| request_error(text, &e))
    }
}

fn request_error(text: &str, e: &serde_json::Error) -> RequestError {
    let mut message = e.to_string();
    if e.classify() == serde_json::error::Category::Data && !message.contains("field `") {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => {
                if let Some(field) = mistyped_field(&m) {
                    message = format!("field `{field}`: {message}");
                }
            }
            Ok(_) => {
                message = format!(
                    "a request is a json object with `agent`, `tool` and optional `arguments`, `workflow`, `session`, `session_labels` ({message})"
                );
            }
            Err(_) => {}
        }
    }
    RequestError {
        message,
        line: e.line(),
        column: e.column(),
    }
}

/// The first field whose JSON type is wrong for a [`Request`].
fn mistyped_field(m: &serde_json::Map<String, Value>) -> Option<&'static str> {
    let string = |k: &str| m.get(k).is_some_and(|v| !v.is_string());
    let opt_string = |k: &str| m.get(k).is_some_and(|v| !(v.is_string() || v.is_null()));
    if string("agent") {
        return Some("agent");
    }
    if string("tool") {
        return Some("tool");
    }
    if opt_string("workflow") {
        return Some("workflow");
    }
    if opt_string("session") {
        return Some("session");
    }
    if m.get("session_labels")
        .is_some_and(|v| !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    {
        return Some("session_labels");
    }
    None
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

/// Longest tool name accepted (bytes).
pub const MAX_TOOL_NAME: usize = 256;

/// Why `tool` is not a qualified tool name `<server>.<tool>`, if it is not.
pub fn tool_name_problem(tool: &str) -> Option<String> {
    let shown = show(tool);
    if tool.len() > MAX_TOOL_NAME {
        return Some(format!(
            "tool name `{shown}` is longer than {MAX_TOOL_NAME} bytes"
        ));
    }
    let Some((server, name)) = tool.split_once('.') else {
        return Some(format!(
            "tool name `{shown}` is not a qualified name `<server>.<tool>`"
        ));
    };
    if server.is_empty()
        || !server
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Some(format!(
            "tool name `{shown}` has an invalid server id; server ids match `[a-z0-9_-]+`"
        ));
    }
    if name.is_empty() {
        return Some(format!("tool name `{shown}` has an empty tool part"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some(format!(
            "tool name `{shown}` contains whitespace or control characters"
        ));
    }
    None
}

/// User input shown in a message: control characters escaped, at most 80 characters.
fn show(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 80 {
            out.push('…');
            break;
        }
        if c.is_control() || c == '`' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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
    extra_pointers: &[String],
    world: &World<'_>,
) -> Decision {
    let mut denials: Vec<Reason> = Vec::new();
    let mut approvals: Vec<Reason> = Vec::new();
    let tool = request.tool.as_str();

    // input
    let tool_ok = match tool_name_problem(tool) {
        None => true,
        Some(message) => {
            denials.push(Reason {
                check: Check::Input,
                rule: "request.tool".into(),
                message,
            });
            false
        }
    };
    if !request.arguments.is_object() {
        denials.push(Reason {
            check: Check::Input,
            rule: "request.arguments".into(),
            message: "arguments must be a json object".into(),
        });
    }

    // identity
    let agent = policy.agent(&request.agent);
    if agent.is_none() {
        denials.push(Reason {
            check: Check::Identity,
            rule: "agents".into(),
            message: format!(
                "agent `{}` is not defined in the policy",
                show(&request.agent)
            ),
        });
    }

    // tool / role
    let action = policy.action_of(tool);
    if let (Some(agent), true) = (agent, tool_ok) {
        tool_and_role(
            policy,
            agent,
            tool,
            action,
            &request.arguments,
            &mut denials,
            &mut approvals,
        );
    }

    // workflow
    if let Some(w) = &request.workflow {
        workflow_check(policy, agent, w, tool, tool_ok, &mut denials);
    }

    // destination
    let (declared, literals) = match policy.tool_fact(tool) {
        Some(f) => (f.pointers.as_slice(), f.literals.as_slice()),
        None => (&[][..], &[][..]),
    };
    let merged: Vec<String>;
    let pointers = if extra_pointers.is_empty() {
        declared
    } else {
        merged = declared
            .iter()
            .chain(extra_pointers.iter().filter(|p| !declared.contains(p)))
            .cloned()
            .collect();
        merged.as_slice()
    };
    let outcome =
        policy
            .destinations()
            .evaluate(&request.arguments, pointers, literals, world.resolver);
    for v in &outcome.violations {
        denials.push(Reason {
            check: Check::Destination,
            rule: v.rule.clone(),
            message: v.message.clone(),
        });
    }

    // data and flow
    let data = policy.data();
    let mut findings = data.scanner.scan(&request.arguments, world.fingerprint_key);
    let egress: Vec<(&Destination, usize, String)> = outcome
        .destinations
        .iter()
        .map(|d| {
            let (max, id) = egress_of(data, d);
            (d, max, id)
        })
        .collect();
    data_check(
        data,
        agent,
        &request.agent,
        &findings,
        &egress,
        &mut denials,
    );
    flow_check(data, &request.session_labels, &egress, &mut denials);
    drop(egress);

    dedup(&mut denials);
    // INVARIANT: `allow` only when no check added a reason and no approve rule
    // applied; every path that could not evaluate something added a reason above.
    let (decision, reasons) = if !denials.is_empty() {
        (Effect::Deny, denials)
    } else if !approvals.is_empty() {
        (Effect::Approve, approvals)
    } else {
        (Effect::Allow, Vec::new())
    };
    let mut reasons = reasons;
    let mut destinations = outcome.destinations;
    scrub::scrub(
        &request.arguments,
        &mut findings,
        &mut destinations,
        &mut reasons,
    );
    Decision {
        decision,
        reasons,
        destinations,
        findings,
        policy: policy.sha256().to_string(),
    }
}

fn dedup(reasons: &mut Vec<Reason>) {
    if reasons.len() > 32 {
        let mut seen = std::collections::HashSet::new();
        reasons.retain(|r| seen.insert((r.check, r.rule.clone(), r.message.clone())));
        return;
    }
    // Usually few reasons: a quadratic scan beats hashing.
    let mut i = 0;
    while i < reasons.len() {
        let dup = reasons
            .get(..i)
            .unwrap_or_default()
            .iter()
            .any(|r| Some(r) == reasons.get(i));
        if dup {
            reasons.remove(i);
        } else {
            i += 1;
        }
    }
}

/// Conditions of a rule, combined: any failing condition → `Fails`; else any
/// condition that cannot be evaluated → `Error`; else `Holds`.
fn eval_when(rule: &Rule, arguments: &Value) -> Eval {
    let mut error = None;
    for c in &rule.when {
        match c.eval(arguments) {
            Eval::Holds => {}
            f @ Eval::Fails(_) => return f,
            e @ Eval::Error(_) => {
                if error.is_none() {
                    error = Some(e);
                }
            }
        }
    }
    error.unwrap_or(Eval::Holds)
}

fn tool_and_role(
    policy: &Policy,
    agent: &Agent,
    tool: &str,
    action: Action,
    arguments: &Value,
    denials: &mut Vec<Reason>,
    approvals: &mut Vec<Reason>,
) {
    let shown = show(tool);
    let mut denied = Vec::new();
    let mut approve = Vec::new();
    let mut allowed = false;
    let mut near_misses: Vec<Reason> = Vec::new();
    for rule in policy.candidate_rules(agent, tool) {
        if !rule.names_tool(tool) {
            continue;
        }
        let covers = rule.covers_action(action);
        match rule.kind {
            RuleKind::Deny => {
                if !covers {
                    continue;
                }
                match eval_when(rule, arguments) {
                    Eval::Holds => denied.push(Reason {
                        check: Check::Tool,
                        rule: rule.id.clone(),
                        message: format!(
                            "role `{}` denies `{shown}` to agent `{}`",
                            rule.role,
                            show(&agent.name)
                        ),
                    }),
                    // INVARIANT: a deny whose condition cannot be evaluated applies
                    // (fail closed); an allow in the same situation does not.
                    Eval::Error(m) => denied.push(Reason {
                        check: Check::Tool,
                        rule: rule.id.clone(),
                        message: format!(
                            "role `{}` denies `{shown}` to agent `{}` ({m}; a deny whose condition cannot be evaluated applies)",
                            rule.role,
                            show(&agent.name)
                        ),
                    }),
                    Eval::Fails(_) => {}
                }
            }
            RuleKind::Allow | RuleKind::Approve => {
                if !covers {
                    let allowed_actions = rule
                        .actions
                        .map(|s| s.names().join(", "))
                        .unwrap_or_default();
                    near_misses.push(Reason {
                        check: Check::Role,
                        rule: rule.id.clone(),
                        message: format!(
                            "role `{}` {} `{shown}` only for {allowed_actions}; its action is `{}`",
                            rule.role,
                            verb(rule.kind),
                            action.name()
                        ),
                    });
                    continue;
                }
                match eval_when(rule, arguments) {
                    Eval::Holds => {
                        if rule.kind == RuleKind::Allow {
                            allowed = true;
                        } else {
                            approve.push(Reason {
                                check: Check::Tool,
                                rule: rule.id.clone(),
                                message: format!(
                                    "role `{}` requires a human to approve `{shown}`",
                                    rule.role
                                ),
                            });
                        }
                    }
                    Eval::Fails(m) | Eval::Error(m) => near_misses.push(Reason {
                        check: Check::Role,
                        rule: rule.id.clone(),
                        message: format!(
                            "role `{}` {} `{shown}` only under conditions this call fails: {m}",
                            rule.role,
                            verb(rule.kind)
                        ),
                    }),
                }
            }
        }
    }
    // INVARIANT: deny > approve > allow; without an applying allow (or approve)
    // rule the call is denied — there is no implicit allow.
    if !denied.is_empty() {
        denials.extend(denied);
    } else if !approve.is_empty() {
        approvals.extend(approve);
    } else if allowed {
    } else if !near_misses.is_empty() {
        denials.extend(near_misses);
    } else {
        let message = if agent.roles.is_empty() {
            format!(
                "agent `{}` has no roles, so it may not call `{shown}`",
                show(&agent.name)
            )
        } else {
            format!(
                "no rule of agent `{}`'s roles ({}) allows `{shown}`",
                show(&agent.name),
                agent.effective_roles.join(", ")
            )
        };
        denials.push(Reason {
            check: Check::Tool,
            rule: format!("agents.{}.roles", agent.name),
            message,
        });
    }
}

fn verb(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::Approve => "allows (with approval)",
        _ => "allows",
    }
}

fn workflow_check(
    policy: &Policy,
    agent: Option<&Agent>,
    workflow: &str,
    tool: &str,
    tool_ok: bool,
    denials: &mut Vec<Reason>,
) {
    let Some(wf) = policy.workflow(workflow) else {
        denials.push(Reason {
            check: Check::Workflow,
            rule: "workflows".into(),
            message: format!("workflow `{}` is not defined in the policy", show(workflow)),
        });
        return;
    };
    if let Some(agent) = agent
        && !wf.roles.iter().any(|r| agent.effective_roles.contains(r))
    {
        denials.push(Reason {
            check: Check::Workflow,
            rule: format!("workflows.{}.roles", wf.name),
            message: format!(
                "workflow `{}` is for roles {}; agent `{}` has none of them",
                wf.name,
                wf.roles.join(", "),
                show(&agent.name)
            ),
        });
    }
    if tool_ok && !wf.tools.iter().any(|g| g.matches(tool)) {
        denials.push(Reason {
            check: Check::Workflow,
            rule: format!("workflows.{}.tools", wf.name),
            message: format!(
                "workflow `{}` does not include tool `{}`",
                wf.name,
                show(tool)
            ),
        });
    }
}

/// The egress maximum of a destination and the id of the rule that sets it.
fn egress_of(data: &DataPolicy, d: &Destination) -> (usize, String) {
    for e in &data.egress {
        if e.to.iter().any(|p| p.matches(d)) {
            return (e.max, e.id.clone());
        }
    }
    (data.default_egress, "data.default_egress".into())
}

fn dest_name(d: &Destination) -> String {
    if d.host.is_empty() {
        "an unparseable destination".into()
    } else {
        format!("`{}`", show(&d.host))
    }
}

fn level_of_label(data: &DataPolicy, label: &str) -> (usize, bool) {
    match data.labels.get(label) {
        Some(&l) => (l, true),
        // INVARIANT: a label the policy does not define is treated as the highest level.
        None => (data.top(), false),
    }
}

fn data_check(
    data: &DataPolicy,
    agent: Option<&Agent>,
    agent_name: &str,
    findings: &[Finding],
    egress: &[(&Destination, usize, String)],
    denials: &mut Vec<Reason>,
) {
    // INVARIANT: an unknown agent has the lowest clearance.
    let clearance = agent.map_or(0, |a| a.clearance);
    // One reason per label (and rule), naming the first finding and counting the
    // rest: a payload with thousands of matches must not make thousands of reasons.
    let mut by_label: Vec<(&str, &Finding, usize)> = Vec::new();
    for f in findings {
        match by_label.iter_mut().find(|(l, _, _)| *l == f.label) {
            Some((_, _, n)) => *n += 1,
            None => by_label.push((f.label.as_str(), f, 1)),
        }
    }
    for (label, f, n) in by_label {
        let (level, _) = level_of_label(data, label);
        let more = match n {
            1 => String::new(),
            2 => " (and 1 more place)".to_string(),
            n => format!(" (and {} more places)", n - 1),
        };
        let what = format!(
            "`{}` found `{label}` data (level `{}`) at `{}`{more}",
            f.detector,
            data.level_name(level),
            f.pointer
        );
        if level > clearance {
            denials.push(Reason {
                check: Check::Data,
                rule: format!("data.labels.{label}"),
                message: format!(
                    "{what}, above the clearance `{}` of agent `{}`",
                    data.level_name(clearance),
                    show(agent_name)
                ),
            });
        }
        for (d, max, id) in egress {
            if level > *max {
                denials.push(Reason {
                    check: Check::Data,
                    rule: id.clone(),
                    message: format!(
                        "{what}; {} accepts at most `{}`",
                        dest_name(d),
                        data.level_name(*max)
                    ),
                });
            }
        }
    }
}

fn flow_check(
    data: &DataPolicy,
    session_labels: &[String],
    egress: &[(&Destination, usize, String)],
    denials: &mut Vec<Reason>,
) {
    // The session's highest label decides (one reason per destination, not one
    // per label: a request may carry many labels).
    let mut highest: Option<(usize, bool, &str)> = None;
    let labels: BTreeSet<&str> = session_labels.iter().map(String::as_str).collect();
    for label in labels {
        let (level, known) = level_of_label(data, label);
        if highest.is_none_or(|(l, _, _)| level > l) {
            highest = Some((level, known, label));
        }
    }
    let Some((level, known, label)) = highest else {
        return;
    };
    let what = if known {
        format!(
            "the session has received `{}` data (level `{}`)",
            show(label),
            data.level_name(level)
        )
    } else {
        format!(
            "the session has received data labelled `{}`, which the policy does not define (treated as the highest level `{}`)",
            show(label),
            data.level_name(level)
        )
    };
    for (d, max, id) in egress {
        if level > *max {
            denials.push(Reason {
                check: Check::Flow,
                rule: id.clone(),
                message: format!(
                    "{what}; {} accepts at most `{}`",
                    dest_name(d),
                    data.level_name(*max)
                ),
            });
        }
    }
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
