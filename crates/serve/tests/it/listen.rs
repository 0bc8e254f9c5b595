//! `subscriptions/listen` on the aggregate endpoint `/mcp` (2026-07-28), against real
//! upstreams: the official Python MCP SDK's `MCPServer` over Streamable HTTP (`.peers`),
//! whose listen handler serves `resourceSubscriptions` and list-changed flags. Each
//! upstream logs when a listen stream opens and closes (its subscription bus), so a
//! dropped upstream stream is seen by the upstream itself; the gateway's
//! `conductor_listen_streams` gauge says the same from its side.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::auth::{Gw, gateway_with};
use crate::python_sdk::peers;

/// An MCPServer named by its second argument: resources `note://<name>/{n}`, tools
/// `touch` (publishes `notifications/resources/updated` for `uri`) and `change`
/// (`notifications/tools/list_changed`); listen streams logged to the first argument.
/// `nolisten` as the third argument: a server without `subscriptions/listen`.
const UPSTREAM: &str = r#"
import sys, socket, anyio, uvicorn
from mcp.server.mcpserver import MCPServer, Context
from mcp.server.subscriptions import InMemorySubscriptionBus

log = open(sys.argv[1], "a", buffering=1)
name = sys.argv[2]
listens = not (len(sys.argv) > 3 and sys.argv[3] == "nolisten")

class Bus(InMemorySubscriptionBus):
    def subscribe(self, listener):
        unsubscribe = super().subscribe(listener)
        log.write("LISTEN OPEN\n")
        def done():
            log.write("LISTEN CLOSED\n")
            unsubscribe()
        return done

mcp = MCPServer(name, subscriptions=Bus() if listens else False)

@mcp.resource("note://" + name + "/{n}")
def note(n: str) -> str:
    return name + " note " + n

@mcp.tool()
async def touch(uri: str, ctx: Context) -> str:
    await ctx.notify_resource_updated(uri)
    return "touched"

@mcp.tool()
async def change(ctx: Context) -> str:
    await ctx.notify_tools_changed()
    return "changed"

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)  # connections wait in the backlog until uvicorn accepts
print(sock.getsockname()[1], flush=True)
server = uvicorn.Server(uvicorn.Config(mcp.streamable_http_app(), log_level="warning"))
anyio.run(server.serve, [sock])
"#;

const POLICY: &str = r#"version: 1
agents:
  bot: {roles: [r]}
  other: {roles: [o]}
roles:
  r:
    allow:
      - tools: ["alpha.*", "beta.*", "gamma.*"]
  o:
    allow:
      - tools: ["alpha.*", "beta.*"]
    deny:
      - tools: ["beta.read_resource"]
tools:
  alpha.touch: {action: read, destinations: []}
  beta.touch: {action: read, destinations: []}
  beta.change: {action: read, destinations: []}
destinations:
  allow: ["note://*"]
  scan: false
"#;

/// One Python upstream: its process (killed when dropped), address and log.
struct Upstream {
    child: tokio::process::Child,
    port: u16,
    log: PathBuf,
}

impl Upstream {
    async fn start(peers: &Path, dir: &Path, name: &str, mode: &str) -> Upstream {
        let script = dir.join("upstream.py");
        std::fs::write(&script, UPSTREAM).unwrap();
        let log = dir.join(format!("{name}.log"));
        std::fs::write(&log, "").unwrap();
        let mut child = tokio::process::Command::new(peers.join("venv/bin/python"))
            .arg(&script)
            .arg(&log)
            .arg(name)
            .arg(mode)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        tokio::time::timeout(
            Duration::from_secs(60),
            BufReader::new(out).read_line(&mut line),
        )
        .await
        .expect("the upstream did not start")
        .unwrap();
        let port = line.trim().parse().expect("the upstream's port");
        Upstream { child, port, log }
    }

