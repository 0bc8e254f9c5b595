//! `conductor serve` with real peers: the official Python and TypeScript SDK clients over
//! Streamable HTTP, through the gateway, to server-everything (stdio and its own Streamable
//! HTTP mode) and mcp-server-fetch (stdio); plus HTTP hygiene and upstream faults driven
//! with raw HTTP/1.1 on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{fixtures, workspace};

pub(crate) const DECISION_KEY: &str = "dev.conductor/decision";
const METADATA_URL: &str = "http://169.254.169.254/latest/meta-data/";

// ---------------------------------------------------------------------------------------
// Peers and the gateway process
// ---------------------------------------------------------------------------------------

pub(crate) fn peers() -> Option<PathBuf> {
    let dir = workspace().join(".peers");
    if dir.join("stamp").is_file() {
        return Some(dir.canonicalize().unwrap());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the MCP peers are not installed (run `bash scripts/setup-peers.sh`)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: `conductor serve` interop tests: `.peers` is missing (bash scripts/setup-peers.sh)"
    );
    None
}

pub(crate) fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

pub(crate) fn python(peers: &Path) -> String {
    s(&peers.join("venv/bin/python"))
}

pub(crate) fn everything_js(peers: &Path) -> String {
    s(&peers.join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
}

/// A child in its own process group, killed with everything it started when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
}

