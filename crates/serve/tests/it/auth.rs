//! Agent authentication on `serve`, end to end over real sockets: a local JWKS server on
//! 127.0.0.1:0 and tokens minted here (ES256, EdDSA, RS256), API keys, protected-resource
//! metadata, a spy upstream that records every header it receives, and TLS with client
//! certificates generated here (rcgen).
//!
//! Refusal cases and their public sources:
//! - `alg: none` and HS256-with-the-public-key (algorithm confusion): Tim McLean, "Critical
//!   vulnerabilities in JSON Web Token libraries" (Auth0 blog, 2015), CVE-2015-9235,
//!   RFC 8725 §2.1–2.2 and §3.1;
//! - other audience: RFC 8707 §2, RFC 8725 §3.9, MCP authorization spec ("token audience
//!   binding"); other issuer: RFC 8725 §3.8; `exp`/`nbf`: RFC 7519 §4.1.4–4.1.5;
//! - unknown `kid` after one refresh and key rotation: RFC 7517 §4.5, OpenID Connect Core
//!   §10.1.1 (rotation of asymmetric signing keys);
//! - duplicate member names: RFC 7515 §4 / RFC 8725 §3.3 parser differentials;
//! - token passthrough: MCP security best practices, "Token Passthrough" (forbidden).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair as _;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------------------

fn b64u(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A signing key and its public JWK.
pub(crate) struct SigningKey {
    alg: Algorithm,
    kid: String,
    enc: EncodingKey,
    jwk: Value,
    /// The public key bytes (what an attacker would use as an HMAC secret).
    public: Vec<u8>,
}

pub(crate) fn es256(kid: &str) -> SigningKey {
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    let (x, y) = (&public[1..33], &public[33..65]);
    SigningKey {
        alg: Algorithm::ES256,
        kid: kid.into(),
        enc: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64u(x), "y": b64u(y), "kid": kid, "use": "sig", "alg": "ES256"}),
        public,
    }
}

fn ed25519(kid: &str) -> SigningKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    SigningKey {
        alg: Algorithm::EdDSA,
        kid: kid.into(),
        enc: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64u(&public), "kid": kid}),
        public,
    }
}

/// A fixed 2048-bit RSA test key (ring cannot generate RSA keys); `.n` holds its modulus.
fn rs256(kid: &str) -> SigningKey {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let pem = std::fs::read(dir.join("rsa-test-key.pem")).unwrap();
    let n = std::fs::read_to_string(dir.join("rsa-test-key.n")).unwrap();
    SigningKey {
        alg: Algorithm::RS256,
        kid: kid.into(),
        enc: EncodingKey::from_rsa_pem(&pem).unwrap(),
        jwk: json!({"kty": "RSA", "n": n.trim(), "e": "AQAB", "kid": kid, "alg": "RS256"}),
        public: n.trim().as_bytes().to_vec(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) const ISS: &str = "https://idp.test";

pub(crate) fn claims(aud: &str) -> Value {
    json!({"iss": ISS, "aud": aud, "sub": "bot", "exp": now() + 600, "iat": now(), "jti": "jti-1", "scope": "mcp"})
}

pub(crate) fn mint(k: &SigningKey, claims: &Value) -> String {
    let mut h = Header::new(k.alg);
    h.kid = Some(k.kid.clone());
    jsonwebtoken::encode(&h, claims, &k.enc).unwrap()
}

/// A token with a hand-made header and signature (for what no library would mint).
fn forge(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let h = b64u(&serde_json::to_vec(header).unwrap());
    let p = b64u(&serde_json::to_vec(claims).unwrap());
    let input = format!("{h}.{p}");
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64u(&sig))
}

fn hs256(secret: &[u8], data: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, data).as_ref().to_vec()
}

// ---------------------------------------------------------------------------------------
// Local servers: JWKS and a spy upstream
// ---------------------------------------------------------------------------------------

#[derive(Default)]
pub(crate) struct Jwks {
    doc: Mutex<Value>,
    failing: std::sync::atomic::AtomicBool,
    hits: AtomicU64,
}