    fn saw(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn opened(&self) -> usize {
        self.saw().matches("LISTEN OPEN").count()
    }

    fn closed(&self) -> usize {
        self.saw().matches("LISTEN CLOSED").count()
    }

    fn yaml(&self, name: &str) -> String {
        format!(
            "  {name}:\n    url: \"http://127.0.0.1:{}/mcp\"\n    timeout_seconds: 10\n",
            self.port
        )
    }
}

/// Python upstreams behind a gateway whose agents `bot` and `other` have the keys `bot`
/// and `other`. (Keep `_dir` bound: the upstreams' logs are in it.)
struct Fixture {
    up: Vec<Upstream>,
    gw: Gw,
    bot: String,
    other: String,
    _dir: tempfile::TempDir,
}

/// The upstreams `(name, mode)` started and the gateway in front of them; `None` without
/// the peers.
async fn fixture(upstreams: &[(&str, &str)]) -> Option<Fixture> {
    let peers = peers()?;
    let dir = tempfile::tempdir().unwrap();
    let mut up = Vec::new();
    let mut servers = String::new();
    for (name, mode) in upstreams {
        let u = Upstream::start(&peers, dir.path(), name, mode).await;
        servers.push_str(&u.yaml(name));
        up.push(u);
    }
    let (bot, bot_hash) = conductor_serve::auth::keys::generate().unwrap();
    let (other, other_hash) = conductor_serve::auth::keys::generate().unwrap();
    let yaml = format!(
        "version: 1\nservers:\n{servers}auth:\n  api_keys:\n    - {{agent: bot, sha256: \"{bot_hash}\"}}\n    - {{agent: other, sha256: \"{other_hash}\"}}\n"
    );
    let gw = gateway_with(&yaml, POLICY, false, &[]).await;
    Some(Fixture {
        up,
        gw,
        bot,
        other,
        _dir: dir,
    })
}

fn envelope() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientCapabilities": {}})
}

fn client() -> reqwest::Client {
    conductor_serve::upstream_tls::client_builder()
        .no_proxy()
        .build()
        .unwrap()
}

/// A 2026-07-28 request to `path` as the agent with `key`.
fn post(gw: &Gw, path: &str, key: &str, body: &Value) -> reqwest::RequestBuilder {
    let mut rb = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {key}"))
        .header("mcp-protocol-version", "2026-07-28");
    if let Some(m) = body["method"].as_str() {
        rb = rb.header("mcp-method", m);
    }
    if let Some(n) = body.pointer("/params/name").and_then(Value::as_str) {
        rb = rb.header("mcp-name", n);
    }
    rb.body(body.to_string())
}

/// The body of the answer to `rb`.
async fn text_of(rb: reqwest::RequestBuilder) -> String {
    rb.send().await.unwrap().text().await.unwrap()
}

/// `<server>.<tool>` called on `/mcp` with `arguments`; its result.
async fn call(gw: &Gw, key: &str, tool: &str, arguments: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"_meta": envelope(), "name": tool, "arguments": arguments}});
    let text = text_of(post(gw, "/mcp", key, &body)).await;
    let answer = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap_or(&text);
    let v: Value = serde_json::from_str(answer).unwrap();
    assert!(
        v["result"]["isError"] != true && v.get("error").is_none(),
        "{v}"
    );
    v
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A listen's answer: an event stream read message by message, or one JSON answer.
enum Listen {
    Stream { body: Body, buf: Vec<u8> },
    Json(Value),
}