impl Proc {
    pub(crate) fn spawn(mut cmd: Command) -> Proc {
        cmd.process_group(0);
        Proc {
            child: cmd.spawn().unwrap(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One running gateway with its files in a temporary directory.
pub(crate) struct Gateway {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) addr: String,
    proc: Option<Proc>,
    log: Arc<Mutex<String>>,
}

const AGENT: &str = "research-bot";

const POLICY: &str = r#"version: 1
agents:
  research-bot:
    roles: [researcher]
roles:
  researcher:
    allow:
      - tools: ["everything.echo", "everything.get-sum", "everything.gzip-file-as-resource",
                "ev2.echo", "remote.echo", "remote.gzip-file-as-resource", "fetch.fetch", "fake.*"]
        actions: [read]
tools:
  everything.echo: {action: read}
  everything.get-sum: {action: read}
  everything.gzip-file-as-resource: {action: read}
  ev2.echo: {action: read}
  remote.echo: {action: read}
  remote.gzip-file-as-resource: {action: read}
  fetch.fetch:
    action: read
    destinations: [/url]
  fake.slow: {action: read, destinations: []}
  fake.crash: {action: read, destinations: []}
  fake.hang: {action: read, destinations: []}
  fake.garbage: {action: read, destinations: []}
  fake.env: {action: read, destinations: []}
  fake.echo: {action: read, destinations: []}
  fake.closes: {action: read, destinations: []}
  fake.read_resource: {action: read, destinations: []}
destinations:
  allow: ["*"]
  permit: [loopback]
"#;

impl Gateway {
    /// `servers` is the YAML of the `servers:` mapping (indented two spaces).
    fn start(servers: &str, extra: &str) -> Gateway {
        Gateway::start_with(servers, extra, &[])
    }

    /// [`Gateway::start`] with more `conductor serve` arguments.
    fn start_with(servers: &str, extra: &str, args: &[&str]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let gateway = format!(
            "version: 1\nlisten: \"127.0.0.1:0\"\norigins: [\"http://localhost:3000\"]\nservers:\n{servers}auth: {{none: {{agent: {AGENT}}}}}\n{extra}"
        );
        Gateway::launch(dir, POLICY, &gateway, args)
    }

    /// `conductor serve` in `dir` under `policy` and the whole gateway file `gateway`
    /// (its `listen` should be port 0), with more `serve` arguments.
    pub(crate) fn launch(
        dir: tempfile::TempDir,
        policy: &str,
        gateway: &str,
        args: &[&str],
    ) -> Gateway {
        Gateway::launch_env(dir, policy, gateway, args, &[])
    }

    /// [`Gateway::launch`] with more variables in the gateway's environment.
    pub(crate) fn launch_env(
        dir: tempfile::TempDir,
        policy: &str,
        gateway: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        std::fs::write(dir.path().join("gateway.yaml"), gateway).unwrap();
        let mut cmd = crate::conductor_in(dir.path());
        cmd.args([
            "serve",
            "--policy",
            "policy.yaml",
            "--config",
            "gateway.yaml",
            "--audit",
            "audit.db",
            "--print-address",
        ])
        .args(args)
        .env("GZIP_ALLOWED_DOMAINS", "127.0.0.1")
        .env("CONDUCTOR_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for v in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env_remove(v);
        }
        let mut proc = Proc::spawn(cmd);
        let stdout = proc.child.stdout.take().unwrap();
        let stderr = proc.child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).unwrap();
        let addr = first.trim().to_string();
        assert!(
            addr.starts_with("127.0.0.1:"),
            "serve did not start: `{addr}`\n{}",
            log.lock().unwrap()
        );
        Gateway {
            dir,
            addr,
            proc: Some(proc),
            log,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The audit records (event, tool, decision), read with `conductor audit export`.
    pub(crate) fn audit(&self) -> Vec<(String, String, String)> {
        let out = crate::conductor_in(self.dir.path())
            .args([
                "audit", "export", "--format", "jsonl", "--audit", "audit.db",
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                let g = |k: &str| v[k].as_str().unwrap_or("").to_string();
                (g("event"), g("tool"), g("decision"))
            })
            .collect()
    }

    /// SIGTERM and wait for the exit status.
    fn stop(&mut self) -> Option<i32> {
        let mut p = self.proc.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(st) = p.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// `python spy.py LOG -- <server…>` as a YAML flow list.
pub(crate) fn spied(peers: &Path, log: &Path, server: &[String]) -> String {
    let mut v = vec![
        python(peers),
        s(&fixtures().join("peers/spy.py")),
        s(log),
        "--".to_string(),
    ];
    v.extend(server.iter().cloned());
    serde_json::to_string(&v).unwrap()
}

pub(crate) fn spy_saw(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// SDK clients
// ---------------------------------------------------------------------------------------

const PY_CLIENT: &str = r#"
import asyncio, json, sys
from importlib.metadata import version
from mcp import Client

def dump(m):
    return m.model_dump(mode="json", by_alias=True, exclude_none=True)

async def main(plan):
    out = {"sdk": "python mcp " + version("mcp")}
    async with Client(plan["url"], mode=plan["mode"], read_timeout_seconds=60, cache=None) as c:
        out["protocol_version"] = c.protocol_version
        out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
        out["calls"] = []
        for call in plan["calls"]:
            try:
                out["calls"].append({"result": dump(await c.call_tool(call["name"], call["arguments"]))})
            except Exception as e:
                err = getattr(e, "error", None)
                out["calls"].append({"error": {"code": getattr(err, "code", None), "message": str(e)}})
    print(json.dumps(out))

asyncio.run(main(json.loads(sys.argv[1])))
"#;

const TS_CLIENT: &str = r#"
import { join } from "node:path";
import { pathToFileURL } from "node:url";
const plan = JSON.parse(process.argv[2]);
const modules = join(process.env.CONDUCTOR_PEERS_DIR, "node/node_modules");
const load = (rel) => import(pathToFileURL(join(modules, "@modelcontextprotocol/sdk/dist/esm", rel)).href);
const { Client } = await load("client/index.js");
const { StreamableHTTPClientTransport } = await load("client/streamableHttp.js");
const client = new Client({ name: "conductor-test", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(plan.url));
await client.connect(transport);
const out = { sdk: "typescript", session: transport.sessionId ?? null };
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
out.calls = [];
for (const call of plan.calls) {
  try {
    out.calls.push({ result: await client.callTool({ name: call.name, arguments: call.arguments }) });
  } catch (e) {
    out.calls.push({ error: { code: e.code ?? null, message: String(e.message ?? e) } });
  }
}
await transport.terminateSession();
await client.close();
console.log(JSON.stringify(out));
"#;

#[derive(Debug, Clone, Copy)]
enum Sdk {
    Python(&'static str),
    TypeScript,
}

fn client(peers: &Path, gw: &Gateway, sdk: Sdk, path: &str, calls: Value) -> Value {
    let plan = |mode: &str| json!({"url": gw.url(path), "mode": mode, "calls": calls}).to_string();
    let mut cmd = match sdk {
        Sdk::Python(mode) => {
            let script = gw.path("client.py");
            std::fs::write(&script, PY_CLIENT).unwrap();
            let mut c = Command::new(python(peers));
            c.arg(script).arg(plan(mode));
            c
        }
        Sdk::TypeScript => {
            let script = gw.path("client.mjs");
            std::fs::write(&script, TS_CLIENT).unwrap();
            let mut c = Command::new("node");
            c.arg(script).arg(plan("legacy"));
            c
        }
    };
    cmd.env("CONDUCTOR_PEERS_DIR", peers)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let proc = Proc::spawn(cmd);
    let start = Instant::now();
    let mut proc = proc;
    let status = loop {
        if let Some(st) = proc.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{sdk:?} client did not finish; serve log:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    proc.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    proc.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "{sdk:?} client failed:\n{out}\n{err}\nserve log:\n{}",
        gw.log()
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("no JSON ({e}): {out}\n{err}"))
}

pub(crate) fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn assert_allowed(out: &Value, i: usize, needle: &str) {
    let r = &out["calls"][i]["result"];
    assert!(
        r.is_object() && r["isError"] != true && text_of(r).contains(needle),
        "call #{i} should have succeeded with `{needle}`: {out:#}"
    );
}

fn assert_denied(out: &Value, i: usize, check: &str) {
    let r = &out["calls"][i]["result"];
    assert_eq!(r["isError"], true, "call #{i} should be refused: {out:#}");
    assert!(text_of(r).starts_with("denied by policy"), "{out:#}");
    let reasons = r["_meta"][DECISION_KEY]["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|x| x["check"] == check),
        "call #{i}: no `{check}` reason: {out:#}"
    );
}

// ---------------------------------------------------------------------------------------
// Real peers through serve
// ---------------------------------------------------------------------------------------

fn everything_stdio_through_serve(sdk: Sdk) {
    let Some(peers) = peers() else { return };
    let spy = tempfile::NamedTempFile::new().unwrap();
    let server = spied(
        &peers,
        spy.path(),
        &["node".into(), everything_js(&peers), "stdio".into()],
    );
    let gw = Gateway::start(
        &format!(
            "  everything:\n    command: {server}\n    env: {{GZIP_ALLOWED_DOMAINS: \"127.0.0.1\"}}\n"
        ),
        "",
    );
    let out = client(
        &peers,
        &gw,
        sdk,
        "/mcp/everything",
        json!([
            {"name": "echo", "arguments": {"message": "hello through serve"}},
            {"name": "gzip-file-as-resource", "arguments": {"name": "x.gz", "data": METADATA_URL}},
            {"name": "get-sum", "arguments": {"a": 2, "b": 3}},
        ]),
    );
    // Only the tools the agent may call are listed (the list is filtered by the gate).
    assert_eq!(
        out["tools"],
        json!(["echo", "get-sum", "gzip-file-as-resource"]),
        "{out:#}"
    );
    assert_allowed(&out, 0, "hello through serve");
    assert_denied(&out, 1, "destination");
    assert_allowed(&out, 2, "5");
    let saw = spy_saw(spy.path());
    assert!(
        saw.contains("hello through serve"),
        "the allowed call is missing upstream: {saw}"
    );
    // INVARIANT under test: the refused call never reached the upstream.
    assert!(
        !saw.contains("169.254.169.254"),
        "the upstream saw the metadata url:\n{saw}"
    );
    let audit = gw.audit();
    assert!(
        audit.contains(&(
            "tools/call".into(),
            "everything.gzip-file-as-resource".into(),
            "deny".into()
        )),
        "{audit:?}"
    );
    assert!(audit.contains(&(
        "tools/call".into(),
        "everything.echo".into(),
        "allow".into()
    )));
}

#[test]
fn serve_python_legacy_everything_stdio_metadata_refused_before_the_upstream() {
    everything_stdio_through_serve(Sdk::Python("legacy"));
}

#[test]
fn serve_python_stateless_everything_stdio_metadata_refused_before_the_upstream() {
    everything_stdio_through_serve(Sdk::Python("2026-07-28"));
}

#[test]
fn serve_typescript_everything_stdio_metadata_refused_before_the_upstream() {
    everything_stdio_through_serve(Sdk::TypeScript);
}

/// Two upstreams with the same tool name (`echo`) on `/mcp`: listed as `everything.echo` and
/// `ev2.echo`, and each call reaches its own server only.
fn two_upstreams_same_tool_name(sdk: Sdk) {
    let Some(peers) = peers() else { return };
    let spy1 = tempfile::NamedTempFile::new().unwrap();
    let spy2 = tempfile::NamedTempFile::new().unwrap();
    let ev = |log: &Path| {
        spied(
            &peers,
            log,
            &["node".into(), everything_js(&peers), "stdio".into()],
        )
    };
    let gw = Gateway::start(
        &format!(
            "  everything:\n    command: {}\n  ev2:\n    command: {}\n",
            ev(spy1.path()),
            ev(spy2.path())
        ),
        "",
    );
    let out = client(
        &peers,
        &gw,
        sdk,
        "/mcp",
        json!([
            {"name": "ev2.echo", "arguments": {"message": "to-the-second"}},
            {"name": "everything.echo", "arguments": {"message": "to-the-first"}},
            {"name": "ev2.get-sum", "arguments": {"a": 1, "b": 1}},
        ]),
    );
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"everything.echo") && tools.contains(&"ev2.echo"),
        "{out:#}"
    );
    // ev2.get-sum is not the agent's: not listed, and refused.
    assert!(!tools.contains(&"ev2.get-sum"), "{out:#}");
    assert_allowed(&out, 0, "to-the-second");
    assert_allowed(&out, 1, "to-the-first");
    assert_denied(&out, 2, "tool");
    let (a, b) = (spy_saw(spy1.path()), spy_saw(spy2.path()));
    assert!(
        a.contains("to-the-first") && !a.contains("to-the-second"),
        "first saw:\n{a}"
    );
    assert!(
        b.contains("to-the-second") && !b.contains("to-the-first"),
        "second saw:\n{b}"
    );
    // The upstream saw its own tool name, not the namespaced one.
    assert!(b.contains(r#""name":"echo""#), "second saw:\n{b}");
}

#[test]
fn serve_python_legacy_two_upstreams_with_the_same_tool_name_stay_distinct() {
    two_upstreams_same_tool_name(Sdk::Python("legacy"));
}

#[test]
fn serve_python_stateless_two_upstreams_with_the_same_tool_name_stay_distinct() {
    two_upstreams_same_tool_name(Sdk::Python("2026-07-28"));
}

#[test]
fn serve_typescript_two_upstreams_with_the_same_tool_name_stay_distinct() {
    two_upstreams_same_tool_name(Sdk::TypeScript);
}

/// A node preload that makes `app.listen(PORT)` bind 127.0.0.1 on a free port and print it.
pub(crate) const LISTEN_LOOPBACK: &str = r#"
const net = require("node:net");
const orig = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const cb = args.find((a) => typeof a === "function");
  this.once("listening", () => process.stderr.write(`LISTENING ${this.address().port}\n`));
  return orig.call(this, 0, "127.0.0.1", cb);
};
"#;

/// server-everything in its own Streamable HTTP mode, on 127.0.0.1.
fn everything_http(peers: &Path, dir: &Path) -> (Proc, u16, Arc<Mutex<String>>) {
    let preload = dir.join("listen-loopback.cjs");
    std::fs::write(&preload, LISTEN_LOOPBACK).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg("--require")
        .arg(&preload)
        .arg(everything_js(peers))
        .arg("streamableHttp")
        .env("GZIP_ALLOWED_DOMAINS", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let stderr = p.child.stderr.take().unwrap();
    let stdout = p.child.stdout.take().unwrap();
    let traffic = Arc::new(Mutex::new(String::new()));
    {
        let t = Arc::clone(&traffic);
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                t.lock().unwrap().push_str(&(l + "\n"));
            }
        });
    }
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(p) = l.strip_prefix("LISTENING ") {
            break p.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (p, port, traffic)
}

fn everything_remote(sdk: Sdk) {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, port, traffic) = everything_http(&peers, dir.path());
    let gw = Gateway::start(
        &format!(
            "  remote:\n    url: \"http://127.0.0.1:{port}/mcp\"\n    headers: {{X-Gateway: conductor}}\n"
        ),
        "",
    );
    let out = client(
        &peers,
        &gw,
        sdk,
        "/mcp/remote",
        json!([
            {"name": "echo", "arguments": {"message": "over streamable http"}},
            {"name": "gzip-file-as-resource", "arguments": {"name": "x.gz", "data": METADATA_URL}},
        ]),
    );
    assert_allowed(&out, 0, "over streamable http");
    assert_denied(&out, 1, "destination");
    // The upstream logs one line per POST it receives: the handshake (initialize and
    // notifications/initialized), tools/list and the allowed call — never the refused one.
    let seen = traffic
        .lock()
        .unwrap()
        .matches("Received MCP POST request")
        .count();
    assert!(
        seen >= 3,
        "the upstream saw {seen} posts:\n{}",
        traffic.lock().unwrap()
    );
    let audit = gw.audit();
    assert!(
        audit.contains(&(
            "tools/call".into(),
            "remote.gzip-file-as-resource".into(),
            "deny".into()
        )),
        "{audit:?}"
    );
}

#[test]
fn serve_python_legacy_to_everything_streamable_http_upstream() {
    everything_remote(Sdk::Python("legacy"));
}

#[test]
fn serve_python_stateless_to_everything_streamable_http_upstream() {
    everything_remote(Sdk::Python("2026-07-28"));
}

#[test]
fn serve_typescript_to_everything_streamable_http_upstream() {
    everything_remote(Sdk::TypeScript);
}

/// Answers every HTTP request with one canned body and records the request lines: the
/// proxy of mcp-server-fetch, so that nothing leaves the machine and every fetch is seen.
struct Stub {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    fn start() -> Stub {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in l.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(&stream);
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                r.lock().unwrap().push(first.trim_end().to_string());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim_end() != "" {
                    line.clear();
                }
                let body = "hello from the loopback stub";
                let _ = (&stream).write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
                );
            }
        });
        Stub { port, requests }
    }
}

#[test]
fn serve_python_fetch_stdio_metadata_refused_and_the_proxy_never_sees_it() {
    let Some(peers) = peers() else { return };
    let stub = Stub::start();
    let fetch = serde_json::to_string(&[
        s(&peers.join("venv/bin/mcp-server-fetch")),
        "--ignore-robots-txt".into(),
        "--allow-private-ips".into(),
        "--proxy-url".into(),
        format!("http://127.0.0.1:{}", stub.port),
    ])
    .unwrap();
    let gw = Gateway::start(&format!("  fetch:\n    command: {fetch}\n"), "");
    let ok_url = format!("http://127.0.0.1:{}/ok", stub.port);
    let out = client(
        &peers,
        &gw,
        Sdk::Python("2026-07-28"),
        "/mcp",
        json!([
            {"name": "fetch.fetch", "arguments": {"url": METADATA_URL}},
            {"name": "fetch.fetch", "arguments": {"url": "http://2852039166/latest/meta-data/"}},
            {"name": "fetch.fetch", "arguments": {"url": ok_url}},
        ]),
    );
    assert_denied(&out, 0, "destination");
    assert_denied(&out, 1, "destination");
    assert_allowed(&out, 2, "hello from the loopback stub");
    let seen = stub.requests.lock().unwrap().clone();
    assert!(seen.iter().any(|r| r.contains("/ok")), "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|r| r.contains("169.254") || r.contains("2852039166")),
        "the metadata service was requested: {seen:?}"
    );
}

/// `sandbox:` on a gateway stdio server: mcp-server-fetch runs in Conductor's sandbox
/// (the same crate and API as `wrap --sandbox`). What the gate allows goes out through the
/// egress proxy, decided again by the gateway's service and recorded as `fetch.egress`;
/// a name whose answers include the metadata address (the rebinding shape: one answer
/// checked, another used) is refused; and the server told to connect to the metadata
/// address itself (its `--proxy-url`, a raw connect that ignores the egress proxy)
/// reaches nothing, since the sandbox's network has no route out.
#[test]
fn serve_sandboxed_fetch_goes_out_only_through_the_egress_proxy() {
    let Some(peers) = peers() else { return };
    let stub = Stub::start();
    let fetch = |extra: &[&str]| {
        let mut cmd = vec![
            s(&peers.join("venv/bin/mcp-server-fetch")),
            "--ignore-robots-txt".to_string(),
            "--allow-private-ips".to_string(),
        ];
        cmd.extend(extra.iter().map(|a| (*a).to_string()));
        serde_json::to_string(&cmd).unwrap()
    };
    let ok_url = format!("http://127.0.0.1:{}/ok", stub.port);
    let rebind_url = format!("http://rebind.test:{}/rebound", stub.port);

    let mut gw = Gateway::start_with(
        &format!("  fetch:\n    command: {}\n    sandbox: true\n", fetch(&[])),
        "",
        &[
            "--no-dns",
            "--resolve",
            "rebind.test=127.0.0.1,169.254.169.254",
        ],
    );
    let out = client(
        &peers,
        &gw,
        Sdk::Python("2026-07-28"),
        "/mcp",
        json!([
            {"name": "fetch.fetch", "arguments": {"url": ok_url}},
            {"name": "fetch.fetch", "arguments": {"url": rebind_url}},
            {"name": "fetch.fetch", "arguments": {"url": METADATA_URL}},
        ]),
    );
    assert_allowed(&out, 0, "hello from the loopback stub");
    assert_denied(&out, 1, "destination");
    assert_denied(&out, 2, "destination");
    // Origin form: the request came through the egress proxy, not as the fetch server's
    // own proxy request.
    let seen = stub.requests.lock().unwrap().clone();
    assert_eq!(seen, ["GET /ok HTTP/1.1"], "{seen:?}");
    let audit = gw.audit();
    assert!(
        audit.contains(&(
            "egress".to_string(),
            "fetch.egress".to_string(),
            "allow".to_string()
        )),
        "{audit:?}\n{}",
        gw.log()
    );
    gw.stop();

    // The raw connect: the server ignores the egress proxy and dials the metadata address.
    let gw = Gateway::start(
        &format!(
            "  fetch:\n    command: {}\n    sandbox: {{env: [PYTHONUNBUFFERED]}}\n",
            fetch(&["--proxy-url", "http://169.254.169.254:80"])
        ),
        "",
    );
    let out = client(
        &peers,
        &gw,
        Sdk::Python("2026-07-28"),
        "/mcp",
        json!([{"name": "fetch.fetch", "arguments": {"url": ok_url}}]),
    );
    let result = &out["calls"][0]["result"];
    assert_eq!(result["isError"], true, "{out:#}");
    assert!(
        !text_of(result).contains("hello from the loopback stub"),
        "{out:#}"
    );
    assert_eq!(
        stub.requests.lock().unwrap().len(),
        1,
        "the stub saw the raw connect"
    );
    assert!(
        !gw.audit().iter().any(|(e, _, _)| e == "egress"),
        "the raw connect reached the egress proxy"
    );
}

// ---------------------------------------------------------------------------------------
// Raw HTTP: hygiene, routing headers, sessions
// ---------------------------------------------------------------------------------------

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON-RPC messages of the body (JSON, or the `data:` lines of an event stream).
    pub(crate) fn messages(&self) -> Vec<Value> {
        if let Ok(v) = serde_json::from_str::<Value>(&self.body) {
            return vec![v];
        }
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    }

    pub(crate) fn last(&self) -> Value {
        self.messages().pop().unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request; the answer read to its end (`Connection: close`).
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub(crate) const JSON_SSE: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];

pub(crate) fn init_body() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
    .to_string()
}

/// Open a 2025-11-25 session on `path`; its id.
fn open_session(gw: &Gateway, path: &str) -> String {
    let a = http(&gw.addr, "POST", path, &JSON_SSE, &init_body());
    assert_eq!(a.status, 200, "{}\n{}", a.body, gw.log());
    a.header("mcp-session-id").unwrap().to_string()
}

/// A raw JSON-RPC stdio server (no SDK), for faults: `slow` answers after a second, `crash`
/// exits mid-call, `hang` never answers, `garbage` answers with a line that is not JSON.
/// Every line it receives is appended to the file named by its first argument.
const FAKE_SERVER: &str = r#"
import json, os, sys, time
log = open(sys.argv[1], "a", buffering=1)
tools = [{"name": n, "description": n, "inputSchema": {"type": "object"}} for n in ["slow", "crash", "hang", "garbage", "env"]]
for line in sys.stdin:
    log.write(line)
    m = json.loads(line)
    if "id" not in m or "method" not in m:
        continue
    def answer(result):
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": result}) + "\n"); sys.stdout.flush()
    meth = m["method"]
    if meth == "initialize":
        answer({"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}}, "serverInfo": {"name": "fake", "version": "0"}})
    elif meth == "tools/list":
        answer({"tools": tools})
    elif meth == "tools/call":
        n = m["params"]["name"]
        if n == "slow":
            time.sleep(1); answer({"content": [{"type": "text", "text": "slow done"}]})
        elif n == "crash":
            sys.exit(3)
        elif n == "hang":
            pass
        elif n == "garbage":
            sys.stdout.write('{"jsonrpc": "2.0", "id": %s, "result": nope\n' % json.dumps(m["id"])); sys.stdout.flush()
        elif n == "env":
            answer({"content": [{"type": "text", "text": json.dumps(dict(os.environ))}]})
    else:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "error": {"code": -32601, "message": "no"}}) + "\n"); sys.stdout.flush()
