//! Pointers, keys, encodings, user rules, gitleaks import, budgets, redaction.

use conductor_scan::{
    BUDGET_DETECTOR, Finding, FingerprintKey, LabelSpec, ScanLimits, Scanner, parse_gitleaks_toml,
    redact,
};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::corpus::{Rng, all_builtins, key};

/// The findings' paths as written out (RFC 6901 pointers).
fn written(f: &[Finding]) -> Vec<String> {
    f.iter().map(|f| f.pointer.to_string()).collect()
}

fn gh(rng: &mut Rng) -> String {
    format!(
        "ghp_{}",
        rng.pick(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            36
        )
    )
}

fn two_labels() -> Scanner {
    Scanner::new(&[
        LabelSpec {
            name: "credentials".into(),
            builtins: vec!["secrets".into()],
            ..LabelSpec::default()
        },
        LabelSpec {
            name: "personal".into(),
            builtins: vec!["email".into(), "phone".into()],
            ..LabelSpec::default()
        },
        LabelSpec {
            name: "project-x".into(),
            patterns: vec![r"(?i)\bproject[- ]x\b".into()],
            ..LabelSpec::default()
        },
    ])
    .unwrap()
}

#[test]
fn labels_pointers_and_order() {
    let mut rng = Rng::new(1);
    let t = gh(&mut rng);
    let v = json!({"b": ["mail bob@example.com", {"x/y~z": format!("tok {t}")}], "a": "Project X plans"});
    let f = two_labels().scan(&v, &key());
    let ptrs = written(&f);
    let got: Vec<(&str, &str, &str, usize)> = f
        .iter()
        .zip(&ptrs)
        .map(|(f, p)| (f.detector.as_str(), f.label.as_str(), p.as_str(), f.start))
        .collect();
    assert_eq!(
        got,
        vec![
            ("match[0]", "project-x", "/a", 0),
            ("email", "personal", "/b/0", 5),
            ("secrets.github-pat", "credentials", "/b/1/x~1y~0z", 4),
        ]
    );
    assert_eq!(f[2].end - f[2].start, 40);
}

#[test]
fn object_keys_are_scanned() {
    let mut rng = Rng::new(2);
    let t = gh(&mut rng);
    let v = json!({"outer": {t.clone(): 1}});
    let f = all_builtins().scan(&v, &key());
    assert_eq!(f.len(), 1);
    assert!(f[0].in_key);
    // The key is never spelled out: the member is named by its position.
    assert_eq!(f[0].pointer.to_string(), "/outer/~k0");
    let red = redact(&v, &f);
    assert_eq!(red, json!({"outer": {"[REDACTED:all]": 1}}));
}

#[test]
fn pointers_never_spell_out_a_secret_key() {
    let mut rng = Rng::new(10);
    let t = gh(&mut rng);
    let v = json!({"a": 1, t.clone(): {"note": "mail bob@example.com", "x/y": "z"}, "z": "carol@example.org"});
    let f = all_builtins().scan(&v, &key());
    let out = serde_json::to_string(&f).unwrap() + &format!("{f:?}");
    assert!(!out.contains(&t), "a finding names the secret key");
    let ptrs = written(&f);
    let got: Vec<(&str, &str, bool)> = f
        .iter()
        .zip(&ptrs)
        .map(|(f, p)| (f.detector.as_str(), p.as_str(), f.in_key))
        .collect();
    assert_eq!(
        got,
        vec![
            ("email", "/z", false),
            ("secrets.github-pat", "/~k1", true),
            ("email", "/~k1/note", false),
        ]
    );
    let red = redact(&v, &f);
    assert_eq!(
        red,
        json!({"a": 1, "[REDACTED:all]": {"note": "mail [REDACTED:all]", "x/y": "z"}, "z": "[REDACTED:all]"})
    );
}

#[test]
fn encoded_strings_are_decoded_within_bounds() {
    use base64::Engine as _;
    let mut rng = Rng::new(3);
    let t = gh(&mut rng);
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("token={t}"));
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"t\":\"{t}\"}}"));
    let pct = format!("q=1&token%3D{}", t.replace('_', "%5F"));
    let nested = json!({"k": format!("tok {t}")}).to_string();
    let twice = base64::engine::general_purpose::STANDARD.encode(&b64);
    let v = json!({"b64": b64, "url": url, "pct": pct, "json": nested, "twice": twice});
    let f = all_builtins().scan(&v, &key());
    let ptrs = written(&f);
    let enc: Vec<(&str, Option<&str>)> = f
        .iter()
        .zip(&ptrs)
        .map(|(f, p)| (p.as_str(), f.encoding.as_deref()))
        .collect();
    assert_eq!(
        enc,
        vec![
            ("/b64", Some("base64")),
            // The raw JSON text already shows the token; the decoded copy is a duplicate.
            ("/json", None),
            ("/pct", Some("percent")),
            // Regression (issue 10, class 8): double base64 hid a credential.
            ("/twice", Some("base64")),
            ("/url", Some("base64")),
        ],
        "base64 of base64 is decoded twice, and no deeper"
    );
    let red = redact(&v, &f);
    assert_eq!(red["b64"], "[REDACTED:all]");
    assert_eq!(red["pct"], "[REDACTED:all]");
    assert!(red["json"].as_str().unwrap().contains("[REDACTED:all]"));
    assert_eq!(red["twice"], "[REDACTED:all]");
}

