//! INVARIANT under test: no finding, debug output, error or redacted value contains a
//! matched value.

use conductor_scan::{LabelSpec, Scanner, parse_gitleaks_toml, redact};
use serde_json::Value;

use crate::corpus::{all_builtins, key, load};

fn text_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

#[test]
fn findings_never_contain_the_matched_value() {
    let scanner = all_builtins();
    let k = key();
    let mut checked = 0;
    for c in load("positives.txt", true) {
        let found = scanner.scan(&c.value, &k);
        let json = serde_json::to_string(&found).unwrap();
        let debug = format!("{found:?}");
        let mut secrets: Vec<String> = c
            .generated
            .iter()
            .filter(|g| g.len() >= 8)
            .cloned()
            .collect();
        for f in &found {
            if f.encoding.is_none()
                && !f.in_key
                && let Some(s) = text_at(&c.value, &f.pointer.to_string())
            {
                let m = &s[f.start..f.end];
                if m.len() >= 6 {
                    secrets.push(m.to_string());
                }
            }
            assert!(f.fingerprint.starts_with("hmac-sha256:"));
            assert_eq!(f.fingerprint.len(), "hmac-sha256:".len() + 64);
        }
        for s in &secrets {
            assert!(
                !json.contains(s.as_str()),
                "line {}: json output leaks a value",
                c.line
            );
            assert!(
                !debug.contains(s.as_str()),
                "line {}: debug output leaks a value",
                c.line
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} values checked");
}

#[test]
fn redaction_removes_every_finding() {
    let scanner = all_builtins();
    let k = key();
    for c in load("positives.txt", true) {
        let found = scanner.scan(&c.value, &k);
        let red = redact(&c.value, &found);
        let text = serde_json::to_string(&red).unwrap();
        // A service-account key id is an identifier, not a secret: it is left alone.
        let ids_only = c
            .source
            .contains("\"private_key_id\": \"${hex:40}\", \"private_key\"");
        for g in c
            .generated
            .iter()
            .filter(|g| g.len() >= 8 && !(ids_only && g.len() == 40))
        {
            assert!(
                !text.contains(g.as_str()),
                "line {}: a generated value survives redaction",
                c.line
            );
        }
        assert!(
            text.contains("[REDACTED:all]"),
            "line {}: nothing redacted",
            c.line
        );
        let again = scanner.scan(&red, &k);
        assert!(
            again.is_empty(),
            "line {}: redacted value still has {:?}",
            c.line,
            again.iter().map(|f| &f.detector).collect::<Vec<_>>()
        );
    }
}

#[test]
fn config_errors_do_not_echo_values() {
    // A user regex error names the label and the pattern index.
    let e = Scanner::new(&[LabelSpec {
        name: "x".into(),
        patterns: vec!["(unclosed".into(), "ok".into(), "[z-a]".into()],
        builtins: vec!["secrets".into(), "nope".into()],
        ..LabelSpec::default()
    }])
    .unwrap_err();
    let got: Vec<(Option<usize>, &str)> =
        e.iter().map(|e| (e.pattern, e.message.as_str())).collect();
    assert_eq!(e.len(), 3, "{got:?}");
    assert!(e.iter().any(|e| e.pattern == Some(0)));
    assert!(e.iter().any(|e| e.pattern == Some(2)));
    assert!(
        e.iter()
            .any(|e| e.pattern.is_none() && e.message.contains("`nope`"))
    );
    for err in &e {
        assert_eq!(err.label, "x");
        assert!(!err.message.ends_with('.'));
        assert!(
            err.message.starts_with(|c: char| c.is_lowercase()),
            "{}",
            err.message
        );
    }
    // A gitleaks error names the rule, never a scanned value.
    let g = parse_gitleaks_toml("[[rules]]\nid = \"r\"\nregex = '''(x'''\n").unwrap_err();
    assert!(
        g.message.starts_with("rule `r`: invalid regex"),
        "{}",
        g.message
    );
}
