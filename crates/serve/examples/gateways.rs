//! Load generator for gateways run as separate processes (driven by scripts/bench-gateways.sh
//! and scripts/soak-serve.sh):
//!
//! - `upstream` — a zero-work Streamable HTTP MCP upstream on 127.0.0.1 (one tool, `noop`,
//!   JSON answers, the same as `examples/bench.rs`'s); prints `UPSTREAM <url>` and serves until
//!   killed.
//! - `bench ROUNDS SECONDS NAME URL TOOL [NAME URL TOOL]…` — the same client load as
//!   `examples/bench.rs` (reqwest, one keep-alive connection per client, an `initialize`
//!   then `tools/call`s): 2,000 sequential calls (`SEQ_CALLS`; after a tenth as many warm-up) and 64 concurrent clients
//!   for SECONDS, against each target in turn, alternated round by round. `TOOL` is the tool's
//!   name as that target exposes it. A header for every request of one target comes from the
//!   environment: `HEADER_<NAME>="Name: value"` (e.g. a gateway's bearer token).
//! - `soak URL TOOL PID RATE SECONDS` — a steady RATE of `tools/call`s per second for SECONDS
//!   (4 clients; each ends its session with DELETE and opens a new one every 100 calls), the
//!   RSS of process PID sampled every 10 s; prints every sample, start/peak/end and the
//!   least-squares slope. Then 1,000 more sessions opened and held, and the RSS again.
//!
//! A request whose keep-alive connection closes before its answer's head is sent again
//! (at most 3 times) and counted; both modes print the count (see `send`).
//!
//! cargo run --release -p conductor-serve --example gateways -- <mode> …

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark harness: a failure is a failed run"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

async fn upstream(body: Bytes) -> Response {
    let m: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = m.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match m["method"].as_str().unwrap_or("") {
        "initialize" => {
            json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "zero", "version": "0"}})
        }
        "tools/list" => {
            json!({"tools": [{"name": "noop", "description": "does nothing", "inputSchema": {"type": "object"}}]})
        }
        "ping" => json!({}),
        _ => json!({"content": [{"type": "text", "text": "zero-work-ok"}]}),
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

#[derive(Clone)]
struct Target {
    name: String,
    url: String,
    tool: String,
    header: Option<(String, String)>,
}

impl Target {
    fn post(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        let rb = client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        match &self.header {
            Some((k, v)) => rb.header(k.as_str(), v.as_str()),
            None => rb,
        }
    }

    async fn open(&self, client: &reqwest::Client) -> Option<String> {
        let r = self
            .post(client)
            .body(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}).to_string());
        let r = send(r).await;
        assert!(
            r.status().is_success(),
            "{}: initialize: {}",
            self.name,
            r.status()
        );
        let sid = r
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_string());
        let _ = r.bytes().await;
        let mut rb = self
            .post(client)
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(s) = &sid {
            rb = rb.header("mcp-session-id", s.as_str());
        }
        let r = send(rb.body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)).await;
        let _ = r.bytes().await;
        sid
    }

    async fn close(&self, client: &reqwest::Client, sid: &Option<String>) {
        let Some(s) = sid else { return };
        let mut rb = client
            .delete(&self.url)
            .header("mcp-session-id", s.as_str())
            .header("mcp-protocol-version", "2025-11-25");
        if let Some((k, v)) = &self.header {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let _ = send(rb).await.bytes().await;
    }

    async fn call(&self, client: &reqwest::Client, sid: &Option<String>, id: u64) {
        let mut rb = self
            .post(client)
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(s) = sid {
            rb = rb.header("mcp-session-id", s.as_str());
        }
        let r = send(rb.body(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{}","arguments":{{}}}}}}"#,
            self.tool
        )))
        .await;
        let b = r.bytes().await.unwrap();
        assert!(
            b.windows(12).any(|w| w == b"zero-work-ok"),
            "{}: {}",
            self.name,
            String::from_utf8_lossy(&b)
        );
    }
}

