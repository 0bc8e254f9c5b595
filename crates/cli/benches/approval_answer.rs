//! Release-to-answer latency of a held call across processes, end to end: a real
//! `conductor wrap` (its own process, the fixture server behind it) holds each call; this
//! harness approves it with a real `conductor approvals approve ID` (a third process);
//! the figure is the time from the approver's commit (`decided_at`, taken inside its
//! transaction) to the wrapped client (this process) reading the call's answer.
//! Baseline from the same run: the round trip of an allowed call through the same `wrap`
//! (what any answer costs without a hold).
//!
//! `cargo bench -p conductor-cli --bench approval_answer [--profile dev] -- [N]`
//! (harness, not criterion: a distribution of wall-clock latencies between processes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark harness"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conductor_audit::time::now_micros;
use conductor_audit::{ApprovalFilter, ApprovalStore as _, SqliteApprovals};
use serde_json::{Value, json};

const POLICY: &str = "version: 1\n\
agents:\n  research-bot:\n    roles: [researcher]\n\
roles:\n  researcher:\n    allow:\n      - tools: [\"fake.fetch\"]\n    approve:\n      - tools: [\"fake.echo\"]\n\
tools:\n  fake.echo:\n    action: write\n    destinations: []\n  fake.fetch:\n    action: read\n    destinations: []\n";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn conductor(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conductor"));
    cmd.current_dir(dir)
        .env(
            "CONDUCTOR_FINGERPRINT_KEY_FILE",
            fixtures().join("fingerprint.key"),
        )
        .env("NO_COLOR", "1")
        .env("XDG_DATA_HOME", dir.join("no-such-data-dir"));
    cmd
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn row(name: &str, us: &mut [i64]) {
    us.sort_unstable();
    let p = |q: f64| {
        let i = ((us.len() as f64 - 1.0) * q).round() as usize;
        us[i.min(us.len() - 1)] as f64 / 1000.0
    };
    println!(
        "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        us.len(),
        p(0.0),
        p(0.5),
        p(0.95),
        p(0.99),
        p(1.0)
    );
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let audit = dir.path().join("audit.db");
    let mut wrap = conductor(dir.path())
        .arg("wrap")
        .arg("--policy")
        .arg(&policy)
        .args(["--agent", "research-bot", "--server", "fake", "--no-dns"])
        .arg("--audit")
        .arg(&audit)
        .arg("--")
        .arg("python3")
        .arg(fixtures().join("wrap/fake_server.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = wrap.stdin.take().unwrap();
    let out = wrap.stdout.take().unwrap();
    // Each answer with the wall-clock time it was read.
    let (tx, answers) = mpsc::channel::<(i64, Instant, Value)>();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            let (t, i) = (now_micros(), Instant::now());
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                let _ = tx.send((t, i, v));
            }
        }
    });
    let mut send = |id: usize, tool: &str, args: Value| {
        let m = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                       "params": {"name": tool, "arguments": args}});
        writeln!(input, "{m}").unwrap();
        input.flush().unwrap();
    };
    let wait = Duration::from_secs(60);
    let load_before = loadavg();

    // Baseline: allowed calls, request written → answer read.
    let mut allowed = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        send(i + 1, "fetch", json!({"url": format!("x{i}")}));
        let (_, t1, v) = answers.recv_timeout(wait).unwrap();
        assert_eq!(v["id"], i + 1, "{v}");
        allowed.push(i64::try_from((t1 - t0).as_micros()).unwrap());
    }

    // Held calls, each approved by `conductor approvals approve` (another process).
    let mut store = None;
    let mut release = Vec::with_capacity(n);
    let mut command = Vec::with_capacity(n);
    for i in 0..n {
        let id = 10_000 + i;
        send(id, "echo", json!({"text": format!("held-{i}")}));
        let started = Instant::now();
        let pending = loop {
            if store.is_none() && audit.exists() {
                store = SqliteApprovals::open(&audit).ok();
            }
            if let Some(s) = &store {
                let l = s
                    .list(&ApprovalFilter {
                        pending_only: true,
                        ..ApprovalFilter::default()
                    })
                    .unwrap();
                if let Some(p) = l.into_iter().next() {
                    break p;
                }
            }
            assert!(started.elapsed() < wait, "the call was never held");
            std::thread::sleep(Duration::from_millis(2));
        };
        let c0 = Instant::now();
        let st = conductor(dir.path())
            .args([
                "approvals",
                "approve",
                &pending.id,
                "--as",
                "bench",
                "--audit",
            ])
            .arg(&audit)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        command.push(i64::try_from(c0.elapsed().as_micros()).unwrap());
        let (t, _, v) = answers.recv_timeout(wait).unwrap();
        assert_eq!(v["id"], id, "{v}");
        assert!(v["result"]["isError"].is_null(), "{v}");
        let decided = store
            .as_ref()
            .unwrap()
            .show(&pending.id)
            .unwrap()
            .decided_at
            .unwrap();
        release.push(t - decided);
    }
    let load_after = loadavg();
    drop(input);
    let _ = wrap.wait();

    println!("approval release to answer, `conductor wrap` ← `conductor approvals approve`");
    println!("load average before: {load_before}; after: {load_after}");
    println!("| measure | n | min | p50 | p95 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    row("baseline: allowed call, request → answer", &mut allowed);
    row("held call: approver's commit → answer", &mut release);
    row(
        "`conductor approvals approve` process, start → exit",
        &mut command,
    );
}
