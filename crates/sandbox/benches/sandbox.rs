//! Harness for crates/sandbox/BENCHMARKS.md (no criterion: each sample is a process).
//!
//! `cargo bench -p conductor-sandbox --bench sandbox` prints:
//! - start-up: spawning `true` and waiting for it, plain (tokio::process) vs in the
//!   sandbox (every layer, the proxy listener handed over), interleaved, N runs each;
//! - proxy: `curl` downloading 1 MiB from a server on 127.0.0.1, directly on the host vs
//!   inside the sandbox through the egress proxy (curl's own time_total, N runs each).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench harness: a panic is a failed run"
)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conductor_net::{ResolveError, Resolver};
use conductor_sandbox::{Egress, InitProgram, Profile};
use tokio::io::AsyncReadExt;

struct Fixed;
impl Resolver for Fixed {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        if host == "bench.test" {
            Ok(vec![IpAddr::from([127, 0, 0, 1])])
        } else {
            Err(ResolveError::NotFound { host: host.into() })
        }
    }
}

fn egress(dir: &std::path::Path) -> Egress {
    let policy = conductor_policy::load_str(
        "version: 1\nagents:\n  bot:\n    roles: [r]\nroles:\n  r:\n    allow:\n      - tools: [\"*\"]\ndestinations:\n  allow: [\"*\"]\n  permit: [loopback]\n",
        "policy.yaml",
        None,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let store = conductor_audit::AuditStore::open(&dir.join("audit.db"), Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    // The gate service, as `wrap` builds it (its resolver over a fixed lookup here).
    let resolver = conductor_gate::GateResolver::with_lookup(
        conductor_gate::ResolverConfig::default(),
        Arc::new(|h: &str| Fixed.resolve(h)),
    );
    let service = conductor_gate::Service::new(
        policy,
        resolver,
        Arc::new(conductor_scan::FingerprintKey([1; 32])),
        Arc::new(store),
        Arc::new(conductor_gate::MemoryStore::default()),
        conductor_gate::ServiceOptions::default(),
    );
    Egress {
        service: Arc::new(service),
        subject: conductor_gate::Subject {
            agent: "bot".into(),
            workflow: None,
            session: "bench".into(),
            server: Some("bench".into()),
            auth: None,
        },
    }
}

fn init() -> InitProgram {
    InitProgram {
        path: env!("CARGO_BIN_EXE_conductor-sandbox-init").into(),
        args: vec![],
    }
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

fn serve_1mib() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    // The whole answer, head and 1 MiB body, written with one call.
    let body_len = 1usize << 20;
    let mut answer =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n")
            .into_bytes();
    answer.resize(answer.len() + body_len, b'x');
    // One connection at a time, answered on the accepting thread: the downloads are
    // sequential, and a thread started per connection would sit on the proxied path
    // only (through the proxy the request follows the connection at once; direct,
    // curl is still preparing it while the thread starts).
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let mut r = BufReader::new(&s);
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).is_err() || l == "\r\n" || l.is_empty() {
                    break;
                }
            }
            let mut w = &s;
            let _ = w.write_all(&answer);
        }
    });
    port
}

/// What the kernel counted for this process's `conductor-proxy` threads: CPU time on
/// the thread and time runnable but waiting for a CPU (ns, `schedstat`), and voluntary
/// context switches (each a sleep, so each a later wake-up). Load-insensitive, unlike
/// the wall clock: what the proxy itself costs per connection.
#[derive(Default, Clone, Copy)]
struct ProxyThreads {
    cpu_ns: u64,
    wait_ns: u64,
    sleeps: u64,
}

fn proxy_threads() -> std::collections::BTreeMap<u64, ProxyThreads> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim() != "conductor-proxy" {
            continue;
        }
        let Ok(tid) = t.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let sched = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        let mut f = sched
            .split_whitespace()
            .map(|x| x.parse::<u64>().unwrap_or(0));
        let (cpu_ns, wait_ns) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        let sleeps = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        out.insert(
            tid,
            ProxyThreads {
                cpu_ns,
                wait_ns,
                sleeps,
            },
        );
    }
    out
}

