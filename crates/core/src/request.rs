//! The request the core decides on, read from JSON with errors that say where.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The request the core decides on (DESIGN.md, "The request the core decides on").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The calling agent's id (`agents.<id>` in the policy).
    pub agent: String,
    /// Qualified tool name `<server>.<tool>`.
    pub tool: String,
    /// The call's arguments: a JSON object (anything else is denied, check `input`).
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
    /// The workflow the call is made in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The session's id, if the transport has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Labels of the data the session has already received (for the flow check).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_labels: Vec<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A request that could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid request: {message}")]
pub struct RequestError {
    /// Lowercase, names the field and the place (line/column) where possible.
    pub message: String,
    /// 1-based line of the problem (0 when unknown).
    pub line: usize,
    /// 1-based column of the problem (0 when unknown).
    pub column: usize,
}

/// Largest request accepted by [`Request::from_json`], in bytes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

impl Request {
    /// Parse one request from JSON text; the error names what was wrong and where.
    pub fn from_json(text: &str) -> Result<Request, RequestError> {
        if text.len() > MAX_REQUEST_BYTES {
            return Err(RequestError {
                message: format!(
                    "the request is {} bytes, more than the limit of {MAX_REQUEST_BYTES}",
                    text.len()
                ),
                line: 0,
                column: 0,
            });
        }
        // INVARIANT: a request another reader could read differently (a member twice,
        // or two names equal under case folding, at any depth) is refused: a script
        // that gates with `check` and forwards the same bytes to a first-wins reader
        // must not send what was not decided.
        if let Err(e) = conductor_types::strict::parse(text.as_bytes())
            && e.is_data()
        {
            return Err(RequestError {
                message: conductor_types::strict::position_only(&e),
                line: e.line(),
                column: e.column(),
            });
        }
        serde_json::from_str(text).map_err(|e| request_error(text, &e))
    }
}

fn request_error(text: &str, e: &serde_json::Error) -> RequestError {
    let mut message = e.to_string();
    if e.classify() == serde_json::error::Category::Data && !message.contains("field `") {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => {
                if let Some(field) = mistyped_field(&m) {
                    message = format!("field `{field}`: {message}");
                }
            }
            Ok(_) => {
                message = format!(
                    "a request is a json object with `agent`, `tool` and optional `arguments`, `workflow`, `session`, `session_labels` ({message})"
                );
            }
            Err(_) => {}
        }
    }
    // INVARIANT: a `RequestError` never holds a value from the request: serde's
    // message quotes the offending value, so it is scrubbed before it is kept.
    RequestError {
        message: scrub_request_message(&message),
        line: e.line(),
        column: e.column(),
    }
}

/// A request error message with every value from the request taken out: serde quotes
/// the offending value (`invalid type: string "AKIA…"`, `integer `4111…``) and unknown
/// keys, and a request may carry secrets anywhere.
///
/// INVARIANT: nothing quoted from the request reaches stderr except a key that looks
/// like a field name (lowercase letters and `_`, at most 32), so `colour` can still be
/// reported as a typo.
fn scrub_request_message(message: &str) -> String {
    const UNKNOWN_FIELD: &str = "unknown field `";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        // The earliest quoted value of any kind.
        let next = ["string \"", "integer `", "floating point `", UNKNOWN_FIELD]
            .into_iter()
            .filter_map(|open| rest.find(open).map(|i| (i, open)))
            .min_by_key(|(i, _)| *i);
        let Some((i, open)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(rest.get(..i).unwrap_or_default());
        let body = rest.get(i + open.len()..).unwrap_or_default();
        let end = if open == UNKNOWN_FIELD {
            // A key is quoted as is, backticks and all: it ends where serde's own
            // text after it begins (the last occurrence: the key may contain it too).
            body.rfind("`, expected")
                .or_else(|| body.rfind("`, there are no fields"))
        } else if open.ends_with('"') {
            closing_quote(body)
        } else {
            body.find('`')
        };
        let name = open.trim_end_matches(['"', '`']).trim_end();
        let Some(end) = end else {
            // Unterminated: drop everything after the opening, it may all be value.
            out.push_str(name);
            return out;
        };
        let value = body.get(..end).unwrap_or_default();
        if open == UNKNOWN_FIELD {
            let looks_like_a_field = !value.is_empty()
                && value.len() <= 32
                && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if looks_like_a_field {
                out.push_str(&format!("unknown field `{value}`"));
            } else {
                out.push_str("unknown field (name not shown)");
            }
        } else {
            out.push_str(name);
        }
        // Every closing quote (`"` or a backtick) is one byte.
        rest = body.get(end + 1..).unwrap_or_default();
    }
}

/// The index of the `"` that ends a debug-quoted string (`\"` inside is escaped).
fn closing_quote(body: &str) -> Option<usize> {
    let mut escaped = false;
    for (j, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(j),
            _ => {}
        }
    }
    None
}

