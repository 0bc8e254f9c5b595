//! The inside: what the sandbox init does after the parent started it.
//!
//! Stage 1 (started by the parent, fd 3 = the control channel) creates the user and pid
//! namespaces and forks; the child is pid 1 of the new pid namespace. Pid 1 creates the
//! mount, network, IPC and UTS namespaces, builds the private root, brings up loopback,
//! binds the proxy listener, drops every capability, sets `no_new_privs`, enforces
//! Landlock and seccomp, hands the listener to the parent, starts the server and reaps
//! until the server exits.
//!
//! INVARIANT (fail closed): every layer either succeeds or the init reports
//! `{layer, reason}` on the control channel and exits without starting the server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::sys;
use crate::{InitConfig, Layer, MountKind, Ready, Reply};

/// Where a failure happened, to report and exit.
struct Failure {
    layer: Layer,
    reason: String,
}

fn fail(layer: Layer) -> impl Fn(std::io::Error) -> Failure {
    move |e| Failure {
        layer,
        reason: reason(&e),
    }
}

fn reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_lowercase()
}

/// The entry point of the hidden init (`conductor __sandbox-init`, or the
/// `conductor-sandbox-init` helper). Never returns.
pub fn main() -> ! {
    // fd 3 was placed there by `sys::pass_fd_as_3` in the parent.
    let Some(control) = adopt_control() else {
        let _ = writeln!(
            std::io::stderr(),
            "conductor: the sandbox init runs only when conductor starts it"
        );
        std::process::exit(70);
    };
    let code = match stage1(&control) {
        Ok(code) => code,
        Err(f) => {
            report(
                &control,
                &Reply::Err {
                    layer: f.layer,
                    reason: f.reason,
                },
                None,
            );
            1
        }
    };
    std::process::exit(code)
}

fn adopt_control() -> Option<UnixStream> {
    let fd = sys::take_fd3()?;
    // From here on the control channel is close-on-exec: the server never inherits it.
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).ok()?;
    Some(UnixStream::from(fd))
}

fn report(control: &UnixStream, reply: &Reply, fd: Option<&OwnedFd>) {
    let Ok(mut text) = serde_json::to_vec(reply) else {
        return;
    };
    text.push(b'\n');
    let _ = crate::fdpass::send(control, &text, fd.map(|f| f.as_fd()));
}

fn read_config(control: &UnixStream) -> Result<InitConfig, Failure> {
    let bad = |r: String| Failure {
        layer: Layer::Init,
        reason: r,
    };
    let mut c = control;
    let mut len = [0u8; 4];
    c.read_exact(&mut len).map_err(|e| bad(reason(&e)))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 16 << 20 {
        return Err(bad("the configuration is too large".into()));
    }
    let mut buf = vec![0u8; len];
    c.read_exact(&mut buf).map_err(|e| bad(reason(&e)))?;
    serde_json::from_slice(&buf).map_err(|e| bad(format!("unreadable configuration: {e}")))
}

fn stage1(control: &UnixStream) -> Result<i32, Failure> {
    let config = read_config(control)?;
    let parent = std::os::unix::process::parent_id();
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| fail(Layer::Init)(e.into()))?;
    if std::os::unix::process::parent_id() != parent {
        return Err(Failure {
            layer: Layer::Init,
            reason: "conductor exited while the sandbox started".into(),
        });
    }
    sys::unshare_namespaces(libc::CLONE_NEWUSER | libc::CLONE_NEWPID)
        .map_err(fail(Layer::UserNamespace))?;
    std::fs::write("/proc/self/setgroups", "deny").map_err(fail(Layer::UserNamespace))?;
    std::fs::write("/proc/self/uid_map", format!("{0} {0} 1\n", config.uid))
        .map_err(fail(Layer::UserNamespace))?;
    std::fs::write("/proc/self/gid_map", format!("{0} {0} 1\n", config.gid))
        .map_err(fail(Layer::UserNamespace))?;
    match sys::fork().map_err(fail(Layer::PidNamespace))? {
        sys::Fork::Child => {
            let code = match pid1(control, &config) {
                Ok(code) => code,
                Err(f) => {
                    report(
                        control,
                        &Reply::Err {
                            layer: f.layer,
                            reason: f.reason,
                        },
                        None,
                    );
                    1
                }
            };
            std::process::exit(code)
        }
        sys::Fork::Parent(child) => Ok(wait_for(child)),
    }
}

/// Wait for `pid`, reaping every other child on the way; its exit status as a code.
fn wait_for(pid: i32) -> i32 {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((p, status))) if p.as_raw_nonzero().get() == pid => {
                if let Some(c) = status.exit_status() {
                    return c;
                }
                if let Some(s) = status.terminating_signal() {
                    return 128 + s;
                }
                return 1;
            }
            Ok(_) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return 1,
        }
    }
}

