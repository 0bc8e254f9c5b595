//! The gate: decides `tools/call` and `resources/read`, records every decision before
//! anything is forwarded, filters and pins `tools/list`, labels results.
//!
//! INVARIANT: every path out of [`Gate::decide_call`] and [`Gate::decide_read`] that
//! is not a committed `allow` is a refusal: a failed audit append, a changed tool
//! descriptor, a panic in the core (caught by the engine) all refuse the call.
//!
//! Everything here blocks (DNS through the resolver, scanning, the audit commit): the
//! engine calls it through `spawn_blocking`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use conductor_audit::{AuditStore, NewRecord};
use conductor_core::{Check, Decision, Effect, Reason, Request, World};
use conductor_net::Resolver;
use conductor_policy::Policy;
use conductor_scan::FingerprintKey;
use serde_json::{Value, json};
use sha2::Digest;

/// The key under which a refused call's decision is put in the result's `_meta`.
pub const META_KEY: &str = "dev.conductor/decision";

/// The tool-name part under which `resources/read` is decided: the request's tool is
/// `<server>.read_resource` with arguments `{"uri": …}` and `/uri` as a destination.
pub const READ_RESOURCE_TOOL: &str = "read_resource";

/// How arguments are stored in audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArgumentsMode {
    /// Every finding's span replaced by `[REDACTED:<label>]` (the default).
    #[default]
    Redacted,
    /// Not stored.
    None,
    /// Stored as received (secrets included: only for stores that are protected).
    Full,
}

/// What the gate is configured with.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub agent: String,
    /// Server id (`[a-z0-9_-]+`): tools are named `<server>.<tool>` in the policy.
    pub server: String,
    pub workflow: Option<String>,
    /// Remove tools the agent can never call from `tools/list` results.
    pub filter_tools: bool,
    pub arguments: ArgumentsMode,
}

/// A tool descriptor as first seen, and what was learned from it.
#[derive(Debug, Clone)]
struct ToolState {
    /// `sha256:<hex>` of the canonical descriptor at first sight.
    pin: String,
    /// The digest of the changed descriptor, once a change was seen (sticky).
    changed: Option<String>,
    /// Destination fields learned from the input schema.
    paths: Vec<Vec<Seg>>,
}

#[derive(Debug, Default)]
struct Session {
    /// Labels of data the session has received; only ever raised.
    labels: BTreeSet<String>,
    tools: HashMap<String, ToolState>,
}

/// One step of a path into the arguments learned from a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    /// Every element of an array.
    Each,
}

/// The outcome of a gated request.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Forward the request (the decision is `allow` and its record is committed).
    pub forward: bool,
    pub decision: Decision,
}

/// A decision whose audit record is submitted to the store but not yet known to be
/// committed: [`Submitted::verdict`] (async) or [`Submitted::wait`] (blocking) give the
/// [`Verdict`] once the commit has happened.
#[derive(Debug)]
pub struct Submitted {
    decision: Decision,
    tool: String,
    pending: conductor_audit::Pending,
}

impl Submitted {
    /// The verdict once the record is committed, awaited without blocking a thread.
    pub async fn verdict(self) -> Verdict {
        let Submitted {
            decision,
            tool,
            pending,
        } = self;
        let committed = pending.await;
        conclude(decision, &tool, committed.as_ref().map(|_| ()))
    }

    /// The verdict once the record is committed; blocks the calling thread.
    pub fn wait(self) -> Verdict {
        let Submitted {
            decision,
            tool,
            pending,
        } = self;
        let committed = pending.wait();
        conclude(decision, &tool, committed.as_ref().map(|_| ()))
    }
}

/// A decision with its audit record, not yet committed (see [`Gate::commit_here`]).
#[derive(Debug)]
pub struct Held {
    decision: Decision,
    tool: String,
    record: NewRecord,
}

