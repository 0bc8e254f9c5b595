//! Approvals: calls held until a person decides, and the standing grants people give.
//!
//! A call the policy marks `approve` is stored as a pending [`Approval`] (in the audit
//! database, tables of its own) and waits — through one [`Watcher`] per process, not a
//! loop per call — until a person approves or denies it, or it expires. Approving
//! releases exactly the held request (its digest) and may leave a standing [`Grant`]:
//! for the same call in the same session, or for the agent and tool with an argument
//! pattern, for a time window. Revoking a grant ends it.
//!
//! INVARIANT: every grant, denial, revocation and expiry is an audit record in the hash
//! chain, committed in the SAME transaction as the change it records (the chain head
//! is read under the write lock, as the store's writer does): a decision that cannot be
//! recorded is not made, and nothing is released before its record is committed.
//!
//! INVARIANT: approval and grant ids are 128 random bits from the operating system; if
//! the generator fails, no approval is created (the call is refused).
//!
//! INVARIANT: what is stored about a held call is what the gate chose to record: the
//! caller passes redacted arguments (detector names and paths, never values).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use conductor_types::{JsonPath, PathError};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::{Value, json};

use crate::NewRecord;
use crate::record::{self, GENESIS, Prepared};
use crate::store::{BUSY_TIMEOUT, WriteError, create_private, init_schema};

/// How long a held call waits when the policy does not say (10 minutes).
pub const DEFAULT_APPROVAL_TTL: Duration = Duration::from_secs(600);

/// How long a session grant lasts when the approver does not say (8 hours).
pub const DEFAULT_SESSION_GRANT: Duration = Duration::from_secs(8 * 3600);

/// How often the one watcher of a process looks for decisions while calls are held.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS conductor_approvals (
  id TEXT PRIMARY KEY,
  agent TEXT NOT NULL, tool TEXT NOT NULL, event TEXT NOT NULL, action TEXT NOT NULL,
  session TEXT, workflow TEXT, server TEXT,
  digest TEXT NOT NULL, policy TEXT NOT NULL,
  arguments TEXT NOT NULL, reasons TEXT NOT NULL,
  created INTEGER NOT NULL, expires INTEGER NOT NULL,
  status TEXT NOT NULL,
  decided_by TEXT, decided_at INTEGER, note TEXT, scope TEXT, grant_id TEXT
);
CREATE INDEX IF NOT EXISTS conductor_approvals_by_status ON conductor_approvals (status, created);
CREATE TABLE IF NOT EXISTS conductor_grants (
  id TEXT PRIMARY KEY, approval TEXT NOT NULL,
  agent TEXT NOT NULL, tool TEXT NOT NULL, scope TEXT NOT NULL,
  digest TEXT, session TEXT, pattern TEXT,
  created INTEGER NOT NULL, expires INTEGER NOT NULL, approver TEXT NOT NULL,
  revoked_by TEXT, revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS conductor_grants_by_tool ON conductor_grants (agent, tool);
CREATE TABLE IF NOT EXISTS conductor_approvals_generation (
  one INTEGER PRIMARY KEY CHECK (one = 1), value INTEGER NOT NULL
);
INSERT OR IGNORE INTO conductor_approvals_generation (one, value) VALUES (1, 0);
";

/// Anything that stops an approval operation. For a held call, every one means: deny.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApprovalError {
    /// The store cannot be used.
    #[error("approvals store `{path}` cannot be used: {message}")]
    Store {
        /// The database file.
        path: String,
        /// What failed.
        message: String,
    },
    /// No approval (or grant) has this id.
    #[error("no approval or grant has the id `{id}`")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The approval was decided already (or expired).
    #[error("approval `{id}` is {status}, not pending")]
    NotPending {
        /// The approval.
        id: String,
        /// Its status.
        status: String,
    },
    /// The request is not acceptable (a scope without its window, an empty name…).
    #[error("{message}")]
    Invalid {
        /// What is wrong and what to do.
        message: String,
    },
}

/// Where a held call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a person.
    Pending,
    /// Released.
    Approved,
    /// Refused by a person.
    Denied,
    /// Nobody decided in time.
    Expired,
}

impl Status {
    /// `pending`, `approved`, `denied` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "expired" => Status::Expired,
            _ => return None,
        })
    }
}

/// What a grant releases besides the held call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Only the held call.
    Call,
    /// The same request (digest) again in the same session, for `duration` (default
    /// [`DEFAULT_SESSION_GRANT`]).
    Session {
        /// How long the grant lasts.
        duration: Option<Duration>,
    },
    /// Calls of the same agent to the same tool whose arguments match `pattern` (JSON
    /// pointer → glob over the string at that pointer; empty: the same arguments), for
    /// `duration`.
    Window {
        /// How long the grant lasts.
        duration: Duration,
        /// Pointer → glob (`*` any run, `?` one character); every one must match.
        pattern: Vec<(String, String)>,
    },
}

impl Scope {
    /// `call`, `session` or `window`.
    pub fn name(&self) -> &'static str {
        match self {
            Scope::Call => "call",
            Scope::Session { .. } => "session",
            Scope::Window { .. } => "window",
        }
    }
}

