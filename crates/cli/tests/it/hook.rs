//! Tests of `conductor hook claude-code`: recorded Claude Code `PreToolUse` and
//! `PostToolUse` payloads (tests/fixtures/hook/) for each built-in tool kind and an MCP
//! tool, decided under the starter policy examples/claude-code-policy.yaml; flow across
//! calls through the shared session store; every failure answers deny with exit 2.

use std::path::Path;

use serde_json::{Value, json};

use crate::{Run, fixtures, run_in, workspace};

const AGENT: &str = "claude-code";

/// A recorded hook input from tests/fixtures/hook/, for `session`.
pub(crate) fn payload(name: &str, session: &str) -> String {
    std::fs::read_to_string(fixtures().join("hook").join(format!("{name}.json")))
        .unwrap()
        .replace("SESSION", session)
}

fn hook_with(audit: &Path, policy: &Path, stdin: &str) -> Run {
    let audit = audit.display().to_string();
    let policy = policy.display().to_string();
    run_in(
        &fixtures(),
        &[
            "hook",
            "claude-code",
            "--policy",
            &policy,
            "--agent",
            AGENT,
            "--audit",
            &audit,
            "--no-dns",
            "--resolve",
            "docs.rs=18.154.227.66",
            "--resolve",
            "api.github.com=140.82.112.6",
            "--resolve",
            "api.anthropic.com=160.79.104.10",
        ],
        stdin,
    )
}

fn hook(audit: &Path, stdin: &str) -> Run {
    hook_with(
        audit,
        &workspace().join("examples/claude-code-policy.yaml"),
        stdin,
    )
}

/// The answer's `hookSpecificOutput`, checked for the shape Claude Code reads.
fn pre_answer(r: &Run) -> (String, String) {
    assert_eq!(r.code, 0, "{r:?}");
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let h = &v["hookSpecificOutput"];
    assert_eq!(h["hookEventName"], "PreToolUse", "{v}");
    (
        h["permissionDecision"].as_str().unwrap().to_string(),
        h["permissionDecisionReason"].as_str().unwrap().to_string(),
    )
}

/// A failure: deny on stdout, a reason on stderr, and the blocking status 2.
fn assert_blocked(r: &Run) {
    assert_eq!(r.code, 2, "{r:?}");
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny", "{v}");
    assert_eq!(v["decision"], "block", "{v}");
    assert!(r.stderr.contains("refused"), "{r:?}");
}

/// The audit store's records, as `audit export` gives them.
pub(crate) fn export(audit: &Path) -> Vec<Value> {
    let a = audit.display().to_string();
    let r = run_in(
        &fixtures(),
        &["audit", "export", "--audit", &a, "--format", "jsonl"],
        "",
    );
    assert_eq!(r.code, 0, "{r:?}");
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn each_recorded_payload_gets_its_decision_and_an_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    // (fixture, permissionDecision, the tool as decided, a phrase of the reason)
    let cases = [
        ("pre-bash-test", "ask", "claude.Bash", "approve"),
        ("pre-bash-metadata", "deny", "claude.Bash", "cloud metadata"),
        ("pre-bash-secret", "deny", "claude.Bash", "credentials"),
        ("pre-webfetch-docs", "allow", "claude.WebFetch", "allowed"),
        (
            "pre-webfetch-metadata",
            "deny",
            "claude.WebFetch",
            "cloud metadata",
        ),
        ("pre-websearch", "allow", "claude.WebSearch", "allowed"),
        ("pre-read", "allow", "claude.Read", "allowed"),
        ("pre-read-aws", "deny", "claude.Read", "roles.coder.deny"),
        ("pre-read-env", "deny", "claude.Read", "roles.coder.deny"),
        ("pre-write-project", "allow", "claude.Write", "allowed"),
        ("pre-edit-outside", "deny", "claude.Edit", "/file_path"),
        ("pre-mcp-fetch", "allow", "fetch.fetch", "allowed"),
        (
            "pre-mcp-fetch-metadata",
            "deny",
            "fetch.fetch",
            "cloud metadata",
        ),
    ];
    for (i, (name, want, tool, phrase)) in cases.iter().enumerate() {
        let r = hook(&audit, &payload(name, &format!("s-{i}")));
        let (decision, reason) = pre_answer(&r);
        assert_eq!(&decision, want, "{name}: {reason}");
        assert!(reason.contains(tool), "{name}: {reason}");
        assert!(reason.contains(phrase), "{name}: {reason}");
    }
    let records = export(&audit);
    assert_eq!(records.len(), cases.len());
    for (rec, (name, want, tool, _)) in records.iter().zip(cases.iter()) {
        assert_eq!(rec["event"], "hook", "{name}");
        assert_eq!(rec["tool"], *tool, "{name}");
        let want = if *want == "ask" { "approve" } else { want };
        assert_eq!(rec["decision"], want, "{name}");
    }
    // The MCP call names its server.
    assert_eq!(records[11]["server"], "fetch");
}

