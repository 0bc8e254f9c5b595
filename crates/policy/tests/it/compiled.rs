//! What a loaded policy compiles to.

use conductor_policy::{Action, load_str};

use crate::fixture;

#[test]
fn design_example_loads() {
    let p = conductor_policy::load_file(&fixture("design.yaml"))
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert!(p.sha256().starts_with("sha256:"));
    assert_eq!(p.sha256().len(), "sha256:".len() + 64);
    let deploy = p.agent("deploy-bot").unwrap();
    assert_eq!(deploy.effective_roles, vec!["operator", "researcher"]);
    assert_eq!(p.data().level_name(deploy.clearance), "confidential");
}

#[test]
fn sha256_is_of_the_file_bytes() {
    let a = load_str("version: 1\n", "a", None).unwrap();
    let b = load_str("version: 1\n# comment\n", "b", None).unwrap();
    assert_ne!(a.sha256(), b.sha256());
    // printf 'version: 1\n' | sha256sum
    assert_eq!(
        a.sha256(),
        "sha256:09bfcc6a14b83e2192b8673677725c84883ee9cd0c70e45c9ec09daa8f2b2847"
    );
}

#[test]
fn rule_ids_are_paths_into_the_policy() {
    let p = load_str(
        r#"version: 1
agents: {a: {roles: [top]}}
roles:
  base:
    allow: [{tools: ["x.*"]}, {tools: ["y.*"]}]
    deny: [{tools: ["x.z"]}]
  l: {extends: [base]}
  r: {extends: [base]}
  top:
    extends: [l, r]
    approve: [{tools: ["y.m"]}]
"#,
        "p",
        None,
    )
    .unwrap();
    let a = p.agent("a").unwrap();
    let ids: Vec<&str> = p.rules_of(a).map(|r| r.id.as_str()).collect();
    // The diamond's base appears once.
    assert_eq!(
        ids,
        vec![
            "roles.top.approve[0]",
            "roles.base.allow[0]",
            "roles.base.allow[1]",
            "roles.base.deny[0]",
        ]
    );
}

#[test]
fn tool_facts_exact_then_most_specific_glob() {
    let p = load_str(
        r#"version: 1
tools:
  "*": {action: admin}
  github.*: {action: write}
  github.get_*: {action: read}
  github.get_secret: {action: admin}
  "*.drop_table_*": {action: delete}
  fetch.fetch: {destinations: [/url, "https://example.com"]}
"#,
        "p",
        None,
    )
    .unwrap();
    assert_eq!(p.action_of("github.get_secret"), Action::Admin);
    assert_eq!(p.action_of("github.get_repo"), Action::Read);
    assert_eq!(p.action_of("github.push"), Action::Write);
    assert_eq!(p.action_of("other.x"), Action::Admin);
    // A server-less glob with more literal characters beats the server's glob.
    assert_eq!(p.action_of("github.drop_table_x"), Action::Delete);
    // Declared without an action: execute.
    assert_eq!(p.action_of("fetch.fetch"), Action::Execute);
    let f = p.tool_fact("fetch.fetch").unwrap();
    assert_eq!(
        f.pointers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["/url"]
    );
    assert_eq!(f.literals, vec!["https://example.com"]);
}

#[test]
fn undeclared_tools_are_execute() {
    let p = load_str("version: 1\n", "p", None).unwrap();
    assert_eq!(p.action_of("a.b"), Action::Execute);
    assert!(p.tool_fact("a.b").is_none());
}

#[test]
fn no_data_section_means_the_secure_default() {
    let p = load_str("version: 1\n", "p", None).unwrap();
    let d = p.data();
    assert!(!d.declared);
    assert_eq!(
        d.levels,
        vec!["public", "internal", "confidential", "secret"]
    );
    assert_eq!(d.labels.get("credentials"), Some(&3));
    assert_eq!(d.default_egress, 0);
}

#[test]
fn yaml_anchors_within_budget_are_fine() {
    let p = load_str(
        r#"version: 1
x-read: &read [read]
agents: {a: {roles: [r]}}
roles:
  r:
    allow:
      - {tools: ["a.*"], actions: *read}
      - {tools: ["b.*"], actions: *read}
"#,
        "p",
        None,
    );
    // `x-read` is not a policy key: anchors must live inside known keys.
    assert!(p.is_err());
}

