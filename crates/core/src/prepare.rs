//! The decision in two phases: [`prepare`] runs every check but DNS; the caller
//! resolves [`Prepared::hosts_to_resolve`] (with any resolver, async or not) and
//! [`Prepared::finish`] completes the decision with the answers.
//!
//! INVARIANT (resolve last): a host name is handed to a resolver only when every
//! other check allows the call — a call denied for its tool, role, workflow, data,
//! flow or for a destination checked by name resolves nothing; a name that carries
//! a value a detector found is denied (`destinations.name-carries-data`) and never
//! resolved; names the policy denies by name are decided without a lookup.

use conductor_net::{DestPlan, Destination, Resolver};
use conductor_policy::{Agent, DataPolicy, Policy};
use conductor_scan::{Finding, FingerprintKey};
use conductor_types::{JsonPath, RuleId};

use crate::checks::{
    DEFAULT_EGRESS, Egress, Target, data_check, dedup, egress_bound, egress_of, flow_check,
    tool_and_role, workflow_check,
};
use crate::display;
use crate::request::show;
use crate::scrub::Scrub;
use crate::{Check, Decision, Effect, Reason, Request, tool_name_problem};

/// Rule id of a destination whose host name carries data a detector found.
pub const NAME_CARRIES_DATA: &str = "destinations.name-carries-data";
/// The `what` of [`RuleId::destinations`] that spells [`NAME_CARRIES_DATA`].
const NAME_CARRIES_DATA_WHAT: &str = "name-carries-data";

/// A decision up to DNS ([`prepare`]): either final already, or waiting for the
/// addresses of [`Prepared::hosts_to_resolve`].
pub struct Prepared<'p> {
    state: State<'p>,
}

enum State<'p> {
    Final(Decision),
    Waiting(Box<Waiting<'p>>),
}

/// Everything [`Prepared::finish`] needs once the addresses are known (the request
/// itself is not kept).
struct Waiting<'p> {
    policy: &'p Policy,
    plan: DestPlan<'p>,
    agent: Option<&'p Agent>,
    agent_name: String,
    session_labels: Vec<String>,
    /// `Some(tool)` when the tool's destinations are unknown (see [`unknown_egress`]).
    unknown: Option<String>,
    approvals: Vec<Reason>,
    findings: Vec<Finding>,
    scrub: Scrub,
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("hosts_to_resolve", &self.hosts_to_resolve())
            .finish_non_exhaustive()
    }
}

impl Prepared<'_> {
    /// The canonical host names (lowercase ASCII, no trailing dot) that must be
    /// resolved before [`Prepared::finish`]; empty when the decision is final already
    /// (then `finish` asks nothing of its resolver).
    pub fn hosts_to_resolve(&self) -> &[String] {
        match &self.state {
            State::Final(_) => &[],
            State::Waiting(w) => w.plan.hosts_to_resolve(),
        }
    }

    /// The decision, if it does not depend on DNS.
    pub fn decision(&self) -> Option<&Decision> {
        match &self.state {
            State::Final(d) => Some(d),
            State::Waiting(_) => None,
        }
    }

    /// Complete the decision with the addresses of [`Prepared::hosts_to_resolve`].
    /// `answers` is typically a [`conductor_net::Answers`] map the caller filled from
    /// its resolver; a host it does not answer is unresolvable, which denies. No other
    /// host is asked.
    pub fn finish(self, answers: &dyn Resolver) -> Decision {
        let w = match self.state {
            State::Final(d) => return d,
            State::Waiting(w) => *w,
        };
        let Waiting {
            policy,
            plan,
            agent,
            agent_name,
            session_labels,
            unknown,
            approvals,
            mut findings,
            scrub,
        } = w;
        let outcome = plan.finish(answers);
        let mut denials: Vec<Reason> = outcome
            .violations
            .iter()
            .map(|v| Reason {
                check: Check::Destination,
                rule: v.rule.clone(),
                message: v.message.clone(),
            })
            .collect();
        let data = policy.data();
        let mut egress: Vec<Egress> = outcome
            .destinations
            .iter()
            .map(|d| egress_of(data, d))
            .collect();
        egress.extend(unknown.as_deref().map(|t| unknown_egress(data, t)));
        data_check(data, agent, &agent_name, &findings, &egress, &mut denials);
        flow_check(data, &session_labels, &egress, &mut denials);
        conclude(
            policy,
            denials,
            approvals,
            outcome.destinations,
            &mut findings,
            &scrub,
        )
    }
}

