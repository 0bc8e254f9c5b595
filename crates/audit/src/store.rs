//! The SQLite store and its writer thread (group commit).
//!
//! One writer thread per open handle owns the write connection. Appenders hand it a
//! prepared record and wait; the writer takes whatever is queued (up to [`MAX_BATCH`]),
//! and in ONE `BEGIN IMMEDIATE` transaction reads the chain head, inserts the batch chained
//! onto it, and commits. Only then does each appender get its receipt.
//!
//! INVARIANT: the chain head is read under SQLite's write lock (`BEGIN IMMEDIATE`), in the
//! same transaction that inserts onto it, so processes sharing a store never fork the chain.
//! INVARIANT: a receipt is sent only after `COMMIT` returned; any failure answers every
//! record of the batch with an error (the caller denies).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::record::{self, GENESIS, Prepared};
use crate::{AuditError, AuditOptions, Durability, NewRecord, Receipt};

/// Most records committed in one transaction.
pub(crate) const MAX_BATCH: usize = 4096;

/// How long a writer waits for another process's write lock before failing the batch.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The format tag stored in `meta`.
pub(crate) const FORMAT: &str = "conductor-audit/1";

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    hash TEXT NOT NULL
);
";

/// Where the writer puts one submission's outcome: a one-shot slot that a blocking
/// caller waits on (condvar) and an async caller polls (waker).
#[derive(Debug)]
struct Slot<T> {
    state: Mutex<SlotState<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct SlotState<T> {
    value: Option<Result<T, AuditError>>,
    /// Set once the value has been handed out (a second poll gets an error).
    taken: bool,
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    fn new() -> Self {
        Slot {
            state: Mutex::new(SlotState {
                value: None,
                taken: false,
                waker: None,
            }),
            ready: Condvar::new(),
        }
    }

    fn put(&self, r: Result<T, AuditError>) {
        let waker = match self.state.lock() {
            Ok(mut st) => {
                if st.value.is_none() && !st.taken {
                    st.value = Some(r);
                }
                st.waker.take()
            }
            Err(_) => None,
        };
        self.ready.notify_one();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn wait(&self, path: &Path, writer_alive: impl Fn() -> bool) -> Result<T, AuditError> {
        let stopped = || store_err(path, "the audit writer has stopped");
        let mut st = self.state.lock().map_err(|_| stopped())?;
        loop {
            if let Some(r) = st.value.take() {
                st.taken = true;
                return r;
            }
            if st.taken || !writer_alive() {
                return Err(stopped());
            }
            // A timeout only to notice a writer that died without answering (the reply
            // guard answers on unwinding; this is the second line).
            st = self
                .ready
                .wait_timeout(st, Duration::from_millis(500))
                .map_err(|_| stopped())?
                .0;
        }
    }
}

/// The writer's end of a slot. INVARIANT: every submission is answered: a reply dropped
/// unanswered (a writer that unwound, a queue dropped with the job in it, a job that
/// could not be sent) answers with an error, so no waiter, blocking or async, waits
/// for ever and none is told `Ok`.
struct Reply<T> {
    slot: Option<Arc<Slot<T>>>,
    path: Arc<PathBuf>,
}

impl<T> Reply<T> {
    fn send(mut self, r: Result<T, AuditError>) {
        if let Some(slot) = self.slot.take() {
            slot.put(r);
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.put(Err(store_err(&self.path, "the audit writer has stopped")));
        }
    }
}

/// A submitted record (or set of records) that the writer will commit: await it from
/// async code, or [`Pending::wait`] for it on a thread. It resolves to the receipt(s)
/// once the transaction holding the record(s) has committed, or to the error that
/// made that transaction fail (every submitter of a failed transaction gets it).
///
/// Dropping a `Pending` does not withdraw the record: it is committed all the same.
#[must_use = "a record is committed only when its `Pending` resolves to `Ok`"]
pub struct Pending<T = Receipt> {
    slot: Arc<Slot<T>>,
    inner: Arc<Inner>,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl<T> Pending<T> {
    /// Block the calling thread until the record is committed (or has failed).
    pub fn wait(self) -> Result<T, AuditError> {
        // INVARIANT: the only way out with Ok is the value the writer put after COMMIT.
        let inner = &self.inner;
        self.slot.wait(&inner.path, || inner.writer_alive())
    }

    /// The outcome, if the writer has answered already (never blocks).
    pub fn try_take(&mut self) -> Option<Result<T, AuditError>> {
        let mut st = self.slot.state.lock().ok()?;
        let v = st.value.take();
        if v.is_some() {
            st.taken = true;
        }
        v
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, AuditError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let stopped = || store_err(&self.inner.path, "the audit writer has stopped");
        let Ok(mut st) = self.slot.state.lock() else {
            return Poll::Ready(Err(stopped()));
        };
        if let Some(r) = st.value.take() {
            st.taken = true;
            return Poll::Ready(r);
        }
        if st.taken {
            return Poll::Ready(Err(stopped()));
        }
        // The writer takes the waker under this same lock, so a value put after this
        // check finds it.
        match &mut st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// How busy the writer thread is: while jobs are queued for it, or it commits batch
/// after batch (other callers are submitting), a record joins them rather than being
/// committed alone.
#[derive(Debug)]
struct WriterLoad {
    /// Jobs sent to the writer and not yet taken by it.
    queued: AtomicUsize,
    origin: std::time::Instant,
    /// Microseconds after `origin` until which the writer counts as busy.
    busy_until: std::sync::atomic::AtomicU64,
}

impl WriterLoad {
    /// How long after a commit of the writer's it counts as busy.
    const HOT: Duration = Duration::from_millis(1);

    fn new() -> Self {
        WriterLoad {
            queued: AtomicUsize::new(0),
            origin: std::time::Instant::now(),
            busy_until: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn committed(&self) {
        let until = self.now().saturating_add(Self::HOT.as_micros() as u64);
        self.busy_until.store(until, Ordering::Relaxed);
    }

    fn busy(&self) -> bool {
        self.queued.load(Ordering::Relaxed) != 0
            || self.now() < self.busy_until.load(Ordering::Relaxed)
    }
}

enum Job {
    Append(Prepared, Reply<Receipt>),
    /// Records committed together, in this order, in one transaction.
    Many(Vec<Prepared>, Reply<Vec<Receipt>>),
    Flush(mpsc::SyncSender<()>),
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// The same path, shared with every reply.
    shared_path: Arc<PathBuf>,
    tx: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    /// The write connection, shared by the writer thread and [`AuditStore::append_many_here`].
    conn: Arc<Mutex<Connection>>,
    /// Set after every commit; the checkpointer clears it.
    dirty: Arc<AtomicUsize>,
    /// How busy the writer thread is (see [`WriterLoad`]).
    load: Arc<WriterLoad>,
    /// The (device, inode) of the database file when it was opened.
    identity: Option<(u64, u64)>,
    /// How hard each commit tries to survive (an `Fsync` commit waits for the disk).
    durability: Durability,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Append(..) => "Append",
            Job::Many(..) => "Many",
            Job::Flush(..) => "Flush",
        })
    }
}

impl Inner {
    fn writer_alive(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| !w.is_finished())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it has committed what is queued.
        self.tx.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

/// A shared, thread-safe handle on an audit store.
#[derive(Debug, Clone)]
pub struct AuditStore {
    inner: Arc<Inner>,
}

/// Run `f` again while SQLite answers "database is locked" (or busy), for at most
/// [`BUSY_TIMEOUT`].
fn retry_locked<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let started = std::time::Instant::now();
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, m))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && started.elapsed() < BUSY_TIMEOUT =>
            {
                let _ = m;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

pub(crate) fn store_err(path: &Path, message: impl std::fmt::Display) -> AuditError {
    AuditError::Store {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Create the file (and its parent directories) with owner-only permissions, if missing.
pub(crate) fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A random store id (names the log in checkpoints).
fn random_id() -> String {
    use std::io::Read;
    let mut buf = [0u8; 12];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        // Unique enough as a name; it is not a secret.
        let t = crate::time::now_micros().to_le_bytes();
        let p = std::process::id().to_le_bytes();
        for (i, b) in t.iter().chain(p.iter()).enumerate() {
            if let Some(slot) = buf.get_mut(i) {
                *slot = *b;
            }
        }
    }
    hex::encode(buf)
}

impl AuditStore {
    /// Open (creating if needed) the store at `path`.
    pub fn open(path: &Path, opts: AuditOptions) -> Result<Self, AuditError> {
        Self::open_with(path, opts, true)
    }

    /// Open the store for a process that makes a call or two and exits (the Claude
    /// Code hook): no background checkpointer (its own connection and thread, which
    /// such a process never gets to use), so SQLite's automatic checkpoints stay on and
    /// keep the write-ahead log bounded. Same guarantees for every commit.
    pub fn open_short_lived(path: &Path, opts: AuditOptions) -> Result<Self, AuditError> {
        Self::open_with(path, opts, false)
    }

    fn open_with(path: &Path, opts: AuditOptions, background: bool) -> Result<Self, AuditError> {
        let err = |m: &dyn std::fmt::Display| store_err(path, m);
        create_private(path).map_err(|e| err(&e))?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| err(&e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| err(&e))?;
        // Processes racing to create one store: switching a new file to WAL takes an
        // exclusive lock that SQLite's busy handler does not wait for, so a loser sees
        // "database is locked" at once. Retry for as long as the busy timeout allows.
        let mode: String =
            retry_locked(|| conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)))
                .map_err(|e| err(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(err(&format!(
                "cannot switch to write-ahead logging (journal mode is `{mode}`)"
            )));
        }
        let sync = match opts.durability {
            Durability::Normal => "NORMAL",
            Durability::Fsync => "FULL",
        };
        // A WAL that grew under load is cut back to 64 MiB once checkpointed.
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync}; PRAGMA journal_size_limit=67108864;"
        ))
        .map_err(|e| err(&e))?;
        {
            // (Racing creators: see `retry_locked`.)
            let started = std::time::Instant::now();
            loop {
                match init_schema(&mut conn) {
                    Err(WriteError::Sql(rusqlite::Error::SqliteFailure(e, _)))
                        if matches!(
                            e.code,
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        ) && started.elapsed() < BUSY_TIMEOUT =>
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    other => {
                        other.map_err(|e| err(&e))?;
                        break;
                    }
                }
            }
        }

        // Checkpoints (copying the WAL back into the database) run on their own
        // connection and thread, off the commit path; without that connection the writer
        // keeps SQLite's automatic checkpoints.
        let checkpointer = if background {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ok()
        } else {
            None
        };
        if checkpointer.is_some() {
            conn.execute_batch("PRAGMA wal_autocheckpoint=0;")
                .map_err(|e| err(&e))?;
        }

        // INVARIANT: a commit goes only into the database that was opened: the file's
        // identity is kept, and a store whose file was deleted or replaced refuses to
        // commit (a record into an unlinked file would be lost, into another file
        // unchained).
        let identity = file_identity(path);
        let (tx, rx) = mpsc::channel::<Job>();
        let thread_path = path.to_path_buf();
        let conn = Arc::new(Mutex::new(conn));
        let dirty = Arc::new(AtomicUsize::new(0));
        let load = Arc::new(WriterLoad::new());
        let (thread_conn, thread_dirty, thread_load) =
            (Arc::clone(&conn), Arc::clone(&dirty), Arc::clone(&load));
        let writer = std::thread::Builder::new()
            .name("conductor-audit-writer".into())
            .spawn(move || {
                writer_loop(
                    &thread_conn,
                    checkpointer,
                    &thread_path,
                    &rx,
                    thread_dirty,
                    &thread_load,
                    identity,
                )
            })
            .map_err(|e| err(&e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                shared_path: Arc::new(path.to_path_buf()),
                tx: Some(tx),
                writer: Some(writer),
                conn,
                dirty,
                load,
                identity,
                durability: opts.durability,
            }),
        })
    }

    fn sender(&self) -> Result<&mpsc::Sender<Job>, AuditError> {
        self.inner
            .tx
            .as_ref()
            .ok_or_else(|| store_err(&self.inner.path, "the audit store is closed"))
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How hard each commit tries to survive: with [`Durability::Fsync`] a commit waits
    /// for the disk (milliseconds), so a caller on an async runtime should not commit on
    /// a worker thread with [`AuditStore::append_many_here`].
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Append one record and return once it is committed.
    pub fn append(&self, record: NewRecord) -> Result<Receipt, AuditError> {
        self.submit(record).wait()
    }

    /// Hand one record to the writer without waiting: the returned [`Pending`] resolves
    /// once the record is committed. Records submitted by one caller, one after the
    /// other, are committed in that order, and as many as are queued go into one
    /// transaction. Never blocks (the canonical form of the record is built here, on
    /// the caller's thread).
    pub fn submit(&self, record: NewRecord) -> Pending<Receipt> {
        let prepared = Prepared::new(&record);
        self.enqueue(|reply| Job::Append(prepared, reply))
    }

    /// Hand several records to the writer at once: they are committed together, in
    /// this order, in ONE transaction (with whatever else is queued), and the
    /// [`Pending`] resolves to their receipts, or to the error that failed them all.
    pub fn submit_many(&self, records: Vec<NewRecord>) -> Pending<Vec<Receipt>> {
        let prepared: Vec<Prepared> = records.iter().map(Prepared::new).collect();
        self.enqueue(|reply| Job::Many(prepared, reply))
    }

    /// Append several records in one transaction and return once they are committed:
    /// all of them (receipts in the order given), or none (an error).
    pub fn append_many(&self, records: Vec<NewRecord>) -> Result<Vec<Receipt>, AuditError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.submit_many(records).wait()
    }

    /// Commit `records` in ONE transaction on the calling thread, without the hand-off
    /// to the writer thread and back (two thread wake-ups): for a caller that would
    /// only wait for the commit anyway. Same guarantees as [`AuditStore::append_many`]
    /// (`BEGIN IMMEDIATE`, the chain head read under the write lock, all or nothing);
    /// it waits while the writer thread commits another batch. Records submitted
    /// earlier and still queued for the writer may be committed after these.
    pub fn append_many_here(&self, records: &[NewRecord]) -> Result<Vec<Receipt>, AuditError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let prepared: Vec<Prepared> = records.iter().map(Prepared::new).collect();
        let mut conn = match self.inner.conn.lock() {
            Ok(c) => c,
            // A panic mid-commit rolled its transaction back (rusqlite's drop).
            Err(poisoned) => poisoned.into_inner(),
        };
        // INVARIANT: Ok only after COMMIT returned.
        same_file(&self.inner.path, self.inner.identity)
            .map_err(|e| store_err(&self.inner.path, e))?;
        let receipts =
            commit_batch(&mut conn, &prepared).map_err(|e| store_err(&self.inner.path, e))?;
        self.inner.dirty.fetch_add(1, Ordering::Relaxed);
        Ok(receipts)
    }

    /// Commit `record` on the calling thread if that costs no wait: the store commits
    /// without waiting for the disk ([`Durability::Normal`]), nothing is queued for the
    /// writer thread and it is not committing. `None` otherwise: then
    /// [`AuditStore::submit`] it, to be committed with whatever else is queued.
    ///
    /// For a caller that waits for the commit anyway, one record at a time (a
    /// sequential client): the hand-off to the writer thread, and the answer back
    /// through its notifier, are three thread wake-ups, most of such a commit's time.
    /// Under load the writer is busy and this declines (for a millisecond after each of
    /// its commits), so records still share transactions. Same guarantees as [`AuditStore::append_many_here`].
    pub fn try_append_here(&self, record: &NewRecord) -> Option<Result<Receipt, AuditError>> {
        if self.inner.load.busy() {
            return None;
        }
        let committed = self.commit_here_if_free(std::slice::from_ref(record))?;
        Some(committed.and_then(|receipts| {
            receipts
                .into_iter()
                .next()
                .ok_or_else(|| store_err(&self.inner.path, "the commit returned no receipt"))
        }))
    }

    /// [`AuditStore::append_many_here`] if that costs no wait: the store commits without
    /// waiting for the disk ([`Durability::Normal`]), no other thread holds its
    /// connection, and no other connection (another process) holds the database's
    /// write lock. `None` otherwise (nothing was written): then
    /// [`AuditStore::submit_many`] them. For a caller on an async worker thread, which
    /// must not wait for a lock.
    pub fn try_append_many_here(
        &self,
        records: &[NewRecord],
    ) -> Option<Result<Vec<Receipt>, AuditError>> {
        if records.is_empty() {
            return Some(Ok(Vec::new()));
        }
        self.commit_here_if_free(records)
    }

    /// Commit `records` in one transaction on this thread, or `None` (nothing written)
    /// when that would wait: see [`AuditStore::try_append_many_here`].
    fn commit_here_if_free(
        &self,
        records: &[NewRecord],
    ) -> Option<Result<Vec<Receipt>, AuditError>> {
        if self.inner.durability != Durability::Normal {
            return None;
        }
        let mut conn = match self.inner.conn.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::WouldBlock) => return None,
            // A panic mid-commit rolled its transaction back (rusqlite's drop).
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let prepared: Vec<Prepared> = records.iter().map(Prepared::new).collect();
        // The attempt waits for another connection's write lock as every commit does
        // (SQLite's busy handler, up to BUSY_TIMEOUT): bounded in practice by that
        // writer's transaction. Turning the wait off for the inline attempt cost
        // sequential calls ~25 µs (measured, 2026-12-04) and was not kept.
        let attempt = same_file(&self.inner.path, self.inner.identity)
            .and_then(|()| commit_batch(&mut conn, &prepared));
        if let Err(WriteError::Sql(rusqlite::Error::SqliteFailure(e, _))) = &attempt
            && matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            )
            && conn.is_autocommit()
        {
            return None;
        }
        drop(conn);
        // INVARIANT: Ok only after COMMIT returned.
        Some(
            attempt
                .inspect(|_| {
                    self.inner.dirty.fetch_add(1, Ordering::Relaxed);
                })
                .map_err(|e| store_err(&self.inner.path, e)),
        )
    }

    fn enqueue<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Pending<T> {
        let slot = Arc::new(Slot::new());
        let reply = Reply {
            slot: Some(Arc::clone(&slot)),
            path: Arc::clone(&self.inner.shared_path),
        };
        match self.sender() {
            // A failed send drops the job, whose reply then answers with an error.
            Ok(tx) => {
                self.inner.load.queued.fetch_add(1, Ordering::Relaxed);
                if tx.send(job(reply)).is_err() {
                    self.inner.load.queued.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                let mut reply = reply;
                if let Some(s) = reply.slot.take() {
                    s.put(Err(e));
                }
            }
        }
        Pending {
            slot,
            inner: Arc::clone(&self.inner),
        }
    }

    /// Wait until everything appended so far is committed.
    pub fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let sender = self.sender()?;
        // Counted like every job (the writer counts each one it takes).
        self.inner.load.queued.fetch_add(1, Ordering::Relaxed);
        if sender.send(Job::Flush(tx)).is_err() {
            self.inner.load.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(store_err(&self.inner.path, "the audit writer has stopped"));
        }
        rx.recv()
            .map_err(|_| store_err(&self.inner.path, "the audit writer has stopped"))
    }
}

