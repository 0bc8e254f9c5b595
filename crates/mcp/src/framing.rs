//! Newline-delimited JSON-RPC framing: bounded line reads and message classification.
//!
//! INVARIANT: a line longer than the limit is never held in memory whole: its bytes
//! are consumed and dropped as they arrive, and only its length is reported.

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line read from a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its `\n` (a `\r` before it is kept, so that the line
    /// is relayed byte for byte).
    Complete(Vec<u8>),
    /// A line longer than the limit; its bytes were dropped. Carries its length and
    /// its first [`HEAD_BYTES`] bytes (enough to find an `id` near the start).
    TooLong {
        /// The line's length in bytes.
        len: usize,
        /// Its first bytes.
        head: Vec<u8>,
    },
    /// End of input.
    Eof,
}

/// How many bytes of an overlong line are kept (see [`Line::TooLong`]).
pub const HEAD_BYTES: usize = 512;

/// Read one line of at most `max` bytes (without the `\n`). A final line without a
/// `\n` counts as a line.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Line> {
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            if total == 0 {
                return Ok(Line::Eof);
            }
            return Ok(if too_long {
                Line::TooLong {
                    len: total,
                    head: buf,
                }
            } else {
                Line::Complete(buf)
            });
        }
        let newline = memchr_newline(available);
        let chunk_len = newline.unwrap_or(available.len());
        let chunk = available.get(..chunk_len).unwrap_or_default();
        total = total.saturating_add(chunk_len);
        if total > max {
            if !too_long {
                too_long = true;
                buf.truncate(HEAD_BYTES);
            }
            let room = HEAD_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        } else {
            buf.extend_from_slice(chunk);
        }
        let used = newline.map_or(available.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(if too_long {
                Line::TooLong {
                    len: total,
                    head: buf,
                }
            } else {
                Line::Complete(buf)
            });
        }
    }
}

/// The `id` of a message from its first bytes, when a top-level `"id"` member comes
/// before anything nested (how JSON-RPC libraries write responses:
/// `{"jsonrpc":"2.0","id":7,"result":…}`). Best effort: `None` when unsure.
pub fn id_from_head(head: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(head).ok().or_else(|| {
        // The cut may split a UTF-8 sequence.
        let e = std::str::from_utf8(head).err()?;
        std::str::from_utf8(head.get(..e.valid_up_to())?).ok()
    })?;
    let at = text.find("\"id\"")?;
    // Only a top-level member: nothing nested opened before it.
    let before = text.get(..at)?;
    if before.matches(['{', '[']).count() != 1 || !before.trim_start().starts_with('{') {
        return None;
    }
    let rest = text
        .get(at + 4..)?
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = rest.find([',', '}'])?;
    let v: Value = serde_json::from_str(rest.get(..end)?.trim()).ok()?;
    (v.is_number() || v.is_string()).then_some(v)
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// JSON-RPC error codes (one table for every transport: `conductor-types`).
pub use conductor_types::failure::code;

/// What a parsed line is.
#[derive(Debug)]
pub enum Message {
    /// A request (has `method` and `id`).
    Request {
        /// The request id.
        id: Value,
        /// The method.
        method: String,
        /// The whole message.
        value: Value,
    },
    /// A notification (has `method`, no `id`).
    Notification {
        /// The method.
        method: String,
        /// The whole message.
        value: Value,
    },
    /// A response (has `id` and `result` or `error`, no `method`).
    Response {
        /// The id of the request it answers.
        id: Value,
        /// The whole message.
        value: Value,
    },
}

/// Why a line is not a message.
#[derive(Debug)]
pub enum Invalid {
    /// Not JSON (→ -32700).
    Parse(String),
    /// JSON, but not a JSON-RPC 2.0 message (→ -32600); carries the id when one
    /// could be read.
    Shape {
        /// The message's id, or null.
        id: Value,
        /// What is wrong.
        message: String,
    },
}

/// Parse and classify one line.
pub fn classify(line: &[u8]) -> Result<Message, Invalid> {
    // INVARIANT: duplicate or case-folding-equal member names anywhere in a message
    // make it ambiguous to some reader: refused (see `strict`).
    let value: Value = match crate::strict::parse(line) {
        Ok(v) => v,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            // Valid JSON, ambiguous members: answer with the id a lenient reader sees.
            let id = serde_json::from_slice::<Value>(line)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .filter(|i| i.is_string() || i.is_number())
                .unwrap_or(Value::Null);
            return Err(Invalid::Shape {
                id,
                message: format!("ambiguous message: {e}"),
            });
        }
        Err(e) => return Err(Invalid::Parse(e.to_string())),
    };
    classify_parsed(value, has_bare_cr(line))
}

/// [`classify`] of a message already parsed (by the strict reader, or built by us):
/// the same shape checks, without serialising it to parse it again. A parsed value has
/// no bare carriage return between tokens and no duplicate member names left.
pub fn classify_value(value: Value) -> Result<Message, Invalid> {
    classify_parsed(value, false)
}

