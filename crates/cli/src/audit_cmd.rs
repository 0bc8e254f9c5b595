//! `conductor audit verify|head|export|tail|query`.
//!
//! INVARIANT: `verify` exits 0 only when every record from seq 1 to the head was read
//! and checked (and, with `--checkpoint`, the anchored records are still there,
//! unchanged); anything it cannot read is an error, never a pass.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use conductor_audit::{AuditReader, Checkpoint, Filter, ReadError, Record, VerifyReport};
use serde_json::{Value, json};

use crate::{CliError, Stdout, exit};

const AFTER_HELP: &str = "\
The audit store is a SQLite file (default: conductor/audit.db in the user's data
directory, $XDG_DATA_HOME or ~/.local/share). Every record is hash-chained: its hash
covers the previous record's hash and its own RFC 8785 canonical JSON.

Exit status: 0 ok; 1 the chain is broken (verify, head); 64 bad usage; 65 the file is
not a conductor audit store or is damaged; 66 the store does not exist; 74 it cannot
be opened or read.

Examples:
  conductor audit verify
  conductor audit head --format checkpoint > head.txt   # anchor this elsewhere
  conductor audit verify --checkpoint head.txt           # later: nothing cut or rewritten
  conductor audit tail -n 20 -f
  conductor audit query --agent research-bot --decision deny --since 24h
  conductor audit export --format ocsf > events.jsonl";

#[derive(Debug, Subcommand)]
#[command(after_help = AFTER_HELP)]
pub enum AuditCommand {
    /// Verify the hash chain: exit 0 when intact, 1 and the first bad record otherwise.
    #[command(after_help = AFTER_HELP)]
    Verify(VerifyArgs),
    /// Verify the chain and print its head and a checkpoint to anchor elsewhere.
    #[command(after_help = AFTER_HELP)]
    Head(HeadArgs),
    /// Export records as JSON lines or OCSF API Activity events (one per line).
    #[command(after_help = AFTER_HELP)]
    Export(ExportArgs),
    /// Show the latest records; with -f, keep showing new ones as they are committed.
    #[command(after_help = AFTER_HELP)]
    Tail(TailArgs),
    /// Select records by agent, tool, decision and time.
    #[command(after_help = AFTER_HELP)]
    Query(QueryArgs),
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The audit store (default: conductor/audit.db in the user's data directory).
    #[arg(long, value_name = "PATH")]
    pub audit: Option<PathBuf>,
}

/// Output for people or for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Readable text.
    #[default]
    Human,
    /// JSON (one object; one per line for record listings).
    Json,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Also check against a checkpoint saved earlier (`audit head --format checkpoint`):
    /// fails when its records were cut off or rewritten.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Output of `audit head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum HeadFormat {
    /// Readable text: head and checkpoint.
    #[default]
    Human,
    /// JSON: seq, hash and checkpoint text.
    Json,
    /// The C2SP tlog-checkpoint note text only (origin, size, base64 tree head).
    Checkpoint,
}

#[derive(Debug, Args)]
pub struct HeadArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = HeadFormat::Human)]
    pub format: HeadFormat,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The records as stored (RFC 8785 canonical JSON, plus `hash`), one per line.
    Jsonl,
    /// OCSF API Activity (class 6003) events with the security_control profile.
    Ocsf,
}

/// The decisions a record can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecisionArg {
    Allow,
    Deny,
    Approve,
}

