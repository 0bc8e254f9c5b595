//! Many records from one caller without a blocking thread per record: `submit` (a
//! future, or `wait`), `submit_many` and `append_many`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use conductor_audit::{AuditReader, Filter, Receipt, rusqlite};

use crate::common::{fill, record, temp_store, verify};

/// A waker that counts its wake-ups and unparks the thread that made it.
struct Counting {
    wakes: AtomicUsize,
    thread: std::thread::Thread,
}

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn counting() -> (Arc<Counting>, Waker) {
    let c = Arc::new(Counting {
        wakes: AtomicUsize::new(0),
        thread: std::thread::current(),
    });
    (Arc::clone(&c), Waker::from(c))
}

/// Drive a future on this thread, sleeping (parked) until its waker is called.
fn block_on<F: Future>(f: F) -> F::Output {
    let (_c, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < deadline, "the future was never woken");
        std::thread::park_timeout(Duration::from_secs(1));
    }
}

fn digests(path: &std::path::Path) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    AuditReader::open(path)
        .unwrap()
        .for_each(&Filter::default(), |r| {
            out.push((r.seq, r.request_digest.clone()));
            true
        })
        .unwrap();
    out
}

#[test]
fn submitted_records_commit_in_submission_order_on_one_chain() {
    let (_d, path, store) = temp_store();
    // Submit everything first (nothing waits), then await each.
    let pending: Vec<_> = (0..2000).map(|i| store.submit(record(i))).collect();
    let receipts: Vec<Receipt> = pending.into_iter().map(|p| block_on(p).unwrap()).collect();
    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=2000).collect::<Vec<_>>());
    let report = verify(&path);
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.verified, 2000);
    assert_eq!(report.head.unwrap().1, receipts[1999].hash);
    // Record i is the i-th submitted.
    for (seq, digest) in digests(&path) {
        assert_eq!(digest, record(seq - 1).request_digest);
    }
}

#[test]
fn wait_on_a_submission_is_append() {
    let (_d, path, store) = temp_store();
    fill(&store, 2);
    assert_eq!(store.submit(record(2)).wait().unwrap().seq, 3);
    assert_eq!(store.append(record(3)).unwrap().seq, 4);
    assert!(verify(&path).broken.is_none());
}

#[test]
fn append_many_commits_all_in_order_and_never_splits_a_set() {
    let (_d, path, store) = temp_store();
    fill(&store, 3);
    let receipts = store.append_many((3..13).map(record).collect()).unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (4..=13).collect::<Vec<_>>()
    );
    assert!(store.append_many(Vec::new()).unwrap().is_empty());

    // With other threads appending at the same time, each set still lands in one
    // piece (one transaction), in its own order.
    let appenders: Vec<_> = (0..4)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    s.append(record(10_000 + t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    let mut sets = Vec::new();
    for k in 0..50u64 {
        // Larger than the writer's batch limit once, so that limit cannot split a set.
        let n = if k == 7 { 5000 } else { 1 + k % 9 };
        let records: Vec<_> = (0..n).map(|i| record(1_000_000 + k * 10_000 + i)).collect();
        let want: Vec<String> = records.iter().map(|r| r.request_digest.clone()).collect();
        sets.push((store.submit_many(records), want));
    }
    let sets: Vec<(Vec<Receipt>, Vec<String>)> = sets
        .into_iter()
        .map(|(p, want)| (p.wait().unwrap(), want))
        .collect();
    for a in appenders {
        a.join().unwrap();
    }
    let stored: std::collections::HashMap<u64, String> = digests(&path).into_iter().collect();
    for (receipts, want) in &sets {
        assert_eq!(receipts.len(), want.len());
        for (w, r) in receipts.windows(2).map(|w| (w[0].seq, w[1].seq)).zip(0..) {
            assert_eq!(w.1, w.0 + 1, "set split at record {r}");
        }
        for (r, d) in receipts.iter().zip(want) {
            assert_eq!(&stored[&r.seq], d);
        }
    }
    let report = verify(&path);
    assert!(report.broken.is_none(), "{:?}", report.broken);
    let total = 13 + 800 + sets.iter().map(|(r, _)| r.len() as u64).sum::<u64>();
    assert_eq!(report.verified, total);
}

#[test]
fn a_failed_transaction_fails_every_submitter_in_it() {
    let (_d, path, store) = temp_store();
    fill(&store, 3);
    // Another connection holds the write lock beyond the busy timeout.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let singles: Vec<_> = (3..23).map(|i| store.submit(record(i))).collect();
    let many = store.submit_many((23..28).map(record).collect());
    let blocking = {
        let s = store.clone();
        std::thread::spawn(move || s.append_many((28..30).map(record).collect()))
    };
    let mut failed = 0;
    for p in singles {
        let e = block_on(p).unwrap_err();
        assert!(e.to_string().contains("locked"), "{e}");
        failed += 1;
    }
    let e = many.wait().unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");
    let e = blocking.join().unwrap().unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");
    assert_eq!(failed, 20);
    conn.execute_batch("ROLLBACK").unwrap();
    // Nothing of the failed transactions was kept; the chain goes on whole.
    assert_eq!(store.submit(record(30)).wait().unwrap().seq, 4);
    let report = verify(&path);
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.verified, 4);
}

