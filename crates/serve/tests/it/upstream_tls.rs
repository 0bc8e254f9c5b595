//! `https` upstreams: the official Python SDK's Streamable HTTP server (MCPServer, `.peers`)
//! behind TLS (uvicorn's ssl), with certificates made here (rcgen). A certificate from the
//! CA a server's `tls.ca` names is accepted; one the system's roots or another CA do not
//! vouch for, one for another name, an expired one, and (for an upstream that requires a
//! client certificate) a gateway without `tls.cert` are refused before any request is
//! written, with the TLS reason in the error; with `tls.cert`/`tls.key` the gateway
//! presents its own certificate.
//!
//! Sources: RFC 9110 §4.3.4 (https: the server's certificate must match the target's
//! host), RFC 6125 §6 (identity checks), RFC 5280 §4.1.2.5 (validity), RFC 8446 §4.4.2
//! (client certificates); OWASP ASVS V9.2.1 (connections to external services verified).

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use super::auth::{Gw, gateway_with, initialize, send};
use super::python_sdk::peers;
use super::tls::{Ca, ca, cert_for};

/// A certificate for `sans` (server) or the client `cn`, valid `from`..`to` days from now.
fn cert(ca: &Ca, sans: &[&str], cn: &str, server: bool, from: i64, to: i64) -> (String, String) {
    cert_for(ca, sans, cn, 7, server, (from, to))
}

const POLICY: &str = "version: 1\nagents:\n  bot: {roles: [r]}\nroles:\n  r:\n    allow:\n      - tools: [\"*.echo\", \"*.count\"]\ntools:\n  \"*.echo\": {action: read, destinations: []}\n  \"*.count\": {action: read, destinations: []}\n";

/// `initialize` on `/mcp/<server>`, then `tools/call` of `tool`: the initialize answer's
/// body and (when it succeeded) the call's.
async fn call(gw: &Gw, server: &str, tool: &str, args: Value) -> (String, Option<Value>) {
    let url = gw.url(&format!("/mcp/{server}"));
    let init = send(&url, &[], &initialize()).await;
    let Some(sid) = init
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|_| init.status == 200 && !init.body.contains("\"error\""))
    else {
        return (init.body, None);
    };
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": tool, "arguments": args}});
    let a = send(&url, &h, &body).await;
    (init.body, Some(last_message(&a.body)))
}