"#;

fn fake_gateway(peers: &Path, extra_servers: &str) -> (Gateway, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let script = dir.join("fake.py");
    std::fs::write(&script, FAKE_SERVER).unwrap();
    let log = dir.join("fake.log");
    let cmd = serde_json::to_string(&[python(peers), s(&script), s(&log)]).unwrap();
    let gw = Gateway::start(
        &format!("  fake:\n    command: {cmd}\n    timeout_seconds: 3\n{extra_servers}"),
        "",
    );
    (gw, log)
}

fn call_body(id: u64, name: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": {}}})
        .to_string()
}

pub(crate) fn with_session(sid: &str) -> Vec<(&str, &str)> {
    let mut h = JSON_SSE.to_vec();
    h.push(("Mcp-Session-Id", sid));
    h.push(("MCP-Protocol-Version", "2025-11-25"));
    h
}

// Readers disagree on a body with a member name twice (serde_json and JSON.parse keep
// the last, first-wins readers the first) or two names equal under case folding (Go's
// encoding/json reads `paramſ` as `params`): refused with 400 before any decision, and
// the upstream never sees it.
#[test]
fn serve_a_body_with_an_ambiguous_member_name_is_refused_before_any_decision() {
    let Some(peers) = peers() else { return };
    let (gw, log) = fake_gateway(&peers, "");
    let sid = open_session(&gw, "/mcp/fake");
    for body in [
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","name":"crash","arguments":{}}}"#,
        "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{\"name\":\"slow\",\"arguments\":{}},\"param\u{17f}\":{\"name\":\"crash\"}}",
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow","arguments":{"a":{"k":1,"k":2}}}}"#,
    ] {
        let a = http(&gw.addr, "POST", "/mcp/fake", &with_session(&sid), body);
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert_eq!(a.last()["error"]["code"], -32600, "{}", a.body);
    }
    assert!(!spy_saw(&log).contains("tools/call"), "{}", spy_saw(&log));
}