async fn jwks_handler(State(j): State<Arc<Jwks>>) -> Response {
    j.hits.fetch_add(1, Ordering::SeqCst);
    if j.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let doc = j.doc.lock().unwrap().clone();
    ([("content-type", "application/json")], doc.to_string()).into_response()
}

pub(crate) async fn jwks_server(keys: &[&SigningKey]) -> (Arc<Jwks>, SocketAddr) {
    let j = Arc::new(Jwks::default());
    set_keys(&j, keys);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let app = Router::new()
        .route("/jwks.json", get(jwks_handler))
        .with_state(Arc::clone(&j));
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (j, a)
}

fn set_keys(j: &Jwks, keys: &[&SigningKey]) {
    *j.doc.lock().unwrap() =
        json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
}

/// Every request's headers, as the upstream saw them.
pub(crate) type Seen = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

async fn spy(State(seen): State<Seen>, h: HeaderMap, body: Bytes) -> Response {
    seen.lock().unwrap().push(
        h.iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or("?").to_string(),
                )
            })
            .collect(),
    );
    if let Some(last) = seen.lock().unwrap().last_mut() {
        last.insert("(body)".into(), String::from_utf8_lossy(&body).into_owned());
    }
    let m: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = m.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match m["method"].as_str().unwrap_or("") {
        "initialize" => {
            json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "spy", "version": "0"}})
        }
        "tools/list" => json!({"tools": [{"name": "noop", "inputSchema": {"type": "object"}}]}),
        _ => json!({"content": [{"type": "text", "text": "ok"}]}),
    };
    let body = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "result": result})).unwrap();
    (
        [
            ("content-type", "application/json"),
            ("mcp-session-id", "spy-session"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn spy_server() -> (Seen, SocketAddr) {
    let seen: Seen = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let app = Router::new()
        .route("/mcp", post(spy))
        .with_state(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (seen, a)
}

// ---------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------

const POLICY: &str = "version: 1\nagents:\n  bot: {roles: [r]}\n  other: {roles: [r]}\nroles:\n  r:\n    allow:\n      - tools: [\"up.*\"]\ntools:\n  up.noop: {action: read, destinations: []}\n";

pub(crate) struct Gw {
    pub(crate) addr: SocketAddr,
    pub(crate) dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Gw {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn audit(&self) -> Vec<conductor_audit::Record> {
        let r = conductor_audit::AuditReader::open(&self.dir.path().join("audit.db")).unwrap();
        r.last(1000).unwrap()
    }
}

/// Start `serve` with `gateway` (YAML, `{dir}` replaced by its folder).
pub(crate) async fn gateway(yaml: &str) -> Gw {
    gateway_with(yaml, POLICY, false, &[]).await
}

/// [`gateway`] under `policy`; with `hold`, calls the policy marks `approve` are held
/// in the audit database's approvals store (as `conductor serve` does); `files` are
/// written next to the gateway file first (secrets it references).
pub(crate) async fn gateway_with(
    yaml: &str,
    policy: &str,
    hold: bool,
    files: &[(&str, &str)],
) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let yaml = yaml.replace("{dir}", dir.path().to_str().unwrap());
    std::fs::write(dir.path().join("gateway.yaml"), &yaml).unwrap();
    let cfg = conductor_serve::load_file(&dir.path().join("gateway.yaml"))
        .map_err(|e| e.render(false))
        .unwrap();
    let policy = conductor_policy::load_str(policy, "policy.yaml", None).unwrap();
    let store = Arc::new(
        conductor_audit::AuditStore::open(
            &dir.path().join("audit.db"),
            conductor_audit::AuditOptions::default(),
        )
        .unwrap(),
    );
    let gates = Arc::new(conductor_serve::gate_glue::GateEnv::new(
        policy,
        conductor_gate::GateResolver::new(conductor_gate::ResolverConfig {
            no_dns: true,
            ..Default::default()
        }),
        conductor_scan::FingerprintKey([7; 32]),
        store,
        Arc::new(conductor_gate::MemoryStore::default()),
    ));
    if hold {
        let a = conductor_audit::SqliteApprovals::open(&dir.path().join("audit.db")).unwrap();
        gates.hold_approvals_in(Arc::new(a));
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let (atx, arx) = tokio::sync::oneshot::channel();
    // The web console at /console, as `conductor serve` mounts it (the file's approvers).
    let console = conductor_console::router(conductor_console::ConsoleOptions {
        audit: dir.path().join("audit.db"),
        approvers: cfg.approvers.clone(),
        tls: false,
        hosts: Vec::new(),
    });
    let opts = conductor_serve::ServeOptions {
        config: cfg,
        config_path: None,
        policy_path: None,
        gates,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        shutdown: rx,
        on_listen: Some(Box::new(move |a| {
            let _ = atx.send(a);
        })),
    };
    tokio::spawn(conductor_serve::serve_with(opts, console));
    let addr = arx.await.unwrap();
    Gw {
        addr,
        dir,
        _stop: tx,
    }
}

fn jwt_gateway_yaml(up: SocketAddr, jwks: SocketAddr, extra: &str) -> String {
    format!(
        "version: 1\nservers:\n  up:\n    url: \"http://{up}/mcp\"\n    headers: {{Authorization: \"Bearer upstream-credential-of-the-gateway\"}}\n\
         auth:\n  jwt:\n    issuer: \"{ISS}\"\n    audience: \"https://gw.test/mcp\"\n    jwks: \"http://{jwks}/jwks.json\"\n{extra}"
    )
}

pub(crate) const AUD: &str = "https://gw.test/mcp";

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

pub(crate) async fn send(url: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
    let c = conductor_serve::upstream_tls::client_builder()
        .no_proxy()
        .build()
        .unwrap();
    let mut rb = c
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.body(body.to_string()).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
}

pub(crate) fn call_noop(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "noop", "arguments": {}}})
}

/// `initialize` then one `tools/call` on `/mcp/up` with `auth` headers; the call's answer.
pub(crate) async fn session_call(gw: &Gw, auth: &[(&str, &str)]) -> Answer {
    session_call_at(gw.addr, auth).await
}

/// [`session_call`] to the gateway at `addr`.
pub(crate) async fn session_call_at(addr: SocketAddr, auth: &[(&str, &str)]) -> Answer {
    let url = format!("http://{addr}/mcp/up");
    let init = send(&url, auth, &initialize()).await;
    assert_eq!(init.status, 200, "{}", init.body);
    let sid = init.headers["mcp-session-id"].to_str().unwrap().to_string();
    let mut h: Vec<(&str, &str)> = auth.to_vec();
    h.push(("mcp-session-id", &sid));
    h.push(("mcp-protocol-version", "2025-11-25"));
    send(&url, &h, &call_noop(2)).await
}

async fn get_json(url: &str) -> Value {
    let t = conductor_serve::upstream_tls::client_builder()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&t).unwrap()
}

pub(crate) fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A refusal: 401, a challenge naming the metadata, and the reason in the body.
fn assert_refused(a: &Answer, needle: &str) {
    assert_eq!(a.status, 401, "{}", a.body);
    let c = a.headers["www-authenticate"].to_str().unwrap();
    assert!(c.starts_with("Bearer resource_metadata=\"http://"), "{c}");
    assert!(a.body.contains(needle), "`{needle}` not in `{}`", a.body);
}

// ---------------------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_of_every_accepted_algorithm_pass_and_the_audit_names_iss_sub_jti() {
    let (es, ed, rs) = (es256("k-es"), ed25519("k-ed"), rs256("k-rs"));
    let (_j, jwks) = jwks_server(&[&es, &ed, &rs]).await;
    let (seen, up) = spy_server().await;
    let gw = gateway(&jwt_gateway_yaml(up, jwks, "")).await;
    for k in [&es, &ed, &rs] {
        let t = mint(k, &claims(AUD));
        let a = session_call(&gw, &[("authorization", &bearer(&t))]).await;
        assert_eq!(a.status, 200, "{:?}: {}", k.alg, a.body);
        assert!(a.body.contains("\"ok\""), "{}", a.body);
        // INVARIANT: no token passthrough — the upstream saw the gateway's credential only.
        for h in seen.lock().unwrap().iter() {
            assert_eq!(
                h.get("authorization").map(String::as_str),
                Some("Bearer upstream-credential-of-the-gateway")
            );
            assert!(
                !h.values().any(|v| v.contains(&t)),
                "the client token went upstream"
            );
        }
    }
    let records = gw.audit();
    let calls: Vec<_> = records.iter().filter(|r| r.event == "tools/call").collect();
    assert_eq!(calls.len(), 3, "{records:?}");
    for r in &calls {
        assert_eq!(r.agent, "bot");
        assert_eq!(
            r.auth,
            Some(json!({"method": "jwt", "iss": ISS, "sub": "bot", "jti": "jti-1"}))
        );
    }
    let all = serde_json::to_string(&records).unwrap();
    assert!(!all.contains("eyJ"), "a token in the audit trail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_refusals_each_get_401_with_resource_metadata() {
    let es = es256("k1");
    let stranger = es256("k1"); // same kid, another key: a forged signature
    let (j, jwks) = jwks_server(&[&es]).await;
    let (seen, up) = spy_server().await;
    let gw = gateway(&jwt_gateway_yaml(up, jwks, "    agent_claim: agent_id\n")).await;
    let mut c = claims(AUD);
    c["agent_id"] = json!("bot");
    let good = mint(&es, &c);
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&good))],
        &initialize(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let upstream_before = seen.lock().unwrap().len();

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = c.clone();
        f(&mut c);
        c
    };
    let none_hdr = json!({"alg": "none", "typ": "JWT", "kid": "k1"});
    let cases: Vec<(&str, String, &str)> = vec![
        // CVE-2015-9235 class: an unsigned token.
        (
            "alg_none",
            forge(&none_hdr, &c, |_| Vec::new())
                .trim_end_matches('.')
                .to_string()
                + ".",
            "not a signed jwt",
        ),
        (
            "alg_none_with_signature",
            forge(&none_hdr, &c, |_| b"x".to_vec()),
            "alg: none",
        ),
        // Algorithm confusion: HS256 "signed" with the issuer's public key as the secret.
        (
            "hs256_public_key_as_secret",
            forge(&json!({"alg": "HS256", "kid": "k1"}), &c, |d| {
                hs256(&es.public, d)
            }),
            "symmetric",
        ),
        (
            "hs256_jwk_as_secret",
            forge(&json!({"alg": "HS256", "kid": "k1"}), &c, |d| {
                hs256(es.jwk.to_string().as_bytes(), d)
            }),
            "symmetric",
        ),
        (
            "expired",
            mint(
                &es,
                &with(&|c| {
                    c["exp"] = json!(now() - 3600);
                }),
            ),
            "expired",
        ),
        (
            "not_yet_valid",
            mint(
                &es,
                &with(&|c| {
                    c["nbf"] = json!(now() + 3600);
                }),
            ),
            "not valid yet",
        ),
        (
            "no_exp",
            mint(
                &es,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            "no `exp`",
        ),
        (
            "other_audience",
            mint(
                &es,
                &with(&|c| {
                    c["aud"] = json!("https://other.test/mcp");
                }),
            ),
            "another audience",
        ),
        (
            "no_audience",
            mint(
                &es,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
            ),
            "no `aud`",
        ),
        (
            "other_issuer",
            mint(
                &es,
                &with(&|c| {
                    c["iss"] = json!("https://evil.test");
                }),
            ),
            "another issuer",
        ),
        (
            "no_agent_claim",
            mint(
                &es,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("agent_id");
                }),
            ),
            "no `agent_id` claim",
        ),
        (
            "agent_claim_not_a_string",
            mint(
                &es,
                &with(&|c| {
                    c["agent_id"] = json!(["bot"]);
                }),
            ),
            "no `agent_id` claim",
        ),
        (
            "forged_signature_same_kid",
            mint(&stranger, &c),
            "signature does not verify",
        ),
        (
            "unknown_kid",
            mint(&es256("k-unknown"), &c),
            "not one of the issuer's keys",
        ),
        (
            "jwe_five_parts",
            "a.b.c.d.e".to_string(),
            "not a signed jwt",
        ),
        (
            "crit_header",
            forge(
                &json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}),
                &c,
                |_| vec![0; 64],
            ),
            "crit",
        ),
    ];
    for (name, token, needle) in &cases {
        let a = send(
            &gw.url("/mcp/up"),
            &[("authorization", &bearer(token))],
            &initialize(),
        )
        .await;
        assert_refused(&a, needle);
        let c = a.headers["www-authenticate"].to_str().unwrap();
        assert!(
            c.contains("error=\"invalid_token\"") || c.contains("invalid_request"),
            "{name}: {c}"
        );
        assert!(!a.body.contains(token.as_str()), "{name}: the token echoed");
    }
    // Duplicate claims (RFC 7515 §4): `sub` twice — readers would disagree on the agent.
    let h = b64u(br#"{"alg":"ES256","kid":"k1"}"#);
    let p = b64u(
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"agent_id":"other","agent_id":"bot"}}"#,
            now() + 60
        )
        .as_bytes(),
    );
    let dup = format!("{h}.{p}.{}", b64u(&[0; 64]));
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&dup))],
        &initialize(),
    )
    .await;
    assert_refused(&a, "occurs twice");
    // The unknown kid caused exactly one refetch (the rate limit holds the rest).
    assert!(
        j.hits.load(Ordering::SeqCst) <= 3,
        "{}",
        j.hits.load(Ordering::SeqCst)
    );
    // Nothing of the refused requests reached the upstream.
    assert_eq!(seen.lock().unwrap().len(), upstream_before);
    // Failures are counted by reason.
    let m = conductor_serve::upstream_tls::client_builder()
        .build()
        .unwrap()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("conductor_auth_failures_total{reason=\"invalid_token\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_key_rotation_is_picked_up_on_an_unknown_kid() {
    let (old, new) = (es256("2026-01"), ed25519("2026-02"));
    let (j, jwks) = jwks_server(&[&old]).await;
    let (_seen, up) = spy_server().await;
    let gw = gateway(&jwt_gateway_yaml(up, jwks, "")).await;
    let t_old = mint(&old, &claims(AUD));
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&t_old))],
        &initialize(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let hits = j.hits.load(Ordering::SeqCst);
    // The issuer rotates: the new key is published, the old one withdrawn.
    set_keys(&j, &[&new]);
    let t_new = mint(&new, &claims(AUD));
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&t_new))],
        &initialize(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        j.hits.load(Ordering::SeqCst),
        hits + 1,
        "one refetch for the unknown kid"
    );
    // The withdrawn key no longer verifies anything.
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&t_old))],
        &initialize(),
    )
    .await;
    assert_refused(&a, "not one of the issuer's keys");
}

