//! Connections to upstream MCP servers: stdio (a child process per agent and session,
//! never shared between agents) and Streamable HTTP (one pooled client per server).
//!
//! A connection rewrites request ids to its own (so that requests of many clients, or of
//! one stateless agent sending `id: 1` twice, never collide) and restores the client's id
//! on the answer. Everything the server sends that belongs to no request in flight
//! (server requests, notifications) goes to the connection's `unsolicited` channel.
//!
//! INVARIANT: a request in flight always gets an answer: its server's answer, or an
//! error when the server exits, closes its stream, answers garbage or times out.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::config::{Secret, Server, Transport};
use crate::gate_glue::{self, Message, code};
use crate::json_seq::{JsonSeq, SeqError};

/// Largest message accepted from an upstream.
pub const MAX_UPSTREAM_MESSAGE: usize = 16 * 1024 * 1024;

/// Why an upstream could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{server}` could not be started: {reason}")]
    Spawn { server: String, reason: String },
    #[error("upstream `{server}` is not running")]
    Gone { server: String },
    #[error("upstream `{server}` failed: {reason}")]
    Failed { server: String, reason: String },
}

impl UpstreamError {
    /// What went wrong, without the server's name (for a message that names it).
    pub fn reason(&self) -> String {
        match self {
            UpstreamError::Spawn { reason, .. } => format!("it could not be started: {reason}"),
            UpstreamError::Gone { .. } => "it is not running".into(),
            UpstreamError::Failed { reason, .. } => reason.clone(),
        }
    }
}

/// What the caller needs to know about the request besides the message.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    /// `MCP-Protocol-Version` to send (HTTP upstreams).
    pub protocol_version: Option<String>,
    /// W3C trace context to carry on.
    pub traceparent: Option<String>,
}

/// One message of an exchange, or its end.
pub type Exchange = mpsc::Receiver<Value>;

struct InFlight {
    client_id: Value,
    progress: Option<String>,
    tx: mpsc::Sender<Value>,
}

type Pending = Arc<Mutex<HashMap<u64, InFlight>>>;

/// A live connection to one upstream.
pub enum Conn {
    Stdio(StdioConn),
    Http(HttpConn),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Stdio(c) => write!(f, "Stdio({})", c.server),
            Conn::Http(c) => write!(f, "Http({})", c.server),
        }
    }
}

impl Conn {
    /// Connect to (spawn) `server` for `agent`. Unsolicited server messages go to `unsolicited`.
    ///
    /// A stdio server with `sandbox:` starts in Conductor's sandbox, its egress proxy
    /// deciding through `egress` (required then: without it the server does not start).
    pub async fn open(
        server: &Server,
        agent: &str,
        http: &reqwest::Client,
        unsolicited: mpsc::Sender<Value>,
        egress: Option<conductor_sandbox::Egress>,
    ) -> Result<Conn, UpstreamError> {
        // Upstream credentials are the gateway's: the server's, or this agent's own.
        match &server.transport_for(agent) {
            Transport::Stdio { command, env, cwd } => {
                let child = match &server.sandbox {
                    None => None,
                    Some(sandbox) => {
                        Some(spawn_sandboxed(&server.id, command, env, sandbox, egress).await?)
                    }
                };
                StdioConn::spawn(
                    &server.id,
                    agent,
                    command,
                    env,
                    cwd.as_deref(),
                    unsolicited,
                    child,
                )
                .map(Conn::Stdio)
            }
            Transport::Http { url, headers, tls } => Ok(Conn::Http(HttpConn {
                server: server.id.clone(),
                url: url.clone(),
                headers: headers.clone(),
                // INVARIANT: TLS settings that cannot be loaded end here (no fallback to
                // another trust store, and no plain connection).
                client: crate::upstream_tls::client_for(tls.as_ref(), http).map_err(|e| {
                    UpstreamError::Failed {
                        server: server.id.clone(),
                        reason: format!("its tls settings cannot be used: {e}"),
                    }
                })?,
                session: Mutex::new(None),
                next: AtomicU64::new(1),
                unsolicited,
                timeout: server.timeout,
            })),
        }
    }

