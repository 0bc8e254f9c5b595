//! The AuthZEN Authorization API 1.0 decision endpoints on `serve`:
//! `POST /access/v1/evaluation`, `POST /access/v1/evaluations`,
//! `GET /.well-known/authzen-configuration`, and an OPA-style shim
//! `POST /v1/data/conductor/allow`.
//!
//! Mapping (DESIGN.md, "AuthZEN 1.0 mapping"): `subject` `{type: "agent", id}`;
//! `action` `{name: <MCP method>}` (`tools/call`, or another method the gate decides);
//! `resource` `{type: "tool", id: "<server>.<tool>", properties: {arguments}}` for
//! `tools/call` (`type: "prompt"` for `prompts/get`; `type: "server"`, `id: "<server>"`,
//! `properties` = the method's params for the others); `context` `{workflow, session,
//! session_labels}`. A deny (or an approval requirement) is HTTP 200 `{"decision":
//! false, "context": {"reasons": […], …}}`; HTTP errors are protocol errors only.
//!
//! INVARIANT: nothing here decides. Every evaluation is built into the MCP message it
//! stands for and decided and recorded by the shared gate service
//! ([`GateEnv::evaluate`]) — the path an MCP `tools/call` takes — before it is answered.
//!
//! INVARIANT: what the gate decides is what every reader of the request sees: a body
//! with duplicate member names, or names equal under case folding, at any depth, is
//! refused (400), never read one way here and another way by the caller's runtime.
//!
//! INVARIANT: a caller asks only for itself, or for agents the gateway file lets it
//! speak for (`authzen.callers`); anything else is 403 and decides nothing.
//!
//! INVARIANT: no message of this module quotes a value from the request: errors name
//! the field and what it must be (a request may carry secrets anywhere).

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use conductor_core::{Decision, Effect};
use conductor_mcp::gate::{MethodClass, method_class};
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};

use crate::auth::{Authenticated, ConnInfo};
use crate::config::GatewayConfig;
use crate::gate_glue::Evaluation;
use crate::http::{St, authenticate_request, counted, hygiene};

/// Evaluations one `/access/v1/evaluations` request may hold.
pub const MAX_EVALUATIONS: usize = 1000;
/// Evaluations of one `execute_all` request decided at once.
const PARALLEL: usize = 16;
/// Longest `context.session` accepted, in bytes.
const MAX_SESSION_BYTES: usize = 256;
/// Longest agent id, workflow, server id or label accepted, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// The routes of the decision API (merged into serve's router).
pub(crate) fn routes() -> Router<St> {
    Router::new()
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .route("/.well-known/authzen-configuration", get(configuration))
        .route("/v1/data/conductor/allow", post(opa_allow))
}

// ------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------

/// A protocol error: an HTTP status and a message naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Problem {
    pub status: u16,
    pub message: String,
}

impl Problem {
    fn bad(message: impl Into<String>) -> Problem {
        Problem {
            status: 400,
            message: message.into(),
        }
    }

    fn forbidden(message: impl Into<String>) -> Problem {
        Problem {
            status: 403,
            message: message.into(),
        }
    }

    /// The per-entry form (`evaluations`): a closed decision carrying the error.
    fn as_entry(&self) -> Value {
        json!({"decision": false, "context": {"error": {"status": self.status, "message": self.message}}})
    }
}

// ------------------------------------------------------------------------------------
// Reading an evaluation
// ------------------------------------------------------------------------------------

/// One evaluation, read and checked; `agent` still has to be one the caller may
/// speak for.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub agent: String,
    pub method: String,
    pub server: String,
    pub params: Value,
    pub workflow: Option<String>,
    pub session: Option<String>,
    pub labels: Vec<String>,
}

fn object<'a>(
    v: Option<&'a Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, Problem> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(Problem::bad(format!("`{field}` must be an object"))),
    }
}

fn required<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a Map<String, Value>, Problem> {
    object(v, field)?.ok_or_else(|| Problem::bad(format!("missing `{field}`")))
}

fn name_like(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_BYTES && !s.chars().any(char::is_control)
}

