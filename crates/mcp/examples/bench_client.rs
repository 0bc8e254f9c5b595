//! Benchmark harness for `conductor wrap`: a raw JSON-RPC client that talks to the
//! minimal echo MCP server (`bench_echo_server.rs`) directly and through
//! `conductor wrap` (audit on, default durability), alternating the two in the same run.
//!
//! ```text
//! cargo build --release -p conductor-cli --bin conductor
//! cargo build --release -p conductor-mcp --example bench_echo_server --example bench_client
//! target/release/examples/bench_client [--rounds 6] [--calls 2000] [--pipeline 5000]
//!     [--server-work-us 0] [--compare PATH-TO-ANOTHER-CONDUCTOR]
//! ```
//!
//! `--compare` adds a third mode, `wrap-b`: the same through another `conductor` binary
//! (a build before a change), in the same rotation, so before/after come from one run.
//!
//! Each round starts a fresh server (and, for `wrap`, a fresh audit store), performs
//! the `initialize` handshake and a `tools/list` (so the gate pins the descriptor),
//! warms up, then measures:
//! - **sequential**: one `tools/call` at a time, the latency of each (write → answer);
//! - **pipelined**: a writer thread sends `--pipeline` calls back to back while the
//!   main thread reads the answers; throughput is calls / (first write → last answer).
//!
//! Every answer is checked to be an allowed echo (`"isError":false`), so refusals can
//! never be measured by mistake. The order of the two modes alternates every round.

use std::error::Error;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error>>;

const POLICY: &str = r#"version: 1
agents:
  bench-bot:
    roles: [bench]
    clearance: internal
roles:
  bench:
    allow:
      - tools: ["echo.*"]
        actions: [read]
    deny:
      - tools: ["*.delete_*"]
tools:
  echo.echo:
    action: read
destinations:
  allow: ["https://en.wikipedia.org"]
data:
  labels:
    credentials: {level: secret, detect: [secrets]}
    personal: {level: confidential, detect: [email, phone, payment-card, us-ssn, iban]}
"#;

const ARGUMENT_TEXT: &str = "summarise the latest quarterly report for the team meeting";

struct Options {
    rounds: usize,
    calls: usize,
    pipeline: usize,
    warmup: usize,
    conductor: PathBuf,
    server: PathBuf,
    work_us: u64,
    compare: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Direct,
    Wrap,
    /// Through the `--compare` binary.
    WrapB,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Wrap => "wrap",
            Mode::WrapB => "wrap-b",
        }
    }
}

struct Peer {
    child: Child,
    writer: BufWriter<ChildStdin>,
    reader: BufReader<ChildStdout>,
    next_id: u64,
    line: String,
}

impl Peer {
    fn spawn(mut command: Command) -> Res<Peer> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        Ok(Peer {
            child,
            writer: BufWriter::with_capacity(64 * 1024, stdin),
            reader: BufReader::with_capacity(64 * 1024, stdout),
            next_id: 1,
            line: String::new(),
        })
    }

    fn request_line(&mut self, method: &str, params: &serde_json::Value) -> String {
        let id = self.next_id;
        self.next_id += 1;
        let message =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut text = message.to_string();
        text.push('\n');
        text
    }

    fn call_line(&mut self) -> String {
        let params = serde_json::json!({"name": "echo", "arguments": {"text": ARGUMENT_TEXT}});
        self.request_line("tools/call", &params)
    }

    fn read_answer(&mut self) -> Res<&str> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err("the server closed its output".into());
        }
        Ok(&self.line)
    }

    fn roundtrip(&mut self, line: &str) -> Res<&str> {
        self.writer.write_all(line.as_bytes())?;
        self.writer.flush()?;
        self.read_answer()
    }

    fn handshake(&mut self) -> Res<()> {
        let init = self.request_line(
            "initialize",
            &serde_json::json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "bench-client", "version": "0.1.0"}
            }),
        );
        let answer = self.roundtrip(&init)?;
        if !answer.contains("\"result\"") {
            return Err(format!("initialize failed: {answer}").into());
        }
        self.writer
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")?;
        let list = self.request_line("tools/list", &serde_json::json!({}));
        let answer = self.roundtrip(&list)?;
        if !answer.contains("\"echo\"") {
            return Err(format!("tools/list does not offer `echo`: {answer}").into());
        }
        Ok(())
    }
}

