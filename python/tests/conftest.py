"""Shared fixtures: the repository's example policy, the test fingerprint key, a fresh
audit store per test, and the `conductor` binary the parity tests compare with."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "examples" / "policy.yaml"
REQUESTS = REPO / "examples" / "requests.jsonl"
# The key the CLI's own tests use: the same key gives the same fingerprints.
KEY = REPO / "crates" / "cli" / "tests" / "fixtures" / "fingerprint.key"
os.environ["CONDUCTOR_FINGERPRINT_KEY_FILE"] = str(KEY)

# What the README's run command fixes (`--resolve`), so nothing leaves the machine.
RESOLVE = {
    "en.wikipedia.org": "208.80.154.224",
    "api.github.com": "140.82.112.6",
    "notes.corp.example.com": "93.184.215.14",
}
RESOLVE_ARGS = [a for h, ip in RESOLVE.items() for a in ("--resolve", f"{h}={ip}")]


def conductor_bin() -> Path:
    p = Path(os.environ.get("CONDUCTOR_BIN", REPO / "target" / "debug" / "conductor"))
    assert p.is_file(), f"the conductor binary is missing at {p}: build it (cargo build -p conductor-cli)"
    return p


def run_conductor(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(conductor_bin()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CONDUCTOR_FINGERPRINT_KEY_FILE": str(KEY)},
    )


def records(audit: Path) -> list[dict]:
    """Every audit record in the store, oldest first, as `conductor audit export` reads it."""
    import json

    out = run_conductor("audit", "export", "--format", "jsonl", "--audit", str(audit))
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def make_gate(audit: Path):
    import conductor

    def make(agent: str = "research-bot", **kw):
        kw.setdefault("resolve", RESOLVE)
        kw.setdefault("no_dns", True)
        return conductor.Gate(policy=POLICY, agent=agent, audit=audit, **kw)

    return make
