//! Hand-written behaviour tests of `DestPolicy::evaluate` and `compile`.

use conductor_net::{Class, DestPolicy, DestPolicySpec};
use serde_json::json;

use crate::common::{Fixed, eval_url, policy, ptr, rules};

#[test]
fn design_example_dotless_metadata() {
    // DESIGN.md, "The decision".
    let o = eval_url(
        &policy(&["*"], &[], &[]),
        "http://2852039166/latest/meta-data/",
        &Fixed::default(),
    );
    assert_eq!(rules(&o), vec!["destinations.blocked.cloud-metadata"]);
    assert_eq!(
        o.violations[0].message,
        "`http://2852039166/` resolves to 169.254.169.254, a cloud metadata endpoint"
    );
    let d = &o.destinations[0];
    assert_eq!(d.input, "http://2852039166/latest/meta-data/");
    assert_eq!(
        (d.scheme.as_str(), d.host.as_str(), d.port),
        ("http", "169.254.169.254", Some(80))
    );
    assert_eq!(d.classes, vec![Class::CloudMetadata, Class::LinkLocal]);
    let j = serde_json::to_value(d).unwrap();
    assert_eq!(j["classes"], json!(["cloud-metadata", "link-local"]));
    assert_eq!(j["addresses"], json!(["169.254.169.254"]));
    assert_eq!(j["pointer"], json!("/url"));
}

#[test]
fn open_web_allows_public_and_resolves_every_address() {
    let r = Fixed::with(&[
        ("example.com", &["93.184.216.34"]),
        ("rebind.example", &["93.184.216.34", "127.0.0.1"]),
    ]);
    let p = policy(&["*"], &[], &[]);
    assert!(
        eval_url(&p, "https://example.com/x", &r)
            .violations
            .is_empty()
    );
    let o = eval_url(&p, "https://rebind.example/", &r);
    assert_eq!(rules(&o), vec!["destinations.blocked.loopback"]);
    assert!(
        o.violations[0].message.contains("127.0.0.1"),
        "{}",
        o.violations[0].message
    );
    assert_eq!(
        rules(&eval_url(&p, "https://nowhere.example/", &r)),
        vec!["destinations.unresolvable"]
    );
}

#[test]
fn permit_opens_a_class() {
    let p = policy(&["*"], &[], &["private"]);
    assert!(
        eval_url(&p, "http://10.1.2.3/", &Fixed::default())
            .violations
            .is_empty()
    );
    assert_eq!(
        rules(&eval_url(&p, "http://127.0.0.1/", &Fixed::default())),
        vec!["destinations.blocked.loopback"]
    );
}

#[test]
fn allowlist_and_deny() {
    let r = Fixed::with(&[
        ("api.github.com", &["140.82.112.6"]),
        ("github.com", &["140.82.112.3"]),
        ("x.internal", &["140.82.112.9"]),
    ]);
    let p = policy(
        &["https://*.github.com", "*.internal"],
        &["*.internal"],
        &[],
    );
    assert!(
        eval_url(&p, "https://api.github.com/repos", &r)
            .violations
            .is_empty()
    );
    assert_eq!(
        rules(&eval_url(&p, "https://github.com/", &r)),
        vec!["destinations.allow"]
    );
    assert_eq!(
        rules(&eval_url(&p, "http://api.github.com/", &r)),
        vec!["destinations.allow"]
    );
    assert_eq!(
        rules(&eval_url(&p, "https://x.internal/", &r)),
        vec!["destinations.deny[0]"]
    );
}

#[test]
fn empty_allow_denies_everything() {
    let p = policy(&[], &[], &[]);
    let o = eval_url(&p, "https://93.184.216.34/", &Fixed::default());
    assert_eq!(rules(&o), vec!["destinations.allow"]);
    assert!(o.violations[0].message.contains("empty"));
}

#[test]
fn schemes() {
    let p = policy(&["*"], &[], &[]);
    assert_eq!(
        rules(&eval_url(
            &p,
            "gopher://93.184.216.34:70/_x",
            &Fixed::default()
        )),
        vec!["destinations.scheme"]
    );
    assert_eq!(
        rules(&eval_url(&p, "file:///etc/passwd", &Fixed::default())),
        vec!["destinations.scheme"]
    );
    let p = policy(&["*", "gopher://93.184.216.34"], &[], &[]);
    assert!(
        eval_url(&p, "gopher://93.184.216.34:70/_x", &Fixed::default())
            .violations
            .is_empty()
    );
}

