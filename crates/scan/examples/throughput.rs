//! Scan the mixed 1 MiB corpus of the criterion bench `N` times with a chosen
//! detector set, for CPU-time measurements on a shared machine:
//!
//! `perf stat -e task-clock cargo run --release -p conductor-scan --example throughput -- all 100`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "example code"
)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a harness, not the library: it reads files, the clock and arguments (the purity rules of clippy.toml are for src/)"
)]

use conductor_scan::{FingerprintKey, LabelSpec, Scanner};
use serde_json::{Value, json};

include!("../benches/support/mixed.rs");

// The allocator the `conductor` binary ships with (crates/cli/src/main.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("all", String::as_str);
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let builtins: Vec<String> = match which {
        "all" => conductor_scan::BUILTIN_DETECTORS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        other => other.split(',').map(str::to_string).collect(),
    };
    let s = Scanner::new(&[LabelSpec {
        name: "l".into(),
        builtins,
        ..LabelSpec::default()
    }])
    .unwrap();
    let key = FingerprintKey([9; 32]);
    let text = mixed_text(1 << 20, 42);
    let v = Value::String(text.clone());
    let lines = json!({"documents": text.lines().map(|l| Value::String(l.to_string())).collect::<Vec<_>>()});
    let small = json!({"url": "https://api.example.com/v1/search", "query": mixed_text(4 << 10, 7), "limit": 20});
    // The gate service's cross-message window on `serve`'s bench: 4 KiB of the
    // zero-work upstream's "ok" answers, then the next one.
    let window = Value::String("ok".repeat(2049));
    // The same on `wrap`'s bench: its echo server answers the argument's prose.
    let prose =
        Value::String("summarise the latest quarterly report for the team meeting".repeat(71));
    let doc = match args.get(3).map(String::as_str) {
        Some("lines") => &lines,
        Some("window") => &window,
        Some("prose") => &prose,
        Some("4k") => &small,
        _ => &v,
    };
    if let Some(p) = std::env::var_os("DUMP") {
        std::fs::write(p, &text).unwrap();
    }
    if std::env::var_os("KEYWORDS").is_some() {
        eprintln!("{:?}", s.keyword_hits(&text));
    }
    // The findings of one scan (detector, pointer, span, fingerprint: no values), to
    // compare two builds' results on the same input.
    if let Some(p) = std::env::var_os("FINDINGS") {
        std::fs::write(p, serde_json::to_string_pretty(&s.scan(doc, &key)).unwrap()).unwrap();
    }
    let mut found = 0;
    let t = std::time::Instant::now();
    for _ in 0..n {
        found += s.scan(doc, &key).len();
    }
    let el = t.elapsed();
    println!(
        "{which}: {n} x {} bytes in {:?} wall ({:.0} MB/s wall), {} findings per scan",
        text.len(),
        el,
        (n * text.len()) as f64 / el.as_secs_f64() / 1e6,
        found / n.max(1)
    );
}
