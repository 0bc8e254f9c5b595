//! Client sessions and the routing of MCP messages to upstreams.
//!
//! A session belongs to one authenticated agent and one endpoint (`/mcp` or
//! `/mcp/<server>`). It holds one [`Link`] per upstream it used: the upstream connection
//! (a stdio child of its own, or an HTTP upstream session) and that (agent, server,
//! session)'s gate. In the stateless revision (2026-07-28) the session is the agent's:
//! every request of that agent on that endpoint shares its links, so session labels are
//! kept per authenticated agent.
//!
//! INVARIANT: a message is forwarded in the form that was decided: names and URIs are
//! rewritten to the upstream's own *before* the gate decides, and the decided message
//! is the one sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::config::{GatewayConfig, Server};
use conductor_mcp::session::{
    Ask, Asks, ask_mode, declares_elicitation, is_ask_id, take_answer, takes_input_required,
};

use crate::gate_glue::{self, AnswerKind, Decided, GateEnv, Hold, SessionGate, code};
use crate::metrics::Metrics;
use crate::upstream::{Conn, RequestCtx, UpstreamError};

/// Protocol revisions reachable with the `initialize` handshake.
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Stateless revisions (per-request `_meta` envelope).
pub const STATELESS_VERSIONS: [&str; 1] = ["2026-07-28"];
pub const PROTOCOL_VERSION_META_KEY: &str = "io.modelcontextprotocol/protocolVersion";
pub const CLIENT_CAPABILITIES_META_KEY: &str = "io.modelcontextprotocol/clientCapabilities";

/// JSON-RPC: method not found.
pub const METHOD_NOT_FOUND: i64 = -32601;

/// The URI prefix of resources on `/mcp`: `conductor:<server>/<the server's uri>`.
pub const URI_PREFIX: &str = "conductor:";

/// `uri` of `server` as `/mcp` names it: `conductor:<server>/<uri>`.
pub fn aggregate_uri(server: &str, uri: &str) -> String {
    format!("{URI_PREFIX}{server}/{uri}")
}

/// The server and its own URI that a `/mcp` URI names: the text between the prefix and
/// the first `/` is the server id, the rest the server's URI, both as written (nothing is
/// decoded: `conductor:a%2Fb/x` names the server `a%2Fb`). `None` when `uri` is not of
/// that form or either part is empty. Whether the server exists is the caller's to check.
pub fn split_aggregate_uri(uri: &str) -> Option<(&str, &str)> {
    let (server, own) = uri.strip_prefix(URI_PREFIX)?.split_once('/')?;
    (!server.is_empty() && !own.is_empty()).then_some((server, own))
}

/// Which upstreams an endpoint exposes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    All,
    One(String),
}

/// Everything the gateway shares.
pub struct App {
    pub cfg: Mutex<Arc<GatewayConfig>>,
    pub gates: Arc<GateEnv>,
    pub http: reqwest::Client,
    pub sessions: Mutex<HashMap<String, Arc<ClientSession>>>,
    /// Stateless sessions, by (agent, scope).
    pub stateless: Mutex<HashMap<(String, Scope), Arc<ClientSession>>>,
    pub metrics: Metrics,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    pub fn config(&self) -> Arc<GatewayConfig> {
        match self.cfg.lock() {
            Ok(c) => Arc::clone(&c),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    pub fn session(&self, id: &str) -> Option<Arc<ClientSession>> {
        self.sessions.lock().ok()?.get(id).cloned()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Open sessions of `agent` (a lock failure counts as full: refuse, not admit).
    pub fn agent_session_count(&self, agent: &str) -> usize {
        self.sessions
            .lock()
            .map(|s| s.values().filter(|c| c.agent == agent).count())
            .unwrap_or(usize::MAX)
    }

    /// The agent's stateless session on `scope`.
    pub fn stateless_session(&self, agent: &str, scope: &Scope) -> Arc<ClientSession> {
        let key = (agent.to_string(), scope.clone());
        let mut map = match self.stateless.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        Arc::clone(map.entry(key).or_insert_with(|| {
            Arc::new(ClientSession::new(
                format!("stateless:{}", random_id()),
                agent,
                scope.clone(),
                true,
                STATELESS_VERSIONS[0].to_string(),
            ))
        }))
    }

    pub async fn remove_session(&self, id: &str) -> bool {
        let s = self.sessions.lock().ok().and_then(|mut m| m.remove(id));
        match s {
            Some(s) => {
                s.close().await;
                self.metrics.sessions.set(self.session_count() as i64);
                true
            }
            None => false,
        }
    }
}

/// 128 random bits, hex.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // INVARIANT: a session id is never guessable; without randomness, no session.
        return String::new();
    }
    hex::encode(b)
}

/// One client session.
pub struct ClientSession {
    pub id: String,
    pub agent: String,
    pub scope: Scope,
    pub stateless: bool,
    pub protocol_version: String,
    init_params: Mutex<Option<Value>>,
    links: tokio::sync::Mutex<HashMap<String, Arc<Link>>>,
    /// What goes to the client's GET stream.
    events_tx: mpsc::Sender<Value>,
    events_rx: tokio::sync::Mutex<Option<mpsc::Receiver<Value>>>,
    /// Gateway id of a server request → (server, the server's id).
    server_requests: Mutex<HashMap<String, (String, Value)>>,
    /// Client id of a request in flight → (server, upstream id), for cancellation.
    in_flight: Mutex<HashMap<String, (String, u64)>>,
    next: AtomicU64,
    last_used: Mutex<Instant>,
    /// How the agent proved who it is (for audit records), as set by the HTTP layer.
    auth: Mutex<Option<Value>>,
    /// The gate's own `elicitation/create` questions open at this session's client.
    asks: Mutex<Asks>,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("agent", &self.agent)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// One upstream of a session.
pub struct Link {
    pub server: Server,
    pub gate: SessionGate,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    pub init_result: Mutex<Option<Value>>,
    failures: Mutex<(u32, Option<Instant>)>,
    /// A stateless session on an upstream that only speaks the handshake revision.
    bridge: std::sync::atomic::AtomicBool,
}

impl ClientSession {
    /// Whether this session may be used by `agent` on the endpoint `scope`.
    // INVARIANT: another agent's session id is an unknown session id.
    pub fn visible_to(&self, agent: &str, scope: &Scope) -> bool {
        !self.stateless && self.agent == agent && &self.scope == scope
    }