fn string<'a>(m: &'a Map<String, Value>, field: &str, key: &str) -> Result<&'a str, Problem> {
    match m.get(key) {
        None | Some(Value::Null) => Err(Problem::bad(format!("missing `{field}.{key}`"))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Problem::bad(format!("`{field}.{key}` must be a string"))),
    }
}

fn optional_string(
    m: Option<&Map<String, Value>>,
    field: &str,
    key: &str,
) -> Result<Option<String>, Problem> {
    match m.and_then(|m| m.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if name_like(s) => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(Problem::bad(format!(
            "`{field}.{key}` must be a non-empty string of at most {MAX_NAME_BYTES} bytes without control characters"
        ))),
        Some(_) => Err(Problem::bad(format!("`{field}.{key}` must be a string"))),
    }
}

/// The resource type each method class is asked about.
fn resource_type(class: MethodClass) -> Option<&'static str> {
    match class {
        MethodClass::ToolCall => Some("tool"),
        MethodClass::Prompt => Some("prompt"),
        // An unknown method is refused by the gate whatever its resource says.
        MethodClass::Unknown => None,
        _ => Some("server"),
    }
}

/// Read one evaluation (`prefix` names where it sits, for messages).
pub fn parse(v: &Value) -> Result<Parsed, Problem> {
    let Value::Object(top) = v else {
        return Err(Problem::bad("an evaluation is a json object"));
    };
    let subject = required(top.get("subject"), "subject")?;
    let action = required(top.get("action"), "action")?;
    let resource = required(top.get("resource"), "resource")?;
    let context = object(top.get("context"), "context")?;

    if string(subject, "subject", "type")? != "agent" {
        return Err(Problem::bad("`subject.type` must be `agent`"));
    }
    let agent = string(subject, "subject", "id")?;
    if !name_like(agent) {
        return Err(Problem::bad(format!(
            "`subject.id` must be a non-empty agent id of at most {MAX_NAME_BYTES} bytes without control characters"
        )));
    }
    object(subject.get("properties"), "subject.properties")?;

    let method = string(action, "action", "name")?;
    object(action.get("properties"), "action.properties")?;
    let class = method_class(method);

    let rtype = string(resource, "resource", "type")?;
    let id = string(resource, "resource", "id")?;
    let properties = object(resource.get("properties"), "resource.properties")?;
    if let Some(want) = resource_type(class)
        && rtype != want
    {
        // (The method is a known one here: it may be shown.)
        return Err(Problem::bad(format!(
            "`resource.type` must be `{want}` for action `{method}`"
        )));
    }
    let (server, params) = match class {
        MethodClass::ToolCall | MethodClass::Prompt => {
            // INVARIANT: the server is the part before the first `.` (server ids have
            // none), as `conductor check` and the gateway read `<server>.<tool>`.
            let (server, name) = id.split_once('.').unwrap_or((id, ""));
            let mut params = properties.cloned().unwrap_or_default();
            match params.get("arguments") {
                None | Some(Value::Null) | Some(Value::Object(_)) => {}
                Some(_) => {
                    return Err(Problem::bad(
                        "`resource.properties.arguments` must be an object",
                    ));
                }
            }
            // INVARIANT: one name per call: a `name` property that says otherwise than
            // the id is ambiguous, not overridden.
            if params.get("name").is_some_and(|n| n.as_str() != Some(name)) {
                return Err(Problem::bad(
                    "`resource.properties.name` disagrees with `resource.id`; leave it out",
                ));
            }
            params.insert("name".into(), Value::String(name.to_string()));
            (server.to_string(), Value::Object(params))
        }
        _ => {
            let server = id.split_once('.').map_or(id, |(s, _)| s);
            (
                server.to_string(),
                Value::Object(properties.cloned().unwrap_or_default()),
            )
        }
    };
    if server.len() > MAX_NAME_BYTES {
        return Err(Problem::bad(format!(
            "the server part of `resource.id` is longer than {MAX_NAME_BYTES} bytes"
        )));
    }

    let workflow = optional_string(context, "context", "workflow")?;
    let session = match context.and_then(|c| c.get("session")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= MAX_SESSION_BYTES
                && !s.chars().any(char::is_control) =>
        {
            Some(s.clone())
        }
        Some(Value::String(_)) => {
            return Err(Problem::bad(format!(
                "`context.session` must be a non-empty string of at most {MAX_SESSION_BYTES} bytes without control characters"
            )));
        }
        Some(_) => return Err(Problem::bad("`context.session` must be a string")),
    };
    let labels = match context.and_then(|c| c.get("session_labels")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for l in items {
                match l {
                    Value::String(s) if name_like(s) => out.push(s.clone()),
                    _ => {
                        return Err(Problem::bad(
                            "`context.session_labels` must be an array of label names",
                        ));
                    }
                }
            }
            out
        }
        Some(_) => {
            return Err(Problem::bad(
                "`context.session_labels` must be an array of label names",
            ));
        }
    };
    Ok(Parsed {
        agent: agent.to_string(),
        method: method.to_string(),
        server,
        params,
        workflow,
        session,
        labels,
    })
}