    pub fn alive(&self) -> bool {
        match self {
            Conn::Stdio(c) => c.alive.load(Ordering::Relaxed),
            Conn::Http(_) => true,
        }
    }

    /// Send a request; the receiver yields the messages of the exchange (server requests
    /// and notifications about it), the last being its answer, with the client's id.
    /// Returns the upstream's id of the request too (for cancellation).
    pub async fn request(
        &self,
        message: Value,
        ctx: &RequestCtx,
    ) -> Result<(u64, Exchange), UpstreamError> {
        match self {
            Conn::Stdio(c) => c.request(message).await,
            Conn::Http(c) => c.request(message, ctx).await,
        }
    }

    /// Send a notification or an answer to a server request.
    pub async fn send(&self, message: Value, ctx: &RequestCtx) -> Result<(), UpstreamError> {
        match self {
            Conn::Stdio(c) => c.write(&message).await,
            Conn::Http(c) => c.post_one_way(message, ctx).await,
        }
    }

    /// Stop waiting for the answer to request `up_id` (cancelled: its client went away or
    /// it timed out), so that a server that never answers a cancelled request does not
    /// leave it in flight for the connection's life.
    pub fn forget(&self, up_id: u64) {
        if let Conn::Stdio(c) = self
            && let Ok(mut p) = c.pending.lock()
        {
            p.remove(&up_id);
        }
        // HTTP: each request's answer has its own reader, which ends with its client.
    }

    /// The upstream's session id (HTTP), if it gave one.
    pub fn upstream_session(&self) -> Option<String> {
        match self {
            Conn::Stdio(_) => None,
            Conn::Http(c) => c.session.lock().ok().and_then(|s| s.clone()),
        }
    }

    /// End the connection (DELETE the upstream session; kill the child).
    pub async fn close(&self) {
        match self {
            Conn::Stdio(c) => c.close(),
            Conn::Http(c) => c.close().await,
        }
    }
}

/// The `_meta` key of a `subscriptions/listen` stream's subscription id (the JSON-RPC id
/// of the listen request).
pub const SUBSCRIPTION_ID_META_KEY: &str = "io.modelcontextprotocol/subscriptionId";

/// Where a `subscriptions/listen` stream's notifications carry its subscription id.
const SUBSCRIPTION_ID: [&str; 3] = ["params", "_meta", SUBSCRIPTION_ID_META_KEY];
/// Where the listen's answer (the stream ended on purpose) carries it.
const SUBSCRIPTION_ID_OF_ANSWER: [&str; 3] = ["result", "_meta", SUBSCRIPTION_ID_META_KEY];

/// The upstream id a subscription id names: the id as sent, or its decimal string.
fn subscription_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse::<u64>().ok().filter(|n| n.to_string() == *s),
        _ => None,
    }
}

fn progress_key(message: &Value) -> Option<String> {
    conductor_types::member(message, &["params", "_meta", "progressToken"]).map(gate_glue::id_key)
}

fn register(
    pending: &Pending,
    next: &AtomicU64,
    mut message: Value,
) -> (u64, Value, mpsc::Receiver<Value>) {
    let id = next.fetch_add(1, Ordering::Relaxed);
    let client_id = message.get("id").cloned().unwrap_or(Value::Null);
    let progress = progress_key(&message);
    if let Some(obj) = message.as_object_mut() {
        obj.insert("id".into(), Value::from(id));
    }
    let (tx, rx) = mpsc::channel(64);
    if let Ok(mut p) = pending.lock() {
        p.insert(
            id,
            InFlight {
                client_id,
                progress,
                tx,
            },
        );
    }
    (id, message, rx)
}

fn gone_error(client_id: &Value, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": client_id, "error": {"code": code::SERVER_GONE, "message": message}})
}