/// Requests sent again by [`send`].
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// Sends `rb`. A request whose connection was closed before its response head came (the
/// keep-alive race: a pooled connection closed by the server as the request was sent,
/// `hyper::Error(IncompleteMessage)`, or reset) is sent again, at most 3 times, and
/// counted in [`RETRIES`] (the soak reports it). Safe here only: every request of this
/// harness may be repeated — the zero-work upstream's `noop`, `DELETE` of a session,
/// `initialize` (a repeat opens one more session, reaped when idle), a notification. A
/// failure after the response head (a body cut short) is not retried: it fails the run.
async fn send(rb: reqwest::RequestBuilder) -> reqwest::Response {
    let mut attempt = 0;
    loop {
        let again = rb.try_clone().expect("a buffered body");
        match again.send().await {
            Ok(r) => return r,
            Err(e) if attempt < 3 && closed_before_answer(&e) => {
                attempt += 1;
                let n = RETRIES.fetch_add(1, Ordering::Relaxed) + 1;
                eprintln!("retry {n}: the connection closed before an answer: {e:?}");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// The connection ended before a response head: hyper's `IncompleteMessage` (closed
/// before the message completed) or canceled (closed before the request was written), or
/// a reset.
fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled())
        {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            )
        {
            return true;
        }
        src = s.source();
    }
    false
}

fn client() -> reqwest::Client {
    conductor_serve::upstream_tls::client_builder()
        .no_proxy()
        .build()
        .unwrap()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

async fn sequential(t: &Target, n: usize) -> (Duration, Duration) {
    let c = client();
    let sid = t.open(&c).await;
    for i in 0..(n / 10) as u64 {
        t.call(&c, &sid, i).await;
    }
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let s = Instant::now();
        t.call(&c, &sid, i as u64).await;
        lat.push(s.elapsed());
    }
    t.close(&c, &sid).await;
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

async fn concurrent(t: &Target, clients: usize, secs: u64) -> (f64, Duration) {
    let mut opened = Vec::new();
    for _ in 0..clients {
        let c = client();
        let sid = t.open(&c).await;
        opened.push((c, sid));
    }
    let start = Instant::now();
    let stop = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (c, sid) in opened {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while Instant::now() < stop {
                let s = Instant::now();
                t.call(&c, &sid, i).await;
                lat.push(s.elapsed());
                i += 1;
            }
            t.close(&c, &sid).await;
            lat
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    (rate, pct(&mut all, 0.99))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn bench(args: &[String]) {
    let rounds: usize = args[0].parse().unwrap();
    let secs: u64 = args[1].parse().unwrap();
    let targets: Vec<Target> = args[2..]
        .chunks(3)
        .map(|c| {
            let header = std::env::var(format!("HEADER_{}", c[0].to_uppercase()))
                .ok()
                .and_then(|h| {
                    let (k, v) = h.split_once(':')?;
                    Some((k.trim().to_string(), v.trim().to_string()))
                });
            Target {
                name: c[0].clone(),
                url: c[1].clone(),
                tool: c[2].clone(),
                header,
            }
        })
        .collect();
    println!(
        "machine: {} cpus; rounds {rounds}, {secs} s per concurrent phase; load average {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        loadavg()
    );
    // SEQ_CALLS: fewer sequential calls when a slow target would take too long at 2,000.
    let n: usize = std::env::var("SEQ_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!("sequential: {n} calls per target after {} warm-up", n / 10);
    for r in 0..rounds {
        for t in &targets {
            let (p50, p99) = sequential(t, n).await;
            println!("round {r} sequential {}: p50 {p50:?} p99 {p99:?}", t.name);
        }
        for t in &targets {
            let (rate, p99) = concurrent(t, 64, secs).await;
            println!(
                "round {r} 64 clients {}: {rate:.0} calls/s p99 {p99:?}",
                t.name
            );
        }
        println!(
            "round {r} load average {}; retries so far {}",
            loadavg(),
            RETRIES.load(Ordering::Relaxed)
        );
    }
}

/// Least-squares slope of (seconds, KiB) samples, in KiB per minute.
fn slope_per_min(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 as f64 - my)).sum();
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    if sxx > 0.0 { sxy / sxx * 60.0 } else { 0.0 }
}

async fn soak(args: &[String]) {
    let t = Target {
        name: "soak".into(),
        url: args[0].clone(),
        tool: args[1].clone(),
        header: None,
    };
    let pid: u32 = args[2].parse().unwrap();
    let rate: u64 = args[3].parse().unwrap();
    let secs: u64 = args[4].parse().unwrap();
    const WORKERS: u64 = 4;
    let calls = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let t = t.clone();
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * WORKERS / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sid = t.open(&c).await;
            let mut n = 0u64;
            while Instant::now() < stop {
                tick.tick().await;
                t.call(&c, &sid, w * 1_000_000_000 + n).await;
                calls.fetch_add(1, Ordering::Relaxed);
                n += 1;
                if n.is_multiple_of(100) {
                    t.close(&c, &sid).await;
                    sid = t.open(&c).await;
                }
            }
            t.close(&c, &sid).await;
        }));
    }
    let mut samples: Vec<(f64, u64)> = Vec::new();
    loop {
        let el = start.elapsed().as_secs_f64();
        let kib = rss_kib(pid);
        println!(
            "t={el:6.1}s rss {kib} KiB calls {} load average {}",
            calls.load(Ordering::Relaxed),
            loadavg()
        );
        samples.push((el, kib));
        if Instant::now() >= stop {
            break;
        }
        tokio::time::sleep(Duration::from_secs(10).min(stop - Instant::now())).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = calls.load(Ordering::Relaxed);
    let el = start.elapsed().as_secs_f64();
    let slope = slope_per_min(&samples);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    // The same fit over the second half only: start-up warm-up (allocator arenas, pools,
    // caches) is growth that stops; a leak keeps going.
    let half: Vec<(f64, u64)> = samples
        .iter()
        .copied()
        .filter(|s| s.0 >= el / 2.0)
        .collect();
    let hslope = slope_per_min(&half);
    println!(
        "soak: {total} calls in {el:.0} s ({:.0} calls/s, asked {rate}); rss start {} KiB, peak {peak} KiB, end {} KiB; slope {slope:+.1} KiB/min over the whole run, {hslope:+.1} KiB/min over the second half",
        total as f64 / el,
        samples[0].1,
        samples[samples.len() - 1].1
    );
    println!(
        "soak: {} requests sent again after their connection closed before an answer",
        RETRIES.load(Ordering::Relaxed)
    );
    let before = rss_kib(pid);
    let c = client();
    let mut held = Vec::new();
    for i in 0..1000 {
        let sid = t.open(&c).await;
        t.call(&c, &sid, i).await;
        held.push(sid);
    }
    let after = rss_kib(pid);
    println!(
        "sessions: gateway rss {before} KiB before, {after} KiB with 1,000 more open sessions (+{} KiB)",
        after.saturating_sub(before)
    );
    for sid in &held {
        t.close(&c, sid).await;
    }
    println!(
        "retries in all: {} (requests sent again after their connection closed before an answer)",
        RETRIES.load(Ordering::Relaxed)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match args.first().map(String::as_str) {
            Some("upstream") => {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                println!("UPSTREAM http://{}/mcp", l.local_addr().unwrap());
                axum::serve(l, Router::new().route("/mcp", post(upstream)))
                    .await
                    .unwrap();
            }
            Some("bench") if args.len() >= 6 && (args.len() - 3).is_multiple_of(3) => bench(&args[1..]).await,
            Some("soak") if args.len() == 6 => soak(&args[1..]).await,
            _ => {
                eprintln!(
                    "usage: gateways upstream | bench ROUNDS SECONDS NAME URL TOOL… | soak URL TOOL PID RATE SECONDS"
                );
                std::process::exit(64);
            }
        }
    });
}
