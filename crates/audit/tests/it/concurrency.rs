//! Many writers — threads and processes — on one store: one chain, no gaps, no forks.

use std::collections::HashSet;

use conductor_audit::{AuditOptions, AuditReader, AuditStore, Filter};

use crate::common::{record, verify};
use crate::crash::{collect_acks, spawn_child};

#[test]
fn threads_and_processes_share_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 300;
    const CHILD_THREADS: usize = 4;
    const PER_CHILD_THREAD: u64 = 300;
    // Create the store first so that the children race on appends, not on creation.
    let store = AuditStore::open(&db, AuditOptions::default()).unwrap();
    let children = [
        spawn_child(&db, CHILD_THREADS, PER_CHILD_THREAD),
        spawn_child(&db, CHILD_THREADS, PER_CHILD_THREAD),
    ];
    // Two handles in this process too (each has its own writer connection).
    let second = AuditStore::open(&db, AuditOptions::default()).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = if t % 2 == 0 {
                store.clone()
            } else {
                second.clone()
            };
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| s.append(record(t * 1000 + i)).unwrap().seq)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    for child in children {
        let acks = collect_acks(child, None);
        assert_eq!(acks.len() as u64, CHILD_THREADS as u64 * PER_CHILD_THREAD);
        seqs.extend(acks);
    }
    let total = THREADS * PER_THREAD + 2 * CHILD_THREADS as u64 * PER_CHILD_THREAD;
    // Every receipt names a distinct seq: nobody was handed a seq twice (no fork).
    let unique: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len() as u64, total);
    // The chain is exactly 1..=total and verifies.
    let report = verify(&db);
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.verified, total);
    assert_eq!(report.head.unwrap().0, total);
    assert_eq!(unique, (1..=total).collect::<HashSet<u64>>());
    let mut n = 0;
    AuditReader::open(&db)
        .unwrap()
        .for_each(&Filter::default(), |_| {
            n += 1;
            true
        })
        .unwrap();
    assert_eq!(n, total);
}

#[test]
fn flush_waits_for_everything_appended_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let store = AuditStore::open(&db, AuditOptions::default()).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    s.append(record(t * 100 + i)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    store.flush().unwrap();
    assert_eq!(verify(&db).verified, 400);
}

#[test]
fn processes_racing_to_create_a_store_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new/audit.db");
    let children: Vec<_> = (0..3).map(|_| spawn_child(&db, 2, 100)).collect();
    let mut seqs = HashSet::new();
    for child in children {
        for s in collect_acks(child, None) {
            assert!(seqs.insert(s), "seq {s} acknowledged twice");
        }
    }
    assert_eq!(seqs.len(), 600);
    let report = verify(&db);
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.verified, 600);
}

#[test]
fn verify_while_appending_sees_an_intact_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let store = AuditStore::open(&db, AuditOptions::default()).unwrap();
    store.append(record(0)).unwrap();
    let writer = {
        let s = store.clone();
        std::thread::spawn(move || {
            for i in 1..2000 {
                s.append(record(i)).unwrap();
            }
        })
    };
    let mut last = 0;
    while !writer.is_finished() {
        let report = verify(&db);
        assert!(report.broken.is_none(), "{:?}", report.broken);
        assert!(report.verified >= last);
        last = report.verified;
    }
    writer.join().unwrap();
    assert_eq!(verify(&db).verified, 2000);
}