fn pid1(control: &UnixStream, config: &InitConfig) -> Result<i32, Failure> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| fail(Layer::Init)(e.into()))?;
    rustix::process::setsid().map_err(|e| fail(Layer::Session)(e.into()))?;
    sys::unshare_namespaces(
        libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS,
    )
    .map_err(fail(Layer::MountNamespace))?;
    let _ = rustix::system::sethostname(b"sandbox");
    build_root(config)?;
    sys::loopback_up().map_err(fail(Layer::Network))?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(fail(Layer::Network))?;
    let port = listener.local_addr().map_err(fail(Layer::Network))?.port();
    drop_capabilities()?;
    // INVARIANT: the server (same uid, same pid namespace) cannot open pid 1's
    // `/proc/1/mem` or attach to it: pid 1 is not dumpable (the server, a new exec, is).
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| fail(Layer::Capabilities)(e.into()))?;
    rustix::thread::set_no_new_privs(true).map_err(|e| fail(Layer::NoNewPrivs)(e.into()))?;
    let landlock = apply_landlock(config, port)?;
    sys::install_seccomp(&crate::seccomp::program()).map_err(fail(Layer::Seccomp))?;

    let mut command = std::process::Command::new(&config.program);
    command
        .arg0(&config.argv0)
        .args(&config.args)
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&config.cwd);
    let proxy = format!("http://127.0.0.1:{port}");
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env(name, &proxy);
    }
    command.env("NO_PROXY", "").env("no_proxy", "");
    // Node's built-in `fetch` honours the proxy variables only when told to (Node 22.21+
    // and 24.5+); older Node ignores them, and its direct connections go nowhere.
    command.env("NODE_USE_ENV_PROXY", "1");
    let listener_fd = OwnedFd::from(listener);
    let server = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Err(Failure {
                layer: Layer::Start,
                reason: format!(
                    "cannot start `{}`: {}",
                    config.program.display(),
                    reason(&e)
                ),
            });
        }
    };
    report(
        control,
        &Reply::Ok(Ready {
            port,
            landlock_abi: sys::landlock_abi(),
            landlock,
        }),
        Some(&listener_fd),
    );
    drop(listener_fd);
    Ok(wait_for(i32::try_from(server.id()).unwrap_or(-1)))
}

use std::os::unix::process::CommandExt;

fn drop_capabilities() -> Result<(), Failure> {
    let f = |e: rustix::io::Errno| fail(Layer::Capabilities)(e.into());
    for cap in 0..=63u32 {
        // Capabilities beyond the kernel's last one fail with EINVAL: stop there.
        match rustix::thread::remove_capability_from_bounding_set(
            rustix::thread::CapabilitySet::from_bits_retain(1u64 << cap),
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => return Err(f(e)),
        }
    }
    rustix::thread::clear_ambient_capability_set().map_err(f)?;
    rustix::thread::set_capabilities(
        None,
        rustix::thread::CapabilitySets {
            effective: rustix::thread::CapabilitySet::empty(),
            permitted: rustix::thread::CapabilitySet::empty(),
            inheritable: rustix::thread::CapabilitySet::empty(),
        },
    )
    .map_err(f)?;
    Ok(())
}