/// The request body as one JSON object.
///
/// INVARIANT: read strictly (see the module docs); a problem never quotes the body.
pub(crate) fn body_object(h: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, Problem> {
    let json_type = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !json_type {
        return Err(Problem::bad("the body must be `application/json`"));
    }
    match conductor_mcp::strict::parse(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Problem::bad("the body must be a json object")),
        Err(e) if e.classify() == serde_json::error::Category::Data => Err(Problem::bad(
            "ambiguous json: an object has a member name twice, or two names equal under case folding (readers would disagree on its value)",
        )),
        Err(e) => Err(Problem::bad(format!(
            "the body is not json: {} at line {} column {}",
            match e.classify() {
                serde_json::error::Category::Eof => "it ends early",
                _ => "syntax error",
            },
            e.line(),
            e.column()
        ))),
    }
}

// ------------------------------------------------------------------------------------
// Deciding
// ------------------------------------------------------------------------------------

/// The decision in AuthZEN form: `true` only for an allow (whose record is committed).
pub fn decision_json(d: &Decision) -> Value {
    if d.decision == Effect::Allow {
        // A permit carries no context: a PEP may reject a permit whose context it does
        // not understand.
        return json!({"decision": true});
    }
    json!({"decision": false, "context": {
        "decision": conductor_gate::effect_name(d.decision),
        "reasons": d.reasons,
        "destinations": d.destinations,
        "findings": d.findings,
        "policy": d.policy,
    }})
}

/// What the audit record says of who asked: the caller's proof (never the credential)
/// and, under `caller`, the agent it authenticated as.
fn auth_json(caller: &Authenticated) -> Value {
    match caller.proof_json() {
        Value::Object(mut m) => {
            m.insert("caller".into(), Value::String(caller.agent.clone()));
            Value::Object(m)
        }
        other => json!({"caller": caller.agent, "proofs": other}),
    }
}

/// Decide one parsed evaluation for `caller`.
async fn decide(
    st: &St,
    caller: &Authenticated,
    cfg: &GatewayConfig,
    p: Parsed,
) -> Result<Decision, Problem> {
    if !cfg.authzen.may_evaluate_for(&caller.agent, &p.agent) {
        return Err(Problem::forbidden(
            "the caller may not ask for decisions on behalf of this agent (see `authzen.callers` in the gateway file)",
        ));
    }
    let started = Instant::now();
    let d = st
        .app
        .gates
        .evaluate(Evaluation {
            agent: p.agent,
            server: p.server,
            workflow: p.workflow,
            session: p.session,
            method: p.method,
            params: p.params,
            labels: p.labels,
            auth: Some(auth_json(caller)),
        })
        .await;
    let m = &st.app.metrics;
    m.call(
        "authzen",
        "evaluation",
        conductor_gate::effect_name(d.decision),
        started.elapsed(),
    );
    for r in &d.reasons {
        m.refusal("authzen", r.check.name());
    }
    Ok(d)
}