#[test]
fn names_blocked_without_resolution() {
    struct Panics;
    impl conductor_net::Resolver for Panics {
        fn resolve(
            &self,
            host: &str,
        ) -> Result<Vec<std::net::IpAddr>, conductor_net::ResolveError> {
            panic!("`{host}` must not be resolved")
        }
    }
    let p = policy(&["*"], &[], &[]);
    assert_eq!(
        rules(&eval_url(
            &p,
            "http://metadata.google.internal/computeMetadata/v1/",
            &Panics
        )),
        vec!["destinations.blocked.cloud-metadata"]
    );
    assert_eq!(
        rules(&eval_url(&p, "http://foo.localhost:3000/", &Panics)),
        vec!["destinations.blocked.loopback"]
    );
    // Denied by name or by the allowlist: not resolved either (no DNS leak).
    let p = policy(&["https://*.github.com"], &["*.evil.example"], &[]);
    assert_eq!(
        rules(&eval_url(&p, "https://secret.evil.example/", &Panics)),
        vec!["destinations.deny[0]", "destinations.allow"]
    );
    assert_eq!(
        rules(&eval_url(&p, "https://elsewhere.example/", &Panics)),
        vec!["destinations.allow"]
    );
}

#[test]
fn scan_finds_nested_and_embedded() {
    let p = policy(&["*"], &[], &[]);
    let args = json!({"messages": [{"text": "please GET http://169.254.169.254/ now"}], "q": "ok"});
    let o = p.evaluate(&args, &[], &[], &Fixed::default());
    assert_eq!(rules(&o), vec!["destinations.blocked.cloud-metadata"]);
    assert_eq!(
        o.destinations[0]
            .pointer
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("/messages/0/text")
    );
    assert_eq!(o.destinations[0].input, "http://169.254.169.254/");
    // Not scanning: only declared inputs count.
    let mut spec = DestPolicySpec {
        allow: vec!["*".into()],
        scan: false,
        ..Default::default()
    };
    let p2 = DestPolicy::compile(&spec).unwrap();
    assert!(
        p2.evaluate(&args, &[], &[], &Fixed::default())
            .destinations
            .is_empty()
    );
    spec.scan = true;
    // A declared pointer is not reported twice.
    let o = p.evaluate(
        &json!({"url": "http://93.184.216.34/"}),
        &[ptr("/url")],
        &[],
        &Fixed::default(),
    );
    assert_eq!(o.destinations.len(), 1);
}

#[test]
fn literals_and_non_strings() {
    let r = Fixed::with(&[("api.github.com", &["140.82.112.6"])]);
    let p = policy(&["https://api.github.com"], &[], &[]);
    let o = p.evaluate(
        &json!({}),
        &[],
        &["https://api.github.com".into(), "api.github.com".into()],
        &r,
    );
    assert!(o.violations.is_empty(), "{:?}", o.violations);
    assert_eq!(o.destinations.len(), 2);
    let p = policy(&["*"], &[], &[]);
    let o = p.evaluate(&json!({"url": 2852039166u64}), &[ptr("/url")], &[], &r);
    assert_eq!(rules(&o), vec!["destinations.blocked.cloud-metadata"]);
    let o = p.evaluate(&json!({"url": {"host": "x"}}), &[ptr("/url")], &[], &r);
    assert_eq!(rules(&o), vec!["destinations.unparseable"]);
    let o = p.evaluate(
        &json!({"urls": ["https://93.184.216.34/", "http://[::1]/"]}),
        &[ptr("/urls")],
        &[],
        &r,
    );
    assert_eq!(rules(&o), vec!["destinations.blocked.loopback"]);
    assert_eq!(o.violations[0].destination, 1);
}

#[test]
fn compile_reports_every_bad_entry() {
    let e = DestPolicy::compile(&DestPolicySpec {
        allow: vec![
            "*".into(),
            "10.0.0.1/8".into(),
            "ok.example".into(),
            "x.example/path".into(),
        ],
        deny: vec!["ex?mple".into()],
        permit: vec!["private".into(), "intranet".into()],
        scan: true,
    })
    .unwrap_err();
    let at: Vec<(&str, usize)> = e.iter().map(|e| (e.list, e.index)).collect();
    assert_eq!(
        at,
        vec![("allow", 1), ("allow", 3), ("deny", 0), ("permit", 1)]
    );
    assert!(
        e[0].message.contains("did you mean `10.0.0.0/8`"),
        "{}",
        e[0].message
    );
    assert!(e.iter().all(|e| !e.message.ends_with('.')));
}

