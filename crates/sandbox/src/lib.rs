//! The sandbox layer (DESIGN.md, "Sandbox layer"): run a stdio MCP server in fresh user,
//! pid, mount, network, IPC and UTS namespaces, with a private root that shows only
//! what its profile lists, every capability dropped, `no_new_privs`, Landlock and a
//! seccomp deny-list — and with Conductor's egress proxy as its only way out.
//!
//! CONTRACT (used by `conductor wrap`, reusable by a gateway's stdio servers):
//! [`spawn`] → ([`tokio::process::Child`] with piped stdin/stdout, [`SandboxGuard`]);
//! [`Profile`] (defaults + `--sandbox-read/-write/-env` + [`Profile::load`]);
//! [`Egress`] (what the proxy needs); [`InitProgram`] and [`init_main`] (the hidden
//! init the sandbox runs as its pid 1); [`check`] (what this kernel provides).
//!
//! INVARIANT (fail closed): when any layer cannot be set up, [`spawn`] returns
//! [`SandboxError::Layer`] naming it, and the server never starts.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod fdpass;
mod init;
mod plan;
mod proxy;
mod relay;
pub mod seccomp;
mod sys;
pub mod tls;

pub use plan::Profile;

/// A layer of the sandbox, as error messages and `conductor sandbox check` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    Init,
    Profile,
    UserNamespace,
    PidNamespace,
    MountNamespace,
    Session,
    Filesystem,
    Network,
    Capabilities,
    NoNewPrivs,
    Landlock,
    Seccomp,
    Start,
}

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::Init => "sandbox init",
            Layer::Profile => "profile",
            Layer::UserNamespace => "user namespace",
            Layer::PidNamespace => "pid namespace",
            Layer::MountNamespace => "mount and network namespaces",
            Layer::Session => "session",
            Layer::Filesystem => "filesystem view",
            Layer::Network => "network namespace",
            Layer::Capabilities => "capabilities",
            Layer::NoNewPrivs => "no_new_privs",
            Layer::Landlock => "landlock",
            Layer::Seccomp => "seccomp",
            Layer::Start => "server start",
        }
    }
}

/// Why the sandbox did not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A layer could not be set up (the server was not started).
    #[error("the sandbox cannot be set up ({}): {reason}", layer.name())]
    Layer { layer: Layer, reason: String },
}

fn layer_error(layer: Layer, reason: impl Into<String>) -> SandboxError {
    SandboxError::Layer {
        layer,
        reason: reason.into(),
    }
}

/// The hidden first argument that makes the `conductor` binary the sandbox's init (its
/// `main` calls [`init_main`] when it sees it).
pub const INIT_ARG: &str = "__sandbox-init";

/// How the sandbox's init is started: a program and the arguments that select the
/// hidden init (for `conductor`: its own executable and `__sandbox-init`).
#[derive(Debug, Clone)]
pub struct InitProgram {
    pub path: PathBuf,
    pub args: Vec<OsString>,
}

impl InitProgram {
    /// This executable, with `subcommand` as its first argument.
    pub fn current_exe(subcommand: &str) -> std::io::Result<Self> {
        Ok(InitProgram {
            path: std::env::current_exe()?,
            args: vec![subcommand.into()],
        })
    }
}

/// What the egress proxy decides with: the gate service (its policy in force, resolver,
/// session store and audit store — the same one the server's calls are decided by) and
/// who the connections are made for. Every connection is decided and recorded by
/// `Service::check_connection`/`record_connection`; the proxy has no check of its own.
pub struct Egress {
    pub service: Arc<conductor_gate::Service>,
    /// The agent, workflow and session the server acts for, and the server id
    /// (connections are recorded as the tool `<server>.egress`).
    pub subject: conductor_gate::Subject,
}

/// The in-sandbox init's entry point (the hidden subcommand). Never returns.
pub fn init_main() -> ! {
    init::main()
}

/// The mounts of the private root, as the init builds them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum MountKind {
    ReadOnly,
    ReadWrite,
    /// A device node (read-write, `nosuid`).
    Device,
    Tmpfs,
    Proc,
    Symlink {
        to: PathBuf,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub kind: MountKind,
}

/// Everything the init needs, sent over the control channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InitConfig {
    pub program: PathBuf,
    pub argv0: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub mounts: Vec<Mount>,
    pub landlock_read: Vec<PathBuf>,
    pub landlock_write: Vec<PathBuf>,
    pub uid: u32,
    pub gid: u32,
    pub require_landlock: bool,
}

/// What the init reports once every layer is in place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    /// The proxy's port inside the sandbox (`127.0.0.1:<port>`).
    pub port: u16,
    /// The kernel's Landlock ABI (0: none).
    pub landlock_abi: i64,
    /// How much of the Landlock ruleset the kernel enforces.
    pub landlock: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Reply {
    Ok(Ready),
    Err { layer: Layer, reason: String },
}