#[test]
fn serve_a_stdio_server_never_inherits_the_gateways_secrets() {
    // Regression (red-team review 2026-12-04, round 2, S1): stdio servers inherited the
    // gateway's whole environment — every secret the gateway file references for other
    // servers and other agents — so any agent that could call a tool reading its
    // environment read them all. Now a server gets PATH, HOME, the locale and the like,
    // and what its `env:` names.
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fake.py");
    std::fs::write(&script, FAKE_SERVER).unwrap();
    let log = dir.path().join("fake.log");
    let cmd = serde_json::to_string(&[python(&peers), s(&script), s(&log)]).unwrap();
    let gateway = format!(
        "version: 1\nlisten: \"127.0.0.1:0\"\nservers:\n  fake:\n    command: {cmd}\n    env: {{GIVEN_TO_FAKE: \"${{env:FAKE_TOKEN}}\"}}\n  other:\n    url: \"http://127.0.0.1:9/mcp\"\n    headers: {{Authorization: \"Bearer ${{env:OTHER_SERVERS_TOKEN}}\"}}\nauth: {{none: {{agent: {AGENT}}}}}\n"
    );
    let gw = Gateway::launch_env(
        dir,
        POLICY,
        &gateway,
        &[],
        &[
            ("FAKE_TOKEN", "token-for-fake-0123"),
            ("OTHER_SERVERS_TOKEN", "token-for-other-4567"),
            ("AWS_SECRET_ACCESS_KEY", "gateway-host-credential-89ab"),
        ],
    );
    let sid = open_session(&gw, "/mcp/fake");
    let a = http(
        &gw.addr,
        "POST",
        "/mcp/fake",
        &with_session(&sid),
        &call_body(3, "env"),
    );
    assert_eq!(a.status, 200, "{}\n{}", a.body, gw.log());
    let text = a.last()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", a.body))
        .to_string();
    let env: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(
        env.get("GIVEN_TO_FAKE").and_then(Value::as_str),
        Some("token-for-fake-0123")
    );
    assert!(env.contains_key("PATH"), "{text}");
    for leaked in [
        "OTHER_SERVERS_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "FAKE_TOKEN",
        "CONDUCTOR_LOG",
    ] {
        assert!(
            !env.contains_key(leaked),
            "{leaked} reached the server: {text}"
        );
    }
    assert!(!text.contains("token-for-other") && !text.contains("gateway-host-credential"));
}