    pub fn new(
        id: String,
        agent: &str,
        scope: Scope,
        stateless: bool,
        protocol_version: String,
    ) -> ClientSession {
        let (events_tx, events_rx) = mpsc::channel(256);
        ClientSession {
            id,
            agent: agent.to_string(),
            scope,
            stateless,
            protocol_version,
            init_params: Mutex::new(None),
            links: tokio::sync::Mutex::new(HashMap::new()),
            events_tx,
            events_rx: tokio::sync::Mutex::new(Some(events_rx)),
            server_requests: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            last_used: Mutex::new(Instant::now()),
            auth: Mutex::new(None),
            asks: Mutex::new(Asks::new()),
        }
    }

    /// Whether the client declared the `elicitation` capability in `initialize`
    /// (2025-11-25): then a held call may be put to its user.
    pub fn elicits(&self) -> bool {
        !self.stateless
            && self
                .init_params
                .lock()
                .is_ok_and(|p| declares_elicitation(p.as_ref()))
    }

    fn asks(&self) -> std::sync::MutexGuard<'_, Asks> {
        match self.asks.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        }
    }

    pub fn set_init_params(&self, params: Value) {
        if let Ok(mut p) = self.init_params.lock() {
            *p = Some(params);
        }
    }

    /// Record how the session's agent proved who it is; upstream links opened from now
    /// on carry it into every audit record.
    pub fn set_auth(&self, proof: Value) {
        if let Ok(mut a) = self.auth.lock() {
            *a = Some(proof);
        }
    }

    pub fn auth(&self) -> Option<Value> {
        self.auth.lock().ok().and_then(|a| a.clone())
    }

    pub fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// The GET stream's receiver (one GET stream at a time).
    pub async fn take_events(&self) -> Option<mpsc::Receiver<Value>> {
        self.events_rx.lock().await.take()
    }

    pub async fn give_back_events(&self, rx: mpsc::Receiver<Value>) {
        *self.events_rx.lock().await = Some(rx);
    }

    pub async fn close(&self) {
        let links: Vec<Arc<Link>> = self.links.lock().await.drain().map(|(_, l)| l).collect();
        for l in links {
            if let Some(c) = l.conn.lock().await.take() {
                c.close().await;
            }
        }
    }

    /// The link to `server`, created (and its upstream connected) when first used.
    pub async fn link(
        self: &Arc<Self>,
        app: &Arc<App>,
        server_id: &str,
    ) -> Result<Arc<Link>, Value> {
        let link = {
            let mut links = self.links.lock().await;
            if let Some(l) = links.get(server_id) {
                Arc::clone(l)
            } else {
                let cfg = app.config();
                let Some(server) = cfg.server(server_id).cloned() else {
                    return Err(error_body(
                        code::INVALID_PARAMS,
                        &format!("unknown server `{server_id}`"),
                    ));
                };
                let l = Arc::new(Link {
                    gate: app
                        .gates
                        .session_gate_as(&self.agent, &server.id, self.auth()),
                    server,
                    conn: tokio::sync::Mutex::new(None),
                    init_result: Mutex::new(None),
                    failures: Mutex::new((0, None)),
                    bridge: std::sync::atomic::AtomicBool::new(false),
                });
                links.insert(server_id.to_string(), Arc::clone(&l));
                l
            }
        };
        link.connect(app, self).await?;
        Ok(link)
    }

    fn ctx(&self, traceparent: Option<String>) -> RequestCtx {
        RequestCtx {
            protocol_version: Some(self.protocol_version.clone()),
            traceparent,
        }
    }
}

