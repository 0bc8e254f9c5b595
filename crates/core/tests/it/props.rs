//! Property tests: deny wins; nothing is allowed without an allow rule; an
//! evaluation error never allows. Random policies are checked against a small,
//! independent reference model of the tool/role semantics.

use std::collections::BTreeMap;

use conductor_core::{Check, Effect, Request, World, decide};
use conductor_policy::load_str;
use proptest::prelude::*;
use serde_json::json;

use crate::corpus::{FixedResolver, KEY};

const GLOBS: &[&str] = &["a.*", "*.x", "a.x", "*", "b.?", "*.del_*", "b.del_z", "?.y"];
const TOOLS: &[&str] = &["a.x", "a.y", "b.x", "b.y", "a.del_z", "b.del_z", "c.q"];
const ACTIONS: &[&str] = &["read", "write", "delete", "execute", "admin"];

#[derive(Debug, Clone)]
struct RuleSpec {
    kind: usize, // 0 allow, 1 approve, 2 deny
    globs: Vec<usize>,
    actions: Option<Vec<usize>>,
}

#[derive(Debug, Clone)]
struct PolicySpec {
    roles: Vec<Vec<RuleSpec>>,
    agent_roles: Vec<usize>,
    tool_actions: Vec<Option<usize>>,
}

fn rule() -> impl Strategy<Value = RuleSpec> {
    (
        0..3usize,
        prop::collection::vec(0..GLOBS.len(), 1..3),
        prop::option::of(prop::collection::vec(0..ACTIONS.len(), 1..3)),
    )
        .prop_map(|(kind, globs, actions)| RuleSpec {
            kind,
            globs,
            actions,
        })
}

fn policy_spec() -> impl Strategy<Value = PolicySpec> {
    (
        prop::collection::vec(prop::collection::vec(rule(), 0..4), 1..4),
        prop::collection::vec(0..3usize, 0..3),
        prop::collection::vec(prop::option::of(0..ACTIONS.len()), TOOLS.len()),
    )
        .prop_map(|(roles, agent_roles, tool_actions)| {
            let n = roles.len();
            PolicySpec {
                agent_roles: agent_roles.into_iter().map(|r| r % n).collect(),
                roles,
                tool_actions,
            }
        })
}

fn yaml(spec: &PolicySpec) -> String {
    let mut s =
        String::from("version: 1\ndestinations: {scan: false}\nagents:\n  bot:\n    roles: [");
    let roles: Vec<String> = spec.agent_roles.iter().map(|r| format!("r{r}")).collect();
    s.push_str(&roles.join(", "));
    s.push_str("]\nroles:\n");
    for (i, rules) in spec.roles.iter().enumerate() {
        if rules.is_empty() {
            s.push_str(&format!("  r{i}: {{}}\n"));
            continue;
        }
        s.push_str(&format!("  r{i}:\n"));
        for (k, name) in ["allow", "approve", "deny"].iter().enumerate() {
            let list: Vec<&RuleSpec> = rules.iter().filter(|r| r.kind == k).collect();
            if list.is_empty() {
                continue;
            }
            s.push_str(&format!("    {name}:\n"));
            for r in list {
                let globs: Vec<String> = r
                    .globs
                    .iter()
                    .map(|g| format!("\"{}\"", GLOBS[*g]))
                    .collect();
                s.push_str(&format!("      - tools: [{}]\n", globs.join(", ")));
                if let Some(a) = &r.actions {
                    let a: Vec<&str> = a.iter().map(|a| ACTIONS[*a]).collect();
                    s.push_str(&format!("        actions: [{}]\n", a.join(", ")));
                }
            }
        }
    }
    s.push_str("tools:\n");
    for (t, a) in TOOLS.iter().zip(&spec.tool_actions) {
        if let Some(a) = a {
            s.push_str(&format!("  {t}: {{action: {}}}\n", ACTIONS[*a]));
        }
    }
    s
}

/// Reference glob matching through the regex crate (an independent implementation).
fn glob_matches(glob: &str, tool: &str) -> bool {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).unwrap().is_match(tool)
}

/// The reference model: (deny applies, approve applies, allow applies).
fn model(spec: &PolicySpec, tool: usize) -> (bool, bool, bool) {
    let action = spec.tool_actions[tool].unwrap_or(3); // execute
    let mut out = [false; 3];
    let mut roles = spec.agent_roles.clone();
    roles.sort();
    roles.dedup();
    for r in roles {
        for rule in &spec.roles[r] {
            let names = rule
                .globs
                .iter()
                .any(|g| glob_matches(GLOBS[*g], TOOLS[tool]));
            let covers = rule.actions.as_ref().is_none_or(|a| a.contains(&action));
            if names && covers {
                out[rule.kind] = true;
            }
        }
    }
    (out[2], out[1], out[0])
}

