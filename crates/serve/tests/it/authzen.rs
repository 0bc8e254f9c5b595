//! The AuthZEN 1.0 decision API of `serve`, over real HTTP on 127.0.0.1 port 0, with
//! the repository's example policy and requests. Request and response shapes follow
//! the OpenID AuthZEN Authorization API 1.0 (final, January 2026; the text in
//! github.com/openid/authzen `api/authorization-api-1_0.md`), cited per test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conductor_audit::{AuditOptions, AuditReader, AuditStore, Filter, Record};
use conductor_core::{Effect, Request, World};
use conductor_gate::{GateResolver, MemoryStore, ResolverConfig, SessionStore, TaintKey};
use conductor_scan::FingerprintKey;
use conductor_serve::gate_glue::GateEnv;
use serde_json::{Value, json};
use tokio::sync::watch;

const KEY: [u8; 32] = [7; 32];

/// The names the examples resolve (examples/README.md: `conductor check --no-dns
/// --resolve …`).
const RESOLVE: [&str; 3] = [
    "en.wikipedia.org=208.80.154.224",
    "api.github.com=140.82.112.6",
    "notes.corp.example.com=93.184.215.14",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn resolver() -> GateResolver {
    let values: Vec<String> = RESOLVE.iter().map(|s| s.to_string()).collect();
    GateResolver::new(ResolverConfig::from_args(&values, true).unwrap())
}

fn policy() -> conductor_policy::Policy {
    let path = repo().join("examples/policy.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    conductor_policy::load_str(&text, "policy.yaml", Some(path.parent().unwrap())).unwrap()
}

struct Gw {
    addr: SocketAddr,
    audit_path: PathBuf,
    sessions: Arc<MemoryStore>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Gw {
    /// A gateway whose `auth: none` agent is `desk`, with `authzen` as given (YAML).
    async fn start(authzen: &str) -> Gw {
        Gw::start_with("auth: {none: {agent: desk}}\n", authzen).await
    }

    /// A gateway with `auth` and `authzen` as given (YAML).
    async fn start_with(auth: &str, authzen: &str) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let audit_path = dir.path().join("audit.db");
        let audit = Arc::new(AuditStore::open(&audit_path, AuditOptions::default()).unwrap());
        let sessions = Arc::new(MemoryStore::default());
        let store: Arc<dyn SessionStore> = sessions.clone();
        let gates = Arc::new(GateEnv::new(
            policy(),
            resolver(),
            FingerprintKey(KEY),
            audit,
            store,
        ));
        let config = conductor_serve::load_str(
            &format!(
                "version: 1\nservers:\n  fetch: {{url: \"http://127.0.0.1:9/mcp\"}}\n{auth}{authzen}"
            ),
            "gateway.yaml",
            &conductor_serve::config::SystemSecrets { base: None },
        )
        .unwrap();
        let (stop, shutdown) = watch::channel(false);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            conductor_serve::serve(conductor_serve::ServeOptions {
                config,
                config_path: None,
                policy_path: None,
                gates,
                listen: Some("127.0.0.1:0".parse().unwrap()),
                shutdown,
                on_listen: Some(Box::new(move |a| {
                    let _ = tx.send(a);
                })),
            })
            .await
            .unwrap();
        });
        let addr = rx.await.unwrap();
        Gw {
            addr,
            audit_path,
            sessions,
            stop,
            task,
            http: conductor_serve::upstream_tls::client_builder()
                .no_proxy()
                .build()
                .unwrap(),
            _dir: dir,
        }
    }

    /// Every agent may be asked for by `desk`.
    async fn open() -> Gw {
        Gw::start("authzen:\n  callers:\n    desk: {may_evaluate_for: [\"*\"]}\n").await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn post_raw(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut rb = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json");
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.body(body.to_string()).send().await.unwrap();
        let status = r.status().as_u16();
        let h = r.headers().clone();
        (status, h, r.text().await.unwrap())
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, _, text) = self.post_raw(path, &body.to_string(), &[]).await;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (s, v)
    }

    /// Every record committed so far.
    fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        AuditReader::open(&self.audit_path)
            .unwrap()
            .for_each(&Filter::default(), |r| {
                out.push(r);
                true
            })
            .unwrap();
        out
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn tool_call(agent: &str, tool: &str, arguments: Value) -> Value {
    json!({
        "subject": {"type": "agent", "id": agent},
        "action": {"name": "tools/call"},
        "resource": {"type": "tool", "id": tool, "properties": {"arguments": arguments}}
    })
}

/// `conductor check`'s decision of a request: the core with the check's resolver.
fn check(req: &Request) -> conductor_core::Decision {
    let policy = policy();
    let r = resolver();
    let key = FingerprintKey(KEY);
    conductor_core::decide(
        &policy,
        req,
        &World {
            resolver: &r,
            fingerprint_key: &key,
        },
    )
}

// AuthZEN 1.0 §"Access Evaluation API" example request, with Conductor's subject,
// action and resource types; the response is the bare Decision (§"Decision": a permit
// is `{"decision": true}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permitted_evaluation_is_the_bare_decision() {
    let gw = Gw::open().await;
    let mut req = tool_call(
        "intern-bot",
        "search.web",
        json!({"q": "rust async runtimes"}),
    );
    req["context"] = json!({"time": "1985-10-26T01:22-07:00"});
    req["action"]["properties"] = json!({"method": "GET"});
    let (status, body) = gw.post("/access/v1/evaluation", &req).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"decision": true}));
    gw.stop().await;
}

