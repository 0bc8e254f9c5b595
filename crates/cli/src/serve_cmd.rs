//! `conductor serve` (the Streamable HTTP gateway) and `conductor gateway validate`.
//!
//! INVARIANT: no call is forwarded unless the audit store is open: a store that cannot
//! be opened stops the command before anything listens (exit 74).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use conductor_audit::{AuditOptions, AuditStore, Durability};

use crate::resolve::ResolveArgs;
use crate::{CliError, exit};

const SERVE_AFTER_HELP: &str = "\
Endpoints: /mcp (every server; names `<server>.<tool>`), /mcp/<server> (one server under
its own names), /healthz, /readyz, /metrics, /console (the web console for approvers),
/v1/approvals and /v1/grants (the approvers' JSON API; accounts in the file's
`approvers:`). Both MCP revisions: 2025-11-25 sessions
(`initialize`, `Mcp-Session-Id`) and 2026-07-28 stateless requests.

Example gateway.yaml:
  version: 1
  listen: \"127.0.0.1:8080\"
  servers:
    fetch: {command: [uvx, mcp-server-fetch]}
    wiki:  {url: \"http://127.0.0.1:3001/mcp\", headers: {Authorization: \"Bearer ${env:WIKI_TOKEN}\"}}
  auth: {none: {agent: desk}}

Both files are watched: a valid new version takes effect, an invalid one is reported and
the last good one stays. Logs are JSON lines on stderr (filter: CONDUCTOR_LOG).

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT); 64 bad usage; 65 invalid policy
or gateway file; 66 missing file; 74 audit store cannot be opened or address in use;
78 unusable fingerprint key.

Docs: docs/serve.md";

/// Arguments of `conductor serve`.
#[derive(Debug, Args)]
#[command(after_help = SERVE_AFTER_HELP)]
pub struct ServeArgs {
    /// The policy file (YAML, version 1); watched and reloaded.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The gateway file (YAML, version 1); watched and reloaded.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Listen here instead of the gateway file's `listen` (loopback only).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// The audit store (default: `conductor/audit.db` in the user's data directory).
    #[arg(long, value_name = "PATH")]
    pub audit: Option<PathBuf>,
    /// Print the bound address on standard output once listening (for scripts and tests).
    #[arg(long)]
    pub print_address: bool,
    /// More approver accounts for the web console at `/console` (see `conductor console
    /// --help`), besides the gateway file's `approvers:`.
    #[arg(long, value_name = "FILE")]
    pub approvers: Option<PathBuf>,
    #[command(flatten)]
    pub resolve: ResolveArgs,
}

/// `conductor gateway …`.
#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Validate a gateway file: every problem, with `file:line:col`.
    Validate {
        /// The gateway file.
        file: PathBuf,
    },
}

pub fn run_gateway(cmd: GatewayCommand) -> u8 {
    match cmd {
        GatewayCommand::Validate { file } => crate::finish(validate(&file)),
    }
}

fn load_gateway(path: &std::path::Path) -> anyhow::Result<conductor_serve::GatewayConfig> {
    crate::require_file("gateway file", path)?;
    conductor_serve::load_file(path)
        .map_err(|e| CliError::Data(e.render(crate::color_stderr()).trim_end().to_string()).into())
}

fn validate(path: &std::path::Path) -> anyhow::Result<u8> {
    let cfg = load_gateway(path)?;
    let mut out = crate::Stdout::new();
    use std::io::Write;
    writeln!(
        out,
        "{}: valid ({} server{}, listen {})",
        path.display(),
        cfg.servers.len(),
        if cfg.servers.len() == 1 { "" } else { "s" },
        cfg.listen
    )
    .map_err(|e| CliError::Io {
        what: "cannot write the result".into(),
        source: e,
    })?;
    let _ = out.flush();
    Ok(exit::OK)
}

pub fn run(args: ServeArgs) -> u8 {
    crate::finish(execute(args))
}

fn execute(args: ServeArgs) -> anyhow::Result<u8> {
    let resolver = args
        .resolve
        .build()
        .map_err(|e| CliError::Usage(format!("invalid `--resolve`: {e}")))?;
    if let Some(l) = args.listen
        && !l.ip().is_loopback()
    {
        return Err(CliError::Usage(format!(
            "`--listen {l}` is not a loopback address: a non-loopback listener needs tls and real authentication, which this version does not have"
        ))
        .into());
    }
    let policy = crate::load_policy(&args.policy)?;
    let config = load_gateway(&args.config)?;
    // The console's accounts: the gateway file's `approvers:` (which the approvals API
    // uses too) and those of `--approvers FILE`.
    let approvers = match &args.approvers {
        Some(p) => {
            crate::require_file("approvers file", p)?;
            conductor_console::Approvers::load(p)
                .map_err(|e| CliError::Data(e.to_string()))?
                .merged(&config.approvers)
                .map_err(|e| CliError::Data(format!("approvers: {e}")))?
        }
        None => config.approvers.clone(),
    };
    let key = crate::world::load_fingerprint_key()?;
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
    let store = match AuditStore::open(
        &audit_path,
        AuditOptions {
            durability: Durability::Normal,
        },
    ) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            crate::warn(format_args!(
                "error: {e}; refusing to start (no call may pass unrecorded)"
            ));
            return Ok(exit::IO);
        }
    };
    conductor_serve::init_logging();
    // Taint belongs to the agent: labels live in the audit database, shared with every
    // process (`wrap`, hooks) acting for it.
    let sessions = match conductor_gate::SqliteStore::open(&audit_path) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            crate::warn(format_args!(
                "error: {e}; refusing to start (the session labels cannot be kept)"
            ));
            return Ok(exit::IO);
        }
    };
    let gates = Arc::new(conductor_serve::gate_glue::GateEnv::new(
        policy,
        resolver,
        key,
        Arc::clone(&store),
        sessions,
    ));
    // Calls the policy marks `approve` are held in the audit database until a person
    // decides (`conductor approvals`, from any process).
    match conductor_audit::SqliteApprovals::open(&audit_path) {
        Ok(a) => gates.hold_approvals_in(Arc::new(a)),
        Err(e) => {
            crate::warn(format_args!(
                "error: {e}; refusing to start (calls needing approval could not be held)"
            ));
            return Ok(exit::IO);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .map_err(|e| CliError::Io {
            what: "cannot start the async runtime".into(),
            source: e,
        })?;
    let print = args.print_address;
    let console = conductor_console::router(conductor_console::ConsoleOptions {
        audit: audit_path.clone(),
        approvers,
        tls: false,
        hosts: config
            .public_url
            .as_ref()
            .and_then(|u| {
                let host = u.host_str()?;
                Some(match u.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_string(),
                })
            })
            .into_iter()
            .collect(),
    });
    let result = runtime.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = tx.send(true);
        });
        conductor_serve::serve_with(
            conductor_serve::ServeOptions {
                config,
                config_path: Some(args.config.clone()),
                policy_path: Some(args.policy.clone()),
                gates,
                listen: args.listen,
                shutdown: rx,
                on_listen: Some(Box::new(move |addr| {
                    if print {
                        use std::io::Write;
                        let mut o = std::io::stdout().lock();
                        let _ = writeln!(o, "{addr}");
                        let _ = o.flush();
                    }
                })),
            },
            console,
        )
        .await
    });
    if let Err(e) = store.flush() {
        crate::warn(format_args!("error: cannot flush the audit store: {e}"));
    }
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => Ok(exit::OK),
        Err(e) => {
            crate::warn(format_args!("error: {e}"));
            Ok(exit::IO)
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