// Regression (issue 10, class 8): results that did not label — a credential inside a
// binary blob (a non-UTF-8 byte), a gzip blob, a `data:` URI inside text.
#[test]
fn blobs_gzip_and_data_uris_are_read() {
    use base64::Engine as _;
    use std::io::Write as _;
    let mut rng = Rng::new(11);
    let t = gh(&mut rng);
    let mut blob = vec![0u8, 0xff, 0xfe, 7, 0x80];
    blob.extend_from_slice(format!("token={t}").as_bytes());
    blob.extend_from_slice(&[0, 0xc3, 0x28, 1]);
    let binary = base64::engine::general_purpose::STANDARD.encode(&blob);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("config: token={t}\n").as_bytes())
        .unwrap();
    let gzip = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let inline = format!(
        "see <img src=\"data:text/plain;base64,{}\"> above",
        base64::engine::general_purpose::STANDARD.encode(format!("token={t}"))
    );
    let v = json!({"binary": binary, "gzip": gzip, "inline": inline});
    let f = all_builtins().scan(&v, &key());
    let ptrs = written(&f);
    let at: Vec<&str> = ptrs.iter().map(String::as_str).collect();
    for p in ["/binary", "/gzip", "/inline"] {
        assert!(at.contains(&p), "{p} not found: {at:?}");
    }
    // Random binary (a digest) still decodes to nothing a detector reads.
    let digest = base64::engine::general_purpose::STANDARD.encode(
        (0u8..32)
            .map(|i| i.wrapping_mul(97).wrapping_add(13))
            .collect::<Vec<_>>(),
    );
    assert!(
        all_builtins()
            .scan(&json!({"sri": format!("sha256-{digest}")}), &key())
            .is_empty()
    );
}

#[test]
fn escaped_json_inside_a_string_is_decoded() {
    // \u escapes hide the token from the raw text; decoding the JSON shows it.
    let mut rng = Rng::new(4);
    let t = gh(&mut rng);
    let hidden: String = t.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    let inner = format!("{{\"token\": \"{hidden}\"}}");
    let f = all_builtins().scan(&json!({"body": inner}), &key());
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].encoding.as_deref(), Some("json"));
    assert_eq!(f[0].pointer.to_string(), "/body");
}

#[test]
fn gcp_service_account_object_is_recognised() {
    let mut rng = Rng::new(5);
    let body = rng.pick(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        256,
    );
    let sa = json!({"type": "service_account", "private_key": body, "client_email": "a@b.iam.gserviceaccount.com"});
    let scanner = Scanner::new(&[LabelSpec {
        name: "c".into(),
        builtins: vec!["secrets".into()],
        ..LabelSpec::default()
    }])
    .unwrap();
    let f = scanner.scan(&json!({"creds": sa.clone()}), &key());
    assert!(f.iter().any(|f| f.detector == "secrets.gcp-service-account"
        && f.pointer.to_string() == "/creds/private_key"));
    let as_text = scanner.scan(&json!({"creds": sa.to_string()}), &key());
    assert!(
        as_text
            .iter()
            .any(|f| f.detector == "secrets.gcp-service-account"
                && f.encoding.as_deref() == Some("json"))
    );
}

#[test]
fn fingerprints_are_keyed() {
    let mut rng = Rng::new(6);
    let t = gh(&mut rng);
    let s = all_builtins();
    let a = s.scan_str(&format!("x {t}"), &FingerprintKey([1; 32]));
    let b = s.scan_str(&format!("{t} y"), &FingerprintKey([1; 32]));
    let c = s.scan_str(&format!("x {t}"), &FingerprintKey([2; 32]));
    assert_eq!(a[0].fingerprint, b[0].fingerprint);
    assert_ne!(a[0].fingerprint, c[0].fingerprint);
}