/// A failed write: SQLite's error, or a store whose content we refuse to extend.
#[derive(Debug)]
pub(crate) enum WriteError {
    Sql(rusqlite::Error),
    Refused(String),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Sql(e)
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Sql(e) => write!(f, "{e}"),
            WriteError::Refused(m) => f.write_str(m),
        }
    }
}

pub(crate) fn init_schema(conn: &mut Connection) -> Result<(), WriteError> {
    let txn = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // INVARIANT: never add our tables to somebody else's database.
    let (objects, has_meta): (i64, bool) = txn.query_row(
        "SELECT count(*), coalesce(sum(type = 'table' AND name = 'meta'), 0) > 0 FROM sqlite_master",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if objects > 0 && !has_meta {
        return Err(WriteError::Refused(
            "it is an SQLite database but not a conductor audit store".into(),
        ));
    }
    txn.execute_batch(SCHEMA)?;
    let format: Option<String> = txn
        .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match format {
        None => {
            txn.execute(
                "INSERT INTO meta (key, value) VALUES ('format', ?1)",
                [FORMAT],
            )?;
            txn.execute(
                "INSERT INTO meta (key, value) VALUES ('origin', ?1)",
                [format!("conductor.invalid/audit/{}", random_id())],
            )?;
        }
        Some(f) if f == FORMAT => {}
        Some(f) => {
            return Err(WriteError::Refused(format!(
                "unsupported audit store format `{f}`"
            )));
        }
    }
    txn.commit()?;
    Ok(())
}

/// Who waits for the records of a batch, in queue order.
enum Waiter {
    One(Reply<Receipt>),
    /// The next `n` records of the batch.
    Many(usize, Reply<Vec<Receipt>>),
}

/// A waiter with its outcome, ready to be woken.
enum Answer {
    One(Reply<Receipt>, Result<Receipt, AuditError>),
    Many(Reply<Vec<Receipt>>, Result<Vec<Receipt>, AuditError>),
}

impl Answer {
    fn send(self) {
        match self {
            Answer::One(r, v) => r.send(v),
            Answer::Many(r, v) => r.send(v),
        }
    }
}

/// Pair the waiters of a committed batch with their receipts (in order). A waiter left
/// without receipts (which would be a bug) has its reply dropped: an error.
fn answers_ok(waiters: Vec<Waiter>, receipts: Vec<Receipt>) -> Vec<Answer> {
    let mut receipts = receipts.into_iter();
    let mut out = Vec::with_capacity(waiters.len());
    for w in waiters {
        match w {
            Waiter::One(r) => {
                if let Some(receipt) = receipts.next() {
                    out.push(Answer::One(r, Ok(receipt)));
                }
            }
            Waiter::Many(n, r) => {
                let mine: Vec<Receipt> = receipts.by_ref().take(n).collect();
                if mine.len() == n {
                    out.push(Answer::Many(r, Ok(mine)));
                }
            }
        }
    }
    out
}

fn answers_err(waiters: Vec<Waiter>, path: &Path, message: &str) -> Vec<Answer> {
    waiters
        .into_iter()
        .map(|w| match w {
            Waiter::One(r) => Answer::One(r, Err(store_err(path, message))),
            Waiter::Many(_, r) => Answer::Many(r, Err(store_err(path, message))),
        })
        .collect()
}

/// Work for the notifier thread, in commit order.
enum Notice {
    Done(Vec<Answer>),
    Flushed(mpsc::SyncSender<()>),
}

/// Wakes appenders whose batch has committed, so that the writer can start the next
/// batch instead of spending its time in futex wake-ups.
fn notifier_loop(rx: &mpsc::Receiver<Notice>) {
    while let Ok(notice) = rx.recv() {
        match notice {
            Notice::Done(answers) => {
                for a in answers {
                    a.send();
                }
            }
            Notice::Flushed(f) => {
                let _ = f.send(());
            }
        }
    }
}

/// Copies the WAL back into the database after [`CHECKPOINT_COMMITS`] commits, or
/// [`CHECKPOINT_IDLE_TICKS`] quiet ticks of [`CHECKPOINT_EVERY`] after the last one,
/// with PASSIVE checkpoints (which never block writers).
///
/// It also starts the log for the next commit whenever that commit would have to: once
/// at its first tick (the log of a store just opened is empty or new) and after each
/// checkpoint that copied all of it back ([`prime_wal`]).
fn checkpointer_loop(conn: &Connection, rx: &mpsc::Receiver<()>, dirty: &AtomicUsize) {
    // Commits since the last checkpoint, and ticks since the last commit.
    let (mut unchecked, mut idle) = (0usize, 0u32);
    let mut started = false;
    loop {
        match rx.recv_timeout(CHECKPOINT_EVERY) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // One tick after the open, not during it: the open (and whatever the process
        // starts next, e.g. a sandbox) does not wait for the prime's syncs, and a store
        // closed again at once is left as it was.
        if !started {
            prime_wal(conn);
            started = true;
        }
        let fresh = dirty.swap(0, Ordering::Relaxed);
        if fresh > 0 {
            unchecked = unchecked.saturating_add(fresh);
            idle = 0;
        } else {
            idle = idle.saturating_add(1);
        }
        // A checkpoint that copies the whole WAL back makes the next commit restart the
        // log, and SQLite syncs the new log header then: an fsync (milliseconds on this
        // kind of disk) on that commit's path. So checkpoint after many commits (the
        // WAL stays a few MiB) or once the store has been idle, not on every tick.
        if unchecked > 0 && (unchecked >= CHECKPOINT_COMMITS || idle >= CHECKPOINT_IDLE_TICKS) {
            // A failed or partial checkpoint only leaves a longer WAL; the records are
            // committed either way.
            let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            });
            unchecked = 0;
            // All of the log copied back: the next commit would restart it (and sync
            // its new header); restart it here instead.
            if let Ok((0, log, copied)) = done
                && log == copied
            {
                prime_wal(conn);
            }
        }
    }
}

