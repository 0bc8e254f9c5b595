//! The adversarial corpus: `tests/corpus/*.txt`, one technique per file, every case run
//! under an open-web policy and under an allowlist. The format is described in
//! `tests/corpus/README.md`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use conductor_net::{DestOutcome, DestPolicy, DestPolicySpec};
use serde_json::json;

use crate::common::{Fixed, ptr};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn hosts() -> Fixed {
    let text = std::fs::read_to_string(corpus_dir().join("hosts.txt")).unwrap();
    let mut m: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, addrs) = line.split_once(char::is_whitespace).unwrap();
        m.insert(
            name.to_string(),
            addrs
                .trim()
                .split(',')
                .map(|a| a.trim().parse().unwrap())
                .collect(),
        );
    }
    Fixed(m)
}

pub fn open_policy() -> DestPolicy {
    DestPolicy::compile(&DestPolicySpec {
        allow: vec!["*".into()],
        scan: true,
        ..Default::default()
    })
    .unwrap()
}

pub fn list_policy() -> DestPolicy {
    DestPolicy::compile(&DestPolicySpec {
        allow: [
            "*.example.com",
            "example.com",
            "https://api.github.com",
            "93.184.216.0/24",
        ]
        .map(String::from)
        .to_vec(),
        deny: vec!["*.evil.example.com".into()],
        permit: vec![],
        scan: true,
    })
    .unwrap()
}

/// Replace `{U+XXXX}` escapes (for tabs, newlines and invisible characters).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("{U+") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let end = after.find('}').unwrap();
        out.push(char::from_u32(u32::from_str_radix(&after[..end], 16).unwrap()).unwrap());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

pub struct Case {
    pub file: String,
    pub line: usize,
    pub source: String,
    pub open: String,
    pub list: String,
    pub mode: String,
    pub input: String,
}

pub fn load() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "txt") && p.file_name().unwrap() != "hosts.txt"
        })
        .collect();
    files.sort();
    for path in files {
        let file = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut source = String::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_start();
            if let Some(s) = line.strip_prefix("# source:") {
                source = s.trim().to_string();
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(3, ' ');
            let open = parts.next().unwrap().to_string();
            let list_raw = parts
                .next()
                .unwrap_or_else(|| panic!("{file}:{}: missing columns", i + 1));
            let list = if list_raw == "=" {
                open.clone()
            } else {
                list_raw.to_string()
            };
            let mut rest = parts
                .next()
                .unwrap_or_else(|| panic!("{file}:{}: missing input", i + 1))
                .trim_start();
            let mut mode = "pointer".to_string();
            if let Some(m) = rest.strip_prefix('@') {
                let (m, r) = m.split_once(' ').unwrap();
                mode = m.to_string();
                rest = r;
            }
            assert!(
                !source.is_empty(),
                "{file}:{}: a case without a `# source:` line",
                i + 1
            );
            cases.push(Case {
                file: file.clone(),
                line: i + 1,
                source: source.clone(),
                open,
                list,
                mode,
                input: unescape(rest),
            });
        }
    }
    cases
}

pub fn run(case: &Case, policy: &DestPolicy, resolver: &Fixed) -> DestOutcome {
    let input = case.input.as_str();
    match case.mode.as_str() {
        "pointer" => policy.evaluate(&json!({ "url": input }), &[ptr("/url")], &[], resolver),
        "scan" => policy.evaluate(
            &json!({"messages": [{"role": "user", "content": input}], "n": 1}),
            &[],
            &[],
            resolver,
        ),
        "key" => policy.evaluate(&json!({"headers": { input: "x" }}), &[], &[], resolver),
        "literal" => policy.evaluate(&json!({}), &[], &[input.to_string()], resolver),
        "number" => policy.evaluate(
            &json!({ "url": serde_json::from_str::<serde_json::Value>(input).unwrap() }),
            &[ptr("/url")],
            &[],
            resolver,
        ),
        other => panic!("{}:{}: unknown mode `@{other}`", case.file, case.line),
    }
}

/// Whether `outcome` meets `expected`: `pass` (no violation), `deny` (some violation)
/// or a rule id without its `destinations.` prefix that must be among the violations.
fn meets(outcome: &DestOutcome, expected: &str) -> bool {
    match expected {
        "pass" => outcome.violations.is_empty(),
        "deny" => !outcome.violations.is_empty(),
        rule => outcome
            .violations
            .iter()
            .any(|v| v.rule.as_str() == format!("destinations.{rule}")),
    }
}

#[test]
fn corpus() {
    let cases = load();
    let resolver = hosts();
    let (open, list) = (open_policy(), list_policy());
    let mut failures = Vec::new();
    let mut by_file: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    for case in &cases {
        for (name, policy, expected) in [
            ("open", &open, &case.open),
            ("allowlist", &list, &case.list),
        ] {
            let o = run(case, policy, &resolver);
            if !meets(&o, expected) {
                failures.push(format!(
                    "{}:{} [{name}] `{}` expected {expected}, got {:?} ({:?})",
                    case.file,
                    case.line,
                    case.input.escape_debug(),
                    o.violations
                        .iter()
                        .map(|v| v.rule.as_str())
                        .collect::<Vec<_>>(),
                    o.violations.first().map(|v| v.message.as_str()),
                ));
            }
            // Every violation points at a destination, and every message is clean.
            for v in &o.violations {
                assert!(
                    v.destination < o.destinations.len(),
                    "{}:{}",
                    case.file,
                    case.line
                );
                assert!(
                    !v.message.ends_with('.') && !v.message.is_empty(),
                    "{}",
                    v.message
                );
            }
        }
        let e = by_file.entry(case.file.clone()).or_default();
        e.0 += 1;
        if case.open == "pass" {
            e.1 += 1;
        } else {
            e.2 += 1;
        }
        if case.list == "pass" {
            e.3 += 1;
        }
    }
    let total: usize = cases.len();
    eprintln!("corpus: {total} cases");
    for (file, (n, pass, deny, list_pass)) in &by_file {
        eprintln!(
            "  {file:24} {n:4} cases: open web {pass} allowed / {deny} denied; allowlist {list_pass} allowed / {} denied",
            n - list_pass
        );
    }
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        total >= 150,
        "the corpus must hold at least 150 cases, it holds {total}"
    );
    let sources: std::collections::BTreeSet<&str> =
        cases.iter().map(|c| c.source.as_str()).collect();
    assert!(sources.len() >= 5, "{sources:?}");
}
