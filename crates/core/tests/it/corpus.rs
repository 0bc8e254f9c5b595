//! The data-driven corpus: `tests/cases/*.yaml`.
//!
//! Each file holds a policy and the requests decided under it:
//!
//! ```yaml
//! policy: |
//!   version: 1
//!   ...
//! resolve: {api.github.com: [140.82.112.6]}   # optional, added to the fixed resolver
//! cases:
//!   - name: what the case shows
//!     request: {agent: a, tool: s.t, arguments: {...}}
//!     decision: allow | approve | deny
//!     reasons: [[check, rule], ...]   # the exact set of (check, rule) pairs; required
//!                                     # unless the decision is `allow`
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use conductor_core::{Request, World, decide};
use conductor_net::{ResolveError, Resolver};
use conductor_scan::FingerprintKey;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    policy: String,
    #[serde(default)]
    resolve: BTreeMap<String, Vec<IpAddr>>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: serde_json::Value,
    decision: String,
    reasons: Option<Vec<(String, String)>>,
}

/// A fixed in-memory resolver: a few public names plus what the case file adds.
pub struct FixedResolver(pub BTreeMap<String, Vec<IpAddr>>);

impl FixedResolver {
    pub fn new(extra: &BTreeMap<String, Vec<IpAddr>>) -> Self {
        let mut m: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for (h, ip) in [
            ("api.github.com", "140.82.112.6"),
            ("github.com", "140.82.112.3"),
            ("en.wikipedia.org", "208.80.154.224"),
            ("example.com", "93.184.215.14"),
            ("paste.example.net", "203.0.114.10"),
            ("wiki.corp.example.com", "93.184.215.15"),
        ] {
            m.insert(h.into(), vec![ip.parse().unwrap()]);
        }
        m.extend(extra.clone());
        FixedResolver(m)
    }
}

impl Resolver for FixedResolver {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        self.0
            .get(host)
            .cloned()
            .ok_or_else(|| ResolveError::NotFound {
                host: host.to_string(),
            })
    }
}

pub const KEY: FingerprintKey = FingerprintKey([7u8; 32]);

fn check(path: &Path, failures: &mut Vec<String>) -> usize {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let file: CaseFile = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{name}: cannot read the case file: {e}"));
    let policy = conductor_policy::load_str(&file.policy, &name, None)
        .unwrap_or_else(|e| panic!("{name}: policy does not load:\n{}", e.render(false)));
    let resolver = FixedResolver::new(&file.resolve);
    let world = World {
        resolver: &resolver,
        fingerprint_key: &KEY,
    };
    for case in &file.cases {
        let request: Request = serde_json::from_value(case.request.clone())
            .unwrap_or_else(|e| panic!("{name}: `{}`: bad request: {e}", case.name));
        let d = decide(&policy, &request, &world);
        let got = serde_json::to_value(d.decision).unwrap();
        let mut problems = Vec::new();
        if got.as_str() != Some(case.decision.as_str()) {
            problems.push(format!("decision {got}, expected `{}`", case.decision));
        }
        let got_pairs: BTreeSet<(String, String)> = d
            .reasons
            .iter()
            .map(|r| (r.check.name().to_string(), r.rule.to_string()))
            .collect();
        match &case.reasons {
            Some(want) => {
                let want: BTreeSet<(String, String)> = want.iter().cloned().collect();
                if want != got_pairs {
                    problems.push(format!("reasons {got_pairs:?}, expected {want:?}"));
                }
            }
            // INVARIANT: a case that does not allow says why it should not, so it
            // cannot pass for the wrong reason.
            None if case.decision != "allow" => problems.push(format!(
                "no `reasons`: a case whose decision is not `allow` must list them (got {got_pairs:?})"
            )),
            None => {}
        }
        if case.decision == "allow" && !d.reasons.is_empty() {
            problems.push("an allow carries reasons".into());
        }
        if case.decision != "allow" && d.reasons.is_empty() {
            problems.push("a deny or approve without reasons".into());
        }
        if d.policy != policy.sha256() {
            problems.push("the decision does not carry the policy hash".into());
        }
        for r in &d.reasons {
            if r.message.is_empty() || r.message.ends_with('.') {
                problems.push(format!("bad message {:?}", r.message));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: `{}`: {}\n    reasons: {:#?}",
                case.name,
                problems.join("; "),
                d.reasons
            ));
        }
    }
    file.cases.len()
}

#[test]
fn corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for p in &paths {
        count += check(p, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(count >= 60, "the corpus has only {count} cases");
    eprintln!("corpus: {count} cases in {} files passed", paths.len());
}