/// The first field whose JSON type is wrong for a [`Request`].
fn mistyped_field(m: &serde_json::Map<String, Value>) -> Option<&'static str> {
    let string = |k: &str| m.get(k).is_some_and(|v| !v.is_string());
    let opt_string = |k: &str| m.get(k).is_some_and(|v| !(v.is_string() || v.is_null()));
    if string("agent") {
        return Some("agent");
    }
    if string("tool") {
        return Some("tool");
    }
    if opt_string("workflow") {
        return Some("workflow");
    }
    if opt_string("session") {
        return Some("session");
    }
    if m.get("session_labels")
        .is_some_and(|v| !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    {
        return Some("session_labels");
    }
    None
}

/// Longest tool name accepted (bytes).
pub const MAX_TOOL_NAME: usize = 256;

/// Why `tool` is not a qualified tool name `<server>.<tool>`, if it is not.
pub fn tool_name_problem(tool: &str) -> Option<String> {
    let mut m = tool_name_problem_uncut(tool)?;
    crate::display::cut_message(&mut m);
    Some(m)
}

fn tool_name_problem_uncut(tool: &str) -> Option<String> {
    let shown = show(tool);
    if tool.len() > MAX_TOOL_NAME {
        return Some(format!(
            "tool name `{shown}` is longer than {MAX_TOOL_NAME} bytes"
        ));
    }
    let Some((server, name)) = tool.split_once('.') else {
        return Some(format!(
            "tool name `{shown}` is not a qualified name `<server>.<tool>`"
        ));
    };
    if server.is_empty()
        || !server
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Some(format!(
            "tool name `{shown}` has an invalid server id; server ids match `[a-z0-9_-]+`"
        ));
    }
    if name.is_empty() {
        return Some(format!("tool name `{shown}` has an empty tool part"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some(format!(
            "tool name `{shown}` contains whitespace or control characters"
        ));
    }
    None
}

/// User input shown in a message: control characters (and backticks) escaped. Not
/// cut here: a decision's strings are scrubbed and then cut (`display`).
pub(crate) fn show(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || c == '`' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_never_quote_values() {
        let cases = [
            (
                r#"field `session_labels`: invalid type: string "AKIA2OGYBAH6TQKRXEVN", expected a sequence at line 1 column 65"#,
                "field `session_labels`: invalid type: string, expected a sequence at line 1 column 65",
            ),
            (
                r#"invalid value: string "a \"quoted\" secret", expected x"#,
                "invalid value: string, expected x",
            ),
            (
                "field `tool`: invalid type: integer `4111111111111111`, expected a string",
                "field `tool`: invalid type: integer, expected a string",
            ),
            (
                "invalid type: floating point `1.5`, expected a string",
                "invalid type: floating point, expected a string",
            ),
            (
                "unknown field `colour`, expected one of `agent`, `tool`",
                "unknown field `colour`, expected one of `agent`, `tool`",
            ),
            (
                "unknown field `AKIA2OGYBAH6TQKRXEVN`, expected one of `agent`",
                "unknown field (name not shown), expected one of `agent`",
            ),
            // Found by proptest: a key with a backtick in it must not end the quote.
            (
                "unknown field `a`leaked`, expected one of `agent`",
                "unknown field (name not shown), expected one of `agent`",
            ),
            (
                r#"invalid type: string "unterminated"#,
                "invalid type: string",
            ),
            (
                "EOF while parsing a value at line 1 column 3",
                "EOF while parsing a value at line 1 column 3",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(scrub_request_message(input), want, "{input}");
        }
    }

    proptest::proptest! {
        /// Whatever value a malformed request carries, and wherever it sits among the
        /// request's own fields, the message shown never contains it.
        #[test]
        fn no_request_value_reaches_the_message(
            value in "\\PC{8,40}",
            number in 10_000_000u64..,
            place in 0usize..6,
        ) {
            let quoted = serde_json::to_string(&value).unwrap();
            let text = match place {
                0 => format!(r#"{{"agent":"a","tool":"s.t","session_labels":{quoted}}}"#),
                1 => format!(r#"{{"agent":"a","tool":"s.t","workflow":[{quoted}]}}"#),
                2 => format!(r#"{{"agent":[{quoted}],"tool":"s.t"}}"#),
                3 => format!(r#"{{"agent":"a","tool":"s.t",{quoted}:1}}"#),
                4 => format!(r#"{{"agent":"a","tool":{number}}}"#),
                _ => format!(r#"{{"agent":"a","tool":"s.t","session":{number}.5}}"#),
            };
            let Err(e) = Request::from_json(&text) else {
                return Ok(());
            };
            let shown = e.message.clone();
            let looks_like_a_field = value.len() <= 32
                && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !looks_like_a_field {
                proptest::prop_assert!(!shown.contains(&value), "{shown}");
            }
            proptest::prop_assert!(!shown.contains(&number.to_string()), "{shown}");
        }
    }
}