// The spec's own example request (`subject.type: user`, `resource.type: account`) is
// not one Conductor can decide: a protocol error naming the field, not a guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specs_user_and_account_example_is_a_400_naming_the_field() {
    let gw = Gw::open().await;
    let spec = json!({
      "subject": {"type": "user", "id": "alice@example.com"},
      "resource": {"type": "account", "id": "123"},
      "action": {"name": "can_read", "properties": {"method": "GET"}},
      "context": {"time": "1985-10-26T01:22-07:00"}
    });
    let (status, body) = gw.post("/access/v1/evaluation", &spec).await;
    assert_eq!(status, 400);
    assert!(
        body.as_str()
            .unwrap()
            .contains("`subject.type` must be `agent`"),
        "{body}"
    );
    assert!(gw.records().is_empty(), "a protocol error decides nothing");
    gw.stop().await;
}

// A deny is HTTP 200 with `decision: false` and the reasons in the context (AuthZEN
// 1.0 §"Error Responses": HTTP errors are unrelated to the decision).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_is_200_with_reasons_and_the_metadata_attack_is_denied() {
    let gw = Gw::open().await;
    let (status, body) = gw
        .post(
            "/access/v1/evaluation",
            &tool_call(
                "research-bot",
                "fetch.fetch",
                json!({"url": "http://2852039166/latest/meta-data/"}),
            ),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], false);
    assert_eq!(body["context"]["decision"], "deny");
    let reasons = body["context"]["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r["check"] == "destination"),
        "{body}"
    );
    let recs = gw.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].event, "authzen:tools/call");
    assert_eq!(recs[0].decision, "deny");
    gw.stop().await;
}

/// The three entries of the spec's "three documents" example: allow, deny, allow.
fn three(semantic: &str) -> Value {
    json!({
        "subject": {"type": "agent", "id": "intern-bot"},
        "action": {"name": "tools/call"},
        "options": {"evaluations_semantic": semantic},
        "evaluations": [
            {"resource": {"type": "tool", "id": "search.web", "properties": {"arguments": {"q": "1"}}}},
            {"resource": {"type": "tool", "id": "search.reindex", "properties": {"arguments": {}}}},
            {"resource": {"type": "tool", "id": "search.web", "properties": {"arguments": {"q": "3"}}}}
        ]
    })
}

