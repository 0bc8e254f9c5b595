//! `conductor console`: the web console (pending approvals, the audit explorer,
//! sessions and their labels) over an audit store, for `wrap` users. `conductor serve`
//! mounts the same console at `/console`.
//!
//! INVARIANT: the console listens on loopback only (it has no TLS); approvers log in
//! with keys whose SHA-256 the approvers file holds, and no agent credential is ever
//! accepted (see `conductor-console`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::{CliError, exit};

const CONSOLE_AFTER_HELP: &str = "\
Approvers log in with a name and a key; the approvers file holds the SHA-256 of each key:
  conductor console --new-key alice >> approvers.yaml   # prints the key once, on stderr
  # approvers.yaml:
  #   version: 1
  #   approvers:
  #     - {name: alice, sha256: \"<hex>\"}

Example:
  conductor console --audit ~/.local/share/conductor/audit.db --approvers approvers.yaml
  # then open http://127.0.0.1:8090/console/

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT); 64 bad usage; 65 invalid approvers
file; 66 missing file; 74 address in use.";

/// Arguments of `conductor console`.
#[derive(Debug, Args)]
#[command(after_help = CONSOLE_AFTER_HELP)]
pub struct ConsoleArgs {
    /// The audit store (default: `conductor/audit.db` in the user's data directory).
    #[arg(long, value_name = "PATH")]
    pub audit: Option<PathBuf>,
    /// The approver accounts (YAML, version 1: `approvers: [{name, sha256}]`).
    #[arg(long, value_name = "FILE", required_unless_present = "new_key")]
    pub approvers: Option<PathBuf>,
    /// Listen here (loopback only).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Print the bound address on standard output once listening (for scripts and tests).
    #[arg(long)]
    pub print_address: bool,
    /// Make a key for approver NAME: the key goes to stderr (once), the approvers file
    /// entry to stdout.
    #[arg(long, value_name = "NAME")]
    pub new_key: Option<String>,
}

pub fn run(args: ConsoleArgs) -> u8 {
    crate::finish(run_inner(args))
}

fn run_inner(args: ConsoleArgs) -> anyhow::Result<u8> {
    use std::io::Write as _;
    if let Some(name) = &args.new_key {
        let (key, hash) = conductor_console::new_key()
            .ok_or_else(|| CliError::Usage("the system's random number generator failed".into()))?;
        conductor_console::Approver::new(name, &hash).map_err(CliError::Usage)?;
        eprintln!("approver key for `{name}` (shown once; give it to {name}): {key}");
        let mut out = crate::Stdout::new();
        writeln!(out, "  - {{name: {name}, sha256: \"{hash}\"}}")?;
        return Ok(exit::OK);
    }
    if !args.listen.ip().is_loopback() {
        return Err(CliError::Usage(format!(
            "`{}` is not a loopback address: the console has no tls, so it listens on loopback only",
            args.listen
        ))
        .into());
    }
    let audit = match args.audit {
        Some(p) => p,
        None => conductor_audit::default_path()
            .ok_or_else(|| CliError::Usage("no data directory: pass `--audit PATH`".into()))?,
    };
    crate::require_file("audit store", &audit)?;
    let approvers_path = args
        .approvers
        .ok_or_else(|| CliError::Usage("`--approvers FILE` is required".into()))?;
    crate::require_file("approvers file", &approvers_path)?;
    let approvers = conductor_console::Approvers::load(&approvers_path)
        .map_err(|e| CliError::Data(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| CliError::Io {
                what: format!("cannot listen on `{}`", args.listen),
                source: e,
            })?;
        let bound = listener.local_addr()?;
        if args.print_address {
            let mut out = crate::Stdout::new();
            writeln!(out, "{bound}")?;
            out.flush()?;
        }
        eprintln!("conductor console: http://{bound}/console/");
        let opts = conductor_console::ConsoleOptions {
            audit,
            approvers,
            tls: false,
            hosts: Vec::new(),
        };
        conductor_console::serve(listener, opts, shutdown_signal()).await?;
        Ok::<u8, anyhow::Error>(exit::OK)
    })
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
