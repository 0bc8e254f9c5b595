//! Load harness of `serve`, in two forms.
//!
//! - Separate processes (the figures of record; driven by `crates/serve/bench/wrk.sh`
//!   with `wrk` as the load generator): `bench upstream` runs the zero-work
//!   Streamable HTTP upstream alone, `bench gateway UPSTREAM_ADDR [none|api-key|jwt]`
//!   runs `serve` alone in front of it (with that authentication; the credential a
//!   client must present is printed). Each prints `listening ADDR` once it accepts.
//! - In process (`bench [ROUNDS SECONDS]`): upstream, gateway and a reqwest load
//!   generator in one process, alternated in one run — kept for the RSS with 1,000 open
//!   sessions; its throughput is capped by the generator sharing the 2 cores.
//!
//! cargo run --release -p conductor-serve --example bench [-- ROUNDS SECONDS]

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark harness: a failure is a failed run"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

async fn upstream(_h: HeaderMap, body: Bytes) -> Response {
    let m: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = m.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match m["method"].as_str().unwrap_or("") {
        "initialize" => {
            json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "zero", "version": "0"}})
        }
        "tools/list" => json!({"tools": [{"name": "noop", "inputSchema": {"type": "object"}}]}),
        _ => json!({"content": [{"type": "text", "text": "ok"}]}),
    };
    let body = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "result": result})).unwrap();
    (
        [
            ("content-type", "application/json"),
            ("mcp-session-id", "zero-session"),
        ],
        body,
    )
        .into_response()
}

const POLICY: &str = "version: 1\nagents:\n  bench: {roles: [r]}\nroles:\n  r:\n    allow:\n      - tools: [\"up.*\"]\n        actions: [read]\ntools:\n  up.noop: {action: read, destinations: []}\n";

async fn open(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}).to_string())
        .send()
        .await
        .unwrap();
    let sid = r
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let _ = r.bytes().await;
    sid
}

async fn call(client: &reqwest::Client, url: &str, sid: &Option<String>, id: u64) {
    let mut rb = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(s) = sid {
        rb = rb.header("mcp-session-id", s.as_str());
    }
    let r = rb
        .body(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"noop","arguments":{{}}}}}}"#))
        .send()
        .await
        .unwrap();
    let b = r.bytes().await.unwrap();
    assert!(
        b.windows(2).any(|w| w == b"ok"),
        "{}",
        String::from_utf8_lossy(&b)
    );
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

async fn sequential(url: &str, n: usize) -> (Duration, Duration) {
    let client = conductor_serve::upstream_tls::client_builder()
        .no_proxy()
        .build()
        .unwrap();
    let sid = open(&client, url).await;
    for i in 0..200 {
        call(&client, url, &sid, i).await;
    }
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        call(&client, url, &sid, i as u64).await;
        lat.push(t.elapsed());
    }
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

async fn concurrent(url: &str, clients: usize, secs: u64) -> (f64, Duration) {
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let client = conductor_serve::upstream_tls::client_builder()
                .no_proxy()
                .build()
                .unwrap();
            let sid = open(&client, &url).await;
            let mut lat = Vec::new();
            let mut i = 0;
            while Instant::now() < stop {
                let t = Instant::now();
                call(&client, &url, &sid, i).await;
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / secs as f64;
    (rate, pct(&mut all, 0.99))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The runtime every role uses: two workers, as many as the machine's cores
/// (`BENCH_WORKERS` to try another number).
fn runtime() -> tokio::runtime::Runtime {
    let workers = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .unwrap()
}

fn announce(addr: SocketAddr) {
    use std::io::Write as _;
    println!("listening {addr}");
    std::io::stdout().flush().unwrap();
}

/// `bench upstream`: the zero-work upstream alone, until killed.
fn upstream_role() {
    runtime().block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        announce(l.local_addr().unwrap());
        axum::serve(l, Router::new().route("/mcp", post(upstream)))
            .await
            .unwrap();
    });
}

fn b64u(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The `auth:` section for `kind` and the `Authorization` value a client presents.
fn auth_section(kind: &str, dir: &std::path::Path) -> (String, Option<String>) {
    match kind {
        "none" => ("auth: {none: {agent: bench}}\n".into(), None),
        "api-key" => {
            let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
            (
                format!("auth:\n  api_keys:\n    - {{agent: bench, sha256: \"{hash}\"}}\n"),
                Some(format!("Bearer {key}")),
            )
        }
        "jwt" => {
            // ES256, the key in a JWKS file (cached after the first token).
            use ring::signature::KeyPair as _;
            let rng = ring::rand::SystemRandom::new();
            let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let p8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let kp = ring::signature::EcdsaKeyPair::from_pkcs8(alg, p8.as_ref(), &rng).unwrap();
            let p = kp.public_key().as_ref();
            let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": b64u(&p[1..33]),
                                        "y": b64u(&p[33..65]), "kid": "es"}]});
            std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let claims = json!({"iss": "https://idp.bench", "aud": "https://gw.bench/mcp",
                                "sub": "bench", "exp": now + 86_400, "jti": "j"});
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            h.kid = Some("es".into());
            let token = jsonwebtoken::encode(
                &h,
                &claims,
                &jsonwebtoken::EncodingKey::from_ec_der(p8.as_ref()),
            )
            .unwrap();
            (
                "auth:\n  jwt: {issuer: \"https://idp.bench\", audience: \"https://gw.bench/mcp\", jwks: jwks.json}\n".into(),
                Some(format!("Bearer {token}")),
            )
        }
        other => panic!("unknown authentication `{other}` (none, api-key, jwt)"),
    }
}

