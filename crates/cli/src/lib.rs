//! The `conductor` command-line tool: glue between the crates, nothing more.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod approvals_cmd;
pub mod audit_cmd;
pub mod check;
pub mod console_cmd;
pub mod hook_cmd;
mod hook_resident;
pub mod init_cmd;
pub mod keys_cmd;
pub mod policy_cmd;
pub mod resolve;
pub mod sandbox_cmd;
pub mod serve_cmd;
pub mod world;
pub mod wrap_cmd;

/// Exit statuses (DESIGN.md, "Command line").
pub mod exit {
    use conductor_types::FailureClass;
    pub const ALLOW: u8 = 0;
    pub const OK: u8 = 0;
    pub const DENY: u8 = FailureClass::Policy.exit_code();
    pub const FAILED: u8 = 1;
    pub const APPROVE: u8 = 2;
    pub const USAGE: u8 = 64;
    /// Invalid input: the caller's fault (the one table in `conductor-types`).
    pub const DATA: u8 = FailureClass::Client.exit_code();
    /// A named input file does not exist or cannot be read.
    pub const NOINPUT: u8 = 66;
    pub const SOFTWARE: u8 = FailureClass::Internal.exit_code();
    pub const IO: u8 = FailureClass::Unavailable.exit_code();
    /// The installation is misconfigured (e.g. an unusable fingerprint key file).
    pub const CONFIG: u8 = 78;
}

/// Conductor: a pre-authorization gate for AI agent tool calls.
///
/// Every call is asked four questions — may this agent call this tool; is the
/// destination in scope; is the data being sent appropriate; is the action allowed
/// for this role in this workflow — and every answer is recorded.
#[derive(Debug, Parser)]
#[command(
    name = "conductor",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = MAIN_AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const MAIN_AFTER_HELP: &str = "\
Examples:
  # decide one request (exit 0 allow, 1 deny, 2 approval required)
  conductor check --policy examples/policy.yaml --request examples/requests/metadata-decimal-ip.json

  # decide a stream of requests, one JSON object per line
  conductor check --policy examples/policy.yaml --jsonl --no-dns < examples/requests.jsonl

  # validate a policy, then run its tests
  conductor policy validate examples/policy.yaml
  conductor policy test examples/policy.test.yaml

Exit statuses: 0 success/allow, 1 deny/failed expectation, 2 approval required,
64 bad usage, 65 invalid policy or request, 66 missing input file,
74 I/O error, 78 unusable installation (e.g. fingerprint key file).

Docs: README.md, docs/policy-tests.md, docs/wrap.md, docs/claude-code.md, docs/init.md";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decide requests against a policy and print the decisions.
    Check(check::CheckArgs),
    /// Validate and test policy files.
    #[command(
        subcommand,
        after_help = "Examples:\n  conductor policy validate examples/policy.yaml\n  \
                      conductor policy test examples/policy.test.yaml"
    )]
    Policy(policy_cmd::PolicyCommand),
    /// Inspect, verify and export the audit trail.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Decide on calls held for a person's approval (list, show, approve, deny, revoke).
    #[command(subcommand)]
    Approvals(approvals_cmd::ApprovalsCommand),
    /// Run a stdio MCP server behind the gate.
    Wrap(wrap_cmd::WrapArgs),
    /// What the sandbox layer (`wrap --sandbox`) can use on this machine.
    #[command(subcommand)]
    Sandbox(sandbox_cmd::SandboxCommand),
    /// Agent-runtime hooks (Claude Code, Claude Agent SDK).
    #[command(subcommand)]
    Hook(hook_cmd::HookCommand),
    /// Put an MCP client's servers behind the gate: a starter policy, its tests, and
    /// the client configuration rewritten to run each server under `conductor wrap`.
    Init(init_cmd::InitArgs),
    /// Run the Streamable HTTP gateway in front of many MCP servers.
    Serve(serve_cmd::ServeArgs),
    /// Validate gateway files.
    #[command(subcommand)]
    Gateway(serve_cmd::GatewayCommand),
    /// API keys for `conductor serve` (`keys new --agent ID`).
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// The web console for approvers: pending approvals, the audit explorer, sessions.
    Console(console_cmd::ConsoleArgs),
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    sandbox_cmd::init_if_requested();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(run(cli))
}

/// Errors the commands report. [`exit_code`] maps each to an exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong (exit 64).
    #[error("{0}")]
    Usage(String),
    /// A named input file cannot be opened (exit 66).
    #[error("cannot read {what} `{path}`: {reason}")]
    NoInput {
        what: &'static str,
        path: String,
        reason: String,
    },
    /// The policy is invalid (exit 65); the rendering carries every problem.
    #[error("invalid policy `{path}`")]
    Policy {
        path: String,
        error: Box<conductor_policy::LoadError>,
    },
    /// A request or other input document is invalid (exit 65).
    #[error("{0}")]
    Data(String),
    /// Reading input or writing output failed (exit 74).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// The one place that maps an error to an exit status (DESIGN.md, "Command line").
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return match e {
                CliError::Usage(_) => exit::USAGE,
                CliError::NoInput { .. } => exit::NOINPUT,
                CliError::Policy { .. } | CliError::Data(_) => exit::DATA,
                CliError::Io { .. } => exit::IO,
            };
        }
        if cause.is::<conductor_policy::LoadError>() || cause.is::<conductor_core::RequestError>() {
            return exit::DATA;
        }
        if cause.is::<world::WorldError>() || cause.is::<conductor_sandbox::SandboxError>() {
            return exit::CONFIG;
        }
        if let Some(e) = cause.downcast_ref::<conductor_mcp::McpError>() {
            return e.class().exit_code();
        }
        if cause.is::<io::Error>() {
            return exit::IO;
        }
    }
    exit::SOFTWARE
}