/// A call to hold (what the gate knows of it, redacted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewApproval {
    /// The agent.
    pub agent: String,
    /// The qualified tool name.
    pub tool: String,
    /// The audit event of the call (`tools/call`, …).
    pub event: String,
    /// The tool's action (`read`, `write`, …).
    pub action: String,
    /// The session.
    pub session: Option<String>,
    /// The workflow.
    pub workflow: Option<String>,
    /// The upstream server.
    pub server: Option<String>,
    /// `sha256:<hex>` of the call (see [`call_digest`]).
    pub digest: String,
    /// `sha256:<hex>` of the policy that asked for approval.
    pub policy: String,
    /// The arguments as the gate records them (redacted).
    pub arguments: Value,
    /// The decision's reasons (why approval is needed).
    pub reasons: Value,
    /// How long it may wait.
    pub ttl: Duration,
}

/// A held call as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// The id (32 hex digits).
    pub id: String,
    /// The call.
    pub call: NewApproval,
    /// When it was stored (µs since the epoch).
    pub created: i64,
    /// When it expires (µs since the epoch).
    pub expires: i64,
    /// The stored status (see [`Approval::status_at`]).
    pub status: Status,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When (µs since the epoch).
    pub decided_at: Option<i64>,
    /// The denial's reason.
    pub note: Option<String>,
    /// The scope of the approval.
    pub scope: Option<String>,
    /// The standing grant it left.
    pub grant: Option<String>,
}

impl Approval {
    /// The status at `now`: a pending approval past its expiry is expired.
    pub fn status_at(&self, now: i64) -> Status {
        if self.status == Status::Pending && self.expires <= now {
            Status::Expired
        } else {
            self.status
        }
    }

    /// The approval as JSON (times in RFC 3339), for `list --format json`, the HTTP
    /// API and the console.
    pub fn to_json(&self) -> Value {
        let now = crate::time::now_micros();
        let c = &self.call;
        json!({
            "id": self.id,
            "agent": c.agent,
            "tool": c.tool,
            "event": c.event,
            "action": c.action,
            "session": c.session,
            "workflow": c.workflow,
            "server": c.server,
            "request_digest": c.digest,
            "policy": c.policy,
            "arguments": c.arguments,
            "reasons": c.reasons,
            "created": crate::time::format_micros(self.created),
            "expires": crate::time::format_micros(self.expires),
            "status": self.status_at(now).as_str(),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.map(crate::time::format_micros),
            "note": self.note,
            "scope": self.scope,
            "grant": self.grant,
        })
    }
}

/// A standing grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The id (32 hex digits).
    pub id: String,
    /// The approval that created it.
    pub approval: String,
    /// The agent it is for.
    pub agent: String,
    /// The tool it is for.
    pub tool: String,
    /// `session` or `window`.
    pub scope: String,
    /// The request digest it is bound to (none for a window with a pattern).
    pub digest: Option<String>,
    /// The session it is bound to (`session` scope).
    pub session: Option<String>,
    /// Pointer → glob (`window` scope with a pattern).
    pub pattern: Vec<(String, String)>,
    /// When it was given, and until when it holds (µs since the epoch).
    pub created: i64,
    /// Until when it holds.
    pub expires: i64,
    /// Who gave it.
    pub approver: String,
    /// Who revoked it, if anyone.
    pub revoked_by: Option<String>,
}

impl Grant {
    /// The grant as JSON (times in RFC 3339).
    pub fn to_json(&self) -> Value {
        let pattern: serde_json::Map<String, Value> = self
            .pattern
            .iter()
            .map(|(p, g)| (p.clone(), Value::String(g.clone())))
            .collect();
        json!({
            "id": self.id,
            "approval": self.approval,
            "agent": self.agent,
            "tool": self.tool,
            "scope": self.scope,
            "request_digest": self.digest,
            "session": self.session,
            "pattern": pattern,
            "created": crate::time::format_micros(self.created),
            "expires": crate::time::format_micros(self.expires),
            "approver": self.approver,
            "revoked_by": self.revoked_by,
        })
    }

    /// Whether this grant releases `q` at `now`.
    pub fn covers(&self, q: &GrantQuery<'_>, now: i64) -> bool {
        if self.revoked_by.is_some() || self.expires <= now {
            return false;
        }
        if self.agent != q.agent || self.tool != q.tool {
            return false;
        }
        match self.scope.as_str() {
            "session" => {
                self.digest.as_deref() == Some(q.digest)
                    && self.session.is_some()
                    && self.session.as_deref() == q.session
            }
            "window" => {
                if self.pattern.is_empty() {
                    self.digest.as_deref() == Some(q.digest)
                } else {
                    // INVARIANT: every pointer must name a string that matches its glob;
                    // a missing member, another type or a pointer that does not read
                    // (see `pattern_path`) does not match.
                    self.pattern.iter().all(|(ptr, glob)| {
                        pattern_path(ptr)
                            .ok()
                            .and_then(|p| p.get(q.arguments))
                            .and_then(Value::as_str)
                            .is_some_and(|s| glob_match(glob, s))
                    })
                }
            }
            _ => false,
        }
    }
}

/// The path a window pattern's pointer names: an RFC 6901 pointer (`""` for the
/// whole arguments). The withheld-member segment `~k<i>` that findings are written
/// with names no argument by name, so a pattern cannot use it.
fn pattern_path(pointer: &str) -> Result<JsonPath, &'static str> {
    match JsonPath::parse(pointer) {
        Err(PathError::NoLeadingSlash) => Err("is not a JSON pointer (it starts with `/`)"),
        Err(PathError::BadEscape { .. }) => {
            Err("is not a JSON pointer (`~` is followed by `0` for `~` or `1` for `/`)")
        }
        Ok(p) if p.withholds_a_name() => {
            Err("is not a JSON pointer (`~` is followed by `0` for `~` or `1` for `/`)")
        }
        Ok(p) => Ok(p),
    }
}

