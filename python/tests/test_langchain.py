"""LangChain (`langchain-core` from PyPI): gated `@tool` and `BaseTool` tools, invoked
directly (no model)."""

from __future__ import annotations

import asyncio
from typing import Optional

import pytest
from langchain_core.callbacks import CallbackManagerForToolRun
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, tool

import conductor
from conductor.adapters.langchain import gated_tool
from conftest import records


def make_fetch(calls: list):
    @tool
    def fetch(url: str) -> str:
        """Fetch a web page."""
        calls.append(url)
        return f"<html>{url}</html>"

    return fetch


def test_allowed_invoke_runs(make_gate, audit):
    calls: list = []
    fetch = gated_tool(make_gate("research-bot"), make_fetch(calls), "fetch.fetch")
    out = fetch.invoke({"url": "https://en.wikipedia.org/wiki/LangChain"})
    assert out == "<html>https://en.wikipedia.org/wiki/LangChain</html>"
    assert calls == ["https://en.wikipedia.org/wiki/LangChain"]
    [r] = records(audit)
    assert (r["tool"], r["decision"]) == ("fetch.fetch", "allow")
    assert r["arguments"] == {"url": "https://en.wikipedia.org/wiki/LangChain"}


def test_model_sees_the_same_tool(make_gate):
    original = make_fetch([])
    gated = gated_tool(make_gate("research-bot"), original, "fetch.fetch")
    assert isinstance(gated, BaseTool)
    assert gated.name == original.name
    assert gated.description == original.description
    assert gated.args == original.args
    assert gated.tool_call_schema.model_json_schema() == original.tool_call_schema.model_json_schema()


def test_denied_invoke_raises_and_does_not_run(make_gate):
    calls: list = []
    fetch = gated_tool(make_gate("research-bot"), make_fetch(calls), "fetch.fetch")
    with pytest.raises(conductor.Denied) as e:
        fetch.invoke({"url": "http://2852039166/latest/meta-data/"})
    assert calls == []
    assert "destinations.blocked.cloud-metadata" in {r.rule for r in e.value.reasons}


def test_denied_tool_call_as_message(make_gate):
    # A model's tool call: with on_deny="message" the model reads the refusal.
    calls: list = []
    fetch = gated_tool(make_gate("research-bot"), make_fetch(calls), "fetch.fetch", on_deny="message")
    msg = fetch.invoke(
        {"type": "tool_call", "id": "call_1", "name": "fetch", "args": {"url": "http://[::ffff:127.0.0.1]:8080/admin"}}
    )
    assert isinstance(msg, ToolMessage)
    assert msg.content.startswith("conductor denied `fetch.fetch`")
    assert calls == []


def test_validated_arguments_are_decided(make_gate, audit):
    # The gate decides what the function receives: LangChain has already coerced "42".
    @tool
    def merge(repo: str, pull_number: int) -> str:
        """Merge a pull request."""
        raise AssertionError("must not run")

    gated = gated_tool(make_gate("deploy-bot"), merge, "github.merge_pull_request")
    with pytest.raises(conductor.ApprovalRequired):
        gated.invoke({"repo": "acme/widgets", "pull_number": "42"})
    assert records(audit)[-1]["arguments"] == {"repo": "acme/widgets", "pull_number": 42}


class NotesRead(BaseTool):
    name: str = "notes_read"
    description: str = "Read a note."

    def _run(self, title: str, run_manager: Optional[CallbackManagerForToolRun] = None) -> str:
        assert run_manager is not None  # LangChain still hands the tool its run manager
        return "Reported by jane.doe@example.com"


def test_basetool_subclass_and_flow(make_gate):
    gate = make_gate("research-bot")
    notes = gated_tool(gate, NotesRead(), "notes.read")
    fetch = gated_tool(gate, make_fetch([]), "fetch.fetch")
    assert isinstance(notes, NotesRead)
    assert fetch.invoke({"url": "https://en.wikipedia.org/wiki/A"})
    assert notes.invoke({"title": "bug"}) == "Reported by jane.doe@example.com"
    assert gate.labels() == ["personal"]
    with pytest.raises(conductor.Denied) as e:
        fetch.invoke({"url": "https://en.wikipedia.org/wiki/A"})
    assert [r.check for r in e.value.reasons] == ["flow"]


def test_ainvoke_is_decided_once(make_gate, audit):
    # A sync-only tool's ainvoke runs _run on a worker thread: still one decision.
    calls: list = []
    fetch = gated_tool(make_gate("research-bot"), make_fetch(calls), "fetch.fetch")
    out = asyncio.run(fetch.ainvoke({"url": "https://en.wikipedia.org/wiki/Async"}))
    assert out.endswith("</html>")
    assert len(records(audit)) == 1
    with pytest.raises(conductor.Denied):
        asyncio.run(fetch.ainvoke({"url": "http://169.254.169.254/"}))
    assert calls == ["https://en.wikipedia.org/wiki/Async"]


def test_async_tool(make_gate, audit):
    @tool
    async def search(q: str) -> str:
        """Search the web."""
        return f"results for {q}"

    gated = gated_tool(make_gate("intern-bot"), search, "search.web")
    assert asyncio.run(gated.ainvoke({"q": "mcp"})) == "results for mcp"
    denied = gated_tool(make_gate("intern-bot"), search, "search.reindex")
    with pytest.raises(conductor.Denied):
        asyncio.run(denied.ainvoke({"q": "mcp"}))
    assert [r["decision"] for r in records(audit)] == ["allow", "deny"]