impl Listen {
    async fn open(gw: &Gw, path: &str, key: &str, id: Value, notifications: Value) -> Listen {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen",
            "params": {"_meta": envelope(), "notifications": notifications}});
        let resp = post(gw, path, key, &body).send().await.unwrap();
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if sse {
            Listen::Stream {
                body: Box::pin(resp.bytes_stream()),
                buf: Vec::new(),
            }
        } else {
            Listen::Json(serde_json::from_str(&resp.text().await.unwrap()).unwrap())
        }
    }

    /// The JSON answer (a listen refused or failed at once).
    fn answer(self) -> Value {
        match self {
            Listen::Json(v) => v,
            Listen::Stream { .. } => panic!("the listen was answered with a stream"),
        }
    }

    /// The next message of the stream (`None`: it ended).
    async fn next(&mut self) -> Option<Value> {
        let Listen::Stream { body, buf } = self else {
            panic!("the listen was answered with json");
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buf.drain(..end + 2).collect();
                let text = String::from_utf8(event).unwrap();
                if let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return Some(serde_json::from_str(data).unwrap());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, body.next()).await {
                Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
                Ok(_) => return None,
                Err(_) => panic!("nothing on the stream for 20 s"),
            }
        }
    }
}

const TAG: &str = "io.modelcontextprotocol/subscriptionId";

/// A listen on `/mcp` as the agent with `key` for `uris` that is answered at once (refused,
/// or failed): its answer.
async fn answered(gw: &Gw, key: &str, id: Value, uris: &[&str]) -> Value {
    Listen::open(gw, "/mcp", key, id, json!({"resourceSubscriptions": uris}))
        .await
        .answer()
}

/// Wait (up to 20 s) until `ok`; `what` says what did not happen.
async fn eventually(what: impl Fn() -> String, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", what());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway's count of open upstream listen streams to `server`.
async fn open_streams(gw: &Gw, server: &str) -> i64 {
    let text = text_of(client().get(gw.url("/metrics"))).await;
    let key = format!("conductor_listen_streams{{server=\"{server}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0)
}

// One listen on `/mcp` covering resources of two upstreams: one acknowledgement in the
// aggregate namespace, then each upstream's notifications with its URIs namespaced and
// the client's own subscription id; when the client goes away, both upstream streams
// are dropped (the upstreams see their listen end; the gateway counts none open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_listen_relays_both_upstreams_and_drops_both_when_the_client_goes() {
    let Some(Fixture {
        up, gw, bot, _dir, ..
    }) = fixture(&[("alpha", ""), ("beta", "")]).await
    else {
        return;
    };
    let (alpha, beta) = (&up[0], &up[1]);
    let mut listen = Listen::open(
        &gw,
        "/mcp",
        &bot,
        json!("agg-1"),
        json!({"toolsListChanged": true, "resourceSubscriptions": [
            "conductor:beta/note://beta/2", "conductor:alpha/note://alpha/1"]}),
    )
    .await;
    let ack = listen.next().await.unwrap();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(ack["params"]["_meta"][TAG], "agg-1", "{ack}");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true, "resourceSubscriptions": [
            "conductor:alpha/note://alpha/1", "conductor:beta/note://beta/2"]}),
        "{ack}"
    );
    assert_eq!((alpha.opened(), beta.opened()), (1, 1));
    assert_eq!(open_streams(&gw, "alpha").await, 1);
    assert_eq!(open_streams(&gw, "beta").await, 1);

    // Each upstream is sent only its own URIs, in its own names: a URI of another
    // upstream touched here is not one it was asked about.
    call(&gw, &bot, "alpha.touch", json!({"uri": "note://beta/2"})).await;
    call(&gw, &bot, "alpha.touch", json!({"uri": "note://alpha/1"})).await;
    let m = listen.next().await.unwrap();
    assert_eq!(m["method"], "notifications/resources/updated", "{m}");
    assert_eq!(m["params"]["uri"], "conductor:alpha/note://alpha/1", "{m}");
    assert_eq!(m["params"]["_meta"][TAG], "agg-1", "{m}");
    call(&gw, &bot, "beta.touch", json!({"uri": "note://beta/2"})).await;
    let m = listen.next().await.unwrap();
    assert_eq!(m["params"]["uri"], "conductor:beta/note://beta/2", "{m}");
    assert_eq!(m["params"]["_meta"][TAG], "agg-1", "{m}");
    call(&gw, &bot, "beta.change", json!({})).await;
    let m = listen.next().await.unwrap();
    assert_eq!(m["method"], "notifications/tools/list_changed", "{m}");
    assert_eq!(m["params"]["_meta"][TAG], "agg-1", "{m}");

    drop(listen);
    eventually(
        || format!("alpha:\n{}\nbeta:\n{}", alpha.saw(), beta.saw()),
        || alpha.closed() == 1 && beta.closed() == 1,
    )
    .await;
    let start = Instant::now();
    while open_streams(&gw, "alpha").await + open_streams(&gw, "beta").await != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "streams still counted open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Fail closed: one refused part refuses the whole listen (the refusal a listen on
