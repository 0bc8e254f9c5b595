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
    RequestError {
        message,
        line: e.line(),
        column: e.column(),
    }
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