/// A call the gate looks a standing grant up for.
#[derive(Debug, Clone, Copy)]
pub struct GrantQuery<'a> {
    /// The agent.
    pub agent: &'a str,
    /// The qualified tool name.
    pub tool: &'a str,
    /// The call digest ([`call_digest`]).
    pub digest: &'a str,
    /// The session.
    pub session: Option<&'a str>,
    /// The arguments as received (matched against patterns, never stored).
    pub arguments: &'a Value,
}

/// Which approvals to list.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    /// Only those pending now (not decided, not expired).
    pub pending_only: bool,
    /// Only this agent's.
    pub agent: Option<String>,
    /// Only calls to this tool.
    pub tool: Option<String>,
    /// At most this many, newest first (default 1000).
    pub limit: Option<usize>,
}

/// How a held call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A person approved it.
    Approved {
        /// Who.
        approver: String,
        /// The scope they chose.
        scope: String,
        /// The standing grant it left, if any.
        grant: Option<String>,
    },
    /// A person denied it.
    Denied {
        /// Who.
        approver: String,
        /// Why.
        reason: String,
    },
    /// Nobody decided in time.
    Expired,
    /// The store failed while the call waited (the call is refused).
    Failed(String),
}

/// The `sha256:<hex>` a held call is bound to: the canonical JSON of the agent, tool,
/// workflow and arguments (not the session or its labels, so that the same call is
/// the same call later in the session).
pub fn call_digest(agent: &str, tool: &str, workflow: Option<&str>, arguments: &Value) -> String {
    crate::request_digest(&json!({
        "agent": agent,
        "tool": tool,
        "workflow": workflow,
        "arguments": arguments,
    }))
}

