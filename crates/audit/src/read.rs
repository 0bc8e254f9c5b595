//! Reading a store: verify the chain, query, tail, checkpoints.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::merkle::Tree;
use crate::record::{self, GENESIS, Record};
use crate::store::{BUSY_TIMEOUT, FORMAT};

/// Why a store cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be opened (missing, permissions, I/O).
    #[error("cannot open audit store `{path}`: {message}")]
    Open { path: String, message: String },
    /// The file is not a Conductor audit store, or SQLite finds it damaged.
    #[error("`{path}` is not a readable conductor audit store: {message}")]
    Data { path: String, message: String },
}

impl ReadError {
    /// True when the problem is the file's content (not its access).
    pub fn is_data(&self) -> bool {
        matches!(self, ReadError::Data { .. })
    }
}

/// What kind of break `verify` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// A sequence number is missing (deleted record) or out of place.
    Missing,
    /// The stored text is not a JSON object in canonical form, or lacks `seq`/`prev`.
    Malformed,
    /// The record's own `seq` differs from its position.
    WrongSeq,
    /// `prev` does not name the previous record's hash.
    PrevMismatch,
    /// The stored hash is not the hash of the record.
    HashMismatch,
    /// The store holds fewer records than an anchored checkpoint.
    Truncated,
    /// The first records no longer hash to an anchored checkpoint.
    CheckpointMismatch,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::Missing => "missing",
            BreakKind::Malformed => "malformed",
            BreakKind::WrongSeq => "wrong-seq",
            BreakKind::PrevMismatch => "prev-mismatch",
            BreakKind::HashMismatch => "hash-mismatch",
            BreakKind::Truncated => "truncated",
            BreakKind::CheckpointMismatch => "checkpoint-mismatch",
        }
    }
}

/// The first place where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first bad sequence number.
    pub seq: u64,
    pub kind: BreakKind,
    pub message: String,
}

/// The outcome of [`AuditReader::verify`].
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Records checked and found good (all of them when `broken` is `None`).
    pub verified: u64,
    /// The chain head: the last good record's seq and hash.
    pub head: Option<(u64, String)>,
    /// The checkpoint of the verified records.
    pub checkpoint: Checkpoint,
    pub broken: Option<Break>,
}

/// A C2SP tlog-checkpoint body: origin, tree size, base64 RFC 6962 tree head over the
/// canonical records (see `merkle.rs`). Unsigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
}

impl Checkpoint {
    /// The three-line note text (each line ends with a newline).
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            base64::engine::general_purpose::STANDARD.encode(self.root)
        )
    }

    /// Parse a checkpoint's first three lines (a signed note's signatures, after a blank
    /// line, are ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.split('\n');
        let origin = lines.next()?.to_string();
        let size: u64 = lines.next()?.parse().ok()?;
        let root_b64 = lines.next()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(root_b64)
            .ok()?;
        let root: [u8; 32] = bytes.try_into().ok()?;
        if origin.is_empty() {
            return None;
        }
        Some(Self { origin, size, root })
    }
}

/// Which records a query selects. Empty fields select everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A glob (`*`, `?`, `[…]`) over agent ids.
    pub agent: Option<String>,
    /// A glob over qualified tool names.
    pub tool: Option<String>,
    pub decision: Option<String>,
    /// RFC 3339 UTC time, inclusive (store format, see [`crate::time::format_micros`]).
    pub since: Option<String>,
    /// RFC 3339 UTC time, exclusive.
    pub until: Option<String>,
    /// Only records with a greater seq.
    pub after_seq: Option<u64>,
}

/// A read handle on a store (never writes records).
#[derive(Debug)]
pub struct AuditReader {
    path: PathBuf,
    conn: Connection,
}

