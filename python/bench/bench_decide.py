"""The Python library's `decide` overhead over the Rust service, as one figure.

    python python/bench/bench_decide.py [N] [ROUNDS] [--dir DIR]   # needs the wheel installed

For each request, on one gate and one audit store (in a temporary directory, under DIR
if given: `/dev/shm` puts the store on tmpfs, where the commit — still made on every
call — costs less and varies less), ROUNDS rounds of N *interleaved* calls. Every
iteration makes one call of each kind, back to back, in an order that rotates (each
kind first, second and third equally often), so the three columns share the same
moments of the machine's load and of the store's growth:

- `rust`: `Service::decide_blocking` timed from Rust (`Gate._bench_service_decide`
  with n=1: the arguments converted and the `Call` built before the timer) — labels
  read, decide, audit commit;
- `Gate.decide`: the public Python method, timed with `perf_counter_ns` around the call
  (the `Decision` is dropped inside the timer);
- `_core.decide`: the extension method itself (the same as `Gate.decide` when `Gate`
  has no Python wrapper around it).

Prints, in µs/call, the median and the minimum of each column, and `overhead`: the
median of the per-iteration differences `Gate.decide − rust` (paired, so the commit's
spread largely cancels), then the same difference of the medians and of the minimums.
`timer` is the cost of the timing itself (two `perf_counter_ns` calls), included in
the Python columns and not subtracted.

When the extension has `_bench_phases` (it times `decide`'s own steps, with the code
`decide` runs), a second table splits one call: converting the arguments, building the
subject and the call, releasing the GIL around `decide_blocking`, `decide_blocking`
itself, building the `Decision` (and freeing it, with the gate's decision inside: the
`rust` column frees that too); `library steps` is the sum of all but `decide_blocking`.
What `overhead` holds beyond them is the Python call itself (the method's lookup,
its arguments parsed, the result returned).
"""

from __future__ import annotations

import argparse
import os
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


def median(v: list) -> float:
    v = sorted(v)
    return v[len(v) // 2] / 1000.0


ORDERS = ((0, 1, 2), (1, 2, 0), (2, 0, 1))


def interleaved(core, decide, cdecide, tool, args, n: int):
    """n iterations of one call of each kind; the order rotates every iteration, so
    each kind is first, second and third equally often."""
    now = time.perf_counter_ns
    bench = core._bench_service_decide
    rust, wrapped, ext, floor = [], [], [], []
    for i in range(n):
        for kind in ORDERS[i % 3]:
            if kind == 0:
                rust.append(bench(tool, args, 1)[0])
            elif kind == 1:
                t = now()
                decide(tool, args)
                wrapped.append(now() - t)
            else:
                t = now()
                cdecide(tool, args)
                ext.append(now() - t)
        t = now()
        floor.append(now() - t)
    return rust, wrapped, ext, floor


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("n", nargs="?", type=int, default=5000)
    p.add_argument("rounds", nargs="?", type=int, default=5)
    p.add_argument("--dir", default=None, help="where the audit stores go (default: the temp dir)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        print(f"µs/call, {a.rounds} rounds x {a.n} interleaved calls; store in {d}; "
              f"load {os.getloadavg()[0]:.1f}; conductor {conductor.__version__}")
        print(f"{'case':22} {'rust':>7} {'Gate.decide':>11} {'_core.decide':>12} "
              f"{'overhead':>8} {'Δmedians':>8} {'Δmin':>6} {'min rust':>8} {'min Gate':>8} {'timer':>5}")
        phases_out = []
        for name, agent, tool, args in CASES:
            gate = conductor.Gate(
                policy=REPO / "examples/policy.yaml", agent=agent, audit=Path(d) / f"{name}.db",
                session="bench", resolve={"en.wikipedia.org": "208.80.154.224"}, no_dns=True,
            )
            core = getattr(gate, "_core", gate)
            for _ in range(500):  # warm (first lookups, statement cache, lazy detectors)
                gate.decide(tool, args)
                core._bench_service_decide(tool, args, 1)
            rust, wrapped, ext, floor = [], [], [], []
            for _ in range(a.rounds):
                r, w, e, f = interleaved(core, gate.decide, core.decide, tool, args, a.n)
                rust += r
                wrapped += w
                ext += e
                floor += f
            diff = [w - r for w, r in zip(wrapped, rust)]
            mr, mw, me, mf = median(rust), median(wrapped), median(ext), median(floor)
            lr, lw = min(rust) / 1000.0, min(wrapped) / 1000.0
            print(f"{name:22} {mr:7.2f} {mw:11.2f} {me:12.2f} {median(diff):8.2f} "
                  f"{mw - mr:8.2f} {lw - lr:6.2f} {lr:8.2f} {lw:8.2f} {mf:5.2f}")
            if hasattr(core, "_bench_phases"):
                ph = core._bench_phases(tool, args, a.n * a.rounds)
                phases_out.append((name, {k: median(v) for k, v in ph.items()}, None))
        if phases_out:
            keys = list(phases_out[0][1])
            print()
            print("one call of `decide`, median µs of each step (timed inside the extension):")
            print(f"{'case':22} " + " ".join(f"{k:>15}" for k in keys) + f" {'library steps':>14}")
            for name, ph, _ in phases_out:
                lib = sum(v for k, v in ph.items() if k != "decide_blocking")
                print(f"{name:22} " + " ".join(f"{ph[k]:15.2f}" for k in keys) + f" {lib:14.2f}")


if __name__ == "__main__":
    main()
