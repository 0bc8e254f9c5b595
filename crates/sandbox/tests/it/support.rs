//! Shared helpers: the init program, a policy, a fixed resolver, running a sandbox.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use conductor_net::{ResolveError, Resolver};
use conductor_sandbox::{Egress, InitProgram, Profile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn init() -> InitProgram {
    InitProgram {
        path: env!("CARGO_BIN_EXE_conductor-sandbox-init").into(),
        args: vec![],
    }
}

/// A resolver with fixed answers; a host may have a sequence of answers (one per
/// lookup, the last repeated) — for DNS rebinding. Counts lookups per host.
#[derive(Default, Clone)]
pub struct Fixed {
    pub answers: Arc<Mutex<HashMap<String, Vec<Vec<IpAddr>>>>>,
    pub lookups: Arc<Mutex<HashMap<String, usize>>>,
}

impl Fixed {
    pub fn with(self, host: &str, seq: &[&[&str]]) -> Self {
        let seq = seq
            .iter()
            .map(|a| a.iter().map(|s| s.parse().unwrap()).collect())
            .collect();
        self.answers.lock().unwrap().insert(host.into(), seq);
        self
    }

    pub fn lookups(&self, host: &str) -> usize {
        self.lookups.lock().unwrap().get(host).copied().unwrap_or(0)
    }
}

impl Resolver for Fixed {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let n = {
            let mut l = self.lookups.lock().unwrap();
            let e = l.entry(host.to_string()).or_default();
            *e += 1;
            *e
        };
        let answers = self.answers.lock().unwrap();
        match answers.get(host) {
            Some(seq) if !seq.is_empty() => Ok(seq[(n - 1).min(seq.len() - 1)].clone()),
            _ => Err(ResolveError::NotFound { host: host.into() }),
        }
    }
}

pub const AGENT: &str = "bot";

/// A policy: any destination outside the blocked classes, with `permit` opened.
pub fn policy(destinations: &str) -> conductor_policy::Policy {
    let text = format!(
        "version: 1\nagents:\n  bot:\n    roles: [r]\nroles:\n  r:\n    allow:\n      - tools: [\"*\"]\ndestinations:\n{destinations}\n"
    );
    conductor_policy::load_str(&text, "policy.yaml", None).unwrap()
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub resolver: Fixed,
    pub policy: Arc<conductor_policy::Policy>,
}

impl World {
    pub fn new(policy: conductor_policy::Policy, resolver: Fixed) -> Self {
        World {
            dir: tempfile::tempdir().unwrap(),
            resolver,
            policy: Arc::new(policy),
        }
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.db")
    }

    pub fn egress(&self) -> Egress {
        egress_for(
            &self.audit_path(),
            (*self.policy).clone(),
            self.resolver.clone(),
        )
    }

    /// The egress records: (decision, rules, action, target).
    pub fn egress_records(&self) -> Vec<(String, Vec<String>, String, String)> {
        read_egress(&self.audit_path())
    }
}

/// The gate service the proxy decides through: `policy`, the fixed resolver (behind the
/// gate's own resolver, with its cache), a memory session store, the audit store at
/// `audit`.
pub fn egress_for(
    audit: &std::path::Path,
    policy: conductor_policy::Policy,
    resolver: Fixed,
) -> Egress {
    let store = conductor_audit::AuditStore::open(audit, Default::default()).unwrap();
    let lookup = move |h: &str| resolver.resolve(h);
    let resolver = conductor_gate::GateResolver::with_lookup(
        conductor_gate::ResolverConfig::default(),
        Arc::new(lookup),
    );
    let service = conductor_gate::Service::new(
        policy,
        resolver,
        Arc::new(conductor_scan::FingerprintKey([7; 32])),
        Arc::new(store),
        Arc::new(conductor_gate::MemoryStore::default()),
        conductor_gate::ServiceOptions::default(),
    );
    Egress {
        service: Arc::new(service),
        subject: conductor_gate::Subject {
            agent: AGENT.into(),
            workflow: None,
            session: "sandbox-test".into(),
            server: Some("test".into()),
            auth: None,
        },
    }
}

