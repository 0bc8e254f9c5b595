"""Conductor: a pre-authorization gate for AI agent tool calls, in-process.

    import conductor

    gate = conductor.Gate(policy="policy.yaml", agent="research-bot", audit="audit.db")
    d = gate.decide("fetch.fetch", {"url": "http://2852039166/latest/meta-data/"})
    d.effect      # "deny"
    d.reasons     # [Reason(check="destination", rule="destinations.blocked.cloud-metadata", ...)]
    d.audit_id    # the audit record's sequence number

    @gate.guard("calc.add")
    def add(a: int, b: int) -> int:
        return a + b

Every decision is made by the same gate service as ``conductor wrap``, ``serve`` and
the Claude Code hook (the Rust extension ``conductor._conductor``) and is committed to
the audit store before it is returned. See docs/python.md.
"""

from __future__ import annotations

from ._conductor import ConfigError, Decision, Error, Reason, StoreError, __version__
from ._gate import ApprovalRequired, Denied, Gate

__all__ = [
    "ApprovalRequired",
    "ConfigError",
    "Decision",
    "Denied",
    "Error",
    "Gate",
    "Reason",
    "StoreError",
    "__version__",
]
