//! Where a decision's time goes: the data scanner and the destination check alone.

#![allow(
    clippy::disallowed_methods,
    reason = "a bench is a program: it may exit with a message"
)]

use std::net::IpAddr;

use conductor_net::{ResolveError, Resolver};
use conductor_scan::FingerprintKey;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

struct NoDns;

impl Resolver for NoDns {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        Err(ResolveError::NotFound { host: host.into() })
    }
}

fn bench(c: &mut Criterion) {
    let Ok(policy) =
        conductor_policy::load_str("version: 1\ndestinations: {scan: false}\n", "p", None)
    else {
        return;
    };
    let key = FingerprintKey([1; 32]);
    let small = json!({"repo": "acme/x"});
    c.bench_function("scan_small_args", |b| {
        b.iter(|| {
            policy
                .data()
                .scanner
                .scan(std::hint::black_box(&small), &key)
        });
    });
    c.bench_function("destinations_no_inputs", |b| {
        b.iter(|| {
            policy
                .destinations()
                .evaluate(std::hint::black_box(&small), &[], &[], &NoDns)
        });
    });
    let empty = json!({});
    c.bench_function("scan_empty_args", |b| {
        b.iter(|| {
            policy
                .data()
                .scanner
                .scan(std::hint::black_box(&empty), &key)
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
