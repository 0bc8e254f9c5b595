//! The public API besides `decide`: request parsing, `may_ever_call`, `action_of`,
//! `label_result`, and the decision's JSON shape.

use std::collections::BTreeMap;

use conductor_core::{Request, World, action_of, decide, label_result, may_ever_call};
use conductor_policy::load_str;
use serde_json::json;

use crate::corpus::{FixedResolver, KEY};

const POLICY: &str = r#"version: 1
agents:
  research-bot: {roles: [researcher], clearance: internal}
  deploy-bot: {roles: [operator], clearance: confidential}
  nobody-bot: {}
roles:
  researcher:
    allow:
      - tools: ["fetch.*", "search.*"]
        actions: [read]
    deny:
      - tools: ["*.delete_*"]
  operator:
    extends: [researcher]
    allow:
      - tools: ["github.*"]
        actions: [read, write]
        when:
          /repo: {glob: "acme/*"}
    approve:
      - tools: ["github.merge_*"]
    deny:
      - tools: ["github.force_push"]
        when:
          /branch: {equals: main}
tools:
  fetch.fetch: {action: read}
  search.*: {action: read}
  github.*: {action: write}
  github.delete_repo: {action: delete}
destinations: {scan: false}
"#;

fn parse_err(text: &str) -> String {
    Request::from_json(text).unwrap_err().message
}

