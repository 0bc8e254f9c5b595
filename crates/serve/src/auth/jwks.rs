//! The token signing keys (JWKS, RFC 7517): fetched from a URL or read from a file,
//! cached, refreshed.
//!
//! - A cached set older than `refresh` is fetched again before it is used (at most one
//!   fetch at a time, at most one every `min_refetch`).
//! - A token naming a `kid` the set lacks causes one fetch (same rate limit) — a key
//!   rotation at the issuer — and is refused when the new set lacks it too.
//! - When fetches fail, the last good set is used until `max_stale` after it was
//!   fetched; after that every token is refused until a fetch succeeds.
//!
//! INVARIANT: only keys fit for a refused-nothing algorithm are kept: RSA (RS256),
//! EC P-256 (ES256), OKP Ed25519 (EdDSA). Symmetric (`oct`) keys are never loaded, so
//! no token can be verified with a public key taken as an HMAC secret.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::AuthError;

/// Largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    Url(url::Url),
    File(PathBuf),
}

/// Refresh timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksTimings {
    pub refresh: Duration,
    pub max_stale: Duration,
    pub min_refetch: Duration,
}

impl Default for JwksTimings {
    fn default() -> Self {
        JwksTimings {
            refresh: Duration::from_secs(300),
            max_stale: Duration::from_secs(3600),
            min_refetch: Duration::from_secs(10),
        }
    }
}

/// One usable key.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// A parsed key set.
#[derive(Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    /// Parse a JWKS document, keeping only the keys this gateway may use.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, String> {
        if crate::http::has_duplicate_keys(bytes) {
            return Err("a member name occurs twice in one object".into());
        }
        let v: Value = serde_json::from_slice(bytes).map_err(|_| "not json".to_string())?;
        let Some(keys) = v.get("keys").and_then(Value::as_array) else {
            return Err("no `keys` array".into());
        };
        let mut out = Vec::new();
        for k in keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
                continue;
            };
            if let Some(key) = usable(&jwk) {
                out.push(key);
            }
        }
        Ok(KeySet { keys: out })
    }

    /// The key for a token with this `kid` and `alg`.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.alg == alg),
            // Without a `kid`, only a set of one key of that algorithm is unambiguous.
            None => {
                let mut fit = self.keys.iter().filter(|k| k.alg == alg);
                let first = fit.next();
                if fit.next().is_some() { None } else { first }
            }
        }
    }
}

