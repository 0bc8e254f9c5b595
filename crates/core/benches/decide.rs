//! Decision latency on the generated 100-agent / 50-role / 1,000-rule policy
//! (identity + tool + role + workflow), and a decision with a 4 KiB argument payload.

#![allow(
    clippy::disallowed_methods,
    reason = "a bench is a program: it may exit with a message"
)]

use std::net::IpAddr;

use conductor_core::{Effect, Request, World, decide};
use conductor_net::{ResolveError, Resolver};
use conductor_scan::FingerprintKey;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

#[path = "../../policy/benches/support/gen.rs"]
mod generated;

struct NoDns;

impl Resolver for NoDns {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        Err(ResolveError::NotFound { host: host.into() })
    }
}

fn request(
    agent: &str,
    tool: &str,
    workflow: Option<&str>,
    arguments: serde_json::Value,
) -> Request {
    Request {
        agent: agent.into(),
        tool: tool.into(),
        arguments,
        workflow: workflow.map(str::to_string),
        session: None,
        session_labels: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let text = generated::policy(100, 50, 1000);
    let policy = conductor_policy::load_str(&text, "bench.yaml", None).unwrap_or_else(|e| {
        eprintln!("{}", e.render(false));
        std::process::exit(1)
    });
    let key = FingerprintKey([1; 32]);
    let world = World {
        resolver: &NoDns,
        fingerprint_key: &key,
    };
    // The first (agent, tool, workflow) the policy allows.
    let mut allowed = None;
    'search: for a in 0..100 {
        for w in 0..10 {
            for s in 0..40 {
                for t in 0..25 {
                    let r = request(
                        &format!("a{a}"),
                        &format!("s{s}.t{t}"),
                        Some(&format!("w{w}")),
                        json!({"repo": "acme/x"}),
                    );
                    if decide(&policy, &r, &world).decision == Effect::Allow {
                        allowed = Some(r);
                        break 'search;
                    }
                }
            }
        }
    }
    let Some(allowed) = allowed else {
        eprintln!("the generated policy allows nothing");
        std::process::exit(1)
    };
    // The first allowed call with no arguments (no `when`, nothing for the data
    // scanner): the pure identity + tool + role + workflow path.
    let mut bare = None;
    'bare: for a in 0..100 {
        for w in 0..10 {
            for s in 0..40 {
                for t in 0..25 {
                    let r = request(
                        &format!("a{a}"),
                        &format!("s{s}.t{t}"),
                        Some(&format!("w{w}")),
                        json!({}),
                    );
                    if decide(&policy, &r, &world).decision == Effect::Allow {
                        bare = Some(r);
                        break 'bare;
                    }
                }
            }
        }
    }
    let Some(bare) = bare else {
        eprintln!("the generated policy allows nothing without arguments");
        std::process::exit(1)
    };
    let cases = [
        ("allow_no_args", bare),
        ("allow", allowed.clone()),
        ("deny_tool", request("a13", "s9.nothing", None, json!({}))),
        (
            "deny_workflow",
            request("a42", "s7.t3", Some("w3"), json!({})),
        ),
        ("deny_identity", request("nobody", "s7.t3", None, json!({}))),
    ];
    for (name, req) in &cases {
        let d = decide(&policy, req, &world);
        eprintln!(
            "{name}: {} {} {:?}: {:?} {:?}",
            req.agent,
            req.tool,
            req.workflow,
            d.decision,
            d.reasons.iter().map(|r| &r.rule).collect::<Vec<_>>()
        );
        c.bench_function(&format!("decide_{name}"), |b| {
            b.iter(|| decide(&policy, std::hint::black_box(req), &world));
        });
    }

    // A 4 KiB payload of prose and fields for the data check.
    let mut body = String::new();
    while body.len() < 4096 {
        body.push_str(
            "Quarterly notes: contact the team lead, review the draft and file the report. ",
        );
    }
    body.truncate(4096);
    let mut req = allowed.clone();
    req.arguments = json!({"repo": "acme/x", "body": body});
    c.bench_function("decide_4kib_payload", |b| {
        b.iter(|| decide(&policy, std::hint::black_box(&req), &world));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