/// Where approvals live. `SqliteApprovals` is the one implementation today; a
/// PostgreSQL one (fleet mode) takes the same seam.
pub trait ApprovalStore: Send + Sync {
    /// Store a pending approval and return it (with its new id).
    fn create(&self, call: NewApproval) -> Result<Approval, ApprovalError>;
    /// Approvals, newest first.
    fn list(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>, ApprovalError>;
    /// One approval.
    fn show(&self, id: &str) -> Result<Approval, ApprovalError>;
    /// Approve a pending approval; records the grant (naming `approver`) in the chain.
    fn approve(&self, id: &str, approver: &str, scope: &Scope) -> Result<Approval, ApprovalError>;
    /// Deny a pending approval; records the denial in the chain.
    fn deny(&self, id: &str, approver: &str, reason: &str) -> Result<Approval, ApprovalError>;
    /// Mark a pending approval past its expiry expired (recorded); `Ok(false)` when it
    /// was not pending any more (decided meanwhile).
    fn expire(&self, id: &str) -> Result<bool, ApprovalError>;
    /// Revoke a standing grant; records the revocation in the chain.
    fn revoke(&self, grant: &str, by: &str) -> Result<Grant, ApprovalError>;
    /// Standing grants (unrevoked and unexpired only, when `active_only`).
    fn grants(&self, active_only: bool) -> Result<Vec<Grant>, ApprovalError>;
    /// The standing grant that releases `q` now, if any.
    fn find_grant(&self, q: &GrantQuery<'_>) -> Result<Option<Grant>, ApprovalError>;
    /// Wait for the approval `id` to be decided or to expire (no thread or loop per
    /// waiter: one watcher per store wakes the right one).
    fn wait(&self, id: &str) -> Ticket;
}

/// The approvals store in the audit database (SQLite, WAL), shared by every process
/// of the installation.
pub struct SqliteApprovals {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    watcher: Arc<Watcher>,
}

impl std::fmt::Debug for SqliteApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteApprovals")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// 128 random bits, in hex, from the operating system.
fn random_hex() -> Result<String, std::io::Error> {
    use std::io::Read;
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl SqliteApprovals {
    /// Open (creating the audit store's schema and the approval tables if needed) the
    /// approvals in the audit database at `path`.
    pub fn open(path: &Path) -> Result<SqliteApprovals, ApprovalError> {
        let err = |e: &dyn std::fmt::Display| store_err(path, e);
        create_private(path).map_err(|e| err(&e))?;
        let mut conn = open_conn(path)?;
        let started = std::time::Instant::now();
        loop {
            let r = init_schema(&mut conn).and_then(|()| {
                conn.execute_batch(SCHEMA)?;
                Ok(())
            });
            match r {
                Err(WriteError::Sql(rusqlite::Error::SqliteFailure(e, _)))
                    if is_busy(e.code) && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => {
                    other.map_err(|e| err(&e))?;
                    break;
                }
            }
        }
        let watch_conn = open_conn(path)?;
        Ok(SqliteApprovals {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
            watcher: Watcher::new(path.to_path_buf(), watch_conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> ApprovalError {
        store_err(&self.path, e)
    }

    /// Run `f` in one `BEGIN IMMEDIATE` transaction, committing the audit records it
    /// returns chained onto the head, and bump the generation the watchers look at.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(T, Vec<NewRecord>), ApprovalError>,
    ) -> Result<T, ApprovalError> {
        let mut conn = lock(&self.conn);
        let txn = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let (out, records) = f(&txn)?;
        if !records.is_empty() {
            chain_insert(&txn, &records).map_err(|e| self.err(e))?;
        }
        txn.execute(
            "UPDATE conductor_approvals_generation SET value = value + 1 WHERE one = 1",
            [],
        )
        .map_err(|e| self.err(e))?;
        // INVARIANT: the change and its audit record are committed together, or neither.
        txn.commit().map_err(|e| self.err(e))?;
        drop(conn);
        self.watcher.poke();
        Ok(out)
    }

    fn get(&self, txn: &Connection, id: &str) -> Result<Approval, ApprovalError> {
        txn.query_row(
            &format!("SELECT {COLUMNS} FROM conductor_approvals WHERE id = ?1"),
            [id],
            row_approval,
        )
        .optional()
        .map_err(|e| self.err(e))?
        .ok_or_else(|| ApprovalError::NotFound { id: id.to_string() })?
        .map_err(|e| self.err(e))
    }
}

fn is_busy(code: rusqlite::ErrorCode) -> bool {
    matches!(
        code,
        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
    )
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> ApprovalError {
    ApprovalError::Store {
        path: path.display().to_string(),
        message: e.to_string().to_lowercase(),
    }
}

fn open_conn(path: &Path) -> Result<Connection, ApprovalError> {
    let err = |e: &dyn std::fmt::Display| store_err(path, e);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| err(&e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| err(&e))?;
    let started = std::time::Instant::now();
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if is_busy(e.code) && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(err(&e)),
            Ok(_) => break,
        }
    }
    Ok(conn)
}

/// Insert `records` chained onto the head, inside the caller's `BEGIN IMMEDIATE`
/// transaction.
///
/// INVARIANT: the same chaining as the store's writer (`store::commit_batch`): the head
/// is read under the write lock held by the transaction, so the chain never forks.
fn chain_insert(txn: &rusqlite::Transaction<'_>, records: &[NewRecord]) -> Result<(), WriteError> {
    let head: Option<(i64, String)> = txn
        .prepare_cached("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (mut seq, mut prev) = match head {
        None => (0u64, GENESIS),
        Some((s, h)) => {
            let s = u64::try_from(s)
                .map_err(|_| WriteError::Refused("the last record has a negative seq".into()))?;
            let h = record::parse_hash(&h).ok_or_else(|| {
                WriteError::Refused("the last record's hash is not `sha256:<hex>`".into())
            })?;
            (s, h)
        }
    };
    let time = crate::time::format_micros(crate::time::now_micros());
    let mut insert =
        txn.prepare_cached("INSERT INTO records (seq, record, hash) VALUES (?1, ?2, ?3)")?;
    for r in records {
        seq += 1;
        let text = Prepared::new(r).finish(seq, &time, &prev);
        let hash = record::chain_hash(&prev, &text);
        let seq_i = i64::try_from(seq).map_err(|_| WriteError::Refused("seq overflow".into()))?;
        insert.execute(params![seq_i, text, record::hash_text(&hash)])?;
        prev = hash;
    }
    Ok(())
}

const COLUMNS: &str = "id, agent, tool, event, action, session, workflow, server, digest, policy, \
    arguments, reasons, created, expires, status, decided_by, decided_at, note, scope, grant_id";

type RowResult<T> = Result<T, String>;

fn row_approval(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult<Approval>> {
    let arguments: String = r.get(10)?;
    let reasons: String = r.get(11)?;
    let status: String = r.get(14)?;
    let (Ok(arguments), Ok(reasons), Some(status)) = (
        serde_json::from_str::<Value>(&arguments),
        serde_json::from_str::<Value>(&reasons),
        Status::parse(&status),
    ) else {
        return Ok(Err("an approval row is damaged".into()));
    };
    Ok(Ok(Approval {
        id: r.get(0)?,
        call: NewApproval {
            agent: r.get(1)?,
            tool: r.get(2)?,
            event: r.get(3)?,
            action: r.get(4)?,
            session: r.get(5)?,
            workflow: r.get(6)?,
            server: r.get(7)?,
            digest: r.get(8)?,
            policy: r.get(9)?,
            arguments,
            reasons,
            ttl: Duration::ZERO,
        },
        created: r.get(12)?,
        expires: r.get(13)?,
        status,
        decided_by: r.get(15)?,
        decided_at: r.get(16)?,
        note: r.get(17)?,
        scope: r.get(18)?,
        grant: r.get(19)?,
    }))
}

const GRANT_COLUMNS: &str = "id, approval, agent, tool, scope, digest, session, pattern, created, \
    expires, approver, revoked_by";

fn row_grant(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult<Grant>> {
    let pattern: Option<String> = r.get(7)?;
    let pattern: Vec<(String, String)> = match pattern {
        None => Vec::new(),
        Some(p) => match serde_json::from_str(&p) {
            Ok(v) => v,
            Err(_) => return Ok(Err("a grant row is damaged".into())),
        },
    };
    Ok(Ok(Grant {
        id: r.get(0)?,
        approval: r.get(1)?,
        agent: r.get(2)?,
        tool: r.get(3)?,
        scope: r.get(4)?,
        digest: r.get(5)?,
        session: r.get(6)?,
        pattern,
        created: r.get(8)?,
        expires: r.get(9)?,
        approver: r.get(10)?,
        revoked_by: r.get(11)?,
    }))
}

/// The audit record of a change to an approval.
fn record_of(a: &Approval, event: &str, decision: &str, reason: Value, note: Value) -> NewRecord {
    let c = &a.call;
    NewRecord {
        event: event.to_string(),
        agent: c.agent.clone(),
        session: c.session.clone(),
        workflow: c.workflow.clone(),
        server: c.server.clone(),
        tool: c.tool.clone(),
        action: c.action.clone(),
        decision: decision.to_string(),
        reasons: json!([reason]),
        destinations: json!([]),
        findings: json!([]),
        policy: c.policy.clone(),
        request_digest: c.digest.clone(),
        // What the record is about (no call arguments: those are in the held call's
        // own records, redacted).
        arguments: Some(note),
        latency_us: 0,
        // The approver is named in `arguments`; an agent's proof does not apply.
        auth: None,
    }
}

/// A name people read in a message: user input, shown in backticks, cut.
fn shown(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).take(120).collect();
    format!("`{clean}`")
}

fn check_name(what: &str, name: &str) -> Result<(), ApprovalError> {
    if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ApprovalError::Invalid {
            message: format!(
                "the {what} must be a non-empty name of at most 200 characters without control characters"
            ),
        });
    }
    Ok(())
}

impl ApprovalStore for SqliteApprovals {
    fn create(&self, call: NewApproval) -> Result<Approval, ApprovalError> {
        let id = random_hex().map_err(|e| {
            self.err(format!(
                "the operating system's random generator failed: {e}"
            ))
        })?;
        let created = crate::time::now_micros();
        let expires = created.saturating_add(micros(call.ttl));
        let approval = Approval {
            id: id.clone(),
            call,
            created,
            expires,
            status: Status::Pending,
            decided_by: None,
            decided_at: None,
            note: None,
            scope: None,
            grant: None,
        };
        let c = &approval.call;
        let conn = lock(&self.conn);
        conn.execute(
            "INSERT INTO conductor_approvals (id, agent, tool, event, action, session, workflow, server, \
             digest, policy, arguments, reasons, created, expires, status) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'pending')",
            params![
                id,
                c.agent,
                c.tool,
                c.event,
                c.action,
                c.session,
                c.workflow,
                c.server,
                c.digest,
                c.policy,
                c.arguments.to_string(),
                c.reasons.to_string(),
                created,
                expires
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(approval)
    }

    fn list(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>, ApprovalError> {
        let now = crate::time::now_micros();
        let limit = i64::try_from(filter.limit.unwrap_or(1000)).unwrap_or(i64::MAX);
        let conn = lock(&self.conn);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM conductor_approvals \
                 WHERE (?1 = 0 OR (status = 'pending' AND expires > ?2)) \
                 AND (?3 IS NULL OR agent = ?3) AND (?4 IS NULL OR tool = ?4) \
                 ORDER BY created DESC, id LIMIT ?5"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![
                    i64::from(filter.pending_only),
                    now,
                    filter.agent,
                    filter.tool,
                    limit
                ],
                row_approval,
            )
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r.map_err(|e| self.err(e))?.map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    fn show(&self, id: &str) -> Result<Approval, ApprovalError> {
        let conn = lock(&self.conn);
        self.get(&conn, id)
    }

    fn approve(&self, id: &str, approver: &str, scope: &Scope) -> Result<Approval, ApprovalError> {
        check_name("approver", approver)?;
        if let Scope::Window { duration, pattern } = scope {
            if duration.is_zero() {
                return Err(ApprovalError::Invalid {
                    message: "a window grant needs a duration (`--for`, e.g. `30m`)".into(),
                });
            }
            for (p, _) in pattern {
                if let Err(why) = pattern_path(p) {
                    return Err(ApprovalError::Invalid {
                        message: format!("the pattern pointer {} {why}", shown(p)),
                    });
                }
            }
        }
        let grant_id = match scope {
            Scope::Call => None,
            _ => Some(random_hex().map_err(|e| {
                self.err(format!(
                    "the operating system's random generator failed: {e}"
                ))
            })?),
        };
        self.write(|txn| {
            let now = crate::time::now_micros();
            let mut a = self.get(txn, id)?;
            let status = a.status_at(now);
            if status != Status::Pending {
                return Err(ApprovalError::NotPending {
                    id: id.to_string(),
                    status: status.as_str().to_string(),
                });
            }
            let mut until = None;
            if let Some(gid) = &grant_id {
                let (duration, digest, session, pattern) = match scope {
                    Scope::Session { duration } => (
                        duration.unwrap_or(DEFAULT_SESSION_GRANT),
                        Some(a.call.digest.clone()),
                        a.call.session.clone(),
                        Vec::new(),
                    ),
                    Scope::Window { duration, pattern } => (
                        *duration,
                        pattern.is_empty().then(|| a.call.digest.clone()),
                        None,
                        pattern.clone(),
                    ),
                    Scope::Call => (Duration::ZERO, None, None, Vec::new()),
                };
                let expires = now.saturating_add(micros(duration));
                until = Some(expires);
                let pattern_text = (!pattern.is_empty())
                    .then(|| serde_json::to_string(&pattern).unwrap_or_default());
                txn.execute(
                    "INSERT INTO conductor_grants (id, approval, agent, tool, scope, digest, session, \
                     pattern, created, expires, approver) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        gid,
                        a.id,
                        a.call.agent,
                        a.call.tool,
                        scope.name(),
                        digest,
                        session,
                        pattern_text,
                        now,
                        expires,
                        approver
                    ],
                )
                .map_err(|e| self.err(e))?;
            }
            txn.execute(
                "UPDATE conductor_approvals SET status = 'approved', decided_by = ?2, decided_at = ?3, \
                 scope = ?4, grant_id = ?5 WHERE id = ?1",
                params![a.id, approver, now, scope.name(), grant_id],
            )
            .map_err(|e| self.err(e))?;
            a.status = Status::Approved;
            a.decided_by = Some(approver.to_string());
            a.decided_at = Some(now);
            a.scope = Some(scope.name().to_string());
            a.grant.clone_from(&grant_id);
            let mut releases = format!("the held call {} (approval `{}`)", shown(&a.call.tool), a.id);
            match scope {
                Scope::Call => {}
                Scope::Session { .. } => releases.push_str(
                    ", and the same call again in this session until the grant expires",
                ),
                Scope::Window { pattern, .. } if pattern.is_empty() => releases.push_str(
                    ", and the same call again by this agent until the grant expires",
                ),
                Scope::Window { .. } => releases.push_str(
                    ", and calls of this agent to this tool whose arguments match the pattern until the grant expires",
                ),
            }
            let message = format!(
                "approved by {} (scope {}): releases {releases}",
                shown(approver),
                scope.name()
            );
            let pattern: serde_json::Map<String, Value> = match scope {
                Scope::Window { pattern, .. } => pattern
                    .iter()
                    .map(|(p, g)| (p.clone(), Value::String(g.clone())))
                    .collect(),
                _ => serde_json::Map::new(),
            };
            let rec = record_of(
                &a,
                "approval-grant",
                "allow",
                json!({"check": "approval", "rule": "approval.granted", "message": message}),
                json!({
                    "approval": a.id,
                    "approver": approver,
                    "scope": scope.name(),
                    "grant": grant_id,
                    "until": until.map(crate::time::format_micros),
                    "pattern": pattern,
                }),
            );
            Ok((a, vec![rec]))
        })
    }

    fn deny(&self, id: &str, approver: &str, reason: &str) -> Result<Approval, ApprovalError> {
        check_name("approver", approver)?;
        if reason.trim().is_empty() || reason.len() > 2000 {
            return Err(ApprovalError::Invalid {
                message: "a denial needs a reason (`--reason`, at most 2000 characters)".into(),
            });
        }
        self.write(|txn| {
            let now = crate::time::now_micros();
            let mut a = self.get(txn, id)?;
            let status = a.status_at(now);
            if status != Status::Pending {
                return Err(ApprovalError::NotPending {
                    id: id.to_string(),
                    status: status.as_str().to_string(),
                });
            }
            txn.execute(
                "UPDATE conductor_approvals SET status = 'denied', decided_by = ?2, decided_at = ?3, \
                 note = ?4 WHERE id = ?1",
                params![a.id, approver, now, reason],
            )
            .map_err(|e| self.err(e))?;
            a.status = Status::Denied;
            a.decided_by = Some(approver.to_string());
            a.decided_at = Some(now);
            a.note = Some(reason.to_string());
            let message = format!(
                "denied by {}: {}",
                shown(approver),
                shown(reason).trim_matches('`')
            );
            let rec = record_of(
                &a,
                "approval-deny",
                "deny",
                json!({"check": "approval", "rule": "approval.denied", "message": message}),
                json!({"approval": a.id, "approver": approver}),
            );
            Ok((a, vec![rec]))
        })
    }

    fn expire(&self, id: &str) -> Result<bool, ApprovalError> {
        self.write(|txn| {
            let now = crate::time::now_micros();
            let a = self.get(txn, id)?;
            if a.status != Status::Pending {
                return Ok((false, Vec::new()));
            }
            if a.expires > now {
                return Err(ApprovalError::Invalid {
                    message: format!("approval `{}` has not expired yet", a.id),
                });
            }
            txn.execute(
                "UPDATE conductor_approvals SET status = 'expired', decided_at = ?2 WHERE id = ?1",
                params![a.id, now],
            )
            .map_err(|e| self.err(e))?;
            let message = format!(
                "nobody approved the call to {} before it expired at {}",
                shown(&a.call.tool),
                crate::time::format_micros(a.expires)
            );
            let rec = record_of(
                &a,
                "approval-expire",
                "deny",
                json!({"check": "approval", "rule": "approval.expired", "message": message}),
                json!({"approval": a.id}),
            );
            Ok((true, vec![rec]))
        })
    }

    fn revoke(&self, grant: &str, by: &str) -> Result<Grant, ApprovalError> {
        check_name("approver", by)?;
        self.write(|txn| {
            let now = crate::time::now_micros();
            let mut g = txn
                .query_row(
                    &format!("SELECT {GRANT_COLUMNS} FROM conductor_grants WHERE id = ?1"),
                    [grant],
                    row_grant,
                )
                .optional()
                .map_err(|e| self.err(e))?
                .ok_or_else(|| ApprovalError::NotFound {
                    id: grant.to_string(),
                })?
                .map_err(|e| self.err(e))?;
            if g.revoked_by.is_some() {
                return Err(ApprovalError::NotPending {
                    id: grant.to_string(),
                    status: "revoked".into(),
                });
            }
            txn.execute(
                "UPDATE conductor_grants SET revoked_by = ?2, revoked_at = ?3 WHERE id = ?1",
                params![g.id, by, now],
            )
            .map_err(|e| self.err(e))?;
            g.revoked_by = Some(by.to_string());
            let a = self.get(txn, &g.approval)?;
            let message = format!(
                "grant `{}` (scope {}, given by {}) revoked by {}",
                g.id,
                g.scope,
                shown(&g.approver),
                shown(by)
            );
            let rec = record_of(
                &a,
                "approval-revoke",
                "deny",
                json!({"check": "approval", "rule": "approval.revoked", "message": message}),
                json!({"approval": a.id, "grant": g.id, "approver": by}),
            );
            Ok((g, vec![rec]))
        })
    }

    fn grants(&self, active_only: bool) -> Result<Vec<Grant>, ApprovalError> {
        let now = crate::time::now_micros();
        let conn = lock(&self.conn);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM conductor_grants \
                 WHERE ?1 = 0 OR (revoked_by IS NULL AND expires > ?2) ORDER BY created DESC, id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![i64::from(active_only), now], row_grant)
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r.map_err(|e| self.err(e))?.map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    fn find_grant(&self, q: &GrantQuery<'_>) -> Result<Option<Grant>, ApprovalError> {
        let now = crate::time::now_micros();
        let conn = lock(&self.conn);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM conductor_grants \
                 WHERE agent = ?1 AND tool = ?2 AND revoked_by IS NULL AND expires > ?3 \
                 ORDER BY created, id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![q.agent, q.tool, now], row_grant)
            .map_err(|e| self.err(e))?;
        for r in rows {
            let g = r.map_err(|e| self.err(e))?.map_err(|e| self.err(e))?;
            if g.covers(q, now) {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    fn wait(&self, id: &str) -> Ticket {
        match self.show(id) {
            Ok(a) => self
                .watcher
                .register(id, a.expires, Arc::clone(&self.conn), &self.path),
            Err(e) => Ticket::ready(id, Outcome::Failed(e.to_string())),
        }
    }
}

/// `*` matches any run of characters (also `/`), `?` one character; everything else
/// itself.
pub fn glob_match(glob: &str, s: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut gi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ti));
                gi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                gi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    gi = sg + 1;
                    ti = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    g.get(gi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

// ---------------------------------------------------------------------------------
// Waiting: one watcher per store wakes the held calls.

/// A held call's wait for its outcome: a future (for async callers) and
/// [`Ticket::wait_blocking`] (for threads). Dropping it stops waiting.
#[derive(Debug)]
pub struct Ticket {
    slot: Arc<TicketSlot>,
    watcher: Option<Arc<Watcher>>,
    id: String,
}

#[derive(Debug, Default)]
struct TicketSlot {
    state: Mutex<(Option<Outcome>, Option<Waker>)>,
    ready: Condvar,
}

impl TicketSlot {
    fn put(&self, o: Outcome) {
        let waker = {
            let mut st = lock(&self.state);
            if st.0.is_none() {
                st.0 = Some(o);
            }
            st.1.take()
        };
        self.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Ticket {
    fn ready(id: &str, o: Outcome) -> Ticket {
        let slot = Arc::new(TicketSlot::default());
        slot.put(o);
        Ticket {
            slot,
            watcher: None,
            id: id.to_string(),
        }
    }

    /// The approval this ticket waits for.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Block the thread until the outcome is known.
    pub fn wait_blocking(self) -> Outcome {
        let mut st = lock(&self.slot.state);
        loop {
            if let Some(o) = st.0.take() {
                return o;
            }
            st = match self.slot.ready.wait(st) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }
}

impl Future for Ticket {
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut st = lock(&self.slot.state);
        if let Some(o) = st.0.take() {
            return Poll::Ready(o);
        }
        st.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(w) = &self.watcher {
            w.forget(&self.id, &self.slot);
        }
    }
}

struct Waiter {
    slot: Weak<TicketSlot>,
    conn: Arc<Mutex<Connection>>,
    expires: i64,
}

#[derive(Default)]
struct WatchState {
    waiters: HashMap<String, Vec<Waiter>>,
    /// Set by a write in this process: look now.
    poked: bool,
    running: bool,
}

/// The one watcher of a store: a thread that, while calls are held, reads ONE row (the
/// generation every decision bumps) every [`WATCH_INTERVAL`] and, when it changed or an
/// expiry passed, reads the held approvals' rows and wakes their tickets. With nothing
/// held it sleeps.
pub(crate) struct Watcher {
    path: PathBuf,
    conn: Mutex<Connection>,
    state: Mutex<WatchState>,
    wake: Condvar,
    me: Weak<Watcher>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    fn new(path: PathBuf, conn: Connection) -> Arc<Watcher> {
        Arc::new_cyclic(|me| Watcher {
            path,
            conn: Mutex::new(conn),
            state: Mutex::new(WatchState::default()),
            wake: Condvar::new(),
            me: me.clone(),
        })
    }

    fn poke(&self) {
        let mut st = lock(&self.state);
        st.poked = true;
        drop(st);
        self.wake.notify_all();
    }

    fn register(
        &self,
        id: &str,
        expires: i64,
        conn: Arc<Mutex<Connection>>,
        path: &Path,
    ) -> Ticket {
        let Some(me) = self.me.upgrade() else {
            return Ticket::ready(
                id,
                Outcome::Failed("the approvals watcher has stopped".into()),
            );
        };
        let slot = Arc::new(TicketSlot::default());
        let start = {
            let mut st = lock(&self.state);
            st.waiters.entry(id.to_string()).or_default().push(Waiter {
                slot: Arc::downgrade(&slot),
                conn,
                expires,
            });
            st.poked = true;
            let start = !st.running;
            st.running = true;
            start
        };
        if start {
            let weak = self.me.clone();
            let spawned = std::thread::Builder::new()
                .name("conductor-approvals-watch".into())
                .spawn(move || watch_loop(&weak));
            if let Err(e) = spawned {
                lock(&self.state).running = false;
                slot.put(Outcome::Failed(
                    store_err(path, format!("cannot start the approvals watcher: {e}")).to_string(),
                ));
            }
        } else {
            self.wake.notify_all();
        }
        Ticket {
            slot,
            watcher: Some(me),
            id: id.to_string(),
        }
    }

    fn forget(&self, id: &str, slot: &Arc<TicketSlot>) {
        let mut st = lock(&self.state);
        if let Some(list) = st.waiters.get_mut(id) {
            list.retain(|w| w.slot.upgrade().is_some_and(|s| !Arc::ptr_eq(&s, slot)));
            if list.is_empty() {
                st.waiters.remove(id);
            }
        }
    }

    fn generation(&self) -> Option<i64> {
        lock(&self.conn)
            .query_row(
                "SELECT value FROM conductor_approvals_generation WHERE one = 1",
                [],
                |r| r.get(0),
            )
            .ok()
    }

    /// Read the held approvals; wake those decided; expire those past their expiry.
    fn sweep(&self) {
        let ids: Vec<String> = lock(&self.state).waiters.keys().cloned().collect();
        let now = crate::time::now_micros();
        for id in ids {
            let row = {
                let conn = lock(&self.conn);
                conn.query_row(
                    &format!("SELECT {COLUMNS} FROM conductor_approvals WHERE id = ?1"),
                    [&id],
                    row_approval,
                )
                .optional()
            };
            let outcome = match row {
                Err(e) => Some(Outcome::Failed(store_err(&self.path, e).to_string())),
                Ok(None) => Some(Outcome::Failed(format!("approval `{id}` disappeared"))),
                Ok(Some(Err(e))) => Some(Outcome::Failed(e)),
                Ok(Some(Ok(a))) => match a.status {
                    Status::Approved => Some(Outcome::Approved {
                        approver: a.decided_by.unwrap_or_default(),
                        scope: a.scope.unwrap_or_else(|| "call".into()),
                        grant: a.grant,
                    }),
                    Status::Denied => Some(Outcome::Denied {
                        approver: a.decided_by.unwrap_or_default(),
                        reason: a.note.unwrap_or_default(),
                    }),
                    Status::Expired => Some(Outcome::Expired),
                    Status::Pending if a.expires <= now => {
                        // Recorded by this process, which holds the call.
                        match self.expire_with(&id) {
                            Ok(true) => Some(Outcome::Expired),
                            // Decided meanwhile: the next sweep reads it.
                            Ok(false) => None,
                            Err(e) => Some(Outcome::Failed(e.to_string())),
                        }
                    }
                    Status::Pending => None,
                },
            };
            if let Some(o) = outcome {
                let list = lock(&self.state).waiters.remove(&id).unwrap_or_default();
                for w in list {
                    if let Some(s) = w.slot.upgrade() {
                        s.put(o.clone());
                    }
                }
            }
        }
    }

    fn expire_with(&self, id: &str) -> Result<bool, ApprovalError> {
        let conn = {
            let st = lock(&self.state);
            st.waiters
                .get(id)
                .and_then(|l| l.first())
                .map(|w| Arc::clone(&w.conn))
        };
        let Some(conn) = conn else {
            return Ok(false);
        };
        let store = SqliteApprovals {
            path: self.path.clone(),
            conn,
            watcher: match self.me.upgrade() {
                Some(w) => w,
                None => return Ok(false),
            },
        };
        store.expire(id)
    }
}

fn watch_loop(weak: &Weak<Watcher>) {
    let mut last: Option<i64> = None;
    loop {
        let Some(w) = weak.upgrade() else { return };
        let soonest = {
            let mut st = lock(&w.state);
            st.waiters.retain(|_, l| {
                l.retain(|x| x.slot.strong_count() > 0);
                !l.is_empty()
            });
            if st.waiters.is_empty() {
                // Nothing held: sleep until a call is (or the store goes away).
                let (g, _) = match w.wake.wait_timeout(st, Duration::from_secs(1)) {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                st = g;
                if st.waiters.is_empty() {
                    if Arc::strong_count(&w) <= 1 {
                        st.running = false;
                        return;
                    }
                    continue;
                }
            }
            if !st.poked {
                let (g, _) = match w.wake.wait_timeout(st, WATCH_INTERVAL) {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                st = g;
            }
            st.poked = false;
            st.waiters
                .values()
                .flat_map(|l| l.iter().map(|x| x.expires))
                .min()
                .unwrap_or(i64::MAX)
        };
        // One row read per interval for the whole process; the held rows are read
        // only when a decision was made somewhere, or an expiry passed.
        let generation = w.generation();
        if generation != last || generation.is_none() || soonest <= crate::time::now_micros() {
            last = generation;
            w.sweep();
        }
    }
}
