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

/// No window of 8 characters of the token appears (not even a prefix of it).
fn assert_no_part(text: &str) {
    let lower = text.to_ascii_lowercase();
    let token = TOKEN.to_ascii_lowercase();
    for i in 0..=token.len() - 8 {
        let part = &token[i..i + 8];
        assert!(
            !lower.contains(part),
            "`{part}` of the token leaked: {text}"
        );
    }
}

// Regression (issue 10, class 6): a URL-looking object key holding a secret was
// shown in clear in `destinations[].input` and `pointer`.
#[test]
fn leak_url_key_holding_a_secret() {
    for key in [
        format!("https://example.com/?token={TOKEN}"),
        format!("https://user:{TOKEN}@example.com/"),
        format!("http://169.254.169.254/{TOKEN}"),
        format!("https://{TOKEN}.example.com/"),
    ] {
        let out = decide_json(json!({"headers": {key.clone(): "x"}}), "notes.write");
        assert_no_part(&out);
        let out = decide_json(json!({ key: {"a": 1} }), "notes.write");
        assert_no_part(&out);
    }
}

// Regression (issue 10, class 6): excerpts were cut before scrubbing, so the part
// of a secret before the cut stayed in the message.
#[test]
fn leak_excerpt_cut_before_scrubbing() {
    // A secret across the 60-character excerpt of an unparseable destination.
    for pad in [40, 50, 55, 58] {
        let url = format!("http://[{} {TOKEN}/", "a".repeat(pad));
        assert_no_part(&decide_json(json!({ "url": url }), "fetch.fetch"));
    }
    // Across the 120-character origin shown in messages.
    for pad in [100, 110, 115] {
        let host = format!(
            "{}.{}.{TOKEN}.example.net",
            "a".repeat(pad / 2),
            "b".repeat(pad - pad / 2 - 1)
        );
        assert_no_part(&decide_json(
            json!({ "url": format!("https://{host}/") }),
            "fetch.fetch",
        ));
    }
    // Across the 2,048-byte cut of a destination's input.
    for pad in [2030, 2040, 2045] {
        let url = format!("https://example.com/{}/{TOKEN}", "a".repeat(pad - 20));
        assert_no_part(&decide_json(json!({ "url": url }), "fetch.fetch"));
    }
}

// Everything a person reads is still bounded after scrubbing.
#[test]
fn long_inputs_are_still_cut_for_display() {
    let url = format!("https://example.com/{}", "a".repeat(5000));
    let p = load_str(POLICY, "p", None).unwrap();
    let resolver = FixedResolver::new(&BTreeMap::new());
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    let req = Request {
        agent: "bot".into(),
        tool: "fetch.fetch".into(),
        arguments: json!({ "url": url, "x": format!("http://[{}", "b".repeat(3000)) }),
        workflow: None,
        session: None,
        session_labels: vec![],
    };
    let d = decide(&p, &req, &world);
    for dest in &d.destinations {
        assert!(dest.input.len() <= 2048 + 3, "{}", dest.input.len());
    }
    assert!(!d.reasons.is_empty());
    for r in &d.reasons {
        assert!(r.message.len() <= 1024, "{}", r.message);
    }
}
