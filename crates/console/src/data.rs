//! What the pages show, read from the audit database (blocking; called on the
//! blocking pool). The console never writes records: approvals go through the
//! approvals store, which records them.

use std::path::Path;

use conductor_audit::{AuditReader, Filter, Record};

/// Records shown on one page of the explorer.
pub const PAGE: usize = 100;

/// Why the store cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Read(#[from] conductor_audit::ReadError),
    #[error("cannot read the session tables of `{path}`: {message}")]
    Sessions { path: String, message: String },
}

/// The explorer's filters, as given in the query string.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub decision: Option<String>,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
    /// Only records older than this seq (the next page).
    #[serde(default)]
    pub before: Option<u64>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl AuditQuery {
    pub fn agent(&self) -> Option<&str> {
        nonempty(&self.agent)
    }
    pub fn tool(&self) -> Option<&str> {
        nonempty(&self.tool)
    }
    pub fn decision(&self) -> Option<&str> {
        nonempty(&self.decision)
    }
    pub fn check(&self) -> Option<&str> {
        nonempty(&self.check)
    }
    pub fn since(&self) -> Option<&str> {
        nonempty(&self.since)
    }
    pub fn until(&self) -> Option<&str> {
        nonempty(&self.until)
    }
}

/// A time filter value in the store's format: RFC 3339, a date, a browser's
/// `datetime-local` value (taken as UTC), or an age (`15m`, `2h`, `7d`).
pub fn parse_time(value: &str) -> Option<String> {
    use conductor_audit::time::{format_micros, now_micros, parse_rfc3339};
    let v = value.trim();
    if let Some(us) = parse_rfc3339(v) {
        return Some(format_micros(us));
    }
    // `2026-01-02T03:04` (datetime-local, no seconds, no zone).
    if v.len() == 16
        && let Some(us) = parse_rfc3339(&format!("{v}:00Z"))
    {
        return Some(format_micros(us));
    }
    if v.len() == 19
        && let Some(us) = parse_rfc3339(&format!("{v}Z"))
    {
        return Some(format_micros(us));
    }
    let (i, unit) = v.char_indices().last()?;
    let n: i64 = v.get(..i)?.parse().ok()?;
    let secs: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    let us = n.checked_mul(secs)?.checked_mul(1_000_000)?;
    (us >= 0).then(|| format_micros(now_micros().saturating_sub(us)))
}

/// One page of records, newest first, and whether older ones exist.
#[derive(Debug, Default)]
pub struct RecordsPage {
    pub records: Vec<Record>,
    pub more: bool,
    /// Problems with the filters (shown, and the filter is then not applied: nothing
    /// is selected rather than everything).
    pub problems: Vec<String>,
}

/// Whether a record has a reason of check `check`.
pub fn has_check(r: &Record, check: &str) -> bool {
    r.reasons.as_array().is_some_and(|a| {
        a.iter()
            .any(|x| x.get("check").and_then(|c| c.as_str()) == Some(check))
    })
}

/// The records the query selects, newest first, at most [`PAGE`].
pub fn records(path: &Path, q: &AuditQuery) -> Result<RecordsPage, DataError> {
    let mut out = RecordsPage::default();
    let since = match q.since() {
        Some(s) => match parse_time(s) {
            Some(t) => Some(t),
            None => {
                out.problems
                    .push(format!("`since` value `{s}` is not a time"));
                None
            }
        },
        None => None,
    };
    let until = match q.until() {
        Some(s) => match parse_time(s) {
            Some(t) => Some(t),
            None => {
                out.problems
                    .push(format!("`until` value `{s}` is not a time"));
                None
            }
        },
        None => None,
    };
    if !out.problems.is_empty() {
        // INVARIANT: a filter that cannot be read selects nothing (never everything).
        return Ok(out);
    }
    let reader = AuditReader::open(path)?;
    let filter = Filter {
        agent: q.agent().map(str::to_string),
        tool: q.tool().map(str::to_string),
        decision: q.decision().map(str::to_string),
        since,
        until,
        after_seq: None,
    };
    let before = q.before.unwrap_or(u64::MAX);
    let check = q.check();
    // Keep the newest PAGE + 1 matches below `before` (the store reads oldest first).
    let mut ring = std::collections::VecDeque::with_capacity(PAGE + 1);
    reader.for_each(&filter, |r| {
        if r.seq >= before {
            return false;
        }
        if check.is_none_or(|c| has_check(&r, c)) {
            if ring.len() == PAGE + 1 {
                ring.pop_front();
            }
            ring.push_back(r);
        }
        true
    })?;
    out.more = ring.len() > PAGE;
    if out.more {
        ring.pop_front();
    }
    out.records = ring.into_iter().rev().collect();
    Ok(out)
}