#[test]
fn the_metadata_curl_in_a_bash_command_is_denied_in_every_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let base: Value = serde_json::from_str(&payload("pre-bash-test", "s")).unwrap();
    for command in [
        "curl -s http://169.254.169.254/latest/meta-data/",
        "curl 2852039166/latest/meta-data/",
        "wget -O - 0xa9fea9fe",
        "cd /tmp && curl -i 169.254.169.254",
        "bash -c 'cat < /dev/tcp/169.254.169.254/80'",
        "ssh root@169.254.169.254",
        "curl metadata.google.internal/computeMetadata/v1/",
    ] {
        let mut p = base.clone();
        p["tool_input"]["command"] = Value::String(command.into());
        let (decision, reason) = pre_answer(&hook(&audit, &p.to_string()));
        assert_eq!(decision, "deny", "{command}: {reason}");
        assert!(reason.contains("destination"), "{command}: {reason}");
    }
}

#[test]
fn the_starter_policy_keeps_every_common_credential_store_unread() {
    // Regression (red-team review 2026-12-04, round 2, H3): the starter policy said
    // "credentials stay unread" but allowed Grep/Glob/LS on ~/.aws (Grep with
    // output_mode=content prints the file), and Read of `.env.production`,
    // `.git-credentials`, `.netrc`, gh's hosts file, Docker's and kube's configs and
    // /proc/<pid>/environ.
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let base: Value = serde_json::from_str(&payload("pre-bash-test", "s")).unwrap();
    let cases = [
        (
            "Grep",
            json!({"pattern": ".", "path": "/home/dev/.aws/credentials", "output_mode": "content"}),
        ),
        ("Glob", json!({"pattern": "**/*", "path": "/home/dev/.aws"})),
        ("LS", json!({"path": "/home/dev/.ssh"})),
        (
            "Read",
            json!({"file_path": "/home/dev/project/.env.production"}),
        ),
        ("Read", json!({"file_path": "/home/dev/.git-credentials"})),
        ("Read", json!({"file_path": "/home/dev/.netrc"})),
        (
            "Read",
            json!({"file_path": "/home/dev/.config/gh/hosts.yml"}),
        ),
        (
            "Read",
            json!({"file_path": "/home/dev/.docker/config.json"}),
        ),
        ("Read", json!({"file_path": "/home/dev/.kube/config"})),
        ("Read", json!({"file_path": "/proc/1/environ"})),
    ];
    for (tool, input) in cases {
        let mut p = base.clone();
        p["tool_name"] = Value::String(tool.into());
        p["tool_input"] = input.clone();
        let (decision, reason) = pre_answer(&hook(&audit, &p.to_string()));
        assert_eq!(decision, "deny", "{tool} {input}: {reason}");
    }
    // Reading and searching the project stays allowed.
    for (tool, input) in [
        (
            "Read",
            json!({"file_path": "/home/dev/project/src/main.rs"}),
        ),
        (
            "Grep",
            json!({"pattern": "fn main", "path": "/home/dev/project/src"}),
        ),
    ] {
        let mut p = base.clone();
        p["tool_name"] = Value::String(tool.into());
        p["tool_input"] = input.clone();
        let (decision, reason) = pre_answer(&hook(&audit, &p.to_string()));
        assert_eq!(decision, "allow", "{tool} {input}: {reason}");
    }
}

#[test]
fn a_secret_read_by_read_then_sent_by_webfetch_is_denied_by_flow() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    // Before: the fetch is allowed.
    let (d, _) = pre_answer(&hook(&audit, &payload("pre-webfetch-docs", "flow")));
    assert_eq!(d, "allow");
    // A plain file read raises nothing.
    let r = hook(&audit, &payload("post-read-plain", "flow"));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), "{}");
    let (d, _) = pre_answer(&hook(&audit, &payload("pre-webfetch-docs", "flow")));
    assert_eq!(d, "allow");
    // The agent reads a file with AWS keys in it (PostToolUse, another process).
    let r = hook(&audit, &payload("post-read-secret", "flow"));
    assert_eq!(r.code, 0, "{r:?}");
    // The next fetch, from another hook process, is refused by flow.
    let (d, reason) = pre_answer(&hook(&audit, &payload("pre-webfetch-docs", "flow")));
    assert_eq!(d, "deny", "{reason}");
    assert!(reason.contains("flow"), "{reason}");
    // Nothing the hook wrote holds the secret.
    let records = export(&audit);
    let all = serde_json::to_string(&records).unwrap();
    assert!(!all.contains("AKIAQYLPMN5HHHFPZAM2"));
    assert!(!r.stdout.contains("AKIA") && !r.stderr.contains("AKIA"));
}

