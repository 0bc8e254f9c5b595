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

criterion_group!(benches, load);
criterion_main!(benches);
