//! Tests of `conductor audit`: verify (intact, tampered, anchored), head, export
//! (jsonl, OCSF), tail, query, and the exit statuses of unusable stores.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use conductor_audit::{AuditOptions, AuditStore, NewRecord};
use serde_json::{Value, json};

use crate::{Run, conductor_in, run_in, snap};

fn rec(i: u64) -> NewRecord {
    let deny = i.is_multiple_of(3);
    NewRecord {
        event: "tools/call".into(),
        agent: if i.is_multiple_of(2) {
            "research-bot"
        } else {
            "deploy-bot"
        }
        .into(),
        session: Some("s-1".into()),
        workflow: None,
        server: Some(if deny { "fetch" } else { "github" }.into()),
        tool: if deny {
            "fetch.fetch"
        } else {
            "github.get_issue"
        }
        .into(),
        action: "read".into(),
        decision: if deny { "deny" } else { "allow" }.into(),
        reasons: if deny {
            json!([{"check": "destination", "rule": "destinations.blocked.cloud-metadata",
                    "message": "http://2852039166/ resolves to 169.254.169.254, a cloud metadata endpoint"}])
        } else {
            json!([])
        },
        destinations: if deny {
            json!([{"input": "http://2852039166/latest/meta-data/", "scheme": "http",
                    "host": "169.254.169.254", "port": 80, "addresses": ["169.254.169.254"],
                    "classes": ["cloud-metadata", "link-local"]}])
        } else {
            json!([{"input": "https://api.github.com", "scheme": "https", "host": "api.github.com",
                    "port": 443, "addresses": ["140.82.112.6"], "classes": []}])
        },
        findings: json!([]),
        policy: format!("sha256:{}", "ab".repeat(32)),
        request_digest: format!("sha256:{i:064x}"),
        arguments: Some(json!({"i": i})),
        latency_us: 12,
        auth: None,
    }
}

/// A store with `n` records in a fresh directory.
fn store(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let s = AuditStore::open(&path, AuditOptions::default()).unwrap();
    for i in 1..=n {
        s.append(rec(i)).unwrap();
    }
    (dir, path)
}

fn audit(path: &Path, args: &[&str]) -> Run {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    let p = path.display().to_string();
    all.extend_from_slice(&["--audit", &p]);
    run_in(path.parent().unwrap(), &all, "")
}