/// Evaluate one entry, errors in the entry's form.
async fn entry(st: &St, caller: &Authenticated, cfg: &GatewayConfig, v: &Value) -> (bool, Value) {
    let parsed = match parse(v) {
        Ok(p) => p,
        Err(p) => return (false, p.as_entry()),
    };
    match decide(st, caller, cfg, parsed).await {
        Ok(d) => (d.decision == Effect::Allow, decision_json(&d)),
        Err(p) => (false, p.as_entry()),
    }
}

// ------------------------------------------------------------------------------------
// Handlers
// ------------------------------------------------------------------------------------

/// What every decision endpoint checks first: Host/Origin, the caller, `X-Request-ID`.
struct Front {
    cfg: Arc<GatewayConfig>,
    caller: Authenticated,
    request_id: Option<HeaderValue>,
}

/// INVARIANT: every decision endpoint checks `Host`/`Origin` and authenticates the
/// caller (401 otherwise) before it reads the body.
async fn front(st: &St, h: &HeaderMap, conn: &ConnInfo) -> Result<Front, Response> {
    let cfg = st.app.config();
    hygiene(st, &cfg, h)?;
    let mut ids = h.get_all("x-request-id").iter();
    let request_id = ids.next().cloned();
    if ids.next().is_some() {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "`X-Request-ID` is given more than once",
            None,
        ));
    }
    let caller = authenticate_request(st, &cfg, h, conn, None)
        .await
        .map_err(|r| finish(r, request_id.as_ref()))?;
    Ok(Front {
        cfg,
        caller,
        request_id,
    })
}

fn finish(mut r: Response, request_id: Option<&HeaderValue>) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(id) = request_id {
        r.headers_mut().insert("x-request-id", id.clone());
    }
    r
}

fn json_ok(v: &Value, request_id: Option<&HeaderValue>) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    finish(
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        request_id,
    )
}

/// A protocol error: the status and a message string (AuthZEN 1.0, "Error Responses").
fn text(status: StatusCode, message: &str, request_id: Option<&HeaderValue>) -> Response {
    finish(
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            format!("{message}\n"),
        )
            .into_response(),
        request_id,
    )
}

fn problem(p: &Problem, request_id: Option<&HeaderValue>) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
    text(status, &p.message, request_id)
}

async fn single(st: &St, f: &Front, body: &Value) -> Response {
    let rid = f.request_id.as_ref();
    let parsed = match parse(body) {
        Ok(p) => p,
        Err(p) => return problem(&p, rid),
    };
    match decide(st, &f.caller, &f.cfg, parsed).await {
        Ok(d) => json_ok(&decision_json(&d), rid),
        Err(p) => problem(&p, rid),
    }
}

type Conn = Extension<Arc<ConnInfo>>;

async fn evaluation(
    State(st): State<St>,
    Extension(conn): Conn,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let r = match front(&st, &h, &conn).await {
        Err(r) => r,
        Ok(f) => match body_object(&h, &body) {
            Err(p) => problem(&p, f.request_id.as_ref()),
            Ok(m) => single(&st, &f, &Value::Object(m)).await,
        },
    };
    counted(&st.app, r)
}

/// How an `evaluations` request runs (`options.evaluations_semantic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

fn semantic(top: &Map<String, Value>) -> Result<Semantic, Problem> {
    let options = object(top.get("options"), "options")?;
    match options.and_then(|o| o.get("evaluations_semantic")) {
        None | Some(Value::Null) => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) if s == "execute_all" => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) if s == "deny_on_first_deny" => Ok(Semantic::DenyOnFirstDeny),
        Some(Value::String(s)) if s == "permit_on_first_permit" => {
            Ok(Semantic::PermitOnFirstPermit)
        }
        Some(_) => Err(Problem::bad(
            "`options.evaluations_semantic` must be one of `execute_all`, `deny_on_first_deny`, `permit_on_first_permit`",
        )),
    }
}

