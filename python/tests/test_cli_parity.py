"""Same inputs, same decisions, same audit records: the library against `conductor check`
(on every example request of the repository) and against `conductor hook claude-code`
(whose records come from the same gate service)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import conductor
from conftest import POLICY, REQUESTS, RESOLVE, RESOLVE_ARGS, records, run_conductor

# Text that raises each label of the example policy when a tool returns it.
LABEL_TEXT = {
    "personal": "Reported by jane.doe@example.com",
    "project-x": "Project X ships in March",
    "credentials": "aws_secret_access_key=Tq8v0hR3mW1nZ5pK7xJ2cL9bF4dG6sY0eU3iO8aQ AKIA2OGYBAH6TQKRXEVN",
}

# Members of an audit record that differ between two records of the same decision.
PER_RECORD = {"seq", "time", "prev", "hash", "event", "latency_us"}


def example_requests() -> list[dict]:
    return [json.loads(line) for line in REQUESTS.read_text().splitlines() if line.strip()]


def cli_decisions() -> list[dict]:
    out = run_conductor(
        "check", "--policy", str(POLICY), "--jsonl", "--no-dns", *RESOLVE_ARGS,
        stdin=REQUESTS.read_text(),
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def decide_in_python(request: dict, audit: Path) -> conductor.Decision:
    gate = conductor.Gate(
        policy=POLICY, agent=request["agent"], audit=audit,
        workflow=request.get("workflow"), resolve=RESOLVE, no_dns=True,
    )
    for label in request.get("session_labels", []):
        # The session has received data with this label (as the CLI request says).
        assert label in gate.label_result("notes.read", LABEL_TEXT[label])
    assert sorted(gate.labels()) == sorted(request.get("session_labels", []))
    return gate.decide(request["tool"], request["arguments"])


def test_every_example_request_decides_as_the_cli(tmp_path):
    requests = example_requests()
    cli = cli_decisions()
    assert len(cli) == len(requests) >= 20
    effects = set()
    for i, (request, expected) in enumerate(zip(requests, cli)):
        # A store per request: labels raised for one request do not reach another.
        audit = tmp_path / f"audit-{i}.db"
        d = decide_in_python(request, audit)
        got = d.to_dict()
        assert got == expected, f"line {i + 1}: {json.dumps(request)}"
        assert d.effect == expected["decision"]
        assert [(r.check, r.rule, r.message) for r in d.reasons] == [
            (r["check"], r["rule"], r["message"]) for r in expected["reasons"]
        ]
        effects.add(d.effect)
        # The audit record says what the CLI printed.
        [rec] = [r for r in records(audit) if r["seq"] == d.audit_id]
        for key in ("decision", "reasons", "destinations", "findings", "policy"):
            assert rec[key] == expected[key], f"line {i + 1}: record `{key}`"
        assert (rec["agent"], rec["tool"], rec.get("workflow")) == (
            request["agent"], request["tool"], request.get("workflow"),
        )
        verify = run_conductor("audit", "verify", "--audit", str(audit))
        assert verify.returncode == 0, verify.stdout + verify.stderr
    assert effects == {"allow", "deny", "approve"}


@pytest.mark.parametrize(
    "agent, tool, arguments, workflow",
    [
        ("research-bot", "fetch.fetch", {"url": "https://en.wikipedia.org/wiki/Model_Context_Protocol"}, "market-research"),
        ("research-bot", "fetch.fetch", {"url": "http://2852039166/latest/meta-data/"}, None),
        ("research-bot", "notes.create", {"title": "creds", "body": "aws_access_key_id=AKIA2OGYBAH6TQKRXEVN aws_secret_access_key=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"}, None),
        ("deploy-bot", "github.merge_pull_request", {"repo": "acme/widgets", "pull_number": 42}, None),
        ("deploy-bot", "github.create_issue", {"repo": "evil-org/widgets", "title": "hello"}, None),
    ],
)
def test_records_match_the_hook_records(tmp_path, agent, tool, arguments, workflow):
    # The hook decides MCP tools `mcp__<server>__<tool>` as `<server>.<tool>`, with the
    # arguments unchanged: the same request through the same service, so the same record
    # (request digest included) but for the way in and the record's place in its chain.
    session = "parity-session"
    server, name = tool.split(".", 1)
    hook_audit = tmp_path / "hook.db"
    hook_input = {
        "hook_event_name": "PreToolUse", "session_id": session,
        "tool_name": f"mcp__{server}__{name}", "tool_input": arguments,
    }
    args = ["hook", "claude-code", "--policy", str(POLICY), "--agent", agent,
            "--audit", str(hook_audit), "--no-dns", *RESOLVE_ARGS]
    if workflow:
        args += ["--workflow", workflow]
    out = run_conductor(*args, stdin=json.dumps(hook_input))
    assert out.returncode == 0, out.stderr
    [hook_record] = records(hook_audit)

    lib_audit = tmp_path / "lib.db"
    gate = conductor.Gate(policy=POLICY, agent=agent, audit=lib_audit, workflow=workflow,
                          session=session, resolve=RESOLVE, no_dns=True)
    d = gate.decide(tool, arguments)
    [lib_record] = records(lib_audit)
    assert lib_record["seq"] == d.audit_id
    assert (hook_record["event"], lib_record["event"]) == ("hook", "library")
    strip = lambda r: {k: v for k, v in r.items() if k not in PER_RECORD}  # noqa: E731
    assert strip(lib_record) == strip(hook_record)
    answer = json.loads(out.stdout)["hookSpecificOutput"]["permissionDecision"]
    assert answer == {"allow": "allow", "deny": "deny", "approve": "ask"}[d.effect]
