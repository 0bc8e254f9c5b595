"""Adapters that gate the tools of agent frameworks.

- `conductor.adapters.langchain.gated_tool` — a LangChain ``BaseTool`` (``@tool``,
  ``StructuredTool``, ``Tool`` or a subclass) whose ``invoke``/``ainvoke`` is decided
  first (needs ``langchain-core``);
- `conductor.adapters.openai_agents.gated_function_tool` — an OpenAI Agents SDK
  ``FunctionTool`` whose ``on_invoke_tool`` is decided first (needs ``openai-agents``).

Each module imports its framework only when it is imported itself.
"""
