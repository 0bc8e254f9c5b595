//! Tests of `conductor wrap` with REAL peers: the official MCP client SDKs (Python `mcp`,
//! TypeScript `@modelcontextprotocol/sdk`) talk through `conductor wrap` to the reference
//! servers (`@modelcontextprotocol/server-everything`, `@modelcontextprotocol/server-filesystem`,
//! `mcp-server-fetch`), all installed into `.peers/` by `scripts/setup-peers.sh`.
//!
//! Each test writes a policy into a temporary directory, runs one client script from
//! `tests/fixtures/peers/` (which prints what it saw as JSON), and then checks three
//! witnesses: what the client got, what the server received (a spy, `peers/spy.py`, records
//! every line that reaches the server), and what the audit store holds.
//!
//! No test sends traffic off this machine, even if the gate were broken: the everything
//! server only fetches from `127.0.0.1` (`GZIP_ALLOWED_DOMAINS`), and the fetch server sends
//! every request through a proxy that is a canned HTTP responder on `127.0.0.1:0` here.
//!
//! When `.peers` is missing the tests say so loudly and pass, except under CI (`CI` set),
//! where a missing peer is a failure.
//!
//! Every interop test runs twice ([`interop_tests!`]): as `wrap::<name>` with the server
//! started plainly, and as `wrap::sandboxed::<name>` with `wrap --sandbox` (the server —
//! and the spy in front of it — in Conductor's sandbox, its only way out the egress
//! proxy; the fetch server then goes through the proxy the sandbox offers instead of the
//! test's, and every connection it makes is an `egress` record of the same audit trail).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{conductor_in, fixtures, workspace};

/// How long one client session (client + wrap + server) may take before it is killed and
/// the test fails. Generous: the machine is small and shared; a healthy session takes seconds.
const SESSION_TIMEOUT: Duration = Duration::from_secs(120);

/// The key under which wrap puts its decision in a refused call's result `_meta`.
const DECISION_KEY: &str = "dev.conductor/decision";

// ---------------------------------------------------------------------------------------
// The installed peers
// ---------------------------------------------------------------------------------------

/// Where the peers live, or `None` (after a loud message) when they are not installed and
/// this is not CI.
fn peers() -> Option<Peers> {
    let dir = workspace().join(".peers");
    if dir.join("stamp").is_file() {
        return Some(Peers {
            dir: dir.canonicalize().unwrap(),
        });
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the MCP peers are not installed in `{}` (CI must run `bash scripts/setup-peers.sh` first; \
         scripts/test.sh does)",
        dir.display()
    );
    // Once per run, and straight to the process's stderr: `eprintln!` output of a passing
    // test is captured by the test harness and never shown.
    static LOUD: std::sync::Once = std::sync::Once::new();
    LOUD.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\n\
             ************************************************************************\n\
             * SKIPPED: the interop tests of `conductor wrap` with real MCP peers:   *\n\
             * `.peers` is missing. Run `bash scripts/setup-peers.sh` (or            *\n\
             * `bash scripts/test.sh`) to install them. Under CI this is a failure.  *\n\
             ************************************************************************\n"
        );
    });
    None
}

struct Peers {
    dir: PathBuf,
}

impl Peers {
    fn python(&self) -> String {
        path(&self.dir.join("venv/bin/python"))
    }

    fn node_module(&self, rel: &str) -> String {
        path(&self.dir.join("node/node_modules").join(rel))
    }

    fn everything(&self) -> Vec<String> {
        vec![
            "node".into(),
            self.node_module("@modelcontextprotocol/server-everything/dist/index.js"),
            "stdio".into(),
        ]
    }

    fn filesystem(&self, root: &Path) -> Vec<String> {
        vec![
            "node".into(),
            self.node_module("@modelcontextprotocol/server-filesystem/dist/index.js"),
            path(root),
        ]
    }

    /// mcp-server-fetch with its own private-address guard off (so that the gate is what is
    /// tested) and every request sent through `proxy` (so that nothing leaves this machine).
    fn fetch(&self, proxy: &HttpStub) -> Vec<String> {
        vec![
            path(&self.dir.join("venv/bin/mcp-server-fetch")),
            "--ignore-robots-txt".into(),
            "--allow-private-ips".into(),
            "--proxy-url".into(),
            proxy.url(""),
        ]
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------
// A wrapped session
// ---------------------------------------------------------------------------------------

/// How `wrap` starts the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A plain child process.
    Plain,
    /// `wrap --sandbox`, the test's directory (spy log, files) writable inside.
    Sandboxed,
}

/// Every interop test, run both ways: `wrap::<name>` (plain) and `wrap::sandboxed::<name>`
/// (`wrap --sandbox`). Each entry is a `fn(Mode)`.
macro_rules! interop_tests {
    ($($name:ident),* $(,)?) => {
        mod plain {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Mode::Plain)
                }
            )*
        }
        mod sandboxed {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Mode::Sandboxed)
                }
            )*
        }
    };
}

interop_tests!(
    everything_python_session_metadata_url_refused_before_the_server,
    everything_typescript_metadata_url_refused_without_declared_pointer,
    everything_typescript_v2_auto_client_probes_then_falls_back,
    everything_python_auto_client_falls_back_to_the_handshake_and_an_unapproved_call_expires,
    everything_python_session_permitted_url_fetched_metadata_resource_read_refused,
    everything_typescript_permitted_url_fetched_metadata_resource_read_refused,
    filesystem_python_session_read_allowed_write_refused,
    filesystem_typescript_read_allowed_write_refused,
    fetch_prompt_of_the_metadata_service_is_refused_before_the_server,
    fetch_urls_the_scanner_used_to_cut_short_are_refused_before_the_server,
    fetch_python_session_loopback_allowed_when_permitted,
    fetch_typescript_loopback_refused_when_not_permitted,
    fetch_python_stateless_client_first_message_is_a_call,
    fetch_typescript_v2_client_pinned_to_the_stateless_revision,
    fetch_python_auto_client_negotiates_the_stateless_revision_through_wrap,
    fetch_result_with_a_credential_taints_the_session_and_the_next_fetch_is_refused,
    everything_sampling_reply_carrying_a_credential_never_reaches_the_server,
);

/// One test's world: a temporary directory with the policy, the audit store and the spy log.
struct Setup {
    dir: tempfile::TempDir,
    agent: &'static str,
    server: &'static str,
    mode: Mode,
}

