//! `conductor sandbox check`, the `--sandbox*` flags of `wrap`, and the hidden init.
//!
//! INVARIANT (fail closed): with `--sandbox`, a layer that cannot be set up stops the
//! command before the server starts (exit 78), and the message names the layer.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use conductor_sandbox::{Egress, InitProgram, Profile, SandboxGuard};

use crate::{CliError, exit};

/// The hidden first argument that makes `conductor` the sandbox's init.
pub const INIT_SUBCOMMAND: &str = conductor_sandbox::INIT_ARG;

/// Run the sandbox init when this process was started as one (never returns then).
pub fn init_if_requested() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == INIT_SUBCOMMAND)
    {
        conductor_sandbox::init_main()
    }
}

/// The `--sandbox*` flags of `conductor wrap`.
#[derive(Debug, Clone, Default, Args)]
pub struct SandboxArgs {
    /// Run the server in Conductor's sandbox (namespaces, Landlock, seccomp); its only
    /// network path is the egress proxy, which applies the policy's `destinations:`
    /// and `data:` to every connection (docs/sandbox.md).
    #[arg(long)]
    pub sandbox: bool,
    /// A path the sandboxed server may read (repeatable).
    #[arg(long = "sandbox-read", value_name = "PATH", requires = "sandbox")]
    pub read: Vec<PathBuf>,
    /// A path the sandboxed server may read and write (repeatable).
    #[arg(long = "sandbox-write", value_name = "PATH", requires = "sandbox")]
    pub write: Vec<PathBuf>,
    /// An environment variable passed to the sandboxed server (repeatable).
    #[arg(long = "sandbox-env", value_name = "NAME", requires = "sandbox")]
    pub env: Vec<String>,
    /// A sandbox profile file (YAML) adding paths and variables (docs/sandbox.md).
    #[arg(long = "sandbox-profile", value_name = "FILE", requires = "sandbox")]
    pub profile: Option<PathBuf>,
}

/// A sandbox ready to start a server: its profile (the proxy decides through the
/// gate's service).
pub struct Prepared {
    profile: Profile,
}

impl SandboxArgs {
    /// `None` without `--sandbox`; the profile (flags + file) otherwise.
    pub fn prepare(&self) -> anyhow::Result<Option<Prepared>> {
        if !self.sandbox {
            return Ok(None);
        }
        let mut profile = Profile {
            read: self.read.clone(),
            write: self.write.clone(),
            env: self.env.clone(),
            vars: Vec::new(),
            require_landlock: false,
        };
        for name in &self.env {
            if name.is_empty() || name.contains('=') {
                return Err(CliError::Usage(format!(
                    "invalid `--sandbox-env` value `{name}`: expected a variable name"
                ))
                .into());
            }
        }
        if let Some(path) = &self.profile {
            crate::require_file("sandbox profile", path)?;
            profile.extend(Profile::load(path)?);
        }
        Ok(Some(Prepared { profile }))
    }
}

impl Prepared {
    /// Start the server in the sandbox, its egress proxy deciding every connection
    /// through the gate's service (policy in force, resolver, session labels, audit).
    pub async fn spawn(
        self,
        gate: &Arc<conductor_mcp::Gate>,
        program: &str,
        args: &[String],
    ) -> anyhow::Result<(tokio::process::Child, Option<SandboxGuard>)> {
        let init = InitProgram::current_exe(INIT_SUBCOMMAND).map_err(|e| CliError::Io {
            what: "cannot find the conductor executable for the sandbox".into(),
            source: e,
        })?;
        let cfg = gate.config();
        let egress = Egress {
            service: Arc::clone(gate.service()),
            subject: conductor_gate::Subject {
                agent: cfg.agent.clone(),
                workflow: cfg.workflow.clone(),
                session: gate.session_id().to_string(),
                server: Some(cfg.server.clone()),
                auth: None,
            },
        };
        let mut command = vec![program.to_string()];
        command.extend(args.iter().cloned());
        let (child, guard) = conductor_sandbox::spawn(&init, &command, &self.profile, egress)
            .await
            .map_err(|e| anyhow::anyhow!(e).context("refusing to start the server"))?;
        Ok((child, Some(guard)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    #[default]
    Human,
    Json,
}

/// `conductor sandbox …`
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start a real sandbox (around `true`) and report which layers this kernel
    /// provides; exit 0 when every one is, 1 and the missing layer otherwise.
    Check {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

pub fn run(cmd: SandboxCommand) -> u8 {
    crate::finish(execute(cmd))
}

fn execute(cmd: SandboxCommand) -> anyhow::Result<u8> {
    let SandboxCommand::Check { format } = cmd;
    let init = InitProgram::current_exe(INIT_SUBCOMMAND).map_err(|e| CliError::Io {
        what: "cannot find the conductor executable".into(),
        source: e,
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io {
            what: "cannot start the async runtime".into(),
            source: e,
        })?;
    let report = runtime.block_on(conductor_sandbox::check(&init));
    let mut out = crate::Stdout::new();
    use std::io::Write;
    match format {
        Format::Json => {
            let text = serde_json::to_string(&report).map_err(|e| CliError::Data(e.to_string()))?;
            writeln!(out, "{text}").map_err(io_err)?;
        }
        Format::Human => {
            if report.ok {
                writeln!(
                    out,
                    "sandbox: every layer is available: user, pid, mount, network, ipc and uts namespaces; \
                     capabilities dropped; no_new_privs; seccomp deny-list ({} calls, x32 and foreign \
                     architectures refused); landlock ABI {} ({})",
                    report.seccomp_denied, report.landlock_abi, report.landlock
                )
                .map_err(io_err)?;
            } else if let Some((layer, reason)) = &report.missing {
                writeln!(out, "sandbox: missing layer `{layer}`: {reason}").map_err(io_err)?;
            }
        }
    }
    out.flush().map_err(io_err)?;
    Ok(if report.ok { exit::OK } else { exit::FAILED })
}

fn io_err(e: std::io::Error) -> CliError {
    CliError::Io {
        what: "cannot write the report".into(),
        source: e,
    }
}