fn classify_parsed(value: Value, bare_cr: bool) -> Result<Message, Invalid> {
    let Value::Object(obj) = &value else {
        let message = if value.is_array() {
            "json-rpc batches are not supported; send one message per line".to_string()
        } else {
            "a json-rpc message is a json object".to_string()
        };
        return Err(Invalid::Shape {
            id: Value::Null,
            message,
        });
    };
    let id = obj.get("id").cloned();
    let id_valid = id
        .as_ref()
        .is_none_or(|i| i.is_string() || i.is_number() || i.is_null());
    let shown_id = id
        .clone()
        .filter(|i| i.is_string() || i.is_number())
        .unwrap_or(Value::Null);
    let shape = |message: &str| Invalid::Shape {
        id: shown_id.clone(),
        message: message.to_string(),
    };
    // Some servers match member names without regard to case (Go's encoding/json):
    // `"METHOD"` next to `"method"` would mean one thing here and another there.
    if let Some(k) = ambiguous_member(
        obj,
        &["jsonrpc", "id", "method", "params", "result", "error"],
    ) {
        return Err(shape(&format!(
            "member `{k}` differs from a json-rpc member name only in case"
        )));
    }
    // The same inside `params`, for the members the gate reads there: a lone
    // `argumentſ` or `Arguments` is no argument to the gate but is `arguments` to Go.
    if let Some(Value::Object(params)) = obj.get("params")
        && let Some(k) = ambiguous_member(params, PARAMS_THE_GATE_READS)
    {
        return Err(shape(&format!(
            "params member `{k}` differs from `{}` only in case",
            PARAMS_THE_GATE_READS
                .iter()
                .find(|n| conductor_types::fold_eq(k, n))
                .unwrap_or(&"a member the gate reads")
        )));
    }
    // INVARIANT: a forwarded line is ONE message for every peer. JSON allows a bare
    // `\r` between tokens, but readers with universal newlines (the Python SDK's stdio
    // server, Node `readline`, Java `readLine`) split the line there, so a harmless
    // message could carry a second, ungated one (`…"params":{"x":\r{…tools/call…}\r}}`).
    // A `\r` cannot occur inside a JSON string, so only one final `\r` (CRLF) is legal.
    if bare_cr {
        return Err(shape(
            "a bare carriage return inside a message (peers would split the line there)",
        ));
    }
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(shape("`jsonrpc` must be \"2.0\""));
    }
    if !id_valid {
        return Err(shape("`id` must be a string or a number"));
    }
    // INVARIANT: a message is a request (or notification) or a response, never both: a
    // peer that looks at `result`/`error` first would take a gated `tools/call` for an
    // answer, or an ungated answer for a call (red-team review 2026-12-04).
    if obj.contains_key("method") && (obj.contains_key("result") || obj.contains_key("error")) {
        return Err(shape(
            "a message with `method` and `result` or `error` is both a request and a response (peers would disagree which)",
        ));
    }
    match obj.get("method") {
        Some(Value::String(m)) => {
            let method = m.clone();
            match id {
                Some(id) => Ok(Message::Request { id, method, value }),
                None => Ok(Message::Notification { method, value }),
            }
        }
        Some(_) => Err(shape("`method` must be a string")),
        None => {
            let has_result = obj.contains_key("result");
            let has_error = obj.contains_key("error");
            match (id, has_result ^ has_error) {
                (Some(id), true) => Ok(Message::Response { id, value }),
                _ => Err(shape(
                    "not a request, notification or response: needs `method`, or `id` with exactly one of `result` and `error`",
                )),
            }
        }
    }
}

/// The `params` members the gate reads to decide a request (the tool or prompt name,
/// the arguments, a resource URI, a completion's reference and argument, `_meta`).
pub const PARAMS_THE_GATE_READS: &[&str] = &[
    "name",
    "arguments",
    "uri",
    "uris",
    "ref",
    "argument",
    "_meta",
];

/// A member whose name equals one of `names` under case folding (ASCII case, and the
/// Unicode folding of Go's `encoding/json`: `paramſ`, `K`) but not exactly.
pub fn ambiguous_member<'a>(
    obj: &'a serde_json::Map<String, Value>,
    names: &[&str],
) -> Option<&'a str> {
    obj.keys()
        .find(|k| {
            names
                .iter()
                .any(|n| k.as_str() != *n && conductor_types::fold_eq(k, n))
        })
        .map(String::as_str)
}

/// Whether `line` holds a `\r` anywhere but as its last byte (a CRLF line ending).
pub fn has_bare_cr(line: &[u8]) -> bool {
    let body = line.strip_suffix(b"\r").unwrap_or(line);
    body.contains(&b'\r')
}