/// An entry with the top-level `subject`, `action`, `resource` and `context` as
/// defaults: a key the entry gives replaces the default whole.
fn with_defaults(top: &Map<String, Value>, entry: &Value) -> Value {
    let Value::Object(e) = entry else {
        return entry.clone();
    };
    let mut out = e.clone();
    for k in ["subject", "action", "resource", "context"] {
        let given = out.get(k).is_some_and(|v| !v.is_null());
        if !given && let Some(d) = top.get(k) {
            out.insert(k.to_string(), d.clone());
        }
    }
    Value::Object(out)
}

async fn evaluations(
    State(st): State<St>,
    Extension(conn): Conn,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let r = match front(&st, &h, &conn).await {
        Err(r) => r,
        Ok(f) => match body_object(&h, &body) {
            Err(p) => problem(&p, f.request_id.as_ref()),
            Ok(top) => batch(&st, &f, top).await,
        },
    };
    counted(&st.app, r)
}

async fn batch(st: &St, f: &Front, top: Map<String, Value>) -> Response {
    let rid = f.request_id.as_ref();
    let sem = match semantic(&top) {
        Ok(s) => s,
        Err(p) => return problem(&p, rid),
    };
    let entries = match top.get("evaluations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return problem(&Problem::bad("`evaluations` must be an array"), rid),
    };
    // AuthZEN 1.0: without evaluations, the request is one evaluation.
    if entries.is_empty() {
        return single(st, f, &Value::Object(top)).await;
    }
    if entries.len() > MAX_EVALUATIONS {
        return problem(
            &Problem::bad(format!(
                "`evaluations` holds more than {MAX_EVALUATIONS} entries; split the request"
            )),
            rid,
        );
    }
    let entries: Vec<Value> = entries.iter().map(|e| with_defaults(&top, e)).collect();
    let mut results = Vec::with_capacity(entries.len());
    match sem {
        Semantic::ExecuteAll => {
            let caller = &f.caller;
            let cfg = &f.cfg;
            let mut s = futures_util::stream::iter(entries)
                .map(|e| async move { entry(st, caller, cfg, &e).await })
                .buffered(PARALLEL);
            while let Some((_, v)) = s.next().await {
                results.push(v);
            }
        }
        Semantic::DenyOnFirstDeny | Semantic::PermitOnFirstPermit => {
            // INVARIANT: in order, one at a time: what comes after the deciding entry is
            // neither decided nor recorded (it was not asked).
            for e in &entries {
                let (permit, mut v) = entry(st, &f.caller, &f.cfg, e).await;
                let stop = match sem {
                    Semantic::DenyOnFirstDeny => !permit,
                    _ => permit,
                };
                if stop && sem == Semantic::DenyOnFirstDeny {
                    // As the specification's example marks the entry that ended the list.
                    if let Some(c) = v.get_mut("context").and_then(Value::as_object_mut) {
                        c.insert("code".into(), json!("200"));
                        c.insert("reason".into(), json!("deny_on_first_deny"));
                    }
                }
                results.push(v);
                if stop {
                    break;
                }
            }
        }
    }
    json_ok(&json!({ "evaluations": results }), rid)
}

async fn configuration(State(st): State<St>, h: HeaderMap) -> Response {
    let cfg = st.app.config();
    if let Err(r) = hygiene(&st, &cfg, &h) {
        return counted(&st.app, r);
    }
    // The Host was checked by `hygiene`: it is one of this gateway's names.
    let base = st.base_url(&cfg, &h);
    let doc = json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
    });
    let mut r = json_ok(&doc, None);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    counted(&st.app, r)
}

