//! Rendered diagnostics: every problem at once, each with `file:line:col` and a caret.

use crate::{fixture, refuse};

#[test]
fn many_errors_are_reported_at_once_with_places() {
    let e = conductor_policy::load_file(&fixture("many_errors.yaml")).unwrap_err();
    let places: Vec<(u32, u32)> = e
        .problems()
        .iter()
        .map(|p| (p.line.unwrap(), p.column.unwrap()))
        .collect();
    // undefined role, unknown level, unknown key, bad glob, unknown action, bad
    // pointers, bad regex, min > max, cycle, missing/unknown key, workflow errors,
    // data label errors: all in one report.
    for want in [
        (4, 13),
        (5, 16),
        (6, 5),
        (11, 28),
        (12, 25),
        (14, 11),
        (15, 11),
        (15, 26),
        (16, 21),
        (18, 15),
        (20, 9),
        (23, 13),
        (24, 12),
        (27, 18),
        (27, 34),
    ] {
        assert!(places.contains(&want), "no problem at {want:?}: {places:?}");
    }
    let text = std::fs::read_to_string(fixture("many_errors.yaml")).unwrap();
    insta::assert_snapshot!(
        "many_errors",
        conductor_policy::load_str(&text, "many_errors.yaml", None)
            .unwrap_err()
            .render(false)
    );
}

#[test]
fn unknown_keys_everywhere_are_all_reported() {
    let out = refuse(
        r#"version: 1
colour: red
agents:
  a: {roles: [r], role: x}
roles:
  r:
    allow:
      - tools: ["a.b"]
        action: [read]
tools:
  a.b: {action: read, destination: [/url]}
destinations: {allow: ["*"], alow: []}
data:
  labels:
    l: {level: secret, detect: [secrets], matches: ["x"]}
  egress:
    - to: ["*"]
      max: public
      min: public
workflows:
  w: {roles: [r], tools: ["a.*"], tool: x}
"#,
    );
    for key in [
        "colour",
        "role",
        "action",
        "destination",
        "alow",
        "matches",
        "min",
        "tool",
    ] {
        assert!(
            out.contains(&format!("unknown key `{key}`")),
            "`{key}` not reported:\n{out}"
        );
    }
    insta::assert_snapshot!("unknown_keys", out);
}

#[test]
fn cross_references_are_checked() {
    let out = refuse(
        r#"version: 1
agents:
  a: {roles: [ghost], clearance: ultra}
roles:
  r1: {extends: [r2]}
  r2: {extends: [r3]}
  r3: {extends: [r1]}
  self: {extends: [self]}
  orphan: {extends: [missing]}
workflows:
  w: {roles: [nobody], tools: ["x.*"]}
"#,
    );
    assert!(
        out.contains("`extends` cycle: `r1` → `r2` → `r3` → `r1`"),
        "{out}"
    );
    assert!(out.contains("`extends` cycle: `self` → `self`"), "{out}");
    assert!(
        out.contains("role `orphan` extends undefined role `missing`"),
        "{out}"
    );
    assert!(
        out.contains("agent `a` names undefined role `ghost`"),
        "{out}"
    );
    assert!(out.contains("unknown data level `ultra`"), "{out}");
    assert!(
        out.contains("workflow `w` names undefined role `nobody`"),
        "{out}"
    );
    insta::assert_snapshot!("cross_references", out);
}

#[test]
fn bad_values_are_located() {
    let out = refuse(
        r#"version: 1
agents:
  a: {roles: [r]}
roles:
  r:
    allow:
      - tools: []
      - tools: ["ok.*"]
        actions: []
      - tools: ["x.y"]
        when:
          /a: {}
          /b: {one_of: []}
          /c: {min: x}
          /d: {regex: "a{2,1}"}
          "": {equals: 1}
tools:
  "bad\\": {action: launch}
  x.y: {destinations: ["/a~", ""]}
destinations:
  permit: [privat]
data:
  levels: [low, low]
  labels:
    empty: {level: low}
  default_egress: nowhere
"#,
    );
    insta::assert_snapshot!("bad_values", out);
}

#[test]
fn yaml_syntax_errors_are_located() {
    let out = refuse("version: 1\nagents:\n  a: {roles: [x}\n");
    assert!(out.contains("policy.yaml:3:"), "{out}");
    insta::assert_snapshot!("syntax", out);
}

#[test]
fn version_is_required_and_must_be_1() {
    let out = refuse("agents: {}\n");
    assert!(out.contains("missing `version`"), "{out}");
    let out = refuse("version: 2\n");
    assert!(out.contains("unsupported policy version `2`"), "{out}");
    let out = refuse("version: \"1\"\n");
    assert!(out.contains("unsupported policy version"), "{out}");
}

#[test]
fn gitleaks_files_need_a_base_directory() {
    let out = refuse(
        "version: 1\ndata:\n  labels:\n    l: {level: secret, detect: [{gitleaks: rules.toml}]}\n",
    );
    assert!(out.contains("not loaded from a file"), "{out}");
}

#[test]
fn color_rendering_differs_only_in_styling() {
    let e = conductor_policy::load_str("version: 1\nx: 1\n", "p.yaml", None).unwrap_err();
    let plain = e.render(false);
    let color = e.render(true);
    assert!(!plain.contains('\u{1b}'), "{plain}");
    assert!(color.contains('\u{1b}'), "{color}");
    assert!(plain.contains("p.yaml:2:1"), "{plain}");
}

/// A role whose body is broken is still a defined role: naming it is not a
/// second problem.
#[test]
fn a_broken_role_is_reported_once() {
    let e = conductor_policy::load_str(
        "version: 1\nagents: {a: {roles: [r]}}\nroles:\n  r: {allow: 5}\n  s: {extends: [r]}\nworkflows: {w: {roles: [r], tools: [\"x.*\"]}}\n",
        "p",
        None,
    )
    .unwrap_err();
    assert_eq!(e.problems().len(), 1, "{}", e.render(false));
    assert_eq!(
        (e.problems()[0].line, e.problems()[0].column),
        (Some(4), Some(14))
    );
}

#[test]
fn a_destination_that_is_neither_pointer_nor_url_is_an_error() {
    let out = refuse("version: 1\ntools:\n  fetch.fetch: {destinations: [url]}\n");
    assert!(out.contains("write `/url`"), "{out}");
    assert!(out.contains("policy.yaml:3:32"), "{out}");
    // Hosts, URLs and pointers are fine.
    assert!(
        conductor_policy::load_str(
            "version: 1\ntools:\n  a.b: {destinations: [/url, api.github.com, \"https://x.example\", localhost]}\n",
            "p",
            None
        )
        .is_ok()
    );
}