/// A JSON-RPC error response line (without the newline).
pub fn error_line(id: &Value, code: i64, message: &str, data: Option<Value>) -> Vec<u8> {
    let mut error = serde_json::json!({"code": code, "message": message});
    if let (Some(d), Some(obj)) = (data, error.as_object_mut()) {
        obj.insert("data".into(), d);
    }
    let v = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": error});
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A JSON-RPC result response line (without the newline).
pub fn result_line(id: &Value, result: Value) -> Vec<u8> {
    let v = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The key under which a request id is remembered. Numbers are keyed by value (as
/// an f64, the way JavaScript and most servers read them back), so a server that
/// echoes `2.0` as `2` or `1e0` as `1` is still matched; strings by their text, so
/// `1` and `"1"` differ.
pub fn id_key(id: &Value) -> String {
    match id {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // -0.0 and 0.0 are the same id.
            let f = if f == 0.0 { 0.0 } else { f };
            format!("n:{:016x}", f.to_bits())
        }
        Value::String(s) => format!("s:{s}"),
        other => format!("j:{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_cr_cannot_smuggle_a_second_message() {
        // Found by probing the release binary with mcp-server-fetch (Python SDK stdio
        // server, universal newlines): the inner call was executed, ungated.
        let smuggled = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\r{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"fetch\",\"arguments\":{\"url\":\"http://169.254.169.254/\"}}}\r}}";
        match classify(smuggled) {
            Err(Invalid::Shape { id, message }) => {
                assert_eq!(id, Value::from(1));
                assert!(message.contains("carriage return"), "{message}");
            }
            other => panic!("smuggling line accepted: {other:?}"),
        }
        // A CRLF line ending stays legal.
        assert!(classify(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r").is_ok());
        assert!(has_bare_cr(b"{}\r\r"));
        assert!(!has_bare_cr(b"{}"));
        assert!(!has_bare_cr(b"{\"a\":\"\\r\"}"));
    }

    #[test]
    fn a_call_that_is_also_an_answer_is_refused() {
        // Regression (red-team review 2026-12-04, F6): `wrap` forwarded a `tools/call`
        // that also carried `result`; a peer that checks `result` first reads an answer.
        for both in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","error":{"code":1,"message":"m"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","result":{}}"#,
        ] {
            match classify(both.as_bytes()) {
                Err(Invalid::Shape { message, .. }) => {
                    assert!(
                        message.contains("both a request and a response"),
                        "{message}"
                    );
                }
                other => panic!("{both} accepted: {other:?}"),
            }
        }
        assert!(classify(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).is_ok());
    }

    async fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = tokio::io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut r, max).await.unwrap();
            if l == Line::Eof {
                return out;
            }
            out.push(l);
        }
    }

    #[tokio::test]
    async fn lines_are_split_and_overlong_ones_dropped() {
        let got = lines(b"ab\r\n\nabcdefgh\nxyz", 4).await;
        assert_eq!(
            got,
            vec![
                Line::Complete(b"ab\r".to_vec()),
                Line::Complete(Vec::new()),
                Line::TooLong {
                    len: 8,
                    head: b"abcdefgh".to_vec()
                },
                Line::Complete(b"xyz".to_vec()),
            ]
        );
    }

    #[test]
    fn ids_are_found_at_the_head_of_a_cut_message() {
        let f = |s: &str| id_from_head(s.as_bytes());
        assert_eq!(
            f(r#"{"jsonrpc":"2.0","id":7,"result":{"x":"aaaa"#),
            Some(7.into())
        );
        assert_eq!(f(r#"{ "id" : "a-1" , "result":"#), Some("a-1".into()));
        assert_eq!(f(r#"{"result":{"id":3,"x":"aaa"#), None);
        assert_eq!(f(r#"{"jsonrpc":"2.0","result":"aaa"#), None);
    }

    #[test]
    fn numeric_ids_match_by_value() {
        let k = |t: &str| id_key(&serde_json::from_str(t).unwrap());
        assert_eq!(k("2.0"), k("2"));
        assert_eq!(k("1e0"), k("1"));
        assert_eq!(k("-0"), k("0"));
        assert_ne!(k("1"), k("\"1\""));
        assert_ne!(k("1"), k("2"));
    }

    #[test]
    fn classification() {
        assert!(matches!(classify(b"{"), Err(Invalid::Parse(_))));
        assert!(matches!(
            classify(b"[1]"),
            Err(Invalid::Shape {
                id: Value::Null,
                ..
            })
        ));
        assert!(matches!(
            classify(br#"{"id":7,"method":"x"}"#),
            Err(Invalid::Shape { id, .. }) if id == 7
        ));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#),
            Err(Invalid::Shape {
                id: Value::Null,
                ..
            })
        ));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#),
            Ok(Message::Request { .. })
        ));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","method":"x"}"#),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Ok(Message::Response { .. })
        ));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#),
            Err(Invalid::Shape { .. })
        ));
        // Go's encoding/json would read the second `method`.
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","id":1,"method":"ping","METHOD":"tools/call"}"#),
            Err(Invalid::Shape { .. })
        ));
    }
}
