"""LangChain (``langchain-core``): gated tools.

    from langchain_core.tools import tool
    from conductor.adapters.langchain import gated_tool

    @tool
    def fetch(url: str) -> str:
        "Fetch a page."
        ...

    fetch = gated_tool(gate, fetch, "fetch.fetch")
    fetch.invoke({"url": "http://2852039166/"})   # raises conductor.Denied

The gated tool is a copy of the original (same name, description and schema, so a
model sees the same tool) whose ``_run``/``_arun`` decide first. What is decided is
what the tool's code receives: the arguments after LangChain has parsed and validated
them against the tool's schema, not the raw input. ``invoke``, ``ainvoke``, ``run``
and ``arun`` all go through it; a refusal raises `conductor.Denied` (or
`ApprovalRequired`) before the tool runs, or with ``on_deny="message"`` returns the
refusal as the tool's output.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
from typing import Any, Optional

from langchain_core.tools import BaseTool
from langchain_core.tools.base import _get_runnable_config_param

from .._gate import Gate, refusal

__all__ = ["gated_tool"]

# Set while a gated `_arun` runs, so that the default `_arun` (which runs `_run` on a
# worker thread, in a copy of this context) does not decide the same call twice.
_deciding: contextvars.ContextVar[bool] = contextvars.ContextVar("conductor_gated", default=False)

# Keyword arguments LangChain itself passes to `_run`: not the tool's arguments.
_INJECTED = ("run_manager", "callbacks")


def gated_tool(
    gate: Gate,
    tool: BaseTool,
    name: Optional[str] = None,
    *,
    workflow: Optional[str] = None,
    label: bool = True,
    on_deny: str = "raise",
) -> BaseTool:
    """A copy of ``tool`` whose every call is decided first, as ``name``
    (``<server>.<tool>``; default ``langchain.<tool name>``).

    With ``label`` (the default) the tool's result raises the agent's session labels
    before it is returned.
    """
    if not isinstance(tool, BaseTool):
        raise TypeError(f"expected a langchain BaseTool, got `{type(tool).__name__}`")
    if on_deny not in ("raise", "message"):
        raise ValueError("`on_deny` must be \"raise\" or \"message\"")
    qualified = name or f"langchain.{tool.name}"
    base = type(tool)
    base_run = base._run
    base_arun = base._arun
    arg_names = list(tool.args)
    config_params = {p for p in (_get_runnable_config_param(base_run), "config") if p}

    def arguments_of(args: tuple, kwargs: dict) -> dict:
        out = {k: v for k, v in kwargs.items() if k not in _INJECTED and k not in config_params}
        if args:
            if len(args) <= len(arg_names) and not any(n in out for n in arg_names[: len(args)]):
                out.update(zip(arg_names, args))
            else:
                out["args"] = list(args)
        return out

    def refused(decision: Any) -> Any:
        denied = refusal(decision)
        if on_deny == "message":
            return str(denied)
        raise denied

    class GatedTool(base):  # type: ignore[misc, valid-type]
        @functools.wraps(base_run)
        def _run(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _deciding.get():
                return base_run(self, *args, **kwargs)
            decision = gate.decide(qualified, arguments_of(args, kwargs), workflow)
            if not decision.allowed:
                return refused(decision)
            result = base_run(self, *args, **kwargs)
            if label:
                gate.label_result(qualified, result, workflow)
            return result

        @functools.wraps(base_arun)
        async def _arun(self: Any, *args: Any, **kwargs: Any) -> Any:
            decision = await gate.adecide(qualified, arguments_of(args, kwargs), workflow)
            if not decision.allowed:
                return refused(decision)
            token = _deciding.set(True)
            try:
                result = await base_arun(self, *args, **kwargs)
            finally:
                _deciding.reset(token)
            if label:
                await asyncio.to_thread(gate.label_result, qualified, result, workflow)
            return result

    GatedTool.__name__ = GatedTool.__qualname__ = f"Gated{base.__name__}"
    gated = copy.copy(tool)
    # The same fields and state; only the methods that run the tool change.
    gated.__class__ = GatedTool
    return gated
