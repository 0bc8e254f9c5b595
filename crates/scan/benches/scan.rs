//! Scanning throughput with every built-in detector over a mixed 1 MiB corpus.
//!
//! `cargo bench -p conductor-scan --bench scan`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code"
)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a harness, not the library: it reads files, the clock and arguments (the purity rules of clippy.toml are for src/)"
)]

use std::hint::black_box;

use conductor_scan::{FingerprintKey, LabelSpec, Scanner};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

include!("support/mixed.rs");

fn scanner() -> Scanner {
    Scanner::new(&[
        LabelSpec {
            name: "credentials".into(),
            builtins: vec!["secrets".into()],
            ..LabelSpec::default()
        },
        LabelSpec {
            name: "personal".into(),
            builtins: ["email", "phone", "payment-card", "us-ssn", "iban"]
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
            ..LabelSpec::default()
        },
    ])
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let s = scanner();
    let key = FingerprintKey([9; 32]);

    let text = mixed_text(1 << 20, 42);
    let one = Value::String(text.clone());
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("mixed_1MiB_one_string", |b| {
        b.iter(|| black_box(s.scan(black_box(&one), &key)))
    });

    // The same bytes as a JSON document of many small strings (lines as array items).
    let lines: Vec<Value> = text.lines().map(|l| Value::String(l.to_string())).collect();
    let bytes: usize = text.lines().map(str::len).sum();
    let many = json!({"documents": lines});
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("mixed_1MiB_lines", |b| {
        b.iter(|| black_box(s.scan(black_box(&many), &key)))
    });

    // A typical tool-call argument: 4 KiB of mixed text in a few fields.
    let small = mixed_text(4 << 10, 7);
    let arg = json!({"url": "https://api.example.com/v1/search", "query": small, "limit": 20});
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("argument_4KiB", |b| {
        b.iter(|| black_box(s.scan(black_box(&arg), &key)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