/// OPA's REST data API shape: `{"input": <evaluation>}` → `{"result": bool}`; errors as
/// OPA writes them (`{"code", "message"}`).
async fn opa_allow(
    State(st): State<St>,
    Extension(conn): Conn,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let opa_error = |p: &Problem, rid: Option<&HeaderValue>| {
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
        let code = if p.status == 403 {
            "unauthorized"
        } else {
            "invalid_parameter"
        };
        let mut r = json_ok(&json!({"code": code, "message": p.message}), rid);
        *r.status_mut() = status;
        r
    };
    let r = match front(&st, &h, &conn).await {
        Err(r) => r,
        Ok(f) => {
            let rid = f.request_id.as_ref();
            match body_object(&h, &body) {
                Err(p) => opa_error(&p, rid),
                Ok(top) => match top.get("input") {
                    None | Some(Value::Null) => opa_error(&Problem::bad("missing `input`"), rid),
                    Some(input) => match parse(input) {
                        Err(p) => opa_error(&p, rid),
                        Ok(parsed) => match decide(&st, &f.caller, &f.cfg, parsed).await {
                            Ok(d) => json_ok(&json!({"result": d.decision == Effect::Allow}), rid),
                            Err(p) => opa_error(&p, rid),
                        },
                    },
                },
            }
        }
    };
    counted(&st.app, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(v: Value) -> Result<Parsed, Problem> {
        parse(&v)
    }

    #[test]
    fn a_tool_call_maps_to_its_mcp_params() {
        let p = eval(json!({
            "subject": {"type": "agent", "id": "research-bot"},
            "action": {"name": "tools/call"},
            "resource": {"type": "tool", "id": "fetch.fetch", "properties": {"arguments": {"url": "http://x/"}}},
            "context": {"workflow": "w", "session": "s1", "session_labels": ["personal"], "time": "now"}
        }))
        .unwrap();
        assert_eq!(p.agent, "research-bot");
        assert_eq!(p.server, "fetch");
        assert_eq!(
            p.params,
            json!({"name": "fetch", "arguments": {"url": "http://x/"}})
        );
        assert_eq!(p.workflow.as_deref(), Some("w"));
        assert_eq!(p.session.as_deref(), Some("s1"));
        assert_eq!(p.labels, vec!["personal".to_string()]);
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let base = json!({
            "subject": {"type": "agent", "id": "a"},
            "action": {"name": "tools/call"},
            "resource": {"type": "tool", "id": "s.t"}
        });
        for (path, value, message) in [
            ("/subject", Value::Null, "missing `subject`"),
            ("/action", json!("x"), "`action` must be an object"),
            ("/resource/id", json!(7), "`resource.id` must be a string"),
            (
                "/subject/type",
                json!("user"),
                "`subject.type` must be `agent`",
            ),
            ("/action/name", Value::Null, "missing `action.name`"),
            (
                "/resource/type",
                json!("document"),
                "`resource.type` must be `tool`",
            ),
        ] {
            let mut v = base.clone();
            *v.pointer_mut(path).unwrap() = value;
            let e = eval(v).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(message), "{path}: {}", e.message);
        }
    }

    #[test]
    fn a_name_property_disagreeing_with_the_id_is_refused() {
        let e = eval(json!({
            "subject": {"type": "agent", "id": "a"},
            "action": {"name": "tools/call"},
            "resource": {"type": "tool", "id": "s.echo", "properties": {"name": "delete_everything"}}
        }))
        .unwrap_err();
        assert!(e.message.contains("disagrees"), "{}", e.message);
    }

    #[test]
    fn defaults_are_replaced_whole_by_the_entry() {
        let top = json!({"subject": {"type": "agent", "id": "a"}, "context": {"workflow": "w"}});
        let top = top.as_object().unwrap();
        let e = with_defaults(
            top,
            &json!({"context": {"session": "s"}, "action": {"name": "x"}}),
        );
        assert_eq!(e["subject"]["id"], "a");
        assert_eq!(e["context"], json!({"session": "s"}));
    }

    #[test]
    fn problems_never_quote_values() {
        let secret = "AKIAQYLPMN5HHHFPZAM2";
        let e = eval(json!({
            "subject": {"type": "agent", "id": secret},
            "action": {"name": "tools/call"},
            "resource": {"type": secret, "id": "s.t"}
        }))
        .unwrap_err();
        assert!(!e.message.contains(secret), "{}", e.message);
        let e = body_object(
            &{
                let mut h = HeaderMap::new();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                h
            },
            format!(r#"{{"{secret}":1,"{secret}":2}}"#).as_bytes(),
        )
        .unwrap_err();
        assert!(!e.message.contains(secret), "{}", e.message);
    }
}
