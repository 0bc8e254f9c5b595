//! The gate of one MCP session: what of an MCP message is decided, built as a
//! [`Call`] for the shared [`Service`], and what of an answer is pinned and labelled.
//!
//! Everything protocol-specific lives here and in [`crate::session`]; the checks,
//! the record and the taint live in `conductor-gate`, shared by every transport.
//!
//! INVARIANT: every method that carries agent or user data to a server is decided
//! (see [`method_class`]); a method the gate does not know is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conductor_core::{Check, Decision, Effect, Reason};
use conductor_gate::schema::{self, Seg};
use conductor_gate::{Call, PinOutcome, Service, StoreError, Subject, Verdict};
use conductor_types::{JsonPath, RuleId, Segment};
use serde_json::{Value, json};

pub use conductor_gate::ArgumentsMode;
pub use conductor_gate::schema::descriptor_digest;

/// The key under which a refused call's decision is put in the result's `_meta`.
pub const META_KEY: &str = "dev.conductor/decision";

/// The tool-name part under which `resources/read` (and `resources/subscribe`,
/// `resources/unsubscribe`, `subscriptions/listen`) is decided: the request's tool is
/// `<server>.read_resource` with arguments `{"uri": …}` and `/uri` as a destination.
pub const READ_RESOURCE_TOOL: &str = "read_resource";

/// How a method is gated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// Protocol metadata (`initialize`, `ping`, lists): passes, its params scanned.
    Metadata,
    /// `tools/call`: decided as `<server>.<tool>`.
    ToolCall,
    /// A request that makes the server fetch a resource by URI.
    Resource,
    /// `prompts/get`: decided as `<server>.prompt:<name>` (a prompt can act: the
    /// fetch server's `fetch` prompt fetches its `url`).
    Prompt,
    /// `completion/complete`: decided as `<server>.complete`.
    Completion,
    /// A request that names nothing the policy can address (`logging/setLevel`,
    /// `tasks/*`): destination, data and flow checks on its params.
    DataOnly,
    /// Not known to the gate: refused.
    Unknown,
}

/// The class of a client → server request method.
pub fn method_class(method: &str) -> MethodClass {
    match method {
        "initialize"
        | "ping"
        | "server/discover"
        | "tools/list"
        | "resources/list"
        | "resources/templates/list"
        | "prompts/list" => MethodClass::Metadata,
        "tools/call" => MethodClass::ToolCall,
        "resources/read"
        | "resources/subscribe"
        | "resources/unsubscribe"
        | "subscriptions/listen" => MethodClass::Resource,
        "prompts/get" => MethodClass::Prompt,
        "completion/complete" => MethodClass::Completion,
        "logging/setLevel" | "tasks/get" | "tasks/list" | "tasks/cancel" | "tasks/result" => {
            MethodClass::DataOnly
        }
        _ => MethodClass::Unknown,
    }
}

/// Client notifications the gate knows (their params are scanned).
pub fn known_notification(method: &str) -> bool {
    matches!(
        method,
        "notifications/initialized"
            | "notifications/cancelled"
            | "notifications/progress"
            | "notifications/roots/list_changed"
    )
}

/// What the gate of a session is configured with.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// The agent the session acts for.
    pub agent: String,
    /// Server id (`[a-z0-9_-]+`): tools are named `<server>.<tool>` in the policy.
    pub server: String,
    /// The workflow every call of the session belongs to.
    pub workflow: Option<String>,
    /// Remove tools the agent can never call from `tools/list` results.
    pub filter_tools: bool,
}

/// What was learned about a tool from its descriptor.
#[derive(Debug, Clone, Default)]
struct ToolState {
    /// Destination fields learned from the input schema.
    paths: Vec<Vec<Seg>>,
    /// `(first, now)` digests once the descriptor changed (sticky).
    changed: Option<(String, String)>,
}