// The gateway remembers tokens it verified (signature checked once per token): a
// remembered token must still be refused once it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_a_remembered_token_is_refused_once_it_expires() {
    let k = es256("k1");
    let (_j, jwks) = jwks_server(&[&k]).await;
    let (_seen, up) = spy_server().await;
    let gw = gateway(&jwt_gateway_yaml(up, jwks, "    leeway_seconds: 0\n")).await;
    let mut c = claims(AUD);
    c["exp"] = json!(now() + 2);
    let t = mint(&k, &c);
    for _ in 0..2 {
        let a = send(
            &gw.url("/mcp/up"),
            &[("authorization", &bearer(&t))],
            &initialize(),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&t))],
        &initialize(),
    )
    .await;
    assert_refused(&a, "expired");
}

// A remembered token is bound to the key set it was verified with: when the issuer
// publishes another key under the same `kid`, the token signed with the old key is
// verified again, and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_a_remembered_token_is_refused_when_its_kid_names_another_key() {
    let (old, replacement) = (es256("k1"), es256("k1"));
    let (j, jwks) = jwks_server(&[&old]).await;
    let (_seen, up) = spy_server().await;
    let gw = gateway(&jwt_gateway_yaml(up, jwks, "    refresh_seconds: 1\n")).await;
    let t = mint(&old, &claims(AUD));
    for _ in 0..2 {
        let a = send(
            &gw.url("/mcp/up"),
            &[("authorization", &bearer(&t))],
            &initialize(),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    set_keys(&j, &[&replacement]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&t))],
        &initialize(),
    )
    .await;
    assert_refused(&a, "signature does not verify");
    let fresh = mint(&replacement, &claims(AUD));
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&fresh))],
        &initialize(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_a_jwks_that_cannot_be_fetched_refuses_and_stale_keys_expire() {
    let k = es256("k1");
    let (j, jwks) = jwks_server(&[&k]).await;
    let (_seen, up) = spy_server().await;
    // Fetch failing from the start: nothing can be verified.
    j.failing.store(true, Ordering::SeqCst);
    let gw = gateway(&jwt_gateway_yaml(
        up,
        jwks,
        "    refresh_seconds: 1\n    max_stale_seconds: 2\n",
    ))
    .await;
    let t = mint(&k, &claims(AUD));
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&t))],
        &initialize(),
    )
    .await;
    assert_refused(&a, "cannot be fetched");
    // Back up: accepted.
    j.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&t))],
        &initialize(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Down again: the cached keys serve until `max_stale`, then nothing verifies.
    j.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&t))],
        &initialize(),
    )
    .await;
    assert_refused(&a, "cannot be fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_a_token_for_one_server_endpoint_is_not_a_token_for_all() {
    let k = es256("k1");
    let (_j, jwks) = jwks_server(&[&k]).await;
    let (_seen, up) = spy_server().await;
    let gw = gateway(&jwt_gateway_yaml(up, jwks, "")).await;
    let narrow = mint(&k, &claims(&format!("{AUD}/up")));
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&narrow))],
        &initialize(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send(
        &gw.url("/mcp"),
        &[("authorization", &bearer(&narrow))],
        &initialize(),
    )
    .await;
    assert_refused(&a, "another audience");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_missing_scopes_get_403_insufficient_scope_naming_them() {
    let k = es256("k1");
    let (_j, jwks) = jwks_server(&[&k]).await;
    let (_seen, up) = spy_server().await;
    let gw = gateway(&jwt_gateway_yaml(
        up,
        jwks,
        "    required_scopes: {\"*\": [mcp], up.noop: [\"tools:noop\"]}\n",
    ))
    .await;
    let t = mint(&k, &claims(AUD));
    let a = session_call(&gw, &[("authorization", &bearer(&t))]).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let c = a.headers["www-authenticate"].to_str().unwrap();
    assert!(c.contains("error=\"insufficient_scope\""), "{c}");
    assert!(c.contains("scope=\"tools:noop\""), "{c}");
    let mut cl = claims(AUD);
    cl["scope"] = json!("mcp tools:noop");
    let t = mint(&k, &cl);
    let a = session_call(&gw, &[("authorization", &bearer(&t))]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Through `/mcp` the tool is `up.noop`: the same requirement.
    let mut cl = claims(AUD);
    cl["scope"] = json!("tools:noop");
    let t = mint(&k, &cl);
    let a = send(
        &gw.url("/mcp"),
        &[("authorization", &bearer(&t))],
        &initialize(),
    )
    .await;
    assert_eq!(a.status, 403, "`*` needs `mcp`: {}", a.body);
}

// ---------------------------------------------------------------------------------------
// Protected resource metadata
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prm_a_client_without_credentials_is_told_where_to_log_in() {
    let k = es256("k1");
    let (_j, jwks) = jwks_server(&[&k]).await;
    let (seen, up) = spy_server().await;
    let gw = gateway(&jwt_gateway_yaml(
        up,
        jwks,
        "    required_scopes: {\"*\": [mcp]}\n",
    ))
    .await;
    for (path, suffix) in [("/mcp", "/mcp"), ("/mcp/up", "/mcp/up")] {
        let a = send(&gw.url(path), &[], &initialize()).await;
        assert_eq!(a.status, 401, "{}", a.body);
        let c = a.headers["www-authenticate"].to_str().unwrap().to_string();
        let url = c
            .split("resource_metadata=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string();
        assert_eq!(
            url,
            gw.url(&format!("/.well-known/oauth-protected-resource{suffix}"))
        );
        let doc: Value = get_json(&url).await;
        let want = if path == "/mcp" {
            AUD.to_string()
        } else {
            format!("{AUD}/up")
        };
        assert_eq!(doc["resource"], json!(want), "{doc}");
        assert_eq!(doc["authorization_servers"], json!([ISS]), "{doc}");
        assert_eq!(doc["scopes_supported"], json!(["mcp"]), "{doc}");
    }
    let root: Value = get_json(&gw.url("/.well-known/oauth-protected-resource")).await;
    assert_eq!(root["resource"], json!(AUD));
    assert!(
        seen.lock().unwrap().is_empty(),
        "an unauthenticated request went upstream"
    );
}

// ---------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_body_is_read_before_authentication_nor_after_its_deadline() {
    // Regression (red-team review 2026-12-04, round 2, S6): a body was read whole before
    // the caller was authenticated (4 MB from anyone, then 401), and a client sending a
    // byte every two seconds held its connection for minutes.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let (_seen, up) = spy_server().await;
    let gw = gateway(&format!(
        "version: 1\nservers:\n  up:\n    url: \"http://{up}/mcp\"\n\
         auth:\n  api_keys:\n    - {{agent: bot, sha256: \"{hash}\"}}\n\
         limits: {{request_timeout_seconds: 2}}\n"
    ))
    .await;
    let head = |auth: &str| {
        format!(
            "POST /mcp/up HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{auth}Content-Length: 4000000\r\n\r\n{{\"jsonrpc\":",
            gw.addr
        )
    };
    // Without credentials: the 401 comes while the body is still to come.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(head("").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the gateway waited for the body of an unauthenticated request")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    // Authenticated, but the body trickles in: 408 once its deadline passes.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(head(&format!("Authorization: Bearer {key}\r\n")).as_bytes())
        .await
        .unwrap();
    let trickle = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if s.write_all(b" ").await.is_err() {
                break;
            }
            let mut one = [0u8; 512];
            if let Ok(Ok(n)) =
                tokio::time::timeout(std::time::Duration::from_millis(1), s.read(&mut one)).await
            {
                return String::from_utf8_lossy(&one[..n]).to_string();
            }
        }
        String::new()
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), trickle)
        .await
        .expect("a trickling body held the connection past its deadline");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_cannot_take_every_session() {
    // Regression (red-team review 2026-12-04, round 2, S5): sessions were bounded only
    // in total, so one agent could open them all (each spawning a stdio server of its
    // own) and the others got 503. Now each agent has its own bound.
    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let (other_key, other_hash) = conductor_serve::auth::keys::generate().unwrap();
    let (_seen, up) = spy_server().await;
    let gw = gateway(&format!(
        "version: 1\nservers:\n  up:\n    url: \"http://{up}/mcp\"\n\
         auth:\n  api_keys:\n    - {{agent: bot, sha256: \"{hash}\"}}\n    - {{agent: other, sha256: \"{other_hash}\"}}\n\
         limits: {{max_sessions: 10, max_sessions_per_agent: 3}}\n"
    ))
    .await;
    let url = gw.url("/mcp/up");
    let bot = bearer(&key);
    for i in 0..3 {
        let a = send(&url, &[("authorization", &bot)], &initialize()).await;
        assert_eq!(a.status, 200, "session {i}: {}", a.body);
    }
    let a = send(&url, &[("authorization", &bot)], &initialize()).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.body.contains("max_sessions_per_agent"), "{}", a.body);
    // Another agent still gets one.
    let a = send(
        &url,
        &[("authorization", &bearer(&other_key))],
        &initialize(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_by_bearer_or_x_api_key_and_nothing_of_the_client_goes_upstream() {
    let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
    let (other_key, other_hash) = conductor_serve::auth::keys::generate().unwrap();
    let (seen, up) = spy_server().await;
    let gw = gateway(&format!(
        "version: 1\nservers:\n  up:\n    url: \"http://{up}/mcp\"\n    headers: {{Authorization: \"Bearer gateway-upstream-token\", X-Team: shared}}\n    agents:\n      other: {{headers: {{Authorization: \"Bearer other-agent-upstream-token\"}}}}\n\
         auth:\n  api_keys:\n    - {{agent: bot, sha256: \"{hash}\"}}\n    - {{agent: other, sha256: \"{other_hash}\"}}\n"
    ))
    .await;
    let cookie = "session=client-cookie-value";
    let a = session_call(&gw, &[("authorization", &bearer(&key)), ("cookie", cookie)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = session_call(&gw, &[("x-api-key", &key), ("cookie", cookie)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = session_call(&gw, &[("x-api-key", &other_key)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    {
        let seen = seen.lock().unwrap();
        assert!(seen.len() >= 6, "{seen:?}");
        for h in seen.iter() {
            let joined = format!("{h:?}");
            assert!(
                !joined.contains(&key) && !joined.contains(&other_key),
                "a client key went upstream: {joined}"
            );
            assert!(
                !joined.contains("client-cookie-value"),
                "the client cookie went upstream"
            );
            assert!(
                !h.contains_key("x-api-key") && !h.contains_key("cookie"),
                "{joined}"
            );
            assert_eq!(h.get("x-team").map(String::as_str), Some("shared"));
        }
        // bot's requests carried the server's credential; other's its own.
        let auths: Vec<&str> = seen
            .iter()
            .filter_map(|h| h.get("authorization").map(String::as_str))
            .collect();
        let bot = auths
            .iter()
            .filter(|a| **a == "Bearer gateway-upstream-token")
            .count();
        let other = auths
            .iter()
            .filter(|a| **a == "Bearer other-agent-upstream-token")
            .count();
        assert!(
            other > 0 && bot == 2 * other && bot + other == auths.len(),
            "{auths:?}"
        );
    }
    // Refusals: an unknown key, a hash presented as a key, both headers at once.
    let (stranger, _) = conductor_serve::auth::keys::generate().unwrap();
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&stranger))],
        &initialize(),
    )
    .await;
    assert_refused(&a, "unknown api key");
    let a = send(&gw.url("/mcp/up"), &[("x-api-key", &hash)], &initialize()).await;
    assert_refused(&a, "unknown api key");
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &bearer(&key)), ("x-api-key", &key)],
        &initialize(),
    )
    .await;
    assert_refused(&a, "send one");
    let a = send(
        &gw.url("/mcp/up"),
        &[("authorization", &format!("Basic {}", b64u(key.as_bytes())))],
        &initialize(),
    )
    .await;
    assert_refused(&a, "must be `Bearer`");
    // The audit names the key by id (8 hex digits of its hash), never the key.
    let records = gw.audit();
    let calls: Vec<_> = records.iter().filter(|r| r.event == "tools/call").collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(
        calls[0].auth,
        Some(json!({"method": "api_key", "key_id": &hash[..8]}))
    );
    assert_eq!(calls[2].agent, "other");
    assert_eq!(
        calls[2].auth,
        Some(json!({"method": "api_key", "key_id": &other_hash[..8]}))
    );
    assert!(!serde_json::to_string(&records).unwrap().contains(&key));
    let m = conductor_serve::upstream_tls::client_builder()
        .build()
        .unwrap()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("conductor_auth_failures_total{reason=\"unknown_key\"} 2"),
        "{m}"
    );
    assert!(!m.contains(&key) && !m.contains(&stranger));
}

