"""The Python library's `decide` overhead over the Rust service, as one figure.

    python python/bench/bench_decide.py [N] [ROUNDS]     # needs the wheel installed

For each request, on one gate and one audit store, in alternating rounds of N calls:

- `rust`: `Service::decide_blocking` called from Rust (`Gate._bench_service_decide`:
  arguments converted once, no Python in the loop) — labels read, decide, audit commit;
- `Gate.decide`: the public Python method, each call timed with `perf_counter_ns`;
- `_core.decide`: the extension method without the Python wrapper.

Prints the medians over all rounds (µs/call) and `overhead` = median `Gate.decide` −
median `rust`: what the library adds (the Python call, converting the arguments,
releasing the GIL, building the `Decision`). `timer` is the cost of the timing itself
(two `perf_counter_ns` calls), included in the Python columns. The Rust criterion bench
(crates/python/benches/decide.rs) times the same requests in its own process.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault(
    "CONDUCTOR_FINGERPRINT_KEY_FILE", str(REPO / "crates/cli/tests/fixtures/fingerprint.key")
)

import conductor  # noqa: E402

CASES = [
    ("allow_search", "intern-bot", "search.web", {"q": "rust async runtimes"}),
    ("deny_metadata", "research-bot", "fetch.fetch", {"url": "http://2852039166/latest/meta-data/"}),
    ("allow_fetch_resolved", "research-bot", "fetch.fetch",
     {"url": "https://en.wikipedia.org/wiki/Model_Context_Protocol"}),
]


def median(v: list[int]) -> float:
    v = sorted(v)
    return v[len(v) // 2] / 1000.0


def timed(f, n: int) -> list[int]:
    now = time.perf_counter_ns
    out = []
    for _ in range(n):
        t = now()
        f()
        out.append(now() - t)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as d:
        print(f"µs/call, medians of {rounds} alternating rounds x {n} calls; load {os.getloadavg()[0]:.1f}")
        print(f"{'case':24} {'rust':>8} {'Gate.decide':>12} {'_core.decide':>13} {'overhead':>9} {'timer':>6}")
        for name, agent, tool, args in CASES:
            gate = conductor.Gate(
                policy=REPO / "examples/policy.yaml", agent=agent, audit=Path(d) / f"{name}.db",
                session="bench", resolve={"en.wikipedia.org": "208.80.154.224"}, no_dns=True,
            )
            core = gate._core
            for _ in range(200):  # warm (first lookups, statement cache, lazy detectors)
                gate.decide(tool, args)
            rust, wrapped, ext, floor = [], [], [], []
            for _ in range(rounds):
                rust += core._bench_service_decide(tool, args, n)
                wrapped += timed(lambda: gate.decide(tool, args), n)
                ext += timed(lambda: core.decide(tool, args), n)
                floor += timed(lambda: None, n)
            r, w, e, f = median(rust), median(wrapped), median(ext), median(floor)
            print(f"{name:24} {r:8.2f} {w:12.2f} {e:13.2f} {w - r:9.2f} {f:6.2f}")


if __name__ == "__main__":
    main()