/// INVARIANT: forward only an `allow` whose record is committed; a record that cannot
/// be committed turns the decision into a deny (check `audit`).
fn conclude(
    mut decision: Decision,
    tool: &str,
    committed: Result<(), &conductor_audit::AuditError>,
) -> Verdict {
    match committed {
        Ok(_) => Verdict {
            forward: decision.decision == Effect::Allow,
            decision,
        },
        Err(e) => {
            warn(&format!(
                "cannot record the decision on `{tool}`; the call is refused: {e}"
            ));
            deny(
                &mut decision,
                Check::Audit,
                "audit",
                "the decision could not be recorded in the audit store".into(),
            );
            Verdict {
                forward: false,
                decision,
            }
        }
    }
}

/// The gate of one session.
pub struct Gate {
    cfg: GateConfig,
    policy: RwLock<Arc<Policy>>,
    resolver: Arc<dyn Resolver + Send + Sync>,
    key: Arc<FingerprintKey>,
    audit: Arc<AuditStore>,
    session_id: String,
    state: Mutex<Session>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("cfg", &self.cfg)
            .field("session", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl Gate {
    pub fn new(
        cfg: GateConfig,
        policy: Policy,
        resolver: Arc<dyn Resolver + Send + Sync>,
        key: Arc<FingerprintKey>,
        audit: Arc<AuditStore>,
    ) -> Gate {
        Gate {
            cfg,
            policy: RwLock::new(Arc::new(policy)),
            resolver,
            key,
            audit,
            session_id: new_session_id(),
            state: Mutex::new(Session::default()),
        }
    }

    pub fn config(&self) -> &GateConfig {
        &self.cfg
    }

    /// The session id recorded with every decision.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn audit(&self) -> &Arc<AuditStore> {
        &self.audit
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Put a new policy in force; decisions already running finish under the old one.
    pub fn swap_policy(&self, policy: Policy) {
        let new = Arc::new(policy);
        match self.policy.write() {
            Ok(mut p) => *p = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// The session's labels (sorted).
    pub fn session_labels(&self) -> Vec<String> {
        self.lock().labels.iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Session> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn qualified(&self, tool: &str) -> String {
        format!("{}.{tool}", self.cfg.server)
    }

    /// Decide a `tools/call` from its `params` and record the decision. Blocks.
    pub fn decide_call(&self, params: Option<&Value>) -> Verdict {
        let (policy, request, decision, started) = self.decide_call_inner(params);
        self.record("tools/call", &policy, &request, decision, started)
    }

    fn decide_call_inner(
        &self,
        params: Option<&Value>,
    ) -> (Arc<Policy>, Request, Decision, Instant) {
        let started = Instant::now();
        let name = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let arguments = match params.and_then(|p| p.get("arguments")) {
            None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
            Some(a) => a.clone(),
        };
        let tool = self.qualified(name);
        let (labels, tool_state) = {
            let s = self.lock();
            (
                s.labels.iter().cloned().collect::<Vec<_>>(),
                s.tools.get(name).cloned(),
            )
        };
        let pointers = tool_state
            .as_ref()
            .map(|t| expand_paths(&t.paths, &arguments))
            .unwrap_or_default();
        let request = Request {
            agent: self.cfg.agent.clone(),
            tool: tool.clone(),
            arguments,
            workflow: self.cfg.workflow.clone(),
            session: Some(self.session_id.clone()),
            session_labels: labels,
        };
        let policy = self.policy();
        let mut decision = self.decide(&policy, &request, &pointers);
        if let Some(k) = params
            .and_then(Value::as_object)
            .and_then(|p| crate::framing::ambiguous_member(p, &["name", "arguments"]))
        {
            deny(
                &mut decision,
                Check::Input,
                "request.tool",
                format!(
                    "`tools/call` params member `{k}` differs from `name` or `arguments` only in case"
                ),
            );
        }
        if params.is_some_and(|p| !p.is_object())
            || params
                .and_then(|p| p.get("name"))
                .is_some_and(|n| !n.is_string())
        {
            deny(
                &mut decision,
                Check::Input,
                "request.tool",
                "`tools/call` params need a string `name`".into(),
            );
        }
        if let Some(t) = &tool_state
            && let Some(now) = &t.changed
        {
            deny(
                &mut decision,
                Check::Pin,
                &format!("pin.{tool}"),
                format!(
                    "the descriptor of `{name}` changed during the session (first seen {}, now {now}); calls to it are refused until the session restarts",
                    t.pin
                ),
            );
        }
        (policy, request, decision, started)
    }

    /// Record a gated method sent as a notification (no `id`): it is never forwarded
    /// (it could not be answered), and its record says why. Blocks.
    pub fn refuse_notification(&self, method: &str, params: Option<&Value>) {
        let mut verdict = if method == "tools/call" {
            self.decide_call_inner(params)
        } else {
            self.decide_read_inner(method, params)
        };
        deny(
            &mut verdict.2,
            Check::Input,
            "request.id",
            format!(
                "`{method}` sent as a notification (no `id`) cannot be answered; it was not forwarded"
            ),
        );
        warn(&format!(
            "dropped a `{method}` notification (no `id`): gated methods must be requests"
        ));
        let (policy, request, decision, started) = verdict;
        let _ = self.record(method, &policy, &request, decision, started);
    }

    /// Decide a `resources/read` from its `params` and record the decision. Blocks.
    pub fn decide_read(&self, params: Option<&Value>) -> Verdict {
        self.decide_resource("resources/read", params)
    }

    /// Decide a request that makes the server read a resource by URI
    /// (`resources/read`, `resources/subscribe`) — both as the tool
    /// `<server>.read_resource` — and record the decision under `method`. Blocks.
    pub fn decide_resource(&self, method: &str, params: Option<&Value>) -> Verdict {
        let (policy, request, decision, started) = self.decide_read_inner(method, params);
        self.record(method, &policy, &request, decision, started)
    }

    fn decide_read_inner(
        &self,
        method: &str,
        params: Option<&Value>,
    ) -> (Arc<Policy>, Request, Decision, Instant) {
        let started = Instant::now();
        let uri = params
            .and_then(|p| p.get("uri"))
            .cloned()
            .unwrap_or(Value::Null);
        let request = Request {
            agent: self.cfg.agent.clone(),
            tool: self.qualified(READ_RESOURCE_TOOL),
            arguments: json!({ "uri": uri }),
            workflow: self.cfg.workflow.clone(),
            session: Some(self.session_id.clone()),
            session_labels: self.session_labels(),
        };
        let policy = self.policy();
        let mut decision = self.decide(&policy, &request, &["/uri".to_string()]);
        if let Some(k) = params
            .and_then(Value::as_object)
            .and_then(|p| crate::framing::ambiguous_member(p, &["uri"]))
        {
            deny(
                &mut decision,
                Check::Input,
                "request.uri",
                format!("`{method}` params member `{k}` differs from `uri` only in case"),
            );
        }
        if !uri.is_string() {
            deny(
                &mut decision,
                Check::Input,
                "request.uri",
                format!("`{method}` params need a string `uri`"),
            );
        }
        (policy, request, decision, started)
    }

    fn decide(&self, policy: &Policy, request: &Request, pointers: &[String]) -> Decision {
        let world = World {
            resolver: &*self.resolver,
            fingerprint_key: &self.key,
        };
        conductor_core::decide_with_pointers(policy, request, pointers, &world)
    }

    /// Decide a `tools/call` like [`Gate::decide_call`], but only hand its record to the
    /// audit store: the [`Submitted`] gives the verdict once the record is committed.
    /// Blocks only if the resolver does (never with a resolver that does no lookups).
    pub fn decide_call_submitted(&self, params: Option<&Value>) -> Submitted {
        let (policy, request, decision, started) = self.decide_call_inner(params);
        self.submit_record("tools/call", &policy, &request, decision, started)
    }

    /// [`Gate::decide_resource`], with the record submitted (see
    /// [`Gate::decide_call_submitted`]).
    pub fn decide_resource_submitted(&self, method: &str, params: Option<&Value>) -> Submitted {
        let (policy, request, decision, started) = self.decide_read_inner(method, params);
        self.submit_record(method, &policy, &request, decision, started)
    }

    /// Commit the record of a decision; a record that cannot be committed turns the
    /// decision into a deny (check `audit`).
    fn record(
        &self,
        event: &str,
        policy: &Policy,
        request: &Request,
        decision: Decision,
        started: Instant,
    ) -> Verdict {
        self.submit_record(event, policy, request, decision, started)
            .wait()
    }

    /// Hand the record of a decision to the audit store without waiting for its commit.
    fn submit_record(
        &self,
        event: &str,
        policy: &Policy,
        request: &Request,
        decision: Decision,
        started: Instant,
    ) -> Submitted {
        let record = self.new_record(event, policy, request, &decision, started);
        Submitted {
            pending: self.audit.submit(record),
            decision,
            tool: request.tool.clone(),
        }
    }

    /// Decide a `tools/call` like [`Gate::decide_call`] and build its record, without
    /// committing it: commit with [`Gate::commit_here`] (several at once).
    pub fn decide_call_held(&self, params: Option<&Value>) -> Held {
        let (policy, request, decision, started) = self.decide_call_inner(params);
        let record = self.new_record("tools/call", &policy, &request, &decision, started);
        Held {
            decision,
            tool: request.tool,
            record,
        }
    }

    /// [`Gate::decide_resource`], held like [`Gate::decide_call_held`].
    pub fn decide_resource_held(&self, method: &str, params: Option<&Value>) -> Held {
        let (policy, request, decision, started) = self.decide_read_inner(method, params);
        let record = self.new_record(method, &policy, &request, &decision, started);
        Held {
            decision,
            tool: request.tool,
            record,
        }
    }

    /// Commit the records of held decisions in ONE transaction on this thread (it blocks
    /// for the commit) and give their verdicts, in order. A failed commit refuses them
    /// all (check `audit`).
    pub fn commit_here(&self, held: Vec<Held>) -> Vec<Verdict> {
        let records: Vec<NewRecord> = held.iter().map(|h| h.record.clone()).collect();
        match self.audit.append_many_here(&records) {
            Ok(_) => held
                .into_iter()
                .map(|h| conclude(h.decision, &h.tool, Ok(())))
                .collect(),
            Err(e) => held
                .into_iter()
                .map(|h| conclude(h.decision, &h.tool, Err(&e)))
                .collect(),
        }
    }

    fn new_record(
        &self,
        event: &str,
        policy: &Policy,
        request: &Request,
        decision: &Decision,
        started: Instant,
    ) -> NewRecord {
        let arguments = match self.cfg.arguments {
            ArgumentsMode::None => None,
            ArgumentsMode::Full => Some(request.arguments.clone()),
            ArgumentsMode::Redacted => Some(conductor_scan::redact(
                &request.arguments,
                &decision.findings,
            )),
        };
        let digest = serde_json::to_value(request)
            .map(|v| conductor_audit::request_digest(&v))
            .unwrap_or_default();
        NewRecord {
            event: event.to_string(),
            agent: request.agent.clone(),
            session: request.session.clone(),
            workflow: request.workflow.clone(),
            server: Some(self.cfg.server.clone()),
            tool: request.tool.clone(),
            action: conductor_core::action_of(policy, &request.tool).to_string(),
            decision: effect_name(decision.decision).to_string(),
            reasons: serde_json::to_value(&decision.reasons).unwrap_or(Value::Null),
            destinations: serde_json::to_value(&decision.destinations).unwrap_or(Value::Null),
            findings: serde_json::to_value(&decision.findings).unwrap_or(Value::Null),
            policy: decision.policy.clone(),
            request_digest: digest,
            arguments,
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// Process a `tools/list` result in place: pin every descriptor, learn destination
    /// fields, and (when configured) remove the tools the agent can never call.
    /// Returns whether the result was changed. Blocks (a changed pin is recorded).
    pub fn process_tools_list(&self, result: &mut Value) -> bool {
        let policy = self.policy();
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return false;
        };
        let mut changes: Vec<(String, String, String)> = Vec::new();
        {
            let mut s = self.lock();
            for tool in tools.iter() {
                let Some(name) = tool.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let digest = descriptor_digest(tool);
                match s.tools.get_mut(name) {
                    Some(t) => {
                        if t.pin != digest && t.changed.as_deref() != Some(digest.as_str()) {
                            changes.push((name.to_string(), t.pin.clone(), digest.clone()));
                            t.changed = Some(digest);
                        }
                    }
                    None => {
                        let mut paths = Vec::new();
                        if let Some(schema) = tool.get("inputSchema") {
                            learn_paths(schema, &mut Vec::new(), &mut paths, 0);
                        }
                        s.tools.insert(
                            name.to_string(),
                            ToolState {
                                pin: digest,
                                changed: None,
                                paths,
                            },
                        );
                    }
                }
            }
        }
        for (name, old, new) in changes {
            self.record_pin_change(&policy, &name, &old, &new);
        }
        if !self.cfg.filter_tools {
            return false;
        }
        let before = tools.len();
        tools.retain(|tool| {
            tool.get("name").and_then(Value::as_str).is_some_and(|n| {
                conductor_core::may_ever_call(&policy, &self.cfg.agent, &self.qualified(n))
            })
        });
        tools.len() != before
    }

    fn record_pin_change(&self, policy: &Policy, name: &str, old: &str, new: &str) {
        let tool = self.qualified(name);
        let message = format!(
            "the descriptor of `{name}` changed during the session (first seen {old}, now {new}); calls to it are refused"
        );
        warn(&message);
        let record = NewRecord {
            event: "pin-change".into(),
            agent: self.cfg.agent.clone(),
            session: Some(self.session_id.clone()),
            workflow: self.cfg.workflow.clone(),
            server: Some(self.cfg.server.clone()),
            tool: tool.clone(),
            action: conductor_core::action_of(policy, &tool).to_string(),
            decision: "deny".into(),
            reasons: json!([{"check": "pin", "rule": format!("pin.{tool}"), "message": message}]),
            destinations: json!([]),
            findings: json!([]),
            policy: policy.sha256().to_string(),
            request_digest: new.to_string(),
            arguments: None,
            latency_us: 0,
        };
        if let Err(e) = self.audit.append(record) {
            // The refusal stands in memory either way.
            warn(&format!("cannot record the pin change of `{tool}`: {e}"));
        }
    }

    /// Scan a tool result and raise the session's labels with what was found. Blocks.
    pub fn label_result(&self, result: &Value) {
        let policy = self.policy();
        let world = World {
            resolver: &*self.resolver,
            fingerprint_key: &self.key,
        };
        let labels = conductor_core::label_result(&policy, result, &world);
        if !labels.is_empty() {
            // INVARIANT: labels are only ever added.
            self.lock().labels.extend(labels);
        }
    }
}

fn effect_name(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Approve => "approve",
        Effect::Deny => "deny",
    }
}

fn deny(decision: &mut Decision, check: Check, rule: &str, message: String) {
    decision.decision = Effect::Deny;
    decision.reasons.push(Reason {
        check,
        rule: rule.to_string(),
        message,
    });
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

/// `sha256:<hex>` of the canonical JSON of a whole tool descriptor except `_meta`:
/// name, description, input schema and annotations, and also `title`, `outputSchema`,
/// `icons` and anything a later protocol revision adds — every field the model or the
/// client may act on. A server that changes any of them mid-session is a rug pull.
pub fn descriptor_digest(tool: &Value) -> String {
    let pinned = match tool {
        Value::Object(m) => {
            let mut d = m.clone();
            d.remove("_meta");
            Value::Object(d)
        }
        other => other.clone(),
    };
    let text = conductor_audit::canonical_json(&pinned);
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

const MAX_SCHEMA_DEPTH: usize = 16;

const URI_FORMATS: [&str; 5] = ["uri", "uri-reference", "iri", "iri-reference", "url"];
const COMBINATORS: [&str; 3] = ["anyOf", "oneOf", "allOf"];

/// `schema` with a local `$ref` (`#/$defs/…`, `#/definitions/…`) resolved against
/// `root`; anything else as is.
fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    let mut s = schema;
    for _ in 0..MAX_SCHEMA_DEPTH {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with('#') => match root.pointer(r.get(1..).unwrap_or("")) {
                Some(target) => s = target,
                None => break,
            },
            _ => break,
        }
    }
    s
}

/// Whether `schema` (or one of its `anyOf`/`oneOf`/`allOf` branches, `$ref`s
/// resolved) has a URI format.
fn has_uri_format(schema: &Value, root: &Value, depth: usize) -> bool {
    if depth > MAX_SCHEMA_DEPTH {
        return false;
    }
    let schema = resolve(schema, root);
    if schema
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| URI_FORMATS.contains(&f))
    {
        return true;
    }
    COMBINATORS.iter().any(|c| {
        schema
            .get(*c)
            .and_then(Value::as_array)
            .is_some_and(|bs| bs.iter().any(|b| has_uri_format(b, root, depth + 1)))
    })
}

fn is_destination_field(name: &str, schema: &Value, root: &Value) -> bool {
    if has_uri_format(schema, root, 0) {
        return true;
    }
    let n: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    matches!(
        n.as_str(),
        "url" | "uri" | "endpoint" | "host" | "hostname" | "href" | "baseurl"
    )
}

/// Learn the paths of destination fields from a JSON Schema (properties, nested
/// objects, array items, `anyOf`/`oneOf`/`allOf` branches, local `$ref`s).
fn learn_paths(schema: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>, depth: usize) {
    learn(schema, schema, prefix, out, depth);
}

fn learn(
    schema: &Value,
    root: &Value,
    prefix: &mut Vec<Seg>,
    out: &mut Vec<Vec<Seg>>,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    let schema = resolve(schema, root);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            prefix.push(Seg::Key(name.clone()));
            if is_destination_field(name, sub, root) && !out.contains(prefix) {
                out.push(prefix.clone());
            }
            learn(sub, root, prefix, out, depth + 1);
            prefix.pop();
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        prefix.push(Seg::Each);
        if has_uri_format(items, root, 0) && !out.contains(prefix) {
            out.push(prefix.clone());
        }
        learn(items, root, prefix, out, depth + 1);
        prefix.pop();
    }
    for c in COMBINATORS {
        if let Some(branches) = schema.get(c).and_then(Value::as_array) {
            for b in branches {
                learn(b, root, prefix, out, depth + 1);
            }
        }
    }
}

/// The JSON pointers of learned fields present in `arguments`.
fn expand_paths(paths: &[Vec<Seg>], arguments: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for path in paths {
        expand(path, arguments, String::new(), &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn expand(path: &[Seg], value: &Value, pointer: String, out: &mut Vec<String>) {
    let Some((first, rest)) = path.split_first() else {
        if !value.is_null() {
            out.push(pointer);
        }
        return;
    };
    match first {
        Seg::Key(k) => {
            if let Some(v) = value.get(k) {
                expand(rest, v, format!("{pointer}/{}", escape(k)), out);
            }
        }
        Seg::Each => {
            if let Some(items) = value.as_array() {
                for (i, v) in items.iter().enumerate() {
                    expand(rest, v, format!("{pointer}/{i}"), out);
                }
            }
        }
    }
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn new_session_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!(
        "{now}:{}:{}:{:p}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        &COUNTER
    );
    let h = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
    h.get(..32).unwrap_or(&h).to_string()
}

pub(crate) fn warn(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "conductor: {message}");
}

/// Watch the policy file: every `interval`, when its modification time or length
/// changed (or its content hash, checked on any change), load it; a valid new
/// version is put in force, an invalid one is reported (`report` gets the rendered
/// diagnostics) and the last good one stays. Runs until aborted.
pub async fn watch_policy(
    gate: Arc<Gate>,
    path: PathBuf,
    interval: Duration,
    report: Arc<dyn Fn(String) + Send + Sync>,
) {
    let mut last = stamp(&path);
    let mut last_bad: Option<String> = None;
    loop {
        tokio::time::sleep(interval).await;
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        let p = path.clone();
        let loaded = tokio::task::spawn_blocking(move || conductor_policy::load_file(&p)).await;
        match loaded {
            Ok(Ok(policy)) => {
                last_bad = None;
                if policy.sha256() != gate.policy().sha256() {
                    let sha = policy.sha256().to_string();
                    gate.swap_policy(policy);
                    report(format!("policy `{}` reloaded ({sha})", path.display()));
                }
            }
            Ok(Err(e)) => {
                let rendered = e.render(false);
                if last_bad.as_deref() != Some(rendered.as_str()) {
                    report(format!(
                        "policy `{}` changed but is invalid; the last good version stays in force:\n{}",
                        path.display(),
                        rendered.trim_end()
                    ));
                    last_bad = Some(rendered);
                }
            }
            Err(_) => report("policy reload failed; the last good version stays in force".into()),
        }
    }
}

/// What identifies a version of the file cheaply: modification time, length, and
/// the hash of the content.
fn stamp(path: &Path) -> Option<(Option<std::time::SystemTime>, u64, String)> {
    let meta = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    Some((
        meta.modified().ok(),
        meta.len(),
        hex::encode(sha2::Sha256::digest(&bytes)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_fields_are_learned() {
        let schema = json!({"type":"object","properties":{
            "url": {"type":"string"},
            "q": {"type":"string"},
            "target": {"type":"string","format":"uri"},
            "opts": {"type":"object","properties":{"Base_URL":{"type":"string"},"a/b":{"format":"iri"}}},
            "list": {"type":"array","items":{"type":"string","format":"uri"}},
            "objs": {"type":"array","items":{"type":"object","properties":{"href":{"type":"string"}}}}
        }});
        let mut paths = Vec::new();
        learn_paths(&schema, &mut Vec::new(), &mut paths, 0);
        let args = json!({"url":"u","q":"x","target":"t","opts":{"Base_URL":"b","a/b":"c"},
                          "list":["x","y"],"objs":[{"href":"h"},{"nohref":1}]});
        assert_eq!(
            expand_paths(&paths, &args),
            vec![
                "/list/0",
                "/list/1",
                "/objs/0/href",
                "/opts/Base_URL",
                "/opts/a~1b",
                "/target",
                "/url"
            ]
        );
    }

    #[test]
    fn schema_combinators_and_refs_are_followed() {
        // The shapes Pydantic v2 writes: Optional[AnyUrl], nested models by $ref.
        let schema = json!({"type":"object","properties":{
            "target": {"anyOf":[{"type":"string","format":"uri","minLength":1},{"type":"null"}]},
            "server": {"$ref":"#/$defs/Server"},
            "mirrors": {"type":"array","items":{"$ref":"#/$defs/Url"}},
            "loop": {"$ref":"#/$defs/Loop"}
        },"$defs":{
            "Server":{"type":"object","properties":{"address":{"allOf":[{"$ref":"#/$defs/Url"}]}}},
            "Url":{"type":"string","format":"uri"},
            "Loop":{"$ref":"#/$defs/Loop"}
        }});
        let mut paths = Vec::new();
        learn_paths(&schema, &mut Vec::new(), &mut paths, 0);
        let args = json!({"target":"t","server":{"address":"a"},"mirrors":["m"],"loop":{}});
        assert_eq!(
            expand_paths(&paths, &args),
            vec!["/mirrors/0", "/server/address", "/target"]
        );
    }

    #[test]
    fn digest_covers_every_field_but_meta() {
        let a = json!({"name":"t","description":"d","inputSchema":{},"title":"x","_meta":{"n":1}});
        let b = json!({"name":"t","description":"d","inputSchema":{},"title":"x","_meta":{"n":2}});
        let c = json!({"name":"t","description":"d2","inputSchema":{},"title":"x"});
        // Review finding: a changed `title` or `outputSchema` was not a rug pull.
        let d = json!({"name":"t","description":"d","inputSchema":{},"title":"y"});
        let e = json!({"name":"t","description":"d","inputSchema":{},"title":"x",
                       "outputSchema":{"type":"object"}});
        assert_eq!(descriptor_digest(&a), descriptor_digest(&b));
        for changed in [&c, &d, &e] {
            assert_ne!(descriptor_digest(&a), descriptor_digest(changed));
        }
    }
}