#[test]
fn a_pending_submission_is_woken_once_committed() {
    let (_d, path, store) = temp_store();
    fill(&store, 1);
    // Hold the write lock so that the commit cannot have happened before the first poll.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (count, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    let mut pending = pin!(store.submit(record(1)));
    assert!(pending.as_mut().poll(&mut cx).is_pending());
    assert_eq!(count.wakes.load(Ordering::SeqCst), 0);
    std::thread::sleep(Duration::from_millis(100));
    conn.execute_batch("ROLLBACK").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count.wakes.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "never woken");
        std::thread::park_timeout(Duration::from_millis(50));
    }
    match pending.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(r)) => assert_eq!(r.seq, 2),
        other => panic!("not committed after the wake-up: {other:?}"),
    }
    // A second poll after the value was handed out is an error, never a second Ok.
    assert!(matches!(
        pending.as_mut().poll(&mut cx),
        Poll::Ready(Err(_))
    ));
}

#[test]
fn a_dropped_pending_still_commits_its_record() {
    let (_d, path, store) = temp_store();
    for i in 0..50 {
        drop(store.submit(record(i)));
    }
    store.flush().unwrap();
    assert_eq!(verify(&path).verified, 50);
}

#[test]
fn append_many_here_commits_on_the_callers_thread_on_the_same_chain() {
    let (_d, path, store) = temp_store();
    fill(&store, 2);
    let appenders: Vec<_> = (0..4)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    s.append(record(20_000 + t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    let mut here = Vec::new();
    for k in 0..100u64 {
        let set: Vec<_> = (0..1 + k % 7)
            .map(|i| record(3_000_000 + k * 100 + i))
            .collect();
        let receipts = store.append_many_here(&set).unwrap();
        assert_eq!(receipts.len(), set.len());
        for w in receipts.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1, "a set was split");
        }
        here.push((receipts, set));
    }
    for a in appenders {
        a.join().unwrap();
    }
    let stored: std::collections::HashMap<u64, String> = digests(&path).into_iter().collect();
    for (receipts, set) in &here {
        for (r, rec) in receipts.iter().zip(set) {
            assert_eq!(stored[&r.seq], rec.request_digest);
        }
    }
    let report = verify(&path);
    assert!(report.broken.is_none(), "{:?}", report.broken);
    let total = 2 + 800 + here.iter().map(|(r, _)| r.len() as u64).sum::<u64>();
    assert_eq!(report.verified, total);
    assert!(store.append_many_here(&[]).unwrap().is_empty());
}

#[test]
fn append_many_here_fails_whole_when_the_store_is_locked() {
    let (_d, path, store) = temp_store();
    fill(&store, 1);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = store.append_many_here(&[record(1), record(2)]).unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");
    conn.execute_batch("ROLLBACK").unwrap();
    let r = store.append_many_here(&[record(3)]).unwrap();
    assert_eq!(r[0].seq, 2);
    assert_eq!(verify(&path).verified, 2);
}
