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
