//! The official Python MCP SDK (`.peers`, installed by scripts/setup-peers.sh) through
//! `serve` with a bearer token minted here: it lists and calls the spy upstream's tool;
//! without the token it is refused (401) and never reaches the upstream.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{Value, json};

use super::auth::{AUD, bearer, claims, es256, gateway, jwks_server, mint, spy_server};

const CLIENT: &str = r#"
import asyncio, json, sys
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main(plan):
    headers = {"Authorization": plan["authorization"]} if plan["authorization"] else {}
    http = create_mcp_http_client(headers=headers)
    out = {}
    try:
        async with Client(streamable_http_client(plan["url"], http_client=http), mode="legacy", read_timeout_seconds=30) as c:
            out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
            r = await c.call_tool("noop", {})
            out["call"] = r.model_dump(mode="json", by_alias=True, exclude_none=True)
    except BaseException as e:
        out["error"] = repr(e)[:2000]
    print(json.dumps(out))

asyncio.run(main(json.loads(sys.argv[1])))
"#;

pub(crate) fn peers() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.peers");
    if dir.join("stamp").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the MCP peers are not installed (run `bash scripts/setup-peers.sh`)"
    );
    eprintln!("SKIPPED: python sdk test: `.peers` is missing (bash scripts/setup-peers.sh)");
    None
}

async fn run(
    peers: &std::path::Path,
    dir: &std::path::Path,
    url: &str,
    authorization: Option<&str>,
) -> Value {
    let plan = json!({"url": url, "authorization": authorization});
    run_script(peers, dir, CLIENT, &plan).await
}

/// Run the Python `script` (written into `dir`) of the peers' venv with `plan` (JSON, its
/// argument); what it printed, as JSON.
pub(crate) async fn run_script(
    peers: &std::path::Path,
    dir: &std::path::Path,
    script: &str,
    plan: &Value,
) -> Value {
    let path = dir.join("client.py");
    std::fs::write(&path, script).unwrap();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(peers.join("venv/bin/python"))
            .arg(&path)
            .arg(plan.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the python client did not finish")
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "stdout: {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_with_a_bearer_token_through_serve() {
    let Some(peers) = peers() else { return };
    let k = es256("k1");
    let (_j, jwks) = jwks_server(&[&k]).await;
    let (seen, up) = spy_server().await;
    let gw = gateway(&format!(
        "version: 1\nservers:\n  up:\n    url: \"http://{up}/mcp\"\n    headers: {{Authorization: \"Bearer gateway-upstream-token\"}}\n\
         auth:\n  jwt:\n    issuer: \"{}\"\n    audience: \"{AUD}\"\n    jwks: \"http://{jwks}/jwks.json\"\n",
        super::auth::ISS
    ))
    .await;
    let token = mint(&k, &claims(&format!("{AUD}/up")));
    let url = gw.url("/mcp/up");
    let out = run(&peers, gw.dir.path(), &url, Some(&bearer(&token))).await;
    assert_eq!(out["tools"], json!(["noop"]), "{out}");
    assert_eq!(out["call"]["content"][0]["text"], json!("ok"), "{out}");
    let n = seen.lock().unwrap().len();
    assert!(n >= 3, "{n}");
    for h in seen.lock().unwrap().iter() {
        assert_eq!(
            h.get("authorization").map(String::as_str),
            Some("Bearer gateway-upstream-token")
        );
    }
    // Without the token: refused, and the upstream sees nothing more.
    let out = run(&peers, gw.dir.path(), &url, None).await;
    assert!(out.get("tools").is_none(), "{out}");
    // (The SDK reports the 401 as a generic error; the 401 and its challenge are checked
    // in `auth::prm_a_client_without_credentials_is_told_where_to_log_in`.)
    assert!(
        out["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{out}"
    );
    assert_eq!(seen.lock().unwrap().len(), n);
    let calls: Vec<_> = gw
        .audit()
        .into_iter()
        .filter(|r| r.event == "tools/call")
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].auth.as_ref().and_then(|a| a.get("method")),
        Some(&json!("jwt"))
    );
}
