//! The console's side of the approvals store: what the approvals page lists and the
//! decisions it makes (each recorded by the store, naming the approver).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conductor_audit::approvals::{
    Approval, ApprovalError, ApprovalFilter, ApprovalStore as _, Grant, Scope, SqliteApprovals,
};
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

/// The approvals store of one audit database (opened on first use, so that a console
/// can start before the first held call created the tables).
#[derive(Debug, Clone)]
pub struct Approvals {
    path: PathBuf,
    store: Arc<Mutex<Option<Arc<SqliteApprovals>>>>,
}

fn msg(e: ApprovalError) -> String {
    e.to_string()
}

impl Approvals {
    /// The store in the audit database at `path`.
    pub fn new(path: &Path) -> Approvals {
        Approvals {
            path: path.to_path_buf(),
            store: Arc::new(Mutex::new(None)),
        }
    }

    /// The database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn store(&self) -> Result<Arc<SqliteApprovals>, String> {
        let mut g = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = g.as_ref() {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(SqliteApprovals::open(&self.path).map_err(msg)?);
        *g = Some(Arc::clone(&s));
        Ok(s)
    }

    /// Calls waiting for a person, oldest first (as the store's JSON).
    pub fn pending(&self) -> Result<Vec<Value>, String> {
        let mut list = self
            .store()?
            .list(&ApprovalFilter {
                pending_only: true,
                ..ApprovalFilter::default()
            })
            .map_err(msg)?;
        list.reverse();
        Ok(list.iter().map(Approval::to_json).collect())
    }

    /// The most recent decided (or expired) approvals, newest first.
    pub fn recent(&self) -> Result<Vec<Value>, String> {
        let list = self
            .store()?
            .list(&ApprovalFilter {
                limit: Some(50),
                ..ApprovalFilter::default()
            })
            .map_err(msg)?;
        Ok(list
            .iter()
            .map(Approval::to_json)
            .filter(|v| v.get("status").and_then(Value::as_str) != Some("pending"))
            .collect())
    }

    /// Standing grants in force.
    pub fn grants(&self) -> Result<Vec<Value>, String> {
        let list = self.store()?.grants(true).map_err(msg)?;
        Ok(list.iter().map(Grant::to_json).collect())
    }

    /// How many calls wait.
    pub fn pending_count(&self) -> Result<u64, String> {
        let list = self
            .store()?
            .list(&ApprovalFilter {
                pending_only: true,
                ..ApprovalFilter::default()
            })
            .map_err(msg)?;
        Ok(u64::try_from(list.len()).unwrap_or(u64::MAX))
    }

    /// Release a held call (the store records the grant, naming `approver`).
    pub fn approve(&self, id: &str, approver: &str, scope: &ScopeChoice) -> Result<(), String> {
        let scope = match scope {
            ScopeChoice::Call => Scope::Call,
            ScopeChoice::Session { seconds } => Scope::Session {
                duration: Some(Duration::from_secs(*seconds)),
            },
            ScopeChoice::Window { seconds, pattern } => Scope::Window {
                duration: Duration::from_secs(*seconds),
                pattern: pattern.clone(),
            },
        };
        self.store()?
            .approve(id, approver, &scope)
            .map(|_| ())
            .map_err(msg)
    }

    /// Refuse a held call (recorded, naming `approver`).
    pub fn deny(&self, id: &str, approver: &str, reason: &str) -> Result<(), String> {
        self.store()?
            .deny(id, approver, reason)
            .map(|_| ())
            .map_err(msg)
    }

    /// End a standing grant (recorded, naming `by`).
    pub fn revoke(&self, grant: &str, by: &str) -> Result<(), String> {
        self.store()?.revoke(grant, by).map(|_| ()).map_err(msg)
    }
}
