//! Policy load-and-compile time for the generated 100-agent / 50-role / 1,000-rule policy.

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/gen.rs"]
mod generated;

fn load(c: &mut Criterion) {
    let text = generated::policy(100, 50, 1000);
    c.bench_function("load_compile_100a_50r_1000rules", |b| {
        b.iter(|| {
            let p = conductor_policy::load_str(std::hint::black_box(&text), "bench.yaml", None);
            assert!(p.is_ok());
            p
        });
    });
}

/// The fixed part: a minimal policy (still compiles the default data scanner).
fn minimal(c: &mut Criterion) {
    c.bench_function("load_compile_minimal", |b| {
        b.iter(|| conductor_policy::load_str(std::hint::black_box("version: 1\n"), "m.yaml", None));
    });
}

criterion_group!(benches, load, minimal);
criterion_main!(benches);
