//! `conductor approvals list|show|approve|deny|revoke|grants` — people deciding on
//! held calls, against the audit store (across processes: a `wrap` holding a call
//! wakes within milliseconds of the decision being committed).
//!
//! INVARIANT: an approval or denial names the person who gave it (`--as NAME`, else
//! the operating-system user) in its audit record; nothing here can be reached from
//! an agent's channel (the MCP client of `wrap` or `serve` never runs this).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use conductor_audit::{
    ApprovalError, ApprovalFilter, ApprovalStore, Scope, SqliteApprovals, time::now_micros,
};
use serde_json::Value;

use crate::audit_cmd::{Format, StoreArgs};
use crate::{CliError, Stdout, exit};

const AFTER_HELP: &str = "\
Calls the policy marks `approve` are held (by `conductor wrap` and `conductor serve`)
until a person approves or denies them here, or they expire (policy
`sessions.approval_ttl`, default 10 minutes). Approvals live in the audit store; every
grant, denial and revocation is an audit record naming the approver.

Scopes: `call` releases the held call only; `session` also the same call (same
arguments) again in the same session (for `--for`, default 8h); `window` the agent's
calls to the tool whose arguments match every `--pattern POINTER=GLOB` (or, without a
pattern, the same arguments) for `--for`.

Exit status: 0 done; 1 no such approval, or it is not pending any more; 64 bad usage;
74 the store cannot be used.

Examples:
  conductor approvals list
  conductor approvals show 3f2a…
  conductor approvals approve 3f2a… --scope session
  conductor approvals approve 3f2a… --scope window --for 30m --pattern /repo='acme/*'
  conductor approvals deny 3f2a… --reason 'not during the freeze'
  conductor approvals revoke <grant id>";

#[derive(Debug, Subcommand)]
#[command(after_help = AFTER_HELP)]
pub enum ApprovalsCommand {
    /// List held calls (pending ones; `--all` for every one).
    #[command(after_help = AFTER_HELP)]
    List(ListArgs),
    /// Show one held call: the call (arguments redacted), why it needs approval, and
    /// its status.
    #[command(after_help = AFTER_HELP)]
    Show(ShowArgs),
    /// Approve a held call (it is released), with a scope.
    #[command(after_help = AFTER_HELP)]
    Approve(ApproveArgs),
    /// Deny a held call (it is refused with your reason).
    #[command(after_help = AFTER_HELP)]
    Deny(DenyArgs),
    /// Revoke a standing grant (a `session` or `window` approval).
    #[command(after_help = AFTER_HELP)]
    Revoke(RevokeArgs),
    /// List standing grants (active ones; `--all` for every one).
    #[command(after_help = AFTER_HELP)]
    Grants(GrantsArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Every approval, decided and expired too.
    #[arg(long)]
    pub all: bool,
    /// Only this agent's.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only calls to this tool (`<server>.<tool>`).
    #[arg(long)]
    pub tool: Option<String>,
    /// Output format (`json`: an array of objects with `id`, `agent`, `tool`, `expires`…).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The approval id.
    pub id: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// This call only.
    Call,
    /// This call, and the same call again in its session.
    Session,
    /// The agent's calls to the tool matching the pattern, for a window.
    Window,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The approval id.
    pub id: String,
    /// What the approval releases.
    #[arg(long, value_enum, default_value_t = ScopeArg::Call)]
    pub scope: ScopeArg,
    /// How long a `session` or `window` grant lasts (`90s`, `30m`, `8h`, `7d`).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// `POINTER=GLOB`: a `window` grant covers arguments whose string at POINTER
    /// matches GLOB (`*` any run, `?` one character). Repeatable; all must match.
    #[arg(long, value_name = "POINTER=GLOB")]
    pub pattern: Vec<String>,
    /// The approver's name (default: the operating-system user).
    #[arg(long = "as", value_name = "NAME")]
    pub approver: Option<String>,
}

#[derive(Debug, Args)]
pub struct DenyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The approval id.
    pub id: String,
    /// Why (shown to the agent's client and recorded).
    #[arg(long)]
    pub reason: String,
    /// The approver's name (default: the operating-system user).
    #[arg(long = "as", value_name = "NAME")]
    pub approver: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The grant id (`approvals grants`, or the `grant` of an approval).
    pub id: String,
    /// Who revokes it (default: the operating-system user).
    #[arg(long = "as", value_name = "NAME")]
    pub approver: Option<String>,
}

