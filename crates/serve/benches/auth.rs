//! Verifying credentials: a JWT whose key is cached (ES256, EdDSA, RS256), an API key
//! (SHA-256 + constant-time comparison over 1 and 100 configured keys), and, as the
//! baseline of the same run, parsing the `Authorization` header of a request with
//! `auth: none` (no verification at all).
//!
//! cargo bench -p conductor-serve --bench auth

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark: a failure is a failed run"
)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use conductor_serve::auth::{Authenticator, ConnInfo};
use conductor_serve::config::Auth;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair as _;
use serde_json::json;

fn b64u(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn gateway(auth: &str, dir: &std::path::Path) -> Auth {
    let yaml = format!("version: 1\nservers: {{a: {{command: [x]}}}}\n{auth}");
    let cfg = conductor_serve::load_str(
        &yaml,
        "bench.yaml",
        &conductor_serve::config::SystemSecrets {
            base: Some(dir.to_path_buf()),
        },
    )
    .map_err(|e| e.render(false))
    .unwrap();
    cfg.auth
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": "https://idp.bench", "aud": "https://gw.bench/mcp", "sub": "bot",
                        "exp": now + 86_400, "jti": "j", "scope": "mcp"});
    let rng = ring::rand::SystemRandom::new();

    // Keys: ES256 and EdDSA generated, RS256 from the test fixture.
    let ec_alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let ec8 = ring::signature::EcdsaKeyPair::generate_pkcs8(ec_alg, &rng).unwrap();
    let ec = ring::signature::EcdsaKeyPair::from_pkcs8(ec_alg, ec8.as_ref(), &rng).unwrap();
    let p = ec.public_key().as_ref();
    let ed8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed = ring::signature::Ed25519KeyPair::from_pkcs8(ed8.as_ref()).unwrap();
    let fx = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rsa_pem = std::fs::read(fx.join("rsa-test-key.pem")).unwrap();
    let n = std::fs::read_to_string(fx.join("rsa-test-key.n")).unwrap();
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "x": b64u(&p[1..33]), "y": b64u(&p[33..65]), "kid": "es"},
        {"kty": "OKP", "crv": "Ed25519", "x": b64u(ed.public_key().as_ref()), "kid": "ed"},
        {"kty": "RSA", "n": n.trim(), "e": "AQAB", "kid": "rs"},
    ]});
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    let tokens = [
        (
            "es256",
            Algorithm::ES256,
            "es",
            EncodingKey::from_ec_der(ec8.as_ref()),
        ),
        (
            "eddsa",
            Algorithm::EdDSA,
            "ed",
            EncodingKey::from_ed_der(ed8.as_ref()),
        ),
        (
            "rs256",
            Algorithm::RS256,
            "rs",
            EncodingKey::from_rsa_pem(&rsa_pem).unwrap(),
        ),
    ];
    let jwt_auth = gateway(
        "auth:\n  jwt: {issuer: \"https://idp.bench\", audience: \"https://gw.bench/mcp\", jwks: jwks.json}\n",
        dir.path(),
    );
    let jwt = Authenticator::new(&jwt_auth);
    let conn = ConnInfo::default();
    let mut g = c.benchmark_group("authenticate");
    for (name, alg, kid, key) in &tokens {
        let mut h = Header::new(*alg);
        h.kid = Some((*kid).to_string());
        let token = jsonwebtoken::encode(&h, &claims, key).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        // Warm the key cache once.
        rt.block_on(jwt.authenticate(&headers, &conn)).unwrap();
        g.bench_function(format!("jwt_{name}_cached_key"), |b| {
            b.iter(|| {
                rt.block_on(jwt.authenticate(black_box(&headers), &conn))
                    .unwrap()
            })
        });
    }
    for count in [1usize, 100] {
        let mut lines = String::from("auth:\n  api_keys:\n");
        let mut last = String::new();
        for i in 0..count {
            let (key, hash) = conductor_serve::auth::keys::generate().unwrap();
            lines.push_str(&format!("    - {{agent: bot{i}, sha256: \"{hash}\"}}\n"));
            last = key;
        }
        let a = Authenticator::new(&gateway(&lines, dir.path()));
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_str(&last).unwrap());
        rt.block_on(a.authenticate(&headers, &conn)).unwrap();
        g.bench_function(format!("api_key_{count}_configured"), |b| {
            b.iter(|| {
                rt.block_on(a.authenticate(black_box(&headers), &conn))
                    .unwrap()
            })
        });
    }
    let none = Authenticator::new(&gateway("auth: {none: {agent: bot}}\n", dir.path()));
    let headers = HeaderMap::new();
    g.bench_function("baseline_none", |b| {
        b.iter(|| {
            rt.block_on(none.authenticate(black_box(&headers), &conn))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