/// The egress entry of a call whose destination is unknown: `default_egress`.
// INVARIANT: a tool whose facts do not declare `destinations` may send anywhere,
// so its call is a call to an unknown destination (DESIGN.md, "The gate service").
pub(crate) fn unknown_egress<'a>(data: &'a DataPolicy, tool: &'a str) -> Egress<'a> {
    Egress {
        target: Target::Unknown(tool),
        max: data.default_egress,
        id: &DEFAULT_EGRESS,
    }
}

/// Every check but DNS; pure. See the module docs for what waits for DNS.
///
/// `extra_pointers` are JSON pointers whose values are destinations besides the
/// policy's (see [`crate::decide_with_pointers`]); `key` keys the fingerprints of
/// findings.
pub fn prepare<'p>(
    policy: &'p Policy,
    request: &Request,
    extra_pointers: &[JsonPath],
    key: &FingerprintKey,
) -> Prepared<'p> {
    prepare_with(policy, request, extra_pointers, key, Scope::Call)
}

/// [`prepare`] without the tool, role and workflow checks: for what a transport must
/// decide on its data alone (a client's answer to a server request, protocol
/// metadata) — identity, input, destination, data and flow, DNS last as always.
///
/// Use this rather than dropping the tool reasons of a [`prepare`]d decision: a call
/// denied before DNS has names that were never resolved, so what is left of its
/// reasons is not an allow.
pub fn prepare_data_only<'p>(
    policy: &'p Policy,
    request: &Request,
    extra_pointers: &[JsonPath],
    key: &FingerprintKey,
) -> Prepared<'p> {
    prepare_with(policy, request, extra_pointers, key, Scope::DataOnly)
}

/// [`prepare_data_only`] for a connection whose destination is known exactly (the
/// sandbox's egress proxy): the destinations are `literals` and nothing else (no tool
/// facts, no pointers, no URL-looking strings found in the arguments), and no unknown
/// destination applies. `request.arguments` is what the connection carries (its target,
/// headers, body): scanned by the detectors against the egress maximum of the
/// destination, the agent's clearance and the session's labels, like a call's.
pub fn prepare_connection<'p>(
    policy: &'p Policy,
    request: &Request,
    literals: &[String],
    key: &FingerprintKey,
) -> Prepared<'p> {
    prepare_with(policy, request, &[], key, Scope::Connection(literals))
}

/// What [`prepare_with`] checks.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// Every check (a tool call).
    Call,
    /// Every check but tool, role and workflow.
    DataOnly,
    /// A connection to exactly these destinations ([`prepare_connection`]).
    Connection(&'a [String]),
}

