//! The egress proxy: the sandboxed server's only way out.
//!
//! The in-sandbox init binds `127.0.0.1:<port>` inside the sandbox's network namespace
//! and hands the listening socket to the parent, which accepts on it here: every
//! connection the server opens to its `HTTP(S)_PROXY` arrives in this process, outside
//! the sandbox. Per connection (CONNECT for TLS, absolute-form for plain HTTP):
//!
//! 1. the host is checked against the policy's `destinations:` before any lookup (a name
//!    denied by name never reaches DNS: the gate resolves last);
//! 2. the name is resolved through the gate's shared resolver, and every address is
//!    checked against the blocked classes;
//! 3. it connects to an address it checked — never to a name, so a second lookup
//!    (DNS rebinding) cannot change where the connection goes;
//! 4. CONNECT: the TLS ClientHello's server name must be the CONNECT host (no domain
//!    fronting, no ECH); plain HTTP: the `Host` header must name the target's host, the
//!    request (target, headers, body) is scanned by the policy's detectors against the
//!    destination's egress maximum, and a redirect's `Location` is checked before the
//!    answer reaches the server (a refused one is replaced by a 403, so it cannot be
//!    followed);
//! 5. every connection, allowed or refused, is an audit record (event `egress`) written
//!    before the first byte goes out.
//!
//! Every check of steps 1–4 and the record of step 5 are the gate's
//! (`conductor_gate::Service::check_connection` / `record_connection_here`): this module only
//! reads its wire (request heads, the ClientHello) and refuses what two readers could
//! read differently. One implementation of each check, for calls and connections alike.
//!
//! Each sandbox's proxy runs on a thread of its own ([`start`]); the bytes no check reads
//! (an answer's body after its checked head, a tunnel after its checked ClientHello) are
//! spliced in the kernel (`relay.rs`).
//!
//! INVARIANT: no byte from the server reaches any address the policy did not allow for
//! that very connection, and no connection goes out unrecorded.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use conductor_core::{Check, Reason};
use conductor_gate::{CheckedConnection, Connection, Verdict, connection_problem};
use conductor_net::Destination;
use conductor_types::RuleId;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{Egress, relay};

/// Largest request or response head read.
const MAX_HEAD: usize = 64 * 1024;
/// Largest plain-HTTP request body the proxy buffers (to scan it).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// How long a client may take to send its request head or ClientHello.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The relay's buffer per direction: large enough that a bulk transfer costs a few
/// system calls per megabyte rather than one per 8 KiB.
const RELAY_BUF: usize = 256 * 1024;
/// How long one upstream connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy of one sandbox, on a thread of its own; dropping it stops the proxy (and
/// ends the connections it still serves).
#[derive(Debug)]
pub(crate) struct Proxy {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Start serving `listener` on a thread of its own with a single-threaded runtime.
///
/// Every step of a connection — accept, the head, the gate's decision and its committed
/// record, the pinned connect, the upstream's answer, the relay — runs on this one
/// thread: no hand-off between threads (each a wake-up of an idle vCPU, which were most
/// of a proxied connection's fixed cost), and the record is committed here
/// (`record_connection_here`; only this sandbox's connections wait for it).
pub(crate) fn start(
    listener: std::net::TcpListener,
    egress: Arc<Egress>,
) -> Result<Proxy, std::io::Error> {
    prepare_listener(&listener)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("conductor-proxy".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                tokio::select! {
                    () = serve(listener, egress) => {}
                    _ = stopped => {}
                }
            });
        })?;
    Ok(Proxy { _stop: stop })
}

/// How long the kernel holds a connection that has sent nothing before handing it to
/// `accept` anyway (`TCP_DEFER_ACCEPT`; the head's own timeout applies after that).
const DEFER_ACCEPT_SECS: u32 = 1;

/// Make the listener non-blocking and defer each accept until the client's first bytes
/// (its request head or CONNECT line) have arrived.
///
/// Every proxy client speaks first, so without the deferral each connection woke the
/// proxy twice: for the handshake (accept, a read that would block, back to sleep) and
/// again for the request — one more wake-up of an idle vCPU, and a preemption of the
/// client between its `connect` and its request, on the path to the first byte.
fn prepare_listener(listener: &std::net::TcpListener) -> Result<(), std::io::Error> {
    use std::os::fd::AsFd;
    listener.set_nonblocking(true)?;
    crate::sys::set_defer_accept(listener.as_fd(), DEFER_ACCEPT_SECS)
}

