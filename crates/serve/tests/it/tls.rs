//! TLS on the listener and client certificates (mTLS), with certificates made here
//! (rcgen): a good certificate names its agent (subject CN); an expired one, one from
//! another CA, a revoked one (CRL) and no certificate at all never reach HTTP.
//!
//! Sources: RFC 8446 §4.4.2 (client certificate), RFC 5280 §4.1.2.5 (validity) and
//! §5 (CRLs); OWASP ASVS V9.2 (mutual TLS between services).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::auth::{gateway, initialize, spy_server};

pub(crate) struct Ca {
    pub(crate) cert: rcgen::Certificate,
    pub(crate) key: KeyPair,
}

pub(crate) fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf certificate and its key (PEM), valid from `from` to `to` days from now.
fn leaf(ca: &Ca, cn: &str, serial: u64, server: bool, from: i64, to: i64) -> (String, String) {
    let sans: &[&str] = if server {
        &["localhost", "127.0.0.1"]
    } else {
        &[]
    };
    cert_for(ca, sans, cn, serial, server, (from, to))
}

/// A certificate for `sans` and `cn` (a server's or a client's), valid from `days.0` to
/// `days.1` days from now, and its key (PEM).
pub(crate) fn cert_for(
    ca: &Ca,
    sans: &[&str],
    cn: &str,
    serial: u64,
    server: bool,
    days: (i64, i64),
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(days.0);
    p.not_after = now + time::Duration::days(days.1);
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn crl(ca: &Ca, revoked: &[u64]) -> String {
    let now = time::OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(7),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: now - time::Duration::hours(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.cert, &ca.key)
    .unwrap()
    .pem()
    .unwrap()
}

/// POST `body` to `path` over TLS with an optional client certificate: the HTTP status
/// and body, or `None` when the server refused the connection (no HTTP answer).
async fn post_tls(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    client: Option<&(String, String)>,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Option<(u16, String)> {
    let text = post_tls_raw(addr, ca_pem, client, path, headers, body).await?;
    let status: u16 = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The raw answer text, or `None` when the server refused the connection.
async fn post_tls_raw(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    client: Option<&(String, String)>,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Option<String> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .ok()?;
    let body = body.to_string();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    tls.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut out),
    )
    .await;
    let text = String::from_utf8_lossy(&out).to_string();
    text.starts_with("HTTP/1.1 ").then_some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_good_expired_wrong_ca_revoked_and_no_certificate() {
    let ca1 = ca("conductor test ca");
    let other = ca("another ca");
    let dir = tempfile::tempdir().unwrap();
    let (srv_cert, srv_key) = leaf(&ca1, "gateway", 1, true, -1, 30);
    let w = |n: &str, s: &str| std::fs::write(dir.path().join(n), s).unwrap();
    w("server.pem", &srv_cert);
    w("server.key", &srv_key);
    w("ca.pem", &ca1.cert.pem());
    w("crl.pem", &crl(&ca1, &[66]));
    let (_seen, up) = spy_server().await;
    let d = dir.path().display();
    let gw = gateway(&format!(
        "version: 1\ntls: {{cert: \"{d}/server.pem\", key: \"{d}/server.key\", client_ca: \"{d}/ca.pem\", crl: [\"{d}/crl.pem\"]}}\n\
         servers:\n  up: {{url: \"http://{up}/mcp\"}}\nauth: {{mtls: {{agent_from: subject.cn}}}}\n"
    ))
    .await;
    let ca_pem = ca1.cert.pem();
    let good = leaf(&ca1, "bot", 10, false, -1, 30);
    let a = post_tls(gw.addr, &ca_pem, Some(&good), "/mcp/up", &[], &initialize()).await;
    let (status, body) = a.expect("the good certificate was refused");
    assert_eq!(status, 200, "{body}");
    // The agent is the certificate's CN, proven by its fingerprint in the audit.
    let unknown = leaf(&ca1, "nobody-the-policy-knows", 11, false, -1, 30);
    let (status, body) = post_tls(gw.addr, &ca_pem, Some(&unknown), "/mcp/up", &[],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let expired = leaf(&ca1, "bot", 12, false, -30, -1);
    assert_eq!(
        post_tls(
            gw.addr,
            &ca_pem,
            Some(&expired),
            "/mcp/up",
            &[],
            &initialize()
        )
        .await,
        None,
        "expired"
    );
    let foreign = leaf(&other, "bot", 13, false, -1, 30);
    assert_eq!(
        post_tls(
            gw.addr,
            &ca_pem,
            Some(&foreign),
            "/mcp/up",
            &[],
            &initialize()
        )
        .await,
        None,
        "wrong ca"
    );
    let revoked = leaf(&ca1, "bot", 66, false, -1, 30);
    assert_eq!(
        post_tls(
            gw.addr,
            &ca_pem,
            Some(&revoked),
            "/mcp/up",
            &[],
            &initialize()
        )
        .await,
        None,
        "revoked"
    );
    assert_eq!(
        post_tls(gw.addr, &ca_pem, None, "/mcp/up", &[], &initialize()).await,
        None,
        "no certificate"
    );
    // A call in the good certificate's session: the record names the agent (the CN)
    // and the certificate's SHA-256 fingerprint.
    let sid = session_id(&body_head(gw.addr, &ca_pem, &good).await);
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "noop", "arguments": {}}});
    let (s, b) = post_tls(
        gw.addr,
        &ca_pem,
        Some(&good),
        "/mcp/up",
        &[
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        &call,
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("\"ok\""), "{b}");
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(good.0.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let fp = hex::encode(ring::digest::digest(&ring::digest::SHA256, der.as_ref()));
    let rec = gw.audit();
    let calls: Vec<_> = rec.iter().filter(|r| r.event == "tools/call").collect();
    assert_eq!(calls.len(), 1, "{rec:?}");
    assert_eq!(calls[0].agent, "bot");
    assert_eq!(calls[0].auth, Some(json!({"method": "mtls", "sha256": fp})));
}

/// The raw answer head of an `initialize` over TLS with `client`.
async fn body_head(addr: std::net::SocketAddr, ca_pem: &str, client: &(String, String)) -> String {
    post_tls_raw(addr, ca_pem, Some(client), "/mcp/up", &[], &initialize())
        .await
        .unwrap()
}

fn session_id(raw: &str) -> String {
    raw.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("mcp-session-id")
                .then(|| v.trim().to_string())
        })
        .expect("no session id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_a_certificate_and_an_api_key_must_name_the_same_agent() {
    let ca1 = ca("conductor test ca");
    let dir = tempfile::tempdir().unwrap();
    let (srv_cert, srv_key) = leaf(&ca1, "gateway", 1, true, -1, 30);
    std::fs::write(dir.path().join("server.pem"), &srv_cert).unwrap();
    std::fs::write(dir.path().join("server.key"), &srv_key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca1.cert.pem()).unwrap();
    let (bot_key, bot_hash) = conductor_serve::auth::keys::generate().unwrap();
    let (other_key, other_hash) = conductor_serve::auth::keys::generate().unwrap();
    let (_seen, up) = spy_server().await;
    let d = dir.path().display();
    let gw = gateway(&format!(
        "version: 1\ntls: {{cert: \"{d}/server.pem\", key: \"{d}/server.key\", client_ca: \"{d}/ca.pem\"}}\n\
         servers:\n  up: {{url: \"http://{up}/mcp\"}}\n\
         auth:\n  mtls: {{agent_from: subject.cn}}\n  api_keys: [{{agent: bot, sha256: \"{bot_hash}\"}}, {{agent: other, sha256: \"{other_hash}\"}}]\n"
    ))
    .await;
    let cert = leaf(&ca1, "bot", 10, false, -1, 30);
    let ca_pem = ca1.cert.pem();
    let (s, b) = post_tls(
        gw.addr,
        &ca_pem,
        Some(&cert),
        "/mcp/up",
        &[("x-api-key", &bot_key)],
        &initialize(),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let (s, b) = post_tls(
        gw.addr,
        &ca_pem,
        Some(&cert),
        "/mcp/up",
        &[("x-api-key", &other_key)],
        &initialize(),
    )
    .await
    .unwrap();
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("different agents"), "{b}");
}
