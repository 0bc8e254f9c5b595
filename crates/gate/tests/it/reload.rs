//! Policy reload reads only complete, stable regular files.

use std::time::Duration;

// Regression (issue 10, class 10): a FIFO at the policy path froze the relay (the
// reload opened it and waited for a writer).
#[test]
fn a_fifo_at_the_policy_path_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.yaml");
    let st = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || {
        let _ = tx.send(conductor_gate::reload::read_regular(&p2));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("reading a FIFO at the policy path blocked");
    let e = r.unwrap_err();
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn a_regular_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.yaml");
    std::fs::write(&p, "version: 1\n").unwrap();
    let (bytes, _) = conductor_gate::reload::read_regular(&p).unwrap();
    assert_eq!(bytes, b"version: 1\n");
}

// Regression (issue 10, class 10): hot reload could put a half-written policy in force.
// A file that changes between the two reads a moment apart is not loaded (Ok(None)),
// even when what was read first is a valid — and more permissive — policy.
#[test]
fn a_policy_file_being_written_is_not_put_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.yaml");
    // The first half of a policy is itself valid: its deny rules are not written yet.
    let half =
        "version: 1\nagents:\n  bot: {roles: [r]}\nroles:\n  r:\n    allow: [{tools: [\"*\"]}]\n";
    let whole = format!("{half}    deny: [{{tools: [\"*.delete_*\"]}}]\n");
    conductor_policy::load_str(half, "half.yaml", None).expect("the half is a valid policy");
    std::fs::write(&p, half).unwrap();
    let p2 = p.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::write(&p2, whole).unwrap();
    });
    // The second read comes long after the writer finished.
    let loaded = conductor_gate::reload::load_stable(&p, Duration::from_secs(3)).unwrap();
    writer.join().unwrap();
    assert!(
        loaded.is_none(),
        "a file that changed between reads was put in force"
    );
    // Once it stops changing, the whole file is loaded.
    let loaded = conductor_gate::reload::load_stable(&p, Duration::from_millis(10))
        .unwrap()
        .expect("a stable file is loaded");
    let whole = std::fs::read_to_string(&p).unwrap();
    let expected = conductor_policy::load_str(&whole, "p.yaml", None).unwrap();
    assert_eq!(loaded.sha256(), expected.sha256());
}

// Regression: the watcher stamped only the policy file, so an edited gitleaks rules
// file the policy references never took effect while the process ran.
#[tokio::test]
async fn an_edited_rules_file_is_put_in_force() {
    use std::sync::Arc;

    use conductor_gate::{GateResolver, MemoryStore, PolicyWatch, Reload, ResolverConfig};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.yaml");
    std::fs::write(
        &p,
        "version: 1\ndata:\n  labels:\n    l: {level: secret, detect: [{gitleaks: rules.toml}]}\n",
    )
    .unwrap();
    let rules = dir.path().join("rules.toml");
    let rule = |prefix: &str| {
        format!(
            "[[rules]]\nid = \"{prefix}\"\nregex = \"{prefix}_[a-z0-9]{{20}}\"\nkeywords = [\"{prefix}_\"]\n"
        )
    };
    std::fs::write(&rules, rule("oldtok")).unwrap();
    let policy = conductor_policy::load_file(&p).unwrap();
    let audit = Arc::new(
        conductor_audit::AuditStore::open(
            &dir.path().join("audit.db"),
            conductor_audit::AuditOptions::default(),
        )
        .unwrap(),
    );
    let service = conductor_gate::Service::new(
        policy,
        GateResolver::new(ResolverConfig::from_args(&[], true).unwrap()),
        Arc::new(conductor_scan::FingerprintKey([7; 32])),
        audit,
        Arc::new(MemoryStore::default()),
        conductor_gate::ServiceOptions::default(),
    );
    let finds = |svc: &conductor_gate::Service, token: &str| {
        !svc.policy()
            .data()
            .scanner
            .scan(
                &serde_json::json!({"note": token}),
                &conductor_scan::FingerprintKey([3; 32]),
            )
            .is_empty()
    };
    let new_token = "newtok_k3j9x0q2m5n8b1v4c7z6";
    assert!(!finds(&service, new_token));
    let mut watch = PolicyWatch::new(&service, p.clone(), Duration::from_millis(10));
    assert_eq!(watch.poll(&service).await, Reload::Unchanged);
    let before = service.policy().sha256().to_string();

    std::fs::write(&rules, rule("newtok")).unwrap();
    let got = watch.poll(&service).await;
    assert!(
        matches!(&got, Reload::Swapped(sha) if *sha != before),
        "{got:?}"
    );
    assert!(finds(&service, new_token), "the new rule is not in force");
    assert_eq!(watch.poll(&service).await, Reload::Unchanged);

    // A broken rules file: reported once, the last good rules stay.
    std::fs::write(&rules, "[[rules]]\nid = \"x\"\nregex = \"(\"\n").unwrap();
    let got = watch.poll(&service).await;
    assert!(
        matches!(got, Reload::Invalid { first: true, .. }),
        "{got:?}"
    );
    assert!(finds(&service, new_token));
    assert_eq!(watch.poll(&service).await, Reload::Unchanged);
}