fn seq_i(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

impl AuditReader {
    /// Open an existing store for reading.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let open_err = |m: String| ReadError::Open {
            path: path.display().to_string(),
            message: m,
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(open_err("not a file".into())),
            Err(e) => return Err(open_err(e.to_string().to_lowercase())),
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .or_else(|_| {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        })
        .map_err(|e| open_err(e.to_string()))?;
        let reader = Self {
            path: path.to_path_buf(),
            conn,
        };
        reader
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| reader.data(e))?;
        let format: Option<String> = reader
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| reader.data(e))?;
        if format.as_deref() != Some(FORMAT) {
            return Err(reader.data("no conductor audit format marker"));
        }
        Ok(reader)
    }

    fn data(&self, e: impl std::fmt::Display) -> ReadError {
        ReadError::Data {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's name in checkpoints.
    pub fn origin(&self) -> Result<String, ReadError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'origin'", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.data(e))
    }

    /// The last record's seq and stored hash (not verified).
    pub fn head(&self) -> Result<Option<(u64, String)>, ReadError> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.data(e))?;
        Ok(row.map(|(s, h)| (u64::try_from(s).unwrap_or(0), h)))
    }

    /// Walk the whole chain from the first record and report the first break, if any.
    /// With `anchor`, also check that the store still holds that checkpoint's records
    /// unchanged (detects a cut-off tail and a rewritten history).
    pub fn verify(&self, anchor: Option<&Checkpoint>) -> Result<VerifyReport, ReadError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, record, hash FROM records ORDER BY seq")
            .map_err(|e| self.data(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.data(e))?;
        let mut tree = Tree::default();
        let mut prev = GENESIS;
        let mut expected: u64 = 1;
        let mut head: Option<(u64, String)> = None;
        let mut broken: Option<Break> = None;
        let mut anchor_checked = false;
        let brk = |seq: u64, kind: BreakKind, message: String| Break { seq, kind, message };
        while let Some(row) = rows.next().map_err(|e| self.data(e))? {
            let seq: i64 = row.get(0).map_err(|e| self.data(e))?;
            // A record or hash that is not text (changed to a blob, a number, NULL) is a
            // break at this seq, not a reason to stop reading.
            let text = text_column(row, 1);
            let hash_s = text_column(row, 2);
            let (Some(text), Some(hash_s)) = (text, hash_s) else {
                broken = Some(brk(
                    expected,
                    BreakKind::Malformed,
                    "the stored record or hash is not text".into(),
                ));
                break;
            };
            if let Some(b) = check_record(seq, expected, &prev, &text, &hash_s) {
                broken = Some(b);
                break;
            }
            tree.push(text.as_bytes());
            prev = record::parse_hash(&hash_s).unwrap_or(GENESIS);
            head = Some((expected, hash_s));
            if let Some(a) = anchor
                && a.size == expected
            {
                anchor_checked = true;
                if tree.root() != a.root {
                    broken = Some(brk(
                        1,
                        BreakKind::CheckpointMismatch,
                        format!(
                            "the first {} records do not match the checkpoint: history was rewritten",
                            a.size
                        ),
                    ));
                    break;
                }
            }
            expected += 1;
        }
        let verified = expected - 1;
        if broken.is_none()
            && let Some(a) = anchor
            && !anchor_checked
            && a.size > 0
        {
            broken = Some(brk(
                verified + 1,
                BreakKind::Truncated,
                format!(
                    "the checkpoint covers {} records but the store ends at seq {verified}",
                    a.size
                ),
            ));
        }
        let checkpoint = Checkpoint {
            origin: self.origin()?,
            size: tree.size(),
            root: tree.root(),
        };
        Ok(VerifyReport {
            verified,
            head,
            checkpoint,
            broken,
        })
    }

    /// Every record the filter selects, in seq order, handed to `each` until it returns
    /// false.
    pub fn for_each(
        &self,
        filter: &Filter,
        mut each: impl FnMut(Record) -> bool,
    ) -> Result<(), ReadError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, record, hash FROM records WHERE seq > ?1
                 AND (?2 IS NULL OR json_extract(record, '$.agent') GLOB ?2)
                 AND (?3 IS NULL OR json_extract(record, '$.tool') GLOB ?3)
                 AND (?4 IS NULL OR json_extract(record, '$.decision') = ?4)
                 AND (?5 IS NULL OR json_extract(record, '$.time') >= ?5)
                 AND (?6 IS NULL OR json_extract(record, '$.time') < ?6)
                 ORDER BY seq",
            )
            .map_err(|e| self.data(e))?;
        let mut rows = stmt
            .query(rusqlite::params![
                seq_i(filter.after_seq.unwrap_or(0)),
                filter.agent,
                filter.tool,
                filter.decision,
                filter.since,
                filter.until
            ])
            .map_err(|e| self.data(e))?;
        while let Some(row) = rows.next().map_err(|e| self.data(e))? {
            let rec = self.row_record(row)?;
            if !each(rec) {
                break;
            }
        }
        Ok(())
    }

    /// The last `n` records, oldest first.
    pub fn last(&self, n: u64) -> Result<Vec<Record>, ReadError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, record, hash FROM records ORDER BY seq DESC LIMIT ?1")
            .map_err(|e| self.data(e))?;
        let mut rows = stmt.query([seq_i(n)]).map_err(|e| self.data(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.data(e))? {
            out.push(self.row_record(row)?);
        }
        out.reverse();
        Ok(out)
    }

    fn row_record(&self, row: &rusqlite::Row<'_>) -> Result<Record, ReadError> {
        let seq: i64 = row.get(0).map_err(|e| self.data(e))?;
        let text: String = row.get(1).map_err(|e| self.data(e))?;
        let hash: String = row.get(2).map_err(|e| self.data(e))?;
        let mut rec: Record = serde_json::from_str(&text)
            .map_err(|e| self.data(format!("record {seq} cannot be read: {e}")))?;
        rec.hash = hash;
        Ok(rec)
    }
}