#[derive(Debug, Args)]
pub struct GrantsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Revoked and expired grants too.
    #[arg(long)]
    pub all: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(cmd: ApprovalsCommand) -> u8 {
    let r = match cmd {
        ApprovalsCommand::List(a) => list(&a),
        ApprovalsCommand::Show(a) => show(&a),
        ApprovalsCommand::Approve(a) => approve(&a),
        ApprovalsCommand::Deny(a) => deny(&a),
        ApprovalsCommand::Revoke(a) => revoke(&a),
        ApprovalsCommand::Grants(a) => grants(&a),
    };
    match r {
        Err(e) => {
            if let Some(a) = e.downcast_ref::<ApprovalError>() {
                let code = match a {
                    ApprovalError::NotFound { .. } | ApprovalError::NotPending { .. } => {
                        exit::FAILED
                    }
                    ApprovalError::Invalid { .. } => exit::USAGE,
                    ApprovalError::Store { .. } => exit::IO,
                };
                crate::warn(format_args!("error: {a}"));
                return code;
            }
            crate::finish(Err(e))
        }
        ok => crate::finish(ok),
    }
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

fn open(args: &StoreArgs) -> anyhow::Result<SqliteApprovals> {
    let path = store_path(args)?;
    if !path.exists() {
        return Err(CliError::NoInput {
            what: "audit store",
            path: path.display().to_string(),
            reason: "it does not exist".into(),
        }
        .into());
    }
    Ok(SqliteApprovals::open(&path)?)
}

/// The approver: `--as NAME`, else the operating-system user.
fn approver(arg: Option<&String>) -> anyhow::Result<String> {
    if let Some(a) = arg {
        return Ok(a.clone());
    }
    for var in ["USER", "LOGNAME"] {
        if let Some(v) = std::env::var_os(var).and_then(|v| v.into_string().ok())
            && !v.is_empty()
        {
            return Ok(v);
        }
    }
    if let Some(name) = os_user() {
        return Ok(name);
    }
    Err(CliError::Usage(
        "cannot tell who you are (no `USER`, `LOGNAME` or passwd entry): pass `--as NAME`".into(),
    )
    .into())
}

/// The name of this process's real user, from `/proc/self/status` and `/etc/passwd`
/// (else `uid:<n>`).
fn os_user() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    });
    Some(name.unwrap_or_else(|| format!("uid:{uid}")))
}

/// `90s`, `30m`, `8h`, `7d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn shown(s: &str) -> String {
    conductor_types::display::shown(s, 120)
}

