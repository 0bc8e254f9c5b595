//! Shared helpers.

use std::path::{Path, PathBuf};

use conductor_audit::{AuditOptions, AuditStore, NewRecord};

pub fn record(i: u64) -> NewRecord {
    NewRecord {
        event: "tools/call".into(),
        agent: format!("agent-{}", i % 3),
        session: Some(format!("session-{}", i % 5)),
        workflow: (i.is_multiple_of(2)).then(|| "market-research".to_string()),
        server: Some("fetch".into()),
        tool: if i.is_multiple_of(4) {
            "github.delete_repo".into()
        } else {
            "fetch.fetch".into()
        },
        action: "read".into(),
        decision: if i.is_multiple_of(4) {
            "deny".into()
        } else {
            "allow".into()
        },
        reasons: if i.is_multiple_of(4) {
            serde_json::json!([{"check": "tool", "rule": "roles.researcher.deny[0]", "message": "denied"}])
        } else {
            serde_json::json!([])
        },
        destinations: serde_json::json!([{"input": "https://en.wikipedia.org/wiki/X", "scheme": "https",
            "host": "en.wikipedia.org", "port": 443, "addresses": ["198.51.100.7"], "classes": []}]),
        findings: serde_json::json!([]),
        policy: format!("sha256:{}", "ab".repeat(32)),
        request_digest: format!("sha256:{:064x}", i),
        arguments: Some(serde_json::json!({"url": "https://en.wikipedia.org/wiki/X", "i": i})),
        latency_us: 10 + i % 90,
        auth: None,
    }
}

pub fn temp_store() -> (tempfile::TempDir, PathBuf, AuditStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = AuditStore::open(&path, AuditOptions::default()).unwrap();
    (dir, path, store)
}

pub fn fill(store: &AuditStore, n: u64) {
    for i in 0..n {
        store.append(record(i)).unwrap();
    }
}

pub fn verify(path: &Path) -> conductor_audit::VerifyReport {
    conductor_audit::AuditReader::open(path)
        .unwrap()
        .verify(None)
        .unwrap()
}
