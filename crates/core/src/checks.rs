//! The checks: tool and role, workflow, data and flow (the destination check is
//! `conductor-net`'s).

use std::collections::BTreeSet;

use conductor_net::Destination;
use conductor_policy::{Action, Agent, DataPolicy, Eval, Policy, Rule, RuleKind};
use conductor_scan::Finding;
use conductor_types::RuleId;
use serde_json::Value;

use crate::request::show;
use crate::{Check, Reason};

pub(crate) fn dedup(reasons: &mut Vec<Reason>) {
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

pub(crate) fn tool_and_role(
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
            rule: RuleId::agent_roles(&agent.name),
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

pub(crate) fn workflow_check(
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
            rule: RuleId::workflows(),
            message: format!("workflow `{}` is not defined in the policy", show(workflow)),
        });
        return;
    };
    if let Some(agent) = agent
        && !wf.roles.iter().any(|r| agent.effective_roles.contains(r))
    {
        denials.push(Reason {
            check: Check::Workflow,
            rule: RuleId::workflow_roles(&wf.name),
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
            rule: RuleId::workflow_tools(&wf.name),
            message: format!(
                "workflow `{}` does not include tool `{}`",
                wf.name,
                show(tool)
            ),
        });
    }
}

/// The egress maximum that applies to one destination of a call.
pub(crate) struct Egress<'a> {
    /// The destination (named in messages only, so only then formatted).
    pub(crate) target: Target<'a>,
    /// The highest level that may reach it.
    pub(crate) max: usize,
    /// The id of the rule that sets `max`.
    pub(crate) id: &'a RuleId,
}

/// What an [`Egress`] entry is about.
pub(crate) enum Target<'a> {
    /// A destination found in the call.
    Dest(&'a Destination),
    /// The unknown destination of a tool whose facts do not declare any.
    Unknown(&'a str),
}

impl Target<'_> {
    fn name(&self) -> String {
        match self {
            Target::Dest(d) => dest_name(d),
            Target::Unknown(tool) => format!(
                "the destination of `{}`, which the policy does not declare,",
                show(tool)
            ),
        }
    }
}

/// The egress maximum of a destination and the id of the rule that sets it.
pub(crate) fn egress_of<'a>(data: &'a DataPolicy, d: &'a Destination) -> Egress<'a> {
    for e in &data.egress {
        if e.to.iter().any(|p| p.matches(d)) {
            return Egress {
                target: Target::Dest(d),
                max: e.max,
                id: &e.id,
            };
        }
    }
    Egress {
        target: Target::Dest(d),
        max: data.default_egress,
        id: &DEFAULT_EGRESS,
    }
}

/// Rule id of `data.default_egress`.
pub(crate) static DEFAULT_EGRESS: std::sync::LazyLock<RuleId> =
    std::sync::LazyLock::new(RuleId::default_egress);

fn dest_name(d: &Destination) -> String {
    if d.host.is_empty() {
        "an unparseable destination".into()
    } else {
        format!("`{}`", show(&d.host))
    }
}

/// The most permissive egress maximum a name whose addresses are not known yet can
/// get once they are: the first entry that matches it by name, any earlier entry
/// with an address pattern it may match, or `default_egress` when no entry matches
/// by name. A level above this bound is above the maximum under every answer.
pub(crate) fn egress_bound<'a>(data: &'a DataPolicy, d: &'a Destination) -> Egress<'a> {
    let mut best: Option<(usize, &RuleId)> = None;
    let mut by_name = false;
    for e in &data.egress {
        if e.to.iter().any(|p| !p.needs_addresses() && p.matches(d)) {
            if best.is_none_or(|(m, _)| e.max > m) {
                best = Some((e.max, &e.id));
            }
            by_name = true;
            break;
        }
        if e.to.iter().any(|p| p.may_match_once_resolved(d)) && best.is_none_or(|(m, _)| e.max > m)
        {
            best = Some((e.max, &e.id));
        }
    }
    if !by_name && best.is_none_or(|(m, _)| data.default_egress > m) {
        best = Some((data.default_egress, &DEFAULT_EGRESS));
    }
    let (max, id) = best.unwrap_or((data.default_egress, &DEFAULT_EGRESS));
    Egress {
        target: Target::Dest(d),
        max,
        id,
    }
}

fn level_of_label(data: &DataPolicy, label: &str) -> (usize, bool) {
    match data.labels.get(label) {
        Some(&l) => (l, true),
        // INVARIANT: a label the policy does not define is treated as the highest level.
        None => (data.top(), false),
    }
}

pub(crate) fn data_check(
    data: &DataPolicy,
    agent: Option<&Agent>,
    agent_name: &str,
    findings: &[Finding],
    egress: &[Egress],
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
                rule: RuleId::data_label(label),
                message: format!(
                    "{what}, above the clearance `{}` of agent `{}`",
                    data.level_name(clearance),
                    show(agent_name)
                ),
            });
        }
        for e in egress {
            if level > e.max {
                denials.push(Reason {
                    check: Check::Data,
                    rule: e.id.clone(),
                    message: format!(
                        "{what}; {} accepts at most `{}`",
                        e.target.name(),
                        data.level_name(e.max)
                    ),
                });
            }
        }
    }
}

pub(crate) fn flow_check(
    data: &DataPolicy,
    session_labels: &[String],
    egress: &[Egress],
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
    for e in egress {
        if level > e.max {
            denials.push(Reason {
                check: Check::Flow,
                rule: e.id.clone(),
                message: format!(
                    "{what}; {} accepts at most `{}`",
                    e.target.name(),
                    data.level_name(e.max)
                ),
            });
        }
    }
}
