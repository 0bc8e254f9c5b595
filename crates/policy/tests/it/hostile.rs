//! Hostile policy files are refused (quickly, by budget), never hang or exhaust memory.
//! No timing assertions: the budgets bound the work, and the tests show they trip.

use crate::refuse;

/// The "billion laughs" shape, in YAML (CVE-2003-1564 for XML; the YAML form is
/// described in https://en.wikipedia.org/wiki/Billion_laughs_attack).
#[test]
fn alias_bomb_is_refused() {
    let mut text = String::from("version: 1\na: &a [x,x,x,x,x,x,x,x,x,x]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 10].join(",");
        text.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
    }
    let out = refuse(&text);
    assert!(out.contains("yaml aliases"), "{out}");
    insta::assert_snapshot!("alias_bomb", out);
}

#[test]
fn deep_flow_nesting_is_refused() {
    let text = format!(
        "version: 1\nagents: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let out = refuse(&text);
    assert!(out.contains("nests too deeply"), "{out}");
}

#[test]
fn deep_block_nesting_is_refused() {
    let mut text = String::from("version: 1\nagents:\n");
    for i in 0..100 {
        text.push_str(&format!("{}k{i}:\n", "  ".repeat(i + 1)));
    }
    let out = refuse(&text);
    assert!(out.contains("nests too deeply"), "{out}");
}

#[test]
fn huge_input_is_refused_before_parsing() {
    let text = format!(
        "version: 1\n# {}\n",
        "x".repeat(conductor_policy::MAX_POLICY_BYTES)
    );
    let out = refuse(&text);
    assert!(out.contains("more than the limit"), "{out}");
}

#[test]
fn huge_files_are_refused_before_reading_them_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.yaml");
    std::fs::write(&p, vec![b'#'; conductor_policy::MAX_POLICY_BYTES + 10]).unwrap();
    let e = conductor_policy::load_file(&p).unwrap_err();
    assert!(
        e.render(false).contains("larger than"),
        "{}",
        e.render(false)
    );
}

#[test]
fn many_documents_are_refused() {
    let out = refuse("version: 1\n---\nversion: 1\n");
    assert!(out.contains("single yaml document"), "{out}");
    insta::assert_snapshot!("many_documents", out);
}

/// Tags that construct objects are the classic YAML RCE (e.g. PyYAML's
/// `!!python/object/apply`, CVE-2017-18342); they are refused, not ignored.
#[test]
fn constructor_tags_are_refused() {
    let out = refuse("version: 1\nagents: !!python/object/apply:os.system [\"id\"]\n");
    assert!(out.contains("unsupported tag"), "{out}");
    insta::assert_snapshot!("constructor_tag", out);
}

#[test]
fn duplicate_keys_are_refused() {
    let out = refuse("version: 1\nagents: {}\nagents: {}\n");
    assert!(out.contains("duplicate key `agents`"), "{out}");
}

/// Regexes whose compiled form explodes (nested counted repetition) are refused
/// at load by the compiled-size limit.
#[test]
fn regex_size_bomb_is_refused() {
    let out = refuse(
        "version: 1\nroles:\n  r:\n    allow:\n      - tools: [\"x.y\"]\n        when:\n          /a: {regex: \"((a{100}){100}){100}\"}\n",
    );
    assert!(out.contains("too large once compiled"), "{out}");
}

#[test]
fn overlong_regex_is_refused() {
    let text = format!(
        "version: 1\ndata:\n  labels:\n    l: {{level: secret, match: [\"{}\"]}}\n",
        "a".repeat(5000)
    );
    let out = refuse(&text);
    assert!(out.contains("more than the limit"), "{out}");
}

#[test]
fn invalid_utf8_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bin.yaml");
    std::fs::write(&p, b"version: 1\n\xff\xfe\n").unwrap();
    let e = conductor_policy::load_file(&p).unwrap_err();
    assert!(e.render(false).contains("not valid utf-8"));
}

#[test]
fn empty_and_missing_files_are_refused() {
    let out = refuse("");
    assert!(out.contains("empty"), "{out}");
    let e = conductor_policy::load_file(std::path::Path::new("/nonexistent/p.yaml")).unwrap_err();
    assert!(e.render(false).contains("no such file"));
}

/// Many regexes that each fit the per-regex limit still cannot add up without
/// bound: the policy's total regex budget is enforced.
#[test]
fn regex_budget_is_enforced() {
    let mut text = String::from(
        "version: 1\nroles:\n  r:\n    allow:\n      - tools: [\"x.y\"]\n        when:\n",
    );
    for i in 0..40 {
        // Each needs more than the small charge (Unicode classes are large).
        text.push_str(&format!(
            "          /a{i}: {{regex: \"\\\\w+@\\\\w+{i}\"}}\n"
        ));
    }
    let out = refuse(&text);
    assert!(out.contains("too many regexes"), "{out}");
    // A realistic number of small regexes is fine.
    let mut ok = String::from(
        "version: 1\nroles:\n  r:\n    allow:\n      - tools: [\"x.y\"]\n        when:\n",
    );
    for i in 0..100 {
        ok.push_str(&format!("          /a{i}: {{regex: \"[A-Z]+-{i}\"}}\n"));
    }
    assert!(conductor_policy::load_str(&ok, "p", None).is_ok());
}