#[test]
fn serve_protocol_metadata_carrying_a_credential_never_reaches_an_upstream() {
    // Regression (red-team review 2026-12-04, round 2, S2): serve passed list methods
    // (their `cursor`, `_meta`), the aggregate `logging/setLevel`, the initialize params
    // (copied into every upstream's handshake) and a cancellation's `reason` to upstreams
    // without a decision; `wrap` decides protocol metadata when a detector finds
    // something in it. Each carries an AWS key id here; the fake server logs every line.
    let Some(peers) = peers() else { return };
    let (gw, log) = fake_gateway(&peers, "");
    let key = "AKIAQYLPMN5HHHFPZAM2";
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": format!("agent {key}"), "version": "0"}}})
    .to_string();
    let a = http(&gw.addr, "POST", "/mcp/fake", &JSON_SSE, &init);
    assert_eq!(a.status, 400, "{}", a.body);
    let sid = open_session(&gw, "/mcp/fake");
    let h = with_session(&sid);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list",
        "params": {"cursor": format!("page {key}")}})
    .to_string();
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &list);
    assert!(a.last().get("error").is_some(), "{}", a.body);
    let all = open_session(&gw, "/mcp");
    for method in ["tools/list", "resources/list", "logging/setLevel"] {
        let body = json!({"jsonrpc": "2.0", "id": 3, "method": method,
            "params": {"level": "debug", "cursor": format!("c {key}")}})
        .to_string();
        let a = http(&gw.addr, "POST", "/mcp", &with_session(&all), &body);
        assert_eq!(a.last()["error"]["code"], -32602, "{method}: {}", a.body);
    }
    // A cancellation reaches the upstream without the client's `reason`.
    let addr = gw.addr.clone();
    let hh: Vec<(String, String)> = h
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let slow = std::thread::spawn(move || {
        let hv: Vec<(&str, &str)> = hh.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        http(&addr, "POST", "/mcp/fake", &hv, &call_body(9, "slow"))
    });
    std::thread::sleep(Duration::from_millis(400));
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 9, "reason": format!("stop {key}")}})
    .to_string();
    http(&gw.addr, "POST", "/mcp/fake", &h, &cancel);
    let _ = slow.join();
    let saw = spy_saw(&log);
    assert!(saw.contains("notifications/cancelled"), "{saw}");
    assert!(
        !saw.contains(key),
        "a credential reached the upstream:\n{saw}"
    );
}

#[test]
fn serve_header_body_mismatch_is_refused_before_any_decision() {
    let Some(peers) = peers() else { return };
    let (gw, log) = fake_gateway(&peers, "");
    let sid = open_session(&gw, "/mcp/fake");
    let mut h = with_session(&sid);
    h.push(("Mcp-Method", "tools/list"));
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &call_body(7, "slow"));
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.last()["error"]["code"], -32020, "{}", a.body);
    // Stateless: Mcp-Name says one tool, the body another.
    let body = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {
        "name": "slow", "arguments": {}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let mut h = JSON_SSE.to_vec();
    h.extend([
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "garbage"),
    ]);
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &body);
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.last()["error"]["code"], -32020, "{}", a.body);
    // Unsupported revision.
    let mut h = JSON_SSE.to_vec();
    h.push(("MCP-Protocol-Version", "1999-01-01"));
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &call_body(9, "slow"));
    assert_eq!(a.status, 400, "{}", a.body);
    // Nothing was decided (no audit record) and the upstream saw no call.
    assert!(
        gw.audit().iter().all(|r| r.0 != "tools/call"),
        "{:?}",
        gw.audit()
    );
    assert!(!spy_saw(&log).contains("tools/call"), "{}", spy_saw(&log));
}

#[test]
fn serve_session_ids_are_bound_unknown_ones_are_404_and_delete_ends_them() {
    let Some(peers) = peers() else { return };
    let (gw, _) = fake_gateway(&peers, "");
    let sid = open_session(&gw, "/mcp/fake");
    assert_eq!(sid.len(), 32, "a 128-bit id: {sid}");
    let a = http(
        &gw.addr,
        "POST",
        "/mcp/fake",
        &with_session("0123456789abcdef0123456789abcdef"),
        &call_body(2, "slow"),
    );
    assert_eq!(a.status, 404);
    // The session belongs to its endpoint too.
    let a = http(
        &gw.addr,
        "POST",
        "/mcp",
        &with_session(&sid),
        &call_body(2, "fake.slow"),
    );
    assert_eq!(a.status, 404);
    let a = http(
        &gw.addr,
        "POST",
        "/mcp/fake",
        &with_session(&sid),
        &call_body(3, "slow"),
    );
    assert_eq!(a.status, 200);
    assert!(
        text_of(&a.last()["result"]).contains("slow done"),
        "{}",
        a.body
    );
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let a = http(&gw.addr, "DELETE", "/mcp/fake", &with_session(&sid), "");
    assert_eq!(a.status, 204);
    let a = http(
        &gw.addr,
        "POST",
        "/mcp/fake",
        &with_session(&sid),
        &call_body(4, "slow"),
    );
    assert_eq!(a.status, 404);
}

