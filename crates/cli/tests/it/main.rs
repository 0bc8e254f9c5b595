//! Integration tests of the `conductor` binary (one test binary for the crate).

// Test helpers outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod approvals;
mod audit;
mod check;
mod console;
mod hook;
mod hook_resident;
mod init;
mod policy;
mod sandbox;
mod serve;
mod serve_conformance;
mod wrap;
mod wrap_faults;
mod wrap_go;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The crate's test fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The workspace root (where `examples/` lives).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `conductor` run from `dir`, with a fixed fingerprint key, no colour, and a data
/// directory that does not exist (so nothing reads or writes the user's).
pub fn conductor_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conductor"));
    cmd.current_dir(dir)
        .env(
            "CONDUCTOR_FINGERPRINT_KEY_FILE",
            fixtures().join("fingerprint.key"),
        )
        .env("NO_COLOR", "1")
        .env("XDG_DATA_HOME", fixtures().join("no-such-data-dir"))
        .env_remove("RUST_BACKTRACE");
    cmd
}

/// Run `conductor ARGS` in `dir` with `stdin` as standard input.
pub fn run_in(dir: &Path, args: &[&str], stdin: impl AsRef<[u8]>) -> Run {
    let mut child = conductor_in(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.as_ref().to_vec();
    // Write from a thread: the child may exit (or fill its stdout) before reading it all.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "the binary panicked: {}",
        run.stderr
    );
    run
}

/// Run `conductor ARGS` in the fixtures directory.
pub fn run(args: &[&str], stdin: impl AsRef<[u8]>) -> Run {
    run_in(&fixtures(), args, stdin)
}

/// Replace what changes between machines and policy edits: `sha256:<hex>` and
/// `hmac-sha256:<hex>` digests become `sha256:[hash]`, and the fixture and
/// workspace directories become `[fixtures]` and `[workspace]`.
pub fn redact(text: &str) -> String {
    let mut text = text.replace(&fixtures().display().to_string(), "[fixtures]");
    let ws = workspace();
    if let Ok(canonical) = ws.canonicalize() {
        text = text.replace(&canonical.display().to_string(), "[workspace]");
    }
    text = text.replace(&ws.display().to_string(), "[workspace]");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("sha256:") {
        let (head, tail) = rest.split_at(i + "sha256:".len());
        out.push_str(head);
        let hex = tail
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(tail.len());
        if hex >= 16 {
            out.push_str("[hash]");
        }
        rest = &tail[hex..];
    }
    out.push_str(rest);
    out
}

/// Snapshot assertion storing snapshots in `crates/cli/tests/snapshots/`.
#[macro_export]
macro_rules! snap {
    ($name:expr, $value:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("../snapshots");
        settings.set_prepend_module_to_snapshot(false);
        settings.bind(|| insta::assert_snapshot!($name, $value));
    }};
}