/// Keeps the egress proxy running; dropping it stops the proxy.
#[derive(Debug)]
pub struct SandboxGuard {
    /// The egress proxy's thread (stopped when this is dropped).
    _proxy: Option<proxy::Proxy>,
    /// What the init reported.
    pub ready: Ready,
}

/// How long the init may take to report.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Start `command` in the sandbox described by `profile`, with the egress proxy serving
/// it. The child's stdin and stdout are piped (stderr is inherited); it is killed when
/// dropped. The server is running, with every layer in place, when this returns.
pub async fn spawn(
    init: &InitProgram,
    command: &[String],
    profile: &Profile,
    egress: Egress,
) -> Result<(tokio::process::Child, SandboxGuard), SandboxError> {
    spawn_inner(init, command, profile, Some(Arc::new(egress))).await
}

async fn spawn_inner(
    init: &InitProgram,
    command: &[String],
    profile: &Profile,
    egress: Option<Arc<Egress>>,
) -> Result<(tokio::process::Child, SandboxGuard), SandboxError> {
    let config = plan::plan(command, profile)?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| layer_error(Layer::Init, e.to_string()))?;
    let mut cmd = tokio::process::Command::new(&init.path);
    cmd.args(&init.args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    sys::pass_fd_as_3(&mut cmd, theirs.as_raw_fd());
    let mut child = cmd.spawn().map_err(|e| {
        layer_error(
            Layer::Init,
            format!("cannot start `{}`: {e}", init.path.display()),
        )
    })?;
    drop(theirs);
    let handshake = tokio::task::spawn_blocking(move || handshake(&ours, &config)).await;
    let (ready, listener) = match handshake {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(e);
        }
        Err(_) => {
            let _ = child.start_kill();
            return Err(layer_error(Layer::Init, "the handshake did not finish"));
        }
    };
    let proxy = match egress {
        Some(egress) => {
            let listener = std::net::TcpListener::from(listener);
            match proxy::start(listener, egress) {
                Ok(p) => Some(p),
                Err(e) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Err(layer_error(
                        Layer::Network,
                        format!("cannot start the egress proxy: {e}"),
                    ));
                }
            }
        }
        None => None,
    };
    Ok((
        child,
        SandboxGuard {
            _proxy: proxy,
            ready,
        },
    ))
}

fn handshake(
    sock: &UnixStream,
    config: &InitConfig,
) -> Result<(Ready, std::os::fd::OwnedFd), SandboxError> {
    let init_err = |m: String| layer_error(Layer::Init, m);
    let text = serde_json::to_vec(config).map_err(|e| init_err(e.to_string()))?;
    let len = u32::try_from(text.len()).map_err(|_| init_err("configuration too large".into()))?;
    sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| init_err(e.to_string()))?;
    let mut w = sock;
    w.write_all(&len.to_le_bytes())
        .and_then(|()| w.write_all(&text))
        .map_err(|e| init_err(format!("cannot send the configuration: {e}")))?;
    let got = fdpass::recv_line(sock).map_err(|e| init_err(format!("no answer: {e}")))?;
    let Some((line, fd)) = got else {
        return Err(init_err(
            "the sandbox init exited before it reported".into(),
        ));
    };
    let reply: Reply = serde_json::from_slice(&line)
        .map_err(|e| init_err(format!("unreadable answer from the sandbox init: {e}")))?;
    match reply {
        Reply::Err { layer, reason } => Err(layer_error(layer, reason)),
        Reply::Ok(ready) => match fd {
            Some(fd) => Ok((ready, fd)),
            None => Err(init_err("the sandbox init sent no proxy socket".into())),
        },
    }
}

/// What `conductor sandbox check` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// `Ok` when every layer was set up (a real sandbox ran `true`).
    pub ok: bool,
    /// The failing layer and why, if any.
    pub missing: Option<(String, String)>,
    pub landlock_abi: i64,
    pub landlock: String,
    pub seccomp_denied: usize,
}

/// Start a real sandbox around `true` with the default profile and report which layers
/// this kernel provides. Landlock is required here, so a kernel without it fails.
pub async fn check(init: &InitProgram) -> CheckReport {
    let profile = Profile {
        require_landlock: true,
        ..Profile::default()
    };
    let abi = sys::landlock_abi();
    let result = spawn_inner(init, &["true".to_string()], &profile, None).await;
    match result {
        Ok((mut child, guard)) => {
            let status = child.wait().await;
            let ok = status.as_ref().is_ok_and(|s| s.success());
            CheckReport {
                ok,
                missing: if ok {
                    None
                } else {
                    Some((
                        Layer::Start.name().into(),
                        "`true` failed in the sandbox".into(),
                    ))
                },
                landlock_abi: guard.ready.landlock_abi,
                landlock: guard.ready.landlock.clone(),
                seccomp_denied: seccomp::DENIED.len(),
            }
        }
        Err(SandboxError::Layer { layer, reason }) => CheckReport {
            ok: false,
            missing: Some((layer.name().into(), reason)),
            landlock_abi: abi,
            landlock: String::new(),
            seccomp_denied: seccomp::DENIED.len(),
        },
    }
}
