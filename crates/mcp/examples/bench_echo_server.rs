//! A minimal stdio MCP server for the `conductor wrap` benchmark (see `bench_client.rs`
//! and `BENCHMARKS.md`): one tool, `echo`, that returns its `text` argument.
//!
//! It answers `initialize`, `server/discover`, `ping`, `tools/list` and `tools/call`,
//! ignores notifications, and flushes only when no more input is buffered, so a
//! pipelining client is not slowed down by one write per response.
//!
//! `--work-us N` makes each `tools/call` wait N µs before answering (a server that
//! does I/O, like every real tool); the default, 0, is the worst case for the gate.

use std::io::{self, BufRead, BufReader, BufWriter, Write};

use serde_json::{Value, json};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut work = std::time::Duration::ZERO;
    while let Some(a) = args.next() {
        if a == "--work-us" {
            let n: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            work = std::time::Duration::from_micros(n);
        }
    }
    let stdin = io::stdin();
    let mut input = BufReader::with_capacity(64 * 1024, stdin.lock());
    let stdout = io::stdout();
    let mut output = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            let error = json!({"jsonrpc": "2.0", "id": null,
                               "error": {"code": -32700, "message": "parse error"}});
            serde_json::to_writer(&mut output, &error)?;
            output.write_all(b"\n")?;
            output.flush()?;
            continue;
        };
        if !work.is_zero() && message.get("method").and_then(Value::as_str) == Some("tools/call") {
            std::thread::sleep(work);
        }
        if let Some(reply) = answer(&message) {
            serde_json::to_writer(&mut output, &reply)?;
            output.write_all(b"\n")?;
        }
        if input.buffer().is_empty() {
            output.flush()?;
        }
    }
    output.flush()
}

fn answer(message: &Value) -> Option<Value> {
    let id = message.get("id")?.clone();
    let method = message.get("method").and_then(Value::as_str)?;
    let params = message.get("params");
    let result = match method {
        "initialize" | "server/discover" => {
            let version = params
                .and_then(|p| p.get("protocolVersion"))
                .and_then(Value::as_str)
                .unwrap_or("2025-11-25");
            json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench-echo", "version": "0.1.0"}
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({"tools": [{
            "name": "echo",
            "description": "Return the text it is given.",
            "inputSchema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"]
            }
        }]}),
        "tools/call" => {
            let text = params
                .and_then(|p| p.get("arguments"))
                .and_then(|a| a.get("text"))
                .and_then(Value::as_str)
                .unwrap_or("");
            json!({"content": [{"type": "text", "text": text}], "isError": false})
        }
        _ => {
            return Some(json!({"jsonrpc": "2.0", "id": id,
                               "error": {"code": -32601, "message": "method not found"}}));
        }
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}