/// The answer of a JSON body, or the last `data:` message of an event stream.
fn last_message(body: &str) -> Value {
    if let Ok(v) = serde_json::from_str(body) {
        return v;
    }
    body.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .find_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .unwrap_or_else(|| panic!("no message in {body}"))
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_and_the_gateway_can_present_its_certificate() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let upstream_ca = ca("upstream CA");
    let another_ca = ca("another CA");
    let client_ca = ca("gateway client CA");
    let ca_pem = write("upstream-ca.pem", &upstream_ca.cert.pem());
    let another_pem = write("another-ca.pem", &another_ca.cert.pem());
    let client_ca_pem = write("client-ca.pem", &client_ca.cert.pem());
    let names = ["localhost", "127.0.0.1"];
    let (good, good_key) = cert(&upstream_ca, &names, "upstream", true, -1, 30);
    let (wrong, wrong_key) = cert(&upstream_ca, &["other.test"], "other", true, -1, 30);
    let (old, old_key) = cert(&upstream_ca, &names, "upstream", true, -30, -1);
    let (gw_cert, gw_key) = cert(&client_ca, &[], "gateway", false, -1, 30);
    let plan = json!([
        {"cert": write("good.pem", &good), "key": write("good.key", &good_key)},
        {"cert": write("wrong.pem", &wrong), "key": write("wrong.key", &wrong_key)},
        {"cert": write("old.pem", &old), "key": write("old.key", &old_key)},
        {"cert": write("good.pem", &good), "key": write("good.key", &good_key), "client_ca": client_ca_pem},
    ]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls_mcp_servers.py");
    let mut child = tokio::process::Command::new(peers.join("venv/bin/python"))
        .arg(&script)
        .arg(plan.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("the TLS servers did not start")
        .unwrap()
        .unwrap();
    let ports: Vec<u16> = serde_json::from_str(&first).unwrap();
    let gw_pem = write("gw.pem", &gw_cert);
    let gw_key_pem = write("gw.key", &gw_key);
    let yaml = format!(
        "version: 1\nauth:\n  none: {{agent: bot}}\nservers:\n\
         \x20 good: {{url: \"https://127.0.0.1:{p0}/mcp\", tls: {{ca: \"{ca_pem}\"}}}}\n\
         \x20 byname: {{url: \"https://localhost:{p0}/mcp\", tls: {{ca: \"{ca_pem}\"}}}}\n\
         \x20 systemroots: {{url: \"https://127.0.0.1:{p0}/mcp\"}}\n\
         \x20 otherca: {{url: \"https://127.0.0.1:{p0}/mcp\", tls: {{ca: \"{another_pem}\"}}}}\n\
         \x20 wrongname: {{url: \"https://127.0.0.1:{p1}/mcp\", tls: {{ca: \"{ca_pem}\"}}}}\n\
         \x20 expired: {{url: \"https://127.0.0.1:{p2}/mcp\", tls: {{ca: \"{ca_pem}\"}}}}\n\
         \x20 mtls: {{url: \"https://127.0.0.1:{p3}/mcp\", tls: {{ca: \"{ca_pem}\", cert: \"{gw_pem}\", key: \"{gw_key_pem}\"}}}}\n\
         \x20 nocert: {{url: \"https://127.0.0.1:{p3}/mcp\", tls: {{ca: \"{ca_pem}\"}}}}\n",
        p0 = ports[0],
        p1 = ports[1],
        p2 = ports[2],
        p3 = ports[3],
    );
    let gw = gateway_with(&yaml, POLICY, false, &[]).await;

    // Verified against the named CA, by address and by name; the call is intact.
    for server in ["good", "byname"] {
        let (init, answer) = call(&gw, server, "echo", json!({"text": "over tls"})).await;
        let answer = answer.unwrap_or_else(|| panic!("{server}: initialize failed: {init}"));
        assert_eq!(text_of(&answer), "echo: over tls", "{server}");
    }
    // The gateway's client certificate, toward an upstream that requires one.
    let (init, answer) = call(&gw, "mtls", "echo", json!({"text": "mutual"})).await;
    let answer = answer.unwrap_or_else(|| panic!("mtls: initialize failed: {init}"));
    assert_eq!(text_of(&answer), "echo: mutual");

    // Refused in the handshake, with rustls's reason in the error.
    for (server, why) in [
        ("systemroots", "unknownissuer"),
        ("otherca", "unknownissuer"),
        ("wrongname", "not valid for name"),
        ("expired", "expired"),
    ] {
        let (init, answer) = call(&gw, server, "echo", json!({"text": "refused"})).await;
        assert!(
            answer.is_none(),
            "{server}: the call went through: {answer:?}"
        );
        let lower = init.to_lowercase();
        assert!(
            lower.contains("tls with the upstream failed"),
            "{server}: {init}"
        );
        assert!(lower.contains(why), "{server}: expected `{why}` in {init}");
    }

    // Python's ssl module closes the connection of a client without a certificate
    // (no alert): the call is refused all the same, and the error says what to check.
    let (init, answer) = call(&gw, "nocert", "echo", json!({"text": "refused"})).await;
    assert!(
        answer.is_none(),
        "nocert: the call went through: {answer:?}"
    );
    assert!(
        init.contains("closed the connection before it answered") && init.contains("tls.cert"),
        "nocert: {init}"
    );

    // Only the accepted connections delivered a call: two echoes on the first server
    // (`good` and `byname`), none from the refused ones that point at it.
    let (_, answer) = call(&gw, "good", "count", json!({})).await;
    assert_eq!(text_of(&answer.unwrap()), "2");
    let audit = gw.audit();
    let allowed: Vec<&str> = audit
        .iter()
        .filter(|r| r.decision == "allow")
        .map(|r| r.tool.as_str())
        .collect();
    for t in ["good.echo", "byname.echo", "mtls.echo"] {
        assert!(
            allowed.contains(&t),
            "{t} not audited as allowed: {allowed:?}"
        );
    }
    child.kill().await.unwrap();
}

#[test]
fn tls_settings_are_checked_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("a CA");
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not pem\n").unwrap();
    let cases = [
        // (server entry, what the problem must say)
        (
            "{url: \"http://127.0.0.1:1/mcp\", tls: {ca: ca.pem}}",
            "`tls` is for https servers",
        ),
        (
            "{command: [\"true\"], tls: {ca: ca.pem}}",
            "`tls` is for `url` servers",
        ),
        (
            "{url: \"https://127.0.0.1:1/mcp\", tls: {ca: absent.pem}}",
            "absent.pem",
        ),
        (
            "{url: \"https://127.0.0.1:1/mcp\", tls: {ca: junk.pem}}",
            "holds no pem certificate",
        ),
        (
            "{url: \"https://127.0.0.1:1/mcp\", tls: {cert: ca.pem}}",
            "`tls.cert` and `tls.key` go together",
        ),
        (
            "{url: \"https://127.0.0.1:1/mcp\", tls: {}}",
            "`tls` names nothing",
        ),
        (
            "{url: \"https://127.0.0.1:1/mcp\", tls: {ca: ca.pem, insecure: true}}",
            "insecure",
        ),
    ];
    for (entry, want) in cases {
        let yaml = format!("version: 1\nauth:\n  none: {{agent: bot}}\nservers:\n  up: {entry}\n");
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let e = conductor_serve::load_file(&path)
            .map(|_| ())
            .map_err(|e| e.render(false))
            .expect_err(entry);
        assert!(e.contains(want), "{entry}: expected `{want}` in\n{e}");
        assert!(e.contains("gateway.yaml:5:"), "{entry}: no place in\n{e}");
    }
    // A valid one loads, relative to the gateway file.
    std::fs::write(
        dir.path().join("gateway.yaml"),
        "version: 1\nauth:\n  none: {agent: bot}\nservers:\n  up: {url: \"https://127.0.0.1:1/mcp\", tls: {ca: ca.pem}}\n",
    )
    .unwrap();
    let cfg = conductor_serve::load_file(&dir.path().join("gateway.yaml")).unwrap();
    let conductor_serve::config::Transport::Http { tls, .. } = &cfg.servers[0].transport else {
        panic!("not an http server")
    };
    assert_eq!(
        tls.as_ref().unwrap().ca.as_deref(),
        Some(dir.path().join("ca.pem").as_path())
    );
}