fn error_body(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// A JSON-RPC error answer.
pub fn error_answer(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

impl Link {
    /// Make sure the upstream is connected; reconnect (with backoff) when it died.
    async fn connect(&self, app: &Arc<App>, session: &Arc<ClientSession>) -> Result<(), Value> {
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_some_and(|c| c.alive()) {
            return Ok(());
        }
        if guard.is_some() {
            tracing::warn!(server = %self.server.id, agent = %session.agent, "upstream died; restarting it");
        }
        *guard = None;
        // Backoff: 0.25 s doubling to 30 s after consecutive failures.
        let wait = {
            let f = self.failures.lock().map(|f| *f).unwrap_or((0, None));
            match f {
                (n, Some(at)) if n > 0 => {
                    let backoff = Duration::from_millis(250u64.saturating_mul(1 << n.min(7)))
                        .min(Duration::from_secs(30));
                    backoff.checked_sub(at.elapsed())
                }
                _ => None,
            }
        };
        if let Some(w) = wait {
            return Err(error_body(
                code::SERVER_GONE,
                &format!(
                    "upstream `{}` is restarting; retry in {} ms",
                    self.server.id,
                    w.as_millis()
                ),
            ));
        }
        let (tx, mut rx) = mpsc::channel::<Value>(256);
        // A sandboxed stdio server's egress proxy decides through the gateway's service.
        let egress = self
            .server
            .sandbox
            .as_ref()
            .map(|_| conductor_sandbox::Egress {
                service: Arc::clone(app.gates.service()),
                subject: conductor_gate::Subject {
                    agent: session.agent.clone(),
                    workflow: None,
                    session: self.gate.session_id().to_string(),
                    server: Some(self.server.id.clone()),
                    auth: session.auth(),
                },
            });
        let conn = match Conn::open(&self.server, &session.agent, &app.http, tx, egress).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                self.failed(app);
                return Err(error_body(code::SERVER_GONE, &e.to_string()));
            }
        };
        // Unsolicited messages of this upstream → the session's GET stream.
        {
            let session = Arc::clone(session);
            let gate = self.gate.clone();
            let server = self.server.id.clone();
            tokio::spawn(async move {
                while let Some(v) = rx.recv().await {
                    if let Some(v) = from_server(&session, &gate, &server, v).await {
                        // A client without a GET stream misses them (as the spec allows).
                        let _ = session.events_tx.try_send(v);
                    }
                }
            });
        }
        // A stateless session talks 2026-07-28 to an upstream that speaks it, and bridges
        // to the handshake revision for one that does not (found by `server/discover`).
        let mut handshake = !session.stateless;
        if session.stateless {
            let probe = json!({"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {"_meta": {
                PROTOCOL_VERSION_META_KEY: STATELESS_VERSIONS[0],
                CLIENT_CAPABILITIES_META_KEY: {},
            }}});
            let ctx = RequestCtx {
                protocol_version: Some(STATELESS_VERSIONS[0].to_string()),
                traceparent: None,
            };
            let answer = first_answer(&conn, probe, &ctx, self.server.timeout).await;
            let modern = answer
                .as_ref()
                .ok()
                .and_then(|a| a.pointer("/result/supportedVersions"))
                .and_then(Value::as_array)
                .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(STATELESS_VERSIONS[0])));
            if !modern {
                self.bridge.store(true, Ordering::Relaxed);
                handshake = true;
            }
        }
        if handshake {
            let params = if session.stateless {
                json!({"protocolVersion": HANDSHAKE_VERSIONS[3], "capabilities": {},
                       "clientInfo": {"name": "conductor", "version": env!("CARGO_PKG_VERSION")}})
            } else {
                session
                    .init_params
                    .lock()
                    .ok()
                    .and_then(|p| p.clone())
                    .unwrap_or_else(|| {
                        json!({"protocolVersion": session.protocol_version, "capabilities": {},
                               "clientInfo": {"name": "conductor", "version": env!("CARGO_PKG_VERSION")}})
                    })
            };
            let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params});
            let ctx = RequestCtx {
                protocol_version: None,
                traceparent: None,
            };
            let answer = first_answer(&conn, init, &ctx, self.server.timeout).await;
            let answer = answer.and_then(|a| match a.get("result") {
                Some(r) => Ok(r.clone()),
                None => Err("it answered `initialize` with an error".into()),
            });
            match answer {
                Ok(r) => {
                    if let Ok(mut i) = self.init_result.lock() {
                        *i = Some(r);
                    }
                }
                Err(why) => {
                    self.failed(app);
                    conn.close().await;
                    return Err(error_body(
                        code::SERVER_GONE,
                        &format!(
                            "upstream `{}` did not complete the handshake: {why}",
                            self.server.id
                        ),
                    ));
                }
            }
            let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            let _ = conn.send(note, &self.ctx(session, None)).await;
        }
        if let Ok(mut f) = self.failures.lock() {
            *f = (0, None);
        }
        app.metrics.upstream_up(&self.server.id, true);
        *guard = Some(conn);
        Ok(())
    }

    fn failed(&self, app: &App) {
        app.metrics.upstream_up(&self.server.id, false);
        if let Ok(mut f) = self.failures.lock() {
            *f = (f.0.saturating_add(1), Some(Instant::now()));
        }
    }

    async fn conn(&self) -> Option<Arc<Conn>> {
        self.conn.lock().await.clone()
    }

    fn bridged(&self) -> bool {
        self.bridge.load(Ordering::Relaxed)
    }

    /// The request context for this upstream: a bridged link speaks the handshake revision.
    fn ctx(&self, session: &ClientSession, traceparent: Option<String>) -> RequestCtx {
        if self.bridged() {
            RequestCtx {
                protocol_version: Some(HANDSHAKE_VERSIONS[3].to_string()),
                traceparent,
            }
        } else {
            session.ctx(traceparent)
        }
    }
}

/// Send a request and wait (bounded) for its answer, skipping what comes before it.
/// The answer to `msg`, or why there is none (the gateway's own words: an upstream's
/// error text is not relayed from here).
async fn first_answer(
    conn: &Conn,
    msg: Value,
    ctx: &RequestCtx,
    limit: Duration,
) -> Result<Value, String> {
    let (_, mut ex) = conn.request(msg, ctx).await.map_err(|e| e.reason())?;
    loop {
        match tokio::time::timeout(limit, ex.recv()).await {
            Ok(Some(m)) if m.get("method").is_none() => return Ok(m),
            Ok(Some(_)) => {}
            Ok(None) => return Err("it closed the exchange without an answer".into()),
            Err(_) => return Err("no answer in time".into()),
        }
    }
}

