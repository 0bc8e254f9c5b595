//! The egress proxy, driven by real clients (curl, openssl) inside the sandbox against
//! a test HTTP server on the host's 127.0.0.1 (reached through names the test's fixed
//! resolver maps; loopback is permitted for these tests' policies only).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use conductor_sandbox::Profile;

use crate::support::{Fixed, World, policy, run, sh};

/// A tiny HTTP/1.1 server on 127.0.0.1 port 0: `/redirect-metadata` answers a 302 to
/// the metadata service, `/big` 1 MiB, `/pattern` [`pattern`] (3 MiB that do not
/// repeat in step with any buffer), anything else `hello from <path>`. Records the
/// request lines and bodies it received.
pub struct TestServer {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve_one(stream, &s));
            }
        });
        TestServer { port, seen }
    }
}

fn serve_one(stream: std::net::TcpStream, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    seen.lock().unwrap().push(format!(
        "{}{}",
        line.trim_end(),
        String::from_utf8_lossy(&body)
    ));
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    let mut w = stream;
    if path == "/pattern" {
        let body = pattern();
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = w.write_all(&body);
        return;
    }
    let response = if path == "/redirect-metadata" {
        "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n".to_string()
    } else if path == "/big" {
        let body = "x".repeat(1 << 20);
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    } else {
        let body = format!("hello from {path}");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let _ = w.write_all(response.as_bytes());
}

/// 3 MiB + 17 bytes whose value depends on the position (a relay that drops, repeats or
/// reorders a chunk changes their digest).
pub fn pattern() -> Vec<u8> {
    (0..(3usize << 20) + 17)
        .map(|i| (i ^ (i >> 8) ^ (i >> 16)) as u8)
        .collect()
}

/// The SHA-256 of `bytes` as `sha256sum` prints it (the same tool the sandboxed side
/// uses).
fn sha256sum(bytes: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

pub fn loopback_policy() -> conductor_policy::Policy {
    policy(
        "  allow: [\"*\"]\n  permit: [loopback]\ndata:\n  labels:\n    credentials: {level: secret, detect: [secrets]}\n  default_egress: public",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_reaches_an_allowed_name_through_the_proxy() {
    let server = TestServer::start();
    let w = World::new(
        loopback_policy(),
        Fixed::default().with("allowed.test", &[&["127.0.0.1"]]),
    );
    let url = format!("http://allowed.test:{}/page", server.port);
    let (out, code) = run(
        &sh(&format!("curl -sS {url}")),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "hello from /page");
    let records = w.egress_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0, "allow");
    assert_eq!(
        records[0].3,
        format!("http://allowed.test:{}/", server.port)
    );
}

/// The proxy may open the upstream connection while it commits the record, but the
/// request goes out only once the record is committed: a connection that cannot be
/// recorded is refused, and the destination receives no byte of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_cannot_be_recorded_sends_the_destination_nothing() {
    let server = TestServer::start();
    let w = World::new(
        loopback_policy(),
        Fixed::default().with("allowed.test", &[&["127.0.0.1"]]),
    );
    let egress = w.egress();
    // The store's file is replaced after it was opened: no commit can succeed.
    let path = w.audit_path();
    std::fs::rename(&path, path.with_extension("moved")).unwrap();
    std::fs::write(&path, b"").unwrap();
    let url = format!("http://allowed.test:{}/page", server.port);
    let (out, code) = run(
        &sh(&format!("curl -sS -o /dev/null -w '%{{http_code}}' {url}")),
        &Profile::default(),
        egress,
        b"",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "403", "refused: the decision could not be recorded");
    // The server thread records every request line it reads; give a late one time.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        server.seen.lock().unwrap().is_empty(),
        "the destination received a request: {:?}",
        server.seen.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_address_is_refused_before_any_connection() {
    let w = World::new(loopback_policy(), Fixed::default());
    let (out, _) = run(
        &sh("curl -sS -o /dev/null -w '%{http_code}' http://169.254.169.254/latest/meta-data/; echo; curl -sS -o /dev/null -w '%{http_code}' http://metadata.google.internal/"),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    assert_eq!(out.lines().collect::<Vec<_>>(), ["403", "403"], "{out}");
    let records = w.egress_records();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r.0, "deny");
        assert!(
            r.1.contains(&"destinations.blocked.cloud-metadata".to_string()),
            "{r:?}"
        );
    }
    // The metadata name is blocked by name: it never reached the resolver.
    assert_eq!(w.resolver.lookups("metadata.google.internal"), 0);
}

/// DNS rebinding: the name first resolves to the test server, then to the metadata
/// address. A connection goes to the addresses the gate checked — never to a name — and
/// the gate's resolver keeps its checked answer for the name (the same answer the call's
/// own decision saw), so a second connection cannot be moved to the metadata service
/// either: both are served by the checked address, and the rebinding answer is never
/// connected to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_cannot_move_a_checked_connection() {
    let server = TestServer::start();
    let resolver = Fixed::default().with("rebind.test", &[&["127.0.0.1"], &["169.254.169.254"]]);
    let w = World::new(loopback_policy(), resolver.clone());
    let url = format!("http://rebind.test:{}/first", server.port);
    let (out, _) = run(
        &sh(&format!("curl -sS {url}; echo; curl -sS {url}")),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["hello from /first", "hello from /first"],
        "{out}"
    );
    // One lookup: the check and both connects share its answer.
    assert_eq!(resolver.lookups("rebind.test"), 1);
    let records = crate::support::read_records(&w.audit_path());
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!(r["decision"], "allow", "{r}");
        assert_eq!(
            r["destinations"][0]["addresses"],
            serde_json::json!(["127.0.0.1"]),
            "{r}"
        );
    }
    assert_eq!(server.seen.lock().unwrap().len(), 2);
}

