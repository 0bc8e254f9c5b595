//! Approving in the MCP client on `serve` (issue #13), over real sockets:
//! - 2025-11-25: a client that declared `elicitation` gets the gate's
//!   `elicitation/create` on the held call's SSE stream; its POSTed answer decides the
//!   call through the approvals store; an answer from another session or agent is
//!   refused; a question decided elsewhere or expired is withdrawn.
//! - 2026-07-28: a held call is answered `input_required` with a signed `requestState`;
//!   the retry with the answer is decided; tampered, other agent, other arguments,
//!   expired and replayed states are refused.
//!
//! Raw HTTP against the spy upstream (the test drives the client), and the official
//! Python SDK (`.peers`) against the real server-everything.

use std::time::Duration;

use conductor_audit::{ApprovalFilter, ApprovalStore as _, Status};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::auth::{Gw, bearer, gateway_with, send, spy_server};
use crate::python_sdk::{peers, run_script};

/// `up.noop` is held, and may be put to the person at the client.
fn policy(ttl: &str) -> String {
    format!(
        "version: 1\nagents:\n  bot: {{roles: [r]}}\n  other: {{roles: [r]}}\nroles:\n  r:\n    approve:\n      - tools: [\"up.noop\"]\n\
         tools:\n  up.noop: {{action: read, destinations: []}}\nsessions:\n  approval_ttl: {ttl}\n  approve_in_client: true\n"
    )
}

/// The gateway in front of the spy, with agents `bot` and `other` (API keys).
struct Setup {
    gw: Gw,
    seen: crate::auth::Seen,
    bot: String,
    other: String,
}

async fn setup(ttl: &str) -> Setup {
    let (bot, bot_hash) = conductor_serve::auth::keys::generate().unwrap();
    let (other, other_hash) = conductor_serve::auth::keys::generate().unwrap();
    let (seen, up) = spy_server().await;
    let yaml = format!(
        "version: 1\nservers:\n  up:\n    url: \"http://{up}/mcp\"\n\
         auth:\n  api_keys:\n    - {{agent: bot, sha256: \"{bot_hash}\"}}\n    - {{agent: other, sha256: \"{other_hash}\"}}\n"
    );
    let gw = gateway_with(&yaml, &policy(ttl), true, &[]).await;
    Setup {
        gw,
        seen,
        bot,
        other,
    }
}