#[test]
fn serve_origin_host_body_size_and_shape_are_checked() {
    let Some(peers) = peers() else { return };
    let (gw, _) = fake_gateway(&peers, "");
    let mut h = JSON_SSE.to_vec();
    h.push(("Origin", "http://evil.example"));
    assert_eq!(http(&gw.addr, "POST", "/mcp", &h, &init_body()).status, 403);
    let mut h = JSON_SSE.to_vec();
    h.push(("Origin", "http://localhost:3000"));
    assert_eq!(http(&gw.addr, "POST", "/mcp", &h, &init_body()).status, 200);
    let mut h = JSON_SSE.to_vec();
    h.push(("Host", "rebound.example:80"));
    assert_eq!(http(&gw.addr, "POST", "/mcp", &h, &init_body()).status, 421);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(5 * 1024 * 1024)
    );
    assert_eq!(http(&gw.addr, "POST", "/mcp", &JSON_SSE, &big).status, 413);
    let dup = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","method":"tools/call","params":{}}"#;
    assert_eq!(http(&gw.addr, "POST", "/mcp", &JSON_SSE, dup).status, 400);
    let batch = format!("[{}]", init_body());
    assert_eq!(
        http(&gw.addr, "POST", "/mcp", &JSON_SSE, &batch).status,
        400
    );
    let a = http(&gw.addr, "GET", "/healthz", &[], "");
    assert_eq!(a.status, 200);
    let a = http(&gw.addr, "GET", "/readyz", &[], "");
    assert_eq!(a.status, 200, "{}", a.body);
}

#[test]
fn serve_upstream_crash_hang_and_garbage_give_clear_errors_and_the_upstream_restarts() {
    let Some(peers) = peers() else { return };
    let (gw, log) = fake_gateway(&peers, "");
    let sid = open_session(&gw, "/mcp/fake");
    let h = with_session(&sid);
    // A hanging call does not block a second call on the same session.
    let (addr, h2) = (
        gw.addr.clone(),
        h.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>(),
    );
    let hang = std::thread::spawn(move || {
        let h: Vec<(&str, &str)> = h2.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        http(&addr, "POST", "/mcp/fake", &h, &call_body(10, "hang"))
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut ht = h.clone();
    ht.push(("traceparent", tp));
    let a = http(&gw.addr, "POST", "/mcp/fake", &ht, &call_body(11, "slow"));
    assert!(
        text_of(&a.last()["result"]).contains("slow done"),
        "{}",
        a.body
    );
    // The trace context reached the stdio upstream in `_meta`.
    assert!(
        spy_saw(&log).contains(&format!(r#""traceparent":"{tp}""#)),
        "{}",
        spy_saw(&log)
    );
    let hung = hang.join().unwrap();
    assert!(
        hung.last()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("did not answer in time"),
        "{}",
        hung.body
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // The hung call was cancelled upstream.
    let start = Instant::now();
    while !spy_saw(&log).contains("notifications/cancelled") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no cancellation upstream:\n{}",
            spy_saw(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Garbage.
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &call_body(12, "garbage"));
    assert!(
        a.last()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a valid json-rpc message"),
        "{}",
        a.body
    );
    // A crash mid-call answers the call, and the next call restarts the upstream.
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &call_body(13, "crash"));
    assert!(
        a.last()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("exited before answering"),
        "{}",
        a.body
    );
    let mut ok = false;
    for i in 0..40 {
        let a = http(
            &gw.addr,
            "POST",
            "/mcp/fake",
            &h,
            &call_body(20 + i, "slow"),
        );
        if text_of(&a.last()["result"]).contains("slow done") {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(ok, "the upstream was not restarted:\n{}", gw.log());
    assert!(
        gw.log().contains("upstream died; restarting it"),
        "{}",
        gw.log()
    );
}

#[test]
fn serve_client_disconnect_mid_stream_cancels_the_call_upstream() {
    let Some(peers) = peers() else { return };
    let (gw, log) = fake_gateway(&peers, "");
    let sid = open_session(&gw, "/mcp/fake");
    let mut stream = TcpStream::connect(&gw.addr).unwrap();
    let body = call_body(5, "hang");
    let req = format!(
        "POST /mcp/fake HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: {sid}\r\nContent-Length: {}\r\n\r\n{body}",
        gw.addr,
        body.len()
    );
    stream.write_all(req.as_bytes()).unwrap();
    // Wait until the upstream has the call, then go away.
    let start = Instant::now();
    while !spy_saw(&log).contains("\"hang\"") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the call never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stream);
    let start = Instant::now();
    while !spy_saw(&log).contains("notifications/cancelled") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no cancellation reached the upstream:\n{}",
            spy_saw(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(spy_saw(&log).contains("the client went away"));
}

#[test]
fn serve_a_thousand_concurrent_sessions() {
    let Some(peers) = peers() else { return };
    let (gw, _) = fake_gateway(&peers, "");
    let addr = gw.addr.clone();
    let workers: Vec<_> = (0..20)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for _ in 0..50 {
                    let a = http(&addr, "POST", "/mcp", &JSON_SSE, &init_body());
                    assert_eq!(a.status, 200, "{}", a.body);
                    let sid = a.header("mcp-session-id").unwrap().to_string();
                    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}).to_string();
                    let p = http(&addr, "POST", "/mcp", &with_session(&sid), &ping);
                    assert_eq!(p.last()["result"], json!({}), "{}", p.body);
                    ids.push(sid);
                }
                ids
            })
        })
        .collect();
    let mut all: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000);
    let m = http(&gw.addr, "GET", "/metrics", &[], "");
    assert!(m.body.contains("conductor_sessions 1000"), "{}", m.body);
}

#[test]
fn serve_metrics_never_publish_a_credential_named_as_a_tool() {
    // Regression (red-team review 2026-12-04, round 2, S3): the `tool` label of
    // conductor_calls_total was the client's raw name, so a token an agent was tricked
    // into calling a tool after was published on /metrics (which the decision itself
    // redacted), and every new name made a new series.
    let Some(peers) = peers() else { return };
    let (gw, _) = fake_gateway(&peers, "");
    let sid = open_session(&gw, "/mcp/fake");
    let h = with_session(&sid);
    let token = "ghp_R2hBz8kQ1vXyL0pTqW3eN7mC5aJ6sD4fG9hK";
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &call_body(2, token));
    assert_eq!(a.status, 200, "{}", a.body);
    let m = http(&gw.addr, "GET", "/metrics", &[], "").body;
    assert!(!m.contains(token) && !m.contains("R2hBz8kQ1vXyL0pT"), "{m}");
    assert!(
        m.contains(r#"conductor_calls_total{server="fake",tool="[REDACTED"#),
        "the refused call is not counted under a redacted name: {m}"
    );
}