/// Start the write-ahead log for the next commit, off that commit's path.
///
/// The first frame written into a new log, or into one a checkpoint copied back whole,
/// starts (or restarts) it, and SQLite syncs the log's new header then — and, for a
/// file it just created, its directory: one or two `fsync`s (milliseconds on this kind
/// of disk, tens under load) in the commit that happens to come first, e.g. the sandbox
/// proxy's first connection, or a connection after two idle seconds. A small write —
/// the `log-starts` row of `meta`, a counter nothing reads (a write that changes no
/// byte writes no frame, so it has to change something) — makes the checkpointer's
/// connection pay them here instead. No record, and no part of the chain, is touched;
/// a failure leaves things as they were (the next commit starts the log itself, as
/// before).
fn prime_wal(conn: &Connection) {
    if conn.execute_batch("BEGIN IMMEDIATE").is_err() {
        return;
    }
    let done = conn
        .execute(
            "INSERT INTO meta (key, value) VALUES ('log-starts', '1') \
             ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            [],
        )
        .is_ok()
        && conn.execute_batch("COMMIT").is_ok();
    if !done {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// Commits (each a few WAL pages) after which the checkpointer copies the WAL back.
const CHECKPOINT_COMMITS: usize = 256;

/// Ticks of [`CHECKPOINT_EVERY`] without a commit after which it checkpoints anyway.
const CHECKPOINT_IDLE_TICKS: u32 = 20;

/// Batches up to this size are answered by the writer itself.
const INLINE_REPLIES: usize = 2;

/// How often the background checkpointer looks for new commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

fn writer_loop(
    conn: &Mutex<Connection>,
    checkpointer: Option<Connection>,
    path: &Path,
    rx: &mpsc::Receiver<Job>,
    dirty: Arc<AtomicUsize>,
    load: &WriterLoad,
    identity: Option<(u64, u64)>,
) {
    let lock = || match conn.lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    let (notice_tx, notice_rx) = mpsc::channel::<Notice>();
    let notifier = std::thread::Builder::new()
        .name("conductor-audit-notify".into())
        .spawn(move || notifier_loop(&notice_rx));
    // Without a notifier thread, answer from this thread.
    let (notice_tx, mut local) = match notifier {
        Ok(handle) => (Some(notice_tx), Some(handle)),
        Err(_) => (None, None),
    };
    let notify = |n: Notice| match &notice_tx {
        Some(tx) => {
            if let Err(mpsc::SendError(n)) = tx.send(n) {
                notifier_loop_one(n);
            }
        }
        None => notifier_loop_one(n),
    };
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let checkpoint_thread = checkpointer.and_then(|c| {
        let dirty = Arc::clone(&dirty);
        std::thread::Builder::new()
            .name("conductor-audit-checkpoint".into())
            .spawn(move || checkpointer_loop(&c, &stop_rx, &dirty))
            .ok()
    });
    if checkpoint_thread.is_none() {
        // No background checkpoints after all: let SQLite checkpoint on commit again.
        let _ = lock().execute_batch("PRAGMA wal_autocheckpoint=1000;");
    }

    let mut records: Vec<Prepared> = Vec::with_capacity(64);
    let mut waiters: Vec<Waiter> = Vec::with_capacity(64);
    let mut flushes: Vec<mpsc::SyncSender<()>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            load.queued.fetch_sub(1, Ordering::Relaxed);
            match job {
                Job::Append(p, r) => {
                    records.push(p);
                    waiters.push(Waiter::One(r));
                }
                // A set of records is never split across transactions.
                Job::Many(ps, r) => {
                    waiters.push(Waiter::Many(ps.len(), r));
                    records.extend(ps);
                }
                Job::Flush(f) => flushes.push(f),
            }
            if records.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !waiters.is_empty() {
            let waiting = std::mem::take(&mut waiters);
            let answers = if records.is_empty() {
                answers_ok(waiting, Vec::new())
            } else {
                let committed =
                    same_file(path, identity).and_then(|()| commit_batch(&mut lock(), &records));
                match committed {
                    Ok(receipts) => {
                        dirty.fetch_add(1, Ordering::Relaxed);
                        load.committed();
                        answers_ok(waiting, receipts)
                    }
                    // INVARIANT: a failed transaction fails every submitter in it.
                    Err(e) => answers_err(waiting, path, &e.to_string()),
                }
            };
            records.clear();
            if answers.len() <= INLINE_REPLIES {
                // At low load, waking the appender directly is quicker than a hop
                // through the notifier thread.
                for a in answers {
                    a.send();
                }
            } else {
                notify(Notice::Done(answers));
            }
        }
        for f in flushes.drain(..) {
            notify(Notice::Flushed(f));
        }
    }
    drop(notice_tx);
    if let Some(h) = local.take() {
        let _ = h.join();
    }
    drop(stop_tx);
    if let Some(h) = checkpoint_thread {
        let _ = h.join();
    }
}

fn notifier_loop_one(n: Notice) {
    let (tx, rx) = mpsc::channel();
    if tx.send(n).is_ok() {
        drop(tx);
        notifier_loop(&rx);
    }
}

fn commit_batch(conn: &mut Connection, batch: &[Prepared]) -> Result<Vec<Receipt>, WriteError> {
    // BEGIN IMMEDIATE and COMMIT as cached statements: rusqlite's `Transaction` runs
    // them through `execute_batch`, which compiles the SQL again on every commit (about
    // a tenth of a commit's instructions).
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let committed = insert_batch(conn, batch).and_then(|receipts| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(receipts)
    });
    if committed.is_err() && !conn.is_autocommit() {
        // INVARIANT: all or nothing: a failed batch leaves no record behind.
        let _ = conn.execute_batch("ROLLBACK");
    }
    committed
}