/// For a bridged link: the 2026-07-28 envelope keys removed from `params._meta`.
fn strip_envelope(msg: &mut Value) {
    if let Some(meta) = msg
        .pointer_mut("/params/_meta")
        .and_then(Value::as_object_mut)
    {
        meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
        if meta.is_empty()
            && let Some(p) = msg.get_mut("params").and_then(Value::as_object_mut)
        {
            p.remove("_meta");
        }
    }
}

/// Process a message from a server to the client: labels raised (the gate), server
/// request ids made the gateway's own, names namespaced on `/mcp`. `None`: not relayed.
async fn from_server(
    session: &Arc<ClientSession>,
    gate: &SessionGate,
    server: &str,
    mut v: Value,
) -> Option<Value> {
    // INVARIANT: the labels of what the agent receives are counted before it is relayed.
    if !gate.label(&v).await {
        return None;
    }
    let is_request = v.get("method").is_some() && v.get("id").is_some();
    if is_request {
        let n = session.next.fetch_add(1, Ordering::Relaxed);
        let gw = format!("conductor-{n}");
        let original = v.get("id").cloned().unwrap_or(Value::Null);
        if let Ok(mut m) = session.server_requests.lock() {
            m.insert(
                gate_glue::id_key(&Value::from(gw.clone())),
                (server.to_string(), original),
            );
        }
        if let Some(o) = v.as_object_mut() {
            o.insert("id".into(), Value::from(gw));
        }
    }
    if session.scope == Scope::All
        && v.get("method").and_then(Value::as_str) == Some("notifications/resources/updated")
        && let Some(uri) = v.pointer_mut("/params/uri")
        && let Some(s) = uri.as_str()
    {
        *uri = Value::from(aggregate_uri(server, s));
    }
    Some(v)
}

/// Where a request goes: the server, and the message rewritten to its own names.
fn route_request(scope: &Scope, method: &str, mut msg: Value) -> Result<(String, Value), Value> {
    let server = match scope {
        Scope::One(s) => return Ok((s.clone(), msg)),
        Scope::All => {
            let params = msg.get_mut("params");
            let field = match method {
                "tools/call" | "prompts/get" => "name",
                "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
                "completion/complete" => "ref",
                _ => {
                    return Err(error_body(
                        METHOD_NOT_FOUND,
                        &format!("`{method}` is not served on `/mcp`; use `/mcp/<server>`"),
                    ));
                }
            };
            let Some(params) = params else {
                return Err(error_body(code::INVALID_PARAMS, "missing `params`"));
            };
            let target = if field == "ref" {
                let r = params.get_mut("ref");
                match r.and_then(|r| {
                    if r.get("name").is_some() {
                        r.get_mut("name")
                    } else {
                        r.get_mut("uri")
                    }
                }) {
                    Some(t) => t,
                    None => return Err(error_body(code::INVALID_PARAMS, "missing `ref`")),
                }
            } else {
                match params.get_mut(field) {
                    Some(t) => t,
                    None => {
                        return Err(error_body(
                            code::INVALID_PARAMS,
                            &format!("missing `{field}`"),
                        ));
                    }
                }
            };
            let Some(s) = target.as_str() else {
                return Err(error_body(
                    code::INVALID_PARAMS,
                    &format!("`{field}` must be a string"),
                ));
            };
            let (server, own) = if s.starts_with(URI_PREFIX) {
                match split_aggregate_uri(s) {
                    Some((srv, uri)) => (srv.to_string(), uri.to_string()),
                    None => return Err(error_body(code::INVALID_PARAMS, "unknown resource")),
                }
            } else {
                match s.split_once('.') {
                    Some((srv, name)) if !name.is_empty() => (srv.to_string(), name.to_string()),
                    _ => {
                        return Err(error_body(
                            code::INVALID_PARAMS,
                            &format!("unknown name `{s}`: names on `/mcp` are `<server>.<name>`"),
                        ));
                    }
                }
            };
            *target = Value::from(own);
            server
        }
    };
    Ok((server, msg))
}

fn namespaced(list: &mut Value, key: &str, field: &str, server: &str, uri: bool) {
    if let Some(items) = list.get_mut(key).and_then(Value::as_array_mut) {
        for it in items.iter_mut() {
            if let Some(v) = it.get_mut(field)
                && let Some(s) = v.as_str()
            {
                *v = Value::from(if uri {
                    aggregate_uri(server, s)
                } else {
                    format!("{server}.{s}")
                });
            }
            if uri
                && let Some(v) = it.get_mut("name")
                && let Some(s) = v.as_str()
            {
                *v = Value::from(format!("{server}.{s}"));
            }
        }
    }
}

/// Results that carry caching directives in 2026-07-28.
fn is_cacheable(method: &str) -> bool {
    matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    )
}

/// Lists are filtered per agent: never publicly cacheable (2026-07-28 `cacheScope`).
fn private(result: &mut Value) {
    if let Some(o) = result.as_object_mut()
        && o.contains_key("cacheScope")
    {
        o.insert("cacheScope".into(), Value::from("private"));
    }
}

