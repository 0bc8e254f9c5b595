//! The one module that knows the gate's API (today `conductor_mcp::Gate`; tomorrow the
//! transport-neutral `conductor-gate`): switching gates is a change here only.
//!
//! One [`SessionGate`] per (authenticated agent, upstream server, MCP session). Its
//! methods block (DNS, scanning, the audit commit): they run on `spawn_blocking`.
//!
//! INVARIANT: [`SessionGate::decide`] returns [`Decided::Forward`] only for an `allow`
//! whose audit record is committed; a panic or a failed blocking task is a refusal.

use std::sync::Arc;

use conductor_audit::AuditStore;
use conductor_gate::{
    Answered, ClientAnswer, GateResolver, Service, ServiceOptions, SessionStore, Verdict,
};
use conductor_mcp::gate::{MethodClass, method_class};
use conductor_mcp::{Gate, GateConfig};
use conductor_policy::Policy;
use conductor_scan::FingerprintKey;
use futures_util::FutureExt as _;
use serde_json::{Value, json};

pub use conductor_mcp::framing::{
    Invalid, Message, ambiguous_member, classify, classify_value, code, id_key,
};

/// What every gate of the process shares: the gate service (policy in force,
/// resolver, fingerprint key, audit store, session labels).
pub struct GateEnv {
    service: Arc<Service>,
}

impl std::fmt::Debug for GateEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateEnv").finish_non_exhaustive()
    }
}

impl GateEnv {
    /// The gate service of the gateway; `sessions` keeps the agents' labels (the
    /// audit database's `SqliteStore`, shared with every `wrap` of the same agents).
    pub fn new(
        policy: Policy,
        resolver: GateResolver,
        key: FingerprintKey,
        audit: Arc<AuditStore>,
        sessions: Arc<dyn SessionStore>,
    ) -> GateEnv {
        GateEnv {
            service: Arc::new(Service::new(
                policy,
                resolver,
                Arc::new(key),
                audit,
                sessions,
                ServiceOptions::default(),
            )),
        }
    }

    /// The gate service (the sandbox's egress proxy decides through it too).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.service.policy()
    }

    /// Hold calls the policy marks `approve` in `store` until a person decides.
    pub fn hold_approvals_in(&self, store: Arc<dyn conductor_audit::ApprovalStore>) {
        self.service.set_approvals(store);
    }

    pub fn audit(&self) -> &Arc<AuditStore> {
        self.service.audit()
    }

    /// Put a new policy in force for every session (they share the service).
    pub fn swap_policy(&self, policy: Policy) {
        self.service.swap_policy(policy);
    }

    /// The client answered the gate's `elicitation/create` about `held` with `result`
    /// (`None`: an error answer; the call stays held for another approver). The
    /// answer decides it through the approvals store, approver `elicitation:<agent>`.
    pub async fn answer_in_client(&self, held: conductor_gate::Held, result: Option<Value>) {
        let Some(result) = result else {
            tracing::warn!(
                "the client could not ask its user; the call stays held for another approver"
            );
            return;
        };
        let service = Arc::clone(&self.service);
        let answer = ClientAnswer::from_elicit_result(&result);
        let done =
            tokio::task::spawn_blocking(move || service.answer_in_client(&held, &answer)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot record the answer given in the client");
            }
            Err(_) => {
                tracing::warn!("the gate failed while recording the answer given in the client")
            }
        }
    }

    /// Whether the agent may ever call `<server>.<tool>` (used to build `/mcp` lists).
    pub fn may_ever_call(&self, agent: &str, qualified: &str) -> bool {
        conductor_core::may_ever_call(&self.policy(), agent, qualified)
    }

    /// A new gate for one (agent, server, session).
    pub fn session_gate(&self, agent: &str, server: &str) -> SessionGate {
        self.session_gate_as(agent, server, None)
    }

    /// A new gate for one (agent, server, session) whose audit records say how the
    /// agent proved who it is (`auth`: key id, token `iss`/`sub`/`jti`, certificate
    /// fingerprint — never the credential).
    pub fn session_gate_as(&self, agent: &str, server: &str, auth: Option<Value>) -> SessionGate {
        let gate = Arc::new(
            Gate::with_session(
                GateConfig {
                    agent: agent.to_string(),
                    server: server.to_string(),
                    workflow: None,
                    filter_tools: true,
                },
                Arc::clone(&self.service),
                crate::session::random_id(),
            )
            .with_auth(auth),
        );
        SessionGate { gate }
    }
}

