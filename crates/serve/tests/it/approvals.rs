//! The approvers' JSON API and the webhook on new pending approvals, end to end over
//! real sockets: a held `tools/call` through `serve` (a spy upstream on 127.0.0.1:0),
//! released or refused through `/v1/approvals`, with agent credentials (API key by
//! both headers, a JWT from a local JWKS server) refused on every approval endpoint, and
//! a local webhook receiver that checks the HMAC signature itself (with `ring`, not the
//! gateway's code).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use conductor_audit::ApprovalStore as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::auth::{
    AUD, Answer, Gw, bearer, claims, es256, gateway_with, initialize, jwks_server, mint, send,
    session_call_at, spy_server,
};

/// `up.noop` needs approval; the rule's `expires` (2m) overrides `sessions.approval_ttl`.
const POLICY: &str = "version: 1\nagents:\n  bot: {roles: [r]}\nroles:\n  r:\n    approve:\n      - tools: [\"up.noop\"]\n        expires: 2m\ntools:\n  up.noop: {action: read, destinations: []}\nsessions:\n  approval_ttl: 10m\n";

const ALICE_KEY: &str = "cnd_approver_alice-0123456789abcdef0123456789abcdef";
const HOOK_SECRET: &str = "webhook-secret-0123456789abcdef";

