//! The HTTP front: Streamable HTTP (2025-11-25 sessions and 2026-07-28 stateless
//! requests) on `/mcp` and `/mcp/<server>`, and `/healthz`, `/readyz`, `/metrics`.
//!
//! INVARIANT: the checks of this module run before any session lookup, decision or
//! routing: `Host` (DNS rebinding), `Origin` (403), the body size, the JSON-RPC shape,
//! and the routing headers (`Mcp-Method`, `Mcp-Name`, `MCP-Protocol-Version` must say
//! what the body says; else 400 with -32020).
//!
//! INVARIANT: a session id is bound to the agent that created it and to its endpoint:
//! presented by another agent (or on another endpoint) it is unknown (404).
//!
//! INVARIANT: every MCP request is authenticated ([`crate::auth`]) right after the
//! `Host`/`Origin` checks and before anything else looks at it; a request without
//! valid credentials gets 401 with `WWW-Authenticate: Bearer resource_metadata="…"`.
//! The client's credentials (`Authorization`, `X-API-Key`, cookies) never go upstream:
//! upstream requests are built from the gateway's own headers only (`upstream.rs`).

#![expect(
    clippy::result_large_err,
    reason = "an early answer is a whole `Response`; these functions run once per request"
)]

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::auth::{self, AuthError, Authenticated, Authenticator, ConnInfo, prm};
use crate::config::{Auth, GatewayConfig};
use crate::conn_timing::{self, Timeouts};
use crate::gate_glue::{self, GateEnv, Message, code};
use crate::metrics::Metrics;
use crate::session::{
    self, App, CLIENT_CAPABILITIES_META_KEY, ClientSession, HANDSHAKE_VERSIONS,
    PROTOCOL_VERSION_META_KEY, STATELESS_VERSIONS, Scope,
};

/// JSON-RPC: a routing header disagrees with the body (2026-07-28).
pub const HEADER_MISMATCH: i64 = -32020;
/// JSON-RPC: unsupported protocol version (2026-07-28).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// JSON-RPC: the request needs a client capability its `_meta` did not declare (2026-07-28).
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;