/// Accept and serve connections until the listener fails for good.
async fn serve(listener: TcpListener, egress: Arc<Egress>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let egress = Arc::clone(&egress);
                tokio::spawn(async move {
                    let _ = handle(stream, egress).await;
                });
            }
            // EMFILE and friends: wait a moment rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A refusal: the HTTP status, the rule and a message for the client.
struct Refusal {
    status: u16,
    check: Check,
    rule: String,
    message: String,
    /// Whether this connection's audit record is written already.
    recorded: bool,
}

/// A refusal of the request's form (found before any check of the gate ran).
fn refusal(status: u16, rule: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        check: Check::Input,
        rule: rule.into(),
        message: message.into(),
        recorded: false,
    }
}

impl Refusal {
    /// A refusal after the connection's record was written (e.g. the upstream failed).
    fn recorded(mut self) -> Refusal {
        self.recorded = true;
        self
    }
}

async fn respond(client: &mut TcpStream, r: &Refusal) {
    let reason = match r.status {
        400 => "Bad Request",
        403 => "Forbidden",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        _ => "Error",
    };
    let body = format!(
        "conductor egress proxy: refused ({}): {}\n",
        r.rule, r.message
    );
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nX-Conductor-Rule: {}\r\n\r\n",
        r.status,
        body.len(),
        header_safe(&r.rule)
    );
    let _ = client.write_all(head.as_bytes()).await;
    let _ = client.write_all(body.as_bytes()).await;
    let _ = client.shutdown().await;
}

fn header_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect()
}

/// A parsed request or response head.
struct Head {
    /// Request: method, target, version. Response: version, status, reason.
    line: [String; 3],
    headers: Vec<(String, String)>,
}

impl Head {
    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn one(&self, name: &str) -> Result<Option<&str>, Refusal> {
        let mut it = self.all(name);
        let first = it.next();
        if it.next().is_some() {
            return Err(refusal(
                400,
                "egress.header",
                format!("more than one `{name}` header"),
            ));
        }
        Ok(first)
    }
}