// `/mcp/<server>` gets) and no upstream stream is opened; a URI that names no upstream,
// or none at all, is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_listen_with_a_refused_part_is_refused_and_opens_nothing() {
    let Some(Fixture {
        up,
        gw,
        bot,
        other,
        _dir,
    }) = fixture(&[("alpha", ""), ("beta", "")]).await
    else {
        return;
    };
    let (alpha, beta) = (&up[0], &up[1]);
    let metadata = "http://169.254.169.254/latest/meta-data/";
    let beta_metadata = format!("conductor:beta/{metadata}");

    // beta's part subscribes to the cloud metadata endpoint: a destination refused.
    let a = answered(
        &gw,
        &bot,
        json!(5),
        &["conductor:alpha/note://alpha/1", &beta_metadata],
    )
    .await;
    assert_eq!(a["id"], 5, "{a}");
    assert_eq!(a["error"]["code"], -32001, "{a}");
    let decision = &a["error"]["data"]["dev.conductor/decision"];
    assert_eq!(decision["decision"], "deny", "{a}");
    assert!(
        decision["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "destination"),
        "{a}"
    );
    // The same part on `/mcp/beta` gets the same refusal.
    let direct = Listen::open(
        &gw,
        "/mcp/beta",
        &bot,
        json!(5),
        json!({"resourceSubscriptions": [metadata]}),
    )
    .await
    .answer();
    assert_eq!(direct["error"]["code"], a["error"]["code"], "{direct}");
    assert_eq!(
        direct["error"]["message"], a["error"]["message"],
        "{direct}"
    );
    assert_eq!(
        direct["error"]["data"]["dev.conductor/decision"]["reasons"], decision["reasons"],
        "{direct}"
    );

    // `other` may not read beta's resources at all: a rule refuses its part.
    let a = answered(
        &gw,
        &other,
        json!(6),
        &[
            "conductor:alpha/note://alpha/1",
            "conductor:beta/note://beta/2",
        ],
    )
    .await;
    assert_eq!(a["error"]["code"], -32001, "{a}");
    let reasons = &a["error"]["data"]["dev.conductor/decision"]["reasons"];
    assert_eq!(reasons[0]["check"], "tool", "{a}");
    assert_eq!(reasons[0]["rule"], "roles.o.deny[0]", "{a}");
    // (A list-changed flag involves every upstream, beta too.)
    let a = Listen::open(
        &gw,
        "/mcp",
        &other,
        json!(7),
        json!({"toolsListChanged": true}),
    )
    .await
    .answer();
    assert_eq!(a["error"]["code"], -32001, "{a}");

    // Its notifications can only be carried on an event stream, on `/mcp` as on
    // `/mcp/<server>`.
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "subscriptions/listen",
        "params": {"_meta": envelope(), "notifications": {"toolsListChanged": true}}});
    let a: Value = serde_json::from_str(
        &text_of(
            client()
                .post(gw.url("/mcp"))
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .header("authorization", format!("Bearer {bot}"))
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "subscriptions/listen")
                .body(body.to_string()),
        )
        .await,
    )
    .unwrap();
    assert_eq!(a["error"]["code"], -32600, "{a}");

    // Never a guess about a URI's upstream.
    for (uri, why) in [
        (
            "conductor:gamma/note://gamma/1",
            "which this gateway does not have",
        ),
        (
            "conductor:alph/note://alpha/1",
            "which this gateway does not have",
        ),
        (
            "conductor:alpha%2Fnote://alpha/1",
            "which this gateway does not have",
        ),
        ("note://alpha/1", "is not a resource uri of `/mcp`"),
    ] {
        let a = answered(
            &gw,
            &bot,
            json!(8),
            &["conductor:alpha/note://alpha/1", uri],
        )
        .await;
        assert_eq!(a["error"]["code"], -32602, "{a}");
        let message = a["error"]["message"].as_str().unwrap();
        assert!(message.contains(uri) && message.contains(why), "{a}");
    }
    assert_eq!(
        (alpha.opened(), beta.opened()),
        (0, 0),
        "a stream was opened"
    );
    // Both parts were decided and recorded: alpha's allowed, beta's refused.
    let listens: Vec<(String, String)> = gw
        .audit()
        .into_iter()
        .filter(|r| r.event == "subscriptions/listen" && r.agent == "bot")
        .map(|r| (r.tool, r.decision))
        .collect();
    assert!(
        listens.contains(&("alpha.read_resource".into(), "allow".into()))
            && listens.contains(&("beta.read_resource".into(), "deny".into())),
        "{listens:?}"
    );

    // The control: alpha's part alone is allowed and opened.
    let mut listen = Listen::open(
        &gw,
        "/mcp",
        &bot,
        json!(10),
        json!({"resourceSubscriptions": ["conductor:alpha/note://alpha/1"]}),
    )
    .await;
    let ack = listen.next().await.unwrap();
    assert_eq!(
        ack["params"]["notifications"],
        json!({"resourceSubscriptions": ["conductor:alpha/note://alpha/1"]}),
        "{ack}"
    );
    assert_eq!((alpha.opened(), beta.opened()), (1, 0));
}