fn decisions(body: &Value) -> Vec<bool> {
    body["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].as_bool().unwrap())
        .collect()
}

// AuthZEN 1.0 §"Evaluations semantics", example "Evaluate `read` action for three
// documents using all three semantics": execute_all answers all three, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_all_answers_every_entry_in_order() {
    let gw = Gw::open().await;
    let (status, body) = gw
        .post("/access/v1/evaluations", &three("execute_all"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(decisions(&body), vec![true, false, true]);
    assert!(body.get("decision").is_none(), "no top-level decision");
    assert_eq!(body["evaluations"][0], json!({"decision": true}));
    assert_eq!(
        body["evaluations"][1]["context"]["reasons"][0]["check"],
        "role"
    );
    assert_eq!(gw.records().len(), 3);
    // Without `options`, the default is execute_all.
    let mut v = three("execute_all");
    v.as_object_mut().unwrap().remove("options");
    let (_, body) = gw.post("/access/v1/evaluations", &v).await;
    assert_eq!(decisions(&body), vec![true, false, true]);
    gw.stop().await;
}

// Same example: deny_on_first_deny stops at the first deny, which is marked
// `{"code": "200", "reason": "deny_on_first_deny"}`; the third entry is not decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_on_first_deny_truncates_after_the_first_deny() {
    let gw = Gw::open().await;
    let (status, body) = gw
        .post("/access/v1/evaluations", &three("deny_on_first_deny"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(decisions(&body), vec![true, false]);
    let ctx = &body["evaluations"][1]["context"];
    assert_eq!(ctx["code"], "200");
    assert_eq!(ctx["reason"], "deny_on_first_deny");
    assert_eq!(ctx["reasons"][0]["check"], "role");
    assert_eq!(
        gw.records().len(),
        2,
        "the entry after the deny was not decided"
    );
    gw.stop().await;
}

// Same example: permit_on_first_permit stops at the first permit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_on_first_permit_truncates_after_the_first_permit() {
    let gw = Gw::open().await;
    let (status, body) = gw
        .post("/access/v1/evaluations", &three("permit_on_first_permit"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"evaluations": [{"decision": true}]}));
    assert_eq!(gw.records().len(), 1);
    // With the permit last, every entry is answered.
    let mut v = three("permit_on_first_permit");
    v["evaluations"].as_array_mut().unwrap().swap(0, 1);
    v["evaluations"].as_array_mut().unwrap().remove(2);
    let (_, body) = gw.post("/access/v1/evaluations", &v).await;
    assert_eq!(decisions(&body), vec![false, true]);
    gw.stop().await;
}

// AuthZEN 1.0 §"Default values": top-level keys are defaults, an entry's own key
// overrides; §"Errors": an error in one entry is `decision: false` with the error in
// its context, and the other entries are still decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_apply_and_entry_errors_stay_in_their_entry() {
    let gw = Gw::open().await;
    let v = json!({
        "subject": {"type": "agent", "id": "intern-bot"},
        "action": {"name": "tools/call"},
        "resource": {"type": "tool", "id": "search.web", "properties": {"arguments": {"q": "x"}}},
        "evaluations": [
            {},
            {"subject": {"type": "agent", "id": "research-bot"}, "resource": {"type": "tool", "id": "shell.exec", "properties": {"arguments": {}}}},
            {"action": {"name": 42}},
            "not an object",
        ]
    });
    let (status, body) = gw.post("/access/v1/evaluations", &v).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(decisions(&body), vec![true, false, false, false]);
    assert_eq!(
        body["evaluations"][1]["context"]["reasons"][0]["check"],
        "tool"
    );
    let err = &body["evaluations"][2]["context"]["error"];
    assert_eq!(err["status"], 400);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("`action.name` must be a string")
    );
    assert_eq!(body["evaluations"][3]["context"]["error"]["status"], 400);
    assert_eq!(gw.records().len(), 2, "entries in error decide nothing");
    // An entry in error is a deny for deny_on_first_deny.
    let mut v = v;
    v["options"] = json!({"evaluations_semantic": "deny_on_first_deny"});
    v["evaluations"].as_array_mut().unwrap().swap(0, 2);
    let (_, body) = gw.post("/access/v1/evaluations", &v).await;
    assert_eq!(decisions(&body), vec![false]);
    assert_eq!(body["evaluations"][0]["context"]["error"]["status"], 400);
    gw.stop().await;
}

