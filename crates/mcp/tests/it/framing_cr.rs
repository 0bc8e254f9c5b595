//! A bare carriage return cannot smuggle a second message past the gate.
//!
//! Found by probing `conductor wrap` with the real mcp-server-fetch: its stdio server
//! (Python SDK, `TextIOWrapper` with universal newlines) splits a line at every `\r`,
//! which JSON allows between tokens, so the gate saw one `ping` and the server ran
//! the `tools/call` hidden in its params.

use serde_json::{Value, json};

use crate::harness::{FakeOptions, Harness, call};

#[tokio::test]
async fn bare_cr_inside_a_line_is_refused_and_nothing_reaches_the_server() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let inner = call(
        2,
        "fetch",
        json!({"url": "http://169.254.169.254/latest/meta-data/"}),
    );
    let line = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"x\":\r{inner}\r}}}}\n"
    );
    h.send_raw(line.as_bytes()).await;
    let a = h.recv().await;
    assert_eq!(a["id"], 1, "{a}");
    assert_eq!(a["error"]["code"], -32600, "{a}");
    // The session goes on, and a CRLF-terminated message still passes.
    h.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{}}}\r\n")
        .await;
    let a = h.recv().await;
    assert_eq!(a["id"], 3, "{a}");
    assert!(a.get("result").is_some(), "{a}");
    let seen = h.seen();
    assert!(
        seen.iter()
            .all(|l| !l.contains("169.254.169.254") && !l.contains("\"ping\"")),
        "the smuggling line reached the server: {seen:?}"
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
    let _: Value = serde_json::from_str(seen[0].trim_end()).unwrap();
}
