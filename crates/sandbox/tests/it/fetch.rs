//! mcp-server-fetch (the reference server, from `.peers/venv`) in the sandbox: it
//! reaches an allowed name through the egress proxy, and nothing else. Its own
//! private-address guard is off (`--allow-private-ips`), so the sandbox is what is tested.

use conductor_sandbox::Profile;
use serde_json::json;

use crate::proxy::{TestServer, loopback_policy};
use crate::support::{Fixed, Mcp, World, peers};

fn fetch_command(peers: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut c = vec![
        peers
            .join("venv/bin/mcp-server-fetch")
            .to_str()
            .unwrap()
            .to_string(),
        "--ignore-robots-txt".into(),
        "--allow-private-ips".into(),
    ];
    c.extend(extra.iter().map(|s| s.to_string()));
    c
}

fn fetch_args(url: &str) -> serde_json::Value {
    json!({"url": url, "raw": true, "max_length": 2000})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_server_reaches_only_what_the_proxy_allows() {
    let Some(peers) = peers() else { return };
    let server = TestServer::start();
    let p = server.port;
    let resolver = Fixed::default()
        .with("allowed.test", &[&["127.0.0.1"]])
        .with("rebind.test", &[&["127.0.0.1"], &["169.254.169.254"]]);
    let w = World::new(loopback_policy(), resolver.clone());
    let mut mcp = Mcp::start(&fetch_command(&peers, &[]), &Profile::default(), w.egress()).await;

    let (err, text) = mcp
        .call(
            "fetch",
            fetch_args(&format!("http://allowed.test:{p}/page")),
        )
        .await;
    assert!(
        !err && text.contains("hello from /page"),
        "allowed fetch failed: {text}"
    );

    let (err, text) = mcp
        .call(
            "fetch",
            fetch_args("http://169.254.169.254/latest/meta-data/"),
        )
        .await;
    assert!(err, "the metadata address was fetched: {text}");

    // Rebinding: the first lookup gives the test server, a second one would give the
    // metadata address. Every connection goes to the address the gate checked (the
    // gate's resolver keeps its checked answer), so the second fetch is served by the
    // test server too, never by the rebinding answer.
    let (err, text) = mcp
        .call("fetch", fetch_args(&format!("http://rebind.test:{p}/one")))
        .await;
    assert!(!err && text.contains("hello from /one"), "{text}");
    let (err, text) = mcp
        .call("fetch", fetch_args(&format!("http://rebind.test:{p}/two")))
        .await;
    assert!(!err && text.contains("hello from /two"), "{text}");

    let (err, text) = mcp
        .call(
            "fetch",
            fetch_args(&format!("http://allowed.test:{p}/redirect-metadata")),
        )
        .await;
    assert!(
        err,
        "the redirect to the metadata address was followed: {text}"
    );
    mcp.close().await;

    let seen = server.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|l| l.contains("/two")), "{seen:?}");
    let records = w.egress_records();
    let denied: Vec<_> = records.iter().filter(|r| r.0 == "deny").collect();
    assert_eq!(denied.len(), 2, "{records:?}");
    for r in denied {
        assert!(
            r.1.contains(&"destinations.blocked.cloud-metadata".to_string()),
            "{r:?}"
        );
    }
    assert_eq!(resolver.lookups("rebind.test"), 1);
    for r in crate::support::read_records(&w.audit_path()) {
        if r["decision"] == "allow" {
            assert_eq!(
                r["destinations"][0]["addresses"],
                json!(["127.0.0.1"]),
                "{r}"
            );
        }
    }
}

/// The server told to ignore the proxy (`--proxy-url` straight at the host's test
/// server on 127.0.0.1, or at the metadata address) has no way out: the raw TCP connect
/// fails inside the network namespace, and DNS does not exist there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_server_that_ignores_the_proxy_reaches_nothing() {
    let Some(peers) = peers() else { return };
    let server = TestServer::start();
    let p = server.port;
    let w = World::new(loopback_policy(), Fixed::default());
    let direct = format!("http://127.0.0.1:{p}");
    let mut mcp = Mcp::start(
        &fetch_command(&peers, &["--proxy-url", &direct]),
        &Profile::default(),
        w.egress(),
    )
    .await;
    let (err, text) = mcp
        .call("fetch", fetch_args(&format!("http://127.0.0.1:{p}/direct")))
        .await;
    assert!(err, "a direct connection left the sandbox: {text}");
    mcp.close().await;

    let mut mcp = Mcp::start(
        &fetch_command(&peers, &["--proxy-url", "http://169.254.169.254:80"]),
        &Profile::default(),
        w.egress(),
    )
    .await;
    let (err, text) = mcp.call("fetch", fetch_args("http://example.com/")).await;
    assert!(err, "{text}");
    mcp.close().await;
    assert!(server.seen.lock().unwrap().is_empty());
    assert!(
        w.egress_records().is_empty(),
        "the proxy was used after all"
    );
}
