//! Relay benchmark: a raw JSON-RPC client talks to the echo server directly and
//! through `conductor wrap` (audit on, default durability, a temporary store),
//! alternating the two in the same run.
//!
//! ```text
//! cargo build --release -p conductor-cli -p conductor-mcp --examples
//! target/release/examples/wrap_bench target/release/conductor target/release/examples/echo_server [ROUNDS]
//! ```
//!
//! Reports the median round trip of sequential calls (direct, wrapped, added) and the
//! throughput of pipelined calls (direct, wrapped, ratio).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark harness: a failure ends the run"
)]

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

const POLICY: &str = r#"version: 1
agents:
  bench:
    roles: [runner]
roles:
  runner:
    allow:
      - tools: ["echo.*"]
tools:
  echo.echo:
    action: read
destinations:
  allow: ["https://en.wikipedia.org"]
"#;

const SEQUENTIAL: usize = 2_000;
const PIPELINED: usize = 20_000;

struct Peer {
    child: Child,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
    next_id: u64,
}

impl Peer {
    fn spawn(cmd: &mut Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let input = BufWriter::new(child.stdin.take().unwrap());
        let output = BufReader::new(child.stdout.take().unwrap());
        let mut p = Peer {
            child,
            input,
            output,
            next_id: 0,
        };
        p.request("initialize", r#"{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}"#);
        p.request("tools/list", "{}");
        p
    }

    fn write(&mut self, method: &str, params: &str) {
        self.next_id += 1;
        writeln!(
            self.input,
            "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"{method}\",\"params\":{params}}}",
            self.next_id
        )
        .unwrap();
    }

    fn read(&mut self) -> String {
        let mut line = String::new();
        assert!(self.output.read_line(&mut line).unwrap() > 0, "peer closed");
        assert!(!line.contains("isError"), "refused: {line}");
        line
    }

    fn request(&mut self, method: &str, params: &str) -> String {
        self.write(method, params);
        self.input.flush().unwrap();
        self.read()
    }

    fn call(&mut self) {
        self.request(
            "tools/call",
            r#"{"name":"echo","arguments":{"text":"hello from the benchmark"}}"#,
        );
    }

    /// Sequential round trips, in nanoseconds.
    fn sequential(&mut self, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                self.call();
                t.elapsed().as_nanos() as u64
            })
            .collect()
    }

    /// Calls per second with `n` calls in flight at once (written by one thread,
    /// read by this one).
    fn pipelined(&mut self, n: usize) -> f64 {
        let start_id = self.next_id;
        let mut lines = String::new();
        for i in 0..n {
            lines.push_str(&format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"text\":\"hello from the benchmark\"}}}}}}\n",
                start_id + 1 + i as u64
            ));
        }
        self.next_id += n as u64;
        let t = Instant::now();
        std::thread::scope(|s| {
            let input = &mut self.input;
            s.spawn(move || {
                input.write_all(lines.as_bytes()).unwrap();
                input.flush().unwrap();
            });
            for _ in 0..n {
                let mut line = String::new();
                assert!(self.output.read_line(&mut line).unwrap() > 0);
            }
        });
        n as f64 / t.elapsed().as_secs_f64()
    }

    fn close(mut self) {
        drop(self.input);
        let _ = self.child.wait();
    }
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: wrap_bench CONDUCTOR ECHO_SERVER [ROUNDS]");
        std::process::exit(64);
    }
    let conductor = Path::new(&args[1]);
    let echo = Path::new(&args[2]);
    let rounds: usize = args.get(3).map_or(5, |r| r.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let key = dir.path().join("fingerprint.key");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let audit = dir.path().join("audit.db");

    let direct = || Peer::spawn(&mut Command::new(echo));
    let wrapped = || {
        Peer::spawn(
            Command::new(conductor)
                .env("CONDUCTOR_FINGERPRINT_KEY_FILE", &key)
                .arg("wrap")
                .arg("--policy")
                .arg(&policy)
                .args([
                    "--agent", "bench", "--server", "echo", "--no-dns", "--audit",
                ])
                .arg(&audit)
                .arg("--")
                .arg(echo),
        )
    };

    let (mut seq_d, mut seq_w) = (Vec::new(), Vec::new());
    let (mut thr_d, mut thr_w) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so drift in the machine's load hits both.
        let order: [bool; 2] = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for wrap in order {
            let mut p = if wrap { wrapped() } else { direct() };
            p.sequential(200); // warm-up
            let s = p.sequential(SEQUENTIAL);
            let t = p.pipelined(PIPELINED);
            p.close();
            if wrap {
                seq_w.extend(s);
                thr_w.push(t);
            } else {
                seq_d.extend(s);
                thr_d.push(t);
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    let md = median(&mut seq_d);
    let mw = median(&mut seq_w);
    let fmed = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let td = fmed(&mut thr_d);
    let tw = fmed(&mut thr_w);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "rounds: {rounds} ({SEQUENTIAL} sequential + {PIPELINED} pipelined calls per side per round)"
    );
    println!(
        "sequential median round trip: direct {:.1} us, wrapped {:.1} us, added {:.1} us",
        md as f64 / 1e3,
        mw as f64 / 1e3,
        (mw as f64 - md as f64) / 1e3
    );
    println!(
        "pipelined throughput (median of rounds): direct {td:.0} calls/s, wrapped {tw:.0} calls/s, ratio {:.1}%",
        100.0 * tw / td
    );
    println!("load average: {}", load.trim());
}
