//! The gateway file, read from disk: strict, every problem at once, secrets by reference.

use std::io::Write;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    p
}

#[test]
fn file_references_are_read_relative_to_the_gateway_file() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, "token.txt", "abc123\n");
    let p = write(
        &dir,
        "gateway.yaml",
        "version: 1\nservers:\n  w:\n    url: \"http://127.0.0.1:9/mcp\"\n    headers: {Authorization: \"Bearer ${file:token.txt}\"}\nauth: {none: {agent: a}}\n",
    );
    let cfg = conductor_serve::load_file(&p).unwrap();
    let conductor_serve::config::Transport::Http { headers, .. } = &cfg.servers[0].transport else {
        panic!("not http")
    };
    assert_eq!(headers[0].1.expose(), "Bearer abc123");
    assert!(!format!("{cfg:?}").contains("abc123"));
}

#[test]
fn a_missing_secret_file_is_a_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "gateway.yaml",
        "version: 1\nservers:\n  w:\n    command: [x]\n    env: {K: \"${file:nope.txt}\"}\nauth: {none: {agent: a}}\n",
    );
    let e = conductor_serve::load_file(&p).unwrap_err();
    let r = e.render(false);
    assert!(r.contains("cannot read the secret file `nope.txt`"), "{r}");
    assert!(r.contains("gateway.yaml:5:"), "{r}");
}

#[test]
fn a_non_loopback_listener_needs_tls_and_none_is_refused_there() {
    let e = conductor_serve::load_str(
        "version: 1\nlisten: \"0.0.0.0:8443\"\nservers: {a: {command: [x]}}\nauth: {none: {agent: a}}\n",
        "g.yaml",
        &conductor_serve::config::SystemSecrets { base: None },
    )
    .unwrap_err();
    let r = e.render(false);
    assert!(r.contains("a non-loopback listener needs `tls`"), "{r}");
    assert!(r.contains("serves one fixed agent"), "{r}");
}

#[test]
fn a_jwt_block_needs_an_audience_and_a_known_claim_source() {
    let e = conductor_serve::load_str(
        "version: 1\nservers: {a: {command: [x]}}\nauth:\n  jwt: {issuer: \"https://idp.example\", jwks: \"https://idp.example/jwks.json\"}\n  mtls: {agent_from: subject.o}\n",
        "g.yaml",
        &conductor_serve::config::SystemSecrets { base: None },
    )
    .unwrap_err();
    let r = e.render(false);
    assert!(r.contains("needs `audience`"), "{r}");
    assert!(r.contains("`subject.o` is not one of"), "{r}");
}

#[test]
fn an_api_key_entry_holds_a_hash_not_a_key() {
    let e = conductor_serve::load_str(
        "version: 1\nservers: {a: {command: [x]}}\nauth:\n  api_keys: [{agent: bot, sha256: \"cnd_notahash\"}]\n",
        "g.yaml",
        &conductor_serve::config::SystemSecrets { base: None },
    )
    .unwrap_err();
    let r = e.render(false);
    assert!(r.contains("must be 64 hex digits"), "{r}");
    assert!(
        !r.contains("cnd_notahash\n") || r.contains("g.yaml:4:"),
        "{r}"
    );
}
