//! One table from failure to answer: whose fault a failure is decides the exit code,
//! the JSON-RPC error code and the HTTP status, for every transport alike.

/// Whose fault a failure is.
///
/// INVARIANT: every transport answers a failure through [`FailureClass::exit_code`],
/// [`FailureClass::http_status`] or [`jsonrpc_code`]; none chooses its own numbers, so a
/// new transport cannot answer the same failure differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The caller sent something malformed, ambiguous or too large.
    Client,
    /// The caller did not prove who it is.
    Unauthenticated,
    /// The caller is known but may not do this (outside a decision: e.g. an agent
    /// credential used on an approver endpoint).
    Forbidden,
    /// The policy refused the call (a decision).
    Policy,
    /// The upstream server failed, went away or answered garbage.
    Upstream,
    /// The upstream server did not answer in time.
    UpstreamTimeout,
    /// Something the gate needs (the audit store, the policy, a key) is not usable now.
    Unavailable,
    /// A bug in the gate: it failed while deciding.
    Internal,
}

/// JSON-RPC error codes the gate answers with.
pub mod code {
    /// The message is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The message is not a valid JSON-RPC request (or is ambiguous).
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method is unknown (and not allowed to pass).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params are invalid.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The gate failed.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Implementation-defined: the upstream server went away or failed.
    pub const SERVER_GONE: i64 = -32000;
    /// Implementation-defined: refused by policy.
    pub const DENIED: i64 = -32001;
    /// Implementation-defined: the upstream did not answer in time.
    pub const UPSTREAM_TIMEOUT: i64 = -32002;
    /// Implementation-defined: the gate cannot record or decide now.
    pub const UNAVAILABLE: i64 = -32003;
    /// Implementation-defined: not authenticated / not allowed.
    pub const UNAUTHORIZED: i64 = -32004;
    /// 2026-07-28: an `Mcp-Method` / `Mcp-Name` header does not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
}

impl FailureClass {
    /// The process exit status (sysexits.h) of a command that ends with this failure.
    pub const fn exit_code(self) -> u8 {
        match self {
            FailureClass::Client => 65,          // EX_DATAERR
            FailureClass::Unauthenticated => 77, // EX_NOPERM
            FailureClass::Forbidden => 77,       // EX_NOPERM
            FailureClass::Policy => 1,           // a deny
            FailureClass::Upstream => 69,        // EX_UNAVAILABLE
            FailureClass::UpstreamTimeout => 69, // EX_UNAVAILABLE
            FailureClass::Unavailable => 74,     // EX_IOERR
            FailureClass::Internal => 70,        // EX_SOFTWARE
        }
    }

    /// The HTTP status of an answer to this failure.
    ///
    /// A policy refusal is not an HTTP error where the protocol carries decisions in
    /// its body (MCP results, AuthZEN `decision: false`); transports answer those with
    /// 200 and use this status only where the refusal is the whole answer.
    pub const fn http_status(self) -> u16 {
        match self {
            FailureClass::Client => 400,
            FailureClass::Unauthenticated => 401,
            FailureClass::Forbidden => 403,
            FailureClass::Policy => 403,
            FailureClass::Upstream => 502,
            FailureClass::UpstreamTimeout => 504,
            FailureClass::Unavailable => 503,
            FailureClass::Internal => 500,
        }
    }
}

/// The JSON-RPC error code of an answer to this failure.
pub fn jsonrpc_code(class: FailureClass) -> i64 {
    match class {
        FailureClass::Client => code::INVALID_REQUEST,
        FailureClass::Unauthenticated | FailureClass::Forbidden => code::UNAUTHORIZED,
        FailureClass::Policy => code::DENIED,
        FailureClass::Upstream => code::SERVER_GONE,
        FailureClass::UpstreamTimeout => code::UPSTREAM_TIMEOUT,
        FailureClass::Unavailable => code::UNAVAILABLE,
        FailureClass::Internal => code::INTERNAL_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FailureClass; 8] = [
        FailureClass::Client,
        FailureClass::Unauthenticated,
        FailureClass::Forbidden,
        FailureClass::Policy,
        FailureClass::Upstream,
        FailureClass::UpstreamTimeout,
        FailureClass::Unavailable,
        FailureClass::Internal,
    ];

    #[test]
    fn no_failure_maps_to_success() {
        for c in ALL {
            assert_ne!(c.exit_code(), 0, "{c:?}");
            assert!(c.http_status() >= 400, "{c:?}");
            assert!(jsonrpc_code(c) < -32000 + 1, "{c:?}");
        }
    }

    #[test]
    fn faults_of_the_gate_are_server_errors_and_the_callers_are_client_errors() {
        for c in [
            FailureClass::Client,
            FailureClass::Unauthenticated,
            FailureClass::Forbidden,
        ] {
            assert!((400..500).contains(&c.http_status()), "{c:?}");
        }
        for c in [
            FailureClass::Upstream,
            FailureClass::UpstreamTimeout,
            FailureClass::Unavailable,
            FailureClass::Internal,
        ] {
            assert!(c.http_status() >= 500, "{c:?}");
        }
    }
}
