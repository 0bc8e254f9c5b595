//! JSON-RPC / MCP framing and the gate proxy engine (stdio).
//!
//! INVARIANT: only the transport adapters know JSON-RPC; the core sees a `Request`.
//!
//! CONTRACT (used by the CLI's `wrap`): [`Gate`], [`GateConfig`], [`ArgumentsMode`],
//! [`run`], [`EngineOptions`], [`Outcome`], [`watch_policy`], [`server_id`].
//!
//! # What the relay does
//!
//! - `tools/call`: decided (`<server>.<tool>`, learned destination fields added to the
//!   policy's), recorded, then forwarded or answered with a `CallToolResult` whose
//!   `isError` is true and whose `_meta["dev.conductor/decision"]` is the decision.
//! - `resources/read`: decided as the tool `<server>.read_resource` with arguments
//!   `{"uri": …}` and `/uri` as a destination; a refusal is a JSON-RPC error
//!   (`-32001`) whose `data["dev.conductor/decision"]` is the decision.
//! - `tools/list` results: descriptors pinned (SHA-256 of the canonical
//!   descriptor without its `_meta`: name, description, schemas, title, annotations…)
//!   and filtered; a changed descriptor
//!   makes every later call to that tool refused (check `pin`) and is recorded as an
//!   audit record with event `pin-change`.
//! - Everything the server sends to the client — answers (results and errors),
//!   notifications (logging, progress), requests (sampling, elicitation) — except the
//!   answers to `initialize`, `server/discover`, `ping` and `tools/list` (metadata):
//!   scanned; the labels found raise the session's labels (never lowered) before the
//!   message is relayed, so every later call is decided with them (`flow`).
//! - A request whose id (by value: `1` = `1.0`) is already in flight is refused
//!   (`-32600`); a `tools/call` or `resources/read` sent as a notification is
//!   recorded as refused and dropped.
//! - Lines from the server that are not JSON-RPC, or longer than the limit, are dropped
//!   with a note on stderr.
//! - Everything else passes through byte for byte, both protocol revisions alike
//!   (2025-11-25 `initialize`; 2026-07-28 stateless `server/discover` and `_meta`).

pub mod engine;
pub mod framing;
pub mod gate;
#[cfg(unix)]
pub mod stdio;

pub use engine::{DEFAULT_MAX_MESSAGE_BYTES, EngineOptions, Outcome, run};
pub use gate::{
    ArgumentsMode, Gate, GateConfig, Held, META_KEY, READ_RESOURCE_TOOL, Submitted, watch_policy,
};

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
