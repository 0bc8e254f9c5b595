//! `conductor wrap --sandbox` and `conductor sandbox check`, with the real
//! mcp-server-fetch (from `.peers`) behind the gate and inside the sandbox.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::{conductor_in, run_in, workspace};

/// A tiny HTTP server on 127.0.0.1 port 0: `/redirect-metadata` answers a 302 to the
/// metadata service, anything else `hello from <path>`. Records the request lines.
fn http_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            s.lock().unwrap().push(line.trim_end().to_string());
            let path = line.split(' ').nth(1).unwrap_or("/").to_string();
            let response = if path == "/redirect-metadata" {
                "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n".to_string()
            } else {
                let body = format!("hello from {path}");
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            let mut w = stream;
            let _ = w.write_all(response.as_bytes());
        }
    });
    (port, seen)
}

const POLICY: &str = r#"version: 1
agents:
  bot:
    roles: [r]
roles:
  r:
    allow:
      - tools: ["fetch.*"]
tools:
  fetch.fetch:
    action: read
    destinations: [/url]
destinations:
  allow: ["*"]
  permit: [loopback]
"#;

fn peers() -> Option<std::path::PathBuf> {
    let dir = workspace().join(".peers");
    if dir.join("stamp").is_file() {
        return Some(dir.canonicalize().unwrap());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the MCP peers are not installed in `.peers`"
    );
    eprintln!("SKIPPED: `.peers` is missing; run `bash scripts/setup-peers.sh`");
    None
}

/// JSON-RPC over the wrapped server's stdio, one line per message.
struct Session {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Session {
    fn send(&mut self, v: Value) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    }

    fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self.lines.next().expect("wrap closed its output").unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    fn fetch(&mut self, id: u64, url: &str) -> (bool, String) {
        let r = self.request(
            id,
            "tools/call",
            json!({"name": "fetch", "arguments": {"url": url, "raw": true, "max_length": 2000}}),
        );
        let text = r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (r["result"]["isError"].as_bool().unwrap_or(true), text)
    }
}

#[test]
fn sandbox_check_reports_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(dir.path(), &["sandbox", "check"], "");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("every layer is available"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("landlock ABI"), "{}", r.stdout);
    let r = run_in(dir.path(), &["sandbox", "check", "--format", "json"], "");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["landlock_abi"].as_i64().unwrap() >= 1);
}

/// The gate allows the call (the URL is fine); what the server does next is the
/// sandbox's business: the redirect it would follow to the metadata service is refused
/// by the egress proxy, and every connection is in the same audit trail.
#[test]
fn wrap_sandbox_fetches_through_the_egress_proxy_and_refuses_the_redirect() {
    let Some(peers) = peers() else { return };
    let (port, seen) = http_server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let audit = dir.path().join("audit.db");
    let fetch = peers.join("venv/bin/mcp-server-fetch");
    let mut child = conductor_in(dir.path())
        .args([
            "wrap",
            "--policy",
            "policy.yaml",
            "--agent",
            "bot",
            "--server",
            "fetch",
            "--audit",
            audit.to_str().unwrap(),
            "--no-dns",
            "--resolve",
            "allowed.test=127.0.0.1",
            "--sandbox",
            "--",
            fetch.to_str().unwrap(),
            "--ignore-robots-txt",
            "--allow-private-ips",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut s = Session { child, lines };
    let init = s.request(
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "t", "version": "1"}}),
    );
    assert!(init.get("result").is_some(), "{init}");
    s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let (err, text) = s.fetch(2, &format!("http://allowed.test:{port}/page"));
    assert!(!err && text.contains("hello from /page"), "{text}");
    let (err, text) = s.fetch(3, &format!("http://allowed.test:{port}/redirect-metadata"));
    assert!(err, "the redirect was followed: {text}");
    drop(s.child.stdin.take());
    let status = s.child.wait().unwrap();
    let _ = status;
    assert_eq!(seen.lock().unwrap().len(), 2);

    let export = conductor_in(dir.path())
        .args([
            "audit",
            "export",
            "--audit",
            audit.to_str().unwrap(),
            "--format",
            "jsonl",
        ])
        .output()
        .unwrap();
    let records: Vec<Value> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap_or_default().to_string(),
                r["action"].as_str().unwrap_or_default().to_string(),
                r["decision"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let egress: Vec<_> = events.iter().filter(|e| e.0 == "egress").collect();
    assert_eq!(
        egress,
        [
            &("egress".to_string(), "get".to_string(), "allow".to_string()),
            &("egress".to_string(), "get".to_string(), "allow".to_string()),
            &(
                "egress".to_string(),
                "redirect".to_string(),
                "deny".to_string()
            ),
        ],
        "{events:?}"
    );
    let verify = conductor_in(dir.path())
        .args(["audit", "verify", "--audit", audit.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(verify.success());
}

/// Fail closed: a profile path that does not exist stops wrap before the server starts.
#[test]
fn wrap_sandbox_refuses_to_start_when_a_layer_cannot_be_set_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let marker = dir.path().join("started");
    let script = format!("touch {}", marker.display());
    let r = run_in(
        dir.path(),
        &[
            "wrap",
            "--policy",
            "policy.yaml",
            "--agent",
            "bot",
            "--audit",
            "audit.db",
            "--sandbox",
            "--sandbox-read",
            "/no/such/path",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
        "",
    );
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(
        r.stderr.contains("profile") && r.stderr.contains("/no/such/path"),
        "{}",
        r.stderr
    );
    assert!(!marker.exists(), "the server started");
    // Without the bad path the same command runs (in the sandbox: the marker lands in
    // the sandbox's private /tmp or the listed directory only).
    let r = run_in(
        dir.path(),
        &[
            "wrap",
            "--policy",
            "policy.yaml",
            "--agent",
            "bot",
            "--audit",
            "audit.db",
            "--sandbox",
            "--sandbox-write",
            dir.path().to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(marker.exists());
}

/// `--sandbox-read` without `--sandbox` is a usage error, not a silent no-op.
#[test]
fn sandbox_flags_need_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(
        dir.path(),
        &[
            "wrap",
            "--policy",
            "p.yaml",
            "--agent",
            "bot",
            "--sandbox-read",
            "/tmp",
            "--",
            "true",
        ],
        "",
    );
    assert_eq!(r.code, 64, "{}", r.stderr);
    let _ = Command::new("true");
    let mut _unused = String::new();
    let _ = std::io::empty().read_to_string(&mut _unused);
}