// An upstream that cannot open its part: a clear error naming it, and the other
// upstreams' streams are closed. An upstream whose stream ends (its process dies) ends
// the client's stream with an error naming it, and the other upstream's stream is
// dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_listen_ends_when_a_part_fails_or_ends_and_closes_the_others() {
    let Some(Fixture {
        mut up,
        gw,
        bot,
        _dir,
        ..
    }) = fixture(&[("alpha", ""), ("beta", ""), ("gamma", "nolisten")]).await
    else {
        return;
    };

    let a = answered(
        &gw,
        &bot,
        json!(1),
        &[
            "conductor:alpha/note://alpha/1",
            "conductor:gamma/note://gamma/1",
        ],
    )
    .await;
    let message = a["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("upstream `gamma` did not open its part of the subscription"),
        "{a}"
    );
    eventually(
        || format!("alpha's stream was not closed:\n{}", up[0].saw()),
        || up[0].opened() == up[0].closed(),
    )
    .await;

    let mut listen = Listen::open(
        &gw,
        "/mcp",
        &bot,
        json!("two"),
        json!({"resourceSubscriptions": ["conductor:alpha/note://alpha/1",
                                         "conductor:beta/note://beta/2"]}),
    )
    .await;
    let ack = listen.next().await.unwrap();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    let before = up[0].closed();
    up[1].child.start_kill().unwrap();
    let last = loop {
        match listen.next().await {
            Some(m) if m.get("method").is_some() => continue,
            Some(m) => break m,
            None => panic!("the stream ended without an answer"),
        }
    };
    assert_eq!(last["id"], "two", "{last}");
    let message = last["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("upstream `beta` ended its part of the subscription"),
        "{last}"
    );
    assert!(listen.next().await.is_none(), "the stream went on");
    eventually(
        || format!("alpha's stream was not closed:\n{}", up[0].saw()),
        || up[0].closed() == before + 1,
    )
    .await;
}