impl DecisionArg {
    fn as_str(self) -> &'static str {
        match self {
            DecisionArg::Allow => "allow",
            DecisionArg::Deny => "deny",
            DecisionArg::Approve => "approve",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Only this agent (a glob: `*`, `?`, `[…]`).
    #[arg(long, value_name = "GLOB")]
    pub agent: Option<String>,
    /// Only this tool, by qualified name (a glob, e.g. `github.*`).
    #[arg(long, value_name = "GLOB")]
    pub tool: Option<String>,
    /// Only this decision.
    #[arg(long, value_enum)]
    pub decision: Option<DecisionArg>,
    /// From this time on: RFC 3339 (`2026-01-02T03:04:05Z`), a date (`2026-01-02`, UTC),
    /// or an age (`90s`, `15m`, `2h`, `7d`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// How many of the latest records to show.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
    pub lines: u64,
    /// Keep running and show records as they are committed.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(cmd: AuditCommand) -> u8 {
    crate::finish(match cmd {
        AuditCommand::Verify(a) => verify(&a),
        AuditCommand::Head(a) => head(&a),
        AuditCommand::Export(a) => export(&a),
        AuditCommand::Tail(a) => tail(&a),
        AuditCommand::Query(a) => query(&a),
    })
}

fn store_path(args: &StoreArgs) -> Result<PathBuf, CliError> {
    match &args.audit {
        Some(p) => Ok(p.clone()),
        None => conductor_audit::default_path().ok_or_else(|| {
            CliError::Usage(
                "no data directory to find the audit store in: set `HOME` or `XDG_DATA_HOME`, or pass `--audit PATH`"
                    .into(),
            )
        }),
    }
}

/// Open the store for reading, mapping failures to exit statuses: 66 missing,
/// 74 unreadable, 65 not an audit store.
fn open(args: &StoreArgs) -> anyhow::Result<AuditReader> {
    let path = store_path(args)?;
    crate::require_file("audit store", &path)?;
    AuditReader::open(&path).map_err(|e| read_error(&path, e))
}

fn read_error(path: &Path, e: ReadError) -> anyhow::Error {
    match e {
        ReadError::Open { message, .. } => CliError::Io {
            what: format!("cannot open audit store `{}`", path.display()),
            source: io::Error::other(message),
        }
        .into(),
        e @ ReadError::Data { .. } => CliError::Data(e.to_string()).into(),
    }
}

fn write_err(e: io::Error) -> anyhow::Error {
    CliError::Io {
        what: "cannot write output".into(),
        source: e,
    }
    .into()
}

fn verify(args: &VerifyArgs) -> anyhow::Result<u8> {
    let anchor = match &args.checkpoint {
        None => None,
        Some(p) => {
            crate::require_file("checkpoint", p)?;
            let text = std::fs::read_to_string(p).map_err(|e| CliError::Io {
                what: format!("cannot read checkpoint `{}`", p.display()),
                source: e,
            })?;
            Some(Checkpoint::parse(&text).ok_or_else(|| {
                CliError::Data(format!(
                    "`{}` is not a checkpoint: expected an origin line, a tree size and a base64 SHA-256 tree head",
                    p.display()
                ))
            })?)
        }
    };
    let reader = open(&args.store)?;
    let report = reader
        .verify(anchor.as_ref())
        .map_err(|e| read_error(reader.path(), e))?;
    if let Some(a) = &anchor
        && a.origin != report.checkpoint.origin
    {
        return Err(CliError::Data(format!(
            "the checkpoint is for log `{}`, this store is `{}`",
            a.origin, report.checkpoint.origin
        ))
        .into());
    }
    let mut out = Stdout::new();
    match args.format {
        Format::Json => {
            let v = report_json(&report);
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?).map_err(write_err)?;
        }
        Format::Human => {
            write!(out, "{}", report_human(&report, reader.path())).map_err(write_err)?;
        }
    }
    out.flush().map_err(write_err)?;
    Ok(if report.broken.is_some() {
        exit::FAILED
    } else {
        exit::OK
    })
}

fn report_json(r: &VerifyReport) -> Value {
    let mut v = serde_json::Map::new();
    v.insert("ok".into(), json!(r.broken.is_none()));
    v.insert("verified".into(), json!(r.verified));
    v.insert(
        "head".into(),
        json!(
            r.head
                .as_ref()
                .map(|(seq, hash)| json!({"seq": seq, "hash": hash}))
        ),
    );
    // A checkpoint is for anchoring: only ever of an intact chain.
    if r.broken.is_none() {
        v.insert("checkpoint".into(), json!(r.checkpoint.to_text()));
    }
    if let Some(b) = &r.broken {
        v.insert("first_bad_seq".into(), json!(b.seq));
        v.insert("problem".into(), json!(b.kind.as_str()));
        v.insert("message".into(), json!(b.message));
    }
    Value::Object(v)
}

