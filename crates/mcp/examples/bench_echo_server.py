#!/usr/bin/env python3
"""A minimal stdio MCP server for the `conductor wrap` benchmark, standard library only.

The Python counterpart of `bench_echo_server.rs`: one tool, `echo`, that returns its
`text` argument. It reads and writes the way a plain Python server does: a line at a
time from `sys.stdin` (a buffered text stream), `json.loads`, and
`print(json.dumps(reply), flush=True)` — which on a pipe is TWO `write(2)` calls per
answer, the text and then the newline (seen with `strace -e write`, python 3.11: the
relay reads every answer in two pieces).

`--write one` writes the text and the newline in one `os.write` instead, to measure what
the split line costs.
"""

import json
import os
import sys


def answer(message):
    if "id" not in message or not isinstance(message.get("method"), str):
        return None
    mid = message["id"]
    method = message["method"]
    params = message.get("params") or {}
    if method in ("initialize", "server/discover"):
        result = {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench-echo-py", "version": "0.1.0"},
        }
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {
            "tools": [
                {
                    "name": "echo",
                    "description": "Return the text it is given.",
                    "inputSchema": {
                        "type": "object",
                        "properties": {"text": {"type": "string"}},
                        "required": ["text"],
                    },
                }
            ]
        }
    elif method == "tools/call":
        text = (params.get("arguments") or {}).get("text", "")
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    else:
        return {
            "jsonrpc": "2.0",
            "id": mid,
            "error": {"code": -32601, "message": "method not found"},
        }
    return {"jsonrpc": "2.0", "id": mid, "result": result}


def main():
    one_write = "--write" in sys.argv and sys.argv[sys.argv.index("--write") + 1] == "one"
    out_fd = sys.stdout.fileno()
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            reply = {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": -32700, "message": "parse error"},
            }
        else:
            reply = answer(message)
        if reply is None:
            continue
        text = json.dumps(reply, separators=(",", ":"))
        if one_write:
            os.write(out_fd, (text + "\n").encode())
        else:
            print(text, flush=True)


if __name__ == "__main__":
    main()