/// Run `script` in a sandbox; its stdout, and what the sandbox's proxy thread cost.
async fn sandboxed_counted(script: &str, dir: &std::path::Path) -> (String, ProxyThreads) {
    let before = proxy_threads();
    let cmd = vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()];
    let (mut child, guard) =
        conductor_sandbox::spawn(&init(), &cmd, &Profile::default(), egress(dir))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    drop(child.stdin.take());
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out).await;
    }
    let _ = child.wait().await;
    // This sandbox's proxy thread: the one that was not there before the spawn.
    let mut cost = ProxyThreads::default();
    for (tid, t) in proxy_threads() {
        if !before.contains_key(&tid) {
            cost.cpu_ns += t.cpu_ns;
            cost.wait_ns += t.wait_ns;
            cost.sleeps += t.sleeps;
        }
    }
    drop(guard);
    (out, cost)
}

async fn sandboxed(script: &str, dir: &std::path::Path) -> String {
    sandboxed_counted(script, dir).await.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("SANDBOX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Warm-up (page cache, the init binary).
    for _ in 0..3 {
        let _ = sandboxed("true", dir.path()).await;
    }
    let mut plain = Vec::new();
    let mut boxed = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let mut c = tokio::process::Command::new("true")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = c.wait().await;
        plain.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let (mut c, g) = conductor_sandbox::spawn(
            &init(),
            &["true".into()],
            &Profile::default(),
            egress(dir.path()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let spawned = t.elapsed();
        let _ = c.wait().await;
        drop(g);
        boxed.push(t.elapsed().as_secs_f64() * 1e3);
        let _ = spawned;
    }
    let (pm, p10, p90) = stats(plain);
    let (bm, b10, b90) = stats(boxed);
    println!(
        "startup (spawn `true` + wait), {n} runs each, ms: plain median {pm:.2} (p10 {p10:.2}, p90 {p90:.2}); sandbox median {bm:.2} (p10 {b10:.2}, p90 {b90:.2}); added median {:.2}",
        bm - pm
    );

    let port = serve_1mib();

    // The proxy's fixed cost per connection, in process: the gate's decision and the
    // committed audit record of one plain-HTTP request (what `plain` does before it
    // connects).
    {
        let e = egress(dir.path());
        let mut took = Vec::new();
        for i in 0..(n * 10) {
            let connection = conductor_gate::Connection {
                action: "get".into(),
                destination: format!("http://bench.test:{port}/"),
                shown: format!("http://bench.test:{port}/"),
                sni: None,
                content: serde_json::json!({
                    "target": format!("http://bench.test:{port}/{i}"),
                    "headers": [["Host", format!("bench.test:{port}")], ["User-Agent", "curl/8"]],
                    "body": "",
                }),
            };
            let t = Instant::now();
            // As the proxy does it: the checks, then the record committed on this thread.
            let checked = e.service.check_connection(&e.subject, connection).await;
            let v = e
                .service
                .record_connection_here(&e.subject, checked, Vec::new());
            took.push(t.elapsed().as_secs_f64() * 1e6);
            assert!(v.forward, "{:?}", v.decision.reasons);
        }
        let (m, p10, p90) = stats(took);
        println!(
            "proxy decision + committed record, in process, {} runs, us: median {m:.1} (p10 {p10:.1}, p90 {p90:.1})",
            n * 10
        );
        // The same, as the proxy meets it: on a thread of its own (a current-thread
        // runtime) that slept between connections, so caches are cold.
        let cold = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            let mut took = Vec::new();
            for i in 0..(n * 2) {
                std::thread::sleep(Duration::from_millis(5));
                let connection = conductor_gate::Connection {
                    action: "get".into(),
                    destination: format!("http://bench.test:{port}/"),
                    shown: format!("http://bench.test:{port}/"),
                    sni: None,
                    content: serde_json::json!({
                        "target": format!("http://bench.test:{port}/c{i}"),
                        "headers": [["Host", format!("bench.test:{port}")], ["User-Agent", "curl/8"]],
                        "body": "",
                    }),
                };
                let t = Instant::now();
                let checked = rt.block_on(e.service.check_connection(&e.subject, connection));
                let v = e
                    .service
                    .record_connection_here(&e.subject, checked, Vec::new());
                took.push(t.elapsed().as_secs_f64() * 1e6);
                assert!(v.forward, "{:?}", v.decision.reasons);
            }
            took
        })
        .join()
        .unwrap_or_else(|_| panic!("cold decisions"));
        let (m, p10, p90) = stats(cold);
        println!(
            "proxy decision + committed record, on a thread that slept 5 ms before each, {} runs, us: median {m:.1} (p10 {p10:.1}, p90 {p90:.1})",
            n * 2
        );
    }

    let runs = n.min(30);
    // curl prints `time_starttransfer time_total` (seconds) per download.
    let parse = |s: &str| -> Vec<(f64, f64)> {
        s.lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace().map(|t| t.parse::<f64>().ok());
                Some((it.next()?? * 1e3, it.next()?? * 1e3))
            })
            .collect()
    };
    // Alternated in rounds (direct, then through the proxy), so that a change of load
    // hits both sides alike.
    let rounds = 4;
    let per = runs.div_ceil(rounds);
    let round_script = |url: &str| {
        format!(
            "for i in $(seq {per}); do curl -s -o /dev/null -w '%{{time_starttransfer}} %{{time_total}}\\n' {url}; done"
        )
    };
    let mut direct = Vec::new();
    let mut proxied = Vec::new();
    let mut threads = ProxyThreads::default();
    for _ in 0..rounds {
        let direct_out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(round_script(&format!(
                "--noproxy '*' http://127.0.0.1:{port}/"
            )))
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        direct.extend(parse(&String::from_utf8_lossy(&direct_out.stdout)));
        let (out, cost) = sandboxed_counted(
            &round_script(&format!("http://bench.test:{port}/")),
            dir.path(),
        )
        .await;
        proxied.extend(parse(&out));
        threads.cpu_ns += cost.cpu_ns;
        threads.wait_ns += cost.wait_ns;
        threads.sleeps += cost.sleeps;
    }
    let counted = direct.len().min(proxied.len());
    let conns = proxied.len().max(1) as f64;
    println!(
        "proxy thread per proxied download (schedstat, all {} of them, each round's first included): CPU {:.1} us, waiting for a CPU {:.1} us, sleeps (voluntary switches) {:.2}",
        proxied.len(),
        threads.cpu_ns as f64 / conns / 1e3,
        threads.wait_ns as f64 / conns / 1e3,
        threads.sleeps as f64 / conns
    );
    let (dfirst, _, _) = stats(direct.iter().map(|t| t.0).collect());
    let (xfirst, _, _) = stats(proxied.iter().map(|t| t.0).collect());
    println!(
        "first byte (curl time_starttransfer), ms: direct median {dfirst:.2}; through the proxy median {xfirst:.2}; added {:.2}",
        xfirst - dfirst
    );
    // The relay's throughput: the body's bytes over the time from the first byte of the
    // answer to the last (the connection's fixed cost is the first-byte figure above).
    let rate = |v: &[(f64, f64)]| -> Vec<f64> {
        v.iter()
            .map(|(first, total)| 1000.0 / (total - first).max(1e-3))
            .collect()
    };
    let (drate, d10r, d90r) = stats(rate(&direct));
    let (xrate, x10r, x90r) = stats(rate(&proxied));
    println!(
        "transfer phase (first byte to last), MiB/s: direct median {drate:.0} (p10 {d10r:.0}, p90 {d90r:.0}); through the proxy median {xrate:.0} (p10 {x10r:.0}, p90 {x90r:.0}); proxy/direct {:.0}%",
        100.0 * xrate / drate
    );
    let (dm, d10, d90) = stats(direct.into_iter().map(|t| t.1).collect());
    let (xm, x10, x90) = stats(proxied.into_iter().map(|t| t.1).collect());
    let mib_s = |ms: f64| 1000.0 / ms;
    println!(
        "1 MiB download (curl time_total), {} runs each (alternated in {rounds} rounds), ms: direct median {dm:.2} (p10 {d10:.2}, p90 {d90:.2}) = {:.0} MiB/s; through the proxy median {xm:.2} (p10 {x10:.2}, p90 {x90:.2}) = {:.0} MiB/s; proxy/direct throughput {:.0}%; added latency median {:.2} ms",
        counted,
        mib_s(dm),
        mib_s(xm),
        100.0 * dm / xm,
        xm - dm
    );
    std::thread::sleep(Duration::from_millis(10));
}