/// Read until the end of a head; returns the head bytes and what came after.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<usize>, std::io::Error> {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse a head strictly: CRLF line ends only, no bare CR or LF, no obs-fold, token
/// header names, single spaces in the first line.
///
/// INVARIANT: a head two HTTP readers could split differently is refused.
fn parse_head(bytes: &[u8], request: bool) -> Result<Head, Refusal> {
    let bad = |m: &str| refusal(400, "egress.malformed", m.to_string());
    let text = std::str::from_utf8(bytes).map_err(|_| bad("the head is not valid text"))?;
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or_else(|| bad("the head does not end in CRLF CRLF"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut headers = Vec::new();
    for line in lines.clone() {
        if line.contains(['\r', '\n', '\0']) {
            return Err(bad("a header contains a bare CR, LF or NUL"));
        }
        if line.starts_with([' ', '\t']) {
            return Err(bad("folded header lines are not accepted"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("a header line has no `:`"))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(bad("a header name is not a token"));
        }
        headers.push((
            name.to_string(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
    if first.contains(['\r', '\n', '\0', '\t']) {
        return Err(bad("the first line contains a control character"));
    }
    let mut parts = first.splitn(3, ' ');
    let a = parts.next().unwrap_or_default().to_string();
    let b = parts.next().unwrap_or_default().to_string();
    let c = parts.next().unwrap_or_default().to_string();
    if request {
        if a.is_empty() || b.is_empty() || b.contains(' ') || !(c == "HTTP/1.1" || c == "HTTP/1.0")
        {
            return Err(bad("the request line is not `METHOD TARGET HTTP/1.x`"));
        }
        if !a.bytes().all(|x| x.is_ascii_uppercase()) {
            return Err(bad("the method is not an uppercase token"));
        }
    } else if !(a == "HTTP/1.1" || a == "HTTP/1.0")
        || b.len() != 3
        || !b.bytes().all(|x| x.is_ascii_digit())
    {
        return Err(bad("the status line is not `HTTP/1.x NNN reason`"));
    }
    Ok(Head {
        line: [a, b, c],
        headers,
    })
}

/// A refusal from the gate's verdict (already recorded).
fn verdict_refusal(decision: &conductor_core::Decision, what: &str) -> Refusal {
    let (rule, message) = decision
        .reasons
        .first()
        .map(|r| (r.rule.to_string(), r.message.clone()))
        .unwrap_or_else(|| (RuleId::egress("internal").to_string(), "refused".into()));
    let mut r = refusal(403, &rule, format!("{what}{message}")).recorded();
    r.check = decision
        .reasons
        .first()
        .map_or(Check::Destination, |r| r.check);
    r
}

/// The checked destination of a verdict that forwards.
fn forwarded(verdict: &Verdict) -> Option<&Destination> {
    verdict
        .forward
        .then(|| verdict.decision.destinations.first())
        .flatten()
}

/// Connect to one of the checked addresses (in the order the resolver gave them).
///
/// INVARIANT (pinning): only addresses in `destination.addresses` — the ones the gate
/// classified and allowed — are connected to; no name is looked up here.
async fn connect_pinned(d: &Destination, default_port: u16) -> Result<TcpStream, Refusal> {
    let port = d.port.unwrap_or(default_port);
    let mut last = String::from("no address");
    for a in &d.addresses {
        let addr = SocketAddr::new(*a, port);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
    }
    Err(refusal(
        502,
        "egress.connect",
        format!("cannot connect to `{}`: {last}", d.host),
    ))
}

/// Commit the connection's record while the TCP handshake with its checked address
/// runs, and return the verdict with the upstream connection when it forwards.
///
/// When the checks so far allow the connection (and the transport found no problem),
/// the pinned connect is started first — one poll issues the `connect(2)` — and the
/// record is committed on this thread while the kernel completes the handshake: the
/// commit no longer waits in front of the destination's accept (a round trip to a
/// remote host; on loopback, the server's wake-up). Nothing else changes:
///
/// INVARIANT: no byte goes to the destination, and the client learns nothing of the
/// connect, before the record is committed: the socket is only written (and its
/// outcome only reported) after `record_connection_here` returned a verdict that
/// forwards; when it does not (a refused record, a problem), the socket is dropped
/// unwritten — the destination sees a handshake and a close, never a request.
/// INVARIANT (pinning): the connect goes to the addresses the gate checked, and the
/// verdict that forwards names that same destination (checked below).
async fn record_and_connect(
    egress: &Egress,
    checked: CheckedConnection,
    problems: Vec<Reason>,
    default_port: u16,
) -> (Verdict, Option<Result<TcpStream, Refusal>>) {
    let service = &egress.service;
    let early = (checked.allowed() && problems.is_empty())
        .then(|| checked.decision().destinations.first().cloned())
        .flatten();
    let Some(dest) = early else {
        let verdict = service.record_connection_here(&egress.subject, checked, problems);
        let upstream = match forwarded(&verdict) {
            Some(d) => Some(connect_pinned(d, default_port).await),
            None => None,
        };
        return (verdict, upstream);
    };
    let connect = connect_pinned(&dest, default_port);
    tokio::pin!(connect);
    // One poll: the connect(2) of the first checked address is issued (or done).
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(connect.as_mut().poll(cx))).await;
    let verdict = service.record_connection_here(&egress.subject, checked, problems);
    if forwarded(&verdict) != Some(&dest) {
        // Not forwarded (or, never expected, another destination): the pending
        // connection is dropped unwritten.
        return (verdict, None);
    }
    let upstream = match first {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => connect.await,
    };
    (verdict, Some(upstream))
}

async fn handle(mut client: TcpStream, egress: Arc<Egress>) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut buf = Vec::with_capacity(8192);
    let end = match tokio::time::timeout(CLIENT_TIMEOUT, read_head(&mut client, &mut buf)).await {
        Ok(Ok(Some(end))) => end,
        Ok(Ok(None)) => {
            respond(
                &mut client,
                &refusal(431, "egress.malformed", "the request head is too large"),
            )
            .await;
            return Ok(());
        }
        _ => return Ok(()),
    };
    let head = match parse_head(buf.get(..end).unwrap_or_default(), true) {
        Ok(h) => h,
        Err(r) => {
            refuse_unrecorded(&mut client, &egress, "", r).await;
            return Ok(());
        }
    };
    let rest = buf.get(end..).unwrap_or_default().to_vec();
    let result = if head.line[0] == "CONNECT" {
        tunnel(&mut client, &egress, &head, rest).await
    } else {
        plain(&mut client, &egress, &head, rest).await
    };
    if let Err(r) = result {
        let shown = if head.line[0] == "CONNECT" {
            head.line[1].clone()
        } else {
            shown_origin(&head.line[1])
        };
        refuse_unrecorded(&mut client, &egress, &shown, r).await;
    }
    Ok(())
}

/// Answer a refusal, recording it first unless the connection's record exists.
///
/// INVARIANT: every connection the proxy accepted and parsed has a record, allowed or not.
async fn refuse_unrecorded(client: &mut TcpStream, egress: &Arc<Egress>, target: &str, r: Refusal) {
    if !r.recorded {
        let connection = Connection {
            action: "refused".into(),
            destination: String::new(),
            shown: target.to_string(),
            sni: None,
            content: json!({}),
        };
        let problem = connection_problem(
            r.check,
            RuleId::from_stored(r.rule.clone()),
            r.message.clone(),
        );
        let checked = egress
            .service
            .refused_connection(&egress.subject, connection, vec![problem]);
        // A failed record changes nothing here: the connection is refused either way.
        let _ = egress
            .service
            .record_connection_here(&egress.subject, checked, Vec::new());
    }
    respond(client, &r).await;
}

/// The origin of an absolute-form target (never its path or query, which may carry
/// secrets), or nothing when it is not one.
fn shown_origin(target: &str) -> String {
    match url::Url::parse(target) {
        Ok(u) if u.has_host() => location_origin(&u),
        _ => String::new(),
    }
}

/// `CONNECT host:port`: check, answer 200, check the ClientHello's SNI, record, relay.
async fn tunnel(
    client: &mut TcpStream,
    egress: &Arc<Egress>,
    head: &Head,
    mut early: Vec<u8>,
) -> Result<(), Refusal> {
    let target = head.line[1].clone();
    if target.contains(['/', '?', '#', '@', '\\']) || !target.contains(':') {
        return Err(refusal(
            400,
            "egress.malformed",
            "a CONNECT target is `host:port`",
        ));
    }
    let connection = Connection {
        action: "connect".into(),
        destination: format!("https://{target}"),
        shown: target.clone(),
        sni: None,
        content: json!({"target": target}),
    };
    let service = &egress.service;
    let mut checked: CheckedConnection =
        service.check_connection(&egress.subject, connection).await;
    if !checked.allowed() {
        let verdict = service.record_connection_here(&egress.subject, checked, Vec::new());
        return Err(verdict_refusal(&verdict.decision, ""));
    }
    let Some(host) = checked
        .decision()
        .destinations
        .first()
        .map(|d| d.host.clone())
    else {
        return Err(refusal(
            403,
            "egress.internal",
            "the destination could not be checked",
        ));
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .map_err(|_| refusal(400, "egress.closed", "the client went away"))?;
    // The ClientHello: the first TLS record, complete.
    let mut problems: Vec<Reason> = Vec::new();
    let tls = |m: String| connection_problem(Check::Destination, RuleId::egress("tls"), m);
    let hello = tokio::time::timeout(CLIENT_TIMEOUT, read_client_hello(client, &mut early)).await;
    let sni = match hello {
        Ok(Ok(sni)) => sni,
        Ok(Err(m)) => {
            problems.push(tls(m));
            None
        }
        Err(_) => {
            problems.push(tls("no TLS ClientHello arrived in time".into()));
            None
        }
    };
    if problems.is_empty() {
        match &sni {
            Some(name) => {
                let same = match conductor_net::canon::canonical_host_text(name) {
                    Ok(conductor_net::Host::Name(n)) => n == host,
                    _ => false,
                };
                if !same {
                    // INVARIANT: the server name itself is not quoted (it may carry data);
                    // the record keeps it, scanned and redacted.
                    problems.push(connection_problem(
                        Check::Destination,
                        RuleId::egress("sni-mismatch"),
                        format!("the TLS server name is not the CONNECT host `{host}`"),
                    ));
                }
            }
            None => {
                if host.parse::<IpAddr>().is_err() {
                    problems.push(connection_problem(
                        Check::Destination,
                        RuleId::egress("sni-missing"),
                        format!(
                            "the TLS ClientHello names no server, but the CONNECT host is `{host}`"
                        ),
                    ));
                }
            }
        }
    }
    checked.set_sni(sni.map(|n| header_safe(&n)));
    // The record is committed before the ClientHello goes out (during the handshake).
    let (_verdict, upstream) = record_and_connect(egress, checked, problems, 443).await;
    let mut upstream = match upstream {
        Some(Ok(u)) => u,
        // Refused (the 200 is gone already: the TLS client sees the connection close),
        // or the destination cannot be reached.
        None | Some(Err(_)) => {
            let _ = client.shutdown().await;
            return Ok(());
        }
    };
    if upstream.write_all(&early).await.is_err() {
        return Ok(());
    }
    // The checked tunnel: TLS the proxy does not read, spliced in the kernel (copied
    // through the proxy's buffers when no pipe can be had).
    match (relay::Pipe::new(), relay::Pipe::new()) {
        (Ok(ab), Ok(ba)) => {
            let _ = relay::splice_both_ways(client, &upstream, &ab, &ba).await;
        }
        _ => {
            let _ = tokio::io::copy_bidirectional_with_sizes(
                client,
                &mut upstream,
                RELAY_BUF,
                RELAY_BUF,
            )
            .await;
        }
    }
    Ok(())
}

/// Read the first TLS record (the ClientHello) into `buf` and return its server name.
async fn read_client_hello(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<String>, String> {
    while buf.len() < 5 {
        read_more(client, buf).await?;
    }
    let first = buf.first().copied().unwrap_or(0);
    if first != 0x16 {
        return Err(
            "only TLS may pass through CONNECT (the first bytes are not a TLS handshake)".into(),
        );
    }
    let len = usize::from(u16::from_be_bytes([
        buf.get(3).copied().unwrap_or(0),
        buf.get(4).copied().unwrap_or(0),
    ]));
    if len > 16 * 1024 + 256 {
        return Err("the TLS record is too long".into());
    }
    while buf.len() < 5 + len {
        read_more(client, buf).await?;
    }
    crate::tls::server_name(buf.get(5..5 + len).unwrap_or_default())
}

async fn read_more(client: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let n = client
        .read(&mut chunk)
        .await
        .map_err(|_| "the client went away before its TLS ClientHello".to_string())?;
    if n == 0 {
        return Err("the client went away before its TLS ClientHello".into());
    }
    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    Ok(())
}

/// Headers that concern one hop only (RFC 9110 §7.6.1) and are not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// A plain-HTTP request in absolute form.
async fn plain(
    client: &mut TcpStream,
    egress: &Arc<Egress>,
    head: &Head,
    mut body: Vec<u8>,
) -> Result<(), Refusal> {
    let [method, target, _] = &head.line;
    if target.starts_with("https://") || target.starts_with("HTTPS://") {
        return Err(refusal(400, "egress.scheme", "https goes through CONNECT"));
    }
    let Some(after) = target.strip_prefix("http://") else {
        return Err(refusal(
            400,
            "egress.malformed",
            "the proxy takes CONNECT or absolute-form `http://` requests only",
        ));
    };
    if target.contains(['\\', '#']) {
        return Err(refusal(
            400,
            "egress.malformed",
            "the target contains `\\` or `#`",
        ));
    }
    let split = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, raw_path) = after.split_at(split);
    if authority.contains('@') {
        return Err(refusal(
            400,
            "egress.malformed",
            "userinfo in a proxy request is refused",
        ));
    }
    let path = if raw_path.is_empty() {
        "/".to_string()
    } else if raw_path.starts_with('?') {
        format!("/{raw_path}")
    } else {
        raw_path.to_string()
    };
    let origin = format!("http://{authority}/");

    // INVARIANT: the Host header names the destination that is checked (compared
    // canonically, before any lookup).
    match head.one("host")? {
        Some(h) => {
            let canon = |u: String| {
                conductor_net::canonicalize(&u)
                    .ok()
                    .and_then(|c| c.host.map(|h| (h, c.port.or(Some(80)))))
            };
            let target_host = canon(origin.clone());
            if target_host.is_none() || target_host != canon(format!("http://{h}/")) {
                return Err(refusal(
                    400,
                    "egress.host-mismatch",
                    "the `Host` header does not name the request target's host",
                ));
            }
        }
        None if head.line[2] == "HTTP/1.1" => {
            return Err(refusal(
                400,
                "egress.malformed",
                "an HTTP/1.1 request needs a `Host` header",
            ));
        }
        None => {}
    }
    if head.all("transfer-encoding").next().is_some() {
        return Err(refusal(
            411,
            "egress.transfer-encoding",
            "request bodies must have a `Content-Length` (chunked bodies are refused)",
        ));
    }
    let length = match head.one("content-length")? {
        None => 0,
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v.len() < 10 => {
            v.parse::<usize>().unwrap_or(usize::MAX)
        }
        Some(_) => return Err(refusal(400, "egress.malformed", "invalid `Content-Length`")),
    };
    if length > MAX_BODY {
        return Err(refusal(
            413,
            "egress.body-limit",
            "the request body is too large to be checked",
        ));
    }
    if length > body.len() {
        if head
            .one("expect")?
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            let _ = client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        }
        while body.len() < length {
            let mut chunk = vec![0u8; (length - body.len()).min(64 * 1024)];
            let n = tokio::time::timeout(CLIENT_TIMEOUT, client.read(&mut chunk))
                .await
                .map_err(|_| refusal(400, "egress.timeout", "the request body did not arrive"))?
                .map_err(|_| refusal(400, "egress.closed", "the client went away"))?;
            if n == 0 {
                return Err(refusal(
                    400,
                    "egress.closed",
                    "the request body is shorter than its length",
                ));
            }
            body.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }
    body.truncate(length);

    // Every check is the gate's: the destination (by name, then every address), the
    // data egress rules and clearance over what the request carries, the session's
    // labels, and the record.
    let connection = Connection {
        action: method.to_lowercase(),
        destination: origin.clone(),
        shown: origin.clone(),
        sni: None,
        content: json!({
            "target": target,
            "headers": head.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
            "body": String::from_utf8_lossy(&body),
        }),
    };
    let checked = egress
        .service
        .check_connection(&egress.subject, connection)
        .await;
    // The record is committed before the request goes out (during the handshake).
    let (verdict, upstream) = record_and_connect(egress, checked, Vec::new(), 80).await;
    let Some(upstream) = upstream else {
        return Err(verdict_refusal(&verdict.decision, ""));
    };
    let mut upstream = upstream.map_err(Refusal::recorded)?;

    // The request as decided, in origin form, one request per connection.
    let listed: Vec<String> = head
        .all("connection")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    let mut has_host = false;
    for (n, v) in &head.headers {
        let l = n.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&l.as_str()) || listed.contains(&l) {
            continue;
        }
        has_host |= l == "host";
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !has_host {
        out.push_str(&format!("Host: {authority}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    // The request as decided and its checked body, in one write.
    let mut request = out.into_bytes();
    request.extend_from_slice(&body);
    upstream.write_all(&request).await.map_err(|_| {
        refusal(
            502,
            "egress.upstream",
            "the destination closed the connection",
        )
        .recorded()
    })?;

    // The answer: a redirect is checked before the server can follow it.
    let mut rbuf = Vec::with_capacity(8192);
    let end = match read_head(&mut upstream, &mut rbuf).await {
        Ok(Some(e)) => e,
        _ => {
            return Err(refusal(
                502,
                "egress.upstream",
                "the destination sent no valid answer",
            )
            .recorded());
        }
    };
    let rhead = parse_head(rbuf.get(..end).unwrap_or_default(), false).map_err(|_| {
        refusal(
            502,
            "egress.upstream",
            "the destination's answer is malformed",
        )
        .recorded()
    })?;
    let status: u16 = rhead.line[1].parse().unwrap_or(0);
    let location = rhead.one("location").map_err(|_| {
        refusal(
            502,
            "egress.redirect",
            "the answer has more than one `Location`",
        )
    })?;
    if let Some(location) = location
        && (300..400).contains(&status)
    {
        check_redirect(egress, target, location).await?;
    }
    let mut out = format!("{} {} {}\r\n", rhead.line[0], rhead.line[1], rhead.line[2]);
    for (n, v) in &rhead.headers {
        let l = n.to_ascii_lowercase();
        if l == "connection" || l == "keep-alive" || l == "proxy-connection" {
            continue;
        }
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    // The checked head and the start of the body in one write (one segment, one wake-up
    // of the client).
    let mut answer = out.into_bytes();
    answer.extend_from_slice(rbuf.get(end..).unwrap_or_default());
    if client.write_all(&answer).await.is_err() {
        return Ok(());
    }
    // The rest of the body: no rule reads a response body (the data rules look at what
    // goes out, the redirect check at the head), so it is spliced in the kernel; copied
    // through a buffer when no pipe can be had.
    match relay::Pipe::new() {
        Ok(pipe) => {
            let _ = relay::splice_one_way(&upstream, client, &pipe).await;
        }
        Err(_) => {
            let mut upstream = tokio::io::BufReader::with_capacity(RELAY_BUF, upstream);
            let _ = tokio::io::copy_buf(&mut upstream, client).await;
            let _ = client.shutdown().await;
        }
    }
    Ok(())
}

/// A redirect's target is checked like a destination of its own; a refused one never
/// reaches the server (and is recorded; an allowed one is recorded when the server
/// connects to it).
async fn check_redirect(egress: &Arc<Egress>, base: &str, location: &str) -> Result<(), Refusal> {
    let Ok(base) = url::Url::parse(base) else {
        return Err(refusal(
            502,
            "egress.redirect",
            "the redirect cannot be checked",
        ));
    };
    let Ok(next) = base.join(location) else {
        return Err(refusal(
            502,
            "egress.redirect",
            "the redirect target is not a valid URL",
        ));
    };
    let origin = location_origin(&next);
    let connection = Connection {
        action: "redirect".into(),
        destination: origin.clone(),
        shown: origin,
        sni: None,
        content: json!({}),
    };
    let checked = egress
        .service
        .check_connection(&egress.subject, connection)
        .await;
    if checked.allowed() {
        return Ok(());
    }
    let verdict = egress
        .service
        .record_connection(&egress.subject, checked, Vec::new())
        .await;
    Err(verdict_refusal(
        &verdict.decision,
        "the answer redirects to a refused destination: ",
    ))
}

fn location_origin(u: &url::Url) -> String {
    let mut o = u.clone();
    o.set_path("/");
    o.set_query(None);
    o.set_fragment(None);
    let _ = o.set_username("");
    let _ = o.set_password(None);
    o.to_string()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    use super::*;

    /// The proxy's listener hands a connection to `accept` only once the client has
    /// sent something: one wake-up of the proxy per connection.
    #[test]
    fn the_listener_defers_accept_until_the_request_arrives() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        assert_eq!(crate::sys::defer_accept(listener.as_fd()).expect("get"), 0);
        prepare_listener(&listener).expect("prepare");
        assert!(crate::sys::defer_accept(listener.as_fd()).expect("get") > 0);

        // A connected client that has sent nothing is not accepted yet …
        let addr = listener.local_addr().expect("addr");
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            listener.accept().map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock)
        );
        // … and is, with its bytes readable, once it has sent its first line.
        client
            .write_all(b"GET http://a.test/ HTTP/1.1\r\n")
            .expect("write");
        let mut accepted = None;
        for _ in 0..200 {
            match listener.accept() {
                Ok((s, _)) => {
                    accepted = Some(s);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let mut server = accepted.expect("accepted once the client has sent");
        server.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 64];
        let n = server
            .read(&mut buf)
            .expect("the request is there at accept");
        assert!(buf.get(..n).unwrap_or_default().starts_with(b"GET "));
    }
}
