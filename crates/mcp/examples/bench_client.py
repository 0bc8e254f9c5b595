#!/usr/bin/env python3
"""Benchmark harness for `conductor wrap` with a plain Python client, standard library only.

The Python counterpart of `bench_client.rs`: it starts an echo MCP server (by default
`bench_echo_server.py`, run with the same python3) directly and through
`conductor wrap` (audit on, a fresh store per round, default durability, `--no-dns`,
the same policy as the Rust harness), alternating the order every round, does the
`initialize` handshake and a `tools/list` (so the gate pins the descriptor), warms up,
then measures

- sequential: one `tools/call` at a time, write + flush -> `readline()` of the answer;
- pipelined: a thread writes `--pipeline` calls back to back while the main thread
  reads the answers; throughput = calls / (first write -> last answer).

The client talks the way a plain Python client does: `subprocess.Popen` pipes (a
buffered writer and reader), `write(line)` + `flush()`, `readline()`.

Every answer is checked to be the allowed echo (`"isError":false`), outside the timed
part, so a refusal is never measured.

    cargo build --release -p conductor-cli --bin conductor
    cargo build --release -p conductor-mcp --example bench_echo_server
    python3 crates/mcp/examples/bench_client.py [--rounds 6] [--calls 2000] [--pipeline 5000]
        [--server py|rust] [--server-write print|one] [--conductor PATH] [--compare PATH]

`--server rust` uses `target/release/examples/bench_echo_server` (the Rust harness's
server) with this client; `--server-write one` makes the Python server write each
answer in one write(2) instead of print's two (text, then newline). `--compare PATH` adds a third mode, `wrap-b`,
through another `conductor` binary (a build before a change) in the same rotation.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

POLICY = """version: 1
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
"""

ARGUMENT_TEXT = "summarise the latest quarterly report for the team meeting"

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


class Peer:
    def __init__(self, argv, env):
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self.w = self.proc.stdin
        self.r = self.proc.stdout
        self.next_id = 1

    def line(self, method, params):
        mid = self.next_id
        self.next_id += 1
        return (
            json.dumps({"jsonrpc": "2.0", "id": mid, "method": method, "params": params})
            + "\n"
        ).encode()

    def call_line(self):
        return self.line("tools/call", {"name": "echo", "arguments": {"text": ARGUMENT_TEXT}})

    def roundtrip(self, data):
        self.w.write(data)
        self.w.flush()
        answer = self.r.readline()
        if not answer:
            raise RuntimeError("the server closed its output")
        return answer

    def handshake(self):
        a = self.roundtrip(
            self.line(
                "initialize",
                {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "bench-client-py", "version": "0.1.0"},
                },
            )
        )
        if b'"result"' not in a:
            raise RuntimeError(f"initialize failed: {a!r}")
        self.w.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        a = self.roundtrip(self.line("tools/list", {}))
        if b'"echo"' not in a:
            raise RuntimeError(f"tools/list does not offer echo: {a!r}")


def check(answer):
    if b'"isError":false' not in answer.replace(b" ", b""):
        raise RuntimeError(f"a call was not answered by the echo tool: {answer!r}")


def server_argv(opts):
    if opts.server == "rust":
        return [os.path.join(opts.target, "examples", "bench_echo_server")]
    argv = [sys.executable, os.path.join(HERE, "bench_echo_server.py")]
    if opts.server_write == "one":
        argv += ["--write", "one"]
    return argv


def run_round(mode, opts, tmp, rnd):
    env = dict(os.environ)
    if mode == "direct":
        argv = server_argv(opts)
    else:
        env["XDG_DATA_HOME"] = os.path.join(tmp, "data")
        argv = [
            opts.compare if mode == "wrap-b" else opts.conductor,
            "wrap",
            "--policy",
            os.path.join(tmp, "policy.yaml"),
            "--agent",
            "bench-bot",
            "--server",
            "echo",
            "--no-dns",
            "--audit",
            os.path.join(tmp, f"audit-{rnd}-{mode}.db"),
            "--",
        ] + server_argv(opts)
    peer = Peer(argv, env)
    peer.handshake()
    for _ in range(opts.warmup):
        check(peer.roundtrip(peer.call_line()))

    clock = time.perf_counter_ns
    lat = []
    answers = []
    for _ in range(opts.calls):
        data = peer.call_line()
        t0 = clock()
        peer.w.write(data)
        peer.w.flush()
        a = peer.r.readline()
        lat.append(clock() - t0)
        answers.append(a)
    for a in answers:
        check(a)

    lines = [peer.call_line() for _ in range(opts.pipeline)]

    def send():
        for data in lines:
            peer.w.write(data)
        peer.w.flush()

    t0 = time.perf_counter()
    sender = threading.Thread(target=send)
    sender.start()
    got = []
    for _ in range(opts.pipeline):
        a = peer.r.readline()
        if not a:
            raise RuntimeError("the server closed its output")
        got.append(a)
    elapsed = time.perf_counter() - t0
    sender.join()
    for a in got:
        check(a)
    peer.w.close()
    status = peer.proc.wait()
    if status != 0:
        raise RuntimeError(f"the {mode} peer exited with {status}")
    return [x / 1000.0 for x in lat], opts.pipeline / elapsed


def pct(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, round((len(sorted_values) - 1) * p))]


def main():
    target = os.path.join(REPO, "target", "release")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--pipeline", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--conductor", default=os.path.join(target, "conductor"))
    ap.add_argument("--target", default=target)
    ap.add_argument("--server", choices=["py", "rust"], default="py")
    ap.add_argument("--server-write", choices=["print", "one"], default="print")
    ap.add_argument("--compare", default=None)
    opts = ap.parse_args()
    if not os.path.exists(opts.conductor):
        sys.exit(f"`{opts.conductor}` does not exist: build it first (see this file's doc)")

    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "policy.yaml"), "w") as f:
            f.write(POLICY)
        print(
            f"python client, {opts.server} server (write: {opts.server_write}); rounds {opts.rounds} x "
            f"(sequential {opts.calls}, pipelined {opts.pipeline}), warmup {opts.warmup}"
        )
        modes = ["direct", "wrap"] + (["wrap-b"] if opts.compare else [])
        if opts.compare:
            print(f"wrap = {opts.conductor}, wrap-b = {opts.compare}")
        print("round  mode    median us   p90 us   p99 us   pipelined calls/s")
        all_lat = {m: [] for m in modes}
        all_tp = {m: [] for m in modes}
        ratios = {m: [] for m in modes}
        for rnd in range(opts.rounds):
            k = rnd % len(modes)
            order = modes[k:] + modes[:k]
            if rnd % 2 == 1:
                order.reverse()
            tp = {}
            for mode in order:
                lat, thr = run_round(mode, opts, tmp, rnd)
                s = sorted(lat)
                print(
                    f"{rnd:>5}  {mode:<6} {pct(s, 0.5):>10.1f} {pct(s, 0.9):>8.1f} "
                    f"{pct(s, 0.99):>8.1f} {thr:>19.0f}",
                    flush=True,
                )
                all_lat[mode] += lat
                all_tp[mode].append(thr)
                tp[mode] = thr
            for m in modes:
                ratios[m].append(tp[m] / tp["direct"])
        print()
        med = {}
        for mode in modes:
            s = sorted(all_lat[mode])
            med[mode] = pct(s, 0.5)
            print(
                f"{mode:<6} sequential median {med[mode]:>7.1f} us  p90 {pct(s, 0.9):>7.1f} us  "
                f"p99 {pct(s, 0.99):>7.1f} us   pipelined median {statistics.median(all_tp[mode]):>8.0f} calls/s"
            )
        for mode in modes[1:]:
            added = med[mode] - med["direct"]
            print(
                f"{mode}: added median latency per sequential call {added:.1f} us "
                f"(target <= 50 us: {'met' if added <= 50 else 'NOT met'}); pipelined throughput / direct "
                f"{statistics.median(ratios[mode]) * 100:.1f}% (median of per-round ratios)"
            )
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        print(f"machine: {os.cpu_count()} cores, load average {load}")


if __name__ == "__main__":
    main()
