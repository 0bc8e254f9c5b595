//! `conductor wrap`: run a stdio MCP server behind the gate.
//!
//! INVARIANT: no call is forwarded unless the audit store is open: a store that
//! cannot be opened stops the command before the server is started (exit 74).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use conductor_audit::{AuditOptions, AuditStore, Durability};
use conductor_gate::{ArgumentsMode, Service, ServiceOptions, SqliteStore};
use conductor_mcp::{EngineOptions, Gate, GateConfig};

use crate::resolve::ResolveArgs;
use crate::{CliError, exit};

const AFTER_HELP: &str = "\
On the wire the client sees the server's own tool names; the policy names them
`<server>.<tool>`. Every tools/call (and resources/read, decided as the tool
`<server>.read_resource` with the uri as destination) is decided and recorded before
it is forwarded; a refused call is answered with an error result naming the checks.

In an MCP client's configuration (Claude Desktop, VS Code, Cursor):
  \"command\": \"conductor\",
  \"args\": [\"wrap\", \"--policy\", \"/path/policy.yaml\", \"--agent\", \"research-bot\",
           \"--server\", \"everything\", \"--\", \"npx\", \"-y\", \"@modelcontextprotocol/server-everything\"]

Exit status: the server's own status; 64 bad usage; 65 invalid policy;
66 missing policy file; 74 audit store cannot be opened; 78 unusable fingerprint key.";

/// How arguments are kept in audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ArgumentsArg {
    /// Every detected secret or personal value replaced by `[REDACTED:<label>]`.
    #[default]
    Redacted,
    /// Not kept.
    None,
    /// Kept as sent (protect the store accordingly).
    Full,
}

/// How hard each audit commit tries to survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DurabilityArg {
    /// Survives a crash of the process.
    #[default]
    Normal,
    /// Survives power loss (slower).
    Fsync,
}

/// Arguments of `conductor wrap`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct WrapArgs {
    /// The policy file (YAML, version 1); watched and reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The agent this session acts for (an `agents:` entry of the policy).
    #[arg(long, value_name = "ID")]
    pub agent: String,
    /// Server id used in the policy's tool names (default: the command's file name).
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
    /// The workflow every call of this session belongs to.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// The audit store (default: `conductor/audit.db` in the user's data directory).
    #[arg(long, value_name = "PATH")]
    pub audit: Option<PathBuf>,
    /// Durability of each audit commit.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Normal)]
    pub durability: DurabilityArg,
    /// How call arguments are kept in the audit store.
    #[arg(long, value_enum, default_value_t = ArgumentsArg::Redacted)]
    pub arguments: ArgumentsArg,
    /// Largest JSON-RPC message accepted from either side, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = conductor_mcp::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Keep every tool in `tools/list` results, even those the agent can never call.
    #[arg(long)]
    pub no_filter_tools: bool,
    #[command(flatten)]
    pub resolve: ResolveArgs,
    #[command(flatten)]
    pub sandbox: crate::sandbox_cmd::SandboxArgs,
    /// The server command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Threads for blocking work (large scans, refused notifications' records, answers).
const BLOCKING_THREADS: usize = 32;

pub fn run(args: WrapArgs) -> u8 {
    crate::finish(execute(args))
}