/// One record by seq.
pub fn record(path: &Path, seq: u64) -> Result<Option<Record>, DataError> {
    let reader = AuditReader::open(path)?;
    let mut found = None;
    reader.for_each(
        &Filter {
            after_seq: Some(seq.saturating_sub(1)),
            ..Filter::default()
        },
        |r| {
            if r.seq == seq {
                found = Some(r);
            }
            false
        },
    )?;
    Ok(found)
}

/// The chain's state as the console shows it.
#[derive(Debug, Clone)]
pub struct ChainStatus {
    pub verified: u64,
    pub head: Option<(u64, String)>,
    /// The checkpoint of the verified records (C2SP tlog-checkpoint body).
    pub checkpoint: String,
    /// The first break: seq, kind, message.
    pub broken: Option<(u64, String, String)>,
}

/// The stored head (not verified): `(seq, hash)`.
pub fn head(path: &Path) -> Result<Option<(u64, String)>, DataError> {
    Ok(AuditReader::open(path)?.head()?)
}

/// Walk the whole chain.
pub fn verify(path: &Path) -> Result<ChainStatus, DataError> {
    let reader = AuditReader::open(path)?;
    let r = reader.verify(None)?;
    Ok(ChainStatus {
        verified: r.verified,
        head: r.head,
        checkpoint: r.checkpoint.to_text(),
        broken: r
            .broken
            .map(|b| (b.seq, b.kind.as_str().to_string(), b.message)),
    })
}

/// A session seen in the records.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub session: String,
    pub agent: String,
    pub workflow: Option<String>,
    pub calls: u64,
    pub denied: u64,
    pub first: String,
    pub last: String,
}

/// Labels an agent (and workflow) carries.
#[derive(Debug, Clone)]
pub struct LabelRow {
    pub agent: String,
    pub workflow: String,
    pub label: String,
    /// µs since the epoch.
    pub expires: i64,
}

/// Sessions (newest activity first, at most 200) and unexpired labels.
pub fn sessions(path: &Path) -> Result<(Vec<SessionRow>, Vec<LabelRow>), DataError> {
    let p = path.display().to_string();
    let err = |e: rusqlite::Error| DataError::Sessions {
        path: p.clone(),
        message: e.to_string().to_lowercase(),
    };
    // Opening through the reader checks that this is an audit store.
    drop(AuditReader::open(path)?);
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    let mut sessions = Vec::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT json_extract(record, '$.session') AS s, json_extract(record, '$.agent') AS a,
                        json_extract(record, '$.workflow'), count(*),
                        sum(json_extract(record, '$.decision') = 'deny'),
                        min(json_extract(record, '$.time')), max(json_extract(record, '$.time'))
                 FROM records WHERE s IS NOT NULL
                 GROUP BY s, a ORDER BY max(seq) DESC LIMIT 200",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SessionRow {
                    session: r.get(0)?,
                    agent: r.get(1)?,
                    workflow: r.get(2)?,
                    calls: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                    denied: u64::try_from(r.get::<_, Option<i64>>(4)?.unwrap_or(0)).unwrap_or(0),
                    first: r.get(5)?,
                    last: r.get(6)?,
                })
            })
            .map_err(err)?;
        for r in rows {
            sessions.push(r.map_err(err)?);
        }
    }
    let mut labels = Vec::new();
    let has_table: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'conductor_session_labels'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(err)?
        > 0;
    if has_table {
        let now = conductor_audit::time::now_micros();
        let mut stmt = conn
            .prepare(
                "SELECT agent, workflow, label, expires FROM conductor_session_labels
                 WHERE expires > ?1 ORDER BY agent, workflow, label LIMIT 1000",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([now], |r| {
                Ok(LabelRow {
                    agent: r.get(0)?,
                    workflow: r.get(1)?,
                    label: r.get(2)?,
                    expires: r.get(3)?,
                })
            })
            .map_err(err)?;
        for r in rows {
            labels.push(r.map_err(err)?);
        }
    }
    Ok((sessions, labels))
}
