//! server-filesystem (the reference server, from `.peers/node`) in the sandbox with one
//! directory listed. The server is told it may use all of `/`, so that what it can see
//! is what the sandbox shows it, not what its own checks allow.

use conductor_sandbox::Profile;
use serde_json::json;

use crate::support::{Fixed, Mcp, World, peers, policy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_server_sees_only_the_listed_directory() {
    let Some(peers) = peers() else { return };
    let listed = tempfile::tempdir().unwrap();
    let unlisted = tempfile::tempdir().unwrap();
    std::fs::write(listed.path().join("inside.txt"), "inside").unwrap();
    std::fs::write(unlisted.path().join("outside.txt"), "outside").unwrap();
    let w = World::new(policy("  allow: []"), Fixed::default());
    let command = vec![
        "node".to_string(),
        peers
            .join("node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")
            .to_str()
            .unwrap()
            .to_string(),
        "/".to_string(),
    ];
    let profile = Profile {
        write: vec![listed.path().to_path_buf()],
        ..Profile::default()
    };
    let mut mcp = Mcp::start(&command, &profile, w.egress()).await;
    let inside = listed.path().join("inside.txt");
    let (err, text) = mcp.call("read_text_file", json!({"path": inside})).await;
    assert!(!err && text.contains("inside"), "{text}");
    let (err, text) = mcp
        .call(
            "write_file",
            json!({"path": listed.path().join("new.txt"), "content": "written"}),
        )
        .await;
    assert!(!err, "{text}");
    assert_eq!(
        std::fs::read_to_string(listed.path().join("new.txt")).unwrap(),
        "written"
    );

    let outside = unlisted.path().join("outside.txt");
    let (err, text) = mcp.call("read_text_file", json!({"path": outside})).await;
    assert!(
        err && !text.contains("outside\n") && text != "outside",
        "an unlisted file was read: {text}"
    );
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let (err, text) = mcp.call("list_directory", json!({"path": home})).await;
    assert!(
        !text.contains(".ssh") && !text.contains(".aws"),
        "the home shows {text}"
    );
    let _ = err;
    let (_, text) = mcp
        .call("get_file_info", json!({"path": format!("{home}/.ssh")}))
        .await;
    assert!(
        text.to_lowercase().contains("no such file") || text.contains("ENOENT"),
        "{text}"
    );
    let (_, text) = mcp.call("list_directory", json!({"path": "/"})).await;
    for absent in [
        "[DIR] home",
        "[DIR] var",
        "[DIR] run",
        "[DIR] sys",
        "[DIR] mnt",
    ] {
        assert!(!text.contains(absent), "`/` shows {absent}: {text}");
    }
    // The server's own install is visible, and nothing beside it: the checkout that
    // holds `.peers` shows only the path down to it.
    let checkout = peers.parent().unwrap();
    let (_, text) = mcp.call("list_directory", json!({"path": checkout})).await;
    assert_eq!(text.trim(), "[DIR] .peers", "{text}");
    mcp.close().await;
}