#[test]
fn candidate_rules_keep_the_agent_rule_order() {
    let p = load_str(
        r#"version: 1
agents: {a: {roles: [top]}}
roles:
  base:
    allow: [{tools: ["x.y"]}, {tools: ["x.*"]}, {tools: ["z.z", "x.y"]}, {tools: ["q.q"]}]
  top:
    extends: [base]
    deny: [{tools: ["*"]}, {tools: ["x.y"]}]
"#,
        "p",
        None,
    )
    .unwrap();
    let a = p.agent("a").unwrap();
    let ids: Vec<&str> = p.candidate_rules(a, "x.y").map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "roles.top.deny[0]",
            "roles.top.deny[1]",
            "roles.base.allow[0]",
            "roles.base.allow[1]",
            "roles.base.allow[2]",
        ]
    );
    // `q.q` is neither an exact name nor a wildcard match for `x.y`.
    let all: Vec<&str> = p.rules_of(a).map(|r| r.id.as_str()).collect();
    assert_eq!(all.len(), 6);
}

/// `{gitleaks: file}` is read relative to the policy file and its rules detect.
#[test]
fn gitleaks_rules_are_imported_relative_to_the_policy() {
    let p = conductor_policy::load_file(&fixture("gitleaks/policy.yaml"))
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let key = conductor_scan::FingerprintKey([3; 32]);
    let token = format!("acme_tok_{}", "k3j9x0q2m5n8b1v4c7z6l2p9");
    let findings = p
        .data()
        .scanner
        .scan(&serde_json::json!({"note": format!("token {token}")}), &key);
    assert!(
        findings
            .iter()
            .any(|f| f.label == "credentials" && f.detector.contains("acme-internal-token")),
        "{findings:?}"
    );
}

// Regression: the policy digest covered only the policy file, so an edited gitleaks
// rules file left audit records naming the old digest, and the reload watchers (which
// skip a version whose digest is unchanged) never put the new rules in force.
#[test]
fn the_policy_digest_covers_the_gitleaks_rules_file() {
    let dir = tempfile::tempdir().unwrap();
    let policy =
        "version: 1\ndata:\n  labels:\n    l: {level: secret, detect: [{gitleaks: rules.toml}]}\n";
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, policy).unwrap();
    let rules = |re: &str| format!("[[rules]]\nid = \"r\"\nregex = \"{re}\"\n");
    std::fs::write(dir.path().join("rules.toml"), rules("acme_[a-z]{8}")).unwrap();
    let a = conductor_policy::load_file(&p).unwrap();
    let again = conductor_policy::load_file(&p).unwrap();
    assert_eq!(a.sha256(), again.sha256(), "the digest is deterministic");
    std::fs::write(dir.path().join("rules.toml"), rules("acme_[a-z]{9}")).unwrap();
    let b = conductor_policy::load_file(&p).unwrap();
    assert_ne!(
        a.sha256(),
        b.sha256(),
        "an edited rules file left the digest unchanged"
    );
    // The same text and rules in another directory: the same digest (the names the
    // policy gives are framed, not absolute paths).
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("p.yaml"), policy).unwrap();
    std::fs::write(other.path().join("rules.toml"), rules("acme_[a-z]{9}")).unwrap();
    let c = conductor_policy::load_file(&other.path().join("p.yaml")).unwrap();
    assert_eq!(b.sha256(), c.sha256());
    // Nor is it the digest of the policy text alone.
    use sha2::Digest;
    let text_only = format!("sha256:{}", hex::encode(sha2::Sha256::digest(policy)));
    assert_ne!(text_only, b.sha256());
}

#[test]
fn a_broken_gitleaks_file_is_a_located_problem() {
    let e = conductor_policy::load_file(&fixture("gitleaks/broken.yaml")).unwrap_err();
    let out = e.render(false);
    assert!(out.contains("gitleaks file `broken.toml`"), "{out}");
    assert!(out.contains("broken.yaml:4:43"), "{out}");
}

#[test]
fn gitleaks_files_stay_inside_the_policy_directory() {
    let dir = tempfile::tempdir().unwrap();
    for (i, path) in ["/etc/passwd", "../rules.toml", "a/../../x.toml"]
        .iter()
        .enumerate()
    {
        let p = dir.path().join(format!("p{i}.yaml"));
        std::fs::write(
            &p,
            format!("version: 1\ndata:\n  labels:\n    l: {{level: secret, detect: [{{gitleaks: \"{path}\"}}]}}\n"),
        )
        .unwrap();
        let out = conductor_policy::load_file(&p).unwrap_err().render(false);
        assert!(out.contains("inside the policy's directory"), "{out}");
    }
}

