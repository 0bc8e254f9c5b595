//! JSON-RPC / MCP framing, the MCP session logic, and the stdio relay.
//!
//! The layers, bottom up:
//! - [`framing`]: newline-delimited JSON-RPC, bounded reads, strict parsing
//!   ([`strict`]: duplicate and case-folding-equal member names refused);
//! - [`gate`]: what of an MCP message is decided (method classes, tool names,
//!   destination fields learned from schemas, pins, labels), over the shared
//!   `conductor_gate::Service`;
//! - [`session`]: the sans-IO session — what to do with each message from either
//!   side — shared by the stdio relay and the HTTP gateway;
//! - [`engine`]: the stdio relay, a thin adapter over [`session`].
//!
//! INVARIANT: only the transport adapters know JSON-RPC; the core sees a `Request`.
//!
//! # What is decided
//!
//! - `tools/call`: as `<server>.<tool>` (learned destination fields added to the
//!   policy's); a refusal is a `CallToolResult` with `isError: true` and the decision
//!   in `_meta["dev.conductor/decision"]`.
//! - `resources/read`, `resources/subscribe`, `resources/unsubscribe`,
//!   `subscriptions/listen`: as `<server>.read_resource` with the URIs as
//!   destinations; `prompts/get` as `<server>.prompt:<name>`; `completion/complete` as
//!   `<server>.complete`; `logging/setLevel` and `tasks/*` on their data only. A
//!   refusal is a JSON-RPC error `-32001` with the decision in `data`.
//! - Every other request method: refused (`-32601`) and recorded.
//! - Protocol metadata (`initialize`, `ping`, lists) and known notifications: pass
//!   when no detector finds anything in their params; decided otherwise.
//! - The client's answers to the server's requests (sampling, elicitation, roots):
//!   decided on their data; a refused answer reaches the server as an error.
//! - Everything else in a call's params (`_meta`, the tool name, extra members):
//!   checked for data and destinations with the call.
//! - Everything the server sends — every answer (including `initialize` and
//!   `tools/list`), notification and request — is scanned, and the labels found are
//!   recorded for the agent before the message is delivered; an answer whose labels
//!   cannot be recorded is withheld.
//! - `tools/list` results: descriptors pinned and filtered; a changed descriptor is
//!   marked, recorded (`pin-change`), and calls to it are refused (check `pin`).

#![warn(missing_docs, unreachable_pub)]

pub mod engine;
mod error;
pub mod framing;
pub mod gate;
pub mod session;
#[cfg(unix)]
pub mod stdio;
/// The strict JSON reader (it lives in `conductor-types`: `check`, the hook and every
/// transport read with the same one).
pub use conductor_types::strict;

pub use conductor_gate::watch_policy;
pub use engine::{DEFAULT_MAX_MESSAGE_BYTES, EngineOptions, Outcome, run};
pub use error::McpError;
pub use gate::{ArgumentsMode, Gate, GateConfig, META_KEY, READ_RESOURCE_TOOL};

pub(crate) fn warn(message: &str) {
    conductor_gate::warn(message);
}

/// The default server id for a command: its file name, lowercased, with every
/// character outside `[a-z0-9_-]` replaced by `-`.
pub fn server_id(command: &str) -> String {
    let name = std::path::Path::new(command)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| command.to_string());
    let id: String = name
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() { "server".into() } else { id }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_ids() {
        assert_eq!(super::server_id("npx"), "npx");
        assert_eq!(super::server_id("/usr/bin/Mcp.Server"), "mcp-server");
        assert_eq!(super::server_id("uvx"), "uvx");
    }
}
