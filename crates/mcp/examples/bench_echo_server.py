#!/usr/bin/env python3
"""A minimal stdio MCP server for the `conductor wrap` benchmark, standard library only.

The Python counterpart of `bench_echo_server.rs`: one tool, `echo`, that returns its
`text` argument. It reads and writes the way a plain Python server does: a line at a
time from `sys.stdin` (a buffered text stream), `json.loads`, and
`print(json.dumps(reply), flush=True)` (one `write(2)` per answer: print puts the text
and the newline in the stream's buffer, the flush writes both).

`--write two` writes the text and the newline in two `write(2)` calls (what an
unbuffered stream, `python3 -u` or `sys.stdout.buffer.raw`, does with print), to measure
what a line split across two writes costs the relay.
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
    two_writes = "--write" in sys.argv and sys.argv[sys.argv.index("--write") + 1] == "two"
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
        if two_writes:
            os.write(out_fd, text.encode())
            os.write(out_fd, b"\n")
        else:
            print(text, flush=True)


if __name__ == "__main__":
    main()
