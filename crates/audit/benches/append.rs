//! Append throughput (many concurrent appenders) and append-and-wait latency (one
//! appender at a time), default durability (WAL, synchronous=NORMAL).
//!
//! `cargo bench -p conductor-audit --bench append`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark code: a failure aborts the run"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use conductor_audit::{AuditOptions, AuditStore, NewRecord};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A typical record: a denied fetch with one destination, one reason, small arguments.
fn record(i: u64) -> NewRecord {
    NewRecord {
        event: "tools/call".into(),
        agent: "research-bot".into(),
        session: Some("9f1c2d3e".into()),
        workflow: Some("market-research".into()),
        server: Some("fetch".into()),
        tool: "fetch.fetch".into(),
        action: "read".into(),
        decision: "deny".into(),
        reasons: serde_json::json!([{"check": "destination", "rule": "destinations.blocked.cloud-metadata",
            "message": "http://2852039166/ resolves to 169.254.169.254, a cloud metadata endpoint"}]),
        destinations: serde_json::json!([{"input": "http://2852039166/latest/meta-data/", "scheme": "http",
            "host": "169.254.169.254", "port": 80, "addresses": ["169.254.169.254"],
            "classes": ["cloud-metadata", "link-local"]}]),
        findings: serde_json::json!([]),
        policy: format!("sha256:{}", "ab".repeat(32)),
        request_digest: format!("sha256:{i:064x}"),
        arguments: Some(serde_json::json!({"url": "http://2852039166/latest/meta-data/"})),
        latency_us: 12,
        auth: None,
    }
}

fn open() -> (tempfile::TempDir, AuditStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = AuditStore::open(&dir.path().join("audit.db"), AuditOptions::default()).unwrap();
    (dir, store)
}

/// A pool of `threads` appenders that stay alive across samples (as a gateway's
/// blocking threads do): each sample hands them `total` records and waits for all.
struct Pool {
    work: Vec<std::sync::mpsc::Sender<u64>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Pool {
    fn new(store: &AuditStore, threads: u64) -> Self {
        let (done_tx, done) = std::sync::mpsc::channel();
        let work = (0..threads)
            .map(|t| {
                let (tx, rx) = std::sync::mpsc::channel::<u64>();
                let store = store.clone();
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    let mut i = t << 40;
                    while let Ok(n) = rx.recv() {
                        for _ in 0..n {
                            i += 1;
                            black_box(store.append(record(i)).unwrap());
                        }
                        done_tx.send(()).unwrap();
                    }
                });
                tx
            })
            .collect();
        Self { work, done }
    }

    fn run(&self, total: u64) -> Duration {
        let per = total / self.work.len() as u64;
        let start = Instant::now();
        for w in &self.work {
            w.send(per).unwrap();
        }
        for _ in &self.work {
            self.done.recv().unwrap();
        }
        start.elapsed()
    }
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_throughput");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for threads in [16u64, 64, 256] {
        const PER_SAMPLE: u64 = 65_536;
        g.throughput(Throughput::Elements(PER_SAMPLE));
        let (_dir, store) = open();
        let pool = Pool::new(&store, threads);
        g.bench_function(format!("{threads}_appenders"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| pool.run(PER_SAMPLE)).sum());
        });
    }
    g.finish();
}

/// One caller, no thread per record: the new paths against `append` from 16 threads.
///
/// - `submit_window_N`: one thread keeps up to N submissions in flight (as a pipelining
///   relay does: each record's line waits for its commit, the next is read at once) and
///   waits for the oldest when the window is full;
/// - `append_many_N`: one thread commits sets of N records, one `append_many` each.
fn one_caller(c: &mut Criterion) {
    const PER_SAMPLE: u64 = 65_536;
    let mut g = c.benchmark_group("append_throughput");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(PER_SAMPLE));
    for window in [64usize, 1024] {
        let (_dir, store) = open();
        let mut i = 0u64;
        g.bench_function(format!("one_caller_submit_window_{window}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut in_flight = std::collections::VecDeque::with_capacity(window);
                    for _ in 0..PER_SAMPLE {
                        i += 1;
                        if in_flight.len() == window {
                            let p: conductor_audit::Pending = in_flight.pop_front().unwrap();
                            black_box(p.wait().unwrap());
                        }
                        in_flight.push_back(store.submit(record(i)));
                    }
                    for p in in_flight {
                        black_box(p.wait().unwrap());
                    }
                }
                start.elapsed()
            });
        });
    }
    for n in [16u64, 256] {
        let (_dir, store) = open();
        let mut i = 0u64;
        g.bench_function(format!("one_caller_append_many_{n}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for _ in 0..PER_SAMPLE / n {
                        let set: Vec<NewRecord> = (0..n)
                            .map(|_| {
                                i += 1;
                                record(i)
                            })
                            .collect();
                        black_box(store.append_many(set).unwrap());
                    }
                }
                start.elapsed()
            });
        });
    }
    g.finish();
}

fn latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_latency");
    g.measurement_time(Duration::from_secs(10));
    let (_dir, store) = open();
    let mut i = 0u64;
    g.bench_function("one_appender", |b| {
        b.iter_batched(
            || {
                i += 1;
                record(i)
            },
            |r| black_box(store.append(r).unwrap()),
            criterion::BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// Verifying a store of 100,000 records (read, parse, re-canonicalize, hash, Merkle).
fn verify(c: &mut Criterion) {
    const N: u64 = 100_000;
    let (dir, store) = open();
    let pool = Pool::new(&store, 64);
    pool.run(N);
    drop(pool);
    store.flush().unwrap();
    let path = dir.path().join("audit.db");
    let mut g = c.benchmark_group("verify");
    g.sample_size(10).throughput(Throughput::Elements(N));
    g.bench_function("100k_records", |b| {
        b.iter(|| {
            let reader = conductor_audit::AuditReader::open(&path).unwrap();
            let report = reader.verify(None).unwrap();
            assert!(report.broken.is_none());
            black_box(report)
        });
    });
    g.finish();
}

criterion_group!(benches, throughput, one_caller, latency, verify);
criterion_main!(benches);