/// One decision asked through the AuthZEN decision API, in MCP terms.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The agent the decision is for (the caller may speak for it).
    pub agent: String,
    /// The server id: the part of the resource id before its first `.`.
    pub server: String,
    pub workflow: Option<String>,
    /// The session the call belongs to; a fresh id when the caller names none.
    pub session: Option<String>,
    /// The MCP method (the AuthZEN action name).
    pub method: String,
    /// The method's params, as an MCP client would send them.
    pub params: Value,
    /// Labels the caller says the session holds (added to the agent's own).
    pub labels: Vec<String>,
    /// What the audit record says of who asked (the caller and its proof).
    pub auth: Option<Value>,
}

impl GateEnv {
    /// Decide and record one evaluation exactly as the MCP path decides the same
    /// message (`Gate::call_for`, then the shared service). The record's event is
    /// `authzen:<method>`.
    ///
    /// INVARIANT: every evaluation is decided by the shared service and recorded before
    /// its answer; a decision that panics or cannot be recorded is a deny.
    pub async fn evaluate(&self, e: Evaluation) -> conductor_core::Decision {
        let session = match e.session {
            Some(s) => s,
            None => match conductor_gate::new_session_id() {
                Ok(s) => s,
                Err(_) => return failed_decision(&self.policy(), "no randomness for a session id"),
            },
        };
        let gate = Gate::with_session(
            GateConfig {
                agent: e.agent,
                server: e.server,
                workflow: e.workflow,
                filter_tools: false,
            },
            Arc::clone(&self.service),
            session,
        )
        .with_auth(e.auth);
        let service = &self.service;
        // INVARIANT: a decision that panics is a deny (caught here, on this task: no
        // task of its own per evaluation).
        let done = std::panic::AssertUnwindSafe(async {
            let mut call = gate.call_for(&e.method, Some(&e.params));
            call.event = format!("authzen:{}", call.event);
            service
                .decide_with_labels(gate.subject(), call, &e.labels)
                .await
        })
        .catch_unwind()
        .await;
        let policy = self.policy();
        match done {
            Ok(v) => v.decision,
            Err(_) => failed_decision(&policy, "the gate failed while deciding"),
        }
    }
}

/// A deny for an evaluation the gate could not decide.
fn failed_decision(policy: &Policy, why: &str) -> conductor_core::Decision {
    // Nothing was recorded: the audit check is the one that failed.
    conductor_core::Decision {
        decision: conductor_core::Effect::Deny,
        reasons: vec![conductor_core::Reason {
            check: conductor_core::Check::Audit,
            rule: conductor_types::RuleId::audit(),
            message: format!("{why}; nothing was recorded and the evaluation is a deny"),
        }],
        destinations: Vec::new(),
        findings: Vec::new(),
        policy: policy.sha256().to_string(),
    }
}

/// The outcome of a gated request.
#[derive(Debug, Clone)]
pub enum Decided {
    /// Forward the request as it was decided.
    Forward { decision: String },
    /// Not decided yet: the person at the client is asked, with this answer (an
    /// `input_required` result, 2026-07-28); the call is not forwarded.
    Ask { answer: Value },
    /// Answer the client with this JSON-RPC message instead (`id` filled in).
    Refuse {
        answer: Value,
        decision: String,
        checks: Vec<String>,
    },
}

/// A gated request, decided or held for a person.
#[derive(Debug)]
pub enum Hold {
    /// Decided (and recorded).
    Decided(Decided),
    /// Held: it waits for a person (see [`SessionGate::release`]).
    Waiting(conductor_gate::Held),
}

/// Methods that reach an upstream only after a decision: every method but protocol
/// metadata — the one classification `wrap` uses (`conductor_mcp::gate::method_class`);
/// a method the gate does not know is decided, and refused unless the policy lets it
/// pass.
pub fn is_gated(method: &str) -> bool {
    method_class(method) != MethodClass::Metadata
}

