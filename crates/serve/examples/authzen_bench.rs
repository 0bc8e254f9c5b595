//! Load harness of the AuthZEN decision API: single `POST /access/v1/evaluation`s
//! through `serve` (in process, keep-alive connections from reqwest's hyper client),
//! sequential and with concurrent clients, against baselines from the same run: the
//! same HTTP stack answering `GET /healthz` (no decision), and the gate's own
//! `GateEnv::evaluate` called without HTTP (decision and audit commit only).
//!
//! cargo run --release -p conductor-serve --example authzen_bench [-- ROUNDS SECONDS]

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark harness: a failure is a failed run"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use conductor_serve::gate_glue::{Evaluation, GateEnv};
use serde_json::json;

const POLICY: &str = "version: 1\nagents:\n  bench: {roles: [r]}\nroles:\n  r:\n    allow:\n      - tools: [\"up.*\"]\n        actions: [read]\ntools:\n  up.noop: {action: read, destinations: []}\n";

fn body() -> String {
    json!({
        "subject": {"type": "agent", "id": "bench"},
        "action": {"name": "tools/call"},
        "resource": {"type": "tool", "id": "up.noop", "properties": {"arguments": {"q": "hello"}}},
        "context": {"session": "bench"}
    })
    .to_string()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

#[derive(Clone, Copy)]
enum Kind {
    Evaluation,
    Healthz,
}

async fn one(client: &reqwest::Client, base: &str, kind: Kind, body: &str) {
    let r = match kind {
        Kind::Evaluation => client
            .post(format!("{base}/access/v1/evaluation"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
        Kind::Healthz => client.get(format!("{base}/healthz")).send().await.unwrap(),
    };
    assert_eq!(r.status().as_u16(), 200);
    let b = r.bytes().await.unwrap();
    if let Kind::Evaluation = kind {
        assert_eq!(&b[..], br#"{"decision":true}"#);
    }
}

/// `clients` keep-alive connections, each sending one request after the other for
/// `secs`: (requests/s, p50, p99).
async fn load(base: &str, kind: Kind, clients: usize, secs: f64) -> (f64, Duration, Duration) {
    let body = Arc::new(body());
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let base = base.to_string();
        let body = Arc::clone(&body);
        tasks.push(tokio::spawn(async move {
            let client = conductor_serve::upstream_tls::client_builder()
                .no_proxy()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            for _ in 0..3 {
                one(&client, &base, kind, &body).await;
            }
            // Timed after the warm-up (connection set up): every client runs `secs`.
            let stop = Instant::now() + Duration::from_secs_f64(secs);
            let mut lat = Vec::new();
            while Instant::now() < stop {
                let t = Instant::now();
                one(&client, &base, kind, &body).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / secs;
    let p50 = pct(&mut all, 0.5);
    (rate, p50, pct(&mut all, 0.99))
}

/// The gate alone: `GateEnv::evaluate` (decision and audit commit), `clients` at once.
async fn direct(gates: &Arc<GateEnv>, clients: usize, secs: f64) -> (f64, Duration) {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let gates = Arc::clone(gates);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < stop {
                let t = Instant::now();
                let d = gates
                    .evaluate(Evaluation {
                        agent: "bench".into(),
                        server: "up".into(),
                        workflow: None,
                        session: Some("bench".into()),
                        method: "tools/call".into(),
                        params: json!({"name": "noop", "arguments": {"q": "hello"}}),
                        labels: Vec::new(),
                        auth: None,
                    })
                    .await;
                assert_eq!(d.decision, conductor_core::Effect::Allow);
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / secs;
    (rate, pct(&mut all, 0.5))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let secs: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let cfg = conductor_serve::load_str(
            "version: 1\nservers:\n  up: {url: \"http://127.0.0.1:9/mcp\"}\nauth: {none: {agent: bench}}\n",
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
        let gates = Arc::new(GateEnv::new(
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
            gates: Arc::clone(&gates),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            shutdown: rx,
            on_listen: Some(Box::new(move |a| {
                let _ = atx.send(a);
            })),
        }));
        let gw = arx.await.unwrap();
        let base = format!("http://{gw}");
        println!(
            "machine: {} cpus; rounds {rounds}, {secs} s per phase; load generator, gateway and audit writer share the process",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );
        for r in 0..rounds {
            let (hr, h50, _) = load(&base, Kind::Healthz, 1, secs).await;
            let (er, e50, e99) = load(&base, Kind::Evaluation, 1, secs).await;
            let (dr, d50) = direct(&gates, 1, secs).await;
            println!(
                "round {r} sequential: healthz {hr:.0}/s p50 {h50:?} | gate alone {dr:.0}/s p50 {d50:?} | evaluation {er:.0}/s p50 {e50:?} p99 {e99:?}"
            );
            for clients in [16, 64] {
                let (hr, h50, h99) = load(&base, Kind::Healthz, clients, secs).await;
                let (er, e50, e99) = load(&base, Kind::Evaluation, clients, secs).await;
                let (dr, d50) = direct(&gates, clients, secs).await;
                println!(
                    "round {r} {clients} clients: healthz {hr:.0}/s p50 {h50:?} p99 {h99:?} | gate alone {dr:.0}/s p50 {d50:?} | evaluation {er:.0}/s p50 {e50:?} p99 {e99:?}"
                );
            }
        }
        let _ = tx.send(true);
    });
}