/// Hide what changes from run to run: times, hashes, the temporary directory.
fn stable(text: &str, dir: &Path) -> String {
    let text = text.replace(&dir.display().to_string(), "[dir]");
    let mut out = crate::redact(&text);
    // 2026-11-26T21:50:42.123456Z → [time]
    while let Some(i) = out
        .find(|c: char| c.is_ascii_digit())
        .and_then(|_| find_time(&out))
    {
        out.replace_range(i..i + 27, "[time]");
    }
    // Base64 tree heads (checkpoint line 3) and random origins.
    out.lines()
        .map(|l| {
            if l.len() == 44 && l.ends_with('=') {
                "[tree head]".to_string()
            } else if let Some(i) = l.find("conductor.invalid/audit/") {
                format!("{}conductor.invalid/audit/[id]", &l[..i])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn find_time(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(26)).find(|&i| {
        b[i + 4] == b'-' && b[i + 10] == b'T' && b[i + 26] == b'Z' && b[i].is_ascii_digit()
    })
}

fn sql(path: &Path) -> conductor_audit::rusqlite::Connection {
    conductor_audit::rusqlite::Connection::open(path).unwrap()
}

#[test]
fn verify_an_intact_store_exits_0() {
    let (dir, path) = store(12);
    let r = audit(&path, &["verify"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("ok: 12 records verified"),
        "{}",
        r.stdout
    );
    snap!("audit_verify_ok", stable(&r.stdout, dir.path()));
    let j = audit(&path, &["verify", "--format", "json"]);
    assert_eq!(j.code, 0);
    let v: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["verified"], 12);
    assert_eq!(v["head"]["seq"], 12);
}

#[test]
fn verify_a_modified_record_exits_1_with_its_seq() {
    let (dir, path) = store(12);
    sql(&path)
        .execute(
            "UPDATE records SET record = replace(record, '\"decision\":\"deny\"', '\"decision\":\"allow\"') WHERE seq = 6",
            [],
        )
        .unwrap();
    let r = audit(&path, &["verify"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("broken at seq 6:"), "{}", r.stdout);
    snap!("audit_verify_modified", stable(&r.stdout, dir.path()));
    let j = audit(&path, &["verify", "--format", "json"]);
    assert_eq!(j.code, 1);
    let v: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad_seq"], 6);
    assert_eq!(v["problem"], "hash-mismatch");
    assert_eq!(v["verified"], 5);
    assert!(
        v.get("checkpoint").is_none(),
        "no checkpoint of a broken chain"
    );
}

#[test]
fn verify_a_deleted_record_exits_1_with_its_seq() {
    let (_dir, path) = store(12);
    sql(&path)
        .execute("DELETE FROM records WHERE seq = 9", [])
        .unwrap();
    let r = audit(&path, &["verify", "--format", "json"]);
    assert_eq!(r.code, 1, "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["first_bad_seq"], 9);
    assert_eq!(v["problem"], "missing");
}

#[test]
fn head_checkpoint_anchors_against_truncation() {
    let (dir, path) = store(10);
    let h = audit(&path, &["head", "--format", "checkpoint"]);
    assert_eq!(h.code, 0, "{h:?}");
    let lines: Vec<&str> = h.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", h.stdout);
    assert!(lines[0].starts_with("conductor.invalid/audit/"));
    assert_eq!(lines[1], "10");
    assert_eq!(lines[2].len(), 44);
    let cp = dir.path().join("head.txt");
    std::fs::write(&cp, &h.stdout).unwrap();
    let cps = cp.display().to_string();
    // More records later: still consistent with the checkpoint.
    let s = AuditStore::open(&path, AuditOptions::default()).unwrap();
    s.append(rec(11)).unwrap();
    drop(s);
    assert_eq!(audit(&path, &["verify", "--checkpoint", &cps]).code, 0);
    // Cut the tail: the chain alone still verifies, the checkpoint does not.
    sql(&path)
        .execute("DELETE FROM records WHERE seq > 8", [])
        .unwrap();
    assert_eq!(audit(&path, &["verify"]).code, 0);
    let r = audit(&path, &["verify", "--checkpoint", &cps]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("broken at seq 9:"), "{}", r.stdout);
}

#[test]
fn head_human_and_json() {
    let (dir, path) = store(3);
    let r = audit(&path, &["head"]);
    assert_eq!(r.code, 0, "{r:?}");
    snap!("audit_head_human", stable(&r.stdout, dir.path()));
    let j = audit(&path, &["head", "--format", "json"]);
    let v: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["seq"], 3);
    assert!(v["hash"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn head_of_a_broken_chain_is_refused() {
    let (_dir, path) = store(5);
    sql(&path)
        .execute("DELETE FROM records WHERE seq = 2", [])
        .unwrap();
    let r = audit(&path, &["head", "--format", "checkpoint"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.is_empty());
    assert!(r.stderr.contains("broken at seq 2"), "{}", r.stderr);
}

#[test]
fn export_jsonl_prints_every_record_as_stored() {
    let (_dir, path) = store(7);
    let r = audit(&path, &["export", "--format", "jsonl"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["seq"], i as u64 + 1);
        assert!(v["hash"].as_str().unwrap().starts_with("sha256:"));
        assert!(v["prev"].as_str().unwrap().starts_with("sha256:"));
    }
    // Each line without `hash` is the exact text the hash covers.
    let first = &lines[0];
    let mut body = first.clone();
    body.as_object_mut().unwrap().remove("hash");
    let text = conductor_audit::canonical_json(&body);
    let h = conductor_audit::chain_hash(&conductor_audit::GENESIS, &text);
    assert_eq!(first["hash"], conductor_audit::hash_text(&h));
}

#[test]
fn export_ocsf_maps_decisions_and_destinations() {
    let (dir, path) = store(3);
    let r = audit(&path, &["export", "--format", "ocsf"]);
    assert_eq!(r.code, 0, "{r:?}");
    let events: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    for e in &events {
        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["category_uid"], 6);
        assert_eq!(e["activity_id"], 2);
        assert_eq!(e["type_uid"], 600302);
        assert_eq!(e["metadata"]["profiles"], json!(["security_control"]));
        assert!(e["time"].as_u64().unwrap() > 1_700_000_000_000);
    }
    // seq 3 is a deny (i.is_multiple_of(3)), seq 1 an allow.
    let deny = &events[2];
    assert_eq!(deny["action_id"], 2);
    assert_eq!(deny["disposition_id"], 2);
    assert_eq!(deny["dst_endpoint"]["ip"], "169.254.169.254");
    assert_eq!(deny["dst_endpoint"]["port"], 80);
    assert_eq!(
        deny["policy"]["desc"],
        "destinations.blocked.cloud-metadata"
    );
    let allow = &events[0];
    assert_eq!(allow["action_id"], 1);
    assert_eq!(allow["disposition_id"], 1);
    assert_eq!(allow["dst_endpoint"]["hostname"], "api.github.com");
    let mut deny = deny.clone();
    deny["time"] = json!(0);
    let pretty = serde_json::to_string_pretty(&deny).unwrap();
    snap!("audit_export_ocsf_deny", stable(&pretty, dir.path()));
}

#[test]
fn query_filters_and_formats() {
    let (dir, path) = store(12);
    let r = audit(&path, &["query", "--decision", "deny", "--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let seqs: Vec<u64> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [3, 6, 9, 12]);
    let r = audit(
        &path,
        &[
            "query",
            "--agent",
            "research-bot",
            "--tool",
            "github.*",
            "--format",
            "json",
        ],
    );
    let seqs: Vec<u64> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [2, 4, 8, 10]);
    let r = audit(&path, &["query", "--since", "1h", "--until", "2999-01-01"]);
    assert_eq!(r.stdout.lines().count(), 12, "{r:?}");
    let r = audit(&path, &["query", "--since", "2999-01-01"]);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("no records match"));
    let r = audit(&path, &["query", "--decision", "deny"]);
    snap!("audit_query_deny_human", stable(&r.stdout, dir.path()));
}

#[test]
fn query_rejects_a_bad_time_with_64() {
    let (_dir, path) = store(1);
    let r = audit(&path, &["query", "--since", "yesterday"]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(
        r.stderr.contains("invalid `--since` value `yesterday`"),
        "{}",
        r.stderr
    );
}

#[test]
fn tail_shows_the_last_n() {
    let (_dir, path) = store(15);
    let r = audit(&path, &["tail", "-n", "4", "--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let seqs: Vec<u64> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [12, 13, 14, 15]);
    let human = audit(&path, &["tail", "-n", "2"]);
    assert_eq!(human.stdout.lines().count(), 2);
    assert!(human.stdout.contains("#15"), "{}", human.stdout);
}

#[test]
fn tail_follow_shows_new_records() {
    let (_dir, path) = store(2);
    let mut child = conductor_in(path.parent().unwrap())
        .args([
            "audit", "tail", "-f", "-n", "1", "--format", "json", "--audit",
        ])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["seq"], 2);
    let s = AuditStore::open(&path, AuditOptions::default()).unwrap();
    s.append(rec(3)).unwrap();
    s.append(rec(4)).unwrap();
    let a: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let b: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!((a["seq"].as_u64(), b["seq"].as_u64()), (Some(3), Some(4)));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_missing_store_exits_66() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    let r = audit(&path, &["verify"]);
    assert_eq!(r.code, 66, "{r:?}");
    assert!(r.stderr.contains("no such file"), "{}", r.stderr);
    assert!(!path.exists(), "verify must not create a store");
}

#[test]
fn a_file_that_is_not_a_store_exits_65() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, "this is not sqlite".repeat(500)).unwrap();
    let r = audit(&path, &["verify"]);
    assert_eq!(r.code, 65, "{r:?}");
    // An SQLite file that is not an audit store.
    let other = dir.path().join("other.db");
    conductor_audit::rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let r = audit(&other, &["export", "--format", "jsonl"]);
    assert_eq!(r.code, 65, "{r:?}");
    assert!(
        r.stderr.contains("not a readable conductor audit store"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_unreadable_store_exits_74() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = store(1);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    // root reads anything: nothing to test then.
    if std::fs::File::open(&path).is_ok() {
        return;
    }
    let r = audit(&path, &["verify"]);
    assert!(r.code == 66 || r.code == 74, "{r:?}");
}

#[test]
fn export_requires_a_format() {
    let (_dir, path) = store(1);
    let r = audit(&path, &["export"]);
    assert_eq!(r.code, 64, "{r:?}");
}

#[test]
fn an_empty_store_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    drop(AuditStore::open(&path, AuditOptions::default()).unwrap());
    let r = audit(&path, &["verify"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("ok: 0 records verified"),
        "{}",
        r.stdout
    );
    let h = audit(&path, &["head", "--format", "checkpoint"]);
    assert_eq!(h.code, 0, "{h:?}");
    assert_eq!(h.stdout.lines().nth(1), Some("0"));
}

// Regression (issue 10, class 10): `audit tail|query --format human` printed control
// characters from tool names and messages — terminal escapes and forged lines.
#[test]
fn human_output_never_prints_control_characters_from_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let s = AuditStore::open(&path, AuditOptions::default()).unwrap();
    let mut r = rec(3);
    r.tool = "evil.x\u{1b}[2J\u{1b}]0;pwned\u{7}".into();
    r.agent = "bot\n2026-01-01T00:00:00Z  #999    allow   admin  ok".into();
    r.reasons = json!([{"check": "tool", "rule": "x", "message": "m\r\u{202e}gnp.exe"}]);
    s.append(r).unwrap();
    drop(s);
    for args in [
        &["tail", "--format", "human"][..],
        &["query", "--format", "human"][..],
    ] {
        let out = audit(&path, args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let text = &out.stdout;
        assert_eq!(text.lines().count(), 1, "a forged line: {text:?}");
        assert!(
            !text
                .trim_end_matches('\n')
                .chars()
                .any(|c| c.is_control() || c == '\u{202e}'),
            "{text:?}"
        );
        assert!(text.contains("\\u{1b}"), "{text:?}");
    }
}