fn report_human(r: &VerifyReport, path: &Path) -> String {
    let mut s = String::new();
    match &r.broken {
        None => {
            s.push_str(&format!(
                "ok: {} record{} verified, chain intact ({})\n",
                r.verified,
                if r.verified == 1 { "" } else { "s" },
                path.display()
            ));
        }
        Some(b) => {
            s.push_str(&format!(
                "broken at seq {}: {}\n{} record{} before it verified ({})\n",
                b.seq,
                b.message,
                r.verified,
                if r.verified == 1 { "" } else { "s" },
                path.display()
            ));
        }
    }
    if let Some((seq, hash)) = &r.head {
        let label = if r.broken.is_some() {
            "last good"
        } else {
            "head"
        };
        s.push_str(&format!("{label}: seq {seq} {hash}\n"));
    }
    s
}

fn head(args: &HeadArgs) -> anyhow::Result<u8> {
    let reader = open(&args.store)?;
    let report = reader
        .verify(None)
        .map_err(|e| read_error(reader.path(), e))?;
    if let Some(b) = &report.broken {
        // Never hand out a checkpoint of a broken chain for anchoring.
        crate::warn(format_args!(
            "error: the chain is broken at seq {}: {} (run `conductor audit verify`)",
            b.seq, b.message
        ));
        return Ok(exit::FAILED);
    }
    let mut out = Stdout::new();
    let cp = &report.checkpoint;
    match args.format {
        HeadFormat::Checkpoint => write!(out, "{}", cp.to_text()),
        HeadFormat::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({
                "seq": report.head.as_ref().map(|h| h.0).unwrap_or(0),
                "hash": report.head.as_ref().map(|h| h.1.clone()),
                "checkpoint": cp.to_text(),
            }))?
        ),
        HeadFormat::Human => {
            let (seq, hash) = report
                .head
                .clone()
                .unwrap_or((0, "(no records yet)".to_string()));
            write!(
                out,
                "seq:  {seq}\nhash: {hash}\n\ncheckpoint (C2SP tlog-checkpoint body; save it elsewhere, check later with `audit verify --checkpoint FILE`):\n{}",
                cp.to_text()
            )
        }
    }
    .map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(exit::OK)
}

/// Parse a --since/--until value into the store's time format.
fn parse_time(flag: &str, value: &str) -> Result<String, CliError> {
    use conductor_audit::time::{format_micros, now_micros, parse_rfc3339};
    if let Some(us) = parse_rfc3339(value) {
        return Ok(format_micros(us));
    }
    let age = value
        .char_indices()
        .last()
        .and_then(|(i, unit)| {
            let n: i64 = value.get(..i)?.parse().ok()?;
            let secs: i64 = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return None,
            };
            n.checked_mul(secs)?.checked_mul(1_000_000)
        })
        .filter(|us| *us >= 0);
    match age {
        Some(us) => Ok(format_micros(now_micros().saturating_sub(us))),
        None => Err(CliError::Usage(format!(
            "invalid `--{flag}` value `{value}`: use RFC 3339 (`2026-01-02T03:04:05Z`), a date (`2026-01-02`) or an age (`15m`, `2h`, `7d`)"
        ))),
    }
}

fn filter(args: &FilterArgs) -> Result<Filter, CliError> {
    Ok(Filter {
        agent: args.agent.clone(),
        tool: args.tool.clone(),
        decision: args.decision.map(|d| d.as_str().to_string()),
        since: args
            .since
            .as_deref()
            .map(|v| parse_time("since", v))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|v| parse_time("until", v))
            .transpose()?,
        after_seq: None,
    })
}

/// A record as one line of canonical JSON (with its hash).
fn record_json(rec: &Record) -> anyhow::Result<String> {
    Ok(conductor_audit::canonical_json(&serde_json::to_value(rec)?))
}

