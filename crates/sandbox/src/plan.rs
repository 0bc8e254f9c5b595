//! The profile and the filesystem view it gives a server.
//!
//! Defaults (no profile needed for the reference servers): the system directories
//! read-only (`/usr`, `/bin`, `/lib*`, `/sbin`, a short list of `/etc` files — never
//! `/etc/shadow` or the rest of `/etc`), the server's own install read-only (the tree of
//! the command — a venv, a `node_modules`, a Python install its venv points at — and of
//! its `#!` interpreter, and the package of a script argument such as
//! `node …/dist/index.js`), a fresh `/proc` of its own pid namespace, a minimal `/dev`, a
//! private writable `/tmp` and an empty private home (so `~/.ssh`, `~/.aws` and the rest
//! of the user's files do not exist), `npx`/`npm` get `~/.npm` and `uvx`/`uv` their cache.
//! The profile adds paths read-only (`read`), read-write (`write`) and environment
//! variables passed through (`env`).
//!
//! INVARIANT: nothing outside this list is mounted in the sandbox's root.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::{InitConfig, Layer, Mount, MountKind, SandboxError, layer_error};

/// What a sandboxed server may see and receive beyond the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Paths visible read-only.
    pub read: Vec<PathBuf>,
    /// Paths visible read-write.
    pub write: Vec<PathBuf>,
    /// Environment variables passed through (by name; the value is this process's).
    pub env: Vec<String>,
    /// Environment variables set to these values (a gateway's `env:` for its server).
    pub vars: Vec<(String, String)>,
    /// Refuse to start when the kernel cannot enforce Landlock (default: Landlock is
    /// used where the kernel has it; the namespaces already build the view).
    pub require_landlock: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    version: u32,
    #[serde(default)]
    read: Vec<PathBuf>,
    #[serde(default)]
    write: Vec<PathBuf>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    require_landlock: bool,
}

impl Profile {
    /// Read a profile file (YAML, `version: 1`). Relative paths are relative to the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Profile, SandboxError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| layer_error(Layer::Profile, format!("cannot read `{shown}`: {e}")))?;
        let raw: RawProfile = serde_saphyr::from_str(&text)
            .map_err(|e| layer_error(Layer::Profile, format!("`{shown}`: {e}")))?;
        if raw.version != 1 {
            return Err(layer_error(
                Layer::Profile,
                format!("`{shown}`: unsupported version {}; expected 1", raw.version),
            ));
        }
        for name in &raw.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(layer_error(
                    Layer::Profile,
                    format!("`{shown}`: `{name}` is not an environment variable name"),
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(Profile {
            read: raw.read.into_iter().map(abs).collect(),
            write: raw.write.into_iter().map(abs).collect(),
            env: raw.env,
            vars: Vec::new(),
            require_landlock: raw.require_landlock,
        })
    }

    /// Add another profile's paths and names to this one.
    pub fn extend(&mut self, other: Profile) {
        self.read.extend(other.read);
        self.write.extend(other.write);
        self.env.extend(other.env);
        self.vars.extend(other.vars);
        self.require_landlock |= other.require_landlock;
    }
}

const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// The `/etc` entries a server may need (libraries, users, TLS roots, time zone). Not
/// `resolv.conf`: there is no DNS inside.
const ETC: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/protocols",
    "/etc/services",
    "/etc/python3",
];

const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

struct Builder {
    mounts: Vec<Mount>,
    targets: HashSet<PathBuf>,
}

impl Builder {
    fn covered(&self, p: &Path, kind: &MountKind) -> bool {
        self.mounts.iter().any(|m| {
            (m.kind == *kind || (*kind == MountKind::ReadOnly && m.kind == MountKind::ReadWrite))
                && p.starts_with(&m.target)
        })
    }

