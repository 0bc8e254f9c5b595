//! Tests of `conductor policy validate` and `conductor policy test`.

use crate::{redact, run, run_in, snap, workspace};

#[test]
fn validate_accepts_a_valid_policy() {
    let r = run(&["policy", "validate", "policy.yaml"], "");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("ok: `policy.yaml` is valid (sha256:"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn validate_accepts_the_bundled_example() {
    let r = run_in(
        &workspace(),
        &["policy", "validate", "examples/policy.yaml"],
        "",
    );
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn validate_reports_every_problem_with_its_place() {
    let r = run(&["policy", "validate", "invalid-policy.yaml"], "");
    assert_eq!(r.code, 65, "{r:?}");
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    // Every problem at once: the misspelt key, the undefined role, the `extends`
    // cycle and the unknown action, each at file:line:col.
    for place in [
        "invalid-policy.yaml:5:",
        "invalid-policy.yaml:4:",
        "invalid-policy.yaml:8:",
        "invalid-policy.yaml:11:",
    ] {
        assert!(r.stderr.contains(place), "{place}: {}", r.stderr);
    }
    assert!(r.stderr.contains('^'), "no caret: {}", r.stderr);
    snap!("policy_validate_invalid_stderr", redact(&r.stderr));
}

#[test]
fn validate_a_missing_file_exits_66() {
    let r = run(&["policy", "validate", "no-such.yaml"], "");
    assert_eq!(r.code, 66, "{r:?}");
    assert_eq!(
        r.stderr,
        "conductor: error: cannot read policy `no-such.yaml`: no such file\n"
    );
}

#[test]
fn validate_needs_a_file() {
    let r = run(&["policy", "validate"], "");
    assert_eq!(r.code, 64, "{r:?}");
    let r = run(&["policy", "test"], "");
    assert_eq!(r.code, 64, "{r:?}");
    let r = run(&["policy"], "");
    assert_eq!(r.code, 64, "{r:?}");
}

#[test]
fn test_passes_when_every_expectation_holds() {
    let r = run(&["policy", "test", "passing.test.yaml"], "");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("test result: ok. 4 passed; 0 failed"),
        "{}",
        r.stdout
    );
    snap!("policy_test_passing", redact(&r.stdout));
}

#[test]
fn test_the_bundled_examples_pass() {
    let r = run_in(
        &workspace(),
        &["policy", "test", "examples/policy.test.yaml"],
        "",
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("FAIL"), "{}", r.stdout);
}

#[test]
fn test_a_failed_expectation_exits_1_with_a_diff() {
    let r = run(&["policy", "test", "failing.test.yaml"], "");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("  ok    research-bot may search"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("  FAIL  wrongly expects an allow"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("- decision: allow\n"), "{}", r.stdout);
    assert!(r.stdout.contains("+ decision: deny\n"), "{}", r.stdout);
    assert!(r.stdout.contains("- checks: [workflow]\n"), "{}", r.stdout);
    assert!(r.stdout.contains("+ checks: [identity]\n"), "{}", r.stdout);
    assert!(r.stdout.contains("- rule: no.such.rule"), "{}", r.stdout);
    assert!(r.stdout.contains("1 passed; 2 failed"), "{}", r.stdout);
    snap!("policy_test_failing", redact(&r.stdout));
}

#[test]
fn test_filter_runs_only_matching_cases() {
    let r = run(
        &[
            "policy",
            "test",
            "failing.test.yaml",
            "--filter",
            "may search",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("1 passed; 0 failed"), "{}", r.stdout);
}

#[test]
fn test_an_invalid_test_file_exits_65_and_points_at_the_place() {
    let r = run(&["policy", "test", "invalid.test.yaml"], "");
    assert_eq!(r.code, 65, "{r:?}");
    assert!(r.stderr.contains("invalid.test.yaml:6:5:"), "{}", r.stderr);
    assert!(r.stderr.contains("`expcet`"), "{}", r.stderr);
    snap!("policy_test_invalid_stderr", redact(&r.stderr));

    let r = run(&["policy", "test", "semantic-errors.test.yaml"], "");
    assert_eq!(r.code, 65, "{r:?}");
    snap!("policy_test_semantic_errors_stderr", redact(&r.stderr));
}

#[test]
fn test_an_invalid_policy_exits_65_and_other_files_still_run() {
    let r = run(
        &[
            "policy",
            "test",
            "broken-policy.test.yaml",
            "passing.test.yaml",
        ],
        "",
    );
    assert_eq!(r.code, 65, "{r:?}");
    assert!(r.stderr.contains("invalid-policy.yaml:5:"), "{}", r.stderr);
    assert!(
        r.stdout.contains("4 passed; 0 failed; 1 invalid file(s)"),
        "{}",
        r.stdout
    );

    let r = run(&["policy", "test", "missing-policy.test.yaml"], "");
    assert_eq!(r.code, 65, "{r:?}");
    assert!(
        r.stderr
            .contains("missing-policy.test.yaml:2:9: cannot read policy"),
        "{}",
        r.stderr
    );
}

#[test]
fn test_a_missing_test_file_exits_66() {
    let r = run(
        &["policy", "test", "no-such.test.yaml", "passing.test.yaml"],
        "",
    );
    assert_eq!(r.code, 66, "{r:?}");
    assert!(
        r.stderr
            .contains("cannot read test file `no-such.test.yaml`"),
        "{}",
        r.stderr
    );
}

#[test]
fn policy_help_teaches_the_test_format() {
    let r = run(&["policy", "test", "--help"], "");
    assert_eq!(r.code, 0, "{r:?}");
    for needle in [
        "expect: deny",
        "docs/policy-tests.md",
        "Exit status",
        "Examples:",
    ] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.stdout);
    }
    let r = run(&["policy", "validate", "--help"], "");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Examples:"), "{}", r.stdout);
    let r = run(&["--help"], "");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Examples:"), "{}", r.stdout);
}

/// The example in docs/policy-tests.md is a real, valid test file (it is parsed; its
/// policy is the bundled example).
#[test]
fn the_documented_test_format_example_parses() {
    let doc = std::fs::read_to_string(workspace().join("docs/policy-tests.md")).unwrap();
    let start = doc.find("```yaml\n").unwrap() + "```yaml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        workspace().join("examples/policy.yaml"),
        dir.path().join("policy.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("doc.test.yaml"), &doc[start..end]).unwrap();
    let r = run_in(dir.path(), &["policy", "test", "doc.test.yaml"], "");
    assert!(!r.stderr.contains("invalid test file"), "{}", r.stderr);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// A reader that goes away (`| head -1`) must not turn a failing run into a pass.
#[test]
fn test_a_closed_stdout_keeps_the_real_status() {
    let mut child = crate::conductor_in(&crate::fixtures())
        .args(["policy", "test", "failing.test.yaml"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
