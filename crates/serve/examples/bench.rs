//! Load harness: a zero-work Streamable HTTP upstream, called directly and through
//! `serve` (in process), alternated in one run. Prints p50/p99 of sequential
//! `tools/call`s, throughput and p99 with 64 concurrent clients, and RSS with 1,000 open
//! sessions.
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
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
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
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
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
        let policy = conductor_policy::load_str(POLICY, "policy.yaml", None).unwrap();
        let store = Arc::new(
            conductor_audit::AuditStore::open(
                &dir.path().join("audit.db"),
                conductor_audit::AuditOptions {
                    durability: conductor_audit::Durability::Normal,
                },
            )
            .unwrap(),
        );
        let gates = Arc::new(conductor_serve::gate_glue::GateEnv::new(
            policy,
            conductor_gate::GateResolver::new(conductor_gate::ResolverConfig {
                no_dns: true,
                ..Default::default()
            }),
            conductor_scan::FingerprintKey([7; 32]),
            store,
            Arc::new(conductor_gate::MemoryStore::default()),
        ));
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
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
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
