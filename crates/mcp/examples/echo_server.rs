//! A minimal stdio MCP server for the relay benchmark: one tool, `echo`, which returns
//! its arguments as text. Answers `initialize`, `tools/list`, `tools/call`; anything
//! else with an id gets an empty result.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark helper")]

use std::io::{BufRead, BufReader, BufWriter, Write};

use serde_json::{Value, json};

fn main() {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut input = BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (Some(id), Some(method)) = (msg.get("id"), msg.get("method").and_then(Value::as_str))
        else {
            continue;
        };
        let result = match method {
            "initialize" => json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                                   "serverInfo": {"name": "echo", "version": "0"}}),
            "tools/list" => json!({"tools": [{"name": "echo", "description": "Echo the arguments.",
                "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]}),
            "tools/call" => {
                let args = msg
                    .pointer("/params/arguments")
                    .cloned()
                    .unwrap_or(json!({}));
                json!({"content": [{"type": "text", "text": args.to_string()}]})
            }
            _ => json!({}),
        };
        serde_json::to_writer(
            &mut out,
            &json!({"jsonrpc": "2.0", "id": id, "result": result}),
        )
        .unwrap();
        out.write_all(b"\n").unwrap();
        // Flush only when no further request is already buffered (pipelining).
        if input.buffer().is_empty() {
            out.flush().unwrap();
        }
    }
    out.flush().unwrap();
}