#[test]
fn serve_metrics_count_calls_by_decision_and_shutdown_drains_and_exits_cleanly() {
    let Some(peers) = peers() else { return };
    let (mut gw, _) = fake_gateway(&peers, "");
    let sid = open_session(&gw, "/mcp/fake");
    let h = with_session(&sid);
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &call_body(2, "slow"));
    assert!(
        text_of(&a.last()["result"]).contains("slow done"),
        "{}",
        a.body
    );
    let refused = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "nope", "arguments": {}}}).to_string();
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &refused);
    assert_eq!(a.last()["result"]["isError"], true, "{}", a.body);
    let m = http(&gw.addr, "GET", "/metrics", &[], "").body;
    assert!(
        m.contains(r#"conductor_calls_total{server="fake",tool="slow",decision="allow"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"conductor_refusals_total{server="fake",check="role"} 1"#),
        "{m}"
    );
    assert!(m.contains("conductor_call_duration_seconds_bucket"), "{m}");
    // A call in flight when SIGTERM arrives is answered before the gateway exits.
    let (addr, hv) = (
        gw.addr.clone(),
        h.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>(),
    );
    let inflight = std::thread::spawn(move || {
        let h: Vec<(&str, &str)> = hv.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        http(&addr, "POST", "/mcp/fake", &h, &call_body(4, "slow"))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gw.stop(), Some(0), "{}", gw.log());
    let a = inflight.join().unwrap();
    assert!(
        text_of(&a.last()["result"]).contains("slow done"),
        "{}",
        a.body
    );
    // Every decision was committed: the chain verifies.
    let v = crate::conductor_in(gw.dir.path())
        .args(["audit", "verify", "--audit", "audit.db"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn gateway_validate_reports_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("gateway.yaml");
    std::fs::write(
        &p,
        "version: 1\nlisten: \"0.0.0.0:8080\"\nservers:\n  Bad:\n    command: [x]\n  w:\n    url: \"http://127.0.0.1:1/\"\n    headers: {A: \"${env:CONDUCTOR_TEST_UNSET_VAR}\"}\nauth: {none: {agent: a}}\nextra: true\n",
    )
    .unwrap();
    let r = crate::run_in(dir.path(), &["gateway", "validate", "gateway.yaml"], "");
    assert_eq!(r.code, 65, "{}", r.stderr);
    for needle in [
        "gateway.yaml:2:9",
        "not a loopback address",
        "invalid server id `Bad`",
        "environment variable `CONDUCTOR_TEST_UNSET_VAR` is not set",
        "unknown key `extra`",
    ] {
        assert!(
            r.stderr.contains(needle),
            "`{needle}` missing:\n{}",
            r.stderr
        );
    }
    std::fs::write(
        &p,
        "version: 1\nservers: {a: {command: [x]}}\nauth: {none: {agent: a}}\n",
    )
    .unwrap();
    let r = crate::run_in(dir.path(), &["gateway", "validate", "gateway.yaml"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("valid (1 server, listen 127.0.0.1:8080)"),
        "{}",
        r.stdout
    );
}

#[test]
fn serve_an_invalid_gateway_file_on_reload_keeps_the_last_good_one() {
    let Some(peers) = peers() else { return };
    let (gw, _) = fake_gateway(&peers, "");
    let path = gw.path("gateway.yaml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{good}bogus: 1\n")).unwrap();
    let start = Instant::now();
    while !gw.log().contains("the gateway file changed but is invalid") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no report:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gw.log().contains("unknown key `bogus`"), "{}", gw.log());
    // Still serving with the last good configuration.
    let sid = open_session(&gw, "/mcp/fake");
    let a = http(
        &gw.addr,
        "POST",
        "/mcp/fake",
        &with_session(&sid),
        &call_body(2, "slow"),
    );
    assert!(
        text_of(&a.last()["result"]).contains("slow done"),
        "{}",
        a.body
    );
}

// Regression: serve's policy watcher stamped only the policy file, so an edited
// gitleaks rules file the policy references never took effect while serving.
#[test]
fn serve_an_edited_rules_file_is_put_in_force() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rule = |prefix: &str| {
        format!(
            "[[rules]]\nid = \"{prefix}\"\nregex = \"{prefix}_[a-z0-9]{{20}}\"\nkeywords = [\"{prefix}_\"]\n"
        )
    };
    std::fs::write(dir.path().join("rules.toml"), rule("oldtok")).unwrap();
    let policy = POLICY.replace(
        "destinations:\n  allow: [\"*\"]",
        "data:\n  labels:\n    inhouse: {level: secret, detect: [{gitleaks: rules.toml}]}\ndestinations:\n  allow: [\"*\"]",
    );
    assert_ne!(policy, POLICY);
    let script = dir.path().join("fake.py");
    std::fs::write(&script, FAKE_SERVER).unwrap();
    let cmd = serde_json::to_string(&[python(&peers), s(&script), s(&dir.path().join("fake.log"))])
        .unwrap();
    let gateway = format!(
        "version: 1\nlisten: \"127.0.0.1:0\"\norigins: [\"http://localhost:3000\"]\nservers:\n  fake:\n    command: {cmd}\n    timeout_seconds: 3\nauth: {{none: {{agent: {AGENT}}}}}\n"
    );
    let gw = Gateway::launch(dir, &policy, &gateway, &[]);
    let sid = open_session(&gw, "/mcp/fake");
    let call = |id: u64| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "slow", "arguments": {"message": "newtok_k3j9x0q2m5n8b1v4c7z6"}}})
        .to_string();
        http(&gw.addr, "POST", "/mcp/fake", &with_session(&sid), &body)
    };
    let a = call(2);
    assert_eq!(
        a.last()["result"]["content"][0]["text"],
        "slow done",
        "{}",
        a.body
    );

    std::fs::write(gw.path("rules.toml"), rule("newtok")).unwrap();
    let start = Instant::now();
    while !gw.log().contains("policy reloaded") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no reload:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The new rule finds the token: refused as a tool error naming the label.
    let a = call(3);
    let decision = &a.last()["result"]["_meta"]["dev.conductor/decision"];
    assert_eq!(decision["decision"], "deny", "{}", a.body);
    assert_eq!(
        decision["findings"][0]["detector"], "gitleaks.newtok",
        "{}",
        a.body
    );
    assert_eq!(
        decision["reasons"][0]["rule"], "data.labels.inhouse",
        "{}",
        a.body
    );
}

#[test]
fn serve_a_slow_client_is_cut_off_after_the_header_timeout() {
    let Some(peers) = peers() else { return };
    let (gw, _) = fake_gateway(&peers, "");
    let mut stream = TcpStream::connect(&gw.addr).unwrap();
    stream
        .write_all(b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    // Cut off by the gateway (10 s header timeout), not by our own 30 s read timeout.
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "{:?}",
        start.elapsed()
    );
    // Other clients are served meanwhile and after.
    assert_eq!(http(&gw.addr, "GET", "/healthz", &[], "").status, 200);
}