/// The rebinding answer itself, once it is the answer the gate gets: refused before any
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_the_metadata_address_is_refused() {
    let resolver = Fixed::default().with("rebound.test", &[&["10.0.0.1", "169.254.169.254"]]);
    let w = World::new(loopback_policy(), resolver.clone());
    let (out, _) = run(
        &sh("curl -sS -o /dev/null -w '%{http_code}' http://rebound.test:8080/"),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    assert_eq!(out, "403", "{out}");
    let records = w.egress_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0, "deny");
    assert!(
        records[0]
            .1
            .contains(&"destinations.blocked.cloud-metadata".to_string()),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_the_metadata_address_is_not_followed() {
    let server = TestServer::start();
    let w = World::new(
        loopback_policy(),
        Fixed::default().with("allowed.test", &[&["127.0.0.1"]]),
    );
    let url = format!("http://allowed.test:{}/redirect-metadata", server.port);
    let (out, _) = run(
        &sh(&format!(
            "curl -sS -L -o /dev/null -w '%{{http_code}} %{{num_redirects}}' {url}"
        )),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    assert_eq!(out, "403 0", "the client saw the redirect: {out}");
    let records = w.egress_records();
    let redirect = records
        .iter()
        .find(|r| r.2 == "redirect")
        .expect("a redirect record");
    assert_eq!(redirect.0, "deny");
    assert!(
        redirect
            .1
            .contains(&"destinations.blocked.cloud-metadata".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_a_plain_http_body_is_refused_by_the_egress_rules() {
    let server = TestServer::start();
    let w = World::new(
        loopback_policy(),
        Fixed::default().with("allowed.test", &[&["127.0.0.1"]]),
    );
    let secret = ["AKIA", "2OGYBAH6TQKRXEVN"].concat();
    let url = format!("http://allowed.test:{}/upload", server.port);
    let (out, _) = run(
        &sh(&format!("curl -sS -o /dev/null -w '%{{http_code}}' --data 'key={secret}' {url}; echo; curl -sS --data 'nothing secret' {url}")),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["403", "hello from /upload"],
        "{out}"
    );
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].contains(&secret));
    let records = w.egress_records();
    assert_eq!(records[0].0, "deny");
    assert!(
        records[0].1.contains(&"data.default_egress".to_string()),
        "{records:?}"
    );
}

/// CONNECT: the ClientHello's server name must be the CONNECT host (domain fronting);
/// a CONNECT tunnel carrying plain text instead of TLS is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_checks_the_tls_server_name() {
    let server = TestServer::start();
    let w = World::new(
        loopback_policy(),
        Fixed::default().with("allowed.test", &[&["127.0.0.1"]]),
    );
    let p = server.port;
    let script = format!(
        "PROXY=${{HTTPS_PROXY#http://}}; \
         echo | timeout 5 openssl s_client -proxy $PROXY -connect allowed.test:{p} -servername fronted.test >/dev/null 2>&1; \
         echo | timeout 5 openssl s_client -proxy $PROXY -connect allowed.test:{p} -servername allowed.test >/dev/null 2>&1; \
         curl -sS -p -o /dev/null http://allowed.test:{p}/tunnel 2>/dev/null; true"
    );
    let (out, code) = run(&sh(&script), &Profile::default(), w.egress(), b"").await;
    assert_eq!(code, 0, "{out}");
    let records = w.egress_records();
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(records[0].0, "deny");
    assert_eq!(records[0].1, ["egress.sni-mismatch"]);
    // The matching name passes (the test server does not speak TLS: the handshake then
    // fails between the client and the server, which is not the proxy's business).
    assert_eq!(records[1].0, "allow");
    assert_eq!(records[2].0, "deny");
    assert_eq!(records[2].1, ["egress.tls"]);
    // Neither refused tunnel reached the server.
    assert_eq!(
        server
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("/tunnel"))
            .count(),
        0
    );
}

/// "Forward what was decided": a `Host` header naming another host than the checked
/// target is refused (the destination server would route by the header), and the
/// refusal is recorded like any other connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_header_naming_another_host_is_refused_and_recorded() {
    let server = TestServer::start();
    let w = World::new(
        loopback_policy(),
        Fixed::default().with("allowed.test", &[&["127.0.0.1"]]),
    );
    let url = format!("http://allowed.test:{}/x", server.port);
    let (out, _) = run(
        &sh(&format!(
            "curl -sS -o /dev/null -w '%{{http_code}}' -H 'Host: 169.254.169.254' {url}"
        )),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    assert_eq!(out, "400", "{out}");
    assert!(server.seen.lock().unwrap().is_empty());
    let records = w.egress_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0, "deny");
    assert_eq!(records[0].1, ["egress.host-mismatch"]);
    assert_eq!(
        records[0].3,
        format!("http://allowed.test:{}/", server.port)
    );
}

/// The proxy decides through the gate's service, so the agent's session labels apply
/// to connections as they do to calls (flow): once the agent has received a credential,
/// nothing it runs may reach a `public`-max destination, even with an empty request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tainted_agent_reaches_no_public_destination_through_the_proxy() {
    let server = TestServer::start();
    let w = World::new(
        loopback_policy(),
        Fixed::default().with("allowed.test", &[&["127.0.0.1"]]),
    );
    let egress = w.egress();
    let secret = ["AKIA", "2OGYBAH6TQKRXEVN"].concat();
    let raised = egress
        .service
        .label(&egress.subject, &serde_json::json!({"text": secret}))
        .unwrap();
    assert_eq!(raised, ["credentials"]);
    let url = format!("http://allowed.test:{}/page", server.port);
    let (out, _) = run(
        &sh(&format!("curl -sS -o /dev/null -w '%{{http_code}}' {url}")),
        &Profile::default(),
        egress,
        b"",
    )
    .await;
    assert_eq!(out, "403", "{out}");
    assert!(server.seen.lock().unwrap().is_empty());
    let records = crate::support::read_records(&w.audit_path());
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["decision"], "deny");
    assert_eq!(records[0]["reasons"][0]["check"], "flow", "{}", records[0]);
    assert_eq!(records[0]["tool"], "test.egress");
}