/// Handle one client request; every message for the client (the last one the answer)
/// goes to `out`. `sse`: `out` is the POST's SSE stream (else only the answer reaches
/// the client there, and the gate's questions go to the session's GET stream).
pub async fn handle_request(
    app: Arc<App>,
    session: Arc<ClientSession>,
    msg: Value,
    traceparent: Option<String>,
    out: mpsc::Sender<Value>,
    sse: bool,
) {
    session.touch();
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let answer = match method.as_str() {
        "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        "server/discover" if session.scope == Scope::All => json!({"jsonrpc": "2.0", "id": id,
            "result": {"supportedVersions": STATELESS_VERSIONS, "capabilities": gateway_capabilities(),
                       "serverInfo": server_info(), "resultType": "complete",
                       "ttlMs": 0, "cacheScope": "private"}}),
        // Fanned out to every upstream: as protocol metadata, only with nothing in it
        // that a detector finds (a `cursor`, `_meta`, a `logging/setLevel` param).
        "tools/list"
        | "prompts/list"
        | "resources/list"
        | "resources/templates/list"
        | "logging/setLevel"
            if session.scope == Scope::All
                && msg
                    .get("params")
                    .is_some_and(|p| app.gates.service().has_findings(p)) =>
        {
            json!({"jsonrpc": "2.0", "id": id, "error": error_body(
                code::INVALID_PARAMS,
                "the params carry data the gate's detectors find; they would reach every upstream",
            )})
        }
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list"
            if session.scope == Scope::All =>
        {
            list_all(&app, &session, &id, &method, &msg, traceparent).await
        }
        "logging/setLevel" if session.scope == Scope::All => {
            let cfg = app.config();
            for s in &cfg.servers {
                if let Ok(link) = session.link(&app, &s.id).await {
                    let _ = exchange(
                        &app,
                        &session,
                        &link,
                        msg.clone(),
                        &method,
                        traceparent.clone(),
                        None,
                    )
                    .await;
                }
            }
            json!({"jsonrpc": "2.0", "id": id, "result": {}})
        }
        // Its notifications can only be carried on an event stream.
        "subscriptions/listen" if !sse => json!({"jsonrpc": "2.0", "id": id, "error": error_body(
            code::INVALID_REQUEST,
            "`subscriptions/listen` streams its notifications: the request must accept `text/event-stream`",
        )}),
        // One listen on `/mcp`: a part per upstream, one stream back.
        "subscriptions/listen" if session.scope == Scope::All => {
            crate::listen::listen_all(&app, &session, msg, traceparent, &out, sse).await
        }
        _ => match route_request(&session.scope, &method, msg) {
            Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
            Ok((server, mut msg)) => match session.link(&app, &server).await {
                Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
                Ok(link) => {
                    let started = Instant::now();
                    let tool = tool_label(&method, &msg);
                    let gating = Gating {
                        app: &app,
                        session: &session,
                        link: &link,
                        out: &out,
                        sse,
                    };
                    let Gated { decided, refused } = gating.decide(&id, &method, &mut msg).await;
                    let answer = match refused {
                        Some(a) => a,
                        None => {
                            let sink = out.clone();
                            exchange(
                                &app,
                                &session,
                                &link,
                                msg,
                                &method,
                                traceparent,
                                Some(&sink),
                            )
                            .await
                        }
                    };
                    if method == "tools/call" {
                        // INVARIANT: the label is the client's name redacted where a
                        // detector finds something (`/metrics` is for operators, not for
                        // the secrets an agent was tricked into naming a tool after).
                        let shown = app.gates.service().shown_tool_name(&tool);
                        app.metrics
                            .call(&server, &shown, &decided, started.elapsed());
                    }
                    answer
                }
            },
        },
    };
    let _ = out.send(answer).await;
}

/// What the gate made of a request.
pub(crate) struct Gated {
    /// The decision's name (`pass`: a method the gate does not decide).
    pub(crate) decided: String,
    /// The answer the client gets instead of the upstream's; `None`: forward the request.
    pub(crate) refused: Option<Value>,
}

/// A request of one session to one upstream on its way through the gate: every gated
/// request is decided here, whichever endpoint it came in on (`subscriptions/listen` on
/// `/mcp` decides each upstream's part here too).
pub(crate) struct Gating<'a> {
    pub(crate) app: &'a Arc<App>,
    pub(crate) session: &'a Arc<ClientSession>,
    pub(crate) link: &'a Arc<Link>,
    /// Where the client's messages go (the POST's stream).
    pub(crate) out: &'a mpsc::Sender<Value>,
    /// `out` is an event stream.
    pub(crate) sse: bool,
}

impl Gating<'_> {
    /// Decide `msg` (request `id` of `method`, already in the upstream's names) and record
    /// the decision; a call held for a person is put to the person at the client where
    /// the policy lets the gate ask, and waits until decided. The gate's state and the
    /// person's answer are the gate's: taken off `msg` (the server gets the call as first
    /// sent).
    pub(crate) async fn decide(&self, id: &Value, method: &str, msg: &mut Value) -> Gated {
        // Protocol metadata (`tools/list`, its `cursor` and `_meta`…) is decided, as in
        // `wrap`, when a detector finds something in its params: on the data check, like
        // a method that names nothing the policy addresses.
        if !gate_glue::is_gated(method)
            && !msg
                .get("params")
                .is_some_and(|p| self.link.gate.has_findings(p))
        {
            return Gated {
                decided: "pass".into(),
                refused: None,
            };
        }
        let takes_input = takes_input_required(msg);
        let answered = take_answer(msg);
        let params = msg.get("params").cloned();
        let outcome = match self
            .link
            .gate
            .decide_or_hold(id, method, params, answered)
            .await
        {
            Hold::Decided(d) => d,
            Hold::Waiting(held) => {
                let ask = Asking {
                    via: self,
                    takes_input,
                };
                ask.hold(id, method, held).await
            }
        };
        match outcome {
            Decided::Forward { decision } => Gated {
                decided: decision,
                refused: None,
            },
            Decided::Refuse {
                answer,
                decision,
                checks,
            } => {
                for c in &checks {
                    self.app.metrics.refusal(&self.link.server.id, c);
                }
                Gated {
                    decided: decision,
                    refused: Some(answer),
                }
            }
            Decided::Ask { answer } => Gated {
                decided: "approve".into(),
                refused: Some(answer),
            },
        }
    }
}