/// The gate environment of every role: the bench policy, no DNS, an audit store with
/// `Durability::Normal` in `dir`.
fn gate_env(dir: &std::path::Path) -> Arc<conductor_serve::gate_glue::GateEnv> {
    let policy = conductor_policy::load_str(POLICY, "policy.yaml", None).unwrap();
    let store = Arc::new(
        conductor_audit::AuditStore::open(
            &dir.join("audit.db"),
            conductor_audit::AuditOptions {
                durability: conductor_audit::Durability::Normal,
            },
        )
        .unwrap(),
    );
    Arc::new(conductor_serve::gate_glue::GateEnv::new(
        policy,
        conductor_gate::GateResolver::new(conductor_gate::ResolverConfig {
            no_dns: true,
            ..Default::default()
        }),
        conductor_scan::FingerprintKey([7; 32]),
        store,
        Arc::new(conductor_gate::MemoryStore::default()),
    ))
}

/// `bench gateway UPSTREAM_ADDR [AUTH]`: `serve` alone, until killed.
fn gateway_role(up: &str, auth: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (section, credential) = auth_section(auth, dir.path());
    if let Some(c) = &credential {
        println!("authorization {c}");
    }
    runtime().block_on(async move {
        let cfg = conductor_serve::load_str(
            &format!("version: 1\nservers:\n  up: {{url: \"http://{up}/mcp\"}}\n{section}limits: {{max_sessions: 100000}}\n"),
            "bench.yaml",
            &conductor_serve::config::SystemSecrets { base: Some(dir.path().to_path_buf()) },
        )
        .map_err(|e| e.render(false))
        .unwrap();
        let gates = gate_env(dir.path());
        let (_tx, rx) = tokio::sync::watch::channel(false);
        conductor_serve::serve(conductor_serve::ServeOptions {
            config: cfg,
            config_path: None,
            policy_path: None,
            gates,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            shutdown: rx,
            on_listen: Some(Box::new(announce)),
        })
        .await
        .unwrap();
    });
}

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("upstream") => return upstream_role(),
        Some("gateway") => {
            let up = args.get(2).expect("bench gateway UPSTREAM_ADDR [AUTH]");
            return gateway_role(up, args.get(3).map_or("none", String::as_str));
        }
        _ => {}
    }
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    runtime().block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up: SocketAddr = l.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(l, Router::new().route("/mcp", post(upstream)))
                .await
                .unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let cfg = conductor_serve::load_str(
            &format!("version: 1\nservers:\n  up: {{url: \"http://{up}/mcp\"}}\nauth: {{none: {{agent: bench}}}}\nlimits: {{max_sessions: 100000}}\n"),
            "bench.yaml",
            &conductor_serve::config::SystemSecrets { base: None },
        )
        .unwrap();
        let gates = gate_env(dir.path());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (atx, arx) = tokio::sync::oneshot::channel();
        tokio::spawn(conductor_serve::serve(conductor_serve::ServeOptions {
            config: cfg,
            config_path: None,
            policy_path: None,
            gates,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            shutdown: rx,
            on_listen: Some(Box::new(move |a| {
                let _ = atx.send(a);
            })),
        }));
        let gw = arx.await.unwrap();
        let direct = format!("http://{up}/mcp");
        let through = format!("http://{gw}/mcp/up");
        println!("machine: {} cpus; rounds {rounds}, {secs} s per concurrent phase", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
        for r in 0..rounds {
            let (d50, d99) = sequential(&direct, 2000).await;
            let (s50, s99) = sequential(&through, 2000).await;
            println!(
                "round {r} sequential: direct p50 {d50:?} p99 {d99:?} | serve p50 {s50:?} p99 {s99:?} | added p50 {:?}",
                s50.saturating_sub(d50)
            );
            let (dr, dp99) = concurrent(&direct, 64, secs).await;
            let (sr, sp99) = concurrent(&through, 64, secs).await;
            println!(
                "round {r} 64 clients: direct {dr:.0} calls/s p99 {dp99:?} | serve {sr:.0} calls/s p99 {sp99:?} | ratio {:.2}",
                sr / dr
            );
        }
        let before = rss_kib();
        let client = conductor_serve::upstream_tls::client_builder().no_proxy().build().unwrap();
        let mut sids = Vec::new();
        for _ in 0..1000 {
            let sid = open(&client, &through).await;
            call(&client, &through, &sid, 1).await;
            sids.push(sid);
        }
        let after = rss_kib();
        println!(
            "rss (whole process: upstream, load generator and gateway): {before} KiB before, {after} KiB with 1,000 more open sessions (+{} KiB)",
            after.saturating_sub(before)
        );
        let _ = tx.send(true);
    });
}
