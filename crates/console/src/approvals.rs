//! The console's side of the approvals store: what the approvals page lists and the
//! decisions it makes (each recorded by the store, naming the approver).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// What an approver chose to release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeChoice {
    /// Only the held call.
    Call,
    /// The same call again in the same session, for this long.
    Session { seconds: u64 },
    /// Calls of this agent to this tool whose arguments match (pointer → glob), or
    /// the same arguments when empty, for this long.
    Window {
        seconds: u64,
        pattern: Vec<(String, String)>,
    },
}

/// The approvals store of one audit database.
#[derive(Debug, Clone)]
pub struct Approvals {
    path: PathBuf,
}

const MISSING: &str = "the approvals store is not part of this build yet";

impl Approvals {
    /// The store in the audit database at `path`.
    pub fn new(path: &Path) -> Approvals {
        Approvals {
            path: path.to_path_buf(),
        }
    }

    /// The database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls waiting for a person, oldest first (as the store's JSON).
    pub fn pending(&self) -> Result<Vec<Value>, String> {
        Err(MISSING.into())
    }

    /// The most recent decided approvals, newest first.
    pub fn recent(&self) -> Result<Vec<Value>, String> {
        Err(MISSING.into())
    }

    /// Standing grants in force.
    pub fn grants(&self) -> Result<Vec<Value>, String> {
        Err(MISSING.into())
    }

    /// How many calls wait.
    pub fn pending_count(&self) -> Result<u64, String> {
        Err(MISSING.into())
    }

    /// Release a held call.
    pub fn approve(&self, _id: &str, _approver: &str, _scope: &ScopeChoice) -> Result<(), String> {
        Err(MISSING.into())
    }

    /// Refuse a held call.
    pub fn deny(&self, _id: &str, _approver: &str, _reason: &str) -> Result<(), String> {
        Err(MISSING.into())
    }

    /// End a standing grant.
    pub fn revoke(&self, _grant: &str, _by: &str) -> Result<(), String> {
        Err(MISSING.into())
    }
}