/// How often a pending answer stream carries a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// What `serve` runs with.
pub struct ServeOptions {
    pub config: GatewayConfig,
    pub config_path: Option<PathBuf>,
    pub policy_path: Option<PathBuf>,
    pub gates: Arc<GateEnv>,
    /// Overrides the file's `listen`.
    pub listen: Option<std::net::SocketAddr>,
    /// Set to true to stop: in-flight calls are drained, the audit is flushed.
    pub shutdown: watch::Receiver<bool>,
    /// Called with the bound address once listening.
    pub on_listen: Option<Box<dyn FnOnce(std::net::SocketAddr) + Send>>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{0}` is not a loopback address: a non-loopback listener needs `tls` and an authentication method other than `none`"
    )]
    NotLoopback(std::net::SocketAddr),
    #[error("{0}")]
    Tls(#[from] auth::mtls::TlsError),
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Start(String),
}

/// What every handler shares.
pub(crate) struct Shared {
    pub(crate) app: Arc<App>,
    listen: Mutex<std::net::SocketAddr>,
    shutdown: watch::Receiver<bool>,
    /// The authentication in force (rebuilt when the gateway file's `auth` changes).
    auth: Mutex<Arc<Authenticator>>,
    /// Whether the listener speaks TLS.
    tls: bool,
}

pub(crate) type St = Arc<Shared>;

impl Shared {
    /// The authenticator of the configuration in force.
    pub(crate) fn authenticator(&self, cfg: &GatewayConfig) -> Arc<Authenticator> {
        let mut cur = match self.auth.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        if cur.config() != &cfg.auth {
            let public = self
                .listen
                .lock()
                .map(|l| !l.ip().is_loopback())
                .unwrap_or(true);
            // INVARIANT: a reloaded file cannot put `none` on a non-loopback listener
            // (one moved there by `--listen`): the authentication in force stays.
            if public && matches!(cfg.auth, Auth::None { .. }) {
                tracing::error!(
                    "the reloaded gateway file says `auth: none` on a non-loopback listener; the previous authentication stays in force"
                );
            } else {
                *cur = Arc::new(Authenticator::new(&cfg.auth));
            }
        }
        Arc::clone(&cur)
    }

    /// The gateway's base URL as clients reach it: `public_url`, else this request's
    /// `Host` (already checked to be one of ours) with the listener's scheme.
    pub(crate) fn base_url(&self, cfg: &GatewayConfig, h: &HeaderMap) -> String {
        if let Some(u) = &cfg.public_url {
            return u.as_str().trim_end_matches('/').to_string();
        }
        let host = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| self.listen.lock().ok().map(|l| l.to_string()))
            .unwrap_or_default();
        format!("{}://{host}", if self.tls { "https" } else { "http" })
    }

    /// The `/mcp` audience of this gateway.
    fn audience(&self, cfg: &GatewayConfig, h: &HeaderMap) -> String {
        match &cfg.auth {
            Auth::Verified(m) if m.jwt.is_some() => m
                .jwt
                .as_ref()
                .map(|j| j.audience.clone())
                .unwrap_or_default(),
            _ => prm::default_audience(&self.base_url(cfg, h)),
        }
    }
}

/// Authenticate a request (after [`hygiene`]): the agent and its proof, or the 401
/// answer (counted in `auth_failures` and logged, without the credential).
pub(crate) async fn authenticate_request(
    st: &Shared,
    cfg: &GatewayConfig,
    h: &HeaderMap,
    conn: &ConnInfo,
    server: Option<&str>,
) -> Result<Authenticated, Response> {
    let a = st.authenticator(cfg);
    match a.authenticate_for(h, conn, server).await {
        Ok(who) => Ok(who),
        Err(e) => {
            st.app.metrics.auth_failure(e.reason());
            tracing::info!(reason = e.reason(), error = %e,
                peer = ?conn.peer, "request refused: not authenticated");
            Err(unauthorized(st, cfg, h, server, &e))
        }
    }
}

fn unauthorized(
    st: &Shared,
    cfg: &GatewayConfig,
    h: &HeaderMap,
    server: Option<&str>,
    e: &AuthError,
) -> Response {
    let url = prm::metadata_url(&st.base_url(cfg, h), server);
    let challenge = prm::challenge(&url, e.bearer_error(), Some(&e.to_string()));
    let mut r = plain(StatusCode::UNAUTHORIZED, &e.to_string());
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// 403 for a token without the scopes this request needs (RFC 6750 §3.1).
fn insufficient_scope(
    st: &Shared,
    cfg: &GatewayConfig,
    h: &HeaderMap,
    server: Option<&str>,
    missing: &[String],
) -> Response {
    st.app.metrics.auth_failure("insufficient_scope");
    let url = prm::metadata_url(&st.base_url(cfg, h), server);
    let mut r = plain(
        StatusCode::FORBIDDEN,
        &format!("the token lacks the scopes `{}`", missing.join(" ")),
    );
    if let Ok(v) = HeaderValue::from_str(&prm::insufficient_scope(&url, missing)) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The scopes a token lacks for this message: `*`, the endpoint's server, and for a
/// `tools/call` its server and tool. On `/mcp`, a gated method other than `tools/call`
/// may reach any server: it needs every server's scopes.
fn missing_scopes(
    st: &Shared,
    cfg: &GatewayConfig,
    who: &Authenticated,
    scope: &Scope,
    message: &Message,
) -> Vec<String> {
    let Some(have) = &who.scopes else {
        return Vec::new();
    };
    let a = st.authenticator(cfg);
    let Some(v) = a.jwt() else {
        return Vec::new();
    };
    let (method, value) = match message {
        Message::Request { method, value, .. } | Message::Notification { method, value, .. } => {
            (method.as_str(), value)
        }
        Message::Response { .. } => return v.missing_scopes(None, None, have),
    };
    let name = (method == "tools/call")
        .then(|| conductor_types::member(value, &["params", "name"]).and_then(Value::as_str))
        .flatten();
    match scope {
        Scope::One(server) => v.missing_scopes(Some(server), name, have),
        Scope::All => {
            if let Some((server, tool)) = name.and_then(|n| n.split_once('.')) {
                return v.missing_scopes(Some(server), Some(tool), have);
            }
            if !gate_glue::is_gated(method) {
                return v.missing_scopes(None, None, have);
            }
            let mut all: Vec<String> = cfg
                .servers
                .iter()
                .flat_map(|s| v.missing_scopes(Some(&s.id), None, have))
                .collect();
            all.extend(v.missing_scopes(None, None, have));
            all.sort();
            all.dedup();
            all
        }
    }
}

/// Run the gateway until `shutdown` turns true.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    serve_with(opts, Router::new()).await
}

/// [`serve`], with more routes on the same listener (the web console at `/console`,
/// which does its own authentication: approvers, never agents).
pub async fn serve_with(opts: ServeOptions, extra: Router) -> Result<(), ServeError> {
    let addr = opts.listen.unwrap_or(opts.config.listen);
    // INVARIANT: beyond loopback, only TLS and real authentication (`--listen` may move
    // a loopback file's listener: checked here, not only when the file is read).
    if !addr.ip().is_loopback()
        && (opts.config.tls.is_none() || matches!(opts.config.auth, Auth::None { .. }))
    {
        return Err(ServeError::NotLoopback(addr));
    }
    let acceptor = match &opts.config.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(auth::mtls::server_config(
            t,
        )?)),
        None => None,
    };
    let authenticator = Arc::new(Authenticator::new(&opts.config.auth));
    // `https` upstreams without `tls:` are verified against the system's roots.
    let http = match crate::upstream_tls::upstream_client_builder().build() {
        Ok(c) => c,
        Err(e) => {
            return Err(ServeError::Start(format!(
                "cannot build the upstream http client: {e}"
            )));
        }
    };
    let limits = opts.config.limits.clone();
    let app = Arc::new(App {
        cfg: Mutex::new(Arc::new(opts.config)),
        gates: Arc::clone(&opts.gates),
        http,
        sessions: Mutex::new(std::collections::HashMap::new()),
        stateless: Mutex::new(std::collections::HashMap::new()),
        metrics: Metrics::new(),
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr()?;
    // New pending approvals are announced to the gateway file's webhook (if any).
    let notifier = Arc::new(crate::webhook::Notifier::new(&app));
    app.gates
        .service()
        .on_pending(Arc::new(move |a| notifier.pending(a)));
    let shared = Arc::new(Shared {
        app: Arc::clone(&app),
        listen: Mutex::new(bound),
        shutdown: opts.shutdown.clone(),
        auth: Mutex::new(authenticator),
        tls: acceptor.is_some(),
    });
    // Stamped now, before anyone can see the listener: a change made after that is seen.
    let cfg_stamp = opts.config_path.as_deref().and_then(crate::reload::stamp);
    let pol_watch = opts.policy_path.map(|p| {
        conductor_gate::PolicyWatch::new(app.gates.service(), p, Duration::from_millis(50))
    });
    let reloader = tokio::spawn(crate::reload::watch(
        Arc::clone(&app),
        opts.config_path,
        cfg_stamp,
        pol_watch,
    ));
    let reaper = tokio::spawn(reap_idle(Arc::clone(&app)));
    let router = Router::new()
        .route("/mcp", get(mcp_get).post(mcp_post_all).delete(mcp_delete))
        .route(
            "/mcp/{server}",
            get(mcp_get_one).post(mcp_post_one).delete(mcp_delete_one),
        )
        .route("/.well-known/oauth-protected-resource", get(prm_root))
        .route("/.well-known/oauth-protected-resource/mcp", get(prm_all))
        .route(
            "/.well-known/oauth-protected-resource/mcp/{server}",
            get(prm_one),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::authzen::routes())
        .merge(crate::approvals_api::routes())
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(shared)
        .merge(extra);
    tracing::info!(listen = %bound, "conductor serve listening");
    if let Some(f) = opts.on_listen {
        f(bound);
    }
    let result = accept_loop(listener, router, acceptor, opts.shutdown.clone(), TIMEOUTS).await;
    reloader.abort();
    reaper.abort();
    let sessions: Vec<Arc<ClientSession>> = app
        .sessions
        .lock()
        .map(|mut m| m.drain().map(|(_, s)| s).collect())
        .unwrap_or_default();
    for s in sessions {
        s.close().await;
    }
    let stateless: Vec<Arc<ClientSession>> = app
        .stateless
        .lock()
        .map(|mut m| m.drain().map(|(_, s)| s).collect())
        .unwrap_or_default();
    for s in stateless {
        s.close().await;
    }
    let audit = Arc::clone(app.gates.audit());
    let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    result.map_err(ServeError::Io)
}

/// How long a client may take to send a request's head, from its first byte
/// (slow-client protection), and the TLS handshake.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a keep-alive connection may wait for the first byte of its next request:
/// longer than common clients' pool idle timeouts (reqwest, hyper-util, Go: 90 s), so
/// that they retire an idle connection before the gateway closes it under a request
/// ([`crate::conn_timing`]).
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(120);
/// The connection timing of the listener.
const TIMEOUTS: Timeouts = Timeouts {
    head: HEADER_READ_TIMEOUT,
    idle: KEEP_ALIVE_IDLE,
};
/// Largest request head, in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 4096;
/// How long in-flight calls get to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(30);

/// Accept connections until `shutdown`, then drain: every connection finishes its
/// in-flight requests (at most [`DRAIN`]).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    timeouts: Timeouts,
) -> Result<(), std::io::Error> {
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt as _;
    // HTTP/1 only, served by hyper's own HTTP/1 connection: no protocol sniffing read
    // (hyper-util's `auto` read the first bytes without any timeout, so a connection
    // that sent nothing, or a slow first line, was held for ever).
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The timer is per connection (below); hyper needs a header read timeout set to use
    // it, its value is replaced by `timeouts`.
    builder
        .header_read_timeout(timeouts.head)
        .max_buf_size(MAX_HEAD_BYTES);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            r = shutdown.changed() => { if r.is_err() { break; } continue; }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            r = shutdown.changed() => { if r.is_err() { break; } continue; }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let serve = |conn: Arc<ConnInfo>| {
                router.map_request(move |req: axum::http::Request<hyper::body::Incoming>| {
                    let mut req = req.map(Body::new);
                    req.extensions_mut().insert(Arc::clone(&conn));
                    req
                })
            };
            match acceptor {
                None => {
                    let conn = Arc::new(ConnInfo {
                        peer: Some(peer),
                        client_cert: None,
                    });
                    let (io, timer) = conn_timing::for_connection(stream, timeouts);
                    builder.timer(timer);
                    let c = builder.serve_connection(
                        TokioIo::new(io),
                        hyper_util::service::TowerToHyperService::new(serve(conn)),
                    );
                    let _ = watcher.watch(c).await;
                }
                Some(acceptor) => {
                    // INVARIANT: a handshake that fails (no certificate, wrong CA,
                    // expired, revoked) or stalls never reaches HTTP.
                    let tls =
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(t)) => t,
                            Ok(Err(e)) => {
                                tracing::info!(peer = %peer, error = %e, "tls handshake refused");
                                drop(permit);
                                return;
                            }
                            Err(_) => {
                                drop(permit);
                                return;
                            }
                        };
                    let client_cert = auth::mtls::peer_cert(tls.get_ref().1);
                    let conn = Arc::new(ConnInfo {
                        peer: Some(peer),
                        client_cert,
                    });
                    let (io, timer) = conn_timing::for_connection(tls, timeouts);
                    builder.timer(timer);
                    let c = builder.serve_connection(
                        TokioIo::new(io),
                        hyper_util::service::TowerToHyperService::new(serve(conn)),
                    );
                    let _ = watcher.watch(c).await;
                }
            }
            drop(permit);
        });
    }
    tracing::info!("shutting down: draining in-flight calls");
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("calls still in flight after the drain period were abandoned");
    }
    Ok(())
}

async fn reap_idle(app: Arc<App>) {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let idle = app.config().limits.session_idle;
        let old: Vec<String> = app
            .sessions
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, s)| s.idle_for() > idle)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        for id in old {
            app.remove_session(&id).await;
        }
    }
}

// ------------------------------------------------------------------------------------
// Answers
// ------------------------------------------------------------------------------------

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    no_store(
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
    )
}

fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    json_response(status, &session::error_answer(id, code, message))
}

pub(crate) fn plain(status: StatusCode, message: &str) -> Response {
    no_store(
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            format!("{message}\n"),
        )
            .into_response(),
    )
}

// ------------------------------------------------------------------------------------
// Hygiene and authentication
// ------------------------------------------------------------------------------------

fn one_header<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut all = h.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(format!("`{name}` is given more than once"));
    }
    match first {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| format!("`{name}` is not visible ascii")),
    }
}

/// `Host` must name this gateway; `Origin`, when present, must be listed.
pub(crate) fn hygiene(st: &Shared, cfg: &GatewayConfig, h: &HeaderMap) -> Result<(), Response> {
    let host = match one_header(h, "host") {
        Ok(Some(v)) => v.to_ascii_lowercase(),
        Ok(None) => return Err(plain(StatusCode::BAD_REQUEST, "missing `Host`")),
        Err(e) => return Err(plain(StatusCode::BAD_REQUEST, &e)),
    };
    let listen = st.listen.lock().map(|l| *l).ok();
    let mut allowed: Vec<String> = Vec::new();
    if let Some(l) = listen {
        let port = l.port();
        allowed.push(l.to_string());
        allowed.push(format!("localhost:{port}"));
        allowed.push(format!("127.0.0.1:{port}"));
        allowed.push(format!("[::1]:{port}"));
    }
    if let Some(u) = &cfg.public_url
        && let Some(hn) = u.host_str()
    {
        match u.port() {
            Some(p) => allowed.push(format!("{hn}:{p}").to_ascii_lowercase()),
            None => allowed.push(hn.to_ascii_lowercase()),
        }
    }
    // INVARIANT: a browser page on another host cannot reach the gateway through a
    // rebound DNS name: the Host must be one of ours.
    if !allowed.contains(&host) {
        return Err(plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this gateway does not serve that `Host`",
        ));
    }
    match one_header(h, "origin") {
        Ok(None) => Ok(()),
        Ok(Some(o)) if cfg.origins.iter().any(|a| a.eq_ignore_ascii_case(o)) => Ok(()),
        // The gateway's own origin (the scheme it serves and a Host checked above to be
        // ours): a same-origin request, which DNS rebinding cannot forge (the rebound
        // page's Host would be the attacker's name). MCP conformance
        // `dns-rebinding-protection` expects it accepted.
        Ok(Some(o)) if own_origin(cfg, &host, o) => Ok(()),
        Ok(Some(_)) | Err(_) => Err(plain(StatusCode::FORBIDDEN, "origin not allowed")),
    }
}

/// Whether `origin` is this gateway's own: `<scheme>://<host>` for the `Host` it was
/// reached by (already checked to be one of ours), or the origin of `public_url`.
fn own_origin(cfg: &GatewayConfig, host: &str, origin: &str) -> bool {
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let o = origin.to_ascii_lowercase();
    o.strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .is_some_and(|r| r == host)
        || cfg.public_url.as_ref().is_some_and(|u| {
            u.origin()
                .ascii_serialization()
                .eq_ignore_ascii_case(origin)
        })
}

fn scope_of(cfg: &GatewayConfig, server: Option<String>) -> Result<Scope, Response> {
    match server {
        None => Ok(Scope::All),
        Some(s) if cfg.server(&s).is_some() => Ok(Scope::One(s)),
        Some(_) => Err(plain(StatusCode::NOT_FOUND, "no such server")),
    }
}

fn accepts_sse(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// Decode an `Mcp-Name` value (`=?base64?…?=` form included); `None` when malformed.
fn decode_header_value(v: &str) -> Option<String> {
    let Some(payload) = v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    else {
        return Some(v.to_string());
    };
    let bytes = base64_decode(payload)?;
    String::from_utf8(bytes).ok()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::new();
    for chunk in b.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { val(c)? };
            n = (n << 6) | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(bytes.get(..3 - pad).unwrap_or(&[]));
    }
    // Canonical form only: re-encoding gives the same text.
    (crate::upstream::encode_header_value_b64(&out) == s).then_some(out)
}

/// The routing-header ladder. `Ok(stateless)`, or the 400 answer.
fn check_routing(h: &HeaderMap, body: &Value, id: &Value) -> Result<bool, Response> {
    let bad = |c: i64, m: &str| Err(rpc_error(StatusCode::BAD_REQUEST, id, c, m));
    let version = match one_header(h, "mcp-protocol-version") {
        Ok(v) => v,
        Err(e) => return bad(HEADER_MISMATCH, &e),
    };
    let method_h = match one_header(h, "mcp-method") {
        Ok(v) => v,
        Err(e) => return bad(HEADER_MISMATCH, &e),
    };
    let name_h = match one_header(h, "mcp-name") {
        Ok(v) => v,
        Err(e) => return bad(HEADER_MISMATCH, &e),
    };
    let method = body.get("method").and_then(Value::as_str);
    let meta = conductor_types::member(body, &["params", "_meta"]);
    let envelope = meta.and_then(|m| m.get(PROTOCOL_VERSION_META_KEY));
    let stateless = version.is_some_and(|v| STATELESS_VERSIONS.contains(&v)) || envelope.is_some();
    if stateless && method.is_some() && body.get("id").is_some() {
        let Some(m) = meta.and_then(Value::as_object) else {
            return bad(
                code::INVALID_PARAMS,
                "params._meta must be an object carrying the protocol version and client capabilities",
            );
        };
        if !m.contains_key(PROTOCOL_VERSION_META_KEY)
            || !m.contains_key(CLIENT_CAPABILITIES_META_KEY)
        {
            return bad(
                code::INVALID_PARAMS,
                "params._meta is missing the protocol version or the client capabilities",
            );
        }
        if version.is_none() || envelope.and_then(Value::as_str) != version {
            return bad(
                HEADER_MISMATCH,
                "mcp-protocol-version header does not match the request envelope's protocol version",
            );
        }
    } else if let Some(v) = version
        && !HANDSHAKE_VERSIONS.contains(&v)
        && !STATELESS_VERSIONS.contains(&v)
    {
        return Err(unsupported_version(id, v, true));
    }
    // INVARIANT: what routes and what is decided is the body; a header that says
    // otherwise is refused, whichever revision the request claims.
    if (stateless || method_h.is_some()) && method.is_some() && method_h != method {
        return bad(
            HEADER_MISMATCH,
            "mcp-method header does not match the request body's method",
        );
    }
    let name_key = match method {
        Some("tools/call" | "prompts/get") => Some("name"),
        Some("resources/read") => Some("uri"),
        _ => None,
    };
    if let Some(k) = name_key
        && let Some(value) = body.get("params").and_then(|p| p.get(k))
        && (stateless || name_h.is_some())
        && name_h.and_then(decode_header_value).as_deref() != value.as_str()
    {
        return bad(
            HEADER_MISMATCH,
            &format!("mcp-name header does not match the request body's `{k}` parameter"),
        );
    }
    if name_key.is_none() && name_h.is_some() && stateless {
        return bad(
            HEADER_MISMATCH,
            "mcp-name header on a method without a name",
        );
    }
    if stateless
        && let Some(v) = envelope.and_then(Value::as_str)
        && !STATELESS_VERSIONS.contains(&v)
    {
        return Err(unsupported_version(id, v, false));
    }
    // 2026-07-28 removed these: a 404 with -32601 (SEP-2575), not an answer of the
    // gateway's or a request an upstream session would take in the older protocol.
    if stateless && let Some(m) = method.filter(|m| REMOVED_IN_STATELESS.contains(m)) {
        return Err(rpc_error(
            StatusCode::NOT_FOUND,
            id,
            session::METHOD_NOT_FOUND,
            &format!(
                "method not found: `{m}` is not a method of {}",
                STATELESS_VERSIONS[0]
            ),
        ));
    }
    Ok(stateless)
}

/// Methods of the handshake revisions that 2026-07-28 removed.
const REMOVED_IN_STATELESS: [&str; 5] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// 400 with `UnsupportedProtocolVersionError`: the versions this gateway speaks
/// (`data.supported`) and the one asked for (`data.requested`), per SEP-2575. `any`:
/// the request could have been of either kind (a header with no envelope).
fn unsupported_version(id: &Value, requested: &str, any: bool) -> Response {
    let supported: Vec<&str> = if any {
        HANDSHAKE_VERSIONS
            .iter()
            .chain(STATELESS_VERSIONS.iter())
            .copied()
            .collect()
    } else {
        STATELESS_VERSIONS.to_vec()
    };
    let mut answer = session::error_answer(
        id,
        UNSUPPORTED_PROTOCOL_VERSION,
        &format!("unsupported protocol version `{requested}`"),
    );
    if let Some(e) = answer.get_mut("error").and_then(Value::as_object_mut) {
        e.insert(
            "data".into(),
            json!({"supported": supported, "requested": requested}),
        );
    }
    json_response(StatusCode::BAD_REQUEST, &answer)
}

/// The HTTP status of a 2026-07-28 answer: SEP-2575 puts method-not-found on 404 and
/// the protocol errors of the request itself on 400; everything else is 200.
fn stateless_status(answer: &Value) -> StatusCode {
    match conductor_types::member(answer, &["error", "code"]).and_then(Value::as_i64) {
        Some(session::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(MISSING_CLIENT_CAPABILITY | HEADER_MISMATCH | UNSUPPORTED_PROTOCOL_VERSION) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::OK,
    }
}

/// The final answer to the request (not a notification or a server request on its way).
fn is_final(m: &Value) -> bool {
    m.get("method").is_none() && (m.get("result").is_some() || m.get("error").is_some())
}

// ------------------------------------------------------------------------------------
// Handlers
// ------------------------------------------------------------------------------------

type Conn = Extension<Arc<ConnInfo>>;

async fn mcp_post_all(
    State(st): State<St>,
    Extension(c): Conn,
    h: HeaderMap,
    body: Body,
) -> Response {
    post(st, None, h, c, body).await
}

async fn mcp_post_one(
    State(st): State<St>,
    Extension(c): Conn,
    Path(server): Path<String>,
    h: HeaderMap,
    body: Body,
) -> Response {
    post(st, Some(server), h, c, body).await
}

/// The longest a request body may take to arrive (and at most the request timeout):
/// a client that sends a byte now and then holds no connection open for long.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// Read `body` whole: at most `limit` bytes, within `deadline`. The refusal otherwise.
async fn read_body(body: Body, limit: usize, deadline: Duration) -> Result<Bytes, Response> {
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than `limits.max_body_bytes` (or was cut off)",
        )),
        Err(_) => Err(plain(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
    }
}

async fn mcp_get(State(st): State<St>, Extension(c): Conn, h: HeaderMap) -> Response {
    get_stream(st, None, h, c).await
}

async fn mcp_get_one(
    State(st): State<St>,
    Extension(c): Conn,
    Path(server): Path<String>,
    h: HeaderMap,
) -> Response {
    get_stream(st, Some(server), h, c).await
}

async fn mcp_delete(State(st): State<St>, Extension(c): Conn, h: HeaderMap) -> Response {
    delete(st, None, h, c).await
}

async fn mcp_delete_one(
    State(st): State<St>,
    Extension(c): Conn,
    Path(server): Path<String>,
    h: HeaderMap,
) -> Response {
    delete(st, Some(server), h, c).await
}

/// Protected resource metadata (RFC 9728): no credentials needed.
async fn prm_doc(st: St, h: HeaderMap, server: Option<String>) -> Response {
    let app = Arc::clone(&st.app);
    let cfg = app.config();
    if let Err(r) = hygiene(&st, &cfg, &h) {
        return counted(&app, r);
    }
    if let Some(s) = &server
        && cfg.server(s).is_none()
    {
        return counted(&app, plain(StatusCode::NOT_FOUND, "no such server"));
    }
    let audience = st.audience(&cfg, &h);
    let (servers, mut scopes): (Vec<String>, Vec<String>) = match &cfg.auth {
        Auth::Verified(m) => match &m.jwt {
            Some(j) => (
                j.authorization_servers.clone(),
                j.required_scopes.values().flatten().cloned().collect(),
            ),
            None => (Vec::new(), Vec::new()),
        },
        Auth::None { .. } => (Vec::new(), Vec::new()),
    };
    scopes.sort();
    scopes.dedup();
    let doc = prm::document(
        &prm::resource(&audience, server.as_deref()),
        &servers,
        &scopes,
    );
    counted(&app, json_response(StatusCode::OK, &doc))
}

async fn prm_root(State(st): State<St>, h: HeaderMap) -> Response {
    prm_doc(st, h, None).await
}

async fn prm_all(State(st): State<St>, h: HeaderMap) -> Response {
    prm_doc(st, h, None).await
}

async fn prm_one(State(st): State<St>, Path(server): Path<String>, h: HeaderMap) -> Response {
    prm_doc(st, h, Some(server)).await
}

pub(crate) fn counted(app: &App, r: Response) -> Response {
    app.metrics.status(r.status().as_u16());
    r
}

/// The session named by `Mcp-Session-Id`, if it is this agent's on this endpoint.
fn find_session(
    app: &App,
    h: &HeaderMap,
    agent: &str,
    scope: &Scope,
) -> Result<Arc<ClientSession>, Response> {
    let sid = match one_header(h, "mcp-session-id") {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(plain(StatusCode::BAD_REQUEST, "missing `Mcp-Session-Id`"));
        }
        Err(e) => return Err(plain(StatusCode::BAD_REQUEST, &e)),
    };
    match app.session(sid) {
        Some(s) if s.visible_to(agent, scope) => Ok(s),
        _ => Err(plain(StatusCode::NOT_FOUND, "no such session")),
    }
}

