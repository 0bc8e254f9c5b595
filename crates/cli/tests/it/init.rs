//! Tests of `conductor init` on the three client configuration formats (Claude Desktop
//! and Cursor `mcpServers`, VS Code `servers`) with the REAL reference servers from
//! `.peers` (server-everything, server-filesystem, mcp-server-fetch): the generated
//! policy validates, its test file passes, and the rewritten configuration's command
//! starts the server under `conductor wrap` and the gate answers.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::{conductor_in, run_in, workspace};

fn peers() -> Option<std::path::PathBuf> {
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
        "SKIPPED: `conductor init` tests need the MCP peers in .peers (bash scripts/setup-peers.sh)"
    );
    None
}

fn servers(peers: &Path, root: &Path) -> Value {
    let node = |m: &str| {
        peers
            .join("node/node_modules")
            .join(m)
            .display()
            .to_string()
    };
    json!({
        "everything": {"command": "node",
            "args": [node("@modelcontextprotocol/server-everything/dist/index.js"), "stdio"]},
        "Filesystem": {"command": "node",
            "args": [node("@modelcontextprotocol/server-filesystem/dist/index.js"), root.display().to_string()]},
        "fetch": {"command": peers.join("venv/bin/mcp-server-fetch").display().to_string(), "args": []},
        "broken": {"command": root.join("no-such-server").display().to_string(), "args": []},
    })
}

/// Run `init`, then check everything it wrote; start `start` (a config key) as the
/// rewritten configuration says and list its tools through the gate.
fn init_case(client: &str, file: &str, key: &str, extra: Value, start: &str, tool: &str) {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = extra;
    config[key] = servers(&peers, dir.path());
    let config_path = dir.path().join(file);
    let original = serde_json::to_string_pretty(&config).unwrap();
    std::fs::write(&config_path, &original).unwrap();
    let audit = dir.path().join("audit.db").display().to_string();
    let cfg = config_path.display().to_string();

    // --dry-run shows the diff and writes nothing.
    let r = run_in(
        dir.path(),
        &[
            "init",
            "--client",
            client,
            "--config",
            &cfg,
            "--out-dir",
            "out",
            "--audit",
            &audit,
            "--timeout",
            "120",
            "--dry-run",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("+        \"wrap\","), "{}", r.stdout);
    assert!(!dir.path().join("out").exists());
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), original);

    let r = run_in(
        dir.path(),
        &[
            "init",
            "--client",
            client,
            "--config",
            &cfg,
            "--out-dir",
            "out",
            "--audit",
            &audit,
            "--timeout",
            "120",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{r:?}");
    // The server that does not start is reported and left as it was.
    assert!(
        r.stderr.contains("server `broken` did not list its tools"),
        "{}",
        r.stderr
    );
    let backup = std::fs::read_to_string(format!("{cfg}.conductor-backup")).unwrap();
    assert_eq!(backup, original);
    let new: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    assert_eq!(new[key]["broken"], config[key]["broken"]);
    for k in ["everything", "Filesystem", "fetch"] {
        assert_eq!(
            new[key][k]["args"][0], "wrap",
            "{k}: {} {}",
            new[key][k], r.stderr
        );
    }
    // Keys the client uses for other things survive.
    for (k, v) in config.as_object().unwrap() {
        if k != key {
            assert_eq!(&new[k], v);
        }
    }

    // The policy validates and its generated tests pass.
    let out = dir.path().join("out");
    let policy = std::fs::read_to_string(out.join("policy.yaml")).unwrap();
    assert!(policy.contains("\"fetch.fetch\":"), "{policy}");
    assert!(policy.contains("destinations: [\"/url\"]"), "{policy}");
    assert!(
        policy.contains("\"filesystem.write_file\":\n    action: delete"),
        "{policy}"
    );
    let r = run_in(&out, &["policy", "validate", "policy.yaml"], "");
    assert_eq!(r.code, 0, "{r:?}");
    let r = run_in(&out, &["policy", "test", "policy.test.yaml"], "");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("0 failed"), "{}", r.stdout);

    // The rewritten entry starts, and the gate answers.
    let entry = &new[key][start];
    let args: Vec<String> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        entry["command"].as_str().unwrap(),
        env!("CARGO_BIN_EXE_conductor")
    );
    let mut child = conductor_in(dir.path())
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = |send: &[Value], id: i64| -> Value {
        for v in send {
            writeln!(stdin, "{v}").unwrap();
        }
        stdin.flush().unwrap();
        loop {
            let line = lines.next().unwrap().unwrap();
            let m: Value = serde_json::from_str(&line).unwrap();
            if m["id"] == id {
                return m;
            }
        }
    };
    let init = ask(
        &[
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}),
        ],
        1,
    );
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let list = ask(
        &[
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        ],
        2,
    );
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&tool), "{names:?}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn claude_desktop_config_with_the_reference_servers() {
    init_case(
        "claude-desktop",
        "claude_desktop_config.json",
        "mcpServers",
        json!({"globalShortcut": "Ctrl+Space"}),
        "fetch",
        "fetch",
    );
}

#[test]
fn vscode_config_with_the_reference_servers() {
    init_case(
        "vscode",
        "mcp.json",
        "servers",
        json!({"inputs": [{"type": "promptString", "id": "token", "description": "a token"}]}),
        "Filesystem",
        "read_text_file",
    );
}

#[test]
fn cursor_config_with_the_reference_servers() {
    init_case(
        "cursor",
        "mcp.json",
        "mcpServers",
        json!({}),
        "everything",
        "echo",
    );
}

#[test]
fn a_config_without_its_servers_object_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mcp.json");
    std::fs::write(&p, r#"{"mcpServers": {}}"#).unwrap();
    let cfg = p.display().to_string();
    // VS Code reads `servers`, not `mcpServers`.
    let r = run_in(
        dir.path(),
        &["init", "--client", "vscode", "--config", &cfg],
        "",
    );
    assert_eq!(r.code, 65, "{r:?}");
    assert!(r.stderr.contains("has no `servers` object"), "{r:?}");
    std::fs::write(&p, "not json").unwrap();
    let r = run_in(
        dir.path(),
        &["init", "--client", "cursor", "--config", &cfg],
        "",
    );
    assert_eq!(r.code, 65, "{r:?}");
}