// ---------------------------------------------------------------------------------------
// Loopback only without TLS
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_listen_override_without_tls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, hash) = conductor_serve::auth::keys::generate().unwrap();
    let cfg = conductor_serve::load_str(
        &format!("version: 1\nservers: {{a: {{command: [x]}}}}\nauth: {{api_keys: [{{agent: bot, sha256: \"{hash}\"}}]}}\n"),
        "g.yaml",
        &conductor_serve::config::SystemSecrets { base: None },
    )
    .unwrap();
    let policy = conductor_policy::load_str(POLICY, "policy.yaml", None).unwrap();
    let store = Arc::new(
        conductor_audit::AuditStore::open(
            &dir.path().join("a.db"),
            conductor_audit::AuditOptions::default(),
        )
        .unwrap(),
    );
    let gates = Arc::new(conductor_serve::gate_glue::GateEnv::new(
        policy,
        conductor_gate::GateResolver::new(conductor_gate::ResolverConfig {
            no_dns: true,
            ..Default::default()
        }),
        conductor_scan::FingerprintKey([7; 32]),
        store,
        Arc::new(conductor_gate::MemoryStore::default()),
    ));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let e = conductor_serve::serve(conductor_serve::ServeOptions {
        config: cfg,
        config_path: None,
        policy_path: None,
        gates,
        listen: Some("0.0.0.0:0".parse().unwrap()),
        shutdown: rx,
        on_listen: None,
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("needs `tls`"), "{e}");
}
