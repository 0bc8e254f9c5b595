//! The store's basic behaviour: receipts, record content, reopening, failures.

use std::os::unix::fs::PermissionsExt;

use conductor_audit::{AuditOptions, AuditReader, AuditStore, Durability, Filter, NewRecord};

use crate::common::{fill, record, temp_store, verify};

#[test]
fn receipts_are_consecutive_and_chain_verifies() {
    let (_d, path, store) = temp_store();
    let mut last = 0;
    for i in 0..50 {
        let r = store.append(record(i)).unwrap();
        assert_eq!(r.seq, last + 1);
        assert!(
            r.hash.starts_with("sha256:") && r.hash.len() == 71,
            "{}",
            r.hash
        );
        last = r.seq;
    }
    store.flush().unwrap();
    let report = verify(&path);
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.verified, 50);
    let (seq, hash) = report.head.unwrap();
    assert_eq!(seq, 50);
    let reader = AuditReader::open(&path).unwrap();
    assert_eq!(reader.head().unwrap(), Some((50, hash)));
}

#[test]
fn record_holds_what_the_caller_gave_and_what_the_store_added() {
    let (_d, path, store) = temp_store();
    let given = record(7);
    let receipt = store.append(given.clone()).unwrap();
    let reader = AuditReader::open(&path).unwrap();
    let recs = reader.last(10).unwrap();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.seq, 1);
    assert_eq!(r.hash, receipt.hash);
    assert_eq!(r.agent, given.agent);
    assert_eq!(r.session, given.session);
    assert_eq!(r.workflow, given.workflow);
    assert_eq!(r.server, given.server);
    assert_eq!(r.tool, given.tool);
    assert_eq!(r.action, given.action);
    assert_eq!(r.decision, given.decision);
    assert_eq!(r.reasons, given.reasons);
    assert_eq!(r.destinations, given.destinations);
    assert_eq!(r.findings, given.findings);
    assert_eq!(r.policy, given.policy);
    assert_eq!(r.request_digest, given.request_digest);
    assert_eq!(r.arguments, given.arguments);
    assert_eq!(r.latency_us, given.latency_us);
    assert_eq!(r.prev, format!("sha256:{}", "0".repeat(64)));
    // RFC 3339 UTC with microseconds, taken by the store.
    assert_eq!(r.time.len(), 27, "{}", r.time);
    assert!(r.time.ends_with('Z'));
    assert!(conductor_audit::time::parse_rfc3339(&r.time).is_some());
}

#[test]
fn optional_fields_may_be_absent() {
    let (_d, path, store) = temp_store();
    store
        .append(NewRecord {
            event: "check".into(),
            agent: "a".into(),
            tool: "t.x".into(),
            action: "execute".into(),
            decision: "deny".into(),
            ..NewRecord::default()
        })
        .unwrap();
    let recs = AuditReader::open(&path).unwrap().last(1).unwrap();
    assert_eq!(recs[0].session, None);
    assert_eq!(recs[0].arguments, None);
    assert!(verify(&path).broken.is_none());
}

#[test]
fn reopening_continues_the_chain() {
    let (_d, path, store) = temp_store();
    fill(&store, 5);
    drop(store);
    let store = AuditStore::open(
        &path,
        AuditOptions {
            durability: Durability::Fsync,
        },
    )
    .unwrap();
    assert_eq!(store.append(record(5)).unwrap().seq, 6);
    let report = verify(&path);
    assert!(report.broken.is_none());
    assert_eq!(report.verified, 6);
}

#[test]
fn store_file_is_private_and_parents_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/audit.db");
    let store = AuditStore::open(&path, AuditOptions::default()).unwrap();
    store.append(record(1)).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let wal = path.with_file_name("audit.db-wal");
    if wal.exists() {
        assert_eq!(
            std::fs::metadata(&wal).unwrap().permissions().mode() & 0o077,
            0
        );
    }
}