async fn post(
    st: St,
    server: Option<String>,
    h: HeaderMap,
    conn: Arc<ConnInfo>,
    body: Body,
) -> Response {
    let app = Arc::clone(&st.app);
    let r = post_inner(st, server, h, conn, body).await;
    counted(&app, r)
}

async fn post_inner(
    st: St,
    server: Option<String>,
    h: HeaderMap,
    conn: Arc<ConnInfo>,
    body: Body,
) -> Response {
    let app = Arc::clone(&st.app);
    let cfg = app.config();
    if let Err(r) = hygiene(&st, &cfg, &h) {
        return r;
    }
    // INVARIANT: no body is read before its caller is authenticated (a 401 does not
    // wait for 4 MB from anyone), and none for longer than its deadline.
    let who = match authenticate_request(&st, &cfg, &h, &conn, server.as_deref()).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let body = match read_body(
        body,
        cfg.limits.max_body_bytes,
        BODY_DEADLINE.min(cfg.limits.request_timeout),
    )
    .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let agent = who.agent.clone();
    let scope = match scope_of(&cfg, server) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let json_type = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !json_type {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be `application/json`",
        );
    }
    // INVARIANT: the strict reader refuses a body with a member name twice, or two
    // names equal under case folding, at any depth (readers would disagree on it).
    let message = match gate_glue::classify(&body) {
        Ok(m) => m,
        Err(gate_glue::Invalid::Parse(e)) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                code::PARSE_ERROR,
                &format!("parse error: {e}"),
            );
        }
        Err(gate_glue::Invalid::Shape { id, message }) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &id,
                code::INVALID_REQUEST,
                &format!("invalid request: {message}"),
            );
        }
    };
    let (value, id) = match &message {
        Message::Request { value, id, .. } => (value, id.clone()),
        Message::Notification { value, .. } | Message::Response { value, .. } => {
            (value, Value::Null)
        }
    };
    let stateless = match check_routing(&h, value, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let missing = missing_scopes(&st, &cfg, &who, &scope, &message);
    if !missing.is_empty() {
        let server = match &scope {
            Scope::One(s) => Some(s.as_str()),
            Scope::All => None,
        };
        return insufficient_scope(&st, &cfg, &h, server, &missing);
    }
    let traceparent = one_header(&h, "traceparent")
        .ok()
        .flatten()
        .filter(|t| valid_traceparent(t))
        .map(str::to_string);
    let session = if stateless {
        let s = app.stateless_session(&agent, &scope);
        s.set_auth(who.proof_json());
        s
    } else if let Message::Request { method, value, .. } = &message
        && method == "initialize"
    {
        return initialize(&app, &who, scope, &id, value).await;
    } else {
        match find_session(&app, &h, &agent, &scope) {
            Ok(s) => s,
            Err(r) => return r,
        }
    };
    match message {
        Message::Request { value, .. } => {
            let (tx, mut rx) = mpsc::channel::<Value>(64);
            let sse = accepts_sse(&h);
            let mut work = Handoff(Some(Box::pin(session::handle_request(
                Arc::clone(&app),
                session,
                value,
                traceparent,
                tx,
                sse,
            ))));
            // 2026-07-28 carries some errors on the HTTP status, which an event stream
            // has already sent: an answer that comes first (within the keep-alive
            // period) is sent as JSON with its status; anything else streams as before.
            // The request runs on this task until then (most answers need no hand-off
            // to another task); what is still running after it moves to a task of its own.
            let mut first = None;
            if stateless {
                let waited = tokio::time::sleep(KEEP_ALIVE);
                tokio::pin!(waited);
                let got = loop {
                    let step = tokio::select! {
                        biased;
                        m = rx.recv() => Some(m),
                        () = work.run(), if work.running() => None,
                        () = &mut waited => break None,
                    };
                    match step {
                        Some(m) => break Some(m),
                        None => work.finished(),
                    }
                };
                match got {
                    Some(Some(m)) if is_final(&m) => {
                        // Its answer was its last step.
                        if work.running() {
                            work.run().await;
                            work.finished();
                        }
                        return json_response(stateless_status(&m), &m);
                    }
                    Some(Some(m)) => first = Some(m),
                    Some(None) => {
                        return rpc_error(StatusCode::OK, &id, code::INTERNAL_ERROR, "no answer");
                    }
                    None => {}
                }
            }
            work.hand_off();
            if sse {
                // A comment every second while the answer is pending: a client that went
                // away is noticed by the failed write, and its call cancelled upstream.
                let head = futures_util::stream::iter(
                    first.map(|m| Ok::<Bytes, Infallible>(sse_frame(&m))),
                );
                let stream = head.chain(futures_util::stream::unfold(rx, |mut rx| async move {
                    tokio::select! {
                        m = rx.recv() => m.map(|m| (Ok::<Bytes, Infallible>(sse_frame(&m)), rx)),
                        () = tokio::time::sleep(KEEP_ALIVE) => {
                            Some((Ok(Bytes::from_static(b": keep-alive\n\n")), rx))
                        }
                    }
                }));
                no_store(
                    (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/event-stream"),
                        )],
                        Body::from_stream(stream),
                    )
                        .into_response(),
                )
            } else {
                // JSON only: what comes before the answer cannot be delivered here.
                let mut last = first;
                while let Some(m) = rx.recv().await {
                    last = Some(m);
                }
                match last {
                    Some(m) if stateless => json_response(stateless_status(&m), &m),
                    Some(m) => json_response(StatusCode::OK, &m),
                    None => rpc_error(StatusCode::OK, &id, code::INTERNAL_ERROR, "no answer"),
                }
            }
        }
        Message::Notification { value, .. } | Message::Response { value, .. } => {
            if session::handle_one_way(Arc::clone(&app), session, value).await {
                no_store(StatusCode::ACCEPTED.into_response())
            } else {
                // INVARIANT: only the client a question was put to can answer it.
                plain(
                    StatusCode::NOT_FOUND,
                    "no such question open in this session",
                )
            }
        }
    }
}