fn list(a: &ListArgs) -> anyhow::Result<u8> {
    let store = open(&a.store)?;
    let items = store.list(&ApprovalFilter {
        pending_only: !a.all,
        agent: a.agent.clone(),
        tool: a.tool.clone(),
        limit: None,
    })?;
    let mut out = Stdout::new();
    match a.format {
        Format::Json => {
            let arr: Vec<Value> = items
                .iter()
                .map(conductor_audit::Approval::to_json)
                .collect();
            writeln!(out, "{}", Value::Array(arr)).context("writing the list")?;
        }
        Format::Human => {
            if items.is_empty() {
                writeln!(out, "no {}approvals", if a.all { "" } else { "pending " })?;
            }
            let now = now_micros();
            for i in &items {
                writeln!(
                    out,
                    "{}  {:<8}  {}  {}  expires {}",
                    i.id,
                    i.status_at(now).as_str(),
                    shown(&i.call.agent),
                    shown(&i.call.tool),
                    conductor_audit::time::format_micros(i.expires)
                )?;
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

fn show(a: &ShowArgs) -> anyhow::Result<u8> {
    let store = open(&a.store)?;
    let item = store.show(&a.id)?;
    let j = item.to_json();
    let mut out = Stdout::new();
    match a.format {
        Format::Json => writeln!(out, "{j}")?,
        Format::Human => {
            let s = |k: &str| {
                j.get(k)
                    .and_then(Value::as_str)
                    .map(shown)
                    .unwrap_or_default()
            };
            writeln!(out, "approval  {}", item.id)?;
            writeln!(out, "status    {}", s("status"))?;
            writeln!(out, "agent     {}", s("agent"))?;
            writeln!(out, "tool      {} ({})", s("tool"), s("action"))?;
            writeln!(out, "session   {}", s("session"))?;
            writeln!(out, "created   {}", s("created"))?;
            writeln!(out, "expires   {}", s("expires"))?;
            writeln!(out, "digest    {}", s("request_digest"))?;
            writeln!(out, "arguments {}", shown(&item.call.arguments.to_string()))?;
            if let Some(rs) = item.call.reasons.as_array() {
                for r in rs {
                    let f = |k: &str| {
                        r.get(k)
                            .and_then(Value::as_str)
                            .map(shown)
                            .unwrap_or_default()
                    };
                    writeln!(
                        out,
                        "reason    {} ({}): {}",
                        f("check"),
                        f("rule"),
                        f("message")
                    )?;
                }
            }
            if let Some(by) = &item.decided_by {
                writeln!(out, "decided   by {} (scope {})", shown(by), s("scope"))?;
            }
            if let Some(n) = &item.note {
                writeln!(out, "note      {}", shown(n))?;
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

fn approve(a: &ApproveArgs) -> anyhow::Result<u8> {
    let duration = match &a.duration {
        None => None,
        Some(d) => Some(parse_duration(d).ok_or_else(|| {
            CliError::Usage(format!(
                "invalid duration `{}`: write a number with a unit: `90s`, `30m`, `8h` or `7d`",
                shown(d)
            ))
        })?),
    };
    let mut pattern = Vec::new();
    for p in &a.pattern {
        let Some((ptr, glob)) = p.split_once('=') else {
            return Err(CliError::Usage(format!(
                "invalid pattern `{}`: write `POINTER=GLOB`, e.g. `/repo=acme/*`",
                shown(p)
            ))
            .into());
        };
        pattern.push((ptr.to_string(), glob.to_string()));
    }
    let scope = match a.scope {
        ScopeArg::Call => {
            if duration.is_some() || !pattern.is_empty() {
                return Err(CliError::Usage(
                    "`--for` and `--pattern` need `--scope session` or `--scope window`".into(),
                )
                .into());
            }
            Scope::Call
        }
        ScopeArg::Session => {
            if !pattern.is_empty() {
                return Err(CliError::Usage("`--pattern` needs `--scope window`".into()).into());
            }
            Scope::Session { duration }
        }
        ScopeArg::Window => Scope::Window {
            duration: duration.ok_or_else(|| {
                CliError::Usage("a window grant needs `--for DURATION` (e.g. `30m`)".into())
            })?,
            pattern,
        },
    };
    let who = approver(a.approver.as_ref())?;
    let store = open(&a.store)?;
    let done = store.approve(&a.id, &who, &scope)?;
    let mut out = Stdout::new();
    write!(
        out,
        "approved {} ({} → {}",
        done.id,
        shown(&done.call.agent),
        shown(&done.call.tool)
    )?;
    match &done.grant {
        Some(g) => writeln!(out, "), scope {}, grant {g}", scope.name())?,
        None => writeln!(out, "), scope call")?,
    }
    out.flush()?;
    Ok(exit::OK)
}

fn deny(a: &DenyArgs) -> anyhow::Result<u8> {
    let who = approver(a.approver.as_ref())?;
    let store = open(&a.store)?;
    let done = store.deny(&a.id, &who, &a.reason)?;
    let mut out = Stdout::new();
    writeln!(
        out,
        "denied {} ({} → {})",
        done.id,
        shown(&done.call.agent),
        shown(&done.call.tool)
    )?;
    out.flush()?;
    Ok(exit::OK)
}

fn revoke(a: &RevokeArgs) -> anyhow::Result<u8> {
    let who = approver(a.approver.as_ref())?;
    let store = open(&a.store)?;
    let g = store.revoke(&a.id, &who)?;
    let mut out = Stdout::new();
    writeln!(
        out,
        "revoked grant {} ({} → {}, scope {})",
        g.id,
        shown(&g.agent),
        shown(&g.tool),
        g.scope
    )?;
    out.flush()?;
    Ok(exit::OK)
}

fn grants(a: &GrantsArgs) -> anyhow::Result<u8> {
    let store = open(&a.store)?;
    let gs = store.grants(!a.all)?;
    let mut out = Stdout::new();
    match a.format {
        Format::Json => {
            let arr: Vec<Value> = gs.iter().map(conductor_audit::Grant::to_json).collect();
            writeln!(out, "{}", Value::Array(arr))?;
        }
        Format::Human => {
            if gs.is_empty() {
                writeln!(out, "no {}grants", if a.all { "" } else { "active " })?;
            }
            for g in &gs {
                writeln!(
                    out,
                    "{}  {:<7}  {}  {}  by {}  until {}{}",
                    g.id,
                    g.scope,
                    shown(&g.agent),
                    shown(&g.tool),
                    shown(&g.approver),
                    conductor_audit::time::format_micros(g.expires),
                    if g.revoked_by.is_some() {
                        "  (revoked)"
                    } else {
                        ""
                    }
                )?;
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}