#[test]
fn requests_parse() {
    let r = Request::from_json(
        r#"{"agent":"a","tool":"s.t","arguments":{"x":1},"workflow":"w","session":"s1","session_labels":["personal"]}"#,
    )
    .unwrap();
    assert_eq!(r.agent, "a");
    assert_eq!(r.workflow.as_deref(), Some("w"));
    assert_eq!(r.session_labels, vec!["personal"]);
    let r = Request::from_json(r#"{"agent":"a","tool":"s.t"}"#).unwrap();
    assert_eq!(r.arguments, json!({}));
}

#[test]
fn request_errors_name_the_field_and_place() {
    let m = parse_err(r#"{"agent":"a"}"#);
    assert!(
        m.contains("missing field `tool`") && m.contains("line 1 column 13"),
        "{m}"
    );
    let m = parse_err("{\"agent\":\"a\",\n \"tool\":\"s.t\",\n \"colour\":1}");
    assert!(
        m.contains("unknown field `colour`") && m.contains("line 3"),
        "{m}"
    );
    let m = parse_err(r#"{"agent":"a","tool":5}"#);
    assert!(
        m.starts_with("field `tool`:") && m.contains("column"),
        "{m}"
    );
    let m = parse_err(r#"{"agent":"a","tool":"s.t","session_labels":"personal"}"#);
    assert!(m.starts_with("field `session_labels`:"), "{m}");
    let m = parse_err(r#"{"agent":"a","tool":"s.t","workflow":7}"#);
    assert!(m.starts_with("field `workflow`:"), "{m}");
    let m = parse_err(r#"{"agent":"a","tool":"s.t""#);
    assert!(m.contains("line 1"), "{m}");
    let m = parse_err("[1]");
    assert!(m.contains("json object"), "{m}");
    let e = Request::from_json("{\n\"agent\": 1}").unwrap_err();
    assert_eq!((e.line, e.column > 0), (2, true));
    assert!(e.to_string().starts_with("invalid request: "));
}

#[test]
fn may_ever_call_filters_tools_list() {
    let p = load_str(POLICY, "p", None).unwrap();
    assert!(may_ever_call(&p, "research-bot", "fetch.fetch"));
    assert!(may_ever_call(&p, "research-bot", "search.query"));
    // Named, but only for reads; github.* is a write.
    assert!(!may_ever_call(&p, "research-bot", "github.create_issue"));
    // An unconditional deny.
    assert!(!may_ever_call(&p, "deploy-bot", "github.delete_repo"));
    // A `when` on the allow does not hide the tool.
    assert!(may_ever_call(&p, "deploy-bot", "github.create_issue"));
    // A deny with a `when` does not hide it either.
    assert!(may_ever_call(&p, "deploy-bot", "github.force_push"));
    // Approval-only tools are listed.
    assert!(may_ever_call(&p, "deploy-bot", "github.merge_pr"));
    assert!(!may_ever_call(&p, "nobody-bot", "fetch.fetch"));
    assert!(!may_ever_call(&p, "stranger", "fetch.fetch"));
    assert!(!may_ever_call(&p, "research-bot", "not-qualified"));
}

#[test]
fn action_of_reads_the_tool_facts() {
    let p = load_str(POLICY, "p", None).unwrap();
    assert_eq!(action_of(&p, "fetch.fetch"), "read");
    assert_eq!(action_of(&p, "github.delete_repo"), "delete");
    assert_eq!(action_of(&p, "github.push"), "write");
    assert_eq!(action_of(&p, "other.tool"), "execute");
}

#[test]
fn label_result_of_a_clean_result_is_empty() {
    let p = load_str(POLICY, "p", None).unwrap();
    let resolver = FixedResolver::new(&BTreeMap::new());
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    assert!(
        label_result(
            &p,
            &json!({"content": [{"type": "text", "text": "hello"}]}),
            &world
        )
        .is_empty()
    );
}

#[test]
fn decision_json_shape() {
    let p = load_str(POLICY, "p", None).unwrap();
    let resolver = FixedResolver::new(&BTreeMap::new());
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    let req = Request::from_json(
        r#"{"agent":"deploy-bot","tool":"github.create_issue","arguments":{"repo":"evil/x"},"workflow":"nope"}"#,
    )
    .unwrap();
    let d = decide(&p, &req, &world);
    let mut v = serde_json::to_value(&d).unwrap();
    v["policy"] = json!("sha256:[hash]");
    assert_eq!(
        v,
        json!({
            "decision": "deny",
            "reasons": [
                {"check": "role", "rule": "roles.operator.allow[0]",
                 "message": "role `operator` allows `github.create_issue` only under conditions this call fails: argument `/repo` does not match glob `acme/*`"},
                {"check": "workflow", "rule": "workflows",
                 "message": "workflow `nope` is not defined in the policy"}
            ],
            "destinations": [],
            "findings": [],
            "policy": "sha256:[hash]"
        })
    );
    assert_eq!(d.policy, p.sha256());
}

#[test]
fn messages_never_echo_argument_values() {
    let p = load_str(POLICY, "p", None).unwrap();
    let resolver = FixedResolver::new(&BTreeMap::new());
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    let secret = "hunter2-very-secret-value";
    for args in [
        json!({"repo": secret}),
        json!({"repo": [secret]}),
        json!({"branch": secret, "repo": "acme/x"}),
    ] {
        for tool in ["github.create_issue", "github.force_push", "fetch.fetch"] {
            let req = Request {
                agent: "deploy-bot".into(),
                tool: tool.into(),
                arguments: args.clone(),
                workflow: None,
                session: None,
                session_labels: vec![],
            };
            let d = decide(&p, &req, &world);
            let text = serde_json::to_string(&d.reasons).unwrap();
            assert!(!text.contains(secret), "{text}");
        }
    }
}

const TOKEN: &str = "ghp_8Fq2LmZt9RkX4vBn7WcY1pQs3JdH6gTa0eUi";

#[test]
fn label_result_names_the_labels_of_a_result() {
    let p = load_str(POLICY, "p", None).unwrap();
    let resolver = FixedResolver::new(&BTreeMap::new());
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    let result = json!({"content": [{"type": "text", "text": format!("your token is {TOKEN}")}]});
    assert_eq!(label_result(&p, &result, &world), vec!["credentials"]);
}

/// The invariant "secrets never leave through the gate's own outputs": a decision
/// about a call carrying a credential names detector, label and pointer only.
#[test]
fn decisions_never_contain_the_matched_value() {
    let p = load_str(POLICY, "p", None).unwrap();
    let resolver = FixedResolver::new(&BTreeMap::new());
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    let req = Request {
        agent: "research-bot".into(),
        tool: "fetch.fetch".into(),
        arguments: json!({"url": "https://en.wikipedia.org/", "note": format!("key {TOKEN}"), TOKEN: 1}),
        workflow: None,
        session: None,
        session_labels: vec![],
    };
    let d = decide(&p, &req, &world);
    assert_eq!(d.decision, conductor_core::Effect::Deny);
    assert!(!d.findings.is_empty());
    let text = serde_json::to_string(&d).unwrap();
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!text.contains(&TOKEN[4..20]), "{text}");
    assert!(text.contains("/note"), "{text}");
}

/// Thousands of matches or session labels make one reason per label and rule,
/// not one per match: the decision stays small whatever the request carries.
#[test]
fn reasons_are_aggregated_per_label_and_rule() {
    let p = load_str(
        "version: 1\nagents: {bot: {roles: [r]}}\nroles: {r: {allow: [{tools: [\"*\"]}]}}\ntools: {paste.create: {destinations: [\"https://paste.example.net\"]}}\ndestinations: {allow: [\"*\"], scan: false}\n",
        "p",
        None,
    )
    .unwrap();
    let resolver = FixedResolver::new(&BTreeMap::new());
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    let tokens: Vec<String> = (0..500).map(|_| TOKEN.to_string()).collect();
    let labels: Vec<String> = (0..1000).map(|i| format!("label-{i}")).collect();
    let req = Request {
        agent: "bot".into(),
        tool: "paste.create".into(),
        arguments: json!({"items": tokens}),
        workflow: None,
        session: None,
        session_labels: labels,
    };
    let d = decide(&p, &req, &world);
    let rules: Vec<(&str, &str)> = d
        .reasons
        .iter()
        .map(|r| (r.check.name(), r.rule.as_str()))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("data", "data.labels.credentials"),
            ("data", "data.default_egress"),
            ("flow", "data.default_egress"),
        ],
        "{:#?}",
        d.reasons
    );
    assert!(
        d.reasons[0].message.contains("(and 499 more places)"),
        "{}",
        d.reasons[0].message
    );
    assert_eq!(d.findings.len(), 500);
}

/// Pointers a transport adds (from a tool's input schema) add destinations; they
/// never remove the policy's own.
#[test]
fn decide_with_pointers_adds_destinations() {
    let p = load_str(
        "version: 1\nagents: {bot: {roles: [r]}}\nroles: {r: {allow: [{tools: [\"*\"]}]}}\ntools: {web.get: {destinations: [/url]}}\ndestinations: {allow: [\"*\"], scan: false}\n",
        "p",
        None,
    )
    .unwrap();
    let resolver = FixedResolver::new(&BTreeMap::new());
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    let req = |tool: &str, args: serde_json::Value| Request {
        agent: "bot".into(),
        tool: tool.into(),
        arguments: args,
        workflow: None,
        session: None,
        session_labels: vec![],
    };
    let meta = json!({"target": "http://169.254.169.254/latest/meta-data/"});
    let plain = decide(&p, &req("web.other", meta.clone()), &world);
    assert_eq!(plain.decision, conductor_core::Effect::Allow);
    let extra = conductor_core::decide_with_pointers(
        &p,
        &req("web.other", meta),
        &[conductor_types::JsonPath::parse("/target").unwrap()],
        &world,
    );
    assert_eq!(extra.decision, conductor_core::Effect::Deny);
    assert!(
        extra
            .reasons
            .iter()
            .any(|r| r.rule == "destinations.blocked.cloud-metadata")
    );
    // The declared pointer still counts when extra pointers are given.
    let declared = conductor_core::decide_with_pointers(
        &p,
        &req(
            "web.get",
            json!({"url": "http://169.254.169.254/", "other": "x"}),
        ),
        &[conductor_types::JsonPath::parse("/other").unwrap()],
        &world,
    );
    assert_eq!(declared.decision, conductor_core::Effect::Deny);
}

/// Member smuggling inside the arguments (issue 10, class 2): Go's `encoding/json` binds
/// `{"URL": …}` to a field tagged `url` and `{"ſite": …}` (U+017F) to one tagged `site`, so a server written
/// that way fetches the value the gate would otherwise read as an undeclared member —
/// unchecked when `destinations.scan` is off. A member a case-insensitive reader binds to
/// a declared destination field is checked as that field.
#[test]
fn a_case_folded_member_beside_a_declared_destination_field_is_checked_as_that_field() {
    let p = load_str(
        r#"version: 1
agents:
  bot: {roles: [r]}
roles:
  r:
    allow: [{tools: ["fetch.*"]}]
tools:
  fetch.fetch: {action: read, destinations: [/url, /site, /hops/0/to]}
destinations: {scan: false, allow: ["https://example.com"]}
"#,
        "p.yaml",
        None,
    )
    .unwrap();
    let resolver = FixedResolver::new(&BTreeMap::new());
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    // The request is built as a value: `Request::from_json` refuses the case variants
    // in the first place (below), but a caller may build a `Request` itself, and the
    // core must still check what a case-insensitive reader binds.
    let decide_args = |args: serde_json::Value| {
        let r: Request = serde_json::from_value(
            json!({"agent": "bot", "tool": "fetch.fetch", "arguments": args}),
        )
        .unwrap();
        decide(&p, &r, &world)
    };
    let text = r#"{"agent":"bot","tool":"fetch.fetch","arguments":{"url":"https://example.com/","Url":"http://169.254.169.254/"}}"#;
    let e = Request::from_json(text).unwrap_err();
    assert!(e.message.contains("case folding"), "{}", e.message);
    // The control: the declared field, in scope, is allowed.
    let d = decide_args(json!({"url": "https://example.com/"}));
    assert_eq!(d.decision, conductor_core::Effect::Allow, "{:?}", d.reasons);
    for args in [
        json!({"URL": "http://169.254.169.254/latest/meta-data/"}),
        json!({"ſite": "http://169.254.169.254/latest/meta-data/"}),
        json!({"\u{212A}ey": "x", "SITE": "http://169.254.169.254/"}),
        json!({"url": "https://example.com/", "Url": "http://169.254.169.254/"}),
        json!({"Hops": [{"TO": "http://169.254.169.254/"}]}),
    ] {
        let d = decide_args(args.clone());
        assert_eq!(
            d.decision,
            conductor_core::Effect::Deny,
            "{args} was allowed: {:?}",
            d
        );
        assert!(
            d.reasons
                .iter()
                .any(|r| r.check == conductor_core::Check::Destination),
            "{args}: {:?}",
            d.reasons
        );
    }
}