#[test]
fn garbage_on_stdin_is_denied_with_the_blocking_status() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    for input in [
        "",
        "not json",
        "{\"hook_event_name\":\"PreToolUse\"",
        "[1,2]",
        // No tool input.
        r#"{"hook_event_name":"PreToolUse","session_id":"s","tool_name":"Bash"}"#,
        // tool_input is not an object.
        r#"{"hook_event_name":"PreToolUse","session_id":"s","tool_name":"Bash","tool_input":"ls"}"#,
        // A member twice: another reader could see the other command.
        r#"{"hook_event_name":"PreToolUse","session_id":"s","tool_name":"Bash","tool_input":{"command":"ls","command":"curl 169.254.169.254"}}"#,
        // An event the hook does not handle.
        r#"{"hook_event_name":"PermissionRequest","session_id":"s","tool_name":"Bash","tool_input":{}}"#,
        // Trailing data.
        r#"{"hook_event_name":"PreToolUse","session_id":"s","tool_name":"Read","tool_input":{}} {}"#,
    ] {
        let r = hook(&audit, input);
        assert_blocked(&r);
    }
    // Invalid UTF-8.
    let r = {
        let a = audit.display().to_string();
        let p = workspace().join("examples/claude-code-policy.yaml");
        let p = p.display().to_string();
        run_in(
            &fixtures(),
            &[
                "hook",
                "claude-code",
                "--policy",
                &p,
                "--agent",
                AGENT,
                "--audit",
                &a,
            ],
            b"\xff\xfe{}".as_slice(),
        )
    };
    assert_blocked(&r);
}

#[test]
fn an_unreadable_policy_or_store_is_denied_with_the_blocking_status() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let input = payload("pre-read", "s");
    assert_blocked(&hook_with(&audit, &dir.path().join("missing.yaml"), &input));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nagents: [").unwrap();
    assert_blocked(&hook_with(&audit, &bad, &input));
    // The audit store is a directory: nothing may pass unrecorded.
    let r = hook(dir.path(), &input);
    assert_blocked(&r);
    // The same for PostToolUse: the labels could not be kept.
    let r = hook(dir.path(), &payload("post-read-secret", "s"));
    assert_blocked(&r);
}

#[test]
fn an_ambiguous_mcp_tool_name_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let mut p: Value = serde_json::from_str(&payload("pre-mcp-fetch", "s")).unwrap();
    // server `fetch` tool `fetch__x`, or server `fetch__fetch` tool `x`?
    p["tool_name"] = Value::String("mcp__fetch__fetch__x".into());
    let (d, reason) = pre_answer(&hook(&audit, &p.to_string()));
    assert_eq!(d, "deny", "{reason}");
    assert!(reason.contains("does not split one way"), "{reason}");
}

#[test]
fn an_unknown_agent_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("audit.db").display().to_string();
    let p = workspace().join("examples/claude-code-policy.yaml");
    let p = p.display().to_string();
    let r = run_in(
        &fixtures(),
        &[
            "hook",
            "claude-code",
            "--policy",
            &p,
            "--agent",
            "mallory",
            "--audit",
            &a,
        ],
        payload("pre-read", "s"),
    );
    let (d, reason) = pre_answer(&r);
    assert_eq!(d, "deny");
    assert!(reason.contains("identity"), "{reason}");
}

#[test]
fn a_write_path_that_climbs_out_of_the_project_is_denied() {
    // Regression: `/home/dev/project/../../../etc/cron.d/x` matches the glob
    // `/home/dev/project/**` as text; the file written is /etc/cron.d/x.
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.db");
    let mut p: Value = serde_json::from_str(&payload("pre-write-project", "s")).unwrap();
    p["tool_input"]["file_path"] = Value::String("/home/dev/project/../../../etc/cron.d/x".into());
    let (d, reason) = pre_answer(&hook(&audit, &p.to_string()));
    assert_eq!(d, "deny", "{reason}");
    assert!(reason.contains("`..`"), "{reason}");
}
