//! `hook claude-code --resident`: one gate kept running between hook processes.
//!
//! Claude Code starts the hook once per tool call. Loading and compiling the policy,
//! opening the audit and session stores and building the detectors in every process
//! costs more than the decision itself. With `--resident` the hook process hands its
//! input to a resident gate over a private Unix socket and prints the answer it gets;
//! when none is running it decides in its own process, exactly as without the flag,
//! and then starts one for the next calls. The resident gate ends after
//! `--resident-idle` seconds without a call.
//!
//! INVARIANTS
//! - The same answer as in process: the resident gate runs the same code
//!   ([`hook_cmd::parse_checked`], [`hook_cmd::decide_input`]) over a service built by
//!   the same function ([`hook_cmd::build_service`]). It serves only hook processes
//!   whose binary, command line, working directory and relevant environment are its own
//!   (their digest names the socket), and before each call it checks that the policy
//!   file, the files the policy references, the fingerprint key and the audit store are
//!   still the ones it loaded (device, inode, size, modification and change times; the
//!   audit store by device and inode). When any changed it answers `stale` and ends;
//!   the hook then decides in process, reading everything afresh, and starts a new one.
//! - Fail closed: no socket, or a connection refused, means deciding in process. A
//!   resident gate that was reached but does not answer within `--resident-timeout`,
//!   or answers something unreadable, means a blocking deny — never an allow.
//! - Private: the socket lives in a directory owned by the user with mode 0700
//!   (checked without following a symbolic link before every use); each end checks
//!   the other's uid (`SO_PEERCRED`).
//! - Nothing accepted is lost: the gate ends by removing its socket first (new hook
//!   processes decide in process from then on), then answering every connection
//!   already queued and waiting for the calls in flight.
//!
//! Wire format (one request per connection): the hook sends `CH1\n`, a big-endian
//! `u32` length and the hook input; the gate answers one status byte (`0` answered,
//! `1` stale), the exit status, then the answer JSON and the stderr line, each after a
//! big-endian `u32` length.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conductor_gate::Service;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::hook_cmd::{self, ClaudeCodeArgs, Lifetime, MAX_INPUT_BYTES, Outcome};

/// The argument that makes a hook process the resident gate.
const SERVE_FLAG: &str = "--resident-serve";

/// The option only the asking process reads (how long it waits), with and without
/// its value attached.
const TIMEOUT_FLAG: &str = "--resident-timeout";
const TIMEOUT_FLAG_EQ: &str = "--resident-timeout=";

/// The request's first bytes.
const MAGIC: &[u8; 4] = b"CH1\n";

/// Status byte: answered.
const ANSWERED: u8 = 0;
/// Status byte: what the gate loaded changed; decide in process.
const STALE: u8 = 1;

/// The environment variables a hook call's answer depends on (the fingerprint key's
/// file, the default audit store's directory, the socket's directory).
const ENV: &[&str] = &[
    conductor_gate::key::KEY_FILE_ENV,
    "XDG_DATA_HOME",
    "HOME",
    "XDG_RUNTIME_DIR",
    "TMPDIR",
];

/// How long a new gate waits for the one before it to end (it may be answering the
/// last calls queued to it).
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// How long the gate waits for a connected hook to send its input.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer a hook accepts (the answer quotes no input, so it is small).
const MAX_ANSWER_BYTES: u32 = 4 * 1024 * 1024;

/// What asking the resident gate gave.
#[derive(Debug)]
pub(crate) enum Asked {
    /// The gate's answer, to print as it is.
    Answered(Outcome),
    /// The gate was reached and failed to answer: refuse the call.
    Refused(String),
    /// No gate to ask (or it is ending): decide in process; `start` says whether to
    /// start one afterwards.
    Absent { start: bool },
}

