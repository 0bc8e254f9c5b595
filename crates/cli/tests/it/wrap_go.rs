//! Member smuggling against a REAL Go reader: a stdio MCP server built in the test with
//! Go's `encoding/json` (crates/cli/tests/fixtures/go/server.go), behind `conductor wrap`.
//!
//! Regression (issue 10, class 2): `encoding/json` matches member names with Unicode case
//! folding and keeps the last match, so `paramſ` (U+017F) is `params` to it. Probing found
//! a server running `delete_everything` while the gate had decided — and the audit trail
//! recorded — `echo`. The control half of the test proves the differential is real
//! (the server, reached directly, runs the smuggled tool); the gated half proves wrap
//! refuses the message and the server never sees it.
//!
//! Go comes from Debian (`golang-go`, installed by scripts/test.sh when missing). Without
//! it the test says so loudly and passes, except under CI, where it fails.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{conductor_in, fixtures};

fn go() -> Option<PathBuf> {
    for p in ["/usr/bin/go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go"] {
        if Path::new(p).is_file() {
            return Some(PathBuf::from(p));
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "go is not installed (scripts/test.sh installs Debian's golang-go)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: the Go member-smuggling test: `go` is missing (apt-get install golang-go) ***\n"
    );
    None
}

/// Build the Go server into `dir`.
fn build(go: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("go-spy-server");
    let status = Command::new(go)
        .args(["build", "-o"])
        .arg(&out)
        .arg(fixtures().join("go/server.go"))
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "")
        .status()
        .unwrap();
    assert!(status.success(), "go build failed");
    out
}

/// Run `cmd` with `input` on its stdin (then closed); its stdout lines.
fn exchange(mut cmd: Command, input: &str) -> Vec<Value> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(data.as_bytes());
    });
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    writer.join().unwrap();
    let _ = child.wait();
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

const POLICY: &str = r#"version: 1
agents:
  bot: {roles: [r]}
roles:
  r:
    allow:
      - tools: ["go.echo"]
destinations:
  allow: ["*"]
"#;

fn lines() -> String {
    let smuggled = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{}},\"param\u{17f}\":{\"name\":\"delete_everything\",\"arguments\":{}}}";
    // Go reads the last case-insensitive match of `method`: `tools/call`, not `ping`.
    let kelvin = "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\",\"METHOD\":\"tools/call\",\"params\":{\"name\":\"delete_everything\",\"arguments\":{}}}";
    let duplicate = "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"name\":\"delete_everything\",\"arguments\":{}}}";
    // A lone `paramſ`: no `params` for the gate (a data-only method with nothing in
    // it), `params` for Go.
    let lone = "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"logging/setLevel\",\"param\u{17f}\":{\"name\":\"delete_everything\"}}";
    let plain = "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{}}}";
    format!(
        "{}\n{smuggled}\n{kelvin}\n{duplicate}\n{lone}\n{plain}\n",
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#
    )
}

#[test]
fn go_case_folding_member_smuggling_never_reaches_the_server() {
    let Some(go) = go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = build(&go, dir.path());

    // Control: the Go server reached directly runs the smuggled tool.
    let direct_log = dir.path().join("direct.log");
    let mut direct = Command::new(&server);
    direct.env("GO_SPY_LOG", &direct_log);
    exchange(direct, &lines());
    let ran = std::fs::read_to_string(&direct_log).unwrap();
    assert!(
        ran.lines().any(|l| l == "delete_everything"),
        "the differential this test guards against is gone from Go: {ran:?}"
    );
    assert!(
        ran.lines()
            .any(|l| l == "logging/setLevel:delete_everything"),
        "Go no longer reads a lone `paramſ` as `params`: {ran:?}"
    );

    // Through wrap: every ambiguous message is refused; only the plain call arrives.
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let gated_log = dir.path().join("gated.log");
    let mut cmd = conductor_in(dir.path());
    cmd.args(["wrap", "--policy"])
        .arg(&policy)
        .args(["--agent", "bot", "--server", "go", "--no-dns", "--audit"])
        .arg(dir.path().join("audit.db"))
        .arg("--")
        .arg(&server)
        .env("GO_SPY_LOG", &gated_log);
    let answers = exchange(cmd, &lines());
    let by_id = |id: u64| {
        answers
            .iter()
            .find(|a| a["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no answer to {id}: {answers:?}"))
    };
    for id in [2, 3, 4, 6] {
        assert_eq!(by_id(id)["error"]["code"], -32600, "{answers:?}");
    }
    assert_eq!(by_id(5)["result"]["isError"], false, "{answers:?}");
    let ran = std::fs::read_to_string(&gated_log).unwrap_or_default();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["echo"], "{ran:?}");
}