#[test]
fn unusable_paths_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    let err = AuditStore::open(dir.path(), AuditOptions::default()).unwrap_err();
    assert!(err.to_string().contains("cannot be used"), "{err}");
    // A file that is not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let err = AuditStore::open(&junk, AuditOptions::default()).unwrap_err();
    assert!(err.to_string().contains("junk.db"), "{err}");
    // A parent that is a file.
    let err = AuditStore::open(&junk.join("audit.db"), AuditOptions::default()).unwrap_err();
    assert!(err.to_string().contains("cannot be used"), "{err}");
}

#[test]
fn a_store_that_becomes_unwritable_fails_appends() {
    let (_d, path, store) = temp_store();
    fill(&store, 3);
    // Another connection holds the write lock beyond the busy timeout.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store.append(record(3)).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    conn.execute_batch("ROLLBACK").unwrap();
    // After the lock is gone, appends work again and the chain is whole.
    assert_eq!(store.append(record(4)).unwrap().seq, 4);
    assert!(verify(&path).broken.is_none());
}

#[test]
fn handles_are_clone_send_sync() {
    fn assert_send_sync<T: Clone + Send + Sync + 'static>() {}
    assert_send_sync::<AuditStore>();
}

#[test]
fn query_filters_by_agent_tool_decision_and_time() {
    let (_d, path, store) = temp_store();
    fill(&store, 40);
    let reader = AuditReader::open(&path).unwrap();
    let collect = |f: Filter| {
        let mut v = Vec::new();
        reader
            .for_each(&f, |r| {
                v.push(r);
                true
            })
            .unwrap();
        v
    };
    let all = collect(Filter::default());
    assert_eq!(all.len(), 40);
    let denies = collect(Filter {
        decision: Some("deny".into()),
        ..Filter::default()
    });
    assert_eq!(denies.len(), 10);
    assert!(denies.iter().all(|r| r.decision == "deny"));
    let gh = collect(Filter {
        tool: Some("github.*".into()),
        ..Filter::default()
    });
    assert_eq!(gh.len(), 10);
    let a1 = collect(Filter {
        agent: Some("agent-1".into()),
        ..Filter::default()
    });
    assert!(a1.iter().all(|r| r.agent == "agent-1") && !a1.is_empty());
    let future = collect(Filter {
        since: Some("2999-01-01T00:00:00.000000Z".into()),
        ..Filter::default()
    });
    assert!(future.is_empty());
    let past = collect(Filter {
        until: Some("2999-01-01T00:00:00.000000Z".into()),
        ..Filter::default()
    });
    assert_eq!(past.len(), 40);
    let after = collect(Filter {
        after_seq: Some(35),
        ..Filter::default()
    });
    assert_eq!(
        after.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![36, 37, 38, 39, 40]
    );
}

/// Regression: serde_json's default float parser is not correctly rounded, so a stored
/// record with such a number re-canonicalized differently and verify cried tamper. The
/// crate enables serde_json's `float_roundtrip`.
#[test]
fn records_with_awkward_doubles_verify() {
    let (_d, path, store) = temp_store();
    let mut r = record(1);
    let args: serde_json::Value = serde_json::from_str(
        r#"{"a": 333333333.33333329, "b": 7.735772404845903e290, "c": 0.1, "d": 1e-7, "e": 123456789012345678901}"#,
    )
    .unwrap();
    r.arguments = Some(args);
    store.append(r).unwrap();
    let report = verify(&path);
    assert!(report.broken.is_none(), "{:?}", report.broken);
}

/// Pointing the store at another program's SQLite database must not add tables to it.
#[test]
fn a_foreign_sqlite_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('keep')")
        .unwrap();
    drop(conn);
    let err = AuditStore::open(&path, AuditOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("not a conductor audit store"),
        "{err}"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
}

