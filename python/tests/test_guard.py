"""`@gate.guard`: a denied function-tool call raises `Denied` and the function does not run."""

from __future__ import annotations

import asyncio

import pytest

import conductor
from conftest import records


def test_allowed_call_runs_and_is_recorded(make_gate, audit):
    gate = make_gate("research-bot")
    ran = []

    @gate.guard("fetch.fetch")
    def fetch(url: str, timeout: int = 10) -> str:
        ran.append(url)
        return "<html>ok</html>"

    assert fetch("https://en.wikipedia.org/wiki/MCP") == "<html>ok</html>"
    assert ran == ["https://en.wikipedia.org/wiki/MCP"]
    [r] = records(audit)
    # Defaults are decided too: they are what the function receives.
    assert r["arguments"] == {"url": "https://en.wikipedia.org/wiki/MCP", "timeout": 10}
    assert fetch.__name__ == "fetch"


def test_denied_call_raises_and_does_not_run(make_gate):
    gate = make_gate("research-bot")
    ran = []

    @gate.guard("fetch.fetch")
    def fetch(url: str) -> str:
        ran.append(url)
        return "secret metadata"

    with pytest.raises(conductor.Denied) as e:
        fetch(url="http://2852039166/latest/meta-data/")
    assert ran == []
    assert not isinstance(e.value, conductor.ApprovalRequired)
    assert e.value.decision.effect == "deny"
    assert {r.rule for r in e.value.reasons} >= {"destinations.blocked.cloud-metadata"}
    assert "cloud metadata" in str(e.value)


def test_approve_raises_approval_required(make_gate):
    gate = make_gate("deploy-bot")

    @gate.guard("github.merge_pull_request")
    def merge(repo: str, pull_number: int) -> str:
        raise AssertionError("must not run")

    with pytest.raises(conductor.ApprovalRequired) as e:
        merge("acme/widgets", 42)
    assert e.value.decision.effect == "approve"
    assert isinstance(e.value, conductor.Denied)  # code that only knows Denied refuses it too


def test_kwargs_are_decided(make_gate):
    # A URL hidden in **kwargs is a destination like any other (destinations.scan).
    gate = make_gate("research-bot")

    @gate.guard("search.web")
    def search(q: str, **options):
        return "results"

    assert search("rust") == "results"
    with pytest.raises(conductor.Denied):
        search("rust", callback="http://169.254.169.254/latest/meta-data/")


def test_methods_are_guarded_without_self(make_gate, audit):
    gate = make_gate("research-bot")

    class Tools:
        @gate.guard("search.web")
        def search(self, q: str) -> str:
            return f"results for {q}"

    assert Tools().search("mcp") == "results for mcp"
    assert records(audit)[-1]["arguments"] == {"q": "mcp"}


def test_result_raises_labels_and_flow_denies_the_next_call(make_gate):
    gate = make_gate("research-bot")

    @gate.guard("notes.read")
    def read_note(title: str) -> str:
        return "Call jane.doe@example.com about the renewal"

    @gate.guard("fetch.fetch")
    def fetch(url: str) -> str:
        return "page"

    assert fetch("https://en.wikipedia.org/wiki/A") == "page"
    read_note("renewal")
    assert gate.labels() == ["personal"]
    with pytest.raises(conductor.Denied) as e:
        fetch("https://en.wikipedia.org/wiki/A")
    assert [r.check for r in e.value.reasons] == ["flow"]


def test_non_json_argument_is_refused(make_gate):
    gate = make_gate("research-bot")

    @gate.guard("search.web")
    def search(q) -> str:
        raise AssertionError("must not run")

    with pytest.raises(conductor.Denied) as e:
        search(object())
    assert [r.check for r in e.value.reasons] == ["input"]


def test_async_function(make_gate):
    gate = make_gate("research-bot")

    @gate.guard("fetch.fetch")
    async def fetch(url: str) -> str:
        return "page"

    assert asyncio.run(fetch("https://en.wikipedia.org/wiki/A")) == "page"
    with pytest.raises(conductor.Denied):
        asyncio.run(fetch("http://[::ffff:127.0.0.1]:8080/admin"))