/// The egress records of the store at `path`, whole (as JSON).
pub fn read_records(path: &std::path::Path) -> Vec<serde_json::Value> {
    conductor_audit::AuditReader::open(path)
        .unwrap()
        .last(100_000)
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "egress")
        .map(|r| serde_json::to_value(&r).unwrap())
        .collect()
}

/// Read the audit store through the `conductor-audit` reader.
fn read_egress(path: &std::path::Path) -> Vec<(String, Vec<String>, String, String)> {
    let records = conductor_audit::AuditReader::open(path)
        .unwrap()
        .last(100_000)
        .unwrap();
    records
        .into_iter()
        .filter(|r| r.event == "egress")
        .map(|r| {
            let rules = r
                .reasons
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x["rule"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            let target = r
                .arguments
                .as_ref()
                .and_then(|a| a["target"].as_str())
                .unwrap_or("")
                .to_string();
            (r.decision, rules, r.action, target)
        })
        .collect()
}

/// Run `command` in the sandbox with `input` on stdin; its stdout and exit code.
pub async fn run(
    command: &[&str],
    profile: &Profile,
    egress: Egress,
    input: &[u8],
) -> (String, i32) {
    let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    let (mut child, guard) = conductor_sandbox::spawn(&init(), &command, profile, egress)
        .await
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let status = child.wait().await.unwrap();
    drop(guard);
    (out, status.code().unwrap_or(-1))
}

pub fn sh(script: &str) -> Vec<&str> {
    vec!["/bin/sh", "-c", script]
}

/// Where the MCP peers are installed (`scripts/setup-peers.sh`), or `None` with a loud
/// message (a failure under CI).
pub fn peers() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.peers");
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

/// An MCP session over the sandboxed server's stdio (2025-11-25 handshake).
pub struct Mcp {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    next_id: u64,
    _guard: conductor_sandbox::SandboxGuard,
}

impl Mcp {
    pub async fn start(command: &[String], profile: &Profile, egress: Egress) -> Mcp {
        use tokio::io::AsyncBufReadExt;
        let (mut child, guard) = conductor_sandbox::spawn(&init(), command, profile, egress)
            .await
            .unwrap();
        let stdin = child.stdin.take();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut m = Mcp {
            child,
            stdin,
            lines,
            next_id: 1,
            _guard: guard,
        };
        let init = m
            .request(
                "initialize",
                serde_json::json!({"protocolVersion": "2025-11-25", "capabilities": {},
                                   "clientInfo": {"name": "sandbox-test", "version": "1"}}),
            )
            .await;
        assert!(init.get("result").is_some(), "initialize failed: {init}");
        m.send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        m
    }

    async fn send(&mut self, v: serde_json::Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.stdin
            .as_mut()
            .unwrap()
            .write_all(line.as_bytes())
            .await
            .unwrap();
    }

    pub async fn request(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .await;
        let wait = async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the server closed its output");
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v.get("id") == Some(&serde_json::json!(id)) {
                    return v;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), wait)
            .await
            .expect("no answer within 60 s")
    }

    /// `tools/call`: (is_error, text of the content).
    pub async fn call(&mut self, tool: &str, arguments: serde_json::Value) -> (bool, String) {
        let r = self
            .request(
                "tools/call",
                serde_json::json!({"name": tool, "arguments": arguments}),
            )
            .await;
        let result = &r["result"];
        let text = result["content"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_else(|| r.to_string());
        (
            result["isError"]
                .as_bool()
                .unwrap_or(r.get("error").is_some()),
            text,
        )
    }

    pub async fn close(mut self) {
        drop(self.stdin.take());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.start_kill();
    }
}