#[test]
fn sessions_approval_ttl_is_a_strict_duration() {
    let p = conductor_policy::load_str(
        "version: 1\nsessions: {approval_ttl: 90s}\n",
        "p.yaml",
        None,
    )
    .unwrap();
    assert_eq!(p.approval_ttl(), Some(std::time::Duration::from_secs(90)));
    let none = conductor_policy::load_str("version: 1\n", "p.yaml", None).unwrap();
    assert_eq!(none.approval_ttl(), None);
    for bad in ["0s", "5", "3w", "-1h"] {
        let e = conductor_policy::load_str(
            &format!("version: 1\nsessions: {{approval_ttl: \"{bad}\"}}\n"),
            "p.yaml",
            None,
        )
        .unwrap_err()
        .render(false);
        assert!(e.contains("invalid duration"), "{bad}: {e}");
    }
}

#[test]
fn an_approve_rules_expires_overrides_sessions_approval_ttl() {
    use conductor_types::RuleId;
    let p = conductor_policy::load_str(
        "version: 1\nagents:\n  a: {roles: [r, s]}\nroles:\n  r:\n    approve:\n      - tools: [\"x.*\"]\n        expires: 2m\n      - tools: [\"y.*\"]\n  s:\n    approve:\n      - tools: [\"x.*\"]\n        expires: 30m\nsessions: {approval_ttl: 10m}\n",
        "p.yaml",
        None,
    )
    .unwrap();
    let m = std::time::Duration::from_secs(60);
    let r0 = RuleId::role_rule("r", "approve", 0);
    let r1 = RuleId::role_rule("r", "approve", 1);
    let s0 = RuleId::role_rule("s", "approve", 0);
    // The rule's own expiry wins; of two rules, the shorter.
    assert_eq!(p.approval_ttl_of([&s0].into_iter()), Some(m * 30));
    assert_eq!(p.approval_ttl_of([&s0, &r0].into_iter()), Some(m * 2));
    // A rule without `expires`, or no approve rule: `sessions.approval_ttl`.
    assert_eq!(p.approval_ttl_of([&r1].into_iter()), Some(m * 10));
    assert_eq!(p.approval_ttl_of(std::iter::empty()), Some(m * 10));
    for (rule, needle) in [
        (
            "allow:\n      - tools: [\"x.*\"]\n        expires: 2m",
            "`expires` is for `approve` rules",
        ),
        (
            "deny:\n      - tools: [\"x.*\"]\n        expires: 2m",
            "`expires` is for `approve` rules",
        ),
        (
            "approve:\n      - tools: [\"x.*\"]\n        expires: 0s",
            "invalid duration",
        ),
        (
            "approve:\n      - tools: [\"x.*\"]\n        expires: soon",
            "invalid duration",
        ),
    ] {
        let e = conductor_policy::load_str(
            &format!("version: 1\nroles:\n  r:\n    {rule}\n"),
            "p.yaml",
            None,
        )
        .unwrap_err()
        .render(false);
        assert!(e.contains(needle), "{rule}: {e}");
        assert!(e.contains("p.yaml:"), "{e}");
    }
}

#[test]
fn sessions_label_ttl_and_methods_pass() {
    let p = conductor_policy::load_str(
        "version: 1\nsessions: {label_ttl: 30m}\nmethods: {pass: [\"vendor/*\"]}\n",
        "p.yaml",
        None,
    )
    .unwrap();
    assert_eq!(p.label_ttl(), Some(std::time::Duration::from_secs(1800)));
    assert!(p.method_passes("vendor/run"));
    assert!(!p.method_passes("tools/call"));
    let none = conductor_policy::load_str("version: 1\n", "p.yaml", None).unwrap();
    assert_eq!(none.label_ttl(), None);
    assert!(!none.method_passes("vendor/run"));
    for bad in ["0s", "5", "3w", "-1h", "h"] {
        let e = conductor_policy::load_str(
            &format!("version: 1\nsessions: {{label_ttl: \"{bad}\"}}\n"),
            "p.yaml",
            None,
        )
        .unwrap_err()
        .render(false);
        assert!(e.contains("invalid duration"), "{bad}: {e}");
    }
    let e = conductor_policy::load_str("version: 1\nsessions: {ttl: 1h}\n", "p.yaml", None)
        .unwrap_err()
        .render(false);
    assert!(e.contains("ttl"), "{e}");
}

/// The `~k<i>` segment names a withheld member in Conductor's own output; a policy
/// pointer written with it would name no argument, so it is refused like a bad escape.
#[test]
fn a_policy_pointer_cannot_use_the_withheld_member_segment() {
    let err = conductor_policy::check_pointer("/headers/~k0").unwrap_err();
    assert!(err.contains("`~` must be followed by"), "{err}");
    let ok = conductor_policy::check_pointer("/a~1b/0").unwrap();
    assert_eq!(ok.to_string(), "/a~1b/0");
    assert_eq!(ok.segments().len(), 2);
}
