//! Held calls through `conductor wrap`, decided by `conductor approvals` from another
//! process. The server is `tests/fixtures/wrap/fake_server.py` (python3), which logs
//! every line it receives (the witness of what was forwarded).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conductor_audit::AuditReader;
use serde_json::{Value, json};

use crate::{conductor_in, fixtures, run_in};

const WAIT: Duration = Duration::from_secs(60);

fn policy(dir: &Path, ttl: &str) -> PathBuf {
    let p = dir.join("policy.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\n\
             agents:\n  research-bot:\n    roles: [researcher]\n\
             roles:\n  researcher:\n    allow:\n      - tools: [\"fake.fetch\"]\n    approve:\n      - tools: [\"fake.echo\"]\n\
             tools:\n  fake.echo:\n    action: write\n    destinations: []\n  fake.fetch:\n    action: read\n    destinations: []\n\
             sessions:\n  approval_ttl: {ttl}\n"
        ),
    )
    .unwrap();
    p
}

pub(crate) struct Wrap {
    child: Child,
    input: ChildStdin,
    lines: mpsc::Receiver<Value>,
    dir: PathBuf,
    pub(crate) audit: PathBuf,
    log: PathBuf,
}

impl Wrap {
    pub(crate) fn start(dir: &Path, ttl: &str) -> Wrap {
        let audit = dir.join("audit.db");
        let log = dir.join("server.log");
        let mut child = conductor_in(dir)
            .env("FAKE_LOG", &log)
            .arg("wrap")
            .arg("--policy")
            .arg(policy(dir, ttl))
            .args(["--agent", "research-bot", "--server", "fake", "--no-dns"])
            .arg("--audit")
            .arg(&audit)
            .arg("--")
            .arg("python3")
            .arg(fixtures().join("wrap/fake_server.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        Wrap {
            child,
            input,
            lines,
            dir: dir.to_path_buf(),
            audit,
            log,
        }
    }

    pub(crate) fn call(&mut self, id: u64, name: &str, arguments: Value) {
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                         "params": {"name": name, "arguments": arguments}});
        writeln!(self.input, "{msg}").unwrap();
        self.input.flush().unwrap();
    }

    pub(crate) fn answer(&self) -> Value {
        self.lines.recv_timeout(WAIT).expect("an answer from wrap")
    }

    /// An answer already written, if any (does not wait).
    pub(crate) fn answered(&self) -> Option<Value> {
        self.lines.try_recv().ok()
    }

    /// `conductor approvals ARGS --audit <store>` (another process).
    pub(crate) fn approvals(&self, args: &[&str]) -> crate::Run {
        let mut all: Vec<&str> = vec!["approvals"];
        all.extend_from_slice(args);
        let audit = self.audit.to_str().unwrap().to_string();
        all.extend_from_slice(&["--audit", &audit]);
        run_in(&self.dir, &all, "")
    }

    /// Wait until `n` approvals are pending; their JSON.
    pub(crate) fn pending(&self, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            if self.audit.exists() {
                let r = self.approvals(&["list", "--format", "json"]);
                if r.code == 0 {
                    let v: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
                    if v.len() == n {
                        return v;
                    }
                }
            }
            assert!(started.elapsed() < WAIT, "never saw {n} pending approvals");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn server_saw(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(needle)
    }

    pub(crate) fn records(&self, event: &str) -> Vec<conductor_audit::Record> {
        AuditReader::open(&self.audit)
            .unwrap()
            .last(1000)
            .unwrap()
            .into_iter()
            .filter(|r| r.event == event)
            .collect()
    }

    pub(crate) fn finish(mut self) {
        drop(self.input);
        let _ = self.child.wait();
    }
}

pub(crate) fn text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn held_call_is_released_by_approvals_approve_from_another_process_and_others_keep_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wrap::start(dir.path(), "10m");
    w.call(1, "echo", json!({"text": "merge-7"}));
    let pending = w.pending(1);
    let p = &pending[0];
    for k in ["id", "agent", "tool", "expires"] {
        assert!(p.get(k).is_some(), "{p}");
    }
    assert_eq!(p["agent"], "research-bot");
    assert_eq!(p["tool"], "fake.echo");
    assert!(!w.server_saw("merge-7"), "the held call reached the server");
    // The session is not blocked: another call passes while the first is held.
    w.call(2, "fetch", json!({"url": "x"}));
    let a = w.answer();
    assert_eq!(a["id"], 2, "{a}");
    let id = p["id"].as_str().unwrap();
    let r = w.approvals(&["approve", id, "--as", "alice"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a = w.answer();
    assert_eq!(a["id"], 1, "{a}");
    assert!(a["result"]["isError"].is_null(), "{a}");
    assert!(text(&a).contains("merge-7"), "{a}");
    assert!(w.server_saw("merge-7"));
    // The grant is in the chain, naming the approver, and the chain verifies.
    let grants = w.records("approval-grant");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].arguments.as_ref().unwrap()["approver"], "alice");
    let released: Vec<_> = w
        .records("tools/call")
        .into_iter()
        .filter(|r| r.tool == "fake.echo" && r.decision == "allow")
        .collect();
    assert_eq!(
        released.len(),
        1,
        "the released call is recorded as allowed"
    );
    assert!(
        released[0].seq > grants[0].seq,
        "grant recorded before the call went"
    );
    let audit = w.audit.to_str().unwrap().to_string();
    let v = run_in(dir.path(), &["audit", "verify", "--audit", &audit], "");
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    // Decided once: a second approval is refused.
    assert_eq!(w.approvals(&["approve", id, "--as", "bob"]).code, 1);
    w.finish();
}

