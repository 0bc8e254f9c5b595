//! Session state — the labels (taint) of data an agent has received, and the pins of
//! tool descriptors — behind one small trait, so that it can live in memory (one
//! process) or in the store (every process and transport acting for the agent).
//!
//! INVARIANT: taint belongs to the agent (and its workflow), not to a process: labels
//! are keyed by [`TaintKey`], only ever raised, and kept until their expiry; reading
//! them fails closed (an error is a deny, never "no labels").

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Whose labels: the agent and, when the call names one, its workflow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaintKey {
    /// The agent id.
    pub agent: String,
    /// The workflow, if any (`None` and a named workflow are separate).
    pub workflow: Option<String>,
}

/// What pinning a descriptor found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinOutcome {
    /// First sight: pinned now.
    New,
    /// The digest is the pinned one.
    Same,
    /// The digest differs from the pinned one (a rug pull); `first` is the pin.
    Changed {
        /// The digest pinned at first sight.
        first: String,
    },
}

/// A session store failure. Every one means: the call is refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("session store `{place}`: {message}")]
pub struct StoreError {
    /// Where the state lives (a path, or `memory`).
    pub place: String,
    /// What failed.
    pub message: String,
}

/// Where session labels and pins live.
pub trait SessionStore: Send + Sync {
    /// The unexpired labels of `key` at `now` (µs since the epoch).
    fn labels(&self, key: &TaintKey, now_micros: i64) -> Result<BTreeSet<String>, StoreError>;
    /// Raise `key`'s labels; each stays at least until `expires_micros`.
    fn raise(
        &self,
        key: &TaintKey,
        labels: &[String],
        expires_micros: i64,
    ) -> Result<(), StoreError>;
    /// Pin `digest` for `tool` in `scope` (a session of one upstream server), or
    /// compare it with the pin.
    fn pin(&self, scope: &str, tool: &str, digest: &str) -> Result<PinOutcome, StoreError>;
}

/// Session state in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    labels: Mutex<HashMap<TaintKey, HashMap<String, i64>>>,
    pins: Mutex<HashMap<(String, String), String>>,
}

fn poisoned(_: impl std::fmt::Debug) -> StoreError {
    StoreError {
        place: "memory".into(),
        message: "a thread panicked while holding the session state".into(),
    }
}

impl SessionStore for MemoryStore {
    fn labels(&self, key: &TaintKey, now: i64) -> Result<BTreeSet<String>, StoreError> {
        let m = self.labels.lock().map_err(poisoned)?;
        Ok(m.get(key)
            .map(|l| {
                l.iter()
                    .filter(|(_, exp)| **exp > now)
                    .map(|(l, _)| l.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    fn raise(&self, key: &TaintKey, labels: &[String], expires: i64) -> Result<(), StoreError> {
        let mut m = self.labels.lock().map_err(poisoned)?;
        let entry = m.entry(key.clone()).or_default();
        for l in labels {
            let e = entry.entry(l.clone()).or_insert(expires);
            *e = (*e).max(expires);
        }
        Ok(())
    }

    fn pin(&self, scope: &str, tool: &str, digest: &str) -> Result<PinOutcome, StoreError> {
        let mut m = self.pins.lock().map_err(poisoned)?;
        match m.get(&(scope.to_string(), tool.to_string())) {
            None => {
                m.insert((scope.to_string(), tool.to_string()), digest.to_string());
                Ok(PinOutcome::New)
            }
            Some(first) if first == digest => Ok(PinOutcome::Same),
            Some(first) => Ok(PinOutcome::Changed {
                first: first.clone(),
            }),
        }
    }
}

/// Session state in a SQLite file shared by every process of the installation (by
/// default the audit database itself, in tables of its own).
pub struct SqliteStore {
    place: String,
    conn: Mutex<rusqlite::Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS conductor_session_labels (
  agent TEXT NOT NULL, workflow TEXT NOT NULL, label TEXT NOT NULL, expires INTEGER NOT NULL,
  PRIMARY KEY (agent, workflow, label)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conductor_pins (
  scope TEXT NOT NULL, tool TEXT NOT NULL, digest TEXT NOT NULL,
  PRIMARY KEY (scope, tool)
) WITHOUT ROWID;
";

impl SqliteStore {
    /// Open (creating the tables if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let place = path.display().to_string();
        let err = |e: rusqlite::Error| StoreError {
            place: place.clone(),
            message: e.to_string().to_lowercase(),
        };
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(SqliteStore {
            place: place.clone(),
            conn: Mutex::new(conn),
        })
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError {
            place: self.place.clone(),
            message: e.to_string().to_lowercase(),
        }
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, rusqlite::Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError {
            place: self.place.clone(),
            message: "a thread panicked while holding the connection".into(),
        })
    }
}

impl SessionStore for SqliteStore {
    fn labels(&self, key: &TaintKey, now: i64) -> Result<BTreeSet<String>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT label FROM conductor_session_labels WHERE agent = ?1 AND workflow = ?2 AND expires > ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                rusqlite::params![key.agent, key.workflow.as_deref().unwrap_or(""), now],
                |r| r.get::<_, String>(0),
            )
            .map_err(|e| self.err(e))?;
        let mut out = BTreeSet::new();
        for r in rows {
            out.insert(r.map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    fn raise(&self, key: &TaintKey, labels: &[String], expires: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO conductor_session_labels (agent, workflow, label, expires) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (agent, workflow, label) DO UPDATE SET expires = max(expires, excluded.expires)",
                )
                .map_err(|e| self.err(e))?;
            for l in labels {
                stmt.execute(rusqlite::params![
                    key.agent,
                    key.workflow.as_deref().unwrap_or(""),
                    l,
                    expires
                ])
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn pin(&self, scope: &str, tool: &str, digest: &str) -> Result<PinOutcome, StoreError> {
        let conn = self.conn()?;
        let inserted = conn
            .prepare_cached(
                "INSERT INTO conductor_pins (scope, tool, digest) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(rusqlite::params![scope, tool, digest]))
            .map_err(|e| self.err(e))?;
        if inserted == 1 {
            return Ok(PinOutcome::New);
        }
        let first: String = conn
            .query_row(
                "SELECT digest FROM conductor_pins WHERE scope = ?1 AND tool = ?2",
                rusqlite::params![scope, tool],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(if first == digest {
            PinOutcome::Same
        } else {
            PinOutcome::Changed { first }
        })
    }
}

/// How long labels stick when the policy does not say.
pub const DEFAULT_LABEL_TTL: Duration = Duration::from_secs(24 * 3600);