// AuthZEN 1.0 §"The Access Evaluations API Request": without `evaluations` (or with an
// empty one) the request is a single evaluation, answered as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_without_entries_is_one_evaluation() {
    let gw = Gw::open().await;
    let mut v = tool_call("intern-bot", "search.web", json!({"q": "x"}));
    let (status, body) = gw.post("/access/v1/evaluations", &v).await;
    assert_eq!((status, body), (200, json!({"decision": true})));
    v["evaluations"] = json!([]);
    let (status, body) = gw.post("/access/v1/evaluations", &v).await;
    assert_eq!((status, body), (200, json!({"decision": true})));
    let (status, _) = gw
        .post("/access/v1/evaluations", &json!({"evaluations": []}))
        .await;
    assert_eq!(status, 400, "nothing to evaluate: the subject is missing");
    gw.stop().await;
}

// AuthZEN 1.0 §"Request Identification": the `X-Request-ID` a PEP sends comes back,
// on decisions and on protocol errors alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_request_id_is_echoed_on_every_answer() {
    let gw = Gw::start("").await;
    let id = "bfe9eb29-ab87-4ca3-be83-a1d5d8305716";
    let allowed = tool_call("desk", "search.web", json!({}));
    let other = tool_call("intern-bot", "search.web", json!({}));
    for (path, body, want) in [
        ("/access/v1/evaluation", allowed.to_string(), 200),
        ("/access/v1/evaluations", allowed.to_string(), 200),
        ("/access/v1/evaluation", "{".to_string(), 400),
        ("/access/v1/evaluation", other.to_string(), 403),
        (
            "/v1/data/conductor/allow",
            json!({"input": allowed}).to_string(),
            200,
        ),
    ] {
        let (status, h, text) = gw.post_raw(path, &body, &[("x-request-id", id)]).await;
        assert_eq!(status, want, "{path}: {text}");
        assert_eq!(h.get("x-request-id").unwrap(), id, "{path}");
        assert_eq!(h.get("cache-control").unwrap(), "no-store", "{path}");
    }
    let (_, h, _) = gw
        .post_raw("/access/v1/evaluation", &allowed.to_string(), &[])
        .await;
    assert!(h.get("x-request-id").is_none(), "none sent, none made up");
    gw.stop().await;
}

// AuthZEN 1.0 §"JSON Serialization": an omitted required attribute is 400 Bad Request;
// the message names the field and never quotes a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400_with_the_field_named() {
    let gw = Gw::open().await;
    let ok = tool_call(
        "intern-bot",
        "search.web",
        json!({"q": "AKIAQYLPMN5HHHFPZAM2"}),
    );
    let without = |k: &str| {
        let mut v = ok.clone();
        v.as_object_mut().unwrap().remove(k);
        v.to_string()
    };
    let with = |ptr: &str, x: Value| {
        let mut v = ok.clone();
        *v.pointer_mut(ptr).unwrap() = x;
        v.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("{\"subject\":".into(), "the body is not json"),
        ("[1,2]".into(), "the body must be a json object"),
        (without("subject"), "missing `subject`"),
        (without("action"), "missing `action`"),
        (without("resource"), "missing `resource`"),
        (
            with("/subject", json!("intern-bot")),
            "`subject` must be an object",
        ),
        (
            with("/subject/id", json!(7)),
            "`subject.id` must be a string",
        ),
        (
            with("/subject/id", json!("")),
            "`subject.id` must be a non-empty",
        ),
        (
            with("/action/name", json!(["tools/call"])),
            "`action.name` must be a string",
        ),
        (with("/resource/id", Value::Null), "missing `resource.id`"),
        (
            with("/resource/properties", json!([])),
            "`resource.properties` must be an object",
        ),
        (
            with("/resource/properties/arguments", json!("q=1")),
            "`resource.properties.arguments` must be an object",
        ),
        (
            with("/resource/type", json!("document")),
            "`resource.type` must be `tool`",
        ),
        (
            {
                let mut v = ok.clone();
                v["context"] = json!({"session_labels": "personal"});
                v.to_string()
            },
            "`context.session_labels` must be an array",
        ),
        (
            {
                let mut v = ok.clone();
                v["context"] = json!({"workflow": 3});
                v.to_string()
            },
            "`context.workflow` must be a string",
        ),
        (
            {
                let mut v = ok.clone();
                v["options"] = json!({"evaluations_semantic": "first"});
                v["evaluations"] = json!([{}]);
                v.to_string()
            },
            "`options.evaluations_semantic` must be one of",
        ),
    ];
    for (body, needle) in &cases {
        let path = if needle.contains("evaluations_semantic") {
            "/access/v1/evaluations"
        } else {
            "/access/v1/evaluation"
        };
        let (status, _, text) = gw.post_raw(path, body, &[]).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(needle), "`{needle}` missing from `{text}`");
        assert!(!text.contains("AKIA"), "a value was quoted: {text}");
    }
    // Not JSON by its content type.
    let r = gw
        .http
        .post(gw.url("/access/v1/evaluation"))
        .header("content-type", "text/plain")
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(
        gw.records().is_empty(),
        "no protocol error reached the gate"
    );
    gw.stop().await;
}