fn usable(jwk: &Jwk) -> Option<Key> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        // INVARIANT: `oct` (HMAC) keys and other curves are never usable.
        _ => return None,
    };
    let declared_ok = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => alg == Algorithm::EdDSA,
        Some(_) => false,
    };
    if !declared_ok {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

#[derive(Default)]
struct State {
    set: Option<Arc<KeySet>>,
    /// When the set in `set` was fetched.
    fetched: Option<Instant>,
    /// When a fetch was last tried.
    tried: Option<Instant>,
    /// When a fetch was last tried for an unknown `kid`.
    kid_tried: Option<Instant>,
}

/// The cached keys of one source.
pub struct JwksCache {
    source: JwksSource,
    timings: JwksTimings,
    state: Mutex<State>,
    /// Single flight: one fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    pub fn new(source: JwksSource, timings: JwksTimings) -> JwksCache {
        JwksCache {
            source,
            timings,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many fetches were tried (for tests and metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn snapshot(&self) -> (Option<Arc<KeySet>>, Option<Instant>, Option<Instant>) {
        match self.state.lock() {
            Ok(s) => (s.set.clone(), s.fetched, s.tried),
            Err(p) => {
                let s = p.into_inner();
                (s.set.clone(), s.fetched, s.tried)
            }
        }
    }

    async fn read(&self) -> Result<Vec<u8>, String> {
        match &self.source {
            JwksSource::File(p) => {
                let b = tokio::fs::read(p)
                    .await
                    .map_err(|e| format!("cannot read the jwks file: {}", e.kind()))?;
                if b.len() > MAX_JWKS_BYTES {
                    return Err("the jwks file is too large".into());
                }
                Ok(b)
            }
            JwksSource::Url(u) => tokio::time::timeout(FETCH_TIMEOUT, fetch(u))
                .await
                .map_err(|_| "the jwks url did not answer in time".to_string())?,
        }
    }

    /// Fetch now unless another fetch of the same kind (scheduled, or for an unknown
    /// `kid`) was tried within `min_refetch`. Returns whether the set was (re)fetched.
    // INVARIANT: tokens naming random `kid`s cause at most one fetch per `min_refetch`.
    async fn refresh(&self, for_kid: bool) -> bool {
        let _one = self.fetching.lock().await;
        {
            let Ok(mut s) = self.state.lock() else {
                return false;
            };
            let last = if for_kid { s.kid_tried } else { s.tried };
            if last.is_some_and(|t| t.elapsed() < self.timings.min_refetch) {
                return false;
            }
            let t = Some(Instant::now());
            s.tried = t;
            if for_kid {
                s.kid_tried = t;
            }
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.read().await.and_then(|b| KeySet::parse(&b)) {
            Ok(set) => {
                if let Ok(mut s) = self.state.lock() {
                    s.set = Some(Arc::new(set));
                    s.fetched = Some(Instant::now());
                }
                true
            }
            Err(e) => {
                tracing::warn!(reason = %e, "the token signing keys could not be refreshed");
                false
            }
        }
    }

    /// The key a token names, fetching the set when it is missing, old, or lacks the
    /// `kid` (once).
    pub async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Key, AuthError> {
        self.key_in_set(kid, alg).await.map(|(k, _)| k)
    }

    /// [`JwksCache::key`], with the key set it was found in (a token verified with a
    /// key of one set is verified for as long as that set is the one in force).
    pub async fn key_in_set(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(Key, Arc<KeySet>), AuthError> {
        let (set, fetched, _) = self.snapshot();
        let old = fetched.is_none_or(|f| f.elapsed() >= self.timings.refresh);
        if set.is_none() || old {
            self.refresh(false).await;
        }
        let (set, fetched, _) = self.snapshot();
        // INVARIANT: keys older than `max_stale` verify nothing.
        let fresh = |f: Option<Instant>| f.is_some_and(|f| f.elapsed() < self.timings.max_stale);
        let Some(set) = set.filter(|_| fresh(fetched)) else {
            return Err(AuthError::KeysUnavailable(
                "the signing keys cannot be fetched".into(),
            ));
        };
        if let Some(k) = set.find(kid, alg) {
            return Ok((k.clone(), Arc::clone(&set)));
        }
        // An unknown kid: the issuer may have rotated its keys. Fetch once.
        if self.refresh(true).await {
            let (set, fetched, _) = self.snapshot();
            if let Some(set) = set.filter(|_| fresh(fetched))
                && let Some(k) = set.find(kid, alg)
            {
                return Ok((k.clone(), Arc::clone(&set)));
            }
        }
        Err(AuthError::InvalidToken(match kid {
            Some(_) => "the token's signing key (`kid`) is not one of the issuer's keys".into(),
            None => "the token names no `kid` and the issuer has several keys".into(),
        }))
    }
}

/// GET `u` over HTTP/1.1 (TLS for `https`, the system's roots): the body, at most
/// [`MAX_JWKS_BYTES`], of a 200 answer. No redirects, no proxies.
async fn fetch(u: &url::Url) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt as _;
    use hyper_util::rt::TokioIo;
    let host = u.host_str().ok_or("the jwks url has no host")?.to_string();
    let port = u
        .port_or_known_default()
        .ok_or("the jwks url has no port")?;
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|_| "the jwks url cannot be reached".to_string())?;
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    let authority = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let req = hyper::Request::get(path)
        .header("host", authority)
        .header("accept", "application/json")
        .header("user-agent", "conductor")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|_| "the jwks url is not usable".to_string())?;
    async fn go<S>(
        io: S,
        req: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
    ) -> Result<Vec<u8>, String>
    where
        S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|_| "the jwks url cannot be reached".to_string())?;
        tokio::spawn(conn);
        let resp = send
            .send_request(req)
            .await
            .map_err(|_| "the jwks url did not answer".to_string())?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(format!(
                "the jwks url answered http {}",
                resp.status().as_u16()
            ));
        }
        let limited = http_body_util::Limited::new(resp.into_body(), MAX_JWKS_BYTES);
        let body = limited
            .collect()
            .await
            .map_err(|_| "the jwks document could not be read or is too large".to_string())?;
        Ok(body.to_bytes().to_vec())
    }
    match u.scheme() {
        "http" => go(TokioIo::new(tcp), req).await,
        "https" => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            let cfg = rustls::ClientConfig::builder_with_provider(super::mtls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|_| "tls is not usable".to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = rustls_pki_types::ServerName::try_from(bare)
                .map_err(|_| "the jwks url's host is not a tls server name".to_string())?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .map_err(|_| "the tls handshake with the jwks url failed".to_string())?;
            go(TokioIo::new(tls), req).await
        }
        _ => Err("the jwks url is not http(s)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_foreign_keys_are_never_loaded() {
        // RFC 7517 appendix A.3 (symmetric keys) and a P-384 key: neither is usable.
        let doc = br#"{"keys":[
            {"kty":"oct","alg":"A128KW","k":"GawgguFyGrWKav7AX4VKUg"},
            {"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow","kid":"HMAC key used in JWS spec Appendix A.1 example"},
            {"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"}
        ]}"#;
        let set = KeySet::parse(doc).unwrap();
        assert!(set.keys.is_empty());
    }

    #[test]
    fn a_jwks_with_duplicate_members_is_refused() {
        assert!(KeySet::parse(br#"{"keys":[],"keys":[]}"#).is_err());
    }
}