fn world_decide(policy: &conductor_policy::Policy, req: &Request) -> conductor_core::Decision {
    let resolver = FixedResolver::new(&BTreeMap::new());
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    decide(policy, req, &world)
}

fn request(agent: &str, tool: &str) -> Request {
    Request {
        agent: agent.into(),
        tool: tool.into(),
        arguments: json!({}),
        workflow: None,
        session: None,
        session_labels: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// The decision equals the reference model: deny > approve > allow > default deny.
    #[test]
    fn decisions_follow_the_model(spec in policy_spec(), tool in 0..TOOLS.len()) {
        let text = yaml(&spec);
        let policy = load_str(&text, "p", None).map_err(|e| TestCaseError::fail(e.render(false)))?;
        let d = world_decide(&policy, &request("bot", TOOLS[tool]));
        let (deny, approve, allow) = model(&spec, tool);
        let want = if deny {
            Effect::Deny
        } else if approve {
            Effect::Approve
        } else if allow {
            Effect::Allow
        } else {
            Effect::Deny
        };
        prop_assert_eq!(d.decision, want, "policy:\n{}\ndecision: {:?}", text, d);
        // Deny wins: an applying deny is always reported as a `tool` reason.
        if deny {
            prop_assert!(d.reasons.iter().all(|r| r.check == Check::Tool && r.rule.as_str().contains(".deny[")));
        }
    }

    /// Nothing is allowed without an allow rule: with every allow rule removed,
    /// no decision is `allow`.
    #[test]
    fn nothing_is_allowed_without_an_allow_rule(mut spec in policy_spec(), tool in 0..TOOLS.len()) {
        for rules in &mut spec.roles {
            rules.retain(|r| r.kind != 0);
        }
        let policy = load_str(&yaml(&spec), "p", None).map_err(|e| TestCaseError::fail(e.render(false)))?;
        let d = world_decide(&policy, &request("bot", TOOLS[tool]));
        prop_assert_ne!(d.decision, Effect::Allow);
    }

    /// Adding a deny rule that names the tool turns any decision into a deny.
    #[test]
    fn deny_wins(mut spec in policy_spec(), tool in 0..TOOLS.len(), role in 0..3usize) {
        let role = role % spec.roles.len();
        spec.agent_roles.push(role);
        spec.roles[role].push(RuleSpec { kind: 2, globs: vec![3], actions: None });
        let policy = load_str(&yaml(&spec), "p", None).map_err(|e| TestCaseError::fail(e.render(false)))?;
        let d = world_decide(&policy, &request("bot", TOOLS[tool]));
        prop_assert_eq!(d.decision, Effect::Deny);
    }

    /// Whatever cannot be evaluated — unknown agents, malformed tool names,
    /// non-object arguments, unknown workflows, unknown session labels, arguments of
    /// the wrong type for a condition — never allows, even under an allow-all policy.
    #[test]
    fn an_evaluation_error_never_allows(
        agent in prop_oneof![Just("bot".to_string()), "[a-z]{1,6}"],
        tool in prop_oneof![Just("a.x".to_string()), "[a-zA-Z .]{0,8}", ".{0,12}"],
        args in prop_oneof![
            Just(json!({})),
            Just(json!([1])),
            Just(json!("s")),
            Just(json!(null)),
            Just(json!({"n": "5"})),
            Just(json!({"n": [5]})),
        ],
        workflow in prop::option::of(prop_oneof![Just("w".to_string()), "[a-z]{1,4}"]),
        labels in prop::collection::vec(prop_oneof![Just("credentials".to_string()), "[a-z]{1,6}"], 0..2),
    ) {
        let policy = load_str(
            "version: 1\ndestinations: {scan: false}\nagents: {bot: {roles: [r]}}\nroles:\n  r:\n    allow:\n      - tools: [\"*\"]\n        when:\n          /n: {min: 1}\nworkflows: {w: {roles: [r], tools: [\"*\"]}}\n",
            "p",
            None,
        ).unwrap();
        let req = Request {
            agent: agent.clone(),
            tool: tool.clone(),
            arguments: args.clone(),
            workflow: workflow.clone(),
            session: None,
            session_labels: labels,
        };
        let d = world_decide(&policy, &req);
        let bad = agent != "bot"
            || conductor_core::tool_name_problem(&tool).is_some()
            || !args.get("n").is_some_and(serde_json::Value::is_number)
            || workflow.as_deref().is_some_and(|w| w != "w");
        if bad {
            prop_assert_eq!(d.decision, Effect::Deny, "{:?}", d);
        }
        // Whatever the input, a decision is never an allow with reasons, nor a deny without.
        prop_assert_eq!(d.decision == Effect::Allow, d.reasons.is_empty());
    }
}