fn valid_server_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn execute(args: WrapArgs) -> anyhow::Result<u8> {
    let Some((program, program_args)) = args.command.split_first() else {
        return Err(CliError::Usage("no server command after `--`".into()).into());
    };
    let server = match &args.server {
        Some(s) if valid_server_id(s) => s.clone(),
        Some(s) => {
            return Err(CliError::Usage(format!(
                "invalid `--server` value `{s}`: server ids match `[a-z0-9_-]+`"
            ))
            .into());
        }
        None => conductor_mcp::server_id(program),
    };
    if args.max_message_bytes == 0 {
        return Err(CliError::Usage("`--max-message-bytes` must be at least 1".into()).into());
    }
    let resolver = args
        .resolve
        .build()
        .map_err(|e| CliError::Usage(format!("invalid `--resolve`: {e}")))?;
    let policy = crate::load_policy(&args.policy)?;
    if policy.agent(&args.agent).is_none() {
        crate::warn(format_args!(
            "warning: the policy does not name agent `{}`: every call will be denied",
            args.agent
        ));
    }
    let key = Arc::new(crate::world::load_fingerprint_key()?);
    let sandbox = args.sandbox.prepare()?;
    let audit_path = match args.audit.clone().or_else(conductor_audit::default_path) {
        Some(p) => p,
        None => {
            return Err(CliError::Usage(
                "no audit store: name one with `--audit PATH` (or set `XDG_DATA_HOME` or `HOME`)"
                    .into(),
            )
            .into());
        }
    };
    if let Some(dir) = audit_path.parent()
        && !dir.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    let durability = match args.durability {
        DurabilityArg::Normal => Durability::Normal,
        DurabilityArg::Fsync => Durability::Fsync,
    };
    let store = match AuditStore::open(&audit_path, AuditOptions { durability }) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            crate::warn(format_args!(
                "error: {e}; refusing to start the server (no call may pass unrecorded)"
            ));
            return Ok(exit::IO);
        }
    };
    // Taint belongs to the agent: labels live in the audit database, shared by every
    // process that acts for it.
    let sessions = match SqliteStore::open(&audit_path) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            crate::warn(format_args!(
                "error: {e}; refusing to start the server (the session labels cannot be kept)"
            ));
            return Ok(exit::IO);
        }
    };
    let service = Arc::new(Service::new(
        policy,
        resolver,
        Arc::clone(&key),
        Arc::clone(&store),
        sessions,
        ServiceOptions {
            arguments: match args.arguments {
                ArgumentsArg::Redacted => ArgumentsMode::Redacted,
                ArgumentsArg::None => ArgumentsMode::None,
                ArgumentsArg::Full => ArgumentsMode::Full,
            },
            ..ServiceOptions::default()
        },
    ));
    // Calls the policy marks `approve` are held in the audit database until a person
    // decides (`conductor approvals`, from any process).
    match conductor_audit::SqliteApprovals::open(&audit_path) {
        Ok(a) => service.set_approvals(Arc::new(a)),
        Err(e) => {
            crate::warn(format_args!(
                "error: {e}; refusing to start the server (calls needing approval could not be held)"
            ));
            return Ok(exit::IO);
        }
    }
    let gate = match Gate::new(
        GateConfig {
            agent: args.agent.clone(),
            server,
            workflow: args.workflow.clone(),
            filter_tools: !args.no_filter_tools,
        },
        Arc::clone(&service),
    ) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            crate::warn(format_args!("error: {e}; refusing to start the server"));
            return Ok(e.class().exit_code());
        }
    };

    // One thread runs the relay: one session's work is a sequence (decide, commit,
    // forward; label what comes back), and handing each message between two worker
    // threads cost a wake-up per hop — most of the added latency (crates/mcp/BENCHMARKS.md).
    // Work that waits (DNS, a commit that waits for the disk, large scans) runs on
    // other threads; the relay thread never waits for it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .map_err(|e| CliError::Io {
            what: "cannot start the async runtime".into(),
            source: e,
        })?;
    let options = EngineOptions {
        max_message_bytes: args.max_message_bytes,
        ..EngineOptions::default()
    };
    let code = runtime.block_on(relay(
        gate,
        service,
        options,
        args.policy.clone(),
        program.clone(),
        program_args.to_vec(),
        sandbox,
    ))?;
    if let Err(e) = store.flush() {
        crate::warn(format_args!("error: cannot flush the audit store: {e}"));
    }
    // Blocking DNS lookups may still be running on helper threads: do not wait.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(code)
}

async fn relay(
    gate: Arc<Gate>,
    service: Arc<Service>,
    options: EngineOptions,
    policy_path: PathBuf,
    program: String,
    program_args: Vec<String>,
    sandbox: Option<crate::sandbox_cmd::Prepared>,
) -> anyhow::Result<u8> {
    let (mut child, _sandbox) = match sandbox {
        Some(s) => s.spawn(&gate, &program, &program_args).await?,
        None => (spawn_plain(&program, &program_args)?, None),
    };
    let (Some(child_in), Some(child_out)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(
            CliError::Usage("cannot connect to the server's standard streams".into()).into(),
        );
    };

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        let _ = shutdown_tx.send(true);
    });
    let watcher = tokio::spawn(conductor_gate::watch_policy(
        service,
        policy_path,
        Duration::from_secs(1),
        Arc::new(|m: String| crate::warn(format_args!("{m}"))),
    ));

    let outcome = conductor_mcp::run(
        gate,
        options.clone(),
        conductor_mcp::stdio::input(),
        conductor_mcp::stdio::output(),
        child_out,
        child_in,
        shutdown_rx,
    )
    .await;
    watcher.abort();
    signals.abort();

    let waited = if outcome.server_closed {
        tokio::time::timeout(options.shutdown_grace, child.wait())
            .await
            .ok()
    } else {
        None
    };
    let status = match waited {
        Some(Ok(s)) => s,
        _ => {
            let _ = child.start_kill();
            child.wait().await.map_err(|e| CliError::Io {
                what: "cannot wait for the server".into(),
                source: e,
            })?
        }
    };
    Ok(exit_status_code(status))
}

fn spawn_plain(program: &str, program_args: &[String]) -> anyhow::Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(program)
        .args(program_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CliError::NoInput {
            what: "server command",
            path: program.to_string(),
            reason: crate::io_reason(&e),
        })?)
}

fn exit_status_code(status: std::process::ExitStatus) -> u8 {
    if let Some(c) = status.code() {
        return u8::try_from(c & 0xff).unwrap_or(exit::SOFTWARE);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return u8::try_from((128 + sig) & 0xff).unwrap_or(exit::SOFTWARE);
        }
    }
    exit::SOFTWARE
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        (Ok(mut t), Err(_)) => {
            t.recv().await;
        }
        _ => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