/// What an answer from the server is, for the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// Pinned and filtered.
    ToolsList,
    /// Everything else: scanned, labels raised.
    Labelled,
    /// A `prompts/get` answer: scanned, and every resource it embeds decided like a
    /// `resources/read` of its URI.
    Prompt,
}

/// Every answer is scanned, `initialize` and `ping` included (a server can put data
/// anywhere); `tools/list` is pinned and filtered too.
pub fn answer_kind(method: &str) -> AnswerKind {
    match method {
        "tools/list" => AnswerKind::ToolsList,
        "prompts/get" => AnswerKind::Prompt,
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

    /// Decide a gated request (`method` with its `params`) and record the decision; a
    /// call held for a person waits here until it is decided.
    pub async fn decide(&self, id: &Value, method: &str, params: Option<Value>) -> Decided {
        match self.decide_or_hold(id, method, params, None).await {
            Hold::Decided(d) => d,
            Hold::Waiting(held) => self.release(id, method, held).await,
        }
    }

    /// Decide a gated request and record the decision, without waiting for a person:
    /// a call held for approval comes back as [`Hold::Waiting`] (then ask where the
    /// policy lets the gate ask, and [`SessionGate::release`]). `answered`: the
    /// person's answer and the `requestState` taken off a retried call (2026-07-28),
    /// which decide it instead (it is never held again).
    pub async fn decide_or_hold(
        &self,
        id: &Value,
        method: &str,
        params: Option<Value>,
        answered: Option<Answered>,
    ) -> Hold {
        // A method the gate does not know passes only when the policy says so, and
        // only with nothing a detector finds in it.
        if self.gate.passes(method)
            && !params
                .as_ref()
                .is_some_and(|p| self.gate.service().has_findings(p))
        {
            return Hold::Decided(Decided::Forward {
                decision: "pass".into(),
            });
        }
        // INVARIANT: a decision that panics is a refusal (caught on this task; a task
        // of its own per decision cost a spawn and a wake-up for nothing).
        let gate = &self.gate;
        let done = std::panic::AssertUnwindSafe(async move {
            match answered {
                Some(a) => gate.decide_answered(method, params.as_ref(), a).await,
                None => gate.decide(method, params.as_ref()).await,
            }
        })
        .catch_unwind()
        .await;
        match done {
            Ok(v) => match v.held.clone() {
                Some(held) => Hold::Waiting(held),
                None => Hold::Decided(outcome(id, method, &v)),
            },
            Err(_) => Hold::Decided(internal_refusal(id)),
        }
    }

    /// Wait until `held` is decided (by any approver, or its expiry); what to do with
    /// the request then. This request waits; the session's others go on.
    pub async fn release(&self, id: &Value, method: &str, held: conductor_gate::Held) -> Decided {
        let gate = Arc::clone(&self.gate);
        match tokio::spawn(async move { gate.service().release(&held).await }).await {
            Ok(v) => outcome(id, method, &v),
            Err(_) => internal_refusal(id),
        }
    }

    /// Whether the policy lets the gate put held calls to the person at the client.
    pub fn asks_in_client(&self) -> bool {
        self.gate.service().asks_in_client()
    }

    /// The `elicitation/create` params (form) asking about `held`.
    pub fn approval_form(&self, held: &conductor_gate::Held) -> Value {
        self.gate.service().approval_form(held)
    }

    /// The answer to request `id` that puts `held` to the person at the client: an
    /// `input_required` result with a signed `requestState` (2026-07-28). `None` when
    /// no state could be signed (the call then waits for another approver).
    pub fn input_required(&self, id: &Value, held: &conductor_gate::Held) -> Option<Value> {
        match self.gate.service().input_required(held) {
            Ok(result) => Some(json!({"jsonrpc": "2.0", "id": id, "result": result})),
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign a requestState; the call waits for another approver");
                None
            }
        }
    }

    /// Decide the client's answer to a server request (sampling, elicitation, roots):
    /// destination, data and flow on what the client sends. `None` forwards it;
    /// `Some(text)` is the refusal to send the server instead.
    pub async fn decide_reply(&self, answer: &Value) -> Option<String> {
        let gate = Arc::clone(&self.gate);
        let body = answer
            .get("result")
            .or_else(|| answer.get("error"))
            .cloned()
            .unwrap_or(Value::Null);
        let done =
            tokio::spawn(async move { gate.decide_reply("server-request", &body).await }).await;
        match done {
            Ok(v) if v.forward => None,
            Ok(v) => Some(conductor_mcp::gate::refusal_text(&v.decision)),
            Err(_) => {
                Some("the gate failed while deciding this answer; it was not forwarded".into())
            }
        }
    }

    /// The refusal of the first resource a `prompts/get` answer embeds that the gate
    /// refuses (decided like a `resources/read` of its URI), if any.
    pub async fn refuse_embedded(&self, id: &Value, answer: &Value) -> Option<Value> {
        for uri in conductor_mcp::gate::embedded_resource_uris(answer) {
            let params = json!({ "uri": uri });
            if let Decided::Refuse { answer, .. } =
                self.decide(id, "resources/read", Some(params)).await
            {
                return Some(answer);
            }
        }
        None
    }

    /// Whether a detector finds anything in `value` (a notification that carries data
    /// is then not relayed).
    pub fn has_findings(&self, value: &Value) -> bool {
        self.gate.service().has_findings(value)
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
        // A small answer (the usual one) is scanned on this task — microseconds, where
        // a hop to a blocking thread and back cost more than the scan; only labels to
        // record go to a blocking thread (the session store may block).
        let mut budget = INLINE_SCAN_BYTES;
        if fits(body, &mut budget) {
            let gate = &self.gate;
            let scanned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                gate.service().scan_labels(gate.subject(), body)
            }));
            let labels = match scanned {
                Ok(l) => l,
                Err(_) => return false,
            };
            if labels.is_empty() {
                return true;
            }
            let gate = Arc::clone(&self.gate);
            // INVARIANT: labels that cannot be recorded withhold the message.
            return tokio::task::spawn_blocking(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    gate.service().raise_labels(gate.subject(), &labels).is_ok()
                }))
                .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
        }
        let gate = Arc::clone(&self.gate);
        let body = body.clone();
        // INVARIANT: labels that cannot be recorded withhold the message.
        tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gate.label(&body).is_ok()))
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

