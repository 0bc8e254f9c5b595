"""The OpenAI Agents SDK (`openai-agents` from PyPI): gated `function_tool`s, invoked
through `on_invoke_tool` as the SDK's runner calls them (no model)."""

from __future__ import annotations

import asyncio
import json

import pytest
from agents import FunctionTool, function_tool
from agents.tool_context import ToolContext

import conductor
from conductor.adapters.openai_agents import gated_function_tool
from conftest import records


def invoke(tool: FunctionTool, arguments: str):
    ctx = ToolContext(context=None, tool_name=tool.name, tool_call_id="call_1", tool_arguments=arguments)
    return asyncio.run(tool.on_invoke_tool(ctx, arguments))


def make_fetch(calls: list) -> FunctionTool:
    @function_tool
    def fetch(url: str) -> str:
        """Fetch a web page."""
        calls.append(url)
        return f"<html>{url}</html>"

    return fetch


def test_allowed_call_runs(make_gate, audit):
    calls: list = []
    fetch = gated_function_tool(make_gate("research-bot"), make_fetch(calls), "fetch.fetch")
    assert isinstance(fetch, FunctionTool)
    out = invoke(fetch, json.dumps({"url": "https://en.wikipedia.org/wiki/OpenAI"}))
    assert "wikipedia" in str(out)
    assert calls == ["https://en.wikipedia.org/wiki/OpenAI"]
    [r] = records(audit)
    assert (r["tool"], r["decision"], r["server"]) == ("fetch.fetch", "allow", "fetch")


def test_schema_is_unchanged(make_gate):
    original = make_fetch([])
    gated = gated_function_tool(make_gate("research-bot"), original, "fetch.fetch")
    assert gated.name == original.name
    assert gated.params_json_schema == original.params_json_schema
    assert original.on_invoke_tool is not gated.on_invoke_tool


def test_denied_call_raises_and_does_not_run(make_gate):
    calls: list = []
    fetch = gated_function_tool(make_gate("research-bot"), make_fetch(calls), "fetch.fetch")
    with pytest.raises(conductor.Denied) as e:
        invoke(fetch, '{"url": "http://2852039166/latest/meta-data/"}')
    assert calls == []
    assert "destinations.blocked.cloud-metadata" in {r.rule for r in e.value.reasons}


def test_denied_call_as_message_for_the_model(make_gate):
    calls: list = []
    fetch = gated_function_tool(make_gate("research-bot"), make_fetch(calls), "fetch.fetch", on_deny="message")
    out = invoke(fetch, '{"url": "https://build.internal/artifacts/"}')
    assert out.startswith("conductor denied `fetch.fetch`")
    assert calls == []


def test_duplicate_member_is_refused(make_gate, audit):
    # json.loads keeps the last `url`, a first-wins reader the first: refused, not guessed.
    # (Parser differential class: https://bishopfox.com/blog/json-interoperability-vulnerabilities)
    calls: list = []
    fetch = gated_function_tool(make_gate("research-bot"), make_fetch(calls), "fetch.fetch")
    with pytest.raises(conductor.Denied) as e:
        invoke(fetch, '{"url": "https://en.wikipedia.org/", "url": "http://169.254.169.254/"}')
    assert [r.check for r in e.value.reasons] == ["input"]
    assert "169.254" not in str(e.value)
    assert calls == []
    assert records(audit)[-1]["decision"] == "deny"


@pytest.mark.parametrize("text", ['{"url": NaN}', '{"url": ', "[1, 2]", '{"n": 1e400}', '{"s": "\\ud800"}'])
def test_unreadable_arguments_are_refused(make_gate, text):
    calls: list = []
    fetch = gated_function_tool(make_gate("research-bot"), make_fetch(calls), "fetch.fetch")
    with pytest.raises(conductor.Denied) as e:
        invoke(fetch, text)
    assert "input" in [r.check for r in e.value.reasons]
    assert calls == []


def test_approve_raises_approval_required(make_gate):
    @function_tool
    def merge_pull_request(repo: str, pull_number: int) -> str:
        """Merge."""
        raise AssertionError("must not run")

    gated = gated_function_tool(make_gate("deploy-bot"), merge_pull_request, "github.merge_pull_request")
    with pytest.raises(conductor.ApprovalRequired):
        invoke(gated, '{"repo": "acme/widgets", "pull_number": 42}')


def test_result_labels_and_flow(make_gate):
    gate = make_gate("research-bot")

    @function_tool
    def read_note(title: str) -> str:
        """Read a note."""
        return "card 4111 1111 1111 1111 on file"

    notes = gated_function_tool(gate, read_note, "notes.read")
    fetch = gated_function_tool(gate, make_fetch([]), "fetch.fetch")
    invoke(fetch, '{"url": "https://en.wikipedia.org/wiki/A"}')
    invoke(notes, '{"title": "billing"}')
    assert gate.labels() == ["personal"]
    with pytest.raises(conductor.Denied) as e:
        invoke(fetch, '{"url": "https://en.wikipedia.org/wiki/A"}')
    assert [r.check for r in e.value.reasons] == ["flow"]