/// A request's work, run on the handler's task until handed off to a task of its own.
///
/// INVARIANT: work that has not finished is never dropped: a handler dropped before
/// the hand-off (its client went away) hands it off then, so that the request still
/// notices its client gone and cancels the call upstream.
struct Handoff<F: Future<Output = ()> + Send + 'static>(Option<Pin<Box<F>>>);

impl<F: Future<Output = ()> + Send + 'static> Handoff<F> {
    fn running(&self) -> bool {
        self.0.is_some()
    }

    /// Drive the work (pending for ever once it has finished: see `finished`).
    async fn run(&mut self) {
        match self.0.as_mut() {
            Some(f) => f.await,
            None => std::future::pending().await,
        }
    }

    /// The work returned: it must not be polled again.
    fn finished(&mut self) {
        self.0 = None;
    }

    fn hand_off(mut self) {
        if let Some(f) = self.0.take() {
            tokio::spawn(f);
        }
    }
}

impl<F: Future<Output = ()> + Send + 'static> Drop for Handoff<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(f);
        }
    }
}

fn sse_frame(m: &Value) -> Bytes {
    let mut s = String::from("event: message\ndata: ");
    s.push_str(&serde_json::to_string(m).unwrap_or_default());
    s.push_str("\n\n");
    Bytes::from(s)
}