/// What to do with request `id` of `method` once its verdict is final.
fn outcome(id: &Value, method: &str, v: &Verdict) -> Decided {
    if v.forward {
        return Decided::Forward {
            decision: decision_name(&v.decision),
        };
    }
    let checks = v
        .decision
        .reasons
        .iter()
        .map(|r| r.check.name().to_string())
        .collect();
    let answer = if method == "tools/call" {
        json!({"jsonrpc": "2.0", "id": id,
               "result": conductor_mcp::gate::refusal_result(&v.decision)})
    } else {
        let code = if method_class(method) == MethodClass::Unknown {
            code::METHOD_NOT_FOUND
        } else {
            code::DENIED
        };
        json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": code,
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

/// Largest answer (string bytes, member names and a little per value) scanned on the
/// async task rather than on a blocking thread.
const INLINE_SCAN_BYTES: usize = 8 * 1024;

/// Whether `v` is at most `budget` bytes of text (stops counting once over).
fn fits(v: &Value, budget: &mut usize) -> bool {
    fn take(budget: &mut usize, n: usize) -> bool {
        match budget.checked_sub(n) {
            Some(left) => {
                *budget = left;
                true
            }
            None => false,
        }
    }
    match v {
        Value::String(s) => take(budget, s.len() + 2),
        Value::Array(items) => take(budget, 2) && items.iter().all(|i| fits(i, budget)),
        Value::Object(m) => {
            take(budget, 2)
                && m.iter()
                    .all(|(k, i)| take(budget, k.len() + 3) && fits(i, budget))
        }
        _ => take(budget, 8),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &std::path::Path) -> GateEnv {
        let policy = conductor_policy::load_str(
            "version: 1\nagents:\n  bot: {roles: [r]}\nroles:\n  r:\n    allow: [{tools: [\"up.*\"]}]\n",
            "p.yaml",
            None,
        )
        .unwrap();
        let audit = Arc::new(
            AuditStore::open(
                &dir.join("audit.db"),
                conductor_audit::AuditOptions::default(),
            )
            .unwrap(),
        );
        GateEnv::new(
            policy,
            GateResolver::new(conductor_gate::ResolverConfig {
                no_dns: true,
                ..Default::default()
            }),
            FingerprintKey([1; 32]),
            audit,
            Arc::new(conductor_gate::MemoryStore::default()),
        )
    }

    // Issue 10, class 5: the client's answers to a server's requests (elicitation,
    // sampling, roots) reached the upstream without a data check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_answer_carrying_a_secret_never_reaches_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let gates = env(dir.path());
        let g = gates.session_gate("bot", "up");
        let clean = json!({"jsonrpc": "2.0", "id": 1, "result": {"action": "accept", "content": {"name": "Ada"}}});
        assert_eq!(g.decide_reply(&clean).await, None);
        let secret = json!({"jsonrpc": "2.0", "id": 2, "result": {"action": "accept",
            "content": {"token": "AKIAQYLPMN5HHHFPZAM2 wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEZ"}}});
        let refused = g.decide_reply(&secret).await.expect("refused");
        assert!(refused.contains("data"), "{refused}");
        assert!(!refused.contains("AKIAQYLPMN5HHHFPZAM2"), "{refused}");
    }

    // Issue 10, class 1: a `prompts/get` answer that embeds a resource is decided like a
    // `resources/read` of its URI, in the gateway as in `wrap`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_prompt_embedding_a_refused_resource_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let gates = env(dir.path());
        let g = gates.session_gate("bot", "up");
        let plain = json!({"jsonrpc": "2.0", "id": 1, "result": {"messages": [
            {"role": "user", "content": {"type": "text", "text": "hi"}}]}});
        assert!(g.refuse_embedded(&json!(1), &plain).await.is_none());
        let embeds = json!({"jsonrpc": "2.0", "id": 2, "result": {"messages": [
            {"role": "user", "content": {"type": "resource",
             "resource": {"uri": "file:///etc/shadow", "text": "x"}}}]}});
        let refused = g
            .refuse_embedded(&json!(2), &embeds)
            .await
            .expect("refused");
        assert_eq!(refused["error"]["code"], code::DENIED, "{refused}");
    }

    // A small answer is scanned on the async task, a large one on a blocking thread:
    // both raise the session's labels before the answer is relayed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_small_and_large_raise_the_labels_of_what_they_carry() {
        let secret = "AKIAQYLPMN5HHHFPZAM2 wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEZ";
        for (n, filler) in [(0usize, 0usize), (1, 2 * INLINE_SCAN_BYTES)] {
            // Labels are kept per agent: a fresh service for each case.
            let dir = tempfile::tempdir().unwrap();
            let gates = env(dir.path());
            let g = gates.session_gate("bot", "up");
            let clean = json!({"jsonrpc": "2.0", "id": n, "result": {"content": [
                {"type": "text", "text": "x".repeat(filler)}]}});
            assert!(g.label(&clean).await);
            let subject = g.gate.subject();
            assert!(gates.service().labels(subject).unwrap().is_empty());
            let mut budget = INLINE_SCAN_BYTES;
            assert_eq!(fits(&clean, &mut budget), filler == 0);
            let carrying = json!({"jsonrpc": "2.0", "id": n, "result": {"content": [
                {"type": "text", "text": format!("{} {secret}", "x".repeat(filler))}]}});
            assert!(g.label(&carrying).await);
            assert!(
                !gates.service().labels(subject).unwrap().is_empty(),
                "answer {n}: no label raised"
            );
        }
    }

    // Every non-metadata method is decided; metadata passes to the data pre-check.
    #[test]
    fn the_gateway_gates_what_wrap_gates() {
        for m in [
            "tools/call",
            "prompts/get",
            "completion/complete",
            "resources/read",
            "subscriptions/listen",
            "logging/setLevel",
            "vendor/anything",
        ] {
            assert!(is_gated(m), "{m}");
        }
        for m in ["initialize", "ping", "tools/list", "prompts/list"] {
            assert!(!is_gated(m), "{m}");
        }
    }
}