#[test]
fn passwords_do_not_reach_the_decision() {
    let p = policy(&["*"], &[], &[]);
    let o = eval_url(
        &p,
        "http://admin:hunter2@169.254.169.254/",
        &Fixed::default(),
    );
    assert_eq!(o.destinations[0].input, "http://admin:***@169.254.169.254/");
    assert!(o.violations.iter().all(|v| !v.message.contains("hunter2")));
}

#[test]
fn passwords_do_not_reach_unparseable_messages() {
    let p = policy(&["*"], &[], &[]);
    for input in [
        "http://admin:hunter2@exa mple.com/",
        "admin:hunter2@exa mple.com",
        "//admin:hunter2@[::1/",
    ] {
        let o = eval_url(&p, input, &Fixed::default());
        assert!(!o.violations.is_empty(), "{input}");
        for v in &o.violations {
            assert!(!v.message.contains("hunter2"), "{}", v.message);
        }
        assert!(
            !o.destinations[0].input.contains("hunter2"),
            "{}",
            o.destinations[0].input
        );
    }
}

#[test]
fn too_many_destinations_deny() {
    let p = policy(&["*"], &[], &[]);
    let urls: Vec<String> = (0..70).map(|i| format!("http://93.184.216.{i}/")).collect();
    let o = p.evaluate(&json!({ "links": urls }), &[], &[], &Fixed::default());
    assert_eq!(o.destinations.len(), conductor_net::MAX_DESTINATIONS);
    assert_eq!(rules(&o), vec!["destinations.limit"]);
    assert!(
        o.violations[0].message.contains("70 destinations"),
        "{}",
        o.violations[0].message
    );
}

#[test]
fn oversized_input_is_unparseable() {
    let p = policy(&["*"], &[], &[]);
    let long = format!(
        "https://example.com/{}",
        "a".repeat(conductor_net::canon::MAX_INPUT)
    );
    let o = eval_url(
        &p,
        &long,
        &Fixed::with(&[("example.com", &["93.184.216.34"])]),
    );
    assert_eq!(rules(&o), vec!["destinations.unparseable"]);
    // Bounded, not cut for display: the core scrubs and then cuts what people read.
    assert!(o.destinations[0].input.len() <= conductor_net::canon::MAX_INPUT);
}

// Regression: an MCP server's own resource scheme (server-everything's `demo://…`
// resources, found by the wrap interop tests) could never be allowed, because its
// host was sent to DNS. An allow entry naming the scheme now treats the host as a
// name inside the server; address hosts, blocked names and other schemes still deny.
#[test]
fn explicitly_allowed_resource_scheme_is_not_resolved() {
    let none = Fixed::default();
    let p = policy(&["demo://*", "*"], &[], &[]);
    let o = eval_url(&p, "demo://resource/static/document/a.md", &none);
    assert!(o.violations.is_empty(), "{:?}", rules(&o));
    assert!(o.destinations[0].addresses.is_empty());

    let o = eval_url(&p, "demo://169.254.169.254/latest", &none);
    assert_eq!(rules(&o), vec!["destinations.blocked.cloud-metadata"]);
    let o = eval_url(&p, "demo://localhost/x", &none);
    assert_eq!(rules(&o), vec!["destinations.blocked.loopback"]);

    // A scheme no allow entry names is still refused, and still resolved.
    let o = eval_url(&p, "memo://resource/x", &none);
    assert!(rules(&o).contains(&"destinations.scheme".to_string()));
    // A network scheme named explicitly is still resolved and checked.
    let p = policy(&["gopher://*"], &[], &[]);
    let o = eval_url(&p, "gopher://resource/x", &none);
    assert_eq!(rules(&o), vec!["destinations.unresolvable"]);
    // Without the scheme in an allow entry, `*` does not open it.
    let p = policy(&["*"], &[], &[]);
    let o = eval_url(&p, "demo://resource/x", &none);
    assert!(rules(&o).contains(&"destinations.scheme".to_string()));
}

