//! Release latency of a held call: from the approver's commit to the held call's wake,
//! across processes (the approver is a child process with its own connection), with a
//! baseline from the same run (the approver is another handle in this process).
//!
//! `cargo bench -p conductor-audit --bench approval_release` (harness, not criterion:
//! the figure is a distribution of wall-clock latencies between two processes).
//!
//! Latency = wake time (this process) − `decided_at` (taken by the approver inside its
//! transaction, just before COMMIT): it includes the commit and the watcher's interval.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark harness"
)]

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use conductor_audit::time::now_micros;
use conductor_audit::{ApprovalStore, NewApproval, Outcome, Scope, SqliteApprovals};
use serde_json::json;

const N: usize = 200;

fn held() -> NewApproval {
    NewApproval {
        agent: "bench".into(),
        tool: "fake.echo".into(),
        event: "tools/call".into(),
        action: "write".into(),
        digest: "sha256:00".into(),
        policy: "sha256:00".into(),
        arguments: json!({}),
        reasons: json!([]),
        ttl: Duration::from_secs(60),
        ..NewApproval::default()
    }
}

fn child(db: &str) {
    let store = SqliteApprovals::open(std::path::Path::new(db)).unwrap();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let id = line.unwrap();
        store.approve(id.trim(), "bench", &Scope::Call).unwrap();
        writeln!(out, "ok").unwrap();
        out.flush().unwrap();
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut v: Vec<i64>) {
    v.sort_unstable();
    println!(
        "{name:<34} n={:<4} p50 {:>6} µs  p95 {:>6} µs  p99 {:>6} µs  max {:>6} µs",
        v.len(),
        percentile(&v, 0.50),
        percentile(&v, 0.95),
        percentile(&v, 0.99),
        v[v.len() - 1]
    );
}

/// Hold `N` calls one at a time; `approve(id)` releases each; the latencies.
fn run(store: &SqliteApprovals, mut approve: impl FnMut(&str)) -> Vec<i64> {
    let mut out = Vec::with_capacity(N);
    for _ in 0..N {
        let a = store.create(held()).unwrap();
        let ticket = store.wait(&a.id);
        let waiter = std::thread::spawn(move || {
            let o = ticket.wait_blocking();
            (now_micros(), o)
        });
        // Let the watcher settle into its interval, as a real held call would be.
        std::thread::sleep(Duration::from_millis(3));
        approve(&a.id);
        let (woke, outcome) = waiter.join().unwrap();
        assert!(matches!(outcome, Outcome::Approved { .. }), "{outcome:?}");
        let decided = store.show(&a.id).unwrap().decided_at.unwrap();
        out.push(woke - decided);
    }
    out
}

fn main() {
    if let Ok(db) = std::env::var("APPROVAL_BENCH_CHILD_DB") {
        child(&db);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let store = SqliteApprovals::open(&db).unwrap();

    // Baseline: another handle (connection) in this process.
    let other = SqliteApprovals::open(&db).unwrap();
    let same_process = run(&store, |id| {
        other.approve(id, "bench", &Scope::Call).unwrap();
    });

    // Across processes: a child process approves.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("APPROVAL_BENCH_CHILD_DB", &db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = std::io::BufReader::new(child.stdout.take().unwrap());
    let cross_process = run(&store, |id| {
        writeln!(to_child, "{id}").unwrap();
        to_child.flush().unwrap();
        let mut ack = String::new();
        from_child.read_line(&mut ack).unwrap();
    });
    drop(to_child);
    let _ = child.wait();

    println!("approval release latency (commit → held call woken), WATCH_INTERVAL 10 ms");
    report("baseline: same process, 2nd handle", same_process);
    report("across processes", cross_process);
}
