//! Tests of `conductor check`: exit statuses for every path, the JSON and human
//! outputs (snapshots), `--jsonl`, errors, and a reader that goes away.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use serde_json::Value;

use crate::{conductor_in, fixtures, redact, run, run_in, snap, workspace};

const SEARCH: &str = r#"{"agent":"research-bot","tool":"search.web","arguments":{"q":"mcp"}}"#;
const ISSUE_BY_RESEARCHER: &str =
    r#"{"agent":"research-bot","tool":"github.create_issue","arguments":{"repo":"acme/x"}}"#;
const MERGE: &str = r#"{"agent":"deploy-bot","tool":"github.merge_pull_request","arguments":{"repo":"acme/widgets"}}"#;
/// The motivating attack (DESIGN.md): 2852039166 is 169.254.169.254 written as one
/// decimal number, the cloud metadata endpoint (CVE-2026-26118 class).
const METADATA: &str = r#"{"agent":"research-bot","tool":"fetch.fetch","arguments":{"url":"http://2852039166/latest/meta-data/"}}"#;

fn check(extra: &[&str], stdin: impl AsRef<[u8]>) -> crate::Run {
    let mut args = vec!["check", "--policy", "policy.yaml", "--no-dns"];
    args.extend_from_slice(extra);
    run(&args, stdin)
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn checks_of(decision: &Value) -> Vec<String> {
    decision["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["check"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn allow_exits_0_and_prints_the_decision() {
    let r = check(&[], SEARCH);
    assert_eq!(r.code, 0, "{r:?}");
    let d = json(&r.stdout);
    assert_eq!(d["decision"], "allow");
    assert!(d["policy"].as_str().unwrap().starts_with("sha256:"));
    snap!("check_allow_json", redact(&r.stdout));
}

#[test]
fn deny_exits_1_and_names_the_check() {
    let r = check(&[], ISSUE_BY_RESEARCHER);
    assert_eq!(r.code, 1, "{r:?}");
    let d = json(&r.stdout);
    assert_eq!(d["decision"], "deny");
    assert_eq!(checks_of(&d), ["tool"]);
    snap!("check_deny_tool_json", redact(&r.stdout));
}

#[test]
fn approval_required_exits_2() {
    let r = check(&[], MERGE);
    assert_eq!(r.code, 2, "{r:?}");
    let d = json(&r.stdout);
    assert_eq!(d["decision"], "approve");
    assert!(
        d["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["rule"] == "roles.operator.approve[0]"),
        "{d}"
    );
}

#[test]
fn an_unknown_agent_is_denied_by_identity() {
    let r = check(&[], r#"{"agent":"mallory-bot","tool":"search.web"}"#);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(checks_of(&json(&r.stdout)), ["identity"]);
}

#[test]
fn the_motivating_attack_is_denied_as_cloud_metadata() {
    let r = check(&[], METADATA);
    assert_eq!(r.code, 1, "{r:?}");
    let d = json(&r.stdout);
    assert_eq!(d["decision"], "deny");
    let reasons = d["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r["check"] == "destination"
                && r["rule"] == "destinations.blocked.cloud-metadata"),
        "{d}"
    );
    assert_eq!(d["destinations"][0]["host"], "169.254.169.254", "{d}");
    snap!("check_deny_metadata_json", redact(&r.stdout));
}

#[test]
fn human_format_explains_the_decision() {
    let r = check(&["--format", "human"], METADATA);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.starts_with("DENY  research-bot calls fetch.fetch"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("destinations.blocked.cloud-metadata"),
        "{}",
        r.stdout
    );
    snap!("check_deny_metadata_human", redact(&r.stdout));

    let r = check(&["--format", "human"], SEARCH);
    assert_eq!(r.code, 0, "{r:?}");
    snap!("check_allow_human", redact(&r.stdout));
}

#[test]
fn the_request_can_come_from_a_file_or_dash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("req.json");
    std::fs::write(&path, ISSUE_BY_RESEARCHER).unwrap();
    let r = check(&["--request", path.to_str().unwrap()], "");
    assert_eq!(r.code, 1, "{r:?}");
    let r = check(&["--request", "-"], SEARCH);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn jsonl_decides_every_line_in_order_and_exits_0() {
    let input = format!("{SEARCH}\n{ISSUE_BY_RESEARCHER}\n\n{MERGE}\n");
    let r = check(&["--jsonl"], &input);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<Value> = r.stdout.lines().map(json).collect();
    let effects: Vec<&str> = lines
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    // The blank line is skipped; everything else keeps its order.
    assert_eq!(effects, ["allow", "deny", "approve"]);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn jsonl_denies_a_malformed_line_goes_on_and_exits_65() {
    let input = format!(
        "{SEARCH}\n{{\"agent\": \"research-bot\", \"tool\": \n{SEARCH}\n{{\"agent\":\"a\",\"tool\":\"s.t\",\"colour\":1}}\n"
    );
    let r = check(&["--jsonl"], &input);
    assert_eq!(r.code, 65, "{r:?}");
    let lines: Vec<Value> = r.stdout.lines().map(json).collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(checks_of(&lines[1]), ["input"]);
    assert_eq!(lines[2]["decision"], "allow");
    assert_eq!(lines[3]["decision"], "deny");
    assert_eq!(checks_of(&lines[3]), ["input"]);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
    assert!(r.stderr.contains("line 4"), "{}", r.stderr);
    assert!(r.stderr.contains("`colour`"), "{}", r.stderr);
    snap!("check_jsonl_malformed_stderr", redact(&r.stderr));
}

#[test]
fn jsonl_denies_a_line_that_is_not_utf8() {
    let mut input = vec![0xff, 0xfe];
    input.extend_from_slice(SEARCH.as_bytes());
    input.extend_from_slice(format!("\n{SEARCH}\n").as_bytes());
    let r = check(&["--jsonl"], &input);
    assert_eq!(r.code, 65, "{r:?}");
    let lines: Vec<Value> = r.stdout.lines().map(json).collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert_eq!(lines[0]["decision"], "deny");
    assert_eq!(lines[1]["decision"], "allow");
    assert!(r.stderr.contains("not valid UTF-8"), "{}", r.stderr);
}

#[test]
fn a_malformed_request_exits_65_without_a_decision() {
    for bad in [
        "",
        "{",
        "[1, 2]",
        r#"{"agent": "research-bot"}"#,
        r#"{"agent":"research-bot","tool":"search.web","colour":"red"}"#,
        r#"{"agent":"research-bot","tool":"search.web"} {"agent":"x","tool":"y.z"}"#,
    ] {
        let r = check(&[], bad);
        assert_eq!(r.code, 65, "{bad}: {r:?}");
        assert!(r.stdout.is_empty(), "{bad}: {}", r.stdout);
        assert!(
            r.stderr.contains("invalid request `<stdin>`"),
            "{bad}: {}",
            r.stderr
        );
    }
    let r = check(&[], "{\n  \"agent\": \"research-bot\",\n  \"tool\": 7\n}");
    snap!("check_malformed_request_stderr", redact(&r.stderr));
}

#[test]
fn an_invalid_policy_exits_65_with_every_problem_located() {
    let r = run(
        &["check", "--policy", "invalid-policy.yaml", "--no-dns"],
        SEARCH,
    );
    assert_eq!(r.code, 65, "{r:?}");
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("invalid-policy.yaml:5:"), "{}", r.stderr);
    snap!("check_invalid_policy_stderr", redact(&r.stderr));
}

#[test]
fn a_missing_file_exits_66() {
    let r = run(&["check", "--policy", "no-such.yaml"], SEARCH);
    assert_eq!(r.code, 66, "{r:?}");
    assert_eq!(
        r.stderr,
        "conductor: error: cannot read policy `no-such.yaml`: no such file\n"
    );
    let r = check(&["--request", "no-such.json"], "");
    assert_eq!(r.code, 66, "{r:?}");
    assert!(r.stderr.contains("`no-such.json`"), "{}", r.stderr);
    let r = run(&["check", "--policy", "."], SEARCH);
    assert_eq!(r.code, 66, "{r:?}");
}

#[test]
fn bad_usage_exits_64() {
    for args in [
        &["check"][..],
        &["check", "--policy"],
        &["check", "--policy", "policy.yaml", "--frobnicate"],
        &["check", "--policy", "policy.yaml", "--format", "xml"],
        &[
            "check",
            "--policy",
            "policy.yaml",
            "--resolve",
            "no-equals-sign",
        ],
        &[
            "check",
            "--policy",
            "policy.yaml",
            "--resolve",
            "host=not-an-ip",
        ],
        &["no-such-command"],
        &[],
    ] {
        let r = run(args, SEARCH);
        assert_eq!(r.code, 64, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert!(!r.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn resolve_fixes_what_a_host_resolves_to() {
    let req = r#"{"agent":"research-bot","tool":"fetch.fetch","arguments":{"url":"https://en.wikipedia.org/wiki/MCP"}}"#;
    // Without an address the host cannot be resolved, which is a deny.
    let r = check(&[], req);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(checks_of(&json(&r.stdout)), ["destination"]);
    let r = check(&["--resolve", "en.wikipedia.org=208.80.154.224"], req);
    assert_eq!(r.code, 0, "{r:?}");
    // A name that resolves to the metadata address is as bad as the address itself.
    let r = check(&["--resolve", "en.wikipedia.org=169.254.169.254"], req);
    assert_eq!(r.code, 1, "{r:?}");
}

#[test]
fn an_unusable_fingerprint_key_stops_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bad.key");
    std::fs::write(&key, "not hex").unwrap();
    let out = conductor_in(&fixtures())
        .args(["check", "--policy", "policy.yaml", "--no-dns"])
        .env("CONDUCTOR_FINGERPRINT_KEY_FILE", &key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("fingerprint key file"), "{stderr}");
}

#[test]
fn the_key_is_created_in_the_data_directory_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = conductor_in(&fixtures())
        .args(["check", "--policy", "policy.yaml", "--no-dns"])
        .env_remove("CONDUCTOR_FINGERPRINT_KEY_FILE")
        .env("XDG_DATA_HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = out;
    out.stdin
        .take()
        .unwrap()
        .write_all(SEARCH.as_bytes())
        .unwrap();
    let status = out.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let key = std::fs::read_to_string(dir.path().join("conductor/fingerprint.key")).unwrap();
    assert_eq!(key.trim().len(), 64);
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let mut child = conductor_in(&fixtures())
        .args(["check", "--policy", "policy.yaml", "--no-dns", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..20_000 {
            if stdin.write_all(SEARCH.as_bytes()).is_err() || stdin.write_all(b"\n").is_err() {
                break;
            }
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("\"allow\""), "{first}");
    drop(stdout); // like `| head -1`
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
}

#[test]
fn check_help_teaches_with_examples() {
    let r = run(&["check", "--help"], "");
    assert_eq!(r.code, 0, "{r:?}");
    for needle in [
        "--jsonl",
        "--resolve",
        "--no-dns",
        "Examples:",
        "2852039166",
        "Exit status",
    ] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.stdout);
    }
}

/// The README's "run the main job" command, on the bundled examples: every line is
/// decided, and the decisions are the ones examples/policy.test.yaml expects.
#[test]
fn the_bundled_examples_decide_as_documented() {
    let input = std::fs::read_to_string(workspace().join("examples/requests.jsonl")).unwrap();
    let r = run_in(
        &workspace(),
        &[
            "check",
            "--policy",
            "examples/policy.yaml",
            "--jsonl",
            "--no-dns",
            "--resolve",
            "en.wikipedia.org=208.80.154.224",
            "--resolve",
            "api.github.com=140.82.112.6",
            "--resolve",
            "notes.corp.example.com=93.184.215.14",
        ],
        &input,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let summary: Vec<String> = r
        .stdout
        .lines()
        .map(json)
        .enumerate()
        .map(|(i, d)| {
            let mut checks = checks_of(&d);
            checks.dedup();
            format!(
                "{:>2} {:<7} {}",
                i + 1,
                d["decision"].as_str().unwrap(),
                checks.join(",")
            )
            .trim_end()
            .to_string()
        })
        .collect();
    assert_eq!(summary.len(), input.lines().count());
    snap!("examples_requests_jsonl", summary.join("\n"));
}

#[test]
fn a_closed_stdout_keeps_the_decision_status() {
    let mut child = conductor_in(&fixtures())
        .args(["check", "--policy", "policy.yaml", "--no-dns"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ISSUE_BY_RESEARCHER.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_overlong_request_is_refused() {
    let big = format!(
        r#"{{"agent":"research-bot","tool":"search.web","arguments":{{"q":"{}"}}}}"#,
        "a".repeat(17 * 1024 * 1024)
    );
    let r = check(&[], &big);
    assert_eq!(r.code, 65, "code {}: {}", r.code, r.stderr);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.contains("longer than"), "{}", r.stderr);

    let r = check(&["--jsonl"], format!("{big}\n{SEARCH}\n"));
    assert_eq!(r.code, 65, "code {}: {}", r.code, r.stderr);
    let lines: Vec<Value> = r.stdout.lines().map(json).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(checks_of(&lines[0]), ["input"]);
    assert_eq!(lines[1]["decision"], "allow");
}

/// The README's 60-second example is real output: this fails when the example policy,
/// request or output format changes and the README was not updated with a fresh run.
#[test]
fn the_readme_shows_real_output() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let block_after = |marker: &str| -> String {
        let at = readme
            .find(marker)
            .unwrap_or_else(|| panic!("no `{marker}` in README.md"));
        let rest = &readme[at..];
        let open = rest.find("```").unwrap();
        let body = &rest[open..];
        let start = body.find('\n').unwrap() + 1;
        let end = start + body[start..].find("```").unwrap();
        body[start..end].to_string()
    };
    let args = [
        "check",
        "--policy",
        "examples/policy.yaml",
        "--no-dns",
        "--request",
        "examples/requests/metadata-decimal-ip.json",
    ];
    let r = run_in(&workspace(), &args, "");
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(block_after("<!-- readme-json"), r.stdout);
    let mut human = args.to_vec();
    human.extend(["--format", "human"]);
    let r = run_in(&workspace(), &human, "");
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(block_after("<!-- readme-human"), r.stdout);
}

/// Secrets never leave through the gate's own outputs: the decision names the
/// detector, the label, the JSON pointer and a keyed fingerprint, never the value.
#[test]
fn a_secret_in_the_arguments_is_denied_and_never_printed() {
    let secret_id = "AKIA2OGYBAH6TQKRXEVN";
    let secret_key = "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";
    for format in ["json", "human"] {
        let r = run_in(
            &workspace(),
            &[
                "check",
                "--policy",
                "examples/policy.yaml",
                "--no-dns",
                "--resolve",
                "notes.corp.example.com=93.184.215.14",
                "--request",
                "examples/requests/deny-secret-in-notes.json",
                "--format",
                format,
            ],
            "",
        );
        assert_eq!(r.code, 1, "{r:?}");
        for s in [secret_id, secret_key, &secret_key[..12]] {
            assert!(!r.stdout.contains(s), "{format}: leaked: {}", r.stdout);
            assert!(!r.stderr.contains(s), "{format}: leaked: {}", r.stderr);
        }
        assert!(r.stdout.contains("hmac-sha256:"), "{format}: {}", r.stdout);
        if format == "json" {
            let d = json(&r.stdout);
            assert!(checks_of(&d).iter().any(|c| c == "data"), "{d}");
            assert!(
                d["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["label"] == "credentials" && f["pointer"] == "/body"),
                "{d}"
            );
        } else {
            snap!("check_deny_secret_human", redact(&r.stdout));
        }
    }
}

#[test]
fn jsonl_from_a_file_in_human_format_numbers_each_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reqs.jsonl");
    std::fs::write(&path, format!("{SEARCH}\n{ISSUE_BY_RESEARCHER}\n")).unwrap();
    let r = check(
        &[
            "--jsonl",
            "--format",
            "human",
            "--request",
            path.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .starts_with("line 1: ALLOW  research-bot calls search.web\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("\n\nline 2: DENY  research-bot calls github.create_issue\n"),
        "{}",
        r.stdout
    );
}

/// A malformed request may carry a secret in the very value that is malformed; the
/// error message names the field and the place, never the value.
#[test]
fn request_errors_never_echo_values() {
    let secret = "AKIA2OGYBAH6TQKRXEVN";
    let card = "4111111111111111";
    let bad = [
        format!(r#"{{"agent":"a","tool":"s.t","session_labels":"{secret}"}}"#),
        format!(r#"{{"agent":"a","tool":"s.t","{secret}":1}}"#),
        format!(r#"{{"agent":"a","tool":{card}}}"#),
    ];
    for line in &bad {
        for jsonl in [false, true] {
            let r = check(if jsonl { &["--jsonl"][..] } else { &[] }, line);
            assert_eq!(r.code, 65, "{r:?}");
            for s in [secret, card] {
                assert!(!r.stderr.contains(s), "leaked: {}", r.stderr);
                assert!(!r.stdout.contains(s), "leaked: {}", r.stdout);
            }
        }
    }
}

/// `check --jsonl` as a coprocess: each decision is on stdout before the next
/// request is sent (stdin stays open all along).
#[test]
fn jsonl_answers_each_line_before_the_next_arrives() {
    let mut child = conductor_in(&fixtures())
        .args(["check", "--policy", "policy.yaml", "--no-dns", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // A liveness guard, not a timing assertion: without a flush this would hang forever.
    let guard = std::time::Duration::from_secs(120);
    for (request, expected) in [
        (SEARCH, "allow"),
        (ISSUE_BY_RESEARCHER, "deny"),
        (MERGE, "approve"),
    ] {
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        let line = rx
            .recv_timeout(guard)
            .expect("no decision while stdin is still open: output is not flushed");
        assert_eq!(json(&line)["decision"], expected, "{line}");
    }
    drop(stdin);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn check_refuses_a_member_twice_inside_the_arguments() {
    // Regression (red-team review 2026-12-04, F4): `check` decided on the last of two
    // `url` members inside `arguments` (serde keeps the last), while a first-wins
    // reader (gjson, jsonparser) given the same bytes fetches the first: the metadata
    // service. `wrap`, `serve`, AuthZEN and the hook refused it; `check` now does too,
    // with the same reader, and without quoting the member (it may be a secret).
    for (body, what) in [
        (
            r#"{"agent":"research-bot","tool":"fetch.fetch","arguments":{"url":"http://169.254.169.254/latest/meta-data/","url":"https://api.github.com/"}}"#,
            "appears twice",
        ),
        (
            r#"{"agent":"research-bot","tool":"github.create_issue","arguments":{"repo":"victim/prod","nested":[{"AKIAQYLPMN5HHHFPZAM2":1,"AKIAQYLPMN5HHHFPZAM2":2}]}}"#,
            "appears twice",
        ),
        (
            "{\"agent\":\"research-bot\",\"tool\":\"search.web\",\"arguments\":{\"q\":\"a\",\"\u{212a}\":1,\"k\":2}}",
            "case folding",
        ),
    ] {
        let r = check(&[], body);
        assert_eq!(r.code, 65, "{body}: {r:?}");
        assert!(r.stderr.contains(what), "{body}: {}", r.stderr);
        assert!(
            !r.stderr.contains("AKIA"),
            "the member name leaked: {}",
            r.stderr
        );
        // One line of --jsonl: the same refusal, the other lines still decided.
        let lines = format!("{body}\n{SEARCH}\n");
        let r = check(&["--jsonl"], lines);
        let out: Vec<Value> = r.stdout.lines().map(json).collect();
        assert_eq!(out.len(), 2, "{r:?}");
        assert_eq!(out[0]["decision"], "deny", "{body}: {}", out[0]);
        assert_eq!(out[1]["decision"], "allow");
    }
}

#[test]
fn jsonl_decisions_stay_on_one_line_for_every_line_reader() {
    // Regression (red-team review 2026-12-04, F6): a tool name or argument with U+2028,
    // U+2029 or U+0085 came back raw inside the decision's JSON, and a consumer that
    // splits lines with Python's `str.splitlines()` read a broken record.
    let body = "{\"agent\":\"research-bot\",\"tool\":\"search.we\u{2028}b\u{85}x\u{2029}\",\"arguments\":{\"q\":\"a\u{2028}b\"}}\n";
    let r = check(&["--jsonl"], format!("{body}{SEARCH}\n"));
    for c in ['\u{85}', '\u{2028}', '\u{2029}'] {
        assert!(!r.stdout.contains(c), "raw {c:?} in {}", r.stdout);
    }
    let out: Vec<Value> = r.stdout.lines().map(json).collect();
    assert_eq!(out.len(), 2, "{}", r.stdout);
    // The escape means the same text: the tool name is read back as sent.
    assert!(
        out[0].to_string().contains("search.we\u{2028}b") || r.stdout.contains("\\u2028"),
        "{}",
        r.stdout
    );
    assert_eq!(out[1]["decision"], "allow");
}
