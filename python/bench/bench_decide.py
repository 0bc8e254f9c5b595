"""The Python library's `decide`, timed with timeit, against the Rust baseline of the
same requests (crates/python/benches/decide.rs: `Service::decide_blocking` through the
same kind of store, and the pure core).

    python python/bench/bench_decide.py            # needs the wheel installed

Prints microseconds per call for: `Gate.decide` (the public wrapper),
`Gate._core.decide` (the extension directly) and, as a floor, a Python call of a
no-op method with the same arguments (what any call from Python costs).
"""

from __future__ import annotations

import os
import sys
import tempfile
import timeit
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


class Noop:
    def decide(self, tool, arguments=None, workflow=None, session=None, problem=None):
        return None


def best(stmt, n: int, repeat: int = 5) -> float:
    return min(timeit.repeat(stmt, number=n, repeat=repeat)) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with tempfile.TemporaryDirectory() as d:
        print(f"{'case':24} {'Gate.decide':>12} {'_core.decide':>13} {'py call floor':>14}  (µs/call, best of 5 x {n})")
        for name, agent, tool, args in CASES:
            gate = conductor.Gate(
                policy=REPO / "examples/policy.yaml", agent=agent, audit=Path(d) / f"{name}.db",
                session="bench", resolve={"en.wikipedia.org": "208.80.154.224"}, no_dns=True,
            )
            core = gate._core
            noop = Noop()
            gate.decide(tool, args)  # warm (first lookups, statement cache)
            a = best(lambda: gate.decide(tool, args), n)
            b = best(lambda: core.decide(tool, args), n)
            c = best(lambda: noop.decide(tool, args), n)
            print(f"{name:24} {a:12.2f} {b:13.2f} {c:14.2f}")


if __name__ == "__main__":
    main()