/// A held request of one session, and how its client can be asked about it.
struct Asking<'a> {
    via: &'a Gating<'a>,
    /// The request says (2026-07-28 `_meta`) that its client takes `input_required`.
    takes_input: bool,
}

impl Asking<'_> {
    /// Where the policy lets the gate ask, put `held` to the person at the client
    /// (2026-07-28: answered at once with `input_required`; 2025-11-25: an
    /// `elicitation/create` while the request waits), then wait until it is decided
    /// (by the client's answer or any other approver, or its expiry).
    async fn hold(&self, id: &Value, method: &str, held: conductor_gate::Held) -> Decided {
        let gate = &self.via.link.gate;
        let ask = ask_mode(
            gate.asks_in_client(),
            self.takes_input,
            self.via.session.elicits(),
        );
        if ask == Ask::InputRequired
            && let Some(answer) = gate.input_required(id, &held)
        {
            return Decided::Ask { answer };
        }
        if ask == Ask::Elicit {
            let form = gate.approval_form(&held);
            let requests = &self.via.session.server_requests;
            let question = self.via.session.asks().ask(&held, form, |key| {
                requests.lock().is_ok_and(|m| m.contains_key(key))
            });
            match question {
                Some(q) => self.to_client(q).await,
                None => {
                    tracing::warn!("cannot ask in the client; the call waits for another approver")
                }
            }
        }
        let decided = gate.release(id, method, held.clone()).await;
        // Decided elsewhere (or expired) while the question was open: withdrawn.
        let cancel = self.via.session.asks().forget(&held);
        if let Some(c) = cancel {
            self.to_client(c).await;
        }
        decided
    }

    /// A message of the gate's to the client: on the POST's SSE stream, or (a JSON-only
    /// POST) the session's GET stream.
    async fn to_client(&self, m: Value) {
        if self.via.sse {
            let _ = self.via.out.send(m).await;
        } else {
            let _ = self.via.session.events_tx.try_send(m);
        }
    }
}

fn tool_label(method: &str, msg: &Value) -> String {
    if method == "tools/call" {
        conductor_types::member(msg, &["params", "name"])
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(64)
            .collect()
    } else {
        method.to_string()
    }
}

pub fn server_info() -> Value {
    json!({"name": "conductor", "version": env!("CARGO_PKG_VERSION")})
}

pub fn gateway_capabilities() -> Value {
    json!({"tools": {"listChanged": true}, "resources": {"subscribe": true, "listChanged": true},
           "prompts": {"listChanged": true}, "logging": {}, "completions": {}})
}

