//! Tests of `conductor hook claude-code --resident`: the resident gate answers what a
//! hook process deciding on its own answers, records every call, sees a changed
//! policy and a deleted audit store, refuses when it is reached but does not answer,
//! is replaced when it dies, ends when idle, and is not used from a directory other
//! users can enter.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::hook::{export, payload};
use crate::{Run, conductor_in, fixtures, workspace};

const AGENT: &str = "claude-code";

/// A private runtime directory for the gate's socket; stops every gate started under
/// it when dropped.
struct Runtime {
    dir: tempfile::TempDir,
}

impl Runtime {
    fn new() -> Runtime {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Runtime { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn sockets(&self) -> PathBuf {
        self.path().join("conductor-hook")
    }

    /// The pid of the running gate (from its lock file), once its socket is there.
    fn wait_for_gate(&self) -> u32 {
        let start = Instant::now();
        loop {
            if let Some(pid) = self.gate_pid()
                && self.has_socket()
            {
                return pid;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no resident gate started under {}",
                self.sockets().display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn gate_pid(&self) -> Option<u32> {
        let entries = std::fs::read_dir(self.sockets()).ok()?;
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "lock")
                && let Ok(text) = std::fs::read_to_string(e.path())
                && let Ok(pid) = text.trim().parse::<u32>()
                && alive(pid)
            {
                return Some(pid);
            }
        }
        None
    }

    fn has_socket(&self) -> bool {
        std::fs::read_dir(self.sockets()).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "sock"))
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        while let Some(pid) = self.gate_pid() {
            signal("-CONT", pid);
            signal("-KILL", pid);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

fn signal(sig: &str, pid: u32) {
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status();
}

/// `conductor hook claude-code` with `extra` options, the socket directory under `rt`.
fn hook_run(rt: &Runtime, audit: &Path, policy: &Path, extra: &[&str], stdin: &str) -> Run {
    let mut cmd = conductor_in(&fixtures());
    cmd.env("XDG_RUNTIME_DIR", rt.path())
        .args(["hook", "claude-code", "--policy"])
        .arg(policy)
        .args(["--agent", AGENT, "--audit"])
        .arg(audit)
        .args([
            "--no-dns",
            "--resolve",
            "docs.rs=18.154.227.66",
            "--resolve",
            "api.github.com=140.82.112.6",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        let _ = input.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

fn policy() -> PathBuf {
    workspace().join("examples/claude-code-policy.yaml")
}

fn decision(r: &Run) -> String {
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap_or_else(|_| panic!("{r:?}"));
    v["hookSpecificOutput"]["permissionDecision"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn the_resident_gate_answers_what_a_hook_process_answers_and_records_every_call() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("alone.db");
    let resident = dir.path().join("resident.db");
    let names = [
        "pre-webfetch-docs",
        "pre-bash-metadata",
        "pre-bash-secret",
        "pre-bash-test",
        "pre-read-aws",
        "pre-edit-outside",
        "pre-mcp-fetch-metadata",
        "post-read-plain",
        "pre-webfetch-docs",
        "post-read-secret",
        // Refused by flow now: the secret read above raised the session's labels.
        "pre-webfetch-docs",
    ];
    let mut pre = 0;
    for (i, name) in names.iter().enumerate() {
        let input = payload(name, "same");
        let a = hook_run(&rt, &alone, &policy(), &[], &input);
        let r = hook_run(&rt, &resident, &policy(), &["--resident"], &input);
        assert_eq!((r.code, &r.stdout), (a.code, &a.stdout), "{name}");
        if name.starts_with("pre-") {
            pre += 1;
        }
        if i == 0 {
            // The first call was decided in its own process and started the gate.
            rt.wait_for_gate();
        }
    }
    assert_eq!(
        decision(&hook_run(
            &rt,
            &resident,
            &policy(),
            &["--resident"],
            &payload("pre-webfetch-docs", "same")
        )),
        "deny"
    );
    pre += 1;
    let got = export(&resident);
    assert_eq!(got.len(), pre, "one record per decided call");
    let want = export(&alone);
    for (g, w) in got.iter().zip(want.iter()) {
        assert_eq!(
            (&g["tool"], &g["decision"], &g["reasons"]),
            (&w["tool"], &w["decision"], &w["reasons"])
        );
    }
}

#[test]
fn a_resident_gate_that_does_not_answer_refuses_the_call_and_a_dead_one_is_replaced() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let input = payload("pre-webfetch-docs", "s");
    let r = hook_run(&rt, &audit, &policy(), &["--resident"], &input);
    assert_eq!(decision(&r), "allow", "{r:?}");
    let pid = rt.wait_for_gate();
    // Stopped: the call reaches it and gets no answer. Deciding in process instead
    // would not wait; refusing is what proves the call went to the gate.
    signal("-STOP", pid);
    let r = hook_run(
        &rt,
        &audit,
        &policy(),
        &["--resident", "--resident-timeout", "1"],
        &input,
    );
    signal("-CONT", pid);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(decision(&r), "deny", "{r:?}");
    assert!(r.stderr.contains("resident gate did not answer"), "{r:?}");
    // Killed: its socket is left behind, nobody listens; the call is decided in
    // process and a new gate is started.
    signal("-KILL", pid);
    while alive(pid) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = hook_run(&rt, &audit, &policy(), &["--resident"], &input);
    assert_eq!(decision(&r), "allow", "{r:?}");
    let new = rt.wait_for_gate();
    assert_ne!(new, pid);
    let r = hook_run(&rt, &audit, &policy(), &["--resident"], &input);
    assert_eq!(decision(&r), "allow", "{r:?}");
}

#[test]
fn the_resident_gate_sees_a_changed_policy_and_a_deleted_audit_store() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let policy = dir.path().join("policy.yaml");
    let good = std::fs::read_to_string(self::policy()).unwrap();
    std::fs::write(&policy, &good).unwrap();
    let input = payload("pre-webfetch-docs", "s");
    let run = |extra: &[&str]| hook_run(&rt, &audit, &policy, extra, &input);
    assert_eq!(decision(&run(&["--resident"])), "allow");
    let first = rt.wait_for_gate();
    assert_eq!(decision(&run(&["--resident"])), "allow");
    // A broken policy: the next call is refused as a hook process would refuse it.
    std::fs::write(&policy, "version: 1\nagents: [").unwrap();
    let r = run(&["--resident"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("invalid policy"), "{r:?}");
    // Fixed again: allowed, by a new gate (the old one ended on the change).
    std::fs::write(&policy, &good).unwrap();
    assert_eq!(decision(&run(&["--resident"])), "allow");
    let second = rt.wait_for_gate();
    assert_ne!(first, second);
    assert_eq!(decision(&run(&["--resident"])), "allow");
    // The audit store deleted behind the gate's back: the next record goes into the
    // store at the path, not into the deleted file.
    for suffix in ["", "-wal", "-shm"] {
        let mut p = audit.as_os_str().to_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    assert_eq!(decision(&run(&["--resident"])), "allow");
    let got = export(&audit);
    assert_eq!(got.len(), 1, "{got:?}");
}

#[test]
fn garbage_sent_to_the_resident_gate_is_refused_with_the_blocking_status() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let r = hook_run(
        &rt,
        &audit,
        &policy(),
        &["--resident"],
        &payload("pre-read", "s"),
    );
    assert_eq!(r.code, 0, "{r:?}");
    rt.wait_for_gate();
    for input in [
        "",
        "not json",
        r#"{"hook_event_name":"PreToolUse","session_id":"s","tool_name":"Bash","tool_input":{"command":"ls","command":"curl 169.254.169.254"}}"#,
        r#"{"hook_event_name":"PermissionRequest","session_id":"s","tool_name":"Bash","tool_input":{}}"#,
    ] {
        let r = hook_run(&rt, &audit, &policy(), &["--resident"], input);
        assert_eq!(r.code, 2, "{input}: {r:?}");
        assert_eq!(decision(&r), "deny", "{input}: {r:?}");
        assert!(r.stderr.contains("refused"), "{r:?}");
    }
    // Still serving.
    assert!(rt.gate_pid().is_some());
    let r = hook_run(
        &rt,
        &audit,
        &policy(),
        &["--resident"],
        &payload("pre-read", "s"),
    );
    assert_eq!(decision(&r), "allow", "{r:?}");
}

#[test]
fn an_idle_resident_gate_ends_and_removes_its_socket() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let extra = ["--resident", "--resident-idle", "1"];
    let r = hook_run(&rt, &audit, &policy(), &extra, &payload("pre-read", "s"));
    assert_eq!(decision(&r), "allow", "{r:?}");
    let pid = rt.wait_for_gate();
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the gate did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!rt.has_socket());
}

#[test]
fn a_socket_directory_other_users_can_enter_is_not_used() {
    let rt = Runtime::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(rt.sockets()).unwrap();
    std::fs::set_permissions(rt.sockets(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let r = hook_run(
        &rt,
        &audit,
        &policy(),
        &["--resident"],
        &payload("pre-read", "s"),
    );
    // Decided in process, and no gate started there.
    assert_eq!(decision(&r), "allow", "{r:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read_dir(rt.sockets()).unwrap().count(), 0);
    assert_eq!(export(&audit).len(), 1);
}