/// Whether an error is a closed standard output (a reader such as `head` went away):
/// the command then stops quietly.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Print an error on standard error (never panics, even when stderr is closed) and
/// return its exit status.
pub fn report(err: &anyhow::Error) -> u8 {
    let code = exit_code(err);
    let mut stderr = io::stderr().lock();
    let policy = err
        .chain()
        .find_map(|c| match c.downcast_ref::<CliError>() {
            Some(CliError::Policy { error, .. }) => Some(error.render(color_stderr())),
            _ => None,
        });
    match policy {
        // The rendering names the file in every problem and ends with a summary.
        Some(rendered) => {
            let _ = writeln!(stderr, "{}", rendered.trim_end());
        }
        None => {
            let _ = writeln!(stderr, "conductor: error: {err:#}");
        }
    }
    code
}

/// Finish a command: its status, or the reported error's.
///
/// Commands write through [`Stdout`], which absorbs a closed pipe, so their status
/// stays the real one (a failed test run piped into `head` still fails). A broken pipe
/// that reaches this point anyway ends the command quietly, but never with success.
pub fn finish(result: anyhow::Result<u8>) -> u8 {
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => exit::IO,
        Err(e) => report(&e),
    }
}

/// Standard output for command results. When the reader goes away (EPIPE, e.g.
/// `| head -1`), further output is discarded silently and [`Stdout::closed`] turns
/// true; every other write error is returned.
pub struct Stdout<W: Write = io::BufWriter<io::StdoutLock<'static>>> {
    inner: W,
    closed: bool,
}

impl Stdout {
    /// Buffered, locked standard output.
    pub fn new() -> Self {
        Stdout::wrap(io::BufWriter::new(io::stdout().lock()))
    }
}

impl Default for Stdout {
    fn default() -> Self {
        Stdout::new()
    }
}

impl<W: Write> Stdout<W> {
    pub fn wrap(inner: W) -> Self {
        Stdout {
            inner,
            closed: false,
        }
    }

    /// Whether the reader has gone away.
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn absorb<T>(&mut self, r: io::Result<T>, closed_value: T) -> io::Result<T> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(closed_value)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.absorb(r, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.inner.flush();
        self.absorb(r, ())
    }
}

/// Whether diagnostics on stderr may use colour (a terminal, and `NO_COLOR` unset).
pub fn color_stderr() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Write a line on standard error, ignoring failures (stderr may be closed).
pub(crate) fn warn(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "conductor: {message}");
}

/// Check that `path` names a readable file before a loader touches it, so that a
/// missing file is reported as such (exit 66) rather than as invalid content.
pub(crate) fn require_file(what: &'static str, path: &Path) -> Result<(), CliError> {
    let fail = |reason: String| CliError::NoInput {
        what,
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(io_reason(&e)))?;
    if meta.is_dir() {
        return Err(fail("it is a directory".into()));
    }
    std::fs::File::open(path).map_err(|e| fail(io_reason(&e)))?;
    Ok(())
}

/// A lowercase reason for an I/O error, without Rust's `(os error N)` noise.
pub(crate) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut chars = s.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => s,
            }
        }
    }
}

/// Load a policy file; a missing file is [`CliError::NoInput`], an invalid one
/// [`CliError::Policy`].
pub(crate) fn load_policy(path: &Path) -> Result<conductor_policy::Policy, CliError> {
    require_file("policy", path)?;
    conductor_policy::load_file(path).map_err(|e| CliError::Policy {
        path: path.display().to_string(),
        error: Box::new(e),
    })
}

/// How a path is shown in messages.
pub(crate) fn shown(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

/// `-` or nothing means standard input.
pub(crate) fn is_stdin(path: Option<&PathBuf>) -> bool {
    path.is_none_or(|p| p.as_os_str() == "-")
}

/// Run a parsed command line and return its exit status.
pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Audit(cmd) => audit_cmd::run(cmd),
        Command::Approvals(cmd) => approvals_cmd::run(cmd),
        Command::Wrap(args) => wrap_cmd::run(args),
        Command::Sandbox(cmd) => sandbox_cmd::run(cmd),
        Command::Hook(cmd) => hook_cmd::run(cmd),
        Command::Init(args) => init_cmd::run(args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Gateway(cmd) => serve_cmd::run_gateway(cmd),
        Command::Keys(cmd) => keys_cmd::run(cmd),
        Command::Console(args) => console_cmd::run(args),
    }
}