// Regression (issue 10, class 2, carried over from the MCP path): serde_json keeps the
// last of two equal member names, first-wins readers the first, and Go's encoding/json
// matches `ſubject`-style case-folded names. A PEP reading the body one way while the
// gate decided it another is the bypass; such bodies are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_member_names_are_refused_not_decided() {
    let gw = Gw::open().await;
    for body in [
        // The arguments a first-wins reader sees are not the ones decided.
        r#"{"subject":{"type":"agent","id":"research-bot"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"fetch.fetch","properties":{"arguments":{"url":"http://169.254.169.254/","url":"https://en.wikipedia.org/"}}}}"#,
        // Two subjects.
        r#"{"subject":{"type":"agent","id":"intern-bot"},"subject":{"type":"agent","id":"mallory-bot"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"search.web"}}"#,
        // `URL` and `url` are one field to Go's encoding/json.
        r#"{"subject":{"type":"agent","id":"research-bot"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"fetch.fetch","properties":{"arguments":{"URL":"http://169.254.169.254/","url":"https://en.wikipedia.org/"}}}}"#,
    ] {
        let (status, _, text) = gw.post_raw("/access/v1/evaluation", body, &[]).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains("ambiguous json"), "{text}");
    }
    assert!(gw.records().is_empty());
    gw.stop().await;
}