/// Route one message from the server: an answer to its request (id restored), a
/// progress notification to the request that asked for it, anything else to the
/// oldest request in flight or, without one, to `unsolicited`.
async fn route(pending: &Pending, unsolicited: &mpsc::Sender<Value>, value: Value) {
    // The shape checks of `classify` on the parsed message (no second serialisation
    // and parse per message).
    let message = match gate_glue::classify_value(value) {
        Ok(m) => m,
        Err(_) => {
            tracing::warn!("dropped a message from an upstream that is not a json-rpc message");
            return;
        }
    };
    match message {
        Message::Response { id, mut value } => {
            let entry = id
                .as_u64()
                .and_then(|n| pending.lock().ok().and_then(|mut p| p.remove(&n)));
            match entry {
                Some(f) => {
                    // The answer that ends a listen names its subscription: the client's.
                    if let Some(sub) =
                        conductor_types::member_mut(&mut value, &SUBSCRIPTION_ID_OF_ANSWER)
                    {
                        *sub = f.client_id.clone();
                    }
                    if let Some(obj) = value.as_object_mut() {
                        obj.insert("id".into(), f.client_id);
                    }
                    let _ = f.tx.send(value).await;
                }
                None => {
                    tracing::warn!("dropped an answer from an upstream to no request in flight")
                }
            }
        }
        Message::Notification { method, mut value } => {
            if let Some(sub) = conductor_types::member(&value, &SUBSCRIPTION_ID) {
                // A `subscriptions/listen` stream's: tagged with the upstream's id of the
                // listen request, which is restored to the client's. One whose listen is
                // no longer in flight has no one to go to.
                let target = subscription_of(sub).and_then(|n| {
                    let p = pending.lock().ok()?;
                    p.get(&n).map(|f| (f.tx.clone(), f.client_id.clone()))
                });
                match target {
                    Some((tx, client_id)) => {
                        if let Some(sub) = conductor_types::member_mut(&mut value, &SUBSCRIPTION_ID)
                        {
                            *sub = client_id;
                        }
                        let _ = tx.send(value).await;
                    }
                    // Expected just after a listen ends; debug, so a chatty upstream
                    // does not flood the log.
                    None => tracing::debug!(
                        "dropped an upstream notification of a subscription that is not open"
                    ),
                }
                return;
            }
            let target = {
                let p = pending.lock().ok();
                p.and_then(|p| {
                    if method == "notifications/progress" {
                        let key = conductor_types::member(&value, &["params", "progressToken"])
                            .map(gate_glue::id_key);
                        p.values()
                            .find(|f| f.progress.is_some() && f.progress == key)
                            .map(|f| f.tx.clone())
                    } else {
                        p.iter().min_by_key(|(k, _)| **k).map(|(_, f)| f.tx.clone())
                    }
                })
            };
            match target {
                Some(tx) => {
                    let _ = tx.send(value).await;
                }
                None => {
                    let _ = unsolicited.send(value).await;
                }
            }
        }
        Message::Request { value, .. } => {
            let target = pending
                .lock()
                .ok()
                .and_then(|p| p.iter().min_by_key(|(k, _)| **k).map(|(_, f)| f.tx.clone()));
            match target {
                Some(tx) => {
                    let _ = tx.send(value).await;
                }
                None => {
                    let _ = unsolicited.send(value).await;
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------
// stdio
// ------------------------------------------------------------------------------------

/// A sandboxed stdio server (its proxy runs as long as the guard is kept).
type Sandboxed = (tokio::process::Child, conductor_sandbox::SandboxGuard);

/// Start `command` in Conductor's sandbox (the same API as `wrap --sandbox`).
///
/// INVARIANT (fail closed): a layer that cannot be set up, or no egress proxy to decide
/// with, means the server does not start.
async fn spawn_sandboxed(
    server: &str,
    command: &[String],
    env: &std::collections::BTreeMap<String, Secret>,
    sandbox: &crate::config::Sandbox,
    egress: Option<conductor_sandbox::Egress>,
) -> Result<Sandboxed, UpstreamError> {
    let fail = |reason: String| UpstreamError::Spawn {
        server: server.into(),
        reason,
    };
    let egress = egress.ok_or_else(|| fail("the sandbox has no egress proxy".into()))?;
    let init = conductor_sandbox::InitProgram::current_exe(conductor_sandbox::INIT_ARG)
        .map_err(|e| fail(format!("cannot find the conductor executable: {e}")))?;
    let profile = conductor_sandbox::Profile {
        read: sandbox.read.clone(),
        write: sandbox.write.clone(),
        env: sandbox.env.clone(),
        vars: env
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect(),
        require_landlock: false,
    };
    conductor_sandbox::spawn(&init, command, &profile, egress)
        .await
        .map_err(|e| fail(e.to_string()))
}

/// The variables of the gateway's environment a stdio server inherits: where programs
/// are found, whose home and locale, temporary and cache directories, and which TLS
/// roots to trust. Nothing that usually holds a credential (tokens, keys, proxy URLs
/// with their user and password): a server that needs one names it in `env:`.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "SHELL",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    // How the runtimes that stdio servers are written in behave (`uvx`/`python`,
    // `npx`/`node`): buffering, module paths, the active virtual environment.
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONIOENCODING",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "NODE_PATH",
    "NODE_OPTIONS",
];

/// [`INHERITED_ENV`] and the locale's `LC_*` variables, as the gateway has them.
fn inherited_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| {
            k.to_str().is_some_and(|k| {
                INHERITED_ENV.contains(&k) || (k.starts_with("LC_") && k.len() > 3)
            })
        })
        .collect()
}

pub struct StdioConn {
    server: String,
    to_child: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next: AtomicU64,
    alive: Arc<AtomicBool>,
    child: Mutex<Option<tokio::process::Child>>,
    /// Keeps a sandboxed server's egress proxy running.
    _sandbox: Option<conductor_sandbox::SandboxGuard>,
}

impl StdioConn {
    fn spawn(
        server: &str,
        agent: &str,
        command: &[String],
        env: &std::collections::BTreeMap<String, Secret>,
        cwd: Option<&std::path::Path>,
        unsolicited: mpsc::Sender<Value>,
        sandboxed: Option<Sandboxed>,
    ) -> Result<StdioConn, UpstreamError> {
        let Some((program, args)) = command.split_first() else {
            return Err(UpstreamError::Spawn {
                server: server.into(),
                reason: "no command".into(),
            });
        };
        let (mut child, guard) = match sandboxed {
            Some((child, guard)) => (child, Some(guard)),
            None => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                // INVARIANT: a stdio server gets what it needs to run and what its
                // `env:` (and its agent's) names — never the gateway's own environment,
                // which holds every secret the gateway file references (other servers'
                // tokens, other agents' credentials).
                cmd.env_clear();
                for (k, v) in inherited_env() {
                    cmd.env(k, v);
                }
                for (k, v) in env {
                    cmd.env(k, v.expose());
                }
                if let Some(d) = cwd {
                    cmd.current_dir(d);
                }
                #[cfg(unix)]
                cmd.process_group(0);
                let child = cmd.spawn().map_err(|e| UpstreamError::Spawn {
                    server: server.into(),
                    reason: format!("`{program}`: {}", e.kind().to_string().to_lowercase()),
                })?;
                (child, None)
            }
        };
        // A sandboxed server's stderr is the gateway's own (it is not piped).
        let stderr = child.stderr.take();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(UpstreamError::Spawn {
                server: server.into(),
                reason: "no standard streams".into(),
            });
        };
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let alive = Arc::new(AtomicBool::new(true));
        let (to_child, mut rx) = mpsc::channel::<Vec<u8>>(256);
        // Writer.
        tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(line) = rx.recv().await {
                if stdin.write_all(&line).await.is_err() || stdin.write_all(b"\n").await.is_err() {
                    break;
                }
                if rx.is_empty() && stdin.flush().await.is_err() {
                    break;
                }
            }
        });
        // Stderr to the log.
        if let Some(stderr) = stderr {
            let server = server.to_string();
            let agent = agent.to_string();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let l: String = l.chars().take(2000).collect();
                    tracing::info!(target: "upstream", server = %server, agent = %agent, stderr = %l);
                }
            });
        }
        // Reader.
        {
            let pending = Arc::clone(&pending);
            let alive = Arc::clone(&alive);
            let server = server.to_string();
            tokio::spawn(async move {
                let mut reader = BufReader::with_capacity(64 * 1024, stdout);
                loop {
                    match conductor_mcp::framing::read_line(&mut reader, MAX_UPSTREAM_MESSAGE).await
                    {
                        Ok(conductor_mcp::framing::Line::Complete(b)) => {
                            if b.iter().all(u8::is_ascii_whitespace) {
                                continue;
                            }
                            match serde_json::from_slice::<Value>(&b) {
                                Ok(v) => route(&pending, &unsolicited, v).await,
                                Err(_) => {
                                    tracing::warn!(server = %server, "dropped a line from the upstream that is not json");
                                    answer_from_head(&pending, &b, "the upstream's answer is not a valid json-rpc message; it was dropped").await;
                                }
                            }
                        }
                        Ok(conductor_mcp::framing::Line::TooLong { len, head }) => {
                            tracing::warn!(server = %server, len, "dropped an overlong message from the upstream");
                            answer_from_head(
                                &pending,
                                &head,
                                "the upstream's answer is longer than the limit; it was dropped",
                            )
                            .await;
                        }
                        Ok(conductor_mcp::framing::Line::Eof) | Err(_) => break,
                    }
                }
                alive.store(false, Ordering::Relaxed);
                tracing::warn!(server = %server, "the upstream exited");
                let waiting: Vec<InFlight> = match pending.lock() {
                    Ok(mut p) => p.drain().map(|(_, f)| f).collect(),
                    Err(_) => Vec::new(),
                };
                for f in waiting {
                    let _ =
                        f.tx.send(gone_error(
                            &f.client_id,
                            &format!("upstream `{server}` exited before answering this request"),
                        ))
                        .await;
                }
            });
        }
        Ok(StdioConn {
            server: server.to_string(),
            to_child,
            pending,
            next: AtomicU64::new(1),
            alive,
            child: Mutex::new(Some(child)),
            _sandbox: guard,
        })
    }

    async fn write(&self, message: &Value) -> Result<(), UpstreamError> {
        let line = serde_json::to_vec(message).map_err(|_| UpstreamError::Gone {
            server: self.server.clone(),
        })?;
        if !self.alive.load(Ordering::Relaxed) {
            return Err(UpstreamError::Gone {
                server: self.server.clone(),
            });
        }
        self.to_child
            .send(line)
            .await
            .map_err(|_| UpstreamError::Gone {
                server: self.server.clone(),
            })
    }

    async fn request(&self, message: Value) -> Result<(u64, Exchange), UpstreamError> {
        let (id, message, rx) = register(&self.pending, &self.next, message);
        if let Err(e) = self.write(&message).await {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
            return Err(e);
        }
        Ok((id, rx))
    }

    fn close(&self) {
        if let Ok(mut c) = self.child.lock()
            && let Some(mut child) = c.take()
        {
            let _ = child.start_kill();
        }
    }
}