/// The batch's records, chained after the last one, inside the open transaction.
fn insert_batch(conn: &Connection, batch: &[Prepared]) -> Result<Vec<Receipt>, WriteError> {
    let head: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (mut seq, mut prev) = match head {
        None => (0u64, GENESIS),
        Some((s, h)) => {
            let s = u64::try_from(s).map_err(|_| corrupt("the last record has a negative seq"))?;
            let h = record::parse_hash(&h)
                .ok_or_else(|| corrupt("the last record's hash is not `sha256:<hex>`"))?;
            (s, h)
        }
    };
    let time = crate::time::format_micros(crate::time::now_micros());
    let mut receipts = Vec::with_capacity(batch.len());
    let mut insert =
        conn.prepare_cached("INSERT INTO records (seq, record, hash) VALUES (?1, ?2, ?3)")?;
    for prepared in batch {
        seq += 1;
        let text = prepared.finish(seq, &time, &prev);
        let hash = record::chain_hash(&prev, &text);
        let hash_s = record::hash_text(&hash);
        let seq_i = i64::try_from(seq).map_err(|_| corrupt("seq overflow"))?;
        insert.execute(rusqlite::params![seq_i, text, hash_s])?;
        receipts.push(Receipt { seq, hash: hash_s });
        prev = hash;
    }
    Ok(receipts)
}

/// The (device, inode) of the file at `path`.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|m| (m.len(), 0))
    }
}

/// Refuse to commit when the file at `path` is no longer the one opened.
fn same_file(path: &Path, identity: Option<(u64, u64)>) -> Result<(), WriteError> {
    let now = file_identity(path);
    if identity.is_some() && now == identity {
        Ok(())
    } else {
        Err(WriteError::Refused(
            "the audit database was deleted or replaced since it was opened; nothing is committed until it is opened again".into(),
        ))
    }
}

fn corrupt(msg: &str) -> WriteError {
    WriteError::Refused(format!("corrupt audit store: {msg}"))
}