// DESIGN.md "AuthZEN 1.0 mapping": the caller must be a runtime allowed to ask for that
// agent. `desk` may speak for `intern-bot` only (and for itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_may_not_ask_for_an_agent_it_does_not_speak_for() {
    let gw = Gw::start("authzen:\n  callers:\n    desk: {may_evaluate_for: [intern-bot]}\n").await;
    let (status, body) = gw
        .post(
            "/access/v1/evaluation",
            &tool_call("research-bot", "search.web", json!({})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.as_str().unwrap().contains("authzen.callers"), "{body}");
    let (status, body) = gw
        .post(
            "/access/v1/evaluation",
            &tool_call("intern-bot", "search.web", json!({})),
        )
        .await;
    assert_eq!((status, body), (200, json!({"decision": true})));
    // Itself: decided (and denied: `desk` is not an agent of the policy).
    let (status, body) = gw
        .post(
            "/access/v1/evaluation",
            &tool_call("desk", "search.web", json!({})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["context"]["reasons"][0]["check"], "identity");
    // In a batch, the refusal is that entry's error.
    let (status, body) = gw
        .post(
            "/access/v1/evaluations",
            &json!({"action": {"name": "tools/call"},
                    "resource": {"type": "tool", "id": "search.web"},
                    "evaluations": [
                        {"subject": {"type": "agent", "id": "intern-bot"}},
                        {"subject": {"type": "agent", "id": "deploy-bot"}}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["evaluations"][0], json!({"decision": true}));
    assert_eq!(body["evaluations"][1]["context"]["error"]["status"], 403);
    let agents: Vec<String> = gw.records().into_iter().map(|r| r.agent).collect();
    assert_eq!(
        agents,
        vec!["intern-bot", "desk", "intern-bot"],
        "refusals decide nothing"
    );
    gw.stop().await;
}

// The default, with no `authzen` section: a caller asks only for itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_authzen_section_a_caller_asks_only_for_itself() {
    let gw = Gw::start("").await;
    let (status, _) = gw
        .post(
            "/access/v1/evaluation",
            &tool_call("intern-bot", "search.web", json!({})),
        )
        .await;
    assert_eq!(status, 403);
    gw.stop().await;
}

// Every line of examples/requests.jsonl, through the decision API and through
// `conductor check` (the core with the same resolver): the same decision, and the
// audit record carries exactly that decision and the digest of the request the
// check decided (with the session the evaluation named).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_and_records_match_conductor_check_on_the_example_requests() {
    let gw = Gw::open().await;
    let text = std::fs::read_to_string(repo().join("examples/requests.jsonl")).unwrap();
    let mut n = 0;
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let mut req = Request::from_json(line).unwrap();
        let session = format!("example-{}", i + 1);
        let mut ev = tool_call(&req.agent, &req.tool, req.arguments.clone());
        ev["context"] = json!({"session": session, "workflow": req.workflow,
                               "session_labels": req.session_labels});
        let (status, body) = gw.post("/access/v1/evaluation", &ev).await;
        assert_eq!(status, 200, "line {}: {body}", i + 1);
        let want = check(&req);
        assert_eq!(
            body["decision"] == true,
            want.decision == Effect::Allow,
            "line {}: {body}",
            i + 1
        );
        if want.decision != Effect::Allow {
            let ctx = &body["context"];
            assert_eq!(ctx["decision"], conductor_gate::effect_name(want.decision));
            assert_eq!(
                ctx["reasons"],
                serde_json::to_value(&want.reasons).unwrap(),
                "line {}",
                i + 1
            );
            assert_eq!(
                ctx["destinations"],
                serde_json::to_value(&want.destinations).unwrap()
            );
            assert_eq!(
                ctx["findings"],
                serde_json::to_value(&want.findings).unwrap()
            );
            assert_eq!(ctx["policy"], want.policy);
        }
        let recs = gw.records();
        let rec = recs.last().unwrap();
        assert_eq!(recs.len(), i + 1);
        req.session = Some(session.clone());
        assert_eq!(rec.event, "authzen:tools/call");
        assert_eq!(rec.agent, req.agent);
        assert_eq!(rec.tool, req.tool);
        assert_eq!(rec.workflow, req.workflow);
        assert_eq!(rec.session.as_deref(), Some(session.as_str()));
        assert_eq!(
            rec.server.as_deref(),
            req.tool.split_once('.').map(|(s, _)| s)
        );
        assert_eq!(rec.decision, conductor_gate::effect_name(want.decision));
        assert_eq!(rec.reasons, serde_json::to_value(&want.reasons).unwrap());
        assert_eq!(
            rec.destinations,
            serde_json::to_value(&want.destinations).unwrap()
        );
        assert_eq!(rec.findings, serde_json::to_value(&want.findings).unwrap());
        assert_eq!(rec.policy, want.policy);
        assert_eq!(
            rec.request_digest,
            conductor_audit::request_digest(&serde_json::to_value(&req).unwrap()),
            "line {}",
            i + 1
        );
        // Secrets never leave: line 18 carries AWS keys.
        let all = format!("{body}{}", serde_json::to_string(rec).unwrap());
        assert!(
            !all.contains("AKIA2OGYBAH6TQKRXEVN"),
            "line {}: {all}",
            i + 1
        );
        n += 1;
    }
    assert_eq!(n, 21);
    assert!(
        AuditReader::open(&gw.audit_path)
            .unwrap()
            .verify(None)
            .unwrap()
            .broken
            .is_none()
    );
    gw.stop().await;
}

// Taint belongs to the agent: labels the store holds for the agent apply whatever the
// caller says; `context.session_labels` can only add to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_supplied_labels_never_lower_the_agents_taint() {
    let gw = Gw::open().await;
    let fetch = json!({"url": "https://en.wikipedia.org/wiki/Acme_Corporation"});
    let mut ev = tool_call("research-bot", "fetch.fetch", fetch);
    let (_, body) = gw.post("/access/v1/evaluation", &ev).await;
    assert_eq!(body, json!({"decision": true}));
    gw.sessions
        .raise(
            &TaintKey {
                agent: "research-bot".into(),
                workflow: None,
            },
            &["personal".to_string()],
            i64::MAX,
        )
        .unwrap();
    ev["context"] = json!({"session_labels": []});
    let (_, body) = gw.post("/access/v1/evaluation", &ev).await;
    assert_eq!(body["decision"], false, "{body}");
    assert_eq!(body["context"]["reasons"][0]["check"], "flow");
    gw.stop().await;
}