async fn answer_from_head(pending: &Pending, head: &[u8], message: &str) {
    if let Some(id) = conductor_mcp::framing::id_from_head(head).and_then(|v| v.as_u64()) {
        let f = pending.lock().ok().and_then(|mut p| p.remove(&id));
        if let Some(f) = f {
            let _ =
                f.tx.send(json!({"jsonrpc":"2.0","id": f.client_id,
                             "error":{"code": code::INTERNAL_ERROR, "message": message}}))
                    .await;
        }
    }
}

// ------------------------------------------------------------------------------------
// Streamable HTTP
// ------------------------------------------------------------------------------------

pub struct HttpConn {
    server: String,
    url: url::Url,
    headers: Vec<(String, Secret)>,
    client: reqwest::Client,
    session: Mutex<Option<String>>,
    next: AtomicU64,
    unsolicited: mpsc::Sender<Value>,
    timeout: Duration,
}

/// The `Mcp-Name` value of a request (the body's tool or prompt name, or resource uri).
pub fn mcp_name(message: &Value) -> Option<String> {
    let method = message.get("method")?.as_str()?;
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return None,
    };
    message
        .get("params")?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

/// A header value for `s`: as is when it is visible ASCII, else the `=?base64?…?=` form.
pub fn encode_header_value(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) && !s.starts_with(' ') && !s.ends_with(' ') {
        s.to_string()
    } else {
        use base64_lite::encode;
        format!("=?base64?{}?=", encode(s.as_bytes()))
    }
}

