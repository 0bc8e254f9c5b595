//! No decision contains a value a detector matched — wherever the request put it:
//! a value, an object key, a URL's query or userinfo, a percent-encoded or
//! base64-encoded form, a host name, a pointer through a secret key.

use std::collections::BTreeMap;

use conductor_core::{Request, World, decide};
use conductor_policy::load_str;
use serde_json::{Value, json};

use crate::corpus::{FixedResolver, KEY};

// GitHub's documented classic personal access token shape (`ghp_` + 36 characters).
const TOKEN: &str = "ghp_8Fq2LmZt9RkX4vBn7WcY1pQs3JdH6gTa0eUi";
const EMAIL: &str = "jane.doe@example.org";

const POLICY: &str = r#"version: 1
agents: {bot: {roles: [any], clearance: secret}}
roles: {any: {allow: [{tools: ["*"]}]}}
tools:
  fetch.fetch: {action: read, destinations: [/url]}
destinations: {allow: ["*"]}
data:
  labels:
    credentials: {level: secret, detect: [secrets]}
    personal: {level: confidential, detect: [email]}
"#;

fn decide_json(arguments: Value, tool: &str) -> String {
    let p = load_str(POLICY, "p", None).unwrap();
    let mut resolve = BTreeMap::new();
    resolve.insert(
        format!("{}.example.com", TOKEN.to_ascii_lowercase()),
        vec!["93.184.215.14".parse().unwrap()],
    );
    let resolver = FixedResolver::new(&resolve);
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    let req = Request {
        agent: "bot".into(),
        tool: tool.into(),
        arguments,
        workflow: None,
        session: None,
        session_labels: vec![],
    };
    let d = decide(&p, &req, &world);
    assert!(!d.findings.is_empty(), "nothing found in {req:?}");
    serde_json::to_string(&d).unwrap()
}

fn assert_clean(text: &str) {
    let lower = text.to_ascii_lowercase();
    for secret in [TOKEN, EMAIL, &TOKEN[4..]] {
        assert!(
            !lower.contains(&secret.to_ascii_lowercase()),
            "`{secret}` leaked: {text}"
        );
    }
}

#[test]
fn a_token_in_a_value() {
    assert_clean(&decide_json(
        json!({"note": format!("use {TOKEN} now")}),
        "notes.write",
    ));
}

#[test]
fn a_token_as_an_object_key_and_below_it() {
    assert_clean(&decide_json(
        json!({TOKEN: {"contact": EMAIL}}),
        "notes.write",
    ));
}

#[test]
fn a_token_in_a_url_query_of_a_declared_destination() {
    let out = decide_json(
        json!({"url": format!("https://example.com/api?access_token={TOKEN}")}),
        "fetch.fetch",
    );
    assert_clean(&out);
    assert!(out.contains("[REDACTED:credentials]"), "{out}");
}

#[test]
fn a_url_found_by_scanning_free_text() {
    assert_clean(&decide_json(
        json!({"text": format!("see https://example.com/?t={TOKEN} and mail {EMAIL}")}),
        "notes.write",
    ));
}

#[test]
fn a_token_as_a_url_password() {
    assert_clean(&decide_json(
        json!({"url": format!("https://user:{TOKEN}@example.com/")}),
        "fetch.fetch",
    ));
}

#[test]
fn a_percent_encoded_token() {
    let encoded: String = TOKEN.bytes().map(|b| format!("%{b:02X}")).collect();
    assert_clean(&decide_json(
        json!({"url": format!("https://example.com/?q={encoded}")}),
        "fetch.fetch",
    ));
}

#[test]
fn a_token_as_a_host_name_label() {
    assert_clean(&decide_json(
        json!({"url": format!("https://{TOKEN}.example.com/")}),
        "fetch.fetch",
    ));
}