fn prepare_with<'p>(
    policy: &'p Policy,
    request: &Request,
    extra_pointers: &[JsonPath],
    key: &FingerprintKey,
    scope: Scope<'_>,
) -> Prepared<'p> {
    let tool_checks = matches!(scope, Scope::Call);
    let mut denials: Vec<Reason> = Vec::new();
    let mut approvals: Vec<Reason> = Vec::new();
    let tool = request.tool.as_str();

    // input
    let tool_ok = match tool_name_problem(tool) {
        None => true,
        Some(_) if !tool_checks => false,
        Some(message) => {
            denials.push(Reason {
                check: Check::Input,
                rule: RuleId::request("tool"),
                message,
            });
            false
        }
    };
    if !request.arguments.is_object() {
        denials.push(Reason {
            check: Check::Input,
            rule: RuleId::request("arguments"),
            message: "arguments must be a json object".into(),
        });
    }

    // identity
    let agent = policy.agent(&request.agent);
    if agent.is_none() {
        denials.push(Reason {
            check: Check::Identity,
            rule: RuleId::agents(),
            message: format!(
                "agent `{}` is not defined in the policy",
                show(&request.agent)
            ),
        });
    }

    // tool / role
    let action = policy.action_of(tool);
    if let (Some(agent), true, true) = (agent, tool_ok, tool_checks) {
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
    if let Some(w) = request.workflow.as_ref().filter(|_| tool_checks) {
        workflow_check(policy, agent, w, tool, tool_ok, &mut denials);
    }

    // destination, up to DNS
    let (mut plan, unknown) = match scope {
        // INVARIANT: a connection goes to the destination it names, and only there.
        Scope::Connection(literals) => (
            policy
                .destinations()
                .prepare(&serde_json::Value::Null, &[], literals),
            false,
        ),
        Scope::Call | Scope::DataOnly => {
            let fact = policy.tool_fact(tool);
            let (declared, literals) = match fact {
                Some(f) => (f.pointers.as_slice(), f.literals.as_slice()),
                None => (&[][..], &[][..]),
            };
            let unknown = !fact.is_some_and(|f| f.declares_destinations);
            let merged: Vec<JsonPath>;
            // INVARIANT: a member a case-insensitive reader (Go's encoding/json) binds to
            // a destination field is checked as that field: `{"URL": …}` or `{"ſite": …}`
            // beside a declared `/url` is a destination too.
            let variants: Vec<JsonPath> = declared
                .iter()
                .chain(extra_pointers.iter())
                .flat_map(|p| p.fold_variants(&request.arguments))
                .collect();
            let pointers = if extra_pointers.is_empty() && variants.is_empty() {
                declared
            } else {
                let mut all: Vec<JsonPath> = declared.to_vec();
                for p in extra_pointers.iter().chain(variants.iter()) {
                    if !all.contains(p) {
                        all.push(p.clone());
                    }
                }
                merged = all;
                merged.as_slice()
            };
            let plan = policy
                .destinations()
                .prepare(&request.arguments, pointers, literals);
            (plan, unknown)
        }
    };

    // data (the scan also tells which names carry data)
    let data = policy.data();
    let mut findings = data.scanner.scan(&request.arguments, key);
    let scrub = Scrub::new(&request.arguments, &findings);
    if !plan.hosts_to_resolve().is_empty() && !findings.is_empty() {
        let carrying: Vec<(usize, Option<JsonPath>)> = plan
            .destinations()
            .enumerate()
            .filter(|(_, (d, pending))| *pending && scrub.carries(d))
            .map(|(i, (d, _))| (i, d.pointer.clone()))
            .collect();
        for (i, pointer) in carrying {
            let at =
                pointer.map_or_else(String::new, |p| format!(" at `{}`", show(&p.to_pointer())));
            plan.refuse(
                i,
                RuleId::destinations(NAME_CARRIES_DATA_WHAT),
                format!(
                    "the host name of the destination{at} carries data a detector found; it is not resolved, so the data cannot leave through DNS"
                ),
            );
        }
    }

    // data and flow, with the egress maxima known before DNS: for a name that waits
    // for its addresses, the most permissive maximum it could get (so what is denied
    // here is denied under every answer)
    let mut later: Vec<Reason> = Vec::new();
    let mut egress: Vec<Egress> = plan
        .destinations()
        .map(|(d, pending)| {
            if pending {
                egress_bound(data, d)
            } else {
                egress_of(data, d)
            }
        })
        .collect();
    if unknown {
        egress.push(unknown_egress(data, tool));
    }
    data_check(data, agent, &request.agent, &findings, &egress, &mut later);
    flow_check(data, &request.session_labels, &egress, &mut later);
    drop(egress);

    // INVARIANT: resolve last — only when nothing denies already.
    if denials.is_empty()
        && later.is_empty()
        && !plan.denies()
        && !plan.hosts_to_resolve().is_empty()
    {
        return Prepared {
            state: State::Waiting(Box::new(Waiting {
                policy,
                plan,
                agent,
                agent_name: request.agent.clone(),
                session_labels: request.session_labels.clone(),
                unknown: unknown.then(|| tool.to_string()),
                approvals,
                findings,
                scrub,
            })),
        };
    }
    let outcome = plan.finish_unresolved();
    denials.extend(outcome.violations.iter().map(|v| Reason {
        check: Check::Destination,
        rule: v.rule.clone(),
        message: v.message.clone(),
    }));
    denials.extend(later);
    Prepared {
        state: State::Final(conclude(
            policy,
            denials,
            approvals,
            outcome.destinations,
            &mut findings,
            &scrub,
        )),
    }
}

/// The decision from its reasons: deny > approve > allow; scrubbed.
fn conclude(
    policy: &Policy,
    mut denials: Vec<Reason>,
    approvals: Vec<Reason>,
    mut destinations: Vec<Destination>,
    findings: &mut Vec<Finding>,
    scrub: &Scrub,
) -> Decision {
    dedup(&mut denials);
    // INVARIANT: `allow` only when no check added a reason and no approve rule
    // applied; every path that could not evaluate something added a reason above.
    let (decision, mut reasons) = if !denials.is_empty() {
        (Effect::Deny, denials)
    } else if !approvals.is_empty() {
        (Effect::Approve, approvals)
    } else {
        (Effect::Allow, Vec::new())
    };
    scrub.apply(findings, &mut destinations, &mut reasons);
    // INVARIANT: scrub first, then cut.
    display::cut(&mut reasons, &mut destinations);
    Decision {
        decision,
        reasons,
        destinations,
        findings: std::mem::take(findings),
        policy: policy.sha256().to_string(),
    }
}