    fn add(&mut self, source: PathBuf, target: PathBuf, kind: MountKind) {
        if self.targets.contains(&target) {
            // A later, more specific entry wins only when it gives write access.
            if kind == MountKind::ReadWrite {
                for m in &mut self.mounts {
                    if m.target == target {
                        m.kind = MountKind::ReadWrite;
                    }
                }
            }
            return;
        }
        self.targets.insert(target.clone());
        self.mounts.push(Mount {
            source,
            target,
            kind,
        });
    }

    /// A host path made visible at the same place, unless an ancestor already is.
    fn path(&mut self, p: &Path, kind: MountKind) {
        if matches!(kind, MountKind::ReadOnly | MountKind::ReadWrite) && self.covered(p, &kind) {
            return;
        }
        match std::fs::symlink_metadata(p) {
            Ok(m)
                if m.file_type().is_symlink() && SYSTEM_DIRS.iter().any(|d| Path::new(d) == p) =>
            {
                if let Ok(to) = std::fs::read_link(p) {
                    self.add(PathBuf::new(), p.to_path_buf(), MountKind::Symlink { to });
                }
            }
            // The source is resolved here: inside, an absolute symlink would resolve
            // against the new root.
            Ok(_) => {
                let source = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
                self.add(source, p.to_path_buf(), kind)
            }
            Err(_) => {}
        }
    }
}

/// The directory tree a program belongs to: `…/x/bin/prog` → `…/x`, `node_modules/.bin/p`
/// → `node_modules`, else the program's directory.
fn install_root(p: &Path) -> Option<PathBuf> {
    let dir = p.parent()?;
    let name = dir.file_name()?;
    if name == "bin" || name == ".bin" || name == "sbin" {
        Some(dir.parent()?.to_path_buf())
    } else {
        Some(dir.to_path_buf())
    }
}