fn valid_traceparent(t: &str) -> bool {
    let parts: Vec<&str> = t.split('-').collect();
    matches!(parts.as_slice(), [v, tr, sp, fl]
        if v.len() == 2 && tr.len() == 32 && sp.len() == 16 && fl.len() == 2
            && t.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            && t.bytes().all(|b| !b.is_ascii_uppercase()))
}

async fn initialize(
    app: &Arc<App>,
    who: &Authenticated,
    scope: Scope,
    id: &Value,
    value: &Value,
) -> Response {
    let agent = who.agent.as_str();
    let cfg = app.config();
    if app.session_count() >= cfg.limits.max_sessions {
        return rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            code::SERVER_GONE,
            "too many open sessions; retry later",
        );
    }
    // One agent cannot take every session (each may spawn a stdio server of its own).
    if app.agent_session_count(agent) >= cfg.limits.max_sessions_per_agent {
        return rpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            id,
            code::SERVER_GONE,
            "this agent has too many open sessions (`limits.max_sessions_per_agent`); end one (DELETE) or retry later",
        );
    }
    let params = value.get("params").cloned().unwrap_or_else(|| json!({}));
    // INVARIANT: the handshake's params go into every upstream's handshake; like any
    // protocol metadata (and as `wrap` does), they carry nothing a detector finds.
    if app.gates.service().has_findings(&params) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            code::INVALID_PARAMS,
            "the initialize params carry data the gate's detectors find (in clientInfo, capabilities or _meta); they would reach every upstream",
        );
    }
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = if HANDSHAKE_VERSIONS.contains(&requested) {
        requested.to_string()
    } else {
        HANDSHAKE_VERSIONS[3].to_string()
    };
    let sid = session::random_id();
    if sid.is_empty() {
        return rpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            id,
            code::INTERNAL_ERROR,
            "no randomness for a session id",
        );
    }
    let s = Arc::new(ClientSession::new(
        sid.clone(),
        agent,
        scope,
        false,
        version,
    ));
    s.set_init_params(params);
    s.set_auth(who.proof_json());
    match session::initialize(app, &s).await {
        Ok(result) => {
            if let Ok(mut m) = app.sessions.lock() {
                m.insert(sid.clone(), Arc::clone(&s));
            }
            app.metrics.sessions.set(app.session_count() as i64);
            let mut r = json_response(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id, "result": result}),
            );
            if let Ok(v) = HeaderValue::from_str(&sid) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            r
        }
        Err(e) => {
            s.close().await;
            json_response(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id, "error": e}),
            )
        }
    }
}