/// The directory of the sockets: `$XDG_RUNTIME_DIR/conductor-hook`, else
/// `$TMPDIR/conductor-hook-<uid>`, created with mode 0700. `None` when it is not a
/// directory of this user that only this user can enter.
fn socket_dir() -> Option<PathBuf> {
    let uid = rustix::process::geteuid().as_raw();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("conductor-hook"),
        None => std::env::temp_dir().join(format!("conductor-hook-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let m = std::fs::symlink_metadata(&dir).ok()?;
    (m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0).then_some(dir)
}

/// Feed `bytes` to `h` after their length, so that no two sequences collide.
fn feed(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The digest naming the gate a hook process may ask: this binary (path and file
/// identity), the working directory, the command line (without [`SERVE_FLAG`]) and
/// the variables of [`ENV`]; `--resident-timeout` aside, which only the asking process
/// reads. Nothing secret goes in: the command line holds paths and
/// names, the variables paths.
fn identity(args: impl Iterator<Item = OsString>) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let m = std::fs::metadata(&exe).ok()?;
    let cwd = std::env::current_dir().ok()?;
    let mut h = Sha256::new();
    feed(&mut h, b"conductor hook resident 1");
    feed(&mut h, exe.as_os_str().as_bytes());
    for n in [
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
    ] {
        h.update(n.to_be_bytes());
    }
    feed(&mut h, cwd.as_os_str().as_bytes());
    let mut args = args.skip(1);
    while let Some(a) = args.next() {
        // What only the asking process reads does not name the gate.
        if a == SERVE_FLAG || a.as_bytes().starts_with(TIMEOUT_FLAG_EQ.as_bytes()) {
            continue;
        }
        if a == TIMEOUT_FLAG {
            args.next();
            continue;
        }
        feed(&mut h, a.as_bytes());
    }
    for name in ENV {
        feed(&mut h, name.as_bytes());
        match std::env::var_os(name) {
            Some(v) => {
                h.update([1]);
                feed(&mut h, v.as_bytes());
            }
            None => h.update([0]),
        }
    }
    let digest = h.finalize();
    Some(hex::encode(digest.get(..16)?))
}

/// Where the gate for this hook process listens, and its lock file.
fn endpoint() -> Option<(PathBuf, PathBuf)> {
    let dir = socket_dir()?;
    let id = identity(std::env::args_os())?;
    Some((
        dir.join(format!("{id}.sock")),
        dir.join(format!("{id}.lock")),
    ))
}

/// Whether the other end of `s` runs as this user.
fn same_user(s: &UnixStream) -> bool {
    rustix::net::sockopt::socket_peercred(s)
        .is_ok_and(|c| c.uid.as_raw() == rustix::process::geteuid().as_raw())
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_bytes(r: &mut impl Read, limit: u32) -> io::Result<Vec<u8>> {
    let n = read_u32(r)?;
    if n > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too long"));
    }
    let mut v = vec![0u8; n as usize];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn write_bytes(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let n = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "too long"))?;
    w.write_all(&n.to_be_bytes())?;
    w.write_all(bytes)
}

/// Ask the resident gate to answer `input`.
pub(crate) fn ask(args: &ClaudeCodeArgs, input: &[u8]) -> Asked {
    let Some((sock, _)) = endpoint() else {
        return Asked::Absent { start: false };
    };
    let Ok(mut s) = UnixStream::connect(&sock) else {
        return Asked::Absent { start: true };
    };
    if !same_user(&s) {
        return Asked::Refused("the resident gate's socket is held by another user".into());
    }
    let timeout = Duration::from_secs(args.resident_timeout.max(1));
    let _ = s.set_write_timeout(Some(timeout));
    let _ = s.set_read_timeout(Some(timeout));
    let sent = s
        .write_all(MAGIC)
        .and_then(|()| write_bytes(&mut s, input))
        .and_then(|()| s.flush());
    if let Err(e) = sent {
        return Asked::Refused(format!(
            "the resident gate did not take the call ({})",
            crate::io_reason(&e)
        ));
    }
    match read_answer(&mut s) {
        Ok(Some(out)) => Asked::Answered(out),
        Ok(None) => Asked::Absent { start: true },
        Err(e) => Asked::Refused(format!(
            "the resident gate did not answer ({})",
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut {
                format!("no answer within {} s", timeout.as_secs())
            } else {
                crate::io_reason(&e)
            }
        )),
    }
}

/// The gate's answer; `None` for `stale`.
fn read_answer(s: &mut UnixStream) -> io::Result<Option<Outcome>> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head)?;
    let [status, code] = head;
    if status == STALE {
        return Ok(None);
    }
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if status != ANSWERED {
        return Err(bad("an unknown status"));
    }
    let answer = read_bytes(s, MAX_ANSWER_BYTES)?;
    let warning = read_bytes(s, MAX_ANSWER_BYTES)?;
    let answer: Value =
        serde_json::from_slice(&answer).map_err(|_| bad("an answer that is not JSON"))?;
    if !answer.is_object() {
        return Err(bad("an answer that is not a JSON object"));
    }
    let warning = if warning.is_empty() {
        None
    } else {
        Some(String::from_utf8(warning).map_err(|_| bad("a warning that is not UTF-8"))?)
    };
    Ok(Some(Outcome {
        answer,
        code,
        warning,
    }))
}

