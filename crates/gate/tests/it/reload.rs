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