impl Setup {
    /// What the upstream received (bodies), joined.
    fn upstream_text(&self) -> String {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|h| h.get("(body)").cloned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn upstream_calls(&self) -> usize {
        self.upstream_text().matches("\"tools/call\"").count()
    }

    fn approvals(&self) -> conductor_audit::SqliteApprovals {
        conductor_audit::SqliteApprovals::open(&self.gw.dir.path().join("audit.db")).unwrap()
    }

    fn assert_chain_verifies(&self) {
        let report = conductor_audit::AuditReader::open(&self.gw.dir.path().join("audit.db"))
            .unwrap()
            .verify(None)
            .unwrap();
        assert!(report.broken.is_none(), "{report:?}");
    }

    /// The audit records of `event` (grants, denials…).
    fn records(&self, event: &str) -> Vec<conductor_audit::Record> {
        self.gw
            .audit()
            .into_iter()
            .filter(|r| r.event == event)
            .collect()
    }
}

/// The last JSON-RPC message of an answer (plain JSON, or an SSE stream's last event).
fn last_message(body: &str) -> Value {
    if let Ok(v) = serde_json::from_str(body) {
        return v;
    }
    body.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data: "))
        .find_map(|d| serde_json::from_str(d).ok())
        .unwrap_or_else(|| panic!("no message in {body}"))
}

// ---------------------------------------------------------------------------------------
// 2026-07-28: input_required with a signed requestState
// ---------------------------------------------------------------------------------------

/// A stateless `tools/call` of `noop` with `arguments`, from a client that elicits; with
/// `retry`, the `requestState` and the person's answer.
fn stateless_call(id: u64, arguments: Value, retry: Option<(&str, Value)>) -> Value {
    let mut params = json!({"name": "noop", "arguments": arguments, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    }});
    if let Some((state, answer)) = retry {
        params["requestState"] = json!(state);
        params["inputResponses"] = json!({"dev.conductor/approval": answer});
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

async fn post_stateless(s: &Setup, key: &str, body: &Value) -> Value {
    let auth = bearer(key);
    let a = send(
        &s.gw.url("/mcp/up"),
        &[
            ("authorization", &auth),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "noop"),
        ],
        body,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    last_message(&a.body)
}

const APPROVE: fn() -> Value = || json!({"action": "accept", "content": {"decision": "approve"}});

/// A held call's `input_required` result: its `requestState`.
async fn ask_stateless(s: &Setup, key: &str, id: u64, arguments: Value) -> String {
    let m = post_stateless(s, key, &stateless_call(id, arguments, None)).await;
    let r = &m["result"];
    assert_eq!(r["resultType"], "input_required", "{m}");
    let q = &r["inputRequests"]["dev.conductor/approval"];
    assert_eq!(q["method"], "elicitation/create", "{m}");
    assert!(
        q["params"]["message"].as_str().unwrap().contains("up.noop"),
        "{m}"
    );
    let state = r["requestState"].as_str().unwrap().to_string();
    assert!(state.starts_with("conductor.v1."), "{state}");
    state
}

/// A refusal result naming check `approval` with `rule`.
fn assert_refused(m: &Value, rule: &str) {
    let r = &m["result"];
    assert_eq!(r["isError"], true, "{m}");
    let text = r["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("denied by policy"), "{m}");
    let reasons = r["_meta"][conductor_mcp::META_KEY]["reasons"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        reasons
            .iter()
            .any(|x| x["check"] == "approval" && x["rule"] == rule),
        "no `approval` reason `{rule}`: {m}"
    );
}

/// Flip one character of the signed payload.
fn tampered(state: &str) -> String {
    let mut b = state.as_bytes().to_vec();
    let at = "conductor.v1.".len() + 5;
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_held_call_is_answered_input_required_and_a_retry_with_the_answer_runs() {
    // Source: issue #13 (2026-07-28 `input_required` on `serve`).
    let s = setup("30s").await;
    let state = ask_stateless(&s, &s.bot, 1, json!({})).await;
    assert_eq!(s.upstream_calls(), 0, "{}", s.upstream_text());

    // Each of these is refused with check `approval`, and leaves the call undecided.
    let forged = post_stateless(
        &s,
        &s.bot,
        &stateless_call(2, json!({}), Some((&tampered(&state), APPROVE()))),
    )
    .await;
    assert_refused(&forged, "approval.state");
    let other_agent = post_stateless(
        &s,
        &s.other,
        &stateless_call(3, json!({}), Some((&state, APPROVE()))),
    )
    .await;
    assert_refused(&other_agent, "approval.state");
    let other_arguments = post_stateless(
        &s,
        &s.bot,
        &stateless_call(4, json!({"x": 1}), Some((&state, APPROVE()))),
    )
    .await;
    assert_refused(&other_arguments, "approval.state");
    assert_eq!(s.upstream_calls(), 0, "{}", s.upstream_text());

    // The right answer: the call runs, as first sent (the gate's members taken off).
    let ran = post_stateless(
        &s,
        &s.bot,
        &stateless_call(5, json!({}), Some((&state, APPROVE()))),
    )
    .await;
    assert_eq!(ran["result"]["content"][0]["text"], "ok", "{ran}");
    assert_eq!(s.upstream_calls(), 1, "{}", s.upstream_text());
    let text = s.upstream_text();
    assert!(
        !text.contains("conductor.v1.")
            && !text.contains("dev.conductor/approval")
            && !text.contains("inputResponses"),
        "the gate's state reached the upstream: {text}"
    );

    // Replayed: good for one answer.
    let replayed = post_stateless(
        &s,
        &s.bot,
        &stateless_call(6, json!({}), Some((&state, APPROVE()))),
    )
    .await;
    assert_refused(&replayed, "approval.state");
    assert_eq!(s.upstream_calls(), 1);

    // A decline denies (a new call, a new question).
    let state = ask_stateless(&s, &s.bot, 7, json!({})).await;
    let declined = post_stateless(
        &s,
        &s.bot,
        &stateless_call(8, json!({}), Some((&state, json!({"action": "decline"})))),
    )
    .await;
    assert_refused(&declined, "approval.denied");
    assert_eq!(s.upstream_calls(), 1);

    let grants = s.records("approval-grant");
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(
        grants[0].arguments.as_ref().unwrap()["approver"],
        "elicitation:bot"
    );
    let denials = s.records("approval-deny");
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(
        denials[0].arguments.as_ref().unwrap()["approver"],
        "elicitation:bot"
    );
    s.assert_chain_verifies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_expired_request_state_is_refused() {
    let s = setup("1s").await;
    let state = ask_stateless(&s, &s.bot, 1, json!({})).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let late = post_stateless(
        &s,
        &s.bot,
        &stateless_call(2, json!({}), Some((&state, APPROVE()))),
    )
    .await;
    assert_refused(&late, "approval.expired");
    assert_eq!(s.upstream_calls(), 0, "{}", s.upstream_text());
    assert!(s.records("approval-grant").is_empty());
}

// ---------------------------------------------------------------------------------------
// 2025-11-25: elicitation/create on the held call's SSE stream
// ---------------------------------------------------------------------------------------

/// A session of `key`'s agent on `/mcp/up`; `elicits`: the client declares the capability.
async fn open_session(s: &Setup, key: &str, elicits: bool) -> String {
    let caps = if elicits {
        json!({"elicitation": {}})
    } else {
        json!({})
    };
    let auth = bearer(key);
    let init = send(
        &s.gw.url("/mcp/up"),
        &[("authorization", &auth)],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": caps,
            "clientInfo": {"name": "t", "version": "0"}}}),
    )
    .await;
    assert_eq!(init.status, 200, "{}", init.body);
    init.headers["mcp-session-id"].to_str().unwrap().to_string()
}

/// The SSE stream of a POSTed `tools/call`, read message by message.
struct Stream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Stream {
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return Some(serde_json::from_str(data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("the stream stalled")?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    }
}

async fn call_on(s: &Setup, key: &str, sid: &str) -> Stream {
    let r = conductor_serve::upstream_tls::client_builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(s.gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", bearer(key))
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .body(crate::auth::call_noop(2).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    Stream {
        body: Box::pin(r.bytes_stream()),
        buf: String::new(),
    }
}

/// POST a JSON-RPC answer on session `sid` as `key`'s agent; the HTTP status.
async fn answer_on(s: &Setup, key: &str, sid: &str, answer: &Value) -> u16 {
    let auth = bearer(key);
    send(
        &s.gw.url("/mcp/up"),
        &[
            ("authorization", &auth),
            ("mcp-session-id", sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        answer,
    )
    .await
    .status
}

/// The question the gate put to the client first on `stream`: its id.
async fn question(stream: &mut Stream) -> Value {
    let q = stream.next().await.expect("no question");
    assert_eq!(q["method"], "elicitation/create", "{q}");
    assert_eq!(q["params"]["mode"], "form", "{q}");
    assert!(
        q["params"]["message"].as_str().unwrap().contains("up.noop"),
        "{q}"
    );
    let id = q["id"].clone();
    assert!(
        id.as_str().unwrap().starts_with("dev.conductor/approval/"),
        "{q}"
    );
    id
}

fn pending_approvals(s: &Setup) -> usize {
    s.approvals()
        .list(&ApprovalFilter {
            pending_only: true,
            ..Default::default()
        })
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_answer_releases_the_held_call_and_only_its_session_may_answer() {
    // Source: issue #13 (2025-11-25 `elicitation/create` on `serve`).
    let s = setup("30s").await;
    let sid = open_session(&s, &s.bot, true).await;
    let same_agent_other_session = open_session(&s, &s.bot, true).await;
    let mut stream = call_on(&s, &s.bot, &sid).await;
    let qid = question(&mut stream).await;
    assert_eq!(pending_approvals(&s), 1);
    let approve = json!({"jsonrpc": "2.0", "id": qid,
        "result": {"action": "accept", "content": {"decision": "approve"}}});

    // Another session of the same agent, another agent with this session's id: refused.
    assert_eq!(
        answer_on(&s, &s.bot, &same_agent_other_session, &approve).await,
        404
    );
    assert_eq!(answer_on(&s, &s.other, &sid, &approve).await, 404);
    assert_eq!(
        pending_approvals(&s),
        1,
        "a refused answer decided the call"
    );
    assert_eq!(s.upstream_calls(), 0);

    // The client's own answer: the call runs.
    assert_eq!(answer_on(&s, &s.bot, &sid, &approve).await, 202);
    let done = stream.next().await.expect("no answer");
    assert_eq!(done["id"], 2, "{done}");
    assert_eq!(done["result"]["content"][0]["text"], "ok", "{done}");
    assert_eq!(s.upstream_calls(), 1);
    assert!(!s.upstream_text().contains("dev.conductor/approval"));
    // The question is closed: a second answer is refused.
    assert_eq!(answer_on(&s, &s.bot, &sid, &approve).await, 404);

    let grants = s.records("approval-grant");
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(
        grants[0].arguments.as_ref().unwrap()["approver"],
        "elicitation:bot"
    );
    s.assert_chain_verifies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_decided_elsewhere_is_withdrawn_and_refused() {
    let s = setup("30s").await;
    let sid = open_session(&s, &s.bot, true).await;
    let mut stream = call_on(&s, &s.bot, &sid).await;
    let qid = question(&mut stream).await;
    // Denied from another process (the CLI's path: the store).
    let store = s.approvals();
    let pending = store
        .list(&ApprovalFilter {
            pending_only: true,
            ..Default::default()
        })
        .unwrap();
    store.deny(&pending[0].id, "carol", "not now").unwrap();
    let cancelled = stream.next().await.expect("no withdrawal");
    assert_eq!(
        cancelled["method"], "notifications/cancelled",
        "{cancelled}"
    );
    assert_eq!(cancelled["params"]["requestId"], qid, "{cancelled}");
    let refused = stream.next().await.expect("no answer");
    assert_refused(&refused, "approval.denied");
    assert_eq!(s.upstream_calls(), 0);
    // Too late: the question was withdrawn.
    let approve = json!({"jsonrpc": "2.0", "id": qid,
        "result": {"action": "accept", "content": {"decision": "approve"}}});
    assert_eq!(answer_on(&s, &s.bot, &sid, &approve).await, 404);
    assert_eq!(store.show(&pending[0].id).unwrap().status, Status::Denied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_unanswered_expires_and_a_client_without_the_capability_is_not_asked() {
    let s = setup("1s").await;
    // Declared elicitation, never answers: asked, withdrawn at expiry, refused.
    let sid = open_session(&s, &s.bot, true).await;
    let mut stream = call_on(&s, &s.bot, &sid).await;
    let qid = question(&mut stream).await;
    let cancelled = stream.next().await.expect("no withdrawal");
    assert_eq!(cancelled["params"]["requestId"], qid, "{cancelled}");
    assert_refused(&stream.next().await.unwrap(), "approval.expired");
    // Did not declare it: never asked, the call waits for another approver (expires).
    let sid = open_session(&s, &s.bot, false).await;
    let mut stream = call_on(&s, &s.bot, &sid).await;
    let first = stream.next().await.expect("no answer");
    assert_eq!(first["id"], 2, "the client was asked: {first}");
    assert_refused(&first, "approval.expired");
    // An error answer (the client could not ask its user): the call stays held for
    // another approver (here: it expires).
    let sid = open_session(&s, &s.bot, true).await;
    let mut stream = call_on(&s, &s.bot, &sid).await;
    let qid = question(&mut stream).await;
    let error = json!({"jsonrpc": "2.0", "id": qid, "error": {"code": -32603, "message": "no UI"}});
    assert_eq!(answer_on(&s, &s.bot, &sid, &error).await, 202);
    assert_refused(&stream.next().await.unwrap(), "approval.expired");
    assert_eq!(s.upstream_calls(), 0);
    assert!(s.records("approval-grant").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_for_a_json_only_post_goes_to_the_get_stream() {
    // A POST that takes JSON only cannot carry the question before its answer: it goes to
    // the session's GET stream, and the POST is answered once the call is decided.
    let s = setup("30s").await;
    let sid = open_session(&s, &s.bot, true).await;
    let client = conductor_serve::upstream_tls::client_builder()
        .no_proxy()
        .build()
        .unwrap();
    let get = client
        .get(s.gw.url("/mcp/up"))
        .header("accept", "text/event-stream")
        .header("authorization", bearer(&s.bot))
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let mut events = Stream {
        body: Box::pin(get.bytes_stream()),
        buf: String::new(),
    };
    let post = {
        let (url, key, sid) = (s.gw.url("/mcp/up"), bearer(&s.bot), sid.clone());
        tokio::spawn(async move {
            conductor_serve::upstream_tls::client_builder()
                .no_proxy()
                .build()
                .unwrap()
                .post(url)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .header("authorization", key)
                .header("mcp-session-id", sid)
                .header("mcp-protocol-version", "2025-11-25")
                .body(crate::auth::call_noop(2).to_string())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    let qid = question(&mut events).await;
    assert!(
        !post.is_finished(),
        "the held call was answered before anyone decided"
    );
    let approve = json!({"jsonrpc": "2.0", "id": qid,
        "result": {"action": "accept", "content": {"decision": "approve"}}});
    assert_eq!(answer_on(&s, &s.bot, &sid, &approve).await, 202);
    let body = tokio::time::timeout(Duration::from_secs(20), post)
        .await
        .unwrap()
        .unwrap();
    let done: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(done["result"]["content"][0]["text"], "ok", "{done}");
    assert_eq!(s.upstream_calls(), 1);
}

// ---------------------------------------------------------------------------------------
// The official Python SDK through serve to server-everything
// ---------------------------------------------------------------------------------------

const CLIENT: &str = r#"
import asyncio, json, sys
import mcp_types as types
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

def dump(m):
    return m.model_dump(mode="json", by_alias=True, exclude_none=True)

async def main(plan):
    http = create_mcp_http_client(headers={"Authorization": plan["authorization"]})
    answer = plan["elicit"]
    out = {"elicitations": [], "calls": []}

    async def on_elicit(context, params):
        out["elicitations"].append(dump(params))
        return types.ElicitResult(action=answer["action"], content=answer.get("content"))

    async def run(s):
        for call in plan["calls"]:
            try:
                out["calls"].append({"result": dump(await s.call_tool(call["name"], call["arguments"]))})
            except Exception as e:
                out["calls"].append({"error": repr(e)[:2000]})

    try:
        transport = streamable_http_client(plan["url"], http_client=http)
        if plan["mode"] == "session":
            async with transport as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=60, elicitation_callback=on_elicit) as s:
                    out["protocol_version"] = (await s.initialize()).protocol_version
                    await run(s)
        else:
            async with Client(transport, mode=plan["mode"], read_timeout_seconds=60, cache=None,
                              elicitation_callback=on_elicit) as c:
                out["protocol_version"] = c.protocol_version
                await run(c)
    except BaseException as e:
        out["error"] = repr(e)[:2000]
    print(json.dumps(out))

asyncio.run(main(json.loads(sys.argv[1])))
"#;

/// `everything.get-sum` is held and may be put to the person at the client.
const EVERYTHING_POLICY: &str = "version: 1\nagents:\n  bot: {roles: [r]}\nroles:\n  r:\n    allow:\n      - tools: [\"everything.echo\"]\n    approve:\n      - tools: [\"everything.get-sum\"]\n\
tools:\n  everything.echo: {action: read, destinations: []}\n  everything.get-sum: {action: read, destinations: []}\n\
sessions:\n  approval_ttl: 30s\n  approve_in_client: true\n";

/// `serve` in front of the real server-everything (stdio, spawned per agent), and the
/// Python SDK client (`mode`: "session", or a `Client` mode) answering every elicitation
/// with `elicit`: echo, get-sum (held), echo.
async fn python_through_serve(peers: &std::path::Path, mode: &str, elicit: Value) -> (Gw, Value) {
    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let everything =
        peers.join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let yaml = format!(
        "version: 1\nservers:\n  everything:\n    command: [\"node\", \"{}\", \"stdio\"]\n\
         auth:\n  api_keys:\n    - {{agent: bot, sha256: \"{hash}\"}}\n",
        everything.display()
    );
    let gw = gateway_with(&yaml, EVERYTHING_POLICY, true, &[]).await;
    let plan = json!({
        "url": gw.url("/mcp/everything"),
        "authorization": bearer(&key),
        "mode": mode,
        "elicit": elicit,
        "calls": [
            {"name": "echo", "arguments": {"message": "before"}},
            {"name": "get-sum", "arguments": {"a": 20, "b": 22}},
            {"name": "echo", "arguments": {"message": "after"}},
        ],
    });
    let v = run_script(peers, gw.dir.path(), CLIENT, &plan).await;
    assert!(v.get("error").is_none(), "{v:#}");
    (gw, v)
}

fn call_text(out: &Value, i: usize) -> String {
    out["calls"][i]["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Asked once, about get-sum with its arguments; the answer recorded as `event` by
/// `elicitation:bot`; nothing the model reads names the approval.
fn assert_asked_once(gw: &Gw, out: &Value, event: &str) {
    let asked = out["elicitations"].as_array().unwrap();
    assert_eq!(asked.len(), 1, "{out:#}");
    let message = asked[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("everything.get-sum") && message.contains("\"a\":20"),
        "{out:#}"
    );
    let records = gw.audit();
    let answers: Vec<_> = records.iter().filter(|r| r.event == event).collect();
    assert_eq!(answers.len(), 1, "{records:#?}");
    let args = answers[0].arguments.as_ref().unwrap();
    assert_eq!(args["approver"], "elicitation:bot");
    let id = args["approval"].as_str().unwrap();
    assert!(!out["calls"].to_string().contains(id), "{out:#}");
    let report = conductor_audit::AuditReader::open(&gw.dir.path().join("audit.db"))
        .unwrap()
        .verify(None)
        .unwrap();
    assert!(report.broken.is_none(), "{report:?}");
}

fn decisions(gw: &Gw, tool: &str) -> Vec<String> {
    gw.audit()
        .into_iter()
        .filter(|r| r.tool == tool && r.event == "tools/call")
        .map(|r| r.decision)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_session_approves_a_held_call_by_elicitation_through_serve() {
    // Source: issue #13 (the elicitation path with the official Python SDK client).
    let Some(peers) = peers() else { return };
    let (gw, out) = python_through_serve(
        &peers,
        "session",
        json!({"action": "accept", "content": {"decision": "approve"}}),
    )
    .await;
    assert_eq!(out["protocol_version"], "2025-11-25", "{out:#}");
    assert!(call_text(&out, 0).contains("before"), "{out:#}");
    assert!(call_text(&out, 1).contains("42"), "{out:#}");
    assert!(call_text(&out, 2).contains("after"), "{out:#}");
    assert_asked_once(&gw, &out, "approval-grant");
    assert_eq!(decisions(&gw, "everything.get-sum"), ["approve", "allow"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_session_decline_refuses_the_held_call_with_check_approval() {
    let Some(peers) = peers() else { return };
    let (gw, out) = python_through_serve(&peers, "session", json!({"action": "decline"})).await;
    let refused = &out["calls"][1]["result"];
    assert_eq!(refused["isError"], true, "{out:#}");
    let text = call_text(&out, 1);
    assert!(
        text.starts_with("denied by policy") && text.contains("approval.denied"),
        "{out:#}"
    );
    assert!(call_text(&out, 2).contains("after"), "{out:#}");
    assert_asked_once(&gw, &out, "approval-deny");
    assert_eq!(decisions(&gw, "everything.get-sum"), ["approve", "deny"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_stateless_client_approves_through_input_required_on_serve() {
    // Source: issue #13 (the `input_required` path with a stateless client): the SDK's
    // `Client` pinned to 2026-07-28 answers the embedded elicitation and retries with
    // the state (serve bridges to server-everything, which speaks the handshake).
    let Some(peers) = peers() else { return };
    let (gw, out) = python_through_serve(
        &peers,
        "2026-07-28",
        json!({"action": "accept", "content": {"decision": "approve"}}),
    )
    .await;
    assert_eq!(out["protocol_version"], "2026-07-28", "{out:#}");
    assert!(call_text(&out, 1).contains("42"), "{out:#}");
    assert!(call_text(&out, 2).contains("after"), "{out:#}");
    assert_asked_once(&gw, &out, "approval-grant");
    assert_eq!(decisions(&gw, "everything.get-sum"), ["approve", "allow"]);
}

/// A plain HTTP server on 127.0.0.1:0 that answers every request with `body` (the fetch
/// server's proxy: nothing leaves this machine); the request lines it saw.
async fn http_stub(
    body: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let log = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let log = std::sync::Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                log.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or("").to_string());
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(answer.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_stateless_client_approves_a_fetch_through_input_required_on_serve() {
    // The same with the real mcp-server-fetch (it speaks 2026-07-28 itself): the fetch
    // happens once, after the person approved (the stub sees one request).
    let Some(peers) = peers() else { return };
    const BODY: &str = "the quarterly report, fetched through the gate";
    let (stub, stub_seen) = http_stub(BODY).await;
    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let fetch = peers.join("venv/bin/mcp-server-fetch");
    let yaml = format!(
        "version: 1\nservers:\n  fetch:\n    command: [\"{}\", \"--ignore-robots-txt\", \"--allow-private-ips\", \"--proxy-url\", \"http://{stub}\"]\n\
         auth:\n  api_keys:\n    - {{agent: bot, sha256: \"{hash}\"}}\n",
        fetch.display()
    );
    let policy = "version: 1\nagents:\n  bot: {roles: [r]}\nroles:\n  r:\n    approve:\n      - tools: [\"fetch.*\"]\n\
tools:\n  fetch.fetch: {action: read, destinations: [/url]}\n\
destinations:\n  allow: [\"*\"]\n  permit: [loopback]\n\
sessions:\n  approval_ttl: 30s\n  approve_in_client: true\n";
    let gw = gateway_with(&yaml, policy, true, &[]).await;
    let url = format!("http://{stub}/report.txt");
    let plan = json!({
        "url": gw.url("/mcp/fetch"),
        "authorization": bearer(&key),
        "mode": "2026-07-28",
        "elicit": {"action": "accept", "content": {"decision": "approve"}},
        "calls": [{"name": "fetch", "arguments": {"url": url}}],
    });
    let out = run_script(&peers, gw.dir.path(), CLIENT, &plan).await;
    assert!(out.get("error").is_none(), "{out:#}");
    assert_eq!(out["protocol_version"], "2026-07-28", "{out:#}");
    assert!(call_text(&out, 0).contains(BODY), "{out:#}");
    assert_eq!(
        out["elicitations"].as_array().map(Vec::len),
        Some(1),
        "{out:#}"
    );
    assert_eq!(*stub_seen.lock().unwrap(), [format!("GET {url} HTTP/1.1")]);
    assert_eq!(decisions(&gw, "fetch.fetch"), ["approve", "allow"]);
    let grants: Vec<_> = gw
        .audit()
        .into_iter()
        .filter(|r| r.event == "approval-grant")
        .collect();
    assert_eq!(grants.len(), 1);
    assert_eq!(
        grants[0].arguments.as_ref().unwrap()["approver"],
        "elicitation:bot"
    );
}