/// Standard base64 with padding.
pub fn encode_header_value_b64(b: &[u8]) -> String {
    base64_lite::encode(b)
}

mod base64_lite {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pub fn encode(b: &[u8]) -> String {
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = match c {
                [a, b2, c2] => (u32::from(*a) << 16) | (u32::from(*b2) << 8) | u32::from(*c2),
                [a, b2] => (u32::from(*a) << 16) | (u32::from(*b2) << 8),
                [a] => u32::from(*a) << 16,
                _ => 0,
            };
            let k = c.len();
            for i in 0..4 {
                if i <= k {
                    let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                    out.push(char::from(*T.get(idx).unwrap_or(&b'A')));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

impl HttpConn {
    fn post(&self, body: &Value, ctx: &RequestCtx) -> reqwest::RequestBuilder {
        let mut rb = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in &self.headers {
            rb = rb.header(k.as_str(), v.expose());
        }
        if let Ok(s) = self.session.lock()
            && let Some(id) = s.as_ref()
        {
            rb = rb.header("mcp-session-id", id.as_str());
        }
        if let Some(v) = &ctx.protocol_version {
            rb = rb.header("mcp-protocol-version", v.as_str());
            // INVARIANT: routing headers are recomputed from the body that is forwarded.
            if v.as_str() >= "2026-07-28" {
                if let Some(m) = body.get("method").and_then(Value::as_str) {
                    rb = rb.header("mcp-method", m);
                }
                if let Some(n) = mcp_name(body) {
                    rb = rb.header("mcp-name", encode_header_value(&n));
                }
            }
        }
        if let Some(tp) = &ctx.traceparent {
            rb = rb.header("traceparent", tp.as_str());
        }
        rb.body(serde_json::to_vec(body).unwrap_or_default())
    }

    fn failed(&self, reason: impl Into<String>) -> UpstreamError {
        UpstreamError::Failed {
            server: self.server.clone(),
            reason: reason.into(),
        }
    }

    async fn request(
        &self,
        message: Value,
        ctx: &RequestCtx,
    ) -> Result<(u64, Exchange), UpstreamError> {
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let (id, message, rx) = register(&pending, &self.next, message);
        let is_init = message.get("method").and_then(Value::as_str) == Some("initialize");
        let resp = tokio::time::timeout(self.timeout, self.post(&message, ctx).send())
            .await
            .map_err(|_| self.failed("no answer in time"))?
            .map_err(|e| self.failed(reqwest_reason(&e)))?;
        let status = resp.status();
        if is_init
            && let Some(sid) = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            && let Ok(mut s) = self.session.lock()
        {
            *s = Some(sid.to_string());
        }
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !status.is_success() {
            // A JSON-RPC error answer in the body is relayed; anything else is a failure.
            if ctype.starts_with("application/json")
                && let Ok(b) = resp.bytes().await
                && let Ok(v) = serde_json::from_slice::<Value>(&b)
                && v.get("error").is_some()
            {
                let mut v = v;
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("id".into(), Value::from(id));
                }
                route(&pending, &self.unsolicited, v).await;
                return Ok((id, rx));
            }
            return Err(self.failed(format!("http status {}", status.as_u16())));
        }
        // The request's own channel: the stream is dropped (and the upstream sees its
        // client go) once nobody waits on it any more.
        let watch = pending
            .lock()
            .ok()
            .and_then(|p| p.get(&id).map(|f| f.tx.clone()));
        if ctype.starts_with("text/event-stream") {
            let server = self.server.clone();
            let unsolicited = self.unsolicited.clone();
            tokio::spawn(async move {
                if let Some(watch) = watch {
                    tokio::select! {
                        () = read_sse(resp, &pending, &unsolicited) => {}
                        () = watch.closed() => {}
                    }
                }
                answer_waiting(
                    &pending,
                    &format!("upstream `{server}` closed its stream before answering this request"),
                )
                .await;
            });
            return Ok((id, rx));
        }
        // A JSON answer: its first message is read here, so that a body that is not
        // JSON-RPC is refused as the request's failure.
        let mut body = Box::pin(resp.bytes_stream());
        let mut seq = JsonSeq::new(MAX_UPSTREAM_MESSAGE);
        let first = tokio::time::timeout(self.timeout, next_message(&mut body, &mut seq))
            .await
            .map_err(|_| self.failed("no answer in time"))?;
        match first {
            Ok(Some(v)) => route(&pending, &self.unsolicited, v).await,
            Ok(None) | Err(BodyError::NotJson) => {
                return Err(self.failed("the answer is not a json-rpc message"));
            }
            Err(BodyError::TooLong) => {
                return Err(self.failed("the answer is longer than the limit"));
            }
            Err(BodyError::Read) => return Err(self.failed("the answer could not be read")),
        }
        if pending.lock().map(|p| p.is_empty()).unwrap_or(false) {
            return Ok((id, rx));
        }
        // Not answered yet: the server streams further messages in the same body (a
        // `subscriptions/listen` stream, progress before the answer); read on as they come.
        let server = self.server.clone();
        let unsolicited = self.unsolicited.clone();
        tokio::spawn(async move {
            if let Some(watch) = watch {
                loop {
                    let next = tokio::select! {
                        m = next_message(&mut body, &mut seq) => m,
                        () = watch.closed() => break,
                    };
                    match next {
                        Ok(Some(v)) => {
                            route(&pending, &unsolicited, v).await;
                            if pending.lock().map(|p| p.is_empty()).unwrap_or(true) {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            tracing::warn!(server = %server, "an upstream's json answer went on with something that is not a json-rpc message; dropped");
                            break;
                        }
                    }
                }
            }
            answer_waiting(
                &pending,
                &format!("upstream `{server}` ended its answer before answering this request"),
            )
            .await;
        });
        Ok((id, rx))
    }

    async fn post_one_way(&self, message: Value, ctx: &RequestCtx) -> Result<(), UpstreamError> {
        let resp = tokio::time::timeout(self.timeout, self.post(&message, ctx).send())
            .await
            .map_err(|_| self.failed("no answer in time"))?
            .map_err(|e| self.failed(reqwest_reason(&e)))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.failed(format!("http status {}", resp.status().as_u16())))
        }
    }

    async fn close(&self) {
        let sid = self.session.lock().ok().and_then(|s| s.clone());
        if let Some(sid) = sid {
            let mut rb = self
                .client
                .delete(self.url.clone())
                .header("mcp-session-id", sid);
            for (k, v) in &self.headers {
                rb = rb.header(k.as_str(), v.expose());
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), rb.send()).await;
        }
    }
}

fn reqwest_reason(e: &reqwest::Error) -> String {
    if let Some(t) = crate::upstream_tls::tls_reason(e) {
        format!("tls with the upstream failed: {t}")
    } else if crate::upstream_tls::closed_early(e) {
        "the upstream closed the connection before it answered (an https upstream that requires a client certificate does this to a client without one: `tls.cert`/`tls.key`)".into()
    } else if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else if e.is_body() || e.is_decode() {
        "the answer could not be read".into()
    } else {
        "the request failed".into()
    }
}

/// INVARIANT: an answer body has ended; a request still waiting on it is answered.
async fn answer_waiting(pending: &Pending, message: &str) {
    let waiting: Vec<InFlight> = match pending.lock() {
        Ok(mut p) => p.drain().map(|(_, f)| f).collect(),
        Err(_) => Vec::new(),
    };
    for f in waiting {
        let _ = f.tx.send(gone_error(&f.client_id, message)).await;
    }
}

/// Why a JSON answer body could not be read on.
enum BodyError {
    NotJson,
    TooLong,
    Read,
}

/// The next message of a JSON answer body; `None` at its end.
async fn next_message<S>(body: &mut S, seq: &mut JsonSeq) -> Result<Option<Value>, BodyError>
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    loop {
        match seq.next() {
            Ok(Some(v)) => return Ok(Some(v)),
            Ok(None) => {}
            Err(SeqError::NotJson) => return Err(BodyError::NotJson),
            Err(SeqError::TooLong) => return Err(BodyError::TooLong),
        }
        match body.next().await {
            Some(Ok(chunk)) => seq.push(&chunk),
            Some(Err(_)) => return Err(BodyError::Read),
            None => {
                return match seq.finish() {
                    Ok(()) => Ok(None),
                    Err(_) => Err(BodyError::NotJson),
                };
            }
        }
    }
}

