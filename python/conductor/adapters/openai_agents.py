"""The OpenAI Agents SDK (``openai-agents``): gated function tools.

    from agents import function_tool
    from conductor.adapters.openai_agents import gated_function_tool

    @function_tool
    def fetch(url: str) -> str: ...

    agent = Agent(name="research", tools=[gated_function_tool(gate, fetch, "fetch.fetch")])

The SDK calls a function tool as ``on_invoke_tool(ctx, arguments_json)``. The gated
tool parses that JSON itself, strictly (a duplicate member name or ``NaN`` is a deny
with check ``input``), decides the values the SDK's own ``json.loads`` will hand the
function, and only then passes the same text to the original ``on_invoke_tool``. The
result raises the agent's session labels before the model sees it.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any, Optional

from agents import FunctionTool

from .._gate import Gate, refusal
from ._common import strict_json

__all__ = ["gated_function_tool"]


def gated_function_tool(
    gate: Gate,
    tool: FunctionTool,
    name: Optional[str] = None,
    *,
    workflow: Optional[str] = None,
    label: bool = True,
    on_deny: str = "raise",
) -> FunctionTool:
    """A copy of ``tool`` whose every invocation is decided first, as ``name``
    (``<server>.<tool>``; default ``agents.<tool name>``).

    ``on_deny``: ``"raise"`` (default) raises `conductor.Denied` /
    `conductor.ApprovalRequired` out of ``on_invoke_tool`` (the run stops);
    ``"message"`` returns the refusal as the tool's output, for the model to read.
    Either way the function does not run.
    """
    if not isinstance(tool, FunctionTool):
        raise TypeError(f"expected an agents FunctionTool, got `{type(tool).__name__}`")
    if on_deny not in ("raise", "message"):
        raise ValueError("`on_deny` must be \"raise\" or \"message\"")
    qualified = name or f"agents.{tool.name}"
    original = tool.on_invoke_tool

    async def on_invoke_tool(ctx: Any, input: str) -> Any:
        arguments, problem = strict_json(input)
        decision = await gate.adecide(qualified, arguments, workflow, problem=problem)
        if not decision.allowed:
            denied = refusal(decision)
            if on_deny == "message":
                return str(denied)
            raise denied
        # INVARIANT: the tool gets the very text whose values were decided.
        result = await original(ctx, input)
        if label:
            await asyncio.to_thread(gate.label_result, qualified, result, workflow)
        return result

    gated = copy.copy(tool)
    gated.on_invoke_tool = on_invoke_tool
    return gated