/// One readable line per record.
fn record_human(rec: &Record) -> String {
    let detail = rec
        .reasons
        .as_array()
        .and_then(|r| r.first())
        .map(|r| {
            format!(
                "{}: {}",
                r.get("check").and_then(Value::as_str).unwrap_or("?"),
                r.get("message").and_then(Value::as_str).unwrap_or("")
            )
        })
        .or_else(|| {
            let hosts: Vec<&str> = rec
                .destinations
                .as_array()?
                .iter()
                .filter_map(|d| d.get("host").and_then(Value::as_str))
                .collect();
            (!hosts.is_empty()).then(|| format!("to {}", hosts.join(", ")))
        })
        .unwrap_or_default();
    let more = rec
        .reasons
        .as_array()
        .map_or(0, |r| r.len().saturating_sub(1));
    let more = if more > 0 {
        format!(" (+{more} more)")
    } else {
        String::new()
    };
    // INVARIANT: every field a server, tool or agent could have chosen is shown
    // through the one display sanitizer (no terminal escapes, no forged lines).
    let safe = |s: &str, n: usize| conductor_types::display::shown(s, n);
    format!(
        "{}  #{:<6} {:<7} {}  {}  {}{}\n",
        safe(&rec.time, 40),
        rec.seq,
        safe(&rec.decision, 16),
        safe(&rec.agent, 80),
        safe(&rec.tool, 160),
        safe(&detail, 400),
        more
    )
}

fn write_record(out: &mut impl Write, format: Format, rec: &Record) -> anyhow::Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", record_json(rec)?),
        Format::Human => out.write_all(record_human(rec).as_bytes()),
    }
    .map_err(write_err)
}

fn export(args: &ExportArgs) -> anyhow::Result<u8> {
    let f = filter(&args.filter)?;
    let reader = open(&args.store)?;
    let mut out = Stdout::new();
    let mut failed: Option<anyhow::Error> = None;
    reader
        .for_each(&f, |rec| {
            let line = match args.format {
                ExportFormat::Jsonl => record_json(&rec),
                ExportFormat::Ocsf => Ok(conductor_audit::canonical_json(
                    &conductor_audit::ocsf::event(&rec),
                )),
            };
            let r = line.and_then(|l| writeln!(out, "{l}").map_err(write_err));
            if let Err(e) = r {
                failed = Some(e);
                return false;
            }
            !out.closed()
        })
        .map_err(|e| read_error(reader.path(), e))?;
    if let Some(e) = failed {
        return Err(e);
    }
    out.flush().map_err(write_err)?;
    Ok(exit::OK)
}

fn query(args: &QueryArgs) -> anyhow::Result<u8> {
    let f = filter(&args.filter)?;
    let reader = open(&args.store)?;
    let mut out = Stdout::new();
    let mut failed: Option<anyhow::Error> = None;
    let mut n = 0u64;
    reader
        .for_each(&f, |rec| {
            n += 1;
            if let Err(e) = write_record(&mut out, args.format, &rec) {
                failed = Some(e);
                return false;
            }
            !out.closed()
        })
        .map_err(|e| read_error(reader.path(), e))?;
    if let Some(e) = failed {
        return Err(e);
    }
    out.flush().map_err(write_err)?;
    if n == 0 && args.format == Format::Human {
        crate::warn(format_args!("no records match"));
    }
    Ok(exit::OK)
}

/// How often `tail -f` looks for new records.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

fn tail(args: &TailArgs) -> anyhow::Result<u8> {
    let reader = open(&args.store)?;
    let mut out = Stdout::new();
    let recs = reader
        .last(args.lines)
        .map_err(|e| read_error(reader.path(), e))?;
    let mut last_seq = match reader.head().map_err(|e| read_error(reader.path(), e))? {
        Some((seq, _)) => seq,
        None => 0,
    };
    for rec in &recs {
        write_record(&mut out, args.format, rec)?;
        last_seq = last_seq.max(rec.seq);
    }
    out.flush().map_err(write_err)?;
    if !args.follow {
        return Ok(exit::OK);
    }
    // INVARIANT: follow never exits with success on a read error; it stops quietly
    // only when the reader of its output goes away.
    loop {
        if out.closed() {
            return Ok(exit::OK);
        }
        std::thread::sleep(FOLLOW_EVERY);
        let f = Filter {
            after_seq: Some(last_seq),
            ..Filter::default()
        };
        let mut failed: Option<anyhow::Error> = None;
        reader
            .for_each(&f, |rec| {
                last_seq = rec.seq;
                if let Err(e) = write_record(&mut out, args.format, &rec) {
                    failed = Some(e);
                    return false;
                }
                true
            })
            .map_err(|e| read_error(reader.path(), e))
            .context("while following the audit store")?;
        if let Some(e) = failed {
            return Err(e);
        }
        out.flush().map_err(write_err)?;
    }
}