#[test]
fn held_call_denied_is_refused_with_the_reason_and_never_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wrap::start(dir.path(), "10m");
    w.call(1, "echo", json!({"text": "deny-me"}));
    let id = w.pending(1)[0]["id"].as_str().unwrap().to_string();
    let r = w.approvals(&[
        "deny",
        &id,
        "--reason",
        "not during the freeze",
        "--as",
        "bob",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a = w.answer();
    assert_eq!(a["result"]["isError"], true, "{a}");
    let t = text(&a);
    assert!(t.contains("approval (approval.denied)"), "{t}");
    assert!(
        t.contains("`bob`") && t.contains("not during the freeze"),
        "{t}"
    );
    assert!(!w.server_saw("deny-me"));
    assert_eq!(w.records("approval-deny").len(), 1);
    w.finish();
}

#[test]
fn held_call_expires_as_a_deny_with_check_approval() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wrap::start(dir.path(), "1s");
    w.call(1, "echo", json!({"text": "too-late"}));
    let a = w.answer();
    assert_eq!(a["result"]["isError"], true, "{a}");
    let t = text(&a);
    assert!(t.contains("approval (approval.expired)"), "{t}");
    assert!(!w.server_saw("too-late"));
    let exp = w.records("approval-expire");
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0].reasons[0]["check"], "approval");
    w.finish();
}

#[test]
fn session_scope_releases_the_same_call_again_but_other_arguments_are_held() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wrap::start(dir.path(), "10m");
    w.call(1, "echo", json!({"text": "same"}));
    let id = w.pending(1)[0]["id"].as_str().unwrap().to_string();
    let r = w.approvals(&["approve", &id, "--scope", "session", "--as", "alice"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(w.answer()["id"], 1);
    // The identical call: released by the grant, without asking.
    w.call(2, "echo", json!({"text": "same"}));
    let a = w.answer();
    assert_eq!(a["id"], 2, "{a}");
    assert!(a["result"]["isError"].is_null(), "{a}");
    assert!(
        w.approvals(&["list", "--format", "json"]).stdout.trim() == "[]",
        "the identical call was held again"
    );
    // Other arguments: held again.
    w.call(3, "echo", json!({"text": "other"}));
    let id3 = w.pending(1)[0]["id"].as_str().unwrap().to_string();
    assert_ne!(id3, id);
    assert!(!w.server_saw("other"));
    // Revoking the grant: the identical call is held again too.
    let grants = w.approvals(&["grants", "--format", "json"]);
    let g: Vec<Value> = serde_json::from_str(&grants.stdout).unwrap();
    assert_eq!(g.len(), 1);
    let gid = g[0]["id"].as_str().unwrap();
    assert_eq!(w.approvals(&["revoke", gid, "--as", "alice"]).code, 0);
    w.call(4, "echo", json!({"text": "same"}));
    let held = w.pending(2);
    assert_eq!(held.len(), 2);
    for h in &held {
        let r = w.approvals(&["deny", h["id"].as_str().unwrap(), "--reason", "done"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let (a, b) = (w.answer(), w.answer());
    assert_eq!(a["result"]["isError"], true);
    assert_eq!(b["result"]["isError"], true);
    assert_eq!(w.records("approval-revoke").len(), 1);
    let audit = w.audit.to_str().unwrap().to_string();
    assert_eq!(
        run_in(dir.path(), &["audit", "verify", "--audit", &audit], "").code,
        0
    );
    w.finish();
}

#[test]
fn approvals_cli_refuses_bad_usage_and_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wrap::start(dir.path(), "10m");
    // The store exists once wrap has opened it.
    let started = Instant::now();
    while !w.audit.exists() {
        assert!(started.elapsed() < WAIT);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(w.approvals(&["show", "0123"]).code, 1);
    assert_eq!(
        w.approvals(&["approve", "0123", "--scope", "window"]).code,
        64,
        "a window needs --for"
    );
    assert_eq!(w.approvals(&["approve", "0123", "--for", "1h"]).code, 64);
    assert_eq!(w.approvals(&["deny", "0123", "--reason", "x"]).code, 1);
    w.finish();
}