fn text_column(row: &rusqlite::Row<'_>, i: usize) -> Option<String> {
    match row.get_ref(i).ok()? {
        rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_string),
        _ => None,
    }
}

/// Check one stored row against its expected position and the previous hash.
fn check_record(
    seq: i64,
    expected: u64,
    prev: &[u8; 32],
    text: &str,
    hash_s: &str,
) -> Option<Break> {
    let brk = |kind: BreakKind, message: String| {
        Some(Break {
            seq: expected,
            kind,
            message,
        })
    };
    if u64::try_from(seq).ok() != Some(expected) {
        return if u64::try_from(seq).is_ok_and(|s| s > expected) {
            brk(
                BreakKind::Missing,
                format!("record {expected} is missing (the next stored record is {seq})"),
            )
        } else {
            brk(
                BreakKind::Missing,
                format!("a record with seq {seq} is stored where {expected} belongs"),
            )
        };
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return brk(BreakKind::Malformed, "the record is not JSON".into());
    };
    if crate::canonical_json(&value) != text {
        return brk(
            BreakKind::Malformed,
            "the record is not in canonical form (it was edited)".into(),
        );
    }
    match value.get("seq").and_then(serde_json::Value::as_u64) {
        Some(s) if s == expected => {}
        Some(s) => {
            return brk(
                BreakKind::WrongSeq,
                format!("the record at position {expected} says it is record {s}"),
            );
        }
        None => return brk(BreakKind::Malformed, "the record has no `seq`".into()),
    }
    let prev_text = record::hash_text(prev);
    match value.get("prev").and_then(serde_json::Value::as_str) {
        Some(p) if p == prev_text => {}
        Some(_) => {
            return brk(
                BreakKind::PrevMismatch,
                "`prev` does not match the previous record's hash (a record before it was changed, removed or inserted)".into(),
            );
        }
        None => return brk(BreakKind::Malformed, "the record has no `prev`".into()),
    }
    let computed = record::hash_text(&record::chain_hash(prev, text));
    if computed != hash_s {
        return brk(
            BreakKind::HashMismatch,
            "the record's content does not match its hash (it was changed)".into(),
        );
    }
    None
}