/// The union of every upstream's list (tools: only those the agent may ever call).
async fn list_all(
    app: &Arc<App>,
    session: &Arc<ClientSession>,
    id: &Value,
    method: &str,
    msg: &Value,
    traceparent: Option<String>,
) -> Value {
    let cfg = app.config();
    let mut tasks = Vec::new();
    for s in &cfg.servers {
        let app = Arc::clone(app);
        let session = Arc::clone(session);
        let server = s.id.clone();
        let msg = msg.clone();
        let method = method.to_string();
        let tp = traceparent.clone();
        tasks.push(tokio::spawn(async move {
            let link = match session.link(&app, &server).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(server = %server, error = %e, "upstream left out of the list");
                    return None;
                }
            };
            let answer = exchange(&app, &session, &link, msg, &method, tp, None).await;
            let result = answer.get("result")?.clone();
            Some((server, result))
        }));
    }
    let (key, field, uri) = match method {
        "tools/list" => ("tools", "name", false),
        "prompts/list" => ("prompts", "name", false),
        "resources/list" => ("resources", "uri", true),
        _ => ("resourceTemplates", "uriTemplate", true),
    };
    let mut items = Vec::new();
    let mut extra = Map::new();
    for t in tasks {
        if let Ok(Some((server, mut result))) = t.await {
            namespaced(&mut result, key, field, &server, uri);
            if let Some(Value::Array(a)) = result.get_mut(key).map(Value::take) {
                items.extend(a);
            }
            if let Some(o) = result.as_object() {
                for (k, v) in o {
                    if k != key && k != "nextCursor" {
                        extra.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
    }
    extra.insert(key.into(), Value::Array(items));
    if session.stateless {
        extra
            .entry("resultType")
            .or_insert_with(|| Value::from("complete"));
        extra.entry("ttlMs").or_insert_with(|| Value::from(0));
        extra.insert("cacheScope".into(), Value::from("private"));
    }
    let mut result = Value::Object(extra);
    private(&mut result);
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Send `msg` (already decided, in the upstream's names) and wait for its answer,
/// relaying what comes before it to `sink`. The answer is processed by the gate.
/// A sink that closes (the client went away) or a deadline cancels the request upstream.
pub(crate) async fn exchange(
    app: &Arc<App>,
    session: &Arc<ClientSession>,
    link: &Arc<Link>,
    msg: Value,
    method: &str,
    traceparent: Option<String>,
    sink: Option<&mpsc::Sender<Value>>,
) -> Value {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let Some(conn) = link.conn().await else {
        return error_answer(
            &id,
            code::SERVER_GONE,
            &format!("upstream `{}` is not running", link.server.id),
        );
    };
    let ctx = link.ctx(session, traceparent);
    let mut msg = msg;
    if link.bridged() {
        strip_envelope(&mut msg);
    }
    // A stdio upstream has no headers: the trace context travels in `_meta` (the
    // OpenTelemetry MCP convention), unless the client put one there already.
    if let (Conn::Stdio(_), Some(tp)) = (&*conn, &ctx.traceparent)
        && let Some(params) = msg.get_mut("params").and_then(Value::as_object_mut)
    {
        let meta = params.entry("_meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.entry("traceparent")
                .or_insert_with(|| Value::from(tp.clone()));
        }
    }
    let (up_id, mut ex) = match conn.request(msg, &ctx).await {
        Ok(x) => x,
        Err(e) => {
            if matches!(e, UpstreamError::Gone { .. }) {
                app.metrics.upstream_up(&link.server.id, false);
            }
            return error_answer(&id, code::SERVER_GONE, &e.to_string());
        }
    };
    let key = gate_glue::id_key(&id);
    if let Ok(mut m) = session.in_flight.lock() {
        m.insert(key.clone(), (link.server.id.clone(), up_id));
    }
    let deadline =
        tokio::time::Instant::now() + link.server.timeout.min(app.config().limits.request_timeout);
    // A `subscriptions/listen` stream lasts until its client cancels it by going away.
    let long_lived = method == "subscriptions/listen" && sink.is_some();
    let _counted = long_lived.then(|| app.metrics.listen_stream(&link.server.id));
    let kind = gate_glue::answer_kind(method);
    let result = loop {
        let closed = async {
            match sink {
                Some(s) => s.closed().await,
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            m = ex.recv() => m,
            () = closed => {
                cancel(&conn, &ctx, up_id, "the client went away").await;
                break error_answer(&id, code::INTERNAL_ERROR, "cancelled: the client went away");
            }
            () = tokio::time::sleep_until(deadline), if !long_lived => {
                cancel(&conn, &ctx, up_id, "timed out").await;
                break error_answer(&id, code::SERVER_GONE,
                    &format!("upstream `{}` did not answer in time", link.server.id));
            }
        };
        let Some(m) = next else {
            break error_answer(
                &id,
                code::SERVER_GONE,
                &format!("upstream `{}` went away", link.server.id),
            );
        };
        if m.get("method").is_some() {
            if let (Some(v), Some(s)) = (
                from_server(session, &link.gate, &link.server.id, m).await,
                sink,
            ) {
                let _ = s.send(v).await;
            }
            continue;
        }
        let mut m = m;
        if link.bridged()
            && let Some(r) = m.get_mut("result").and_then(Value::as_object_mut)
        {
            r.entry("resultType")
                .or_insert_with(|| Value::from("complete"));
            if is_cacheable(method) {
                r.entry("ttlMs").or_insert_with(|| Value::from(0));
                r.entry("cacheScope")
                    .or_insert_with(|| Value::from("private"));
            }
        }
        break answer_from_server(link, kind, m).await;
    };
    if let Ok(mut m) = session.in_flight.lock() {
        m.remove(&key);
    }
    result
}

async fn answer_from_server(link: &Link, kind: AnswerKind, mut m: Value) -> Value {
    let id = m.get("id").cloned().unwrap_or(Value::Null);
    match kind {
        AnswerKind::ToolsList if m.get("result").is_some() => {
            let result = m.get("result").cloned().unwrap_or(Value::Null);
            match link.gate.tools_list(result).await {
                Some(mut r) => {
                    private(&mut r);
                    if let Some(o) = m.as_object_mut() {
                        o.insert("result".into(), r);
                    }
                    m
                }
                None => error_answer(
                    &id,
                    code::INTERNAL_ERROR,
                    "the gate failed on the tool list",
                ),
            }
        }
        _ => {
            // INVARIANT: a prompt cannot hand the agent what a read would refuse.
            if kind == AnswerKind::Prompt
                && let Some(refused) = link.gate.refuse_embedded(&id, &m).await
            {
                return refused;
            }
            if let Some(r) = m.get_mut("result") {
                private(r);
            }
            if link.gate.label(&m).await {
                m
            } else {
                error_answer(&id, code::INTERNAL_ERROR, "the gate failed on the answer")
            }
        }
    }
}

async fn cancel(conn: &Conn, ctx: &RequestCtx, up_id: u64, reason: &str) {
    let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                      "params": {"requestId": up_id, "reason": reason}});
    let _ = conn.send(note, ctx).await;
    conn.forget(up_id);
}

/// Handle a client notification or an answer to a server request. `false`: refused
/// (an answer to a question of the gate's that this session was never asked).
pub async fn handle_one_way(app: Arc<App>, session: Arc<ClientSession>, msg: Value) -> bool {
    session.touch();
    let ctx = session.ctx(None);
    if let Some(method) = msg.get("method").and_then(Value::as_str) {
        match method {
            // The gateway did its own handshake with every upstream.
            "notifications/initialized" => {}
            "notifications/cancelled" => {
                let target = msg
                    .pointer("/params/requestId")
                    .map(gate_glue::id_key)
                    .and_then(|k| session.in_flight.lock().ok()?.get(&k).cloned());
                if let Some((server, up_id)) = target
                    && let Ok(link) = session.link(&app, &server).await
                    && let Some(conn) = link.conn().await
                {
                    // Only what the upstream needs: the request to stop. The client's
                    // `reason` is free text, undecided: it stays here.
                    let m = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                   "params": {"requestId": up_id}});
                    let _ = conn.send(m, &ctx).await;
                }
            }
            // Known notifications carry no call; everything else is decided (and,
            // without an id, refused and recorded).
            m if gate_glue::is_gated(m) && !conductor_mcp::gate::known_notification(m) => {
                // INVARIANT: a gated method without an id is recorded as refused, never sent.
                let server = match &session.scope {
                    Scope::One(s) => Some(s.clone()),
                    Scope::All => route_request(&Scope::All, m, msg.clone()).ok().map(|r| r.0),
                };
                if let Some(server) = server
                    && let Ok(link) = session.link(&app, &server).await
                {
                    link.gate
                        .refuse_notification(m, msg.get("params").cloned())
                        .await;
                }
            }
            _ => {
                let links: Vec<Arc<Link>> = session.links.lock().await.values().cloned().collect();
                // A known notification carrying data a detector finds is decided (and,
                // without an id, refused and recorded) instead of relayed.
                if let Some(first) = links.first()
                    && let Some(params) = msg.get("params")
                    && first.gate.has_findings(params)
                {
                    first
                        .gate
                        .refuse_notification(method, msg.get("params").cloned())
                        .await;
                    return true;
                }
                for link in links {
                    if let Some(conn) = link.conn().await {
                        let _ = conn.send(msg.clone(), &ctx).await;
                    }
                }
            }
        }
        return true;
    }
    let Some(id) = msg.get("id") else {
        return true;
    };
    // INVARIANT: an answer to the gate's own question never reaches a server, and
    // decides only a question this session's client was asked.
    if is_ask_id(id) {
        let held = session.asks().take(id);
        let Some(held) = held else {
            tracing::warn!(agent = %session.agent, "refused an answer to a question this session was not asked");
            return false;
        };
        let result = msg.get("result").cloned();
        app.gates.answer_in_client(held, result).await;
        return true;
    }
    // An answer to a server request: back to that server, under its own id.
    let target = session
        .server_requests
        .lock()
        .ok()
        .and_then(|mut m| m.remove(&gate_glue::id_key(id)));
    let Some((server, original)) = target else {
        tracing::warn!(agent = %session.agent, "dropped an answer to no server request");
        return true;
    };
    if let Ok(link) = session.link(&app, &server).await
        && let Some(conn) = link.conn().await
    {
        // INVARIANT: what a person or the client answers a server is decided on its
        // data before the server sees it; a refused answer reaches it as an error.
        let m = match link.gate.decide_reply(&msg).await {
            None => {
                let mut m = msg;
                if let Some(o) = m.as_object_mut() {
                    o.insert("id".into(), original);
                }
                m
            }
            Some(refusal) => error_answer(&original, code::DENIED, &refusal),
        };
        let _ = conn.send(m, &ctx).await;
    }
    true
}

/// The result of `initialize` for a new session: the upstream's own on `/mcp/<server>`,
/// the gateway's on `/mcp`.
pub async fn initialize(app: &Arc<App>, session: &Arc<ClientSession>) -> Result<Value, Value> {
    match &session.scope {
        Scope::All => Ok(json!({"protocolVersion": session.protocol_version,
            "capabilities": gateway_capabilities(), "serverInfo": server_info(),
            "instructions": "Tools, prompts and resources of several MCP servers, behind Conductor's gate: names are `<server>.<name>`."})),
        Scope::One(s) => {
            let link = session.link(app, s).await?;
            let r = link.init_result.lock().ok().and_then(|r| r.clone());
            r.ok_or_else(|| error_body(code::SERVER_GONE, "the upstream gave no handshake result"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_visible_to_its_agent_on_its_endpoint_only() {
        let s = ClientSession::new(
            random_id(),
            "alice",
            Scope::One("fetch".into()),
            false,
            "2025-11-25".into(),
        );
        assert!(s.visible_to("alice", &Scope::One("fetch".into())));
        assert!(!s.visible_to("bob", &Scope::One("fetch".into())));
        assert!(!s.visible_to("alice", &Scope::All));
        assert!(!s.visible_to("alice", &Scope::One("wiki".into())));
    }

    #[test]
    fn session_ids_are_128_random_bits() {
        let (a, b) = (random_id(), random_id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn names_on_the_aggregate_endpoint_route_to_their_server() {
        let m = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ev2.echo","arguments":{}}});
        let (server, m) = route_request(&Scope::All, "tools/call", m).unwrap();
        assert_eq!(server, "ev2");
        assert_eq!(m["params"]["name"], "echo");
        let m = json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"conductor:fs/file:///a.txt"}});
        let (server, m) = route_request(&Scope::All, "resources/read", m).unwrap();
        assert_eq!(
            (server.as_str(), m["params"]["uri"].as_str()),
            ("fs", Some("file:///a.txt"))
        );
        let m = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}});
        assert!(route_request(&Scope::All, "tools/call", m).is_err());
    }
}
