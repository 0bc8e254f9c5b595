//! The one module that knows the gate's API (today `conductor_mcp::Gate`; tomorrow the
//! transport-neutral `conductor-gate`): switching gates is a change here only.
//!
//! One [`SessionGate`] per (authenticated agent, upstream server, MCP session). Its
//! methods block (DNS, scanning, the audit commit): they run on `spawn_blocking`.
//!
//! INVARIANT: [`SessionGate::decide`] returns [`Decided::Forward`] only for an `allow`
//! whose audit record is committed; a panic or a failed blocking task is a refusal.

use std::sync::{Arc, Mutex, RwLock, Weak};

use conductor_audit::AuditStore;
use conductor_mcp::{ArgumentsMode, Gate, GateConfig};
use conductor_net::Resolver;
use conductor_policy::Policy;
use conductor_scan::FingerprintKey;
use serde_json::{Value, json};

pub use conductor_mcp::framing::{Invalid, Message, ambiguous_member, classify, code, id_key};

/// What every gate of the process shares: the policy in force, the resolver, the
/// fingerprint key and the audit store.
pub struct GateEnv {
    policy: RwLock<Arc<Policy>>,
    resolver: Arc<dyn Resolver + Send + Sync>,
    key: Arc<FingerprintKey>,
    audit: Arc<AuditStore>,
    live: Mutex<Vec<Weak<Gate>>>,
}

impl std::fmt::Debug for GateEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateEnv").finish_non_exhaustive()
    }
}

impl GateEnv {
    pub fn new(
        policy: Policy,
        resolver: Arc<dyn Resolver + Send + Sync>,
        key: FingerprintKey,
        audit: Arc<AuditStore>,
    ) -> GateEnv {
        GateEnv {
            policy: RwLock::new(Arc::new(policy)),
            resolver,
            key: Arc::new(key),
            audit,
            live: Mutex::new(Vec::new()),
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn audit(&self) -> &Arc<AuditStore> {
        &self.audit
    }

    /// Put a new policy in force for new sessions and every live one.
    pub fn swap_policy(&self, policy: Policy) {
        let new = Arc::new(policy);
        match self.policy.write() {
            Ok(mut p) => *p = Arc::clone(&new),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&new),
        }
        let live: Vec<Arc<Gate>> = match self.live.lock() {
            Ok(mut l) => {
                l.retain(|w| w.strong_count() > 0);
                l.iter().filter_map(Weak::upgrade).collect()
            }
            Err(_) => Vec::new(),
        };
        for g in live {
            g.swap_policy((*new).clone());
        }
    }

    /// Whether the agent may ever call `<server>.<tool>` (used to build `/mcp` lists).
    pub fn may_ever_call(&self, agent: &str, qualified: &str) -> bool {
        conductor_core::may_ever_call(&self.policy(), agent, qualified)
    }

    /// A new gate for one (agent, server, session).
    pub fn session_gate(&self, agent: &str, server: &str) -> SessionGate {
        let gate = Arc::new(Gate::new(
            GateConfig {
                agent: agent.to_string(),
                server: server.to_string(),
                workflow: None,
                filter_tools: true,
                arguments: ArgumentsMode::Redacted,
            },
            (*self.policy()).clone(),
            Arc::clone(&self.resolver),
            Arc::clone(&self.key),
            Arc::clone(&self.audit),
        ));
        if let Ok(mut l) = self.live.lock() {
            l.retain(|w| w.strong_count() > 0);
            l.push(Arc::downgrade(&gate));
        }
        SessionGate { gate }
    }
}

/// The outcome of a gated request.
#[derive(Debug, Clone)]
pub enum Decided {
    /// Forward the request as it was decided.
    Forward { decision: String },
    /// Answer the client with this JSON-RPC message instead (`id` filled in).
    Refuse {
        answer: Value,
        decision: String,
        checks: Vec<String>,
    },
}

/// Methods that reach an upstream only after a decision.
pub fn is_gated(method: &str) -> bool {
    matches!(
        method,
        "tools/call" | "resources/read" | "resources/subscribe"
    )
}

/// What an answer from the server is, for the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// Pinned and filtered.
    ToolsList,
    /// `initialize`, `server/discover`, `ping`: metadata, relayed as is.
    Metadata,
    /// Everything else: scanned, labels raised.
    Labelled,
}