fn check_allowed(answer: &str) -> Res<()> {
    if answer.contains("\"isError\":false") {
        Ok(())
    } else {
        Err(format!("a call was not answered by the echo tool: {answer}").into())
    }
}

struct RoundResult {
    latencies: Vec<Duration>,
    throughput: f64,
}

fn run_round(mode: Mode, opts: &Options, dir: &Path, round: usize) -> Res<RoundResult> {
    let command = match mode {
        Mode::Direct => {
            let mut c = Command::new(&opts.server);
            c.args(["--work-us", &opts.work_us.to_string()]);
            c
        }
        Mode::Wrap | Mode::WrapB => {
            let binary = match (mode, &opts.compare) {
                (Mode::WrapB, Some(b)) => b,
                _ => &opts.conductor,
            };
            let mut c = Command::new(binary);
            c.env("XDG_DATA_HOME", dir.join("data"))
                .arg("wrap")
                .arg("--policy")
                .arg(dir.join("policy.yaml"))
                .args(["--agent", "bench-bot", "--server", "echo", "--no-dns"])
                .arg("--audit")
                .arg(dir.join(format!("audit-{round}-{}.db", mode.name())))
                .arg("--")
                .arg(&opts.server)
                .args(["--work-us", &opts.work_us.to_string()]);
            c
        }
    };
    let mut peer = Peer::spawn(command)?;
    peer.handshake()?;

    for _ in 0..opts.warmup {
        let line = peer.call_line();
        check_allowed(peer.roundtrip(&line)?)?;
    }

    let mut latencies = Vec::with_capacity(opts.calls);
    for _ in 0..opts.calls {
        let line = peer.call_line();
        let start = Instant::now();
        let answer = peer.roundtrip(&line)?;
        let elapsed = start.elapsed();
        check_allowed(answer)?;
        latencies.push(elapsed);
    }

    let lines: Vec<String> = (0..opts.pipeline).map(|_| peer.call_line()).collect();
    let Peer {
        mut child,
        mut writer,
        mut reader,
        mut line,
        ..
    } = peer;
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> std::io::Result<BufWriter<ChildStdin>> {
        for l in &lines {
            writer.write_all(l.as_bytes())?;
        }
        writer.flush()?;
        Ok(writer)
    });
    for _ in 0..opts.pipeline {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err("the server closed its output".into());
        }
        check_allowed(&line)?;
    }
    let elapsed = start.elapsed();
    let writer = sender.join().map_err(|_| "the writer thread failed")??;
    let throughput = opts.pipeline as f64 / elapsed.as_secs_f64();

    drop(writer);
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the {} peer exited with {status}", mode.name()).into());
    }
    Ok(RoundResult {
        latencies,
        throughput,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted
        .get(rank.min(sorted.len() - 1))
        .copied()
        .unwrap_or_default()
}

fn median_f64(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values.get(n / 2).copied().unwrap_or(0.0),
        n => {
            let a = values.get(n / 2 - 1).copied().unwrap_or(0.0);
            let b = values.get(n / 2).copied().unwrap_or(0.0);
            (a + b) / 2.0
        }
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn parse_options() -> Res<Options> {
    let exe = std::env::current_exe()?;
    let examples = exe.parent().ok_or("no executable directory")?.to_path_buf();
    let profile_dir = examples.parent().unwrap_or(&examples).to_path_buf();
    let mut opts = Options {
        rounds: 6,
        calls: 2000,
        pipeline: 5000,
        warmup: 200,
        conductor: profile_dir.join("conductor"),
        server: examples.join("bench_echo_server"),
        work_us: 0,
        compare: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--rounds" => opts.rounds = value()?.parse()?,
            "--calls" => opts.calls = value()?.parse()?,
            "--pipeline" => opts.pipeline = value()?.parse()?,
            "--warmup" => opts.warmup = value()?.parse()?,
            "--conductor" => opts.conductor = PathBuf::from(value()?),
            "--server" => opts.server = PathBuf::from(value()?),
            "--server-work-us" => opts.work_us = value()?.parse()?,
            "--compare" => opts.compare = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!(
                    "bench_client [--rounds N] [--calls N] [--pipeline N] [--warmup N] \
                     [--conductor PATH] [--server PATH] [--server-work-us N] [--compare PATH]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    for (what, path) in [("conductor", &opts.conductor), ("server", &opts.server)] {
        if !path.exists() {
            return Err(format!(
                "the {what} binary `{}` does not exist: build it first (see this file's doc)",
                path.display()
            )
            .into());
        }
    }
    if opts.rounds == 0 || opts.calls == 0 || opts.pipeline == 0 {
        return Err("`--rounds`, `--calls` and `--pipeline` must be at least 1".into());
    }
    Ok(opts)
}

fn main() -> Res<()> {
    let opts = parse_options()?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("policy.yaml"), POLICY)?;

    let mut modes = vec![Mode::Direct, Mode::Wrap];
    if opts.compare.is_some() {
        modes.push(Mode::WrapB);
    }
    let mut all: Vec<(Mode, Vec<Duration>, Vec<f64>)> =
        modes.iter().map(|m| (*m, Vec::new(), Vec::new())).collect();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    println!(
        "rounds {} × (sequential {} calls, pipelined {} calls), warmup {}, server work {} µs/call",
        opts.rounds, opts.calls, opts.pipeline, opts.warmup, opts.work_us
    );
    if let Some(b) = &opts.compare {
        println!(
            "wrap = {}, wrap-b = {}",
            opts.conductor.display(),
            b.display()
        );
    }
    println!("round  mode    median µs   p90 µs   p99 µs   pipelined calls/s");
    for round in 0..opts.rounds {
        // Rotate the order every round, so no mode always runs first.
        let mut order = modes.clone();
        order.rotate_left(round % modes.len());
        if round % 2 == 1 {
            order.reverse();
        }
        let mut tp = vec![0.0f64; modes.len()];
        for mode in order {
            let r = run_round(mode, &opts, dir.path(), round)?;
            let mut sorted = r.latencies.clone();
            sorted.sort();
            println!(
                "{round:>5}  {:<6} {:>10.1} {:>8.1} {:>8.1} {:>19.0}",
                mode.name(),
                us(percentile(&sorted, 0.5)),
                us(percentile(&sorted, 0.9)),
                us(percentile(&sorted, 0.99)),
                r.throughput
            );
            let slot = modes.iter().position(|m| *m == mode).unwrap_or(0);
            if let Some((_, lat, tps)) = all.get_mut(slot) {
                lat.extend(r.latencies);
                tps.push(r.throughput);
            }
            if let Some(t) = tp.get_mut(slot) {
                *t = r.throughput;
            }
        }
        let direct = tp.first().copied().unwrap_or(1.0);
        for (i, t) in tp.iter().enumerate() {
            if let Some(r) = ratios.get_mut(i) {
                r.push(t / direct);
            }
        }
    }

    println!();
    let mut medians = vec![Duration::ZERO; modes.len()];
    for (i, (mode, lat, tps)) in all.iter_mut().enumerate() {
        lat.sort();
        let median = percentile(lat, 0.5);
        let throughput = median_f64(tps);
        println!(
            "{:<6} sequential median {:>7.1} µs  p90 {:>7.1} µs  p99 {:>7.1} µs   pipelined median {:>8.0} calls/s",
            mode.name(),
            us(median),
            us(percentile(lat, 0.9)),
            us(percentile(lat, 0.99)),
            throughput
        );
        if let Some(m) = medians.get_mut(i) {
            *m = median;
        }
    }
    let direct = medians.first().copied().unwrap_or_default();
    for (i, mode) in modes.iter().enumerate().skip(1) {
        let added = us(medians.get(i).copied().unwrap_or_default()) - us(direct);
        let ratio = ratios.get_mut(i).map_or(0.0, |r| median_f64(r));
        println!(
            "{}: added median latency per sequential call {added:.1} µs (target ≤ 50 µs: {}); \
             pipelined throughput / direct {:.1}% (median of per-round ratios)",
            mode.name(),
            if added <= 50.0 { "met" } else { "NOT met" },
            ratio * 100.0,
        );
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "machine: {} cores, load average {}",
            std::thread::available_parallelism().map_or(0, usize::from),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}