// An action the gate does not know is a recorded deny (fail closed), never a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_action_is_a_recorded_deny() {
    let gw = Gw::open().await;
    let (status, body) = gw
        .post(
            "/access/v1/evaluation",
            &json!({"subject": {"type": "agent", "id": "intern-bot"},
                    "action": {"name": "vendor/anything"},
                    "resource": {"type": "whatever", "id": "search"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], false);
    assert!(
        body["context"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "input"),
        "{body}"
    );
    let recs = gw.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].decision, "deny");
    // Another gated method, `resources/read`, is decided as the MCP path decides it.
    let (_, body) = gw
        .post(
            "/access/v1/evaluation",
            &json!({"subject": {"type": "agent", "id": "research-bot"},
                    "action": {"name": "resources/read"},
                    "resource": {"type": "server", "id": "fetch",
                                 "properties": {"uri": "http://169.254.169.254/latest/"}}}),
        )
        .await;
    assert_eq!(body["decision"], false, "{body}");
    assert_eq!(gw.records().last().unwrap().tool, "fetch.read_resource");
    gw.stop().await;
}

// AuthZEN 1.0 §"Policy Decision Point Metadata": the document at
// `/.well-known/authzen-configuration` names the PDP and its endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_well_known_configuration_names_the_endpoints() {
    let gw = Gw::open().await;
    let r = gw
        .http
        .get(gw.url("/.well-known/authzen-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let base = format!("http://{}", gw.addr);
    assert_eq!(
        doc,
        json!({
            "policy_decision_point": base,
            "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
            "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        })
    );
    // A Host that is not the gateway's (DNS rebinding) gets nothing.
    let r = gw
        .http
        .get(gw.url("/.well-known/authzen-configuration"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 421);
    gw.stop().await;
}

// The OPA-style shim: `{"input": <evaluation>}` → `{"result": bool}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opa_shim_answers_result_booleans() {
    let gw = Gw::open().await;
    let mut results = HashMap::new();
    for (agent, tool) in [("intern-bot", "search.web"), ("research-bot", "shell.exec")] {
        let (status, body) = gw
            .post(
                "/v1/data/conductor/allow",
                &json!({"input": tool_call(agent, tool, json!({}))}),
            )
            .await;
        assert_eq!(status, 200);
        results.insert(tool, body);
    }
    assert_eq!(results["search.web"], json!({"result": true}));
    assert_eq!(results["shell.exec"], json!({"result": false}));
    let (status, body) = gw.post("/v1/data/conductor/allow", &json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_parameter");
    gw.stop().await;
}

// Regression, found comparing with `conductor check` (lines 4 and 7 of
// examples/requests.jsonl): the gate service decided the call's envelope (here the
// tool name) with the tool's declared literal destination (`github.*` →
// `https://api.github.com`). A call denied before DNS then got a second reason,
// "`api.github.com` does not resolve", for a name resolve-last had never looked up; an
// allowed one listed its destination twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_before_dns_does_not_call_the_envelopes_names_unresolvable() {
    let gw = Gw::open().await;
    let (_, body) = gw
        .post(
            "/access/v1/evaluation",
            &tool_call(
                "deploy-bot",
                "github.delete_repo",
                json!({"repo": "acme/widgets"}),
            ),
        )
        .await;
    let reasons = body["context"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    assert_eq!(reasons[0]["check"], "tool");
    let (_, body) = gw
        .post(
            "/access/v1/evaluation",
            &tool_call(
                "deploy-bot",
                "github.create_issue",
                json!({"repo": "acme/widgets", "title": "t"}),
            ),
        )
        .await;
    assert_eq!(body, json!({"decision": true}));
    let rec = gw.records().pop().unwrap();
    assert_eq!(
        rec.destinations.as_array().unwrap().len(),
        1,
        "{:?}",
        rec.destinations
    );
    gw.stop().await;
}

// AuthZEN 1.0 §"Error Responses" and §"Sender Authentication Failure": a PEP that did
// not authenticate gets 401 (with `WWW-Authenticate`), and nothing is decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_valid_credentials_is_401() {
    let (_, hash) = conductor_serve::auth::keys::generate().unwrap();
    let (stranger, _) = conductor_serve::auth::keys::generate().unwrap();
    let gw = Gw::start_with(
        &format!("auth:\n  api_keys:\n    - {{agent: runtime, sha256: \"{hash}\"}}\n"),
        "authzen:\n  callers:\n    runtime: {may_evaluate_for: [\"*\"]}\n",
    )
    .await;
    let body = tool_call("intern-bot", "search.web", json!({})).to_string();
    let bearer = format!("Bearer {stranger}");
    for (path, headers) in [
        ("/access/v1/evaluation", vec![("x-request-id", "r-1")]),
        ("/access/v1/evaluations", vec![("x-request-id", "r-1")]),
        ("/v1/data/conductor/allow", vec![("x-request-id", "r-1")]),
        (
            "/access/v1/evaluation",
            vec![("x-request-id", "r-1"), ("authorization", bearer.as_str())],
        ),
        (
            "/access/v1/evaluation",
            vec![("x-request-id", "r-1"), ("x-api-key", hash.as_str())],
        ),
    ] {
        let (status, h, text) = gw.post_raw(path, &body, &headers).await;
        assert_eq!(status, 401, "{path} {headers:?}: {text}");
        assert!(h.get("www-authenticate").is_some(), "{path}");
        assert_eq!(h.get("x-request-id").unwrap(), "r-1", "{path}");
        assert!(!text.contains(&stranger), "{text}");
    }
    assert!(
        gw.records().is_empty(),
        "an unauthenticated caller decides nothing"
    );
    gw.stop().await;
}

// An API-key caller (a PEP runtime) asks for the agents the gateway file lets it speak
// for, and the record says who asked and how it was proven (the key's id, never the
// key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_caller_asks_only_for_the_agents_it_may_speak_for() {
    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let gw = Gw::start_with(
        &format!("auth:\n  api_keys:\n    - {{agent: runtime, sha256: \"{hash}\"}}\n"),
        "authzen:\n  callers:\n    runtime: {may_evaluate_for: [intern-bot, research-bot]}\n",
    )
    .await;
    let bearer = format!("Bearer {key}");
    let ask = |agent: &str, tool: &str| tool_call(agent, tool, json!({"q": "x"})).to_string();
    let (status, _, text) = gw
        .post_raw(
            "/access/v1/evaluation",
            &ask("intern-bot", "search.web"),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!((status, text.as_str()), (200, r#"{"decision":true}"#));
    let (status, _, text) = gw
        .post_raw(
            "/access/v1/evaluation",
            &ask("research-bot", "shell.exec"),
            &[("x-api-key", &key)],
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""decision":false"#), "{text}");
    let (status, _, text) = gw
        .post_raw(
            "/access/v1/evaluation",
            &ask("deploy-bot", "github.create_issue"),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(status, 403, "{text}");
    let recs = gw.records();
    assert_eq!(recs.len(), 2);
    let key_id = &hash[..8];
    for r in &recs {
        assert_eq!(
            r.auth,
            Some(json!({"method": "api_key", "key_id": key_id, "caller": "runtime"}))
        );
        assert!(!serde_json::to_string(r).unwrap().contains(&key));
    }
    assert_eq!(recs[0].agent, "intern-bot");
    assert_eq!(recs[1].agent, "research-bot");
    gw.stop().await;
}
