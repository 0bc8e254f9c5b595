//! Crash safety: a writer killed with SIGKILL at an arbitrary moment loses no record it
//! acknowledged, and leaves a chain that verifies (and that the next writer extends).
//!
//! The child process is this test binary itself, running the ignored test
//! [`child_appender`] (so the test build needs no extra binary).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use conductor_audit::{AuditOptions, AuditReader, AuditStore};

use crate::common::{record, verify};

const ENV_DB: &str = "CONDUCTOR_AUDIT_TEST_CHILD_DB";
const ENV_THREADS: &str = "CONDUCTOR_AUDIT_TEST_CHILD_THREADS";
const ENV_COUNT: &str = "CONDUCTOR_AUDIT_TEST_CHILD_COUNT";

/// Not a test: the body of the child process. Appends from several threads and prints
/// `ack <seq> <hash>` after each `append` returned (i.e. after its commit).
#[test]
#[ignore = "child process of the crash and concurrency tests; does nothing on its own"]
fn child_appender() {
    let Some(db) = std::env::var_os(ENV_DB) else {
        return;
    };
    let threads: usize = std::env::var(ENV_THREADS).map_or(4, |v| v.parse().unwrap());
    // 0: until killed.
    let count: u64 = std::env::var(ENV_COUNT).map_or(0, |v| v.parse().unwrap());
    let store = AuditStore::open(Path::new(&db), AuditOptions::default()).unwrap();
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let out = Arc::clone(&out);
            std::thread::spawn(move || {
                let mut i = 0u64;
                while count == 0 || i < count {
                    let r = store.append(record(t as u64 * 1_000_000 + i)).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {} {}", r.seq, r.hash).unwrap();
                    o.flush().unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

pub fn spawn_child(db: &Path, threads: usize, count: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash::child_appender",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DB, db)
        .env(ENV_THREADS, threads.to_string())
        .env(ENV_COUNT, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Read the child's acknowledgements; after `kill_after` of them (if any), SIGKILL it.
/// Returns every acknowledged (seq, hash), including those printed before the kill landed.
pub fn collect_receipts(mut child: Child, kill_after: Option<usize>) -> Vec<(u64, String)> {
    let stdout = child.stdout.take().unwrap();
    let mut acks = Vec::new();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // libtest prints `test crash::child_appender ... ` without a newline before the
        // test's own output, so an ack may share a line with it.
        if let Some(pos) = line.find("ack ") {
            let mut parts = line[pos + 4..].split_whitespace();
            let seq = parts.next().unwrap().parse().unwrap();
            let hash = parts.next().unwrap().to_string();
            acks.push((seq, hash));
        }
        if !killed && kill_after.is_some_and(|n| acks.len() >= n) {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    if kill_after.is_none() {
        assert!(status.success(), "child failed: {status:?}");
    }
    acks
}

/// The acknowledged seqs only.
pub fn collect_acks(child: Child, kill_after: Option<usize>) -> Vec<u64> {
    collect_receipts(child, kill_after)
        .into_iter()
        .map(|(seq, _)| seq)
        .collect()
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut all_acks = Vec::new();
    let mut all_receipts = Vec::new();
    // Three rounds on the same store: each child is killed mid-flight, and the next one
    // must reopen the crashed store and extend its chain.
    for (round, kill_after) in [(0, 1500usize), (1, 700), (2, 2500)] {
        let child = spawn_child(&db, 6, 0);
        let receipts = collect_receipts(child, Some(kill_after));
        let acks: Vec<u64> = receipts.iter().map(|(s, _)| *s).collect();
        all_receipts.extend(receipts);
        assert!(
            acks.len() >= kill_after,
            "round {round}: only {} acks",
            acks.len()
        );
        let report = verify(&db);
        assert!(
            report.broken.is_none(),
            "round {round}: {:?}",
            report.broken
        );
        let (head, _) = report.head.unwrap();
        assert_eq!(report.verified, head);
        // The chain is contiguous from 1 (verify checks that), so an acknowledged seq is
        // present exactly when it is ≤ the head.
        let max_ack = *acks.iter().max().unwrap();
        assert!(
            max_ack <= head,
            "round {round}: ack {max_ack} but head {head}"
        );
        all_acks.extend(acks);
    }
    let mut sorted = all_acks.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), all_acks.len(), "a seq was acknowledged twice");
    // Each acknowledged record is there and is the record that was acknowledged: the
    // stored hash is the one in the receipt.
    let reader = AuditReader::open(&db).unwrap();
    let mut stored = std::collections::HashMap::new();
    reader
        .for_each(&conductor_audit::Filter::default(), |r| {
            stored.insert(r.seq, r.hash);
            true
        })
        .unwrap();
    for (seq, hash) in &all_receipts {
        assert_eq!(stored.get(seq), Some(hash), "acknowledged record {seq}");
    }
}

/// Not a test: the body of the disk-full child. Appends until `append` fails, printing
/// `ack <seq>` for each success and `error <message>` for the failure.
#[test]
#[ignore = "child process of the disk-full test; does nothing on its own"]
fn child_until_error() {
    let Some(db) = std::env::var_os(ENV_DB) else {
        return;
    };
    let store = AuditStore::open(Path::new(&db), AuditOptions::default()).unwrap();
    let mut out = std::io::stdout();
    for i in 0..1_000_000u64 {
        match store.append(record(i)) {
            Ok(r) => writeln!(out, "ack {}", r.seq).unwrap(),
            Err(e) => {
                writeln!(out, "error {e}").unwrap();
                return;
            }
        }
    }
    writeln!(out, "no error").unwrap();
}

/// Disk full: the child runs with a file-size limit (`ulimit -f`, SIGXFSZ ignored, so a
/// write past the limit fails with EFBIG as on a full disk). `append` must return an
/// error — not panic, not succeed — and what was acknowledged must be there, verified.
#[test]
fn a_full_disk_fails_appends_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 600; exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([
            "--ignored",
            "--exact",
            "crash::child_until_error",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DB, &db)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut acks = Vec::new();
    let mut error = None;
    for line in stdout.lines() {
        if let Some(pos) = line.find("ack ") {
            acks.push(line[pos + 4..].trim().parse::<u64>().unwrap());
        } else if let Some(pos) = line.find("error ") {
            error = Some(line[pos + 6..].to_string());
        }
    }
    assert!(
        out.status.success(),
        "child failed: {:?}\n{stdout}",
        out.status
    );
    let error = error.unwrap_or_else(|| panic!("no append failed:\n{stdout}"));
    assert!(error.contains("cannot be used"), "{error}");
    assert!(
        !acks.is_empty(),
        "nothing was written before the disk filled"
    );
    let report = verify(&db);
    assert!(report.broken.is_none(), "{:?}", report.broken);
    let (head, _) = report.head.unwrap();
    assert!(*acks.iter().max().unwrap() <= head);
}