pub fn answer_kind(method: &str) -> AnswerKind {
    match method {
        "tools/list" => AnswerKind::ToolsList,
        "initialize" | "server/discover" | "ping" => AnswerKind::Metadata,
        _ => AnswerKind::Labelled,
    }
}

/// The gate of one (agent, server, session).
#[derive(Clone)]
pub struct SessionGate {
    gate: Arc<Gate>,
}

impl std::fmt::Debug for SessionGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.gate.fmt(f)
    }
}

fn decision_name(d: &conductor_core::Decision) -> String {
    serde_json::to_value(d.decision)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "deny".into())
}

impl SessionGate {
    pub fn session_id(&self) -> &str {
        self.gate.session_id()
    }

    /// Decide a gated request (`method` with its `params`) and record the decision.
    pub async fn decide(&self, id: &Value, method: &str, params: Option<Value>) -> Decided {
        let gate = Arc::clone(&self.gate);
        let m = method.to_string();
        let id = id.clone();
        let done = tokio::task::spawn_blocking(move || {
            let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if m == "tools/call" {
                    gate.decide_call(params.as_ref())
                } else {
                    gate.decide_resource(&m, params.as_ref())
                }
            }));
            match decided {
                Ok(v) if v.forward => Decided::Forward {
                    decision: decision_name(&v.decision),
                },
                Ok(v) => {
                    let checks = v
                        .decision
                        .reasons
                        .iter()
                        .map(|r| r.check.name().to_string())
                        .collect();
                    let answer = if m == "tools/call" {
                        json!({"jsonrpc": "2.0", "id": id,
                               "result": conductor_mcp::gate::refusal_result(&v.decision)})
                    } else {
                        json!({"jsonrpc": "2.0", "id": id, "error": {
                            "code": code::DENIED,
                            "message": conductor_mcp::gate::refusal_text(&v.decision),
                            "data": { conductor_mcp::META_KEY: v.decision },
                        }})
                    };
                    Decided::Refuse {
                        answer,
                        decision: decision_name(&v.decision),
                        checks,
                    }
                }
                Err(_) => internal_refusal(&id),
            }
        })
        .await;
        match done {
            Ok(d) => d,
            Err(_) => internal_refusal(&Value::Null),
        }
    }

    /// Record a gated method sent as a notification: it is never forwarded.
    pub async fn refuse_notification(&self, method: &str, params: Option<Value>) {
        let gate = Arc::clone(&self.gate);
        let m = method.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                gate.refuse_notification(&m, params.as_ref());
            }));
        })
        .await;
    }

    /// Pin, learn from and filter a `tools/list` result. `None` when the gate failed
    /// (the list is then not relayed).
    pub async fn tools_list(&self, mut result: Value) -> Option<Value> {
        let gate = Arc::clone(&self.gate);
        tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                gate.process_tools_list(&mut result);
                result
            }))
            .ok()
        })
        .await
        .ok()
        .flatten()
    }

    /// Scan what a server sends the agent and raise the session's labels, before it is
    /// relayed. Returns false when the gate failed (the message is then not relayed).
    pub async fn label(&self, message: &Value) -> bool {
        let Some(body) = message
            .get("result")
            .or_else(|| message.get("error"))
            .or_else(|| message.get("params"))
        else {
            return true;
        };
        let gate = Arc::clone(&self.gate);
        let body = body.clone();
        tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gate.label_result(&body)))
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

fn internal_refusal(id: &Value) -> Decided {
    Decided::Refuse {
        answer: json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": code::INTERNAL_ERROR,
            "message": "the gate failed while deciding this request; it was not forwarded",
        }}),
        decision: "deny".into(),
        checks: vec!["internal".into()],
    }
}