/// Start a resident gate for the next calls (detached: no standard streams of ours,
/// its own process group, not waited for).
pub(crate) fn start() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .arg(SERVE_FLAG)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    // Not waited for: it outlives this process and is adopted when this one ends.
    let _ = cmd.spawn();
}

/// What identifies a version of a file; `None` when it does not exist.
type Stamp = Option<[i64; 7]>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some([
        m.dev() as i64,
        m.ino() as i64,
        m.size() as i64,
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ])
}

/// What the gate loaded, to compare before each call.
#[derive(Debug, PartialEq, Eq)]
struct Loaded {
    policy: Stamp,
    referenced: Vec<Stamp>,
    key: Stamp,
    /// Device and inode only: every commit changes the rest.
    audit: Option<(u64, u64)>,
}

struct Sources {
    policy: PathBuf,
    referenced: Vec<PathBuf>,
    key: Option<PathBuf>,
    audit: PathBuf,
}

impl Sources {
    fn now(&self) -> Loaded {
        Loaded {
            policy: stamp(&self.policy),
            referenced: self.referenced.iter().map(|p| stamp(p)).collect(),
            key: self.key.as_deref().and_then(stamp),
            audit: std::fs::metadata(&self.audit)
                .ok()
                .map(|m| (m.dev(), m.ino())),
        }
    }
}

/// Shared by the connections.
struct Gate {
    args: ClaudeCodeArgs,
    service: Service,
    sources: Sources,
    loaded: Loaded,
    /// Set when the gate must end (what it loaded changed).
    ending: AtomicBool,
    in_flight: AtomicUsize,
}

/// Run as the resident gate until idle; the exit status is not read by anyone.
pub(crate) fn serve(args: &ClaudeCodeArgs) -> u8 {
    let Some((sock, lock_path)) = endpoint() else {
        return crate::exit::OK;
    };
    let Ok(lock) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
    else {
        return crate::exit::OK;
    };
    // One gate per endpoint: a second one ends at once (after waiting briefly for one
    // that is ending).
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return crate::exit::OK,
        }
    }
    let _ = lock.set_len(0);
    let _ = (&lock).write_all(format!("{}\n", std::process::id()).as_bytes());

    let Ok((gate, listener)) = open_gate(args, &sock) else {
        return crate::exit::OK;
    };
    let gate = Arc::new(gate);
    let bound = std::fs::symlink_metadata(&sock)
        .map(|m| (m.dev(), m.ino()))
        .ok();
    let idle = Duration::from_secs(args.resident_idle.max(1));
    let mut last = Instant::now();
    loop {
        if gate.ending.load(Ordering::SeqCst) {
            break;
        }
        let busy = gate.in_flight.load(Ordering::SeqCst) > 0;
        if busy {
            last = Instant::now();
        }
        let left = idle.saturating_sub(last.elapsed());
        if left.is_zero() {
            break;
        }
        let wait = rustix::event::Timespec::try_from(left.min(Duration::from_secs(1))).unwrap_or(
            rustix::event::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
        );
        let mut fds = [rustix::event::PollFd::new(
            &listener,
            rustix::event::PollFlags::IN,
        )];
        let _ = rustix::event::poll(&mut fds, Some(&wait));
        if accept_all(&gate, &listener) {
            last = Instant::now();
        }
    }
    // INVARIANT: the socket goes first, so that no new call can reach a gate that is
    // ending; then what is already queued is answered.
    if bound.is_some()
        && std::fs::symlink_metadata(&sock)
            .map(|m| (m.dev(), m.ino()))
            .ok()
            == bound
    {
        let _ = std::fs::remove_file(&sock);
    }
    accept_all(&gate, &listener);
    while gate.in_flight.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(listener);
    // The stores close here (the audit store checkpoints its log).
    drop(gate);
    crate::exit::OK
}

