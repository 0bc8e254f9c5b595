//! The audit trail: records, hash chain, SQLite store, verify, export.
//!
//! INVARIANT: no call is forwarded before its audit record is committed; a record
//! that cannot be written means the call is denied (check `audit`).
//!
//! CONTRACT (used by the CLI's `wrap`/`check` gates; keep these signatures, extend additively):
//! [`AuditStore::open`], [`AuditStore::append`] (blocks until committed, thread-safe),
//! [`AuditStore::flush`], [`NewRecord`], [`Receipt`], [`AuditOptions`], [`Durability`],
//! [`default_path`], [`canonical_json`], [`request_digest`].

use std::path::PathBuf;

mod jcs;
mod merkle;
pub mod ocsf;
mod read;
mod record;
mod store;
pub mod time;

pub use read::{AuditReader, Break, BreakKind, Checkpoint, Filter, ReadError, VerifyReport};
pub use record::{GENESIS, Record, chain_hash, hash_text, parse_hash};
pub use store::AuditStore;

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