fn lexical_abs(p: &Path, cwd: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The `#!` interpreter of a script, resolved (`/usr/bin/env X` → X on `PATH`).
fn interpreter(p: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut f = std::fs::File::open(p).ok()?;
    let mut buf = [0u8; 256];
    let n = f.read(&mut buf).ok()?;
    let head = buf.get(..n)?;
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    let first = PathBuf::from(words.next()?);
    if first.file_name().is_some_and(|n| n == "env") {
        let mut next = words.next()?;
        if next == "-S" {
            next = words.next()?;
        }
        return find_in_path(next);
    }
    Some(first)
}

/// The filesystem view and environment of a sandboxed `command`.
pub(crate) fn plan(command: &[String], profile: &Profile) -> Result<InitConfig, SandboxError> {
    let Some((program, args)) = command.split_first() else {
        return Err(layer_error(Layer::Start, "no server command"));
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let resolved = if program.contains('/') {
        Some(lexical_abs(Path::new(program), &cwd))
    } else {
        find_in_path(program)
    };
    let Some(exe) = resolved.filter(|p| p.is_file()) else {
        return Err(layer_error(
            Layer::Start,
            format!("the server command `{program}` was not found"),
        ));
    };
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute() && h.as_os_str() != "/");

    let mut b = Builder {
        mounts: Vec::new(),
        targets: HashSet::new(),
    };
    for d in SYSTEM_DIRS {
        b.path(Path::new(d), MountKind::ReadOnly);
    }
    for e in ETC {
        b.path(Path::new(e), MountKind::ReadOnly);
    }
    b.add(PathBuf::new(), "/proc".into(), MountKind::Proc);
    b.add(PathBuf::new(), "/dev".into(), MountKind::Tmpfs);
    for d in DEVICES {
        if Path::new(d).exists() {
            b.add(PathBuf::from(d), PathBuf::from(d), MountKind::Device);
        }
    }
    b.add(PathBuf::new(), "/dev/shm".into(), MountKind::Tmpfs);
    for (link, to) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        b.add(
            PathBuf::new(),
            link.into(),
            MountKind::Symlink { to: to.into() },
        );
    }
    b.add(PathBuf::new(), "/tmp".into(), MountKind::Tmpfs);
    if let Some(h) = &home {
        b.add(PathBuf::new(), h.clone(), MountKind::Tmpfs);
    }

    // The server's own install: the command, what it really is, its interpreter.
    let mut programs = vec![exe.clone()];
    if let Ok(c) = exe.canonicalize() {
        programs.push(c);
    }
    if let Some(i) = interpreter(&exe) {
        if let Ok(c) = i.canonicalize() {
            programs.push(c);
        }
        programs.push(i);
    }
    let mut roots = Vec::new();
    for p in &programs {
        let Some(root) = install_root(p) else {
            continue;
        };
        // A program directly in a home or `~/.local/bin`: only the file, never the home.
        let too_wide = root == Path::new("/")
            || home
                .as_ref()
                .is_some_and(|h| root == *h || root == h.join(".local"));
        if too_wide {
            roots.push(p.clone());
            continue;
        }
        // A venv points at the Python it was made from.
        if let Ok(cfg) = std::fs::read_to_string(root.join("pyvenv.cfg")) {
            for line in cfg.lines() {
                if let Some(v) = line.strip_prefix("home") {
                    let v = v.trim_start().trim_start_matches('=').trim();
                    if let Some(r) = install_root(&Path::new(v).join("python3")) {
                        roots.push(r);
                    }
                }
            }
        }
        roots.push(root);
    }
    // A script named as an argument (`node …/dist/index.js`): its package.
    for a in args {
        let p = Path::new(a);
        let script = [".js", ".mjs", ".cjs", ".py", ".ts"]
            .iter()
            .any(|s| a.ends_with(s));
        if !script || !p.is_absolute() || !p.is_file() {
            continue;
        }
        let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let mut pkg = None;
        let mut acc = PathBuf::new();
        for c in p.components() {
            acc.push(c.as_os_str());
            if c.as_os_str() == "node_modules" {
                pkg = Some(acc.clone());
                break;
            }
        }
        if let Some(r) = pkg.or_else(|| p.parent().map(Path::to_path_buf)) {
            roots.push(r);
        }
    }
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(h) = &home {
        match name.as_str() {
            "npx" | "npm" => {
                let cache = h.join(".npm");
                let _ = std::fs::create_dir_all(&cache);
                b.path(&cache, MountKind::ReadWrite);
            }
            "uvx" | "uv" => {
                let cache = h.join(".cache/uv");
                let _ = std::fs::create_dir_all(&cache);
                b.path(&cache, MountKind::ReadWrite);
                b.path(&h.join(".local/share/uv"), MountKind::ReadOnly);
            }
            _ => {}
        }
    }
    // Profile paths must exist: a typo must not silently show less (or start anyway).
    let mut wanted: Vec<(PathBuf, MountKind)> = Vec::new();
    for r in roots {
        wanted.push((r, MountKind::ReadOnly));
    }
    for (list, kind) in [
        (&profile.read, MountKind::ReadOnly),
        (&profile.write, MountKind::ReadWrite),
    ] {
        for p in list {
            let abs = lexical_abs(p, &cwd);
            if !abs.exists() {
                return Err(layer_error(
                    Layer::Profile,
                    format!("the sandbox path `{}` does not exist", abs.display()),
                ));
            }
            wanted.push((abs.clone(), kind.clone()));
            if let Ok(c) = abs.canonicalize()
                && c != abs
            {
                wanted.push((c, kind.clone()));
            }
        }
    }
    // Parents before children, so a nested path is mounted on top of its parent.
    wanted.sort_by_key(|(p, _)| p.components().count());
    for (p, kind) in wanted {
        b.path(&p, kind);
    }
    let mut mounts = b.mounts;
    mounts.sort_by_key(|m| m.target.components().count());

    let mut landlock_read = Vec::new();
    let mut landlock_write = Vec::new();
    for m in &mounts {
        match m.kind {
            MountKind::ReadOnly => landlock_read.push(m.target.clone()),
            MountKind::ReadWrite | MountKind::Tmpfs if m.target != Path::new("/dev") => {
                landlock_write.push(m.target.clone());
            }
            _ => {}
        }
    }
    let visible = |p: &Path| {
        mounts.iter().any(|m| {
            // A private tmpfs (`/tmp`, the home) is empty inside: not the host's cwd.
            matches!(m.kind, MountKind::ReadOnly | MountKind::ReadWrite) && p.starts_with(&m.target)
        })
    };
    let inner_cwd = if visible(&cwd) {
        cwd.clone()
    } else {
        PathBuf::from("/")
    };

    let mut env: Vec<(String, String)> = Vec::new();
    let exe_dir = exe
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    env.push((
        "PATH".into(),
        format!("{exe_dir}:/usr/local/bin:/usr/bin:/bin"),
    ));
    env.push(("TMPDIR".into(), "/tmp".into()));
    if let Some(h) = &home {
        env.push(("HOME".into(), h.display().to_string()));
    }
    for name in ["LANG", "LC_ALL", "TZ"] {
        if let Ok(v) = std::env::var(name) {
            env.push((name.into(), v));
        }
    }
    for (name, value) in &profile.vars {
        env.retain(|(k, _)| k != name);
        env.push((name.clone(), value.clone()));
    }
    for name in &profile.env {
        if let Ok(v) = std::env::var(name)
            && !env.iter().any(|(k, _)| k == name)
        {
            env.push((name.clone(), v));
        }
    }
    Ok(InitConfig {
        program: exe,
        argv0: program.clone(),
        args: args.to_vec(),
        env,
        cwd: inner_cwd,
        mounts,
        landlock_read,
        landlock_write,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        require_landlock: profile.require_landlock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Profile, SandboxError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yaml");
        std::fs::write(&p, text).unwrap();
        Profile::load(&p).map(|mut prof| {
            // Relative paths are relative to the file: show them relative again.
            for r in prof.read.iter_mut().chain(prof.write.iter_mut()) {
                if let Ok(rel) = r.strip_prefix(dir.path()) {
                    *r = PathBuf::from("<dir>").join(rel);
                }
            }
            prof
        })
    }

    #[test]
    fn a_profile_file_adds_paths_and_names() {
        let p = load(
            "version: 1\nread: [/srv/data, rel]\nwrite: [/home/me/notes]\nenv: [GITHUB_TOKEN]\n",
        )
        .unwrap();
        assert_eq!(
            p.read,
            [PathBuf::from("/srv/data"), PathBuf::from("<dir>/rel")]
        );
        assert_eq!(p.write, [PathBuf::from("/home/me/notes")]);
        assert_eq!(p.env, ["GITHUB_TOKEN"]);
        assert!(!p.require_landlock);
    }

    #[test]
    fn a_profile_file_with_an_unknown_key_or_version_is_refused() {
        let e = load("version: 1\nreads: [/srv]\n").unwrap_err().to_string();
        assert!(e.contains("reads"), "{e}");
        let e = load("version: 2\n").unwrap_err().to_string();
        assert!(e.contains("unsupported version 2"), "{e}");
        let e = load("version: 1\nenv: [\"A=B\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an environment variable name"), "{e}");
    }

    #[test]
    fn a_listed_path_that_does_not_exist_stops_the_plan() {
        let prof = Profile {
            read: vec![PathBuf::from("/no/such/conductor/path")],
            ..Profile::default()
        };
        let e = plan(&["true".into()], &prof).unwrap_err().to_string();
        assert!(
            e.contains("(profile)") && e.contains("/no/such/conductor/path"),
            "{e}"
        );
    }

    #[test]
    fn the_view_never_includes_the_home_or_shadow() {
        let c = plan(&["true".into()], &Profile::default()).unwrap();
        for m in &c.mounts {
            assert_ne!(m.target, Path::new("/etc/shadow"));
            assert_ne!(m.target, Path::new("/etc"));
            if let Some(h) = std::env::var_os("HOME")
                && m.target == Path::new(&h)
            {
                assert_eq!(m.kind, MountKind::Tmpfs, "the home is private");
            }
        }
    }
}