/// A raw Streamable HTTP upstream (Python's http.server, no SDK) for faults: `closes` opens
/// an event stream, sends a progress notification and closes it without answering;
/// `garbage` answers `application/json` that is not JSON; `echo` answers properly.
/// Every body it receives is appended to the file named by its first argument.
const FAKE_HTTP: &str = r#"
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
log = open(sys.argv[1], "a", buffering=1)
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send(self, status, ctype, body, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra: self.send_header(k, v)
        self.end_headers(); self.wfile.write(body)
    def do_DELETE(self):
        log.write("DELETE " + str(self.headers.get("mcp-session-id")) + "\n")
        self.send(200, "text/plain", b"")
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        log.write(body.decode() + " tp=" + str(self.headers.get("traceparent")) + "\n")
        m = json.loads(body)
        if "id" not in m:
            return self.send(202, "text/plain", b"")
        def ok(result, extra=()):
            self.send(200, "application/json", json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": result}).encode(), extra)
        meth = m.get("method")
        if meth == "initialize":
            return ok({"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}}, "serverInfo": {"name": "fakehttp", "version": "0"}}, [("Mcp-Session-Id", "upstream-session-1")])
        if meth == "tools/list":
            return ok({"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in ["echo", "closes", "garbage"]]})
        if meth == "subscriptions/listen":
            # A listen stream: the acknowledgement, then a tools notification every 0.1 s
            # (and one tagged for a subscription that is not open), until the client goes.
            # `ndjson` in the params: one JSON text per line under application/json, as
            # the conformance suite's reference server streams it.
            nd = m["params"].get("ndjson")
            sub = str(m["id"])
            def frame(v):
                return (json.dumps(v) + "\n") if nd else ("event: message\ndata: " + json.dumps(v) + "\n\n")
            self.send_response(200)
            self.send_header("Content-Type", "application/json" if nd else "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            tag = lambda s: {"_meta": {"io.modelcontextprotocol/subscriptionId": s}}
            try:
                self.wfile.write(frame({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                                        "params": dict(tag(sub), notifications=m["params"]["notifications"])}).encode())
                while True:
                    self.wfile.flush()
                    time.sleep(0.1)
                    self.wfile.write(frame({"jsonrpc": "2.0", "method": "notifications/resources/list_changed", "params": tag("999999")}).encode())
                    self.wfile.write(frame({"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": tag(sub)}).encode())
            except (BrokenPipeError, ConnectionResetError):
                log.write("LISTEN CLOSED " + sub + "\n")
            return
        if meth == "tools/call":
            n = m["params"]["name"]
            if n == "echo":
                return ok({"content": [{"type": "text", "text": "echo " + str(self.headers.get("mcp-session-id"))}]})
            if n == "garbage":
                return self.send(200, "application/json", b"nope")
            if n == "closes":
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}}
                self.wfile.write(("event: message\ndata: " + json.dumps(note) + "\n\n").encode())
                self.wfile.flush()
                self.close_connection = True
                return
        self.send(200, "application/json", json.dumps({"jsonrpc": "2.0", "id": m["id"], "error": {"code": -32601, "message": "no"}}).encode())
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// FAKE_HTTP on 127.0.0.1 behind a gateway; the gateway, the upstream and its log.
fn fake_http_gateway(peers: &Path, dir: &Path, timeout_seconds: u64) -> (Gateway, Proc, PathBuf) {
    let script = dir.join("fakehttp.py");
    std::fs::write(&script, FAKE_HTTP).unwrap();
    let log = dir.join("fakehttp.log");
    let mut cmd = Command::new(python(peers));
    cmd.arg(&script)
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut upstream = Proc::spawn(cmd);
    let mut port = String::new();
    BufReader::new(upstream.child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let servers = format!(
        "  fake:\n    url: \"http://127.0.0.1:{}/mcp\"\n    timeout_seconds: {timeout_seconds}\n",
        port.trim()
    );
    (Gateway::start(&servers, ""), upstream, log)
}

// A `subscriptions/listen` stream (SSE, or JSON texts in a row as the conformance suite's
// reference server sends them) is relayed for longer than the server's timeout, every
// notification tagged with the client's own id, none of a subscription not open; when its
// client goes away the gateway drops the upstream stream.
#[test]
fn serve_a_subscription_stream_is_relayed_until_its_client_goes() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (gw, _upstream, log) = fake_http_gateway(&peers, dir.path(), 1);
    let sid = open_session(&gw, "/mcp/fake");
    for (round, (id, ndjson)) in [(77u64, false), (78, true)].into_iter().enumerate() {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": {
            "notifications": {"toolsListChanged": true}, "ndjson": ndjson}})
        .to_string();
        let mut stream = TcpStream::connect(&gw.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut req = format!("POST /mcp/fake HTTP/1.1\r\nHost: {}\r\n", gw.addr);
        for (k, v) in with_session(&sid) {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(req.as_bytes()).unwrap();
        let mut lines = BufReader::new(stream.try_clone().unwrap()).lines();
        let mut frames: Vec<Value> = Vec::new();
        let start = Instant::now();
        // Past twice the server's 1 s timeout.
        while start.elapsed() < Duration::from_millis(2500) {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                other => panic!(
                    "the stream ended ({other:?}) after {frames:?}\n{}\n{}",
                    gw.log(),
                    spy_saw(&log)
                ),
            };
            if let Some(d) = line.strip_prefix("data: ") {
                frames.push(serde_json::from_str(d).unwrap());
            }
        }
        assert_eq!(
            frames[0]["method"], "notifications/subscriptions/acknowledged",
            "{frames:?}"
        );
        assert!(frames.len() > 3, "{frames:?}");
        for f in &frames {
            assert_eq!(
                f["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], id,
                "{f}"
            );
            assert!(f.get("error").is_none(), "{f}");
        }
        assert!(
            frames[1..]
                .iter()
                .all(|f| f["method"] == "notifications/tools/list_changed")
        );
        drop(lines);
        drop(stream);
        let start = Instant::now();
        // (The upstream logs its own id of the listen request, not the client's.)
        while spy_saw(&log).matches("LISTEN CLOSED").count() < round + 1 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the upstream stream was not dropped:\n{}",
                spy_saw(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // A client that takes JSON only cannot be given a stream.
    let body = json!({"jsonrpc": "2.0", "id": 79, "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": true}}})
    .to_string();
    let mut h = with_session(&sid);
    h[1] = ("Accept", "application/json");
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &body);
    assert!(
        a.last()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("text/event-stream"),
        "{}",
        a.body
    );
}

#[test]
fn serve_http_upstream_closed_stream_and_garbage_give_clear_errors_and_sessions_are_kept() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (gw, _upstream, log) = fake_http_gateway(&peers, dir.path(), 5);
    let sid = open_session(&gw, "/mcp/fake");
    let mut h = with_session(&sid);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    h.push(("traceparent", tp));
    // The upstream's own session id is kept and sent back; the trace context is carried.
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &call_body(2, "echo"));
    assert!(
        text_of(&a.last()["result"]).contains("echo upstream-session-1"),
        "{}",
        a.body
    );
    assert!(
        spy_saw(&log).contains(&format!("tp={tp}")),
        "{}",
        spy_saw(&log)
    );
    // A stream closed before the answer: the notification is relayed, then a clear error.
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &call_body(3, "closes"));
    let msgs = a.messages();
    assert!(
        msgs.iter().any(|m| m["method"] == "notifications/message"),
        "{}",
        a.body
    );
    assert!(
        a.last()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("closed its stream before answering"),
        "{}",
        a.body
    );
    let a = http(&gw.addr, "POST", "/mcp/fake", &h, &call_body(4, "garbage"));
    assert!(
        a.last()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a json-rpc message"),
        "{}",
        a.body
    );
    // DELETE ends the upstream session too.
    assert_eq!(
        http(&gw.addr, "DELETE", "/mcp/fake", &with_session(&sid), "").status,
        204
    );
    let start = Instant::now();
    while !spy_saw(&log).contains("DELETE upstream-session-1") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{}",
            spy_saw(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
