//! `conductor policy validate|test`.
//!
//! The test file format is documented in `docs/policy-tests.md`.
//!
//! INVARIANT: a test file or policy that cannot be read is reported (exit 65), never
//! counted as passing; a test file with no cases is invalid, so that a typo cannot
//! turn a suite into a silent pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use conductor_core::{Check, Decision, Effect, Request, World};
use conductor_scan::FingerprintKey;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::resolve::ResolveArgs;
use crate::{CliError, exit};

/// The largest test file accepted, in bytes.
pub const MAX_TEST_FILE_BYTES: u64 = 16 * 1024 * 1024;

const VALIDATE_HELP: &str = "\
Prints `ok` and the policy's sha256 (the id every decision carries) when the policy
is valid. Otherwise prints every problem at once, each as file:line:col with the
source line and a caret, and exits 65.

Exit status: 0 valid, 65 invalid, 66 the file cannot be read.

Examples:
  conductor policy validate examples/policy.yaml
  conductor policy validate policy.yaml && conductor policy test policy.test.yaml";

const TEST_HELP: &str = "\
A test file (YAML) names a policy and lists cases, each a request with the expected
decision and, optionally, the checks and rules the decision must name:

  version: 1
  policy: policy.yaml            # relative to this test file
  resolve:                       # optional; no other host resolves (no DNS, ever)
    en.wikipedia.org: [208.80.154.224]
  cases:
    - name: the metadata service through a decimal IP is denied
      request:
        agent: research-bot
        tool: fetch.fetch
        arguments: {url: \"http://2852039166/latest/meta-data/\"}
      expect: deny
      checks: [destination]      # optional: exactly these checks fail
      rules: [destinations.blocked.cloud-metadata]   # optional: among the reasons

Each case prints `ok` or `FAIL` with what was expected (-) and what happened (+).
Full format: docs/policy-tests.md.

Exit status: 0 every case passed, 1 a case failed, 65 an invalid test file or
policy (the other files still run), 66 a file cannot be read.

Examples:
  conductor policy test examples/policy.test.yaml
  conductor policy test tests/*.test.yaml --filter metadata";

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and report every problem with file:line:col.
    #[command(after_help = VALIDATE_HELP)]
    Validate {
        /// The policy file (YAML, version 1).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Run policy test files: requests with their expected decisions.
    #[command(after_help = TEST_HELP)]
    Test {
        /// Test files (YAML); see docs/policy-tests.md.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Run only the cases whose name contains this text.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
    },
}

pub fn run(cmd: PolicyCommand) -> u8 {
    match cmd {
        PolicyCommand::Validate { file } => crate::finish(validate(&file)),
        PolicyCommand::Test { files, filter } => crate::finish(test(&files, filter.as_deref())),
    }
}

fn validate(path: &Path) -> anyhow::Result<u8> {
    let policy = crate::load_policy(path)?;
    let mut out = crate::Stdout::new();
    writeln!(
        out,
        "ok: `{}` is valid ({})",
        path.display(),
        policy.sha256()
    )
    .and_then(|()| out.flush())
    .context("cannot write to standard output")?;
    Ok(exit::OK)
}

// ---------------------------------------------------------------------------------
// The test file format (docs/policy-tests.md).

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestFile {
    version: Spanned<u32>,
    policy: Spanned<String>,
    #[serde(default)]
    resolve: BTreeMap<String, Vec<String>>,
    cases: Spanned<Vec<Spanned<RawCase>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    request: serde_json::Value,
    expect: Effect,
    #[serde(default)]
    checks: Option<Vec<Check>>,
    #[serde(default)]
    rules: Vec<String>,
}

/// A validated test case.
#[derive(Debug)]
struct Case {
    name: String,
    /// `file:line:col` of the case.
    place: String,
    request: Request,
    expect: Effect,
    checks: Option<BTreeSet<Check>>,
    rules: Vec<String>,
}

/// A validated test file.
#[derive(Debug)]
struct TestFile {
    policy_path: PathBuf,
    policy_place: String,
    resolve: ResolveArgs,
    cases: Vec<Case>,
}

/// Every problem in a test file (reported together).
#[derive(Debug)]
struct TestFileErrors(Vec<String>);

fn place(file: &str, loc: &serde_saphyr::Location) -> String {
    format!("{file}:{}:{}", loc.line(), loc.column())
}

fn parse_test_file(path: &Path, text: &str) -> Result<TestFile, TestFileErrors> {
    let shown = path.display().to_string();
    let raw: RawTestFile = serde_saphyr::from_str(text).map_err(|e| {
        let mut message = first_line_lowercase(&e.to_string());
        if message.starts_with("budget breached") {
            // Alias bombs, deep nesting, huge documents: refused by the parser's budget.
            message = format!(
                "the test file is too large, too deep or expands too many aliases ({message}); split it"
            );
        }
        TestFileErrors(vec![match e.location() {
            Some(loc) => format!("{}: {message}", place(&shown, &loc)),
            None => format!("{shown}: {message}"),
        }])
    })?;
    let mut errors = Vec::new();
    if raw.version.value != 1 {
        errors.push(format!(
            "{}: unsupported test file version `{}`: expected `1`",
            place(&shown, &raw.version.referenced),
            raw.version.value
        ));
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let policy_path = base.join(&raw.policy.value);
    let policy_place = place(&shown, &raw.policy.referenced);

    let mut resolve = ResolveArgs {
        resolve: Vec::new(),
        no_dns: true,
    };
    for (host, addrs) in &raw.resolve {
        if addrs.is_empty() {
            errors.push(format!(
                "{shown}: `resolve.{host}` lists no addresses: list at least one, or leave the host out (it then does not resolve)"
            ));
            continue;
        }
        resolve.resolve.push(format!("{host}={}", addrs.join(",")));
    }
    if let Err(e) = resolve.build() {
        errors.push(format!("{shown}: invalid `resolve`: {e}"));
    }

    if raw.cases.value.is_empty() {
        errors.push(format!(
            "{}: `cases` is empty: a test file must test something",
            place(&shown, &raw.cases.referenced)
        ));
    }
    let mut names = BTreeMap::new();
    let mut cases = Vec::new();
    for spanned in raw.cases.value {
        let at = place(&shown, &spanned.referenced);
        let raw_case = spanned.value;
        if raw_case.name.trim().is_empty() {
            errors.push(format!("{at}: a case needs a non-empty `name`"));
        }
        if let Some(first) = names.insert(raw_case.name.clone(), at.clone()) {
            errors.push(format!(
                "{at}: duplicate case name `{}` (first at {first})",
                raw_case.name
            ));
        }
        // Through the same parser as `conductor check`, so a test proves what check does.
        let request = serde_json::to_string(&raw_case.request)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                Request::from_json(&json).map_err(|e| strip_json_position(&e.message))
            });
        let request = match request {
            Ok(r) => r,
            Err(message) => {
                errors.push(format!(
                    "{at}: case `{}` has an invalid `request`: {message}",
                    raw_case.name
                ));
                continue;
            }
        };
        cases.push(Case {
            name: raw_case.name,
            place: at,
            request,
            expect: raw_case.expect,
            checks: raw_case.checks.map(|c| c.into_iter().collect()),
            rules: raw_case.rules,
        });
    }
    if errors.is_empty() {
        Ok(TestFile {
            policy_path,
            policy_place,
            resolve,
            cases,
        })
    } else {
        Err(TestFileErrors(errors))
    }
}

/// Drop serde_json's ` at line N column M`: it points into the re-serialized request,
/// not into the test file (the case's own place is shown instead).
fn strip_json_position(message: &str) -> String {
    if let Some(i) = message.rfind(" at line ") {
        let tail = message.get(i + " at line ".len()..).unwrap_or_default();
        let mut parts = tail.split(" column ");
        let is_num = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        if is_num(parts.next()) && is_num(parts.next()) && parts.next().is_none() {
            return message.get(..i).unwrap_or(message).to_string();
        }
    }
    message.to_string()
}

fn first_line_lowercase(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default().trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    // The place is shown as file:line:col already.
    let line = match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((place, rest)) if place.contains(" column ") => rest,
        _ => line,
    };
    let mut chars = line.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------
// Running tests.

/// What happened to one test file.
enum FileOutcome {
    Ran { passed: usize, failed: usize },
    Invalid,
    Unreadable,
}

fn test(files: &[PathBuf], filter: Option<&str>) -> anyhow::Result<u8> {
    let mut out = crate::Stdout::new();
    let mut passed = 0usize;
    let mut failed = 0usize;
    let mut invalid = 0usize;
    let mut unreadable = 0usize;
    for path in files {
        match test_file(&mut out, path, filter)? {
            FileOutcome::Ran {
                passed: p,
                failed: f,
            } => {
                passed += p;
                failed += f;
            }
            FileOutcome::Invalid => invalid += 1,
            FileOutcome::Unreadable => unreadable += 1,
        }
    }
    let status = if invalid + unreadable > 0 || failed > 0 {
        "FAILED"
    } else {
        "ok"
    };
    let mut summary = format!("test result: {status}. {passed} passed; {failed} failed");
    if invalid > 0 {
        let _ = write!(summary, "; {invalid} invalid file(s)");
    }
    if unreadable > 0 {
        let _ = write!(summary, "; {unreadable} unreadable file(s)");
    }
    writeln!(out, "\n{summary}")
        .and_then(|()| out.flush())
        .context("cannot write to standard output")?;
    Ok(if unreadable > 0 {
        exit::NOINPUT
    } else if invalid > 0 {
        exit::DATA
    } else if failed > 0 {
        exit::FAILED
    } else {
        exit::OK
    })
}

fn test_file(
    out: &mut impl Write,
    path: &Path,
    filter: Option<&str>,
) -> anyhow::Result<FileOutcome> {
    let shown = path.display().to_string();
    let text = match read_test_file(path) {
        Ok(t) => t,
        Err(e @ CliError::NoInput { .. }) => {
            crate::warn(format_args!("error: {e}"));
            return Ok(FileOutcome::Unreadable);
        }
        Err(e) => {
            crate::warn(format_args!("error: {e}"));
            return Ok(FileOutcome::Invalid);
        }
    };
    let file = match parse_test_file(path, &text) {
        Ok(f) => f,
        Err(TestFileErrors(errors)) => {
            let mut text = format!("conductor: error: invalid test file `{shown}`:\n");
            for e in errors {
                let _ = writeln!(text, "  {e}");
            }
            let _ = io::stderr().lock().write_all(text.as_bytes());
            return Ok(FileOutcome::Invalid);
        }
    };
    if let Err(e) = crate::require_file("policy", &file.policy_path) {
        crate::warn(format_args!("error: {}: {e}", file.policy_place));
        return Ok(FileOutcome::Invalid);
    }
    let policy = match conductor_policy::load_file(&file.policy_path) {
        Ok(p) => p,
        Err(e) => {
            crate::warn(format_args!(
                "error: invalid policy `{}` (named at {}):",
                file.policy_path.display(),
                file.policy_place
            ));
            let _ = writeln!(
                io::stderr().lock(),
                "{}",
                e.render(crate::color_stderr()).trim_end()
            );
            return Ok(FileOutcome::Invalid);
        }
    };
    let resolver = file
        .resolve
        .build()
        .map_err(|e| CliError::Data(format!("invalid `resolve` in `{shown}`: {e}")))?;
    // Fingerprints do not take part in expectations: a fixed key keeps tests
    // independent of the installation (and of its data directory).
    let key = FingerprintKey([0u8; 32]);
    let world = World {
        resolver: &resolver,
        fingerprint_key: &key,
    };

    let mut report = format!(
        "{shown}: policy {} ({})\n",
        file.policy_path.display(),
        policy.sha256()
    );
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in &file.cases {
        if filter.is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let decision = conductor_core::decide(&policy, &case.request, &world);
        let diff = compare(case, &decision);
        if diff.is_empty() {
            passed += 1;
            let _ = writeln!(report, "  ok    {}", case.name);
        } else {
            failed += 1;
            let _ = writeln!(report, "  FAIL  {}  ({})", case.name, case.place);
            for line in diff {
                let _ = writeln!(report, "          {line}");
            }
        }
    }
    if passed + failed == 0 {
        let _ = writeln!(report, "  (no case matches the filter)");
    }
    out.write_all(report.as_bytes())
        .context("cannot write to standard output")?;
    Ok(FileOutcome::Ran { passed, failed })
}

fn read_test_file(path: &Path) -> Result<String, CliError> {
    crate::require_file("test file", path)?;
    let shown = path.display().to_string();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TEST_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| CliError::NoInput {
            what: "test file",
            path: shown.clone(),
            reason: crate::io_reason(&e),
        })?;
    if bytes.len() as u64 > MAX_TEST_FILE_BYTES {
        return Err(CliError::Data(format!(
            "test file `{shown}` is larger than {MAX_TEST_FILE_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| CliError::Data(format!("test file `{shown}` is not valid UTF-8")))
}

fn effect_name(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::Approve => "approve",
    }
}

fn check_name(c: Check) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{c:?}").to_lowercase())
}

fn check_list(checks: &BTreeSet<Check>) -> String {
    let names: Vec<String> = checks.iter().map(|c| check_name(*c)).collect();
    format!("[{}]", names.join(", "))
}

/// The differences between what a case expects and what was decided: `-` lines are
/// expected, `+` lines actual. Empty when the case passes.
fn compare(case: &Case, decision: &Decision) -> Vec<String> {
    let mut diff = Vec::new();
    if case.expect != decision.decision {
        diff.push(format!("- decision: {}", effect_name(case.expect)));
        diff.push(format!("+ decision: {}", effect_name(decision.decision)));
    }
    if let Some(expected) = &case.checks {
        let actual: BTreeSet<Check> = decision.reasons.iter().map(|r| r.check).collect();
        if *expected != actual {
            diff.push(format!("- checks: {}", check_list(expected)));
            diff.push(format!("+ checks: {}", check_list(&actual)));
        }
    }
    for rule in &case.rules {
        if !decision.reasons.iter().any(|r| r.rule == rule.as_str()) {
            diff.push(format!("- rule: {rule}  (not among the reasons)"));
        }
    }
    if !diff.is_empty() {
        if decision.reasons.is_empty() {
            diff.push("  reasons: none".to_string());
        } else {
            diff.push("  reasons:".to_string());
            for r in &decision.reasons {
                diff.push(format!(
                    "    {} ({}): {}",
                    check_name(r.check),
                    crate::check::terminal_safe(r.rule.as_str()),
                    crate::check::terminal_safe(&r.message)
                ));
            }
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
version: 1
policy: p.yaml
cases:
  - name: one
    request: {agent: a, tool: s.t}
    expect: deny
";

    #[test]
    fn a_minimal_test_file_parses() {
        let f = parse_test_file(Path::new("dir/t.yaml"), MINIMAL).unwrap();
        assert_eq!(f.policy_path, Path::new("dir/p.yaml"));
        assert_eq!(f.cases.len(), 1);
        assert_eq!(f.cases[0].expect, Effect::Deny);
        assert_eq!(f.cases[0].request.tool, "s.t");
        assert_eq!(f.cases[0].place, "dir/t.yaml:4:5");
        assert!(f.resolve.no_dns);
    }

    #[test]
    fn problems_are_all_reported_with_places() {
        let text = "\
version: 2
policy: p.yaml
cases:
  - name: one
    request: {agent: a}
    expect: deny
  - name: one
    request: {agent: a, tool: s.t}
    expect: allow
";
        let errors = parse_test_file(Path::new("t.yaml"), text).unwrap_err().0;
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("t.yaml:1:"), "{errors:#?}");
        assert!(errors[1].contains("invalid `request`"), "{errors:#?}");
        assert!(
            errors[2].contains("duplicate case name `one`"),
            "{errors:#?}"
        );
    }

    #[test]
    fn an_alias_bomb_is_refused_quickly() {
        // The "billion laughs" shape (CVE-2003-1564 for XML; the same trick in YAML
        // aliases), inside a request's arguments where any value is accepted.
        let mut text = String::from(
            "version: 1\npolicy: p.yaml\ncases:\n  - name: x\n    expect: deny\n    request:\n      agent: a\n      tool: s.t\n      arguments:\n        a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
        );
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("        a{i}: &a{i} [{refs}]\n"));
        }
        let errors = parse_test_file(Path::new("t.yaml"), &text).unwrap_err().0;
        assert!(errors[0].contains("too many aliases"), "{errors:#?}");
    }

    #[test]
    fn unknown_keys_and_bad_expectations_are_errors() {
        for bad in [
            MINIMAL.replace("expect: deny", "expect: maybe"),
            MINIMAL.replace("expect: deny", "expect: deny\n    chekcs: [tool]"),
            MINIMAL.replace("expect: deny", "expect: deny\n    checks: [nope]"),
            format!("{MINIMAL}extra: 1\n"),
            "version: 1\npolicy: p.yaml\ncases: []\n".to_string(),
        ] {
            let errors = parse_test_file(Path::new("t.yaml"), &bad).unwrap_err().0;
            assert!(errors[0].starts_with("t.yaml:"), "{bad}: {errors:#?}");
        }
    }

    #[test]
    fn compare_reports_decision_checks_and_missing_rules() {
        let case = Case {
            name: "x".into(),
            place: "t:1:1".into(),
            request: Request::from_json(r#"{"agent":"a","tool":"s.t"}"#).unwrap(),
            expect: Effect::Deny,
            checks: Some([Check::Destination].into_iter().collect()),
            rules: vec!["destinations.blocked.cloud-metadata".into()],
        };
        let allow = Decision {
            decision: Effect::Allow,
            reasons: vec![],
            destinations: vec![],
            findings: vec![],
            policy: "sha256:x".into(),
        };
        let diff = compare(&case, &allow);
        assert_eq!(
            diff,
            vec![
                "- decision: deny",
                "+ decision: allow",
                "- checks: [destination]",
                "+ checks: []",
                "- rule: destinations.blocked.cloud-metadata  (not among the reasons)",
                "  reasons: none",
            ]
        );
        let deny = Decision {
            decision: Effect::Deny,
            reasons: vec![conductor_core::Reason {
                check: Check::Destination,
                rule: conductor_types::RuleId::destination_blocked("cloud-metadata"),
                message: "m".into(),
            }],
            ..allow
        };
        assert!(compare(&case, &deny).is_empty());
    }
}