/// Build the private root and move into it.
///
/// INVARIANT: only what `config.mounts` names (plus a fresh /dev, /proc and /tmp) is
/// visible after this; the host's root is detached.
fn build_root(config: &InitConfig) -> Result<(), Failure> {
    use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
    let fs = |e: rustix::io::Errno| fail(Layer::Filesystem)(e.into());
    let fsio = fail(Layer::Filesystem);
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(fs)?;
    // A tmpfs on /tmp becomes the new root; the old root moves to /oldroot below it.
    let base = Path::new("/tmp");
    rustix::mount::mount(
        "tmpfs",
        base,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=0755"),
    )
    .map_err(fs)?;
    std::env::set_current_dir(base).map_err(&fsio)?;
    std::fs::create_dir("newroot").map_err(&fsio)?;
    std::fs::create_dir("oldroot").map_err(&fsio)?;
    rustix::process::pivot_root(".", "oldroot").map_err(fs)?;
    // Now "/" is the tmpfs, the host is at /oldroot, the sandbox's root at /newroot.
    rustix::mount::mount_bind("/newroot", "/newroot").map_err(fs)?;
    let new = Path::new("/newroot");
    let old = Path::new("/oldroot");
    for m in &config.mounts {
        let target = new.join(m.target.strip_prefix("/").unwrap_or(&m.target));
        let why = |e: std::io::Error| Failure {
            layer: Layer::Filesystem,
            reason: format!("cannot mount `{}`: {}", m.target.display(), reason(&e)),
        };
        match &m.kind {
            MountKind::Symlink { to } => {
                if let Some(dir) = target.parent() {
                    std::fs::create_dir_all(dir).map_err(why)?;
                }
                std::os::unix::fs::symlink(to, &target).map_err(why)?;
            }
            MountKind::Tmpfs => {
                std::fs::create_dir_all(&target).map_err(why)?;
                rustix::mount::mount(
                    "tmpfs",
                    &target,
                    "tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    Some(c"mode=1777"),
                )
                .map_err(|e| why(e.into()))?;
            }
            MountKind::Proc => {
                std::fs::create_dir_all(&target).map_err(why)?;
                rustix::mount::mount(
                    "proc",
                    &target,
                    "proc",
                    MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                    None,
                )
                .map_err(|e| why(e.into()))?;
                // The kernel knobs stay read-only.
                for sub in ["sys", "sysrq-trigger", "irq", "bus"] {
                    let p = target.join(sub);
                    if p.exists() {
                        rustix::mount::mount_bind(&p, &p).map_err(|e| why(e.into()))?;
                        sys::mount_setattr(
                            &p,
                            sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
                            true,
                        )
                        .map_err(why)?;
                    }
                }
            }
            MountKind::ReadOnly | MountKind::ReadWrite | MountKind::Device => {
                let source = old.join(m.source.strip_prefix("/").unwrap_or(&m.source));
                let meta = std::fs::metadata(&source).map_err(why)?;
                if meta.is_dir() {
                    std::fs::create_dir_all(&target).map_err(why)?;
                } else {
                    if let Some(dir) = target.parent() {
                        std::fs::create_dir_all(dir).map_err(why)?;
                    }
                    if !target.exists() {
                        std::fs::File::create(&target).map_err(why)?;
                    }
                }
                rustix::mount::mount_bind_recursive(&source, &target).map_err(|e| why(e.into()))?;
                let attrs = match m.kind {
                    MountKind::ReadOnly => {
                        sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV
                    }
                    MountKind::Device => sys::MOUNT_ATTR_NOSUID,
                    _ => sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
                };
                sys::mount_setattr(&target, attrs, true).map_err(why)?;
            }
        }
    }
    rustix::mount::unmount("/oldroot", UnmountFlags::DETACH).map_err(fs)?;
    std::env::set_current_dir(new).map_err(&fsio)?;
    rustix::process::pivot_root(".", ".").map_err(fs)?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(fs)?;
    std::env::set_current_dir("/").map_err(&fsio)?;
    // The skeleton (directories created for mount points) is read-only.
    sys::mount_setattr(
        Path::new("/"),
        sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
        false,
    )
    .map_err(&fsio)?;
    Ok(())
}

/// Enforce Landlock (best effort: the kernel's ABI decides how much). Returns how much
/// was enforced, for the report.
fn apply_landlock(config: &InitConfig, port: u16) -> Result<String, Failure> {
    let f = |e: landlock::RulesetError| Failure {
        layer: Layer::Landlock,
        reason: e.to_string().to_lowercase(),
    };
    if sys::landlock_abi() == 0 {
        if config.require_landlock {
            return Err(Failure {
                layer: Layer::Landlock,
                reason: "the kernel does not provide landlock".into(),
            });
        }
        return Ok("not available".into());
    }
    let abi = ABI::V6;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(f)?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
        .map_err(f)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(f)?
        .create()
        .map_err(f)?;
    let mut rules: Vec<(&Path, landlock::BitFlags<AccessFs>)> = Vec::new();
    // Listing directories anywhere is harmless: only mounted paths exist.
    rules.push((Path::new("/"), AccessFs::ReadDir.into()));
    for p in &config.landlock_read {
        rules.push((p, read));
    }
    for p in &config.landlock_write {
        rules.push((p, all));
    }
    rules.push((Path::new("/proc"), read | AccessFs::WriteFile));
    for dev in [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
    ] {
        rules.push((
            Path::new(dev),
            AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev,
        ));
    }
    for (path, access) in rules {
        let Ok(fd) = PathFd::new(path) else {
            continue;
        };
        let access = if std::fs::metadata(path).is_ok_and(|m| !m.is_dir()) {
            access & AccessFs::from_file(abi)
        } else {
            access
        };
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).map_err(f)?;
    }
    ruleset = ruleset
        .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
        .map_err(f)?;
    let status = ruleset.restrict_self().map_err(f)?;
    let what = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced",
        RulesetStatus::NotEnforced => "not enforced",
    };
    if config.require_landlock && status.ruleset == RulesetStatus::NotEnforced {
        return Err(Failure {
            layer: Layer::Landlock,
            reason: "the ruleset could not be enforced".into(),
        });
    }
    Ok(what.into())
}