// Regression (issue 10, class 10): an audit database deleted or replaced mid-session did
// not stop forwarding — commits went into the unlinked file and were lost.
#[test]
fn a_store_whose_file_was_deleted_or_replaced_refuses_to_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = AuditStore::open(&path, AuditOptions::default()).unwrap();
    store.append(record(1)).unwrap();
    // Deleted.
    std::fs::remove_file(&path).unwrap();
    let _ = std::fs::remove_file(dir.path().join("audit.db-wal"));
    assert!(store.append(record(2)).is_err());
    assert!(store.append_many_here(&[record(3)]).is_err());
    // Replaced by another database at the same path.
    let other = AuditStore::open(&path, AuditOptions::default()).unwrap();
    other.append(record(4)).unwrap();
    let e = store.append(record(5)).unwrap_err().to_string();
    assert!(e.contains("deleted or replaced"), "{e}");
}

/// A checkpoint that copies the whole WAL back makes the next commit restart the log,
/// and SQLite syncs the new log header on that commit's path (an fsync: milliseconds).
/// Checkpointing on every 100 ms tick put that fsync on a commit several times a second
/// (the sandbox proxy's first byte, serve's and wrap's tail latency). The checkpointer
/// now folds the WAL back after many commits, or once the store is idle.
#[test]
fn the_wal_is_copied_back_after_many_commits_or_when_idle_not_on_every_tick() {
    use std::time::{Duration, Instant};
    let (_d, path, store) = temp_store();
    let size = || std::fs::metadata(&path).unwrap().len();
    store.append(record(0)).unwrap();
    let s0 = size();
    for i in 1..5 {
        store.append(record(i)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(size(), s0, "a few commits were checkpointed at once");
    // Idle: folded back within the idle period (polled, generously bounded).
    let started = Instant::now();
    while size() == s0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "an idle store's WAL was never copied back"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Busy: many commits, never idle for a whole tick, are folded back too.
    let s1 = size();
    let started = Instant::now();
    let mut i = 5;
    while size() == s1 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "a busy store's WAL was never copied back"
        );
        store.append(record(i)).unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(i > 100, "folded back after only {} commits", i - 5);
    store.flush().unwrap();
    assert!(verify(&path).broken.is_none());
}

/// The first frame written into a new write-ahead log, or into one a checkpoint copied
/// back whole, (re)starts it, and SQLite syncs its header then (an fsync, plus one of
/// the directory for a new file): it was paid by the first commit after the store was
/// opened and by the first after each idle checkpoint — the sandbox proxy's first
/// connection, or any connection after two quiet seconds. The checkpointer now starts
/// the log itself, so those commits find it started (its header unchanged by them).
#[test]
fn the_checkpointer_starts_the_wal_so_that_no_commit_has_to() {
    use std::time::{Duration, Instant};
    let (_d, path, store) = temp_store();
    store.append(record(0)).unwrap();
    // Closed (SQLite copies the log back and deletes it), then opened again, as each
    // `wrap` process does: the log of the store just opened is empty.
    drop(store);
    let store = AuditStore::open(&path, AuditOptions::default()).unwrap();
    let wal = path.with_file_name("audit.db-wal");
    // The log's header: magic, format, page size, checkpoint sequence, salts, checksum.
    let header = || {
        std::fs::read(&wal)
            .ok()
            .filter(|b| b.len() >= 32)
            .map(|b| b[..32].to_vec())
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(30), "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Started after the open, before any record.
    wait_for("the log was not started before the first commit", &|| {
        header().is_some()
    });
    let h0 = header();
    store.append(record(1)).unwrap();
    store.append_many_here(&[record(2)]).unwrap();
    assert_eq!(header(), h0, "the first commits restarted the log");
    // Idle: copied back, and started again with no commit.
    wait_for(
        "the log was not restarted after the idle checkpoint",
        &|| header() != h0,
    );
    let h1 = header();
    store.append_many_here(&[record(3)]).unwrap();
    assert_eq!(
        header(),
        h1,
        "the commit after the idle checkpoint restarted the log"
    );
    store.flush().unwrap();
    let v = verify(&path);
    assert!(v.broken.is_none());
    assert_eq!(v.verified, 4);
}

#[test]
fn an_inline_commit_waits_for_another_connections_write_then_commits() {
    // Another connection (another process: an approval from the command line) holds
    // the write lock: the inline attempt waits for it like any commit, then commits in
    // order; a batch likewise. Nothing is lost or reordered.
    let (_dir, path, store) = temp_store();
    store.try_append_here(&record(1)).unwrap().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        other.execute_batch("COMMIT").unwrap();
    });
    let r = store
        .try_append_here(&record(2))
        .expect("idle: commits here");
    assert_eq!(r.unwrap().seq, 2);
    release.join().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let many = store
        .try_append_many_here(&[record(3), record(4)])
        .expect("free: commits here")
        .unwrap();
    assert_eq!(many.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4]);
    store.flush().unwrap();
    assert_eq!(verify(&path).verified, 4);
}

