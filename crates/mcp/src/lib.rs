//! JSON-RPC / MCP framing and the gate proxy engine (stdio).
//!
//! INVARIANT: only the transport adapters know JSON-RPC; the core sees a `Request`.