/// Read a `text/event-stream` body: every event's data is one JSON-RPC message.
async fn read_sse(resp: reqwest::Response, pending: &Pending, unsolicited: &mpsc::Sender<Value>) {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return };
        buf.extend_from_slice(&chunk);
        if buf.len() + data.len() > MAX_UPSTREAM_MESSAGE {
            tracing::warn!("an upstream event is longer than the limit; the stream is dropped");
            return;
        }
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if !data.is_empty() {
                    match serde_json::from_slice::<Value>(&data) {
                        Ok(v) if v.is_object() => route(pending, unsolicited, v).await,
                        _ => tracing::warn!(
                            "dropped an upstream event that is not a json-rpc message"
                        ),
                    }
                    data.clear();
                }
                let done = pending.lock().map(|p| p.is_empty()).unwrap_or(true);
                if done {
                    return;
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(rest);
            }
            // `event:`, `id:`, `retry:` and comments are not needed here.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A listen's stream and the answer that ends it (the server closing the
    // subscription on purpose) name the subscription by the client's id, not the
    // connection's own id of the request.
    #[tokio::test]
    async fn a_listen_and_its_last_answer_carry_the_clients_subscription_id() {
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let (id, sent, mut rx) = register(
            &pending,
            &AtomicU64::new(41),
            json!({"jsonrpc": "2.0", "id": "client-1", "method": "subscriptions/listen", "params": {}}),
        );
        assert_eq!(sent["id"], 41);
        let (unsolicited, mut none) = mpsc::channel(4);
        let tag = |s: Value| json!({ SUBSCRIPTION_ID_META_KEY: s });
        for n in [json!(id), json!(id.to_string())] {
            route(
                &pending,
                &unsolicited,
                json!({"jsonrpc": "2.0",
                "method": "notifications/resources/updated",
                "params": {"uri": "x://1", "_meta": tag(n)}}),
            )
            .await;
            let m = rx.recv().await.unwrap();
            assert_eq!(m["params"]["_meta"], tag(json!("client-1")), "{m}");
        }
        // Another subscription's: dropped, not relayed anywhere.
        route(
            &pending,
            &unsolicited,
            json!({"jsonrpc": "2.0",
            "method": "notifications/tools/list_changed", "params": {"_meta": tag(json!(999))}}),
        )
        .await;
        route(
            &pending,
            &unsolicited,
            json!({"jsonrpc": "2.0", "id": id,
            "result": {"_meta": tag(json!(id)), "resultType": "complete"}}),
        )
        .await;
        let last = rx.recv().await.unwrap();
        assert_eq!(last["id"], "client-1", "{last}");
        assert_eq!(last["result"]["_meta"], tag(json!("client-1")), "{last}");
        assert!(none.try_recv().is_err());
    }

    #[test]
    fn header_values_are_encoded_when_not_plain_ascii() {
        assert_eq!(super::encode_header_value("fetch"), "fetch");
        assert_eq!(super::encode_header_value("é"), "=?base64?w6k=?=");
        assert_eq!(super::base64_lite::encode(b"abcd"), "YWJjZA==");
    }
}