/// The spliced relay of a plain-HTTP answer: a 3 MiB body crosses the proxy whole and in
/// order (the body after the checked head is moved by splice(2), not copied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_plain_http_body_arrives_whole_through_the_spliced_relay() {
    let server = TestServer::start();
    let w = World::new(
        loopback_policy(),
        Fixed::default().with("allowed.test", &[&["127.0.0.1"]]),
    );
    let url = format!("http://allowed.test:{}/pattern", server.port);
    let (out, code) = run(
        &sh(&format!("curl -sS {url} | sha256sum")),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.split(' ').next(), Some(sha256sum(&pattern()).as_str()));
    let records = w.egress_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0, "allow");
}

/// The spliced relay of a CONNECT tunnel, both ways: curl inside the sandbox speaks real
/// TLS through the proxy to `openssl s_server` (a self-signed name, `-k`) and downloads
/// a 3 MiB file whole; the handshake's bytes went both ways through the pipes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_download_crosses_the_spliced_tunnel_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=allowed.test", "-days", "1"])
        .args(["-keyout", "k.pem", "-out", "c.pem"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(dir.path().join("pattern"), pattern()).unwrap();
    let mut server = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-cert",
            "c.pem",
            "-key",
            "k.pem",
        ])
        .args(["-WWW", "-naccept", "1"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // `ACCEPT 127.0.0.1:<port>`: the port the server was given (its output is kept
    // open until the end, so the server never writes into a closed pipe).
    let mut said = BufReader::new(server.stdout.take().unwrap());
    let port: u16 = loop {
        let mut line = String::new();
        assert!(
            said.read_line(&mut line).unwrap() > 0,
            "openssl s_server said no port"
        );
        if let Some(at) = line.trim().strip_prefix("ACCEPT ") {
            break at.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    let w = World::new(
        loopback_policy(),
        Fixed::default().with("allowed.test", &[&["127.0.0.1"]]),
    );
    let (out, code) = run(
        &sh(&format!(
            "curl -sSk https://allowed.test:{port}/pattern | sha256sum"
        )),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    let _ = server.kill();
    let _ = server.wait();
    drop(said);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.split(' ').next(), Some(sha256sum(&pattern()).as_str()));
    let records = w.egress_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0, "allow");
}
