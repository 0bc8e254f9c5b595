"""Instruction counts of the library's `decide` overhead (load-independent).

    bash python/bench/callgrind_decide.sh [N]      # runs this under valgrind --tool=callgrind

`python callgrind_decide.py MODE N CASE` makes one gate (the case's agent, a store in
a temporary directory), warms it with 200 calls, then makes N calls:

- `rust`: one `Gate._bench_service_decide(tool, args, N)` — `Service::decide_blocking`
  N times from Rust;
- `gate`: `Gate.decide(tool, args)` N times from a Python loop;
- `none`: nothing (the start-up and the warm-up alone).

The same start-up, warm-up and number of records in every mode, so
(Ir(gate) − Ir(rust)) / N is what one `Gate.decide` adds to the service, in
instructions, and (Ir(rust) − Ir(none)) / N what the service's call costs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault(
    "CONDUCTOR_FINGERPRINT_KEY_FILE", str(REPO / "crates/cli/tests/fixtures/fingerprint.key")
)

import conductor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decide import CASES  # noqa: E402


def main() -> None:
    mode, n, case = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    [(_, agent, tool, args)] = [c for c in CASES if c[0] == case]
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        gate = conductor.Gate(
            policy=REPO / "examples/policy.yaml", agent=agent, audit=Path(d) / "a.db",
            session="bench", resolve={"en.wikipedia.org": "208.80.154.224"}, no_dns=True,
        )
        core = getattr(gate, "_core", gate)
        for _ in range(200):
            core._bench_service_decide(tool, args, 1)
        if mode == "rust":
            core._bench_service_decide(tool, args, n)
        elif mode == "gate":
            for _ in range(n):
                gate.decide(tool, args)
        elif mode != "none":
            raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