// `try_append_here` commits on the caller's thread only when the writer is idle: a
// sequential caller skips the hand-off to the writer thread and back, concurrent callers
// still share the writer's transactions, and every record is chained either way.
#[test]
fn a_record_is_committed_here_only_while_the_writer_is_idle() {
    let (_dir, path, store) = temp_store();
    let r = store
        .try_append_here(&record(1))
        .expect("an idle store commits here")
        .unwrap();
    assert_eq!(r.seq, 1);
    // Just after a commit of the writer's it declines: the record is to join its batches.
    // (The busy period is a millisecond; a few tries cover a descheduled test thread.)
    let mut n = 1;
    let mut declined = false;
    for i in 0..20 {
        store.append(record(10 + i)).unwrap();
        n += 1;
        match store.try_append_here(&record(100 + i)) {
            None => {
                declined = true;
                break;
            }
            Some(r) => {
                r.unwrap();
                n += 1;
            }
        }
    }
    assert!(declined, "committed here right after the writer's commits");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let r = store
        .try_append_here(&record(2))
        .expect("idle again: commits here")
        .unwrap();
    n += 1;
    assert_eq!(r.seq, n);
    store.flush().unwrap();
    let v = verify(&path);
    assert!(v.broken.is_none());
    assert_eq!(v.verified, n);
    // Regression: a flush (a job for the writer too) was not counted as queued, so the
    // writer's count of the jobs it took went below zero and the store never committed
    // on the caller's thread again.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        store.try_append_here(&record(3)).is_some(),
        "idle after a flush: commits here"
    );
    // A store that waits for the disk never blocks the caller's thread with a commit.
    let dir = tempfile::tempdir().unwrap();
    let synced = AuditStore::open(
        &dir.path().join("audit.db"),
        AuditOptions {
            durability: Durability::Fsync,
        },
    )
    .unwrap();
    assert!(synced.try_append_here(&record(1)).is_none());
}

// A batch that fails inside its transaction (here: the chain head no longer reads as a
// hash) leaves no transaction open behind it: once the head is right again, the next
// commit goes through and the chain verifies.
#[test]
fn a_batch_that_fails_inside_its_transaction_is_rolled_back() {
    let (_dir, path, store) = temp_store();
    store.append(record(1)).unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    let good: String = other
        .query_row("SELECT hash FROM records WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    other
        .execute("UPDATE records SET hash = 'nope' WHERE seq = 1", [])
        .unwrap();
    for _ in 0..2 {
        let e = store.append(record(2)).unwrap_err().to_string();
        assert!(e.contains("hash"), "{e}");
        let e = store
            .append_many_here(&[record(2)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("hash"), "{e}");
    }
    other
        .execute("UPDATE records SET hash = ?1 WHERE seq = 1", [&good])
        .unwrap();
    assert_eq!(store.append(record(2)).unwrap().seq, 2);
    assert_eq!(store.append_many_here(&[record(3)]).unwrap()[0].seq, 3);
    store.flush().unwrap();
    let v = verify(&path);
    assert!(v.broken.is_none(), "{:?}", v.broken);
    assert_eq!(v.verified, 3);
}
