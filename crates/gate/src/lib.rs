//! The gate service: the one sequence every way into Conductor runs around the
//! decision core — `check`, `wrap`, `serve`, the decision API, agent-runtime hooks and
//! the in-process library alike.
//!
//! ```text
//! transport adapter ──► Service::decide(subject, call)
//!                          ├─ session labels (SessionStore)      taint belongs to the agent
//!                          ├─ decide (conductor-core, pure)      every check
//!                          ├─ resolve (GateResolver, async)      only names the call needs
//!                          └─ record (conductor-audit)           before anything is forwarded
//!                       ◄── Verdict { forward, decision }
//! transport adapter ──► Service::label(subject, what came back) raises the labels
//! ```
//!
//! What a transport does itself is only what its protocol needs: parse its messages,
//! find the call in them, refuse what is ambiguous on its wire, and answer. A check
//! added here holds for every way in.
#![warn(missing_docs, unreachable_pub)]

pub mod key;
pub mod reload;
pub mod resolver;
pub mod schema;
mod service;
pub mod sessions;

pub use key::{KeyError, load_fingerprint_key};
pub use reload::{PolicyWatch, Reload, watch_policy};
pub use resolver::{Answers, GateResolver, ResolverConfig};
pub use service::{
    APPROVAL_INPUT_KEY, Answered, ClientAnswer, REQUEST_STATE_PREFIX, StateError, is_our_state,
};
pub use service::{
    ArgumentsMode, Call, CheckedConnection, Connection, Held, JOINED_SCAN_BYTES,
    LABEL_WINDOW_BYTES, PendingHook, Service, ServiceOptions, Subject, Uncommitted, Verdict,
    connection_problem, deny, effect_name, warn,
};
pub use sessions::{MemoryStore, PinOutcome, SessionStore, SqliteStore, StoreError, TaintKey};

/// A new random session id: 32 hex digits from the operating system's generator.
///
/// INVARIANT: session ids are unguessable (they may bind an HTTP session to an agent);
/// if the generator fails, no id is made.
pub fn new_session_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}
