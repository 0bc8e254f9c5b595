//! `conductor wrap` as a process: exit statuses, crash of the server, audit store
//! failures, EOF and SIGTERM. The server is `tests/fixtures/wrap/fake_server.py`
//! (python3); the relay's message-level behaviour is tested in `crates/mcp/tests/it`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use conductor_audit::AuditReader;
use serde_json::{Value, json};

use crate::{conductor_in, fixtures};

fn fake() -> PathBuf {
    fixtures().join("wrap/fake_server.py")
}

fn policy() -> PathBuf {
    fixtures().join("wrap/policy.yaml")
}

fn spawn(dir: &Path, audit: &Path, log: &Path) -> Child {
    conductor_in(dir)
        .env("FAKE_LOG", log)
        .arg("wrap")
        .arg("--policy")
        .arg(policy())
        .args(["--agent", "research-bot", "--server", "fake", "--no-dns"])
        .arg("--audit")
        .arg(audit)
        .arg("--")
        .arg("python3")
        .arg(fake())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn line(v: Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(&v).unwrap();
    b.push(b'\n');
    b
}

fn call(id: u64, name: &str) -> Vec<u8> {
    line(
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{}}}),
    )
}

fn records(audit: &Path) -> Vec<conductor_audit::Record> {
    AuditReader::open(audit).unwrap().last(100).unwrap()
}

#[test]
fn server_crash_mid_call_answers_the_call_and_exits_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, log) = (dir.path().join("a.db"), dir.path().join("log"));
    let mut child = spawn(dir.path(), &audit, &log);
    let mut input = child.stdin.take().unwrap();
    input.write_all(&call(1, "echo")).unwrap();
    input.write_all(&call(2, "crash")).unwrap(); // the server exits 3 without answering
    input.flush().unwrap();
    let out = child.wait_with_output().unwrap();
    drop(input);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(answers[1]["error"]["code"], -32000);
    // Both calls were decided and recorded before they were forwarded.
    assert_eq!(records(&audit).len(), 2);
}

#[test]
fn unusable_audit_store_refuses_to_start_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the store's file should be.
    let audit = dir.path().join("store");
    std::fs::create_dir(&audit).unwrap();
    let log = dir.path().join("log");
    let child = spawn(dir.path(), &audit, &log);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(!log.exists(), "the server must not have been started");
}

#[test]
fn eof_closes_the_server_and_flushes_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, log) = (dir.path().join("a.db"), dir.path().join("log"));
    let mut child = spawn(dir.path(), &audit, &log);
    let mut input = child.stdin.take().unwrap();
    input.write_all(&call(1, "echo")).unwrap();
    input.write_all(&call(2, "delete_everything")).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.contains("denied by policy: tool"), "{stdout}");
    let decisions: Vec<String> = records(&audit).into_iter().map(|r| r.decision).collect();
    assert_eq!(decisions.len(), 2);
    assert!(decisions.contains(&"allow".into()) && decisions.contains(&"deny".into()));
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, log) = (dir.path().join("a.db"), dir.path().join("log"));
    let mut child = spawn(dir.path(), &audit, &log);
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    input.write_all(&call(1, "echo")).unwrap();
    input.flush().unwrap();
    let mut answer = String::new();
    output.read_line(&mut answer).unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["id"], 1, "{answer}");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Standard input stays open: the signal alone ends the session.
    let status = child.wait().unwrap();
    drop(input);
    assert_eq!(
        status.code(),
        Some(0),
        "the server exits 0 when its input closes"
    );
    assert_eq!(records(&audit).len(), 1);
}

/// Node/libuv clients give their servers socket pairs, not pipes, as stdio.
#[cfg(unix)]
#[test]
fn socketpair_stdio_is_relayed() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let (audit, log) = (dir.path().join("a.db"), dir.path().join("log"));
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = conductor_in(dir.path())
        .env("FAKE_LOG", &log)
        .arg("wrap")
        .arg("--policy")
        .arg(policy())
        .args(["--agent", "research-bot", "--server", "fake", "--no-dns"])
        .arg("--audit")
        .arg(&audit)
        .arg("--")
        .arg("python3")
        .arg(fake())
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            theirs.try_clone().unwrap(),
        )))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut writer = ours.try_clone().unwrap();
    let mut reader = BufReader::new(ours);
    writer.write_all(&call(1, "echo")).unwrap();
    writer.write_all(&call(2, "delete_everything")).unwrap();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        reader.read_line(&mut l).unwrap();
        answers.push(serde_json::from_str::<Value>(&l).unwrap());
    }
    writer.shutdown(std::net::Shutdown::Write).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    answers.sort_by_key(|a| a["id"].as_u64());
    assert!(answers[0]["result"].get("isError").is_none(), "{answers:?}");
    assert_eq!(answers[1]["result"]["isError"], true, "{answers:?}");
    assert_eq!(records(&audit).len(), 2);
}
