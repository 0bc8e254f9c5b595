//! The audit trail: records, hash chain, SQLite store, verify, export.
//!
//! INVARIANT: no call is forwarded before its audit record is committed; a record
//! that cannot be written means the call is denied (check `audit`).
//!
//! CONTRACT (used by the CLI's `wrap`/`check` gates; keep these signatures, extend additively):
//! [`AuditStore::open`], [`AuditStore::append`] (blocks until committed, thread-safe),
//! [`AuditStore::flush`], [`NewRecord`], [`Receipt`], [`AuditOptions`], [`Durability`],
//! [`default_path`], [`canonical_json`], [`request_digest`].
//! Additions for one caller with many records (no blocking thread per record):
//! [`AuditStore::submit`] and [`AuditStore::submit_many`] (a [`Pending`] future, or
//! [`Pending::wait`]), [`AuditStore::append_many`] (one set, one transaction) and
//! [`AuditStore::append_many_here`] (committed on the caller's thread).
//! Additions for readers (the `conductor audit` commands): [`AuditReader`] (verify,
//! query, tail, head), [`Record`], [`Filter`], [`Checkpoint`], [`VerifyReport`],
//! [`ocsf::event`], [`time`], and the chain primitives [`chain_hash`], [`hash_text`],
//! [`parse_hash`], [`GENESIS`].
//!
//! # Record
//!
//! A stored record is the RFC 8785 canonical JSON object of: `v` (format, 1), `seq`
//! (1, 2, 3, … without gaps), `time` (RFC 3339 UTC with microseconds, taken by the store
//! inside the commit), `event`, `agent`, `session`?, `workflow`?, `server`?, `tool`,
//! `action`, `decision`, `reasons`, `destinations`, `findings`, `policy`,
//! `request_digest`, `arguments`? (as the caller gave them: the caller redacts),
//! `latency_us`, and `prev` (the previous record's hash). `?` members are left out when
//! absent.
//!
//! # Chain
//!
//! `hash = SHA-256(prev_hash_bytes ‖ canonical_record_bytes)`, written `sha256:<hex>`;
//! the first record's `prev` is 32 zero bytes. [`AuditReader::verify`] walks the chain
//! from seq 1 and reports the first record that does not fit: a missing seq (deleted),
//! a record that names another seq (inserted, reordered), a `prev` that is not the
//! previous hash (something before it changed), a hash that is not the record's
//! (modified), or text that is not canonical JSON (edited by hand).
//!
//! A chain cannot show that its tail was cut off, so [`Checkpoint`]s of the head are
//! printed for anchoring elsewhere, in the C2SP tlog-checkpoint note format: origin
//! line (`conductor.invalid/audit/<random id>`, fixed when the store is created), tree
//! size, base64 RFC 6962 Merkle tree head over the canonical records. They are not
//! signed (yet); `verify` against a saved checkpoint detects a cut-off tail and a
//! rewritten history.
//!
//! # Store
//!
//! SQLite in WAL mode, one file (mode 0600, parents created). Each open handle has a
//! writer thread that commits whatever is queued in one `BEGIN IMMEDIATE` transaction
//! (group commit), reading the chain head under the write lock so that processes
//! sharing the file never fork the chain; `append` returns only after that COMMIT.
//! [`Durability::Normal`] (`synchronous=NORMAL`) survives SIGKILL of the process;
//! [`Durability::Fsync`] (`synchronous=FULL`) also power loss. A lock held by another
//! writer for more than 5 s, a full disk, a damaged file, or an unusable path make
//! `append` return an error; nothing panics. Dropping the last handle waits for the
//! writer to finish what is queued (a short blocking join).

use std::path::PathBuf;

pub mod approvals;
mod jcs;
mod merkle;
pub mod ocsf;
mod read;
mod record;
mod store;
pub mod time;

pub use approvals::{
    Approval, ApprovalError, ApprovalFilter, ApprovalStore, Grant, GrantQuery, NewApproval,
    Outcome, Scope, SqliteApprovals, Status, Ticket, call_digest,
};
pub use read::{AuditReader, Break, BreakKind, Checkpoint, Filter, ReadError, VerifyReport};
pub use record::{GENESIS, Record, chain_hash, hash_text, parse_hash};
pub use store::{AuditStore, Pending};

/// The SQLite binding the store uses, for tests elsewhere that tamper with a store's
/// file directly (not part of the contract).
#[doc(hidden)]
pub use rusqlite;

/// How hard a commit tries to survive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// WAL, `synchronous=NORMAL`: survives a process crash (SIGKILL).
    #[default]
    Normal,
    /// `synchronous=FULL`: survives power loss.
    Fsync,
}

/// Options for opening a store.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    pub durability: Durability,
}

/// What a caller records about one decision (the store adds seq, time, prev hash, hash).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewRecord {
    /// `tools/call`, `resources/read`, `pin-change`, `check`, ...
    pub event: String,
    pub agent: String,
    pub session: Option<String>,
    pub workflow: Option<String>,
    pub server: Option<String>,
    pub tool: String,
    pub action: String,
    /// `allow`, `deny` or `approve`.
    pub decision: String,
    /// The decision's reasons, destinations and findings, as JSON.
    pub reasons: serde_json::Value,
    pub destinations: serde_json::Value,
    pub findings: serde_json::Value,
    /// `sha256:<hex>` of the policy.
    pub policy: String,
    /// `sha256:<hex>` of the canonical (RFC 8785) request.
    pub request_digest: String,
    /// Arguments as the caller chose to store them (redacted by default; `None` to omit).
    pub arguments: Option<serde_json::Value>,
    /// Evaluation latency in microseconds.
    pub latency_us: u64,
    /// How the agent proved who it is (`{"method": "api_key", "key_id": …}`, a JWT's
    /// `iss`/`sub`/`jti`, a certificate fingerprint), when the transport authenticated
    /// it; never the credential. Absent in records of transports that do not.
    pub auth: Option<serde_json::Value>,
}

/// Proof that a record is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub hash: String,
}

/// Anything that stops a record from being committed. Every one means: deny.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store `{path}` cannot be used: {message}")]
    Store { path: String, message: String },
}

/// The default store: `conductor/audit.db` in the user's data directory
/// (`$XDG_DATA_HOME`, else `$HOME/.local/share`).
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("conductor").join("audit.db"))
}

/// RFC 8785 (JCS) canonical JSON text of `value`.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    jcs::write_value(&mut out, value);
    out
}

/// `sha256:<hex>` of [`canonical_json`] of `value`.
pub fn request_digest(value: &serde_json::Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(canonical_json(value).as_bytes());
    format!("sha256:{}", hex::encode(digest))
}