fn sha(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let c = conductor_serve::upstream_tls::client_builder()
        .no_proxy()
        .build()
        .unwrap();
    let mut rb = c.get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

fn alice() -> (&'static str, String) {
    ("authorization", bearer(ALICE_KEY))
}

/// Wait until the gateway lists one pending approval; its JSON.
async fn pending(gw: &Gw) -> Value {
    let (k, v) = alice();
    for _ in 0..500 {
        let a = get(&gw.url("/v1/approvals"), &[(k, &v)]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let list: Value = serde_json::from_str(&a.body).unwrap();
        if let Some(first) = list["approvals"].as_array().and_then(|l| l.first()) {
            return first.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no call was held");
}

fn yaml(up: std::net::SocketAddr, agent_hash: &str, extra: &str) -> String {
    format!(
        "version: 1\nservers:\n  up:\n    url: \"http://{up}/mcp\"\n\
         auth:\n  api_keys:\n    - {{agent: bot, sha256: \"{agent_hash}\"}}\n\
         approvers:\n  - {{name: alice, sha256: \"{}\"}}\n{extra}",
        sha(ALICE_KEY)
    )
}

/// A `tools/call` of `bot` (key `key`) on its own task: it is held until decided.
fn held_call(gw: &Gw, key: &str) -> tokio::task::JoinHandle<Answer> {
    let agent = bearer(key);
    let addr = gw.addr;
    tokio::spawn(async move { session_call_at(addr, &[("authorization", &agent)]).await })
}

/// POST `body` to `path` as alice.
async fn as_alice(gw: &Gw, path: &str, body: &Value) -> Answer {
    let (k, v) = alice();
    send(&gw.url(path), &[(k, &v)], body).await
}

/// The held call's answer, once decided.
async fn answer(call: tokio::task::JoinHandle<Answer>) -> Answer {
    let a = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    a
}

fn tools_calls(seen: &crate::auth::Seen) -> usize {
    // The spy records headers only; a tools/call is the request after initialize and
    // the initialized notification, so count requests instead.
    seen.lock().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_approve_releases_the_held_call_and_the_grant_record_names_the_approver() {
    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let (seen, up) = spy_server().await;
    let gw = gateway_with(&yaml(up, &hash, ""), POLICY, true, &[]).await;
    let call = held_call(&gw, &key);
    let a = pending(&gw).await;
    assert_eq!(a["agent"], "bot");
    assert_eq!(a["tool"], "up.noop");
    assert_eq!(a["status"], "pending");
    let id = a["id"].as_str().unwrap().to_string();
    let before = tools_calls(&seen);

    // The rule's `expires: 2m` wins over `sessions.approval_ttl: 10m`.
    let store = conductor_audit::SqliteApprovals::open(&gw.dir.path().join("audit.db")).unwrap();
    let stored = store.show(&id).unwrap();
    assert_eq!(stored.expires - stored.created, 120_000_000);

    let (k, v) = alice();
    let shown = get(&gw.url(&format!("/v1/approvals/{id}")), &[(k, &v)]).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(
        serde_json::from_str::<Value>(&shown.body).unwrap()["id"],
        id.as_str()
    );
    assert!(
        !call.is_finished(),
        "the held call was answered before anyone decided"
    );

    let r = as_alice(
        &gw,
        &format!("/v1/approvals/{id}/approve"),
        &json!({"scope": "call"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(after["status"], "approved");
    assert_eq!(after["decided_by"], "alice");

    let answer = answer(call).await;
    assert!(answer.body.contains("\"ok\""), "{}", answer.body);
    assert!(
        tools_calls(&seen) > before,
        "the released call never reached upstream"
    );

    // Approving twice: 409; an unknown id: 404.
    let again = as_alice(&gw, &format!("/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!(again.status, 409, "{}", again.body);
    let unknown = get(
        &gw.url("/v1/approvals/00000000000000000000000000000000"),
        &[(k, &v)],
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    let records = gw.audit();
    let grant = records
        .iter()
        .find(|r| r.event == "approval-grant")
        .expect("no grant record");
    assert_eq!(grant.arguments.as_ref().unwrap()["approver"], "alice");
    assert_eq!(grant.arguments.as_ref().unwrap()["approval"], id.as_str());
    assert!(
        records
            .iter()
            .any(|r| r.decision == "allow" && r.tool == "up.noop")
    );
    let report = conductor_audit::AuditReader::open(&gw.dir.path().join("audit.db"))
        .unwrap()
        .verify(None)
        .unwrap();
    assert!(report.broken.is_none(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_deny_refuses_the_held_call_with_the_approvers_reason() {
    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let (_seen, up) = spy_server().await;
    let gw = gateway_with(&yaml(up, &hash, ""), POLICY, true, &[]).await;
    let call = held_call(&gw, &key);
    let id = pending(&gw).await["id"].as_str().unwrap().to_string();
    let no_reason = as_alice(&gw, &format!("/v1/approvals/{id}/deny"), &json!({})).await;
    assert_eq!(no_reason.status, 400, "{}", no_reason.body);
    let unknown_member = as_alice(
        &gw,
        &format!("/v1/approvals/{id}/deny"),
        &json!({"reason": "no", "approver": "mallory"}),
    )
    .await;
    assert_eq!(unknown_member.status, 400, "{}", unknown_member.body);
    let r = as_alice(
        &gw,
        &format!("/v1/approvals/{id}/deny"),
        &json!({"reason": "not during the freeze"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = answer(call).await;
    assert!(answer.body.contains("\"isError\":true"), "{}", answer.body);
    assert!(answer.body.contains("alice"), "{}", answer.body);
    assert!(
        answer.body.contains("not during the freeze"),
        "{}",
        answer.body
    );
    let deny = gw
        .audit()
        .into_iter()
        .find(|r| r.event == "approval-deny")
        .expect("no denial record");
    assert_eq!(deny.arguments.as_ref().unwrap()["approver"], "alice");
}

/// Every approval endpoint (the JSON API's and the console's at /console), with the
/// credentials an agent has (its API key by both headers, a valid JWT), aimed at the
/// agent's own held call: refused (401 or 403), and nothing decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_credentials_get_401_or_403_on_every_approval_endpoint() {
    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let k = es256("k1");
    let (_jwks, jwks_addr) = jwks_server(&[&k]).await;
    let token = mint(&k, &claims(AUD));
    let (_seen, up) = spy_server().await;
    let jwt = format!(
        "  jwt:\n    issuer: \"{}\"\n    audience: \"{AUD}\"\n    jwks: \"http://{jwks_addr}/jwks.json\"\n",
        crate::auth::ISS
    );
    // The jwt method joins `auth:`, after the api keys.
    let text = yaml(up, &hash, "").replacen(
        &format!("    - {{agent: bot, sha256: \"{hash}\"}}\n"),
        &format!("    - {{agent: bot, sha256: \"{hash}\"}}\n{jwt}"),
        1,
    );
    let gw = gateway_with(&text, POLICY, true, &[]).await;
    // The agent's credentials are good credentials (for MCP).
    for cred in [bearer(&token), bearer(&key)] {
        let ok = send(
            &gw.url("/mcp/up"),
            &[("authorization", &cred)],
            &initialize(),
        )
        .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
    }

    let agent_bearer = bearer(&key);
    let jwt_bearer = bearer(&token);
    let alice = bearer(ALICE_KEY);
    // The agent's own call, held: its real id is what the agent would like to approve.
    let call = held_call(&gw, &key);
    let held = pending(&gw).await["id"].as_str().unwrap().to_string();
    let id = held.as_str();
    let endpoints: Vec<(&str, String)> = vec![
        ("GET", "/v1/approvals".into()),
        ("GET", format!("/v1/approvals/{id}")),
        ("POST", format!("/v1/approvals/{id}/approve")),
        ("POST", format!("/v1/approvals/{id}/deny")),
        ("GET", "/v1/grants".into()),
        ("POST", format!("/v1/grants/{id}/revoke")),
    ];
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![], 401),
        (vec![("authorization", agent_bearer.as_str())], 401),
        (vec![("x-api-key", key.as_str())], 403),
        (vec![("authorization", jwt_bearer.as_str())], 401),
        (vec![("authorization", "Basic YWxpY2U6eA==")], 401),
        // An approver's key does not make an agent's header acceptable.
        (
            vec![
                ("authorization", alice.as_str()),
                ("x-api-key", key.as_str()),
            ],
            403,
        ),
    ];
    for (method, path) in &endpoints {
        for (headers, want) in &cases {
            let a = if *method == "GET" {
                get(&gw.url(path), headers).await
            } else {
                send(&gw.url(path), headers, &json!({"reason": "x"})).await
            };
            assert_eq!(
                a.status, *want,
                "{method} {path} with {headers:?}: {}",
                a.body
            );
            assert!(!a.body.contains(&key) && !a.body.contains(&token));
            if *want == 401 {
                assert!(
                    a.headers.contains_key("www-authenticate"),
                    "{method} {path}"
                );
            }
        }
    }
    // The console: any agent credential is refused outright (403), even beside a valid
    // approver key, whatever the route (pages, forms, the live feed).
    let form = json!({"csrf": "0".repeat(64), "scope": "call", "reason": "x"});
    let console: Vec<(&str, String)> = vec![
        ("GET", "/console/".into()),
        ("GET", "/console/approvals".into()),
        ("POST", format!("/console/approvals/{id}/approve")),
        ("POST", format!("/console/approvals/{id}/deny")),
        ("POST", format!("/console/grants/{id}/revoke")),
        ("GET", "/console/api/live".into()),
        ("GET", "/console/audit".into()),
    ];
    let agent_creds: Vec<Vec<(&str, &str)>> = vec![
        vec![("authorization", agent_bearer.as_str())],
        vec![("x-api-key", key.as_str())],
        vec![("authorization", jwt_bearer.as_str())],
        vec![
            ("authorization", alice.as_str()),
            ("x-api-key", key.as_str()),
        ],
    ];
    for (method, path) in &console {
        for headers in &agent_creds {
            let a = if *method == "GET" {
                get(&gw.url(path), headers).await
            } else {
                send(&gw.url(path), headers, &form).await
            };
            assert_eq!(
                a.status, 403,
                "{method} {path} with {headers:?}: {}",
                a.body
            );
            assert!(!a.body.contains(&key) && !a.body.contains(&token));
        }
    }
    assert!(!call.is_finished(), "an agent credential released its call");
    let store = conductor_audit::SqliteApprovals::open(&gw.dir.path().join("audit.db")).unwrap();
    assert_eq!(
        store.show(id).unwrap().status,
        conductor_audit::Status::Pending
    );
    let records = gw.audit();
    assert!(
        !records.iter().any(|r| r.event.starts_with("approval-")),
        "an agent credential decided something"
    );
}

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Delivery>>,
    /// Answer 500 to this many deliveries first.
    fail_first: Mutex<usize>,
}

async fn hook(State(r): State<Arc<Receiver>>, h: HeaderMap, body: Bytes) -> StatusCode {
    let head = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    r.got.lock().unwrap().push(Delivery {
        id: head("conductor-webhook-id"),
        timestamp: head("conductor-webhook-timestamp"),
        signature: head("conductor-webhook-signature"),
        body: body.to_vec(),
    });
    let mut f = r.fail_first.lock().unwrap();
    if *f > 0 {
        *f -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

/// The receiver's check, written from the documented recipe with `ring`.
fn receiver_accepts(secret: &str, d: &Delivery) -> bool {
    let Some(given) = d
        .signature
        .strip_prefix("v1=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut msg = d.timestamp.as_bytes().to_vec();
    msg.push(b'.');
    msg.extend_from_slice(&d.body);
    ring::hmac::verify(&key, &msg, &given).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_announces_each_pending_approval_signed_and_retries_without_holding_the_call() {
    let recv = Arc::new(Receiver {
        fail_first: Mutex::new(1),
        ..Receiver::default()
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = l.local_addr().unwrap();
    let app = Router::new()
        .route("/hooks/approvals", post(hook))
        .with_state(Arc::clone(&recv));
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let (_seen, up) = spy_server().await;
    let extra = format!(
        "approvals:\n  webhook:\n    url: \"http://{hook_addr}/hooks/approvals\"\n    secret: \"${{file:hook.secret}}\"\n    retries: 1\n    timeout_seconds: 2\n"
    );
    let text = yaml(up, &hash, &extra);
    // The secret file sits next to the gateway file (written before it is loaded).
    let gw = gateway_with(&text, POLICY, true, &[("hook.secret", HOOK_SECRET)]).await;
    let call = held_call(&gw, &key);
    let pending = pending(&gw).await;
    let id = pending["id"].as_str().unwrap().to_string();

    // First attempt answered 500, the retry 204: two deliveries of the same approval.
    let mut got = Vec::new();
    for _ in 0..300 {
        got = recv.got.lock().unwrap().clone();
        if got.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got.len(), 2, "{got:?}");
    for d in &got {
        assert_eq!(d.id, id);
        assert!(receiver_accepts(HOOK_SECRET, d), "signature refused: {d:?}");
        let body: Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(body["type"], "approval.pending");
        assert_eq!(body["approval"]["id"], id.as_str());
        assert_eq!(body["approval"]["tool"], "up.noop");
        assert!(!String::from_utf8_lossy(&d.body).contains(HOOK_SECRET));
    }
    // Tampering: another body, another timestamp, another secret — all refused.
    let mut t = got[0].clone();
    t.body = String::from_utf8(t.body)
        .unwrap()
        .replace("up.noop", "up.nop0")
        .into_bytes();
    assert!(
        !receiver_accepts(HOOK_SECRET, &t),
        "a tampered body was accepted"
    );
    let mut t = got[0].clone();
    t.timestamp = (t.timestamp.parse::<u64>().unwrap() + 1).to_string();
    assert!(
        !receiver_accepts(HOOK_SECRET, &t),
        "a tampered timestamp was accepted"
    );
    assert!(!receiver_accepts("another-secret-0123456789", &got[0]));
    assert!(conductor_serve::webhook::verify(
        HOOK_SECRET.as_bytes(),
        &got[0].timestamp,
        &got[0].signature,
        &got[0].body,
        got[0].timestamp.parse().unwrap(),
        Duration::from_secs(300)
    ));

    // The call waited for a person, not for the webhook: still held; approve it.
    assert!(!call.is_finished());
    let r = as_alice(
        &gw,
        &format!("/v1/approvals/{id}/approve"),
        &json!({"scope": "session", "for": "1h"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = answer(call).await;
    assert!(answer.body.contains("\"ok\""), "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_failures_are_bounded_and_do_not_block_calls() {
    // A receiver that never answers 2xx: 1 + retries attempts, then nothing more; the
    // held call is decided normally meanwhile.
    let recv = Arc::new(Receiver {
        fail_first: Mutex::new(usize::MAX),
        ..Receiver::default()
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = l.local_addr().unwrap();
    let app = Router::new()
        .route("/h", post(hook))
        .with_state(Arc::clone(&recv));
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let (_seen, up) = spy_server().await;
    let extra = format!(
        "approvals:\n  webhook: {{url: \"http://{hook_addr}/h\", secret: \"${{file:s}}\", retries: 1}}\n"
    );
    let gw = gateway_with(
        &yaml(up, &hash, &extra),
        POLICY,
        true,
        &[("s", HOOK_SECRET)],
    )
    .await;
    let call = held_call(&gw, &key);
    let id = pending(&gw).await["id"].as_str().unwrap().to_string();
    let r = as_alice(&gw, &format!("/v1/approvals/{id}/approve"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    answer(call).await;
    // The backoff before the retry is 1 s; after 3 s no third attempt comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(recv.got.lock().unwrap().len(), 2);
}

/// `app` served over TLS on 127.0.0.1:0 with a certificate for `localhost`/`127.0.0.1`
/// from `ca` (rustls, as a receiver behind a public or private CA would be).
async fn serve_tls(app: Router, ca: &crate::tls::Ca) -> std::net::SocketAddr {
    use rustls_pki_types::pem::PemObject as _;
    let (cert, key) = crate::tls::cert_for(
        ca,
        &["localhost", "127.0.0.1"],
        "receiver",
        9,
        true,
        (-1, 30),
    );
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A handshake the client refuses ends here: nothing is served.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_is_verified_like_an_upstream() {
    // The receiver's certificate is from a private CA: with `tls.ca` naming it the
    // delivery arrives, signed; with the system's roots only (no `tls`) the handshake is
    // refused and nothing reaches the receiver; the call is decided either way.
    let ca = crate::tls::ca("receiver CA");
    for (trusted, want) in [(true, 1usize), (false, 0)] {
        let recv = Arc::new(Receiver::default());
        let app = Router::new()
            .route("/h", post(hook))
            .with_state(Arc::clone(&recv));
        let hook_addr = serve_tls(app, &ca).await;
        let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
        let (_seen, up) = spy_server().await;
        let tls = if trusted { ", tls: {ca: ca.pem}" } else { "" };
        let extra = format!(
            "approvals:\n  webhook: {{url: \"https://127.0.0.1:{}/h\", secret: \"${{file:s}}\", retries: 0{tls}}}\n",
            hook_addr.port()
        );
        let gw = gateway_with(
            &yaml(up, &hash, &extra),
            POLICY,
            true,
            &[("s", HOOK_SECRET), ("ca.pem", &ca.cert.pem())],
        )
        .await;
        let call = held_call(&gw, &key);
        let id = pending(&gw).await["id"].as_str().unwrap().to_string();
        for _ in 0..150 {
            if recv.got.lock().unwrap().len() >= want.max(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = recv.got.lock().unwrap().clone();
        assert_eq!(got.len(), want, "trusted={trusted}: {got:?}");
        if let Some(d) = got.first() {
            assert_eq!(d.id, id);
            assert!(receiver_accepts(HOOK_SECRET, d), "signature refused: {d:?}");
        }
        let r = as_alice(&gw, &format!("/v1/approvals/{id}/approve"), &json!({})).await;
        assert_eq!(r.status, 200, "{}", r.body);
        answer(call).await;
    }
}

#[test]
fn approvers_and_the_webhook_are_read_strictly() {
    struct S;
    impl conductor_serve::config::Secrets for S {
        fn env(&self, n: &str) -> Option<String> {
            (n == "HOOK").then(|| HOOK_SECRET.to_string())
        }
        fn file(&self, _: &std::path::Path) -> std::io::Result<String> {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }
    let base = "version: 1\nservers:\n  up: {url: \"http://127.0.0.1:1/mcp\"}\nauth: {none: {agent: bot}}\n";
    let load = |extra: &str| {
        conductor_serve::load_str(&format!("{base}{extra}"), "gateway.yaml", &S)
            .map_err(|e| e.render(false))
    };
    let h = sha(ALICE_KEY);
    let ok = load(&format!(
        "approvers:\n  - {{name: alice, sha256: \"{h}\"}}\napprovals:\n  webhook: {{url: \"http://127.0.0.1:9/h\", secret: \"${{env:HOOK}}\"}}\n"
    ))
    .unwrap();
    assert_eq!(ok.approvers.len(), 1);
    assert_eq!(ok.approvers.by_key(ALICE_KEY).unwrap().name, "alice");
    let w = ok.approvals.webhook.unwrap();
    assert_eq!((w.retries, w.timeout), (3, Duration::from_secs(5)));
    // An https receiver (the system's roots) loads.
    let https = load(
        "approvals:\n  webhook: {url: \"https://hooks.example.com/h\", secret: \"${env:HOOK}\"}\n",
    )
    .unwrap();
    let w = https.approvals.webhook.unwrap();
    assert_eq!((w.url.scheme(), w.tls.is_none()), ("https", true));
    for (extra, needle) in [
        (format!("approvers:\n  - {{name: alice, sha256: \"{h}\", role: admin}}\n"), "role"),
        ("approvers:\n  - {name: alice, sha256: \"abc\"}\n".to_string(), "64 hex"),
        (format!("approvers:\n  - {{name: \"al ice\", sha256: \"{h}\"}}\n"), "approver name"),
        (format!("approvers:\n  - {{name: a, sha256: \"{h}\"}}\n  - {{name: a, sha256: \"{h}\"}}\n"), "twice"),
        ("approvals:\n  webhook: {url: \"http://127.0.0.1:9/h\", secret: \"literal-secret-0123456789\"}\n".to_string(), "reference"),
        ("approvals:\n  webhook: {url: \"http://127.0.0.1:9/h\", secret: \"${env:HOOK}\", tls: {ca: ca.pem}}\n".to_string(), "`tls` is for https receivers"),
        ("approvals:\n  webhook: {url: \"https://hooks.example.com/h\", secret: \"${env:HOOK}\", tls: {ca: absent.pem}}\n".to_string(), "absent.pem"),
        ("approvals:\n  webhook: {url: \"http://127.0.0.1:9/h\", secret: \"${env:NOPE}\"}\n".to_string(), "NOPE"),
        ("approvals:\n  webhook: {url: \"http://127.0.0.1:9/h\", secret: \"${env:HOOK}\", retries: 99}\n".to_string(), "retries"),
        ("approvals:\n  webhook: {url: \"http://127.0.0.1:9/h\", secret: \"${env:HOOK}\", when: always}\n".to_string(), "when"),
        ("approvals:\n  hook: {}\n".to_string(), "hook"),
    ] {
        let e = load(&extra).unwrap_err();
        assert!(e.contains(needle), "`{needle}` not in {e}");
        assert!(!e.contains(HOOK_SECRET), "{e}");
        assert!(e.contains("gateway.yaml:"), "no place in {e}");
    }
}