#[test]
fn gitleaks_rules_are_imported_and_applied() {
    let path = format!(
        "{}/tests/corpus/gitleaks-sample.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let rules = parse_gitleaks_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(rules.len(), 3, "the path-only rule is skipped");
    let scanner = Scanner::new(&[LabelSpec {
        name: "team".into(),
        gitleaks: rules,
        ..LabelSpec::default()
    }])
    .unwrap();
    let mut rng = Rng::new(7);
    let tok = rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789", 32);
    let v = json!({
        "hit": format!("ACME_TOKEN = \"acme_{tok}\""),
        "allowed": format!("acme_0000000000{}", &tok[..22]),
        "stopword": format!("acme_{}example{}", &tok[..10], &tok[..15]),
        "no_keyword": "ACMX_zzzz",
        "internal": format!("https://intra.corp/{}", rng.pick(b"0123456789", 12)),
        "lowentropy": "acme_abababababababababababababab",
    });
    let f = scanner.scan(&v, &key());
    let ptrs = written(&f);
    let got: Vec<(&str, &str)> = f
        .iter()
        .zip(&ptrs)
        .map(|(f, p)| (f.detector.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("gitleaks.acme-token", "/hit"),
            ("gitleaks.corp-url", "/internal")
        ]
    );
    // The secret group is what is reported.
    let s = v["hit"].as_str().unwrap();
    assert_eq!(&s[f[0].start..f[0].end], format!("acme_{tok}"));
}

#[test]
fn budget_exhaustion_fails_closed() {
    let v = json!({"a": "x".repeat(1000), "b": "y".repeat(1000)});
    let f = two_labels().scan_with_limits(
        &v,
        &key(),
        ScanLimits {
            max_total_bytes: 1500,
        },
    );
    let labels: Vec<&str> = f
        .iter()
        .filter(|f| f.detector == BUDGET_DETECTOR)
        .map(|f| f.label.as_str())
        .collect();
    assert_eq!(labels, vec!["credentials", "personal", "project-x"]);
    assert!(two_labels().scan(&v, &key()).is_empty());
}

#[test]
fn a_16_mib_argument_is_scanned_to_the_end() {
    let mut rng = Rng::new(8);
    let t = gh(&mut rng);
    let mut big = String::with_capacity(16 << 20);
    let filler = "The quick brown fox jumps over the lazy dog; token count 42, call 3. ";
    while big.len() < (16 << 20) - 100 {
        big.push_str(filler);
    }
    big.push_str(&t);
    let f = all_builtins().scan(&json!({"blob": big}), &key());
    assert_eq!(
        f.len(),
        1,
        "{:?}",
        f.iter().map(|f| &f.detector).collect::<Vec<_>>()
    );
    assert_eq!(f[0].end, big.len());
}

#[test]
fn builtin_only_scanner_always_compiles() {
    for b in conductor_scan::BUILTIN_DETECTORS {
        let s = Scanner::new(&[LabelSpec {
            name: "l".into(),
            builtins: vec![(*b).to_string()],
            ..LabelSpec::default()
        }]);
        assert!(s.is_ok(), "{b}");
        assert!(conductor_scan::is_builtin(b));
    }
    assert!(!conductor_scan::is_builtin("secret"));
}

#[test]
fn redaction_replaces_only_the_spans() {
    let mut rng = Rng::new(9);
    let t = gh(&mut rng);
    let v = json!({"m": format!("a {t} b alice@example.com c"), "n": 5});
    let f = two_labels().scan(&v, &key());
    let red = redact(&v, &f);
    assert_eq!(
        red,
        json!({"m": "a [REDACTED:credentials] b [REDACTED:personal] c", "n": 5})
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn spans_are_in_bounds_and_on_char_boundaries(s in "\\PC{0,200}", prefix in "[a-zA-Z0-9 @+().:=_-]{0,40}") {
        let text = format!("{prefix}{s}");
        let v = Value::String(text.clone());
        for f in all_builtins().scan(&v, &key()) {
            if f.encoding.is_none() {
                prop_assert!(f.start < f.end && f.end <= text.len());
                prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            }
        }
    }

    #[test]
    fn redaction_is_idempotent(words in proptest::collection::vec("[a-z]{1,8}|[0-9]{1,4}|@|[A-Z]{2}[0-9]{2}", 0..30)) {
        let v = Value::String(words.join(" "));
        let s = all_builtins();
        let once = redact(&v, &s.scan(&v, &key()));
        let twice = redact(&once, &s.scan(&once, &key()));
        prop_assert_eq!(once, twice);
    }
}

#[test]
fn repeated_keywords_do_not_blow_up() {
    // Pathological inputs for the prefilter: every keyword hit passes its cheap check.
    // (No timing assertion: this test fails by timing out in CI if the cost is not linear.)
    let s = all_builtins();
    for unit in [
        "password=",
        "eyJhbGciOi",
        "-----BEGIN PRIVATE KEY-----",
        "a@",
        "1 ",
        "ghp_",
        "://a:b@",
    ] {
        let big = unit.repeat((512 << 10) / unit.len());
        let f = s.scan(&json!({ "x": big }), &key());
        assert!(f.iter().all(|f| f.end <= big.len()));
    }
}

#[test]
fn large_keyword_sets_fall_back_to_the_library_automaton() {
    // 600 rules with long distinct keywords: too many DFA states for 16-bit ids, so the
    // aho-corasick crate's automaton is used; results must be the same.
    let mut toml = String::new();
    for i in 0..600 {
        toml.push_str(&format!(
            "[[rules]]\nid = \"r{i}\"\nregex = '''vendor{i:04}key_[a-z]{{12}}'''\nkeywords = [\"vendor{i:04}key_\"]\n\n"
        ));
    }
    let rules = parse_gitleaks_toml(&toml).unwrap();
    let scanner = Scanner::new(&[LabelSpec {
        name: "many".into(),
        gitleaks: rules,
        ..LabelSpec::default()
    }])
    .unwrap();
    let f = scanner.scan_str("x vendor0417key_abcdefghijkl y VENDOR0599KEY_zz", &key());
    let got: Vec<&str> = f.iter().map(|f| f.detector.as_str()).collect();
    assert_eq!(got, vec!["gitleaks.r417"]);
}

/// Issue 10 class 6: an undetected secret under a known credential parameter of a URL
/// query is redacted by its name (it was stored in clear in redacted mode).
#[test]
fn undetected_secret_in_a_credential_query_parameter_is_redacted_by_name() {
    let v = serde_json::json!({
        "url": "https://api.example.com/v1/x?s=plainword1&limit=5&Token=abc123&X-Amz-Signature=deadbeef#access_token=zzz",
        "https://h.example/cb?api_key=k3y&q=1": "key-held",
        "other": "no query: token=abc and secret=def",
        "enc": "https://h.example/a?%61pi_key=v&sig=already%3D&page=2",
    });
    let red = redact(&v, &[]);
    assert_eq!(
        red["url"],
        "https://api.example.com/v1/x?s=[REDACTED:credential-parameter]&limit=5&Token=[REDACTED:credential-parameter]&X-Amz-Signature=[REDACTED:credential-parameter]#access_token=[REDACTED:credential-parameter]"
    );
    assert_eq!(
        red["https://h.example/cb?api_key=[REDACTED:credential-parameter]&q=1"],
        "key-held"
    );
    assert_eq!(red["other"], "no query: token=abc and secret=def");
    assert_eq!(
        red["enc"],
        "https://h.example/a?%61pi_key=[REDACTED:credential-parameter]&sig=[REDACTED:credential-parameter]&page=2"
    );
    // Idempotent.
    assert_eq!(redact(&red, &[]), red);
}

/// Issue 10 class 7: personal data inside a URL (path, query, fragment, percent-encoded)
/// is found; only the userinfo of the URL is exempt.
#[test]
fn email_inside_a_url_is_found_and_only_userinfo_is_exempt() {
    let s = Scanner::new(&[LabelSpec {
        name: "personal".into(),
        builtins: vec!["email".into()],
        ..LabelSpec::default()
    }])
    .unwrap();
    for (text, want) in [
        ("https://x.example/send?to=alice%40example.com", true),
        (
            "see https://x.example/send?to=alice%40example.com now",
            true,
        ),
        ("https://x.example/users/bob@example.org/profile", true),
        ("https://x.example/#carol@example.net", true),
        ("https://dave@example.com/repo", false),
        ("ssh://git@github.com/org/repo.git", false),
        ("https://user:pw@example.com/a?b=1", false),
    ] {
        let f = s.scan_str(text, &key());
        assert_eq!(f.iter().any(|f| f.detector == "email"), want, "{text}");
    }
}

// Regression (issue 10, class 6, review): a literal key named `[key:1]` was read as the
// placeholder of the withheld member 1, so the member that really held a secret in its
// key was not redacted in the audit record.
#[test]
fn a_key_named_like_the_placeholder_does_not_defeat_redaction() {
    let scanner = conductor_scan::Scanner::new(&[conductor_scan::LabelSpec {
        name: "credentials".into(),
        builtins: vec!["secrets".into()],
        patterns: vec![],
        gitleaks: vec![],
    }])
    .unwrap();
    let key = conductor_scan::FingerprintKey([3; 32]);
    let token = "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";
    for decoy in ["[key:1]", "~k1", "[key:0]"] {
        let value = serde_json::json!({ decoy: "harmless", token: "x" });
        let findings = scanner.scan(&value, &key);
        assert!(!findings.is_empty(), "{decoy}");
        let redacted = conductor_scan::redact(&value, &findings).to_string();
        assert!(!redacted.contains(token), "{decoy}: {redacted}");
    }
}
