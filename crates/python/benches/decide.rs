//! The Rust baseline of the Python library's `decide` (python/bench/bench_decide.py
//! times the same requests through `conductor.Gate.decide`): the same policy
//! (`examples/policy.yaml`), the same requests, the same service
//! (`Service::decide_blocking`: session labels read, decide, audit record committed to
//! a SQLite store in a temporary directory) — and the pure core's `decide` alone.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench is a program: it may stop with a message"
)]

use std::sync::Arc;

use conductor_audit::{AuditOptions, AuditStore};
use conductor_core::{Request, World};
use conductor_gate::{
    Call, GateResolver, ResolverConfig, Service, ServiceOptions, SqliteStore, Subject,
};
use conductor_scan::FingerprintKey;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

fn cases() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    vec![
        (
            "allow_search",
            "intern-bot",
            "search.web",
            json!({"q": "rust async runtimes"}),
        ),
        (
            "deny_metadata",
            "research-bot",
            "fetch.fetch",
            json!({"url": "http://2852039166/latest/meta-data/"}),
        ),
        (
            "allow_fetch_resolved",
            "research-bot",
            "fetch.fetch",
            json!({"url": "https://en.wikipedia.org/wiki/Model_Context_Protocol"}),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let policy_path = std::path::Path::new(root).join("examples/policy.yaml");
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let key = Arc::new(FingerprintKey([7; 32]));
    let resolver = || {
        GateResolver::new(
            ResolverConfig::from_args(&["en.wikipedia.org=208.80.154.224".to_string()], true)
                .unwrap(),
        )
    };
    let service = Service::new(
        conductor_policy::load_file(&policy_path).unwrap(),
        resolver(),
        Arc::clone(&key),
        Arc::new(AuditStore::open(&audit, AuditOptions::default()).unwrap()),
        Arc::new(SqliteStore::open(&audit).unwrap()),
        ServiceOptions::default(),
    );
    let policy = conductor_policy::load_file(&policy_path).unwrap();
    let pure_resolver = resolver();
    for (name, agent, tool, args) in cases() {
        let subject = Subject {
            agent: agent.to_string(),
            workflow: None,
            session: "bench".to_string(),
            server: tool.split_once('.').map(|(s, _)| s.to_string()),
            auth: None,
        };
        c.bench_function(&format!("service_decide_blocking_{name}"), |b| {
            b.iter(|| service.decide_blocking(&subject, Call::new("library", tool, args.clone())));
        });
        let request = Request {
            agent: agent.to_string(),
            tool: tool.to_string(),
            arguments: args.clone(),
            workflow: None,
            session: Some("bench".to_string()),
            session_labels: Vec::new(),
        };
        let world = World {
            resolver: &pure_resolver,
            fingerprint_key: &key,
        };
        c.bench_function(&format!("core_decide_{name}"), |b| {
            b.iter(|| conductor_core::decide(&policy, std::hint::black_box(&request), &world));
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