/// Load what a hook process would, and listen.
fn open_gate(args: &ClaudeCodeArgs, sock: &Path) -> Result<(Gate, UnixListener), ()> {
    let key = conductor_gate::key::fingerprint_key_path()
        .ok()
        .map(|(p, _)| p);
    let before = (stamp(&args.policy), key.as_deref().and_then(stamp));
    let (service, audit) = hook_cmd::build_service(args, Lifetime::Resident).map_err(|_| ())?;
    let sources = Sources {
        policy: args.policy.clone(),
        referenced: service.policy().referenced_files().to_vec(),
        key,
        audit,
    };
    let loaded = sources.now();
    // Changed while it was being loaded: what was loaded may be either version.
    if (loaded.policy, loaded.key) != before || loaded.audit.is_none() {
        return Err(());
    }
    match std::fs::remove_file(sock) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => return Err(()),
    }
    let listener = UnixListener::bind(sock).map_err(|_| ())?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600)).map_err(|_| ())?;
    }
    listener.set_nonblocking(true).map_err(|_| ())?;
    Ok((
        Gate {
            args: args.clone(),
            service,
            sources,
            loaded,
            ending: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        },
        listener,
    ))
}

/// Accept every queued connection, each answered on its own thread; whether any was.
fn accept_all(gate: &Arc<Gate>, listener: &UnixListener) -> bool {
    let mut any = false;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                any = true;
                gate.in_flight.fetch_add(1, Ordering::SeqCst);
                let g = Arc::clone(gate);
                let spawned =
                    std::thread::Builder::new()
                        .name("hook-call".into())
                        .spawn(move || {
                            answer(&g, s);
                            g.in_flight.fetch_sub(1, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    // The stream went with the closure: the hook sees no answer and
                    // refuses the call.
                    gate.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return any,
        }
    }
}

/// Answer one connection.
fn answer(gate: &Gate, mut s: UnixStream) {
    if !same_user(&s) {
        return;
    }
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let _ = s.set_write_timeout(Some(READ_TIMEOUT));
    let mut magic = [0u8; 4];
    if s.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return;
    }
    let limit = u32::try_from(MAX_INPUT_BYTES).unwrap_or(u32::MAX);
    let Ok(input) = read_bytes(&mut s, limit) else {
        return;
    };
    if gate.ending.load(Ordering::SeqCst) || gate.sources.now() != gate.loaded {
        gate.ending.store(true, Ordering::SeqCst);
        let _ = s.write_all(&[STALE, 0]);
        return;
    }
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || match hook_cmd::parse_checked(&input) {
            Ok(i) => hook_cmd::decide_input(&gate.args, &gate.service, i).0,
            Err(message) => Outcome::refused(&message),
        },
    ))
    .unwrap_or_else(|_| Outcome::internal());
    let answer = out.answer.to_string();
    let warning = out.warning.unwrap_or_default();
    let mut buf = Vec::with_capacity(answer.len() + warning.len() + 10);
    buf.extend_from_slice(&[ANSWERED, out.code]);
    let _ = write_bytes(&mut buf, answer.as_bytes());
    let _ = write_bytes(&mut buf, warning.as_bytes());
    let _ = s.write_all(&buf);
}