async fn get_stream(st: St, server: Option<String>, h: HeaderMap, conn: Arc<ConnInfo>) -> Response {
    let app = Arc::clone(&st.app);
    let cfg = app.config();
    if let Err(r) = hygiene(&st, &cfg, &h) {
        return counted(&app, r);
    }
    let agent = match authenticate_request(&st, &cfg, &h, &conn, server.as_deref()).await {
        Ok(w) => w.agent,
        Err(r) => return counted(&app, r),
    };
    let scope = match scope_of(&cfg, server) {
        Ok(s) => s,
        Err(r) => return counted(&app, r),
    };
    if !accepts_sse(&h) || h.get("mcp-session-id").is_none() {
        return counted(
            &app,
            plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "no stream without a session",
            ),
        );
    }
    let session = match find_session(&app, &h, &agent, &scope) {
        Ok(s) => s,
        Err(r) => return counted(&app, r),
    };
    let Some(mut events) = session.take_events().await else {
        return counted(
            &app,
            plain(
                StatusCode::CONFLICT,
                "this session already has a stream open",
            ),
        );
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut stop = st.shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = events.recv() => {
                    let Some(m) = m else { break };
                    if tx.send(sse_frame(&m)).await.is_err() { break; }
                }
                () = tx.closed() => break,
                _ = stop.changed() => break,
                () = tokio::time::sleep(Duration::from_secs(15)) => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() { break; }
                }
            }
        }
        session.give_back_events(events).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let b = rx.recv().await?;
        Some((Ok::<Bytes, Infallible>(b), rx))
    });
    counted(
        &app,
        no_store(
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                )],
                Body::from_stream(stream),
            )
                .into_response(),
        ),
    )
}

