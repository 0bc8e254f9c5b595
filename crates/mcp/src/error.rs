//! The errors of the MCP layer, and whose fault each one is.

use conductor_types::FailureClass;

/// What can stop an MCP session from being set up or served.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The operating system's random generator failed: no unguessable session id.
    #[error("cannot make a session id: {0}")]
    SessionId(#[source] getrandom::Error),
    /// The client sent something that is not a usable message.
    #[error("invalid message: {0}")]
    Message(String),
    /// The upstream server failed or went away.
    #[error("the mcp server failed: {0}")]
    Upstream(String),
}

impl McpError {
    /// Whose fault it is (which exit code, JSON-RPC code and HTTP status answer it).
    pub fn class(&self) -> FailureClass {
        match self {
            McpError::SessionId(_) => FailureClass::Internal,
            McpError::Message(_) => FailureClass::Client,
            McpError::Upstream(_) => FailureClass::Upstream,
        }
    }
}