impl Setup {
    fn new(mode: Mode, policy: &str, agent: &'static str, server: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        Self {
            dir,
            agent,
            server,
            mode,
        }
    }

    /// mcp-server-fetch with its own private-address guard off (so that the gate is what
    /// is tested). Plain: every request goes through `stub` as its proxy (so nothing leaves
    /// this machine). Sandboxed: through the egress proxy the sandbox offers
    /// (`HTTP_PROXY`), which sends only what the policy allows on to `127.0.0.1` here.
    fn fetch(&self, peers: &Peers, stub: &HttpStub) -> Vec<String> {
        let mut cmd = peers.fetch(stub);
        if self.mode == Mode::Sandboxed {
            let at = cmd.iter().position(|a| a == "--proxy-url").unwrap();
            cmd.drain(at..at + 2);
        }
        cmd
    }

    /// The request line `stub` sees for a fetch of `url`: the absolute form when it is
    /// the fetch server's proxy, the origin form when the egress proxy forwards it.
    fn stub_line(&self, url: &str) -> String {
        match self.mode {
            Mode::Plain => format!("GET {url} HTTP/1.1"),
            Mode::Sandboxed => {
                let path = url.splitn(4, '/').nth(3).unwrap_or_default();
                format!("GET /{path} HTTP/1.1")
            }
        }
    }

    /// Sandboxed: the `egress` records (the connections the server opened through the
    /// proxy) as (decision, target).
    fn egress_records(&self) -> Vec<(String, String)> {
        self.export_audit()
            .iter()
            .filter(|r| r["event"] == "egress")
            .map(|r| {
                (
                    r["decision"].as_str().unwrap().to_string(),
                    r["arguments"]["target"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn audit(&self) -> PathBuf {
        self.dir.path().join("audit.db")
    }

    fn spy_log(&self) -> PathBuf {
        self.dir.path().join("server-received.jsonl")
    }

    /// `conductor wrap … -- python spy.py LOG -- <server>`.
    fn wrap(&self, peers: &Peers, server: &[String]) -> Vec<String> {
        let mut cmd: Vec<String> = vec![
            env!("CARGO_BIN_EXE_conductor").into(),
            "wrap".into(),
            "--policy".into(),
            path(&self.dir.path().join("policy.yaml")),
            "--agent".into(),
            self.agent.into(),
            "--server".into(),
            self.server.into(),
            "--audit".into(),
            path(&self.audit()),
            "--no-dns".into(),
        ];
        if self.mode == Mode::Sandboxed {
            cmd.extend([
                "--sandbox".into(),
                "--sandbox-write".into(),
                path(self.dir.path()),
            ]);
            // The sandbox passes no variable it is not told to: the ones the session sets
            // for the spy and the everything server (see `session`).
            for name in [
                "PYTHONUNBUFFERED",
                "GZIP_ALLOWED_DOMAINS",
                "GZIP_MAX_FETCH_TIME_MILLIS",
            ] {
                cmd.extend(["--sandbox-env".into(), name.into()]);
            }
        }
        cmd.extend([
            "--".into(),
            peers.python(),
            path(&fixtures().join("peers/spy.py")),
            path(&self.spy_log()),
            "--".into(),
        ]);
        cmd.extend(server.iter().cloned());
        cmd
    }

    /// The `tools/call` requests that reached the server: (tool, arguments).
    fn server_saw_calls(&self) -> Vec<(String, Value)> {
        let _ = self.server_saw_text();
        server_calls(&self.spy_log())
    }

    /// Everything the server received, as text (for "never saw it" checks). The server
    /// received something (so an empty log cannot pass for "never saw it").
    fn server_saw_text(&self) -> String {
        let text = std::fs::read_to_string(self.spy_log()).unwrap_or_default();
        assert!(
            !text.trim().is_empty(),
            "the spy recorded nothing: the server never started behind wrap"
        );
        text
    }

    /// `conductor audit verify` exits 0; every record but the sandbox's `egress` records
    /// as (event, tool, decision), in order.
    fn audit_records(&self) -> Vec<(String, String, String)> {
        self.verify_audit();
        self.export_audit()
            .iter()
            .filter(|r| r["event"] != "egress")
            .map(|r| {
                assert_eq!(r["agent"], self.agent, "record: {r}");
                (
                    r["event"].as_str().unwrap().to_string(),
                    r["tool"].as_str().unwrap().to_string(),
                    r["decision"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn verify_audit(&self) {
        let db = path(&self.audit());
        let verify = conductor_in(self.dir.path())
            .args(["audit", "verify", "--audit", &db])
            .output()
            .unwrap();
        assert_eq!(
            verify.status.code(),
            Some(0),
            "`conductor audit verify` failed: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }

    fn export_audit(&self) -> Vec<Value> {
        let db = path(&self.audit());
        let export = conductor_in(self.dir.path())
            .args(["audit", "export", "--audit", &db, "--format", "jsonl"])
            .output()
            .unwrap();
        assert_eq!(
            export.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&export.stderr)
        );
        String::from_utf8(export.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `conductor audit verify` exits 0, and the store holds exactly one `tools/call` record
    /// per call, with these tools (qualified names) and decisions, in this order.
    fn assert_audit(&self, expected: &[(&str, &str)]) {
        self.verify_audit();
        let records = self.export_audit();
        let calls: Vec<(String, String)> = records
            .iter()
            .filter(|r| r["event"] == "tools/call")
            .map(|r| {
                assert_eq!(r["agent"], self.agent, "record: {r}");
                (
                    r["tool"].as_str().unwrap().to_string(),
                    r["decision"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(t, d)| ((*t).to_string(), (*d).to_string()))
            .collect();
        assert_eq!(calls, expected, "audit records: {records:#?}");
    }
}

fn server_calls(log: &Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["method"] == "tools/call")
        .map(|m| {
            (
                m["params"]["name"].as_str().unwrap_or_default().to_string(),
                m["params"]["arguments"].clone(),
            )
        })
        .collect()
}

/// Which official SDK client drives the session.
#[derive(Debug, Clone, Copy)]
enum Sdk {
    /// Python `mcp.ClientSession` over `stdio_client` (the 2025-11-25 handshake).
    PythonSession,
    /// Python `mcp.Client` with this `mode` ("auto", or a stateless revision).
    PythonClient(&'static str),
    /// TypeScript v1 `@modelcontextprotocol/sdk`: `Client` + `StdioClientTransport`
    /// (the 2025-11-25 handshake).
    TypeScript,
    /// TypeScript v2 `@modelcontextprotocol/client`, with `versionNegotiation` "auto" or
    /// pinned to this revision (such as the stateless "2026-07-28").
    TypeScriptV2(&'static str),
}

impl Sdk {
    /// The protocol revision the client must end up speaking, when it pins one.
    fn pinned(self) -> Option<&'static str> {
        match self {
            Sdk::PythonClient(mode) | Sdk::TypeScriptV2(mode) if mode != "auto" => Some(mode),
            _ => None,
        }
    }
}

/// What a client script printed, plus its stderr (which carries wrap's and the server's).
struct Seen {
    out: Value,
    stderr: String,
}

impl Seen {
    fn tools(&self) -> Vec<String> {
        self.out["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools listed: {}", self.context()))
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }

    fn call(&self, i: usize) -> &Value {
        let call = &self.out["calls"][i];
        assert!(!call.is_null(), "no call #{i}: {}", self.context());
        call
    }

    fn context(&self) -> String {
        format!(
            "client printed:\n{:#}\nstderr (client, wrap, server):\n{}",
            self.out, self.stderr
        )
    }

    /// Call #i was answered normally (not refused by the gate, not an error) and its text
    /// contains `needle`.
    fn assert_allowed(&self, i: usize, needle: &str) {
        let call = self.call(i);
        let result = &call["result"];
        assert!(
            result.is_object() && result["isError"] != true,
            "call #{i} should have succeeded: {}",
            self.context()
        );
        assert!(
            text_of(result).contains(needle),
            "call #{i}: `{needle}` not in the result: {}",
            self.context()
        );
    }

    /// Call #i was refused by the gate: an `isError` result whose text starts with
    /// "denied by policy" and names `check`, with the decision in `_meta` holding a reason
    /// with that check (and `rule`, when given). Returns the decision.
    fn assert_denied(&self, i: usize, check: &str, rule: Option<&str>) -> &Value {
        let call = self.call(i);
        let result = &call["result"];
        assert_eq!(
            result["isError"],
            true,
            "call #{i} should be refused: {}",
            self.context()
        );
        let text = text_of(result);
        assert!(
            text.starts_with("denied by policy"),
            "call #{i}: text should start with `denied by policy`: {}",
            self.context()
        );
        assert!(
            text.contains(check),
            "call #{i}: text should name the check `{check}`: {}",
            self.context()
        );
        let decision = &result["_meta"][DECISION_KEY];
        assert_eq!(
            decision["decision"],
            "deny",
            "call #{i}: `_meta[\"{DECISION_KEY}\"]` should hold a deny decision: {}",
            self.context()
        );
        let reasons = decision["reasons"].as_array().unwrap();
        assert!(
            reasons
                .iter()
                .any(|r| r["check"] == check && rule.is_none_or(|rule| r["rule"] == rule)),
            "call #{i}: no `{check}` reason{}: {}",
            rule.map(|r| format!(" with rule `{r}`"))
                .unwrap_or_default(),
            self.context()
        );
        if let Some(rule) = rule {
            assert!(
                text.contains(rule),
                "call #{i}: text should name the rule `{rule}`: {}",
                self.context()
            );
        }
        decision
    }
}

/// The concatenated text content of a `CallToolResult`.
fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Runs one client script with `plan` (command = `command`), killed with everything it
/// started after [`SESSION_TIMEOUT`].
fn session(peers: &Peers, sdk: Sdk, command: Vec<String>, mut plan: Value) -> Seen {
    plan["command"] = json!(command);
    plan["timeout"] = json!(60);
    let mut cmd = match sdk {
        Sdk::PythonSession | Sdk::PythonClient(_) => {
            match sdk {
                Sdk::PythonClient(mode) => {
                    plan["api"] = json!("client");
                    plan["mode"] = json!(mode);
                }
                _ => plan["api"] = json!("session"),
            }
            let mut c = Command::new(peers.python());
            c.arg(fixtures().join("peers/client.py"));
            c
        }
        Sdk::TypeScript | Sdk::TypeScriptV2(_) => {
            if let Sdk::TypeScriptV2(mode) = sdk {
                plan["package"] = json!("client");
                plan["negotiation"] = if mode == "auto" {
                    json!("auto")
                } else {
                    json!({ "pin": mode })
                };
            }
            let mut c = Command::new("node");
            c.arg(fixtures().join("peers/client.mjs"));
            c
        }
    };
    cmd.arg(plan.to_string())
        .env("CONDUCTOR_PEERS_DIR", &peers.dir)
        // The same settings as every other CLI test (see `conductor_in`): wrap inherits them.
        .env(
            "CONDUCTOR_FINGERPRINT_KEY_FILE",
            fixtures().join("fingerprint.key"),
        )
        .env("NO_COLOR", "1")
        .env("XDG_DATA_HOME", fixtures().join("no-such-data-dir"))
        // Only the everything server's gzip tool fetches by itself: never anywhere but here.
        .env("GZIP_ALLOWED_DOMAINS", "127.0.0.1")
        .env("GZIP_MAX_FETCH_TIME_MILLIS", "10000")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("RUST_BACKTRACE");
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    let run = Watched::spawn(cmd);
    let (code, stdout, stderr) = run.wait(SESSION_TIMEOUT);
    let out: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("{sdk:?} client printed no JSON ({e}), exit {code:?}:\n{stdout}\nstderr:\n{stderr}")
    });
    assert!(
        !stderr.contains("panicked"),
        "something panicked:\n{stderr}"
    );
    assert_eq!(
        code,
        Some(0),
        "{sdk:?} client failed:\n{:#}\nstderr:\n{stderr}",
        out
    );
    Seen { out, stderr }
}

/// A child in its own process group, killed (with everything it started) when dropped.
struct Watched {
    child: Child,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

impl Watched {
    fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Self {
            child,
            out: Some(out),
            err: Some(err),
        }
    }

    /// Waits for the exit (at most `limit`; then kills and fails), returns (code, out, err).
    fn wait(mut self, limit: Duration) -> (Option<i32>, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Whatever the client left behind (wrap, the server) goes too, so that the pipes
        // close and the readers finish.
        self.kill_group();
        let out = self.out.take().unwrap().join().unwrap();
        let err = self.err.take().unwrap().join().unwrap();
        match status {
            Some(status) => (status.code(), out, err),
            None => panic!(
                "the session did not finish within {limit:?} and was killed\nstdout:\n{out}\nstderr:\n{err}"
            ),
        }
    }

    fn kill_group(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.kill_group();
    }
}

// ---------------------------------------------------------------------------------------
// A local HTTP responder (127.0.0.1:0): the loopback destination, and the fetch server's proxy
// ---------------------------------------------------------------------------------------

const STUB_BODY: &str = "hello from the loopback test server";

/// Answers every HTTP request with one canned `text/plain` response and records the request
/// lines. Stops when dropped (and after five minutes in any case).
struct HttpStub {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpStub {
    fn start() -> Self {
        Self::serving(STUB_BODY)
    }

    /// A responder whose every answer carries `body`.
    fn serving(body: &str) -> Self {
        let body = Arc::new(body.to_string());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop, body) =
                (Arc::clone(&requests), Arc::clone(&stop), Arc::clone(&body));
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(300) {
                    match listener.accept() {
                        Ok((stream, _)) => serve_one(stream, &requests, &body),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Self {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The request lines received so far (`GET http://… HTTP/1.1` when used as a proxy).
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve_one(stream: std::net::TcpStream, requests: &Mutex<Vec<String>>, body: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    requests.lock().unwrap().push(first.trim_end().to_string());
    // The rest of the head (no request in these tests has a body).
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim_end() != "" {
        line.clear();
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = (&stream).write_all(response.as_bytes());
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------

/// research-bot may echo, add and gzip (a URL-taking tool); every other tool of the
/// everything server is out of its reach. `declare` says whether the policy names the gzip
/// tool's URL argument; without it the gate finds the URL by itself (the schema's
/// `format: uri`, and scanning arguments for URLs).
fn everything_policy(declare: bool) -> String {
    let gzip = if declare {
        "  everything.gzip-file-as-resource:\n    action: read\n    destinations: [/data]\n"
    } else {
        "  everything.gzip-file-as-resource:\n    action: read\n"
    };
    format!(
        r#"version: 1
agents:
  research-bot:
    roles: [researcher]
roles:
  researcher:
    allow:
      - tools: ["everything.echo", "everything.get-sum", "everything.gzip-file-as-resource"]
        actions: [read]
tools:
  everything.echo: {{action: read}}
  everything.get-sum: {{action: read}}
{gzip}destinations:
  allow: ["*"]
"#
    )
}

/// research-bot may fetch anywhere outside the blocked classes; with `loopback`, the
/// loopback class is opened up.
fn fetch_policy(loopback: bool) -> String {
    let permit = if loopback {
        "  permit: [loopback]\n"
    } else {
        ""
    };
    format!(
        r#"version: 1
agents:
  research-bot:
    roles: [researcher]
roles:
  researcher:
    allow:
      - tools: ["fetch.*"]
        actions: [read]
tools:
  fetch.fetch:
    action: read
    destinations: [/url]
destinations:
  allow: ["*"]
{permit}"#
    )
}

/// `reader` may use the filesystem server's tools for reading only.
const FS_POLICY: &str = r#"version: 1
agents:
  reader:
    roles: [reader]
roles:
  reader:
    allow:
      - tools: ["fs.*"]
        actions: [read]
tools:
  fs.read_text_file: {action: read}
  fs.read_file: {action: read}
  fs.list_directory: {action: read}
  fs.list_allowed_directories: {action: read}
  fs.write_file: {action: write}
  fs.edit_file: {action: write}
  fs.create_directory: {action: write}
  fs.move_file: {action: write}
"#;

/// The tools of the everything server that research-bot can reach.
const EVERYTHING_REACHABLE: [&str; 3] = ["echo", "get-sum", "gzip-file-as-resource"];

// The cloud metadata service, as written plainly and as one decimal number
// (2852039166 = 169.254.169.254; the CVE-2026-26118 class of attack, see DESIGN.md).
const METADATA_URL: &str = "http://169.254.169.254/latest/meta-data/";
const METADATA_DECIMAL_URL: &str = "http://2852039166/latest/meta-data/iam/security-credentials/";

/// Whether this Node's built-in `fetch` goes through `HTTP_PROXY` when
/// `NODE_USE_ENV_PROXY=1` (Node 22.21+ in the 22 line, 24.5+): asked of `node` itself.
fn node_fetch_uses_the_proxy() -> bool {
    let out = Command::new("node")
        .args(["-p", "process.versions.node"])
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major == 22 && minor >= 21) || (major == 24 && minor >= 5) || major >= 25
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// server-everything
// ---------------------------------------------------------------------------------------

/// Client sees only the reachable tools; echo works; the metadata URL, plain and decimal, is
/// refused with a destination reason before the server sees it.
fn everything_through_wrap(mode: Mode, sdk: Sdk, declare: bool) {
    let Some(peers) = peers() else { return };
    let setup = Setup::new(
        mode,
        &everything_policy(declare),
        "research-bot",
        "everything",
    );
    let seen = session(
        &peers,
        sdk,
        setup.wrap(&peers, &peers.everything()),
        json!({"calls": [
            {"name": "echo", "arguments": {"message": "hello through the gate"}},
            {"name": "gzip-file-as-resource", "arguments": {"name": "md.gz", "data": METADATA_URL}},
            {"name": "gzip-file-as-resource", "arguments": {"name": "md.gz", "data": METADATA_DECIMAL_URL}},
            {"name": "get-env", "arguments": {}},
        ]}),
    );

    // Tools the agent can never call are not listed.
    assert_eq!(
        sorted(seen.tools()),
        sorted(EVERYTHING_REACHABLE.map(String::from).to_vec()),
        "{}",
        seen.context()
    );
    seen.assert_allowed(0, "hello through the gate");
    for i in [1, 2] {
        let decision = seen.assert_denied(
            i,
            "destination",
            Some("destinations.blocked.cloud-metadata"),
        );
        assert!(
            decision["destinations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["host"] == "169.254.169.254"),
            "the decision should name the resolved metadata address: {decision:#}"
        );
    }
    // A tool outside the agent's reach, called anyway (a client may call an unlisted tool).
    seen.assert_denied(3, "tool", None);

    // The server saw the allowed call only.
    let text = setup.server_saw_text();
    assert!(
        !text.contains("169.254") && !text.contains("2852039166") && !text.contains("get-env"),
        "the server received a refused call:\n{text}"
    );
    let calls = setup.server_saw_calls();
    assert_eq!(
        calls.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["echo"],
        "{calls:?}"
    );

    setup.assert_audit(&[
        ("everything.echo", "allow"),
        ("everything.gzip-file-as-resource", "deny"),
        ("everything.gzip-file-as-resource", "deny"),
        ("everything.get-env", "deny"),
    ]);
}

fn everything_python_session_metadata_url_refused_before_the_server(mode: Mode) {
    everything_through_wrap(mode, Sdk::PythonSession, true);
}

fn everything_typescript_metadata_url_refused_without_declared_pointer(mode: Mode) {
    // The policy does not name the gzip tool's `data` argument: the gate must find the URL
    // by itself (the tool's input schema says `format: uri`; and `scan` is on).
    everything_through_wrap(mode, Sdk::TypeScript, false);
}

fn everything_typescript_v2_auto_client_probes_then_falls_back(mode: Mode) {
    // The v2 TypeScript client in `auto` mode probes `server/discover` on a short-lived
    // sibling process (here: a second `conductor wrap` with its own server), then runs the
    // 2025-11-25 handshake on the real one.
    everything_through_wrap(mode, Sdk::TypeScriptV2("auto"), true);
}

fn everything_python_auto_client_falls_back_to_the_handshake_and_an_unapproved_call_expires(
    mode: Mode,
) {
    // `mcp.Client(mode="auto")` probes `server/discover` first; the everything server
    // (TypeScript SDK 1.x) does not know it, and the client falls back to `initialize`
    // through wrap. `get-sum` needs a person's approval: it is listed (the agent may
    // call it once approved), held, and — nobody approving it within the policy's
    // `approval_ttl` — refused with check `approval`.
    let Some(peers) = peers() else { return };
    let policy = format!("{}sessions:\n  approval_ttl: 1s\n", get_sum_held_policy());
    let setup = Setup::new(mode, &policy, "research-bot", "everything");
    let seen = session(
        &peers,
        Sdk::PythonClient("auto"),
        setup.wrap(&peers, &peers.everything()),
        json!({"calls": [
            {"name": "echo", "arguments": {"message": "still here"}},
            {"name": "get-sum", "arguments": {"a": 20, "b": 22}},
            {"name": "gzip-file-as-resource", "arguments": {"data": METADATA_DECIMAL_URL}},
        ]}),
    );
    assert_eq!(
        seen.out["protocol_version"],
        "2025-11-25",
        "{}",
        seen.context()
    );
    assert_eq!(
        sorted(seen.tools()),
        sorted(EVERYTHING_REACHABLE.map(String::from).to_vec()),
        "{}",
        seen.context()
    );
    seen.assert_allowed(0, "still here");

    let approval = &seen.call(1)["result"];
    assert_eq!(approval["isError"], true, "{}", seen.context());
    assert!(
        text_of(approval).contains("approval (approval.expired)"),
        "{}",
        seen.context()
    );
    assert_eq!(
        approval["_meta"][DECISION_KEY]["decision"],
        "deny",
        "{}",
        seen.context()
    );

    seen.assert_denied(
        2,
        "destination",
        Some("destinations.blocked.cloud-metadata"),
    );
    let text = setup.server_saw_text();
    assert_eq!(
        setup
            .server_saw_calls()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["echo"],
        "{text}"
    );
    setup.assert_audit(&[
        ("everything.echo", "allow"),
        ("everything.get-sum", "approve"),
        ("everything.get-sum", "deny"),
        ("everything.gzip-file-as-resource", "deny"),
    ]);
}

fn everything_resources_through_wrap(mode: Mode, sdk: Sdk) {
    // A URL the policy permits (a loopback test server, with `loopback` opened up) is
    // forwarded and the server really fetches it; a `resources/read` of the metadata
    // service is refused with a JSON-RPC error carrying the decision, before the server
    // sees it.
    let Some(peers) = peers() else { return };
    let stub = HttpStub::start();
    let policy = r#"version: 1
agents:
  research-bot:
    roles: [researcher]
roles:
  researcher:
    allow:
      - tools: ["everything.gzip-file-as-resource", "everything.read_resource"]
        actions: [read]
tools:
  everything.gzip-file-as-resource:
    action: read
    destinations: [/data]
  everything.read_resource: {action: read}
destinations:
  allow: ["*"]
  permit: [loopback]
"#;
    let setup = Setup::new(mode, policy, "research-bot", "everything");
    let local = stub.url("/report.txt");
    let seen = session(
        &peers,
        sdk,
        setup.wrap(&peers, &peers.everything()),
        json!({
            "calls": [{"name": "gzip-file-as-resource",
                       "arguments": {"name": "report.gz", "data": local, "outputType": "resource"}}],
            "reads": [METADATA_URL],
        }),
    );
    assert_eq!(
        seen.tools(),
        ["gzip-file-as-resource"],
        "{}",
        seen.context()
    );
    let gzip = &seen.call(0)["result"];
    if mode == Mode::Sandboxed && !node_fetch_uses_the_proxy() {
        // Known limitation (docs/sandbox.md): Node before 22.21 / 24.5 ignores
        // `HTTP_PROXY` (and `NODE_USE_ENV_PROXY`, which the sandbox sets) in its built-in
        // `fetch`; its direct connection has no route out of the sandbox, so the
        // permitted fetch fails closed — it reaches nothing, not even the local server.
        assert!(
            gzip["isError"] == true && text_of(gzip).contains("fetch failed"),
            "{}",
            seen.context()
        );
        assert!(stub.requests().is_empty(), "{:?}", stub.requests());
        assert!(setup.egress_records().is_empty());
        return;
    }
    assert!(
        gzip.is_object() && gzip["isError"] != true,
        "the permitted fetch should work: {}",
        seen.context()
    );
    assert_eq!(
        gzip["content"][0]["resource"]["mimeType"],
        "application/gzip",
        "{}",
        seen.context()
    );
    assert_eq!(stub.requests(), ["GET /report.txt HTTP/1.1"]);

    let read = &seen.out["reads"][0];
    let error = &read["error"];
    assert_eq!(
        error["code"],
        -32001,
        "resources/read of the metadata service should be refused: {}",
        seen.context()
    );
    let decision = &error["data"][DECISION_KEY];
    assert_eq!(decision["decision"], "deny", "{}", seen.context());
    assert!(
        decision["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "destination"
                && r["rule"] == "destinations.blocked.cloud-metadata"),
        "{}",
        seen.context()
    );
    let text = setup.server_saw_text();
    assert!(
        !text.contains("169.254") && !text.contains("resources/read"),
        "the server received the refused read:\n{text}"
    );
    let records = setup.audit_records();
    assert_eq!(
        records,
        [
            (
                "tools/call".to_string(),
                "everything.gzip-file-as-resource".to_string(),
                "allow".to_string()
            ),
            (
                "resources/read".to_string(),
                "everything.read_resource".to_string(),
                "deny".to_string()
            ),
        ]
    );
}

fn everything_python_session_permitted_url_fetched_metadata_resource_read_refused(mode: Mode) {
    everything_resources_through_wrap(mode, Sdk::PythonSession);
}

fn everything_typescript_permitted_url_fetched_metadata_resource_read_refused(mode: Mode) {
    everything_resources_through_wrap(mode, Sdk::TypeScript);
}

// ---------------------------------------------------------------------------------------
// server-filesystem
// ---------------------------------------------------------------------------------------

fn filesystem_through_wrap(mode: Mode, sdk: Sdk) {
    let Some(peers) = peers() else { return };
    let setup = Setup::new(mode, FS_POLICY, "reader", "fs");
    std::fs::create_dir(setup.dir.path().join("files")).unwrap();
    let root = setup.dir.path().join("files").canonicalize().unwrap();
    std::fs::write(root.join("notes.txt"), "the quarterly numbers are in\n").unwrap();
    let written = root.join("written.txt");
    let seen = session(
        &peers,
        sdk,
        setup.wrap(&peers, &peers.filesystem(&root)),
        json!({"calls": [
            {"name": "read_text_file", "arguments": {"path": path(&root.join("notes.txt"))}},
            {"name": "list_directory", "arguments": {"path": path(&root)}},
            {"name": "write_file", "arguments": {"path": path(&written), "content": "overwritten"}},
        ]}),
    );
    let tools = seen.tools();
    for reachable in ["read_text_file", "list_directory"] {
        assert!(
            tools.iter().any(|t| t == reachable),
            "`{reachable}` missing: {}",
            seen.context()
        );
    }
    for unreachable in ["write_file", "edit_file", "create_directory", "move_file"] {
        assert!(
            !tools.iter().any(|t| t == unreachable),
            "`{unreachable}` (a write for a read-only role) should not be listed: {}",
            seen.context()
        );
    }
    seen.assert_allowed(0, "the quarterly numbers are in");
    seen.assert_allowed(1, "notes.txt");
    seen.assert_denied(2, "role", Some("roles.reader.allow[0]"));
    assert!(!written.exists(), "the refused write happened");
    assert_eq!(
        setup
            .server_saw_calls()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["read_text_file", "list_directory"]
    );
    setup.assert_audit(&[
        ("fs.read_text_file", "allow"),
        ("fs.list_directory", "allow"),
        ("fs.write_file", "deny"),
    ]);
}

fn filesystem_python_session_read_allowed_write_refused(mode: Mode) {
    filesystem_through_wrap(mode, Sdk::PythonSession);
}

fn filesystem_typescript_read_allowed_write_refused(mode: Mode) {
    filesystem_through_wrap(mode, Sdk::TypeScript);
}

// ---------------------------------------------------------------------------------------
// mcp-server-fetch
// ---------------------------------------------------------------------------------------

/// Fetch the local test server (allowed only with `loopback` permitted) and the metadata
/// service (always refused). The fetch server's proxy is the same local responder, so a
/// request that got through shows up in its request lines.
fn fetch_through_wrap(mode: Mode, sdk: Sdk, loopback: bool, list_tools: bool) {
    let Some(peers) = peers() else { return };
    let stub = HttpStub::start();
    let setup = Setup::new(mode, &fetch_policy(loopback), "research-bot", "fetch");
    let local = stub.url("/report.txt");
    let seen = session(
        &peers,
        sdk,
        setup.wrap(&peers, &setup.fetch(&peers, &stub)),
        json!({"list_tools": list_tools, "calls": [
            {"name": "fetch", "arguments": {"url": local}},
            {"name": "fetch", "arguments": {"url": "http://169.254.169.254/"}},
            {"name": "fetch", "arguments": {"url": METADATA_DECIMAL_URL}},
        ]}),
    );
    if let Some(revision) = sdk.pinned() {
        assert_eq!(seen.out["protocol_version"], revision, "{}", seen.context());
    }
    if list_tools {
        assert_eq!(seen.tools(), ["fetch"], "{}", seen.context());
    }
    if loopback {
        seen.assert_allowed(0, STUB_BODY);
    } else {
        seen.assert_denied(0, "destination", Some("destinations.blocked.loopback"));
    }
    seen.assert_denied(
        1,
        "destination",
        Some("destinations.blocked.cloud-metadata"),
    );
    seen.assert_denied(
        2,
        "destination",
        Some("destinations.blocked.cloud-metadata"),
    );

    let reached: Vec<String> = stub.requests();
    if loopback {
        assert_eq!(reached, [setup.stub_line(&local)], "{reached:?}");
    } else {
        assert!(reached.is_empty(), "a refused fetch went out: {reached:?}");
    }
    if mode == Mode::Sandboxed {
        // The one fetch that reached the server went out through the egress proxy, and
        // was decided and recorded there too.
        let expected = if loopback {
            vec![("allow".to_string(), stub.url("/"))]
        } else {
            Vec::new()
        };
        assert_eq!(setup.egress_records(), expected);
    }
    let text = setup.server_saw_text();
    assert!(
        !text.contains("169.254") && !text.contains("2852039166"),
        "the server received a refused call:\n{text}"
    );
    assert_eq!(
        setup.server_saw_calls().len(),
        usize::from(loopback),
        "{text}"
    );
    let first = if loopback { "allow" } else { "deny" };
    setup.assert_audit(&[
        ("fetch.fetch", first),
        ("fetch.fetch", "deny"),
        ("fetch.fetch", "deny"),
    ]);
}

// Regression (issue 10, class 1), found by probing with the real mcp-server-fetch: its
// `fetch` *prompt* fetches its `url` argument, and `prompts/get` was forwarded
// undecided — the metadata-service URL refused as a tool call was fetched as a prompt.
fn fetch_prompt_of_the_metadata_service_is_refused_before_the_server(mode: Mode) {
    let Some(peers) = peers() else { return };
    let stub = HttpStub::start();
    let setup = Setup::new(mode, &fetch_policy(true), "research-bot", "fetch");
    let seen = session(
        &peers,
        Sdk::PythonSession,
        setup.wrap(&peers, &setup.fetch(&peers, &stub)),
        json!({"list_tools": false, "prompts": [
            {"name": "fetch", "arguments": {"url": "http://169.254.169.254/latest/meta-data/"}},
            {"name": "fetch", "arguments": {"url": METADATA_DECIMAL_URL}},
        ]}),
    );
    for i in 0..2 {
        let entry = &seen.out["prompts"][i];
        assert_eq!(entry["error"]["code"], -32001, "{}", seen.context());
        let message = entry["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("destinations.blocked.cloud-metadata"),
            "{}",
            seen.context()
        );
    }
    assert!(
        stub.requests().is_empty(),
        "a refused prompt fetched: {:?}",
        stub.requests()
    );
    let text = setup.server_saw_text();
    assert!(
        !text.contains("169.254") && !text.contains("2852039166"),
        "the server received a refused prompt:\n{text}"
    );
    setup.verify_audit();
    let prompts: Vec<(String, String)> = setup
        .export_audit()
        .iter()
        .filter(|r| r["event"] == "prompts/get")
        .map(|r| {
            (
                r["tool"].as_str().unwrap().to_string(),
                r["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        prompts,
        [
            ("fetch.prompt:fetch".to_string(), "deny".to_string()),
            ("fetch.prompt:fetch".to_string(), "deny".to_string())
        ]
    );
}

// Regression (issue 10, class 3), found by probing with real servers: in an argument the
// policy does not declare (here: the client skipped tools/list, so nothing was learned
// from the schema either), the scan ended a URL at a tab or read `example.com;@` as the
// host, while the server's URL parser deleted the tab or took the host after `@` — and
// fetched the metadata service.
fn fetch_urls_the_scanner_used_to_cut_short_are_refused_before_the_server(mode: Mode) {
    let Some(peers) = peers() else { return };
    let stub = HttpStub::start();
    let policy = r#"version: 1
agents:
  research-bot:
    roles: [researcher]
roles:
  researcher:
    allow:
      - tools: ["fetch.*"]
destinations:
  allow: ["*"]
"#;
    let setup = Setup::new(mode, policy, "research-bot", "fetch");
    let seen = session(
        &peers,
        Sdk::PythonSession,
        setup.wrap(&peers, &setup.fetch(&peers, &stub)),
        json!({"list_tools": false, "calls": [
            {"name": "fetch", "arguments": {"url": "http://169.254.\t169.254/latest/meta-data/"}},
            {"name": "fetch", "arguments": {"url": "http://example.com;@169.254.169.254/latest/meta-data/"}},
            {"name": "fetch", "arguments": {"url": "http://example.com @169.254.169.254/"}},
        ]}),
    );
    for i in 0..3 {
        seen.assert_denied(i, "destination", None);
    }
    assert!(
        stub.requests().is_empty(),
        "a refused fetch went out: {:?}",
        stub.requests()
    );
    assert!(
        setup.server_saw_calls().is_empty(),
        "{}",
        setup.server_saw_text()
    );
    setup.assert_audit(&[
        ("fetch.fetch", "deny"),
        ("fetch.fetch", "deny"),
        ("fetch.fetch", "deny"),
    ]);
}

fn fetch_python_session_loopback_allowed_when_permitted(mode: Mode) {
    fetch_through_wrap(mode, Sdk::PythonSession, true, true);
}

fn fetch_typescript_loopback_refused_when_not_permitted(mode: Mode) {
    fetch_through_wrap(mode, Sdk::TypeScript, false, true);
}

fn fetch_python_stateless_client_first_message_is_a_call(mode: Mode) {
    // `mcp.Client(mode="2026-07-28")`: the stateless revision, no handshake; the first message
    // wrap sees is a `tools/call` carrying its protocol version in `_meta`.
    fetch_through_wrap(mode, Sdk::PythonClient("2026-07-28"), true, false);
}

fn fetch_typescript_v2_client_pinned_to_the_stateless_revision(mode: Mode) {
    // The v2 TypeScript client pinned to 2026-07-28: `server/discover` then stateless calls,
    // each carrying the `_meta` envelope, through wrap.
    fetch_through_wrap(mode, Sdk::TypeScriptV2("2026-07-28"), true, true);
}

fn fetch_python_auto_client_negotiates_the_stateless_revision_through_wrap(mode: Mode) {
    // mcp-server-fetch (Python SDK 2.x) answers `server/discover`: the auto client adopts
    // 2026-07-28 through wrap.
    let Some(peers) = peers() else { return };
    let stub = HttpStub::start();
    let setup = Setup::new(mode, &fetch_policy(false), "research-bot", "fetch");
    let seen = session(
        &peers,
        Sdk::PythonClient("auto"),
        setup.wrap(&peers, &setup.fetch(&peers, &stub)),
        json!({"calls": [{"name": "fetch", "arguments": {"url": METADATA_DECIMAL_URL}}]}),
    );
    assert_eq!(
        seen.out["protocol_version"],
        "2026-07-28",
        "{}",
        seen.context()
    );
    assert_eq!(seen.tools(), ["fetch"], "{}", seen.context());
    seen.assert_denied(
        0,
        "destination",
        Some("destinations.blocked.cloud-metadata"),
    );
    assert!(stub.requests().is_empty());
    setup.assert_audit(&[("fetch.fetch", "deny")]);
}

fn fetch_result_with_a_credential_taints_the_session_and_the_next_fetch_is_refused(mode: Mode) {
    // The page the fetch server brings back holds a credential (a GitHub token shape). The
    // gate scans the result, the session now holds `credentials` data (level secret), and
    // the next call to a destination whose egress maximum is `public` is refused by the
    // `flow` check, whatever its own arguments look like.
    let Some(peers) = peers() else { return };
    // Assembled at run time so that the source holds no token-shaped literal.
    let token = ["ghp_", "R2x8kHq7T3nM5vB9cX1zL4pW6yJ0aD8fE2gS"].concat();
    let stub = HttpStub::serving(&format!("deploy notes\ntoken: {token}\n"));
    let policy = fetch_policy(true).replace(
        "    roles: [researcher]\n",
        "    roles: [researcher]\n    clearance: secret\n",
    ) + "data:\n  labels:\n    credentials: {level: secret, detect: [secrets]}\n  default_egress: public\n";
    assert!(policy.contains("clearance: secret"), "{policy}");
    let setup = Setup::new(mode, &policy, "research-bot", "fetch");
    let seen = session(
        &peers,
        Sdk::PythonSession,
        setup.wrap(&peers, &setup.fetch(&peers, &stub)),
        json!({"calls": [
            {"name": "fetch", "arguments": {"url": stub.url("/notes.txt")}},
            {"name": "fetch", "arguments": {"url": stub.url("/innocent.txt")}},
        ]}),
    );
    seen.assert_allowed(0, "deploy notes");
    let decision = seen.assert_denied(1, "flow", None);
    let text = decision.to_string() + &text_of(&seen.call(1)["result"]);
    assert!(
        !text.contains(&token),
        "the refusal repeats the credential: {}",
        seen.context()
    );
    assert_eq!(stub.requests().len(), 1, "{:?}", stub.requests());
    let (_, records) = (setup.server_saw_text(), setup.audit_records());
    let calls: Vec<_> = records
        .iter()
        .filter(|(event, _, _)| event == "tools/call")
        .map(|(_, tool, decision)| (tool.as_str(), decision.as_str()))
        .collect();
    assert_eq!(calls, [("fetch.fetch", "allow"), ("fetch.fetch", "deny")]);
    assert!(
        !setup
            .export_audit()
            .iter()
            .any(|r| r.to_string().contains(&token)),
        "the audit store holds the credential"
    );
}

// Regression (issue 10, class 5): the client's answers to a server's own requests reached
// the server without a data check. server-everything's `trigger-sampling-request` asks the
// client for an LLM completion (`sampling/createMessage`); the client answers with a
// credential. The gate decides the answer as data sent to the server (whose destinations
// are unknown: `default_egress`), withholds it, and the server receives an error instead.
// The control session answers with clean text, which the server does get.
fn everything_sampling_reply_carrying_a_credential_never_reaches_the_server(mode: Mode) {
    let Some(peers) = peers() else { return };
    let token = ["ghp_", "R2x8kHq7T3nM5vB9cX1zL4pW6yJ0aD8fE2gS"].concat();
    let policy = r#"version: 1
agents:
  research-bot:
    roles: [researcher]
    clearance: secret
roles:
  researcher:
    allow:
      - tools: ["everything.*"]
destinations:
  allow: ["*"]
data:
  labels:
    credentials: {level: secret, detect: [secrets]}
  default_egress: public
"#;
    let plan = |reply: &str| {
        json!({"sampling_reply": reply, "calls": [
            {"name": "trigger-sampling-request", "arguments": {"prompt": "say hi", "maxTokens": 5}},
        ]})
    };
    // The control: a clean answer reaches the server, which hands it back.
    let control = Setup::new(mode, policy, "research-bot", "everything");
    let seen = session(
        &peers,
        Sdk::PythonSession,
        control.wrap(&peers, &peers.everything()),
        plan("the weather is fine"),
    );
    assert!(
        seen.tools().iter().any(|t| t == "trigger-sampling-request"),
        "{}",
        seen.context()
    );
    seen.assert_allowed(0, "the weather is fine");
    assert!(control.server_saw_text().contains("the weather is fine"));

    let setup = Setup::new(mode, policy, "research-bot", "everything");
    let seen = session(
        &peers,
        Sdk::PythonSession,
        setup.wrap(&peers, &peers.everything()),
        plan(&format!("here you go: {token}")),
    );
    assert_eq!(
        seen.out["sampled"].as_array().map(Vec::len),
        Some(1),
        "the server asked once: {}",
        seen.context()
    );
    let call = seen.call(0);
    let shown = call.to_string();
    assert!(
        !text_of(&call["result"]).contains("here you go"),
        "the server received the refused answer: {}",
        seen.context()
    );
    assert!(!shown.contains(&token), "{}", seen.context());
    let text = setup.server_saw_text();
    assert!(
        !text.contains(&token) && !text.contains("here you go"),
        "the server received the refused answer:\n{text}"
    );
    assert!(
        text.contains("denied by policy"),
        "the server was not told its request was refused:\n{text}"
    );
    let records = setup.audit_records();
    assert!(
        records.iter().any(
            |(event, tool, decision)| event == "reply:sampling/createMessage"
                && tool == "everything.reply:sampling/createMessage"
                && decision == "deny"
        ),
        "{records:?}"
    );
    assert!(
        !setup
            .export_audit()
            .iter()
            .any(|r| r.to_string().contains(&token)),
        "the audit store holds the credential"
    );
}

// ---------------------------------------------------------------------------------------
// Controls: the witnesses can see a call (so that "the server never saw it" can fail)
// ---------------------------------------------------------------------------------------

#[test]
fn control_spy_and_stub_see_what_reaches_the_server_without_the_gate() {
    let Some(peers) = peers() else { return };
    let stub = HttpStub::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server-received.jsonl");
    let mut spied = vec![
        peers.python(),
        path(&fixtures().join("peers/spy.py")),
        path(&log),
        "--".into(),
    ];
    spied.extend(peers.fetch(&stub));
    // No gate: the call reaches the server and, through the proxy, the network side.
    let seen = session(
        &peers,
        Sdk::PythonSession,
        spied,
        json!({"calls": [{"name": "fetch", "arguments": {"url": stub.url("/control")}}]}),
    );
    seen.assert_allowed(0, STUB_BODY);
    let calls = server_calls(&log);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].1["url"], stub.url("/control"));
    assert_eq!(stub.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Approving in the client (2025-11-25 elicitation, 2026-07-28 input_required)
// ---------------------------------------------------------------------------------------

/// The everything policy with `get-sum` held for approval, asked in the client.
fn in_client_policy() -> String {
    format!(
        "{}sessions:\n  approval_ttl: 30s\n  approve_in_client: true\n",
        get_sum_held_policy()
    )
}

/// The everything policy with `get-sum` held for a person's approval.
fn get_sum_held_policy() -> String {
    let policy = everything_policy(true).replace(
        "        actions: [read]\ntools:",
        "        actions: [read]\n    approve:\n      - tools: [\"everything.get-sum\"]\ntools:",
    );
    assert!(policy.contains("approve:"), "{policy}");
    policy
}

/// One session of `sdk` answering every elicitation with `answer`: an echo, then
/// `get-sum` (held), then an echo again.
fn in_client_session(sdk: Sdk, answer: Value) -> (Setup, Seen) {
    let peers = peers().expect("the peers are installed (scripts/setup-peers.sh)");
    let setup = Setup::new(
        Mode::Plain,
        &in_client_policy(),
        "research-bot",
        "everything",
    );
    let seen = session(
        &peers,
        sdk,
        setup.wrap(&peers, &peers.everything()),
        json!({
            "list_tools": false,
            "elicit": answer,
            "calls": [
                {"name": "echo", "arguments": {"message": "before"}},
                {"name": "get-sum", "arguments": {"a": 20, "b": 22}},
                {"name": "echo", "arguments": {"message": "after"}},
            ],
        }),
    );
    (setup, seen)
}

/// The person at the client was asked once, about `get-sum` with its arguments, and the
/// audit chain records the answer as given by `elicitation:research-bot`.
fn assert_asked_in_client(setup: &Setup, seen: &Seen, event: &str) {
    let asked = seen.out["elicitations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(asked.len(), 1, "{}", seen.context());
    let message = asked[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("everything.get-sum") && message.contains("\"a\":20"),
        "{}",
        seen.context()
    );
    setup.verify_audit();
    let records = setup.export_audit();
    let answer: Vec<&Value> = records.iter().filter(|r| r["event"] == event).collect();
    assert_eq!(answer.len(), 1, "{records:#?}");
    assert!(
        answer[0].to_string().contains("elicitation:research-bot"),
        "{records:#?}"
    );
    // INVARIANT: nothing the model reads names the approval (it could not answer with it).
    let ids: Vec<String> = records
        .iter()
        .filter_map(|r| r["arguments"]["approval"].as_str().map(String::from))
        .chain(
            records
                .iter()
                .filter_map(|r| r["approval"].as_str().map(String::from)),
        )
        .collect();
    for id in ids {
        assert!(
            !seen.out["calls"].to_string().contains(&id),
            "{}",
            seen.context()
        );
    }
}

#[test]
fn held_call_approved_by_elicitation_in_the_python_sdk_client_runs() {
    // Source: issue #13 (approving where the client can ask its user, 2025-11-25).
    let (setup, seen) = in_client_session(
        Sdk::PythonSession,
        json!({"action": "accept", "content": {"decision": "approve"}}),
    );
    seen.assert_allowed(0, "before");
    seen.assert_allowed(1, "42");
    seen.assert_allowed(2, "after");
    assert_asked_in_client(&setup, &seen, "approval-grant");
    setup.assert_audit(&[
        ("everything.echo", "allow"),
        ("everything.get-sum", "approve"),
        ("everything.get-sum", "allow"),
        ("everything.echo", "allow"),
    ]);
    let calls = setup.server_saw_calls();
    assert!(calls.iter().any(|(n, _)| n == "get-sum"), "{calls:?}");
    // The gate's question and its answer never reach the server.
    assert!(!setup.server_saw_text().contains("dev.conductor/approval"));
}

#[test]
fn held_call_declined_by_elicitation_is_refused_and_never_forwarded() {
    let (setup, seen) = in_client_session(Sdk::PythonSession, json!({"action": "decline"}));
    seen.assert_allowed(0, "before");
    seen.assert_denied(1, "approval", Some("approval.denied"));
    seen.assert_allowed(2, "after");
    assert_asked_in_client(&setup, &seen, "approval-deny");
    let calls = setup.server_saw_calls();
    assert!(!calls.iter().any(|(n, _)| n == "get-sum"), "{calls:?}");
}

#[test]
fn held_call_approved_through_input_required_by_the_stateless_python_client_runs() {
    // Source: issue #13 (2026-07-28 `input_required` with a signed `requestState`): the
    // SDK's stateless client answers the embedded elicitation and retries with the state.
    // mcp-server-fetch speaks 2026-07-28 (the everything server does not).
    let peers = peers().expect("the peers are installed (scripts/setup-peers.sh)");
    let stub = HttpStub::start();
    let policy = fetch_policy(true).replace("    allow:\n", "    approve:\n");
    assert!(policy.contains("approve:"), "{policy}");
    let policy = format!("{policy}sessions:\n  approval_ttl: 30s\n  approve_in_client: true\n");
    let setup = Setup::new(Mode::Plain, &policy, "research-bot", "fetch");
    let local = stub.url("/report.txt");
    let seen = session(
        &peers,
        Sdk::PythonClient("2026-07-28"),
        setup.wrap(&peers, &setup.fetch(&peers, &stub)),
        json!({
            "list_tools": false,
            "elicit": {"action": "accept", "content": {"decision": "approve"}},
            "calls": [{"name": "fetch", "arguments": {"url": local}}],
        }),
    );
    assert_eq!(
        seen.out["protocol_version"],
        "2026-07-28",
        "{}",
        seen.context()
    );
    seen.assert_allowed(0, STUB_BODY);
    let asked = seen.out["elicitations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(asked.len(), 1, "{}", seen.context());
    assert!(
        asked[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("fetch.fetch"),
        "{}",
        seen.context()
    );
    setup.assert_audit(&[("fetch.fetch", "approve"), ("fetch.fetch", "allow")]);
    let records = setup.export_audit();
    let grants: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "approval-grant")
        .collect();
    assert_eq!(grants.len(), 1, "{records:#?}");
    assert!(grants[0].to_string().contains("elicitation:research-bot"));
    let text = setup.server_saw_text();
    assert!(
        !text.contains("conductor.v1.") && !text.contains("dev.conductor/approval"),
        "the gate's state reached the server: {text}"
    );
    assert_eq!(stub.requests(), [setup.stub_line(&local)]);
}

#[test]
fn held_call_is_not_put_to_the_client_unless_the_policy_says_so() {
    // Fail closed: without `sessions.approve_in_client` the client is never asked (the
    // call waits for an approver outside the agent's channel, and here expires).
    let peers = peers().expect("the peers are installed (scripts/setup-peers.sh)");
    let policy = in_client_policy()
        .replace("approve_in_client: true", "approve_in_client: false")
        .replace("approval_ttl: 30s", "approval_ttl: 1s");
    let setup = Setup::new(Mode::Plain, &policy, "research-bot", "everything");
    let seen = session(
        &peers,
        Sdk::PythonSession,
        setup.wrap(&peers, &peers.everything()),
        json!({
            "list_tools": false,
            "elicit": {"action": "accept", "content": {"decision": "approve"}},
            "calls": [{"name": "get-sum", "arguments": {"a": 20, "b": 22}}],
        }),
    );
    assert_eq!(seen.out["elicitations"], json!([]), "{}", seen.context());
    seen.assert_denied(0, "approval", Some("approval.expired"));
}