async fn delete(st: St, server: Option<String>, h: HeaderMap, conn: Arc<ConnInfo>) -> Response {
    let app = Arc::clone(&st.app);
    let cfg = app.config();
    if let Err(r) = hygiene(&st, &cfg, &h) {
        return counted(&app, r);
    }
    let agent = match authenticate_request(&st, &cfg, &h, &conn, server.as_deref()).await {
        Ok(w) => w.agent,
        Err(r) => return counted(&app, r),
    };
    let scope = match scope_of(&cfg, server) {
        Ok(s) => s,
        Err(r) => return counted(&app, r),
    };
    let session = match find_session(&app, &h, &agent, &scope) {
        Ok(s) => s,
        Err(r) => return counted(&app, r),
    };
    app.remove_session(&session.id).await;
    counted(&app, no_store(StatusCode::NO_CONTENT.into_response()))
}

async fn healthz() -> Response {
    plain(StatusCode::OK, "ok")
}

async fn readyz(State(st): State<St>) -> Response {
    let app = Arc::clone(&st.app);
    let cfg = app.config();
    let audit = Arc::clone(app.gates.audit());
    let audit_ok = tokio::task::spawn_blocking(move || audit.flush().is_ok())
        .await
        .unwrap_or(false);
    let mut upstreams = serde_json::Map::new();
    for s in &cfg.servers {
        let ok = crate::reload::upstream_usable(s).await;
        upstreams.insert(s.id.clone(), Value::Bool(ok));
    }
    let all = audit_ok && upstreams.values().all(|v| v == &Value::Bool(true));
    let body = json!({"ready": all, "policy": app.gates.policy().sha256(), "audit": audit_ok,
                      "gateway": cfg.sha256, "upstreams": upstreams});
    json_response(
        if all {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

async fn metrics(State(st): State<St>) -> Response {
    no_store(
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            st.app.metrics.render(),
        )
            .into_response(),
    )
}

/// Whether some object in the JSON text has a member name twice (serde_json keeps the
/// last; first-wins readers would see another message).
pub fn has_duplicate_keys(body: &[u8]) -> bool {
    use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("json")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<bool, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut dup = false;
            while let Some(k) = m.next_key::<String>()? {
                dup |= !seen.insert(k);
                dup |= m.next_value_seed(Seed)?;
            }
            Ok(dup)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<bool, A::Error> {
            let mut dup = false;
            while let Some(d) = s.next_element_seed(Seed)? {
                dup |= d;
            }
            Ok(dup)
        }
        fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    struct Seed;
    impl<'de> serde::de::DeserializeSeed<'de> for Seed {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(V)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    (&mut de).deserialize_any(V).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_member_names_are_found() {
        assert!(has_duplicate_keys(br#"{"a":1,"a":2}"#));
        assert!(has_duplicate_keys(br#"{"p":{"name":"x","name":"y"}}"#));
        assert!(has_duplicate_keys(br#"[{"k":1,"k":1}]"#));
        assert!(!has_duplicate_keys(br#"{"a":{"a":1},"b":[{"a":2}]}"#));
    }

    #[test]
    fn base64_header_values_round_trip_canonically() {
        assert_eq!(decode_header_value("=?base64?w6k=?=").as_deref(), Some("é"));
        assert_eq!(decode_header_value("plain").as_deref(), Some("plain"));
        assert_eq!(decode_header_value("=?base64?w6l=?="), None);
        assert_eq!(decode_header_value("=?base64?!!!!?="), None);
    }

    #[test]
    fn the_gateways_own_origin_is_accepted_and_only_for_the_host_it_was_reached_by() {
        let load = |y: &str| {
            crate::load_str(y, "gw.yaml", &crate::config::SystemSecrets { base: None }).unwrap()
        };
        let plain = load(
            "version: 1\nservers: {up: {url: \"http://127.0.0.1:9/mcp\"}}\nauth: {none: {agent: a}}\n",
        );
        assert!(own_origin(
            &plain,
            "127.0.0.1:8080",
            "http://127.0.0.1:8080"
        ));
        assert!(own_origin(
            &plain,
            "localhost:8080",
            "HTTP://LOCALHOST:8080"
        ));
        assert!(!own_origin(
            &plain,
            "127.0.0.1:8080",
            "http://127.0.0.1:8081"
        ));
        assert!(!own_origin(
            &plain,
            "127.0.0.1:8080",
            "https://127.0.0.1:8080"
        ));
        assert!(!own_origin(
            &plain,
            "127.0.0.1:8080",
            "http://evil.example:8080"
        ));
        assert!(!own_origin(
            &plain,
            "127.0.0.1:8080",
            "http://127.0.0.1:8080.evil"
        ));
        let public = load(
            "version: 1\npublic_url: \"https://gw.example.com/base\"\nservers: {up: {url: \"http://127.0.0.1:9/mcp\"}}\nauth: {none: {agent: a}}\n",
        );
        assert!(own_origin(
            &public,
            "127.0.0.1:8080",
            "https://gw.example.com"
        ));
        assert!(!own_origin(
            &public,
            "127.0.0.1:8080",
            "http://gw.example.com"
        ));
    }

    #[test]
    fn traceparents_are_validated() {
        assert!(valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent("00-zz-00f067aa0ba902b7-01"));
    }

    // ---- connection timing (issue 11, the soak's `IncompleteMessage`) ----

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A listener with `timeouts` serving `GET /` → `ok`; its address.
    async fn timed_listener(timeouts: Timeouts) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        let (tx, rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, router, None, rx, timeouts));
        (addr, tx)
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /// Reads one small response (`ok` body) from `s`; `None` if the connection ended first.
    async fn response(s: &mut tokio::net::TcpStream) -> Option<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("an answer or a close within 10 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if text.contains("\r\n\r\n") && text.ends_with("ok") {
                return Some(text);
            }
        }
    }

    /// Waits (at most 10 s) for the peer to close `s` without sending anything more.
    async fn closed_without_answer(s: &mut tokio::net::TcpStream) -> bool {
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return !String::from_utf8_lossy(&got).contains(" 200 "),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[tokio::test]
    async fn a_keep_alive_connection_idle_past_the_head_timeout_then_used_is_answered() {
        // Before: the head timer started when the connection went idle, so a pooled
        // connection idle for the head timeout was closed under the client's next request.
        let (addr, _stop) = timed_listener(Timeouts {
            head: Duration::from_millis(300),
            idle: Duration::from_secs(60),
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(GET).await.unwrap();
        assert!(response(&mut s).await.is_some());
        // Idle for several head timeouts, then a head in two parts (its whole window
        // counts from its first byte).
        tokio::time::sleep(Duration::from_millis(1200)).await;
        s.write_all(&GET[..10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(&GET[10..]).await.unwrap();
        let r = response(&mut s).await;
        assert!(
            r.as_deref().is_some_and(|r| r.starts_with("HTTP/1.1 200")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_head_that_does_not_complete_within_the_head_timeout_is_cut_off() {
        let (addr, _stop) = timed_listener(Timeouts {
            head: Duration::from_millis(300),
            idle: Duration::from_secs(60),
        })
        .await;
        // On a fresh connection and on a kept-alive one.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&GET[..10]).await.unwrap();
        assert!(closed_without_answer(&mut s).await);
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(GET).await.unwrap();
        assert!(response(&mut s).await.is_some());
        s.write_all(&GET[..10]).await.unwrap();
        assert!(closed_without_answer(&mut s).await);
    }

    #[tokio::test]
    async fn a_keep_alive_connection_without_a_next_request_is_closed_after_the_idle_timeout() {
        let (addr, _stop) = timed_listener(Timeouts {
            head: Duration::from_secs(60),
            idle: Duration::from_millis(300),
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(GET).await.unwrap();
        assert!(response(&mut s).await.is_some());
        assert!(closed_without_answer(&mut s).await);
        // A connection that never sends a byte (before: held for ever, hyper-util's
        // protocol sniffing read had no timeout).
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_without_answer(&mut s).await);
    }
}