/// The gate of one session.
pub struct Gate {
    cfg: GateConfig,
    service: Arc<Service>,
    subject: Subject,
    tools: Mutex<HashMap<String, ToolState>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("cfg", &self.cfg)
            .field("session", &self.subject.session)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate for a new session with a fresh random id.
    pub fn new(cfg: GateConfig, service: Arc<Service>) -> Result<Gate, crate::McpError> {
        let session = conductor_gate::new_session_id().map_err(crate::McpError::SessionId)?;
        Ok(Gate::with_session(cfg, service, session))
    }

    /// A gate for the session `session`.
    pub fn with_session(cfg: GateConfig, service: Arc<Service>, session: String) -> Gate {
        let subject = Subject {
            agent: cfg.agent.clone(),
            workflow: cfg.workflow.clone(),
            session,
            server: Some(cfg.server.clone()),
            auth: None,
        };
        Gate {
            cfg,
            service,
            subject,
            tools: Mutex::new(HashMap::new()),
        }
    }

    /// The same gate, its audit records saying how the agent was authenticated.
    #[must_use]
    pub fn with_auth(mut self, auth: Option<serde_json::Value>) -> Gate {
        self.subject.auth = auth;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &GateConfig {
        &self.cfg
    }

    /// The session id recorded with every decision.
    pub fn session_id(&self) -> &str {
        &self.subject.session
    }

    /// The subject of this session's calls.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// The shared service.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The session's labels (sorted; empty when the store cannot be read).
    pub fn session_labels(&self) -> Vec<String> {
        self.service
            .labels(&self.subject)
            .map(|l| l.into_iter().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ToolState>> {
        match self.tools.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn qualified(&self, tool: &str) -> String {
        format!("{}.{tool}", self.cfg.server)
    }

    /// The call to decide for a client request `method` with `params`.
    pub fn call_for(&self, method: &str, params: Option<&Value>) -> Call {
        let class = method_class(method);
        let mut problems = Vec::new();
        if params.is_some_and(|p| !p.is_object() && !p.is_null()) {
            problems.push(input(
                RuleId::request("params"),
                format!("`{method}` params must be a json object"),
            ));
        }
        let obj = params.and_then(Value::as_object);
        let get = |k: &str| obj.and_then(|o| o.get(k));
        let (tool, arguments, pointers, envelope_skip): (String, Value, Vec<JsonPath>, &[&str]) =
            match class {
                MethodClass::ToolCall => {
                    let name = get("name").and_then(Value::as_str).unwrap_or("");
                    if !get("name").is_some_and(Value::is_string) {
                        problems.push(input(
                            RuleId::request("tool"),
                            "`tools/call` params need a string `name`".into(),
                        ));
                    }
                    let arguments = match get("arguments") {
                        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
                        Some(a) => a.clone(),
                    };
                    let state = self.lock().get(name).cloned();
                    let pointers = state
                        .as_ref()
                        .map(|t| schema::expand_paths(&t.paths, &arguments))
                        .unwrap_or_default();
                    if let Some(t) = &state
                        && let Some((first, now)) = &t.changed
                    {
                        problems.push(Reason {
                            check: Check::Pin,
                            rule: RuleId::pin(&self.qualified(name)),
                            message: format!(
                                "the descriptor of `{}` changed during the session (first seen {first}, now {now}); calls to it are refused until the session restarts",
                                conductor_types::display::shown(name, 120)
                            ),
                        });
                    }
                    (self.qualified(name), arguments, pointers, &["arguments"])
                }
                MethodClass::Resource => {
                    let uri = get("uri").cloned().unwrap_or(Value::Null);
                    if method != "subscriptions/listen" && !uri.is_string() {
                        problems.push(input(
                            RuleId::request("uri"),
                            format!("`{method}` params need a string `uri`"),
                        ));
                    }
                    if method == "subscriptions/listen" {
                        // Every URI it names is a destination.
                        let arguments = params.cloned().unwrap_or(json!({}));
                        let mut pointers = Vec::new();
                        uri_pointers(&arguments, &mut JsonPath::root(), &mut pointers, 0);
                        (
                            self.qualified(READ_RESOURCE_TOOL),
                            arguments,
                            pointers,
                            &[][..],
                        )
                    } else {
                        (
                            self.qualified(READ_RESOURCE_TOOL),
                            json!({ "uri": uri }),
                            vec![JsonPath::root().key("uri")],
                            &["uri"][..],
                        )
                    }
                }
                MethodClass::Prompt => {
                    let name = get("name").and_then(Value::as_str).unwrap_or("");
                    if !get("name").is_some_and(Value::is_string) {
                        problems.push(input(
                            RuleId::request("tool"),
                            "`prompts/get` params need a string `name`".into(),
                        ));
                    }
                    let arguments = match get("arguments") {
                        None | Some(Value::Null) => json!({}),
                        Some(a) => a.clone(),
                    };
                    (
                        self.qualified(&format!("prompt:{name}")),
                        arguments,
                        Vec::new(),
                        &["arguments"][..],
                    )
                }
                MethodClass::Completion => (
                    self.qualified("complete"),
                    params.cloned().unwrap_or(json!({})),
                    Vec::new(),
                    &[][..],
                ),
                MethodClass::DataOnly | MethodClass::Metadata | MethodClass::Unknown => (
                    if class == MethodClass::Unknown {
                        // (Not the client's text: it may carry anything.)
                        self.qualified("method:unknown")
                    } else {
                        self.qualified(&format!("method:{method}"))
                    },
                    params.cloned().unwrap_or(json!({})),
                    Vec::new(),
                    &[][..],
                ),
            };
        // INVARIANT: a method name is the client's text; it is shown only sanitized
        // and cut, and not at all when a detector finds something in it.
        let event = if class == MethodClass::Unknown {
            problems.push(Reason {
                check: Check::Input,
                rule: RuleId::method("unknown"),
                message: "the method is not known to the gate; it is refused".into(),
            });
            if self
                .service
                .has_findings(&Value::String(method.to_string()))
            {
                "unknown-method".to_string()
            } else {
                conductor_types::display::shown(method, 64)
            }
        } else {
            method.to_string()
        };
        // Everything else the server receives with the call — `_meta`,
        // `progressToken`, extra members, the tool or prompt name — is data too.
        let envelope = obj.map(|o| {
            let rest: serde_json::Map<String, Value> = o
                .iter()
                .filter(|(k, _)| !envelope_skip.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(rest)
        });
        let data_only = matches!(class, MethodClass::DataOnly | MethodClass::Metadata);
        Call {
            event,
            tool,
            arguments,
            pointers,
            problems,
            envelope: envelope.filter(|e| e.as_object().is_some_and(|m| !m.is_empty())),
            data_only,
        }
    }

    /// Whether `method` is one the gate does not know and the policy lets pass
    /// (`methods.pass`).
    pub fn passes(&self, method: &str) -> bool {
        method_class(method) == MethodClass::Unknown && self.service.policy().method_passes(method)
    }

    /// Decide a client request (any method) and record the decision.
    pub async fn decide(&self, method: &str, params: Option<&Value>) -> Verdict {
        let call = self.call_for(method, params);
        self.service.decide(&self.subject, call).await
    }

    /// Decide a request retried with the person's answer to the gate's
    /// `input_required` result (see [`Service::decide_answered`]).
    pub async fn decide_answered(
        &self,
        method: &str,
        params: Option<&Value>,
        answered: conductor_gate::Answered,
    ) -> Verdict {
        let call = self.call_for(method, params);
        self.service
            .decide_answered(&self.subject, call, answered)
            .await
    }

    /// Decide the client's answer to a server request (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`): destination, data and flow checks on what
    /// the person or the client sends to the server.
    pub async fn decide_reply(&self, method: &str, answer: &Value) -> Verdict {
        let call = self.reply_call(method, answer);
        self.service.decide(&self.subject, call).await
    }

    /// The call to decide for the client's answer to the server's request `method`.
    pub fn reply_call(&self, method: &str, answer: &Value) -> Call {
        Call {
            event: format!("reply:{method}"),
            tool: self.qualified(&format!("reply:{method}")),
            arguments: json!({ "answer": answer }),
            pointers: Vec::new(),
            problems: Vec::new(),
            envelope: None,
            data_only: true,
        }
    }

    /// Blocking [`Gate::decide`] of a `tools/call` (for callers outside a runtime).
    pub fn decide_call(&self, params: Option<&Value>) -> Verdict {
        self.service
            .decide_blocking(&self.subject, self.call_for("tools/call", params))
    }

    /// Blocking [`Gate::decide`] of a resource request.
    pub fn decide_resource(&self, method: &str, params: Option<&Value>) -> Verdict {
        self.service
            .decide_blocking(&self.subject, self.call_for(method, params))
    }

    /// Record a decided method sent as a notification (no `id`): it is never
    /// forwarded (it could not be answered), and its record says why. Blocks.
    pub fn refuse_notification(&self, method: &str, params: Option<&Value>) {
        let call = self.call_for(method, params);
        conductor_gate::warn(&format!(
            "dropped a `{}` notification (no `id`): decided methods must be requests",
            conductor_types::display::shown(method, 64)
        ));
        let _ = self.service.refuse_blocking(
            &self.subject,
            call,
            input(
                RuleId::request("id"),
                format!(
                    "`{}` sent as a notification (no `id`) cannot be answered; it was not forwarded",
                    conductor_types::display::shown(method, 64)
                ),
            ),
        );
    }

    /// Process a `tools/list` result in place: pin every descriptor, learn destination
    /// fields, mark a changed tool, and (when configured) remove the tools the agent
    /// can never call. Returns whether the result was changed.
    pub fn process_tools_list(&self, result: &mut Value) -> bool {
        let policy = self.service.policy();
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return false;
        };
        let mut changed_any = false;
        for tool in tools.iter_mut() {
            let Some(name) = tool.get("name").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            let digest = descriptor_digest(tool);
            let outcome = self
                .service
                .pin(&self.subject, &name, &self.qualified(&name), &digest);
            let mut state = self.lock();
            let entry = state.entry(name.clone()).or_default();
            match outcome {
                PinOutcome::New => {
                    entry.paths = tool
                        .get("inputSchema")
                        .map(schema::destination_paths)
                        .unwrap_or_default();
                }
                PinOutcome::Same => {
                    if entry.paths.is_empty() {
                        entry.paths = tool
                            .get("inputSchema")
                            .map(schema::destination_paths)
                            .unwrap_or_default();
                    }
                }
                PinOutcome::Changed { first } => {
                    if entry.changed.is_none() {
                        entry.changed = Some((first, digest));
                    }
                }
            }
            if entry.changed.is_some() {
                // A rug-pulled tool's new description is never shown as if it were
                // the one first approved: it is marked, and calls to it are refused.
                if let Some(obj) = tool.as_object_mut() {
                    obj.insert(
                        "description".into(),
                        Value::String(format!(
                            "[conductor: the descriptor of `{}` changed during this session; calls to it are refused]",
                            conductor_types::display::shown(&name, 120)
                        )),
                    );
                    changed_any = true;
                }
            }
        }
        if !self.cfg.filter_tools {
            return changed_any;
        }
        let before = tools.len();
        tools.retain(|tool| {
            tool.get("name").and_then(Value::as_str).is_some_and(|n| {
                conductor_core::may_ever_call(&policy, &self.cfg.agent, &self.qualified(n))
            })
        });
        changed_any || tools.len() != before
    }

    /// Scan what the server sent and raise the session's labels with what was found.
    /// An error means the labels could not be stored: the message must not be
    /// delivered (the taint would be lost).
    pub fn label(&self, value: &Value) -> Result<Vec<String>, StoreError> {
        self.service.label(&self.subject, value)
    }

    /// [`Gate::label`], logging a failure (for callers that cannot withhold).
    pub fn label_result(&self, value: &Value) {
        if let Err(e) = self.label(value) {
            conductor_gate::warn(&format!("cannot record the labels of a result: {e}"));
        }
    }
}

/// The URIs of the resources a `prompts/get` answer embeds
/// (`result.messages[].content` of type `resource`, or a list of such contents).
pub fn embedded_resource_uris(answer: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(messages) = answer.pointer("/result/messages").and_then(Value::as_array) else {
        return out;
    };
    for m in messages {
        let contents: Vec<&Value> = match m.get("content") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(c) => vec![c],
            None => Vec::new(),
        };
        for c in contents {
            if c.get("type").and_then(Value::as_str) == Some("resource")
                && let Some(uri) = c.pointer("/resource/uri").and_then(Value::as_str)
            {
                out.push(uri.to_string());
            }
        }
    }
    out
}

fn input(rule: RuleId, message: String) -> Reason {
    Reason {
        check: Check::Input,
        rule,
        message,
    }
}

/// The JSON pointers of every member named `uri` (or elements of `uris` and
/// `resourceSubscriptions`) in `value`.
fn uri_pointers(value: &Value, prefix: &mut JsonPath, out: &mut Vec<JsonPath>, depth: usize) {
    if depth > 16 {
        return;
    }
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                prefix.push(Segment::Key(k.clone()));
                // `resourceSubscriptions`: the URIs of a 2026-07-28 `subscriptions/listen`
                // filter (`params.notifications`).
                if (k == "uri" || k == "uris" || k == "resourceSubscriptions") && !v.is_object() {
                    if let Value::Array(items) = v {
                        for i in 0..items.len() {
                            out.push(prefix.index(i));
                        }
                    } else {
                        out.push(prefix.clone());
                    }
                } else {
                    uri_pointers(v, prefix, out, depth + 1);
                }
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(Segment::Index(i));
                uri_pointers(v, prefix, out, depth + 1);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// The answer to a refused `tools/call`: a `CallToolResult` with `isError`.
///
/// `resultType: "complete"` is required by the 2026-07-28 revision (the Python SDK's
/// stateless client rejects a result without it) and ignored by 2025-11-25 clients.
pub fn refusal_result(decision: &Decision) -> Value {
    json!({
        "content": [{"type": "text", "text": refusal_text(decision)}],
        "isError": true,
        "resultType": "complete",
        "_meta": { META_KEY: decision },
    })
}

/// `denied by policy: <check> (<rule>): <message>; …` (or `requires approval: …`).
pub fn refusal_text(decision: &Decision) -> String {
    let head = if decision.decision == Effect::Approve {
        "requires approval"
    } else {
        "denied by policy"
    };
    let parts: Vec<String> = decision
        .reasons
        .iter()
        .map(|r| format!("{} ({}): {}", r.check.name(), r.rule, r.message))
        .collect();
    if parts.is_empty() {
        head.to_string()
    } else {
        format!("{head}: {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The 2026-07-28 `subscriptions/listen` names its resources in
    // `notifications.resourceSubscriptions`: every one is a destination of the decision
    // (without it, a listen's URIs were checked only when `destinations.scan` found them).
    #[test]
    fn every_uri_a_listen_subscribes_to_is_a_destination() {
        let params = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"},
            "notifications": {"toolsListChanged": true,
                              "resourceSubscriptions": ["note://a/1", "http://169.254.169.254/"]}});
        let mut pointers = Vec::new();
        uri_pointers(&params, &mut JsonPath::root(), &mut pointers, 0);
        let shown: Vec<String> = pointers.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "/notifications/resourceSubscriptions/0",
                "/notifications/resourceSubscriptions/1"
            ]
        );
    }
}