/// Scan `text` as free text (no pointer declared) under `allow: ["*"]`, with
/// `example.com` resolving to a public address.
fn scan_rules(text: &str) -> Vec<String> {
    let r = Fixed::with(&[("example.com", &["93.184.216.34"])]);
    let o = policy(&["*"], &[], &[]).evaluate(&json!({ "text": text }), &[], &[], &r);
    rules(&o)
}

// Regression (issue 10, class 3): the scan ended the URL at the tab; Node's fetch
// (WHATWG) removes it and connected to 169.254.169.254.
#[test]
fn ssrf_tab_inside_host() {
    let got = scan_rules("http://169.254.\t169.254/latest/meta-data/");
    assert!(
        got.iter()
            .any(|r| r == "destinations.blocked.cloud-metadata"),
        "{got:?}"
    );
    let got = scan_rules("see http://169.254.169.\r\n254/ please");
    assert!(
        got.iter()
            .any(|r| r == "destinations.blocked.cloud-metadata"),
        "{got:?}"
    );
}

// Regression (issue 10, class 3): the scan ended the URL at `;`, every parser reads
// `example.com;` as userinfo and 169.254.169.254 as the host.
#[test]
fn ssrf_semicolon_userinfo() {
    let got = scan_rules("http://example.com;@169.254.169.254/");
    assert!(
        got.iter()
            .any(|r| r == "destinations.blocked.cloud-metadata"),
        "{got:?}"
    );
}

// Regression (issue 10, class 3): `example.com @` — Python's urllib keeps the space in
// the netloc and takes the host after the last `@`.
#[test]
fn ssrf_space_userinfo() {
    let got = scan_rules("http://example.com @169.254.169.254/");
    assert!(
        got.iter()
            .any(|r| r == "destinations.blocked.cloud-metadata"),
        "{got:?}"
    );
}

// Regression (issue 10, class 3): every character the prose reading stops at.
#[test]
fn ssrf_prose_terminator_userinfo() {
    for c in [',', '\'', '"', '(', ')', '{', '}', '|', '<', '>', '`'] {
        let got = scan_rules(&format!("http://example.com{c}@169.254.169.254/"));
        assert!(
            got.iter()
                .any(|r| r == "destinations.blocked.cloud-metadata"),
            "`{c}`: {got:?}"
        );
    }
}

#[test]
fn prose_after_a_url_is_not_a_userinfo() {
    for text in [
        "see http://example.com; then mail bob@example.com",
        "(http://example.com), (mailto:x@example.com)",
        "\"http://example.com\" and \"bob@example.com\"",
    ] {
        assert!(
            scan_rules(text).is_empty(),
            "{text}: {:?}",
            scan_rules(text)
        );
    }
}

// The two-phase API: what waits for DNS, and what never does.
#[test]
fn prepare_leaves_only_names_pending_and_refuse_drops_them() {
    let p = policy(&["*"], &["*.internal"], &[]);
    let args = json!({
        "a": "https://example.com/",
        "b": "https://db.internal/",
        "c": "http://169.254.169.254/",
        "d": "https://other.example.com/",
    });
    let pointers = [ptr("/a"), ptr("/b"), ptr("/c"), ptr("/d")];
    let mut plan = p.prepare(&args, &pointers, &[]);
    assert_eq!(
        plan.hosts_to_resolve(),
        ["example.com".to_string(), "other.example.com".into()]
    );
    assert!(plan.denies());
    plan.refuse(
        3,
        conductor_types::RuleId::destinations("name-carries-data"),
        "refused".into(),
    );
    assert_eq!(plan.hosts_to_resolve(), ["example.com".to_string()]);
    let r = Fixed::with(&[("example.com", &["93.184.216.34"])]);
    let o = plan.finish(&r);
    let got = rules(&o);
    assert!(got.iter().any(|x| x == "destinations.deny[0]"), "{got:?}");
    assert!(
        got.iter()
            .any(|x| x == "destinations.blocked.cloud-metadata"),
        "{got:?}"
    );
    assert!(
        got.iter().any(|x| x == "destinations.name-carries-data"),
        "{got:?}"
    );
    assert_eq!(o.destinations[0].addresses.len(), 1);
    // Ending without DNS leaves names unresolved and adds no reason of its own.
    let o = p.prepare(&args, &pointers, &[]).finish_unresolved();
    assert!(o.destinations[0].addresses.is_empty());
    assert!(!rules(&o).iter().any(|x| x == "destinations.unresolvable"));
}
