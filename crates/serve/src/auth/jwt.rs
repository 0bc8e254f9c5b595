//! JWT access tokens (OAuth 2.1 resource server; RFC 9068 profile, RFC 8707 audience).
//!
//! Checked, in this order, before any claim is believed: the compact JWS shape (three
//! base64url parts; a JWE or anything else is refused), the header (`alg` one of RS256,
//! ES256, EdDSA; `none` and every `HS*` refused; no `crit`), no duplicate member names
//! in header or payload (RFC 7515 §4: a parser must reject them, and readers disagree
//! on them), the signature with the issuer's key for that `kid` and `alg`, then `iss`,
//! `aud` (this gateway's resource URL), `exp` and `nbf` (with a small leeway), and
//! the agent claim.
//!
//! INVARIANT: the algorithm is chosen by the key, never by the token: a key is used
//! only for the one algorithm its type allows ([`super::jwks`]), and the token's `alg`
//! must be that one — an HS256 token "signed" with a public key is refused before any
//! key is looked up (algorithm confusion, CVE-2015-9235 class).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::{JwksCache, JwksSource, JwksTimings, KeySet};
use super::{AuthError, Proof};

/// Largest token looked at.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The `jwt:` block of the gateway file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    pub issuer: String,
    /// This gateway's resource URL (RFC 8707 / RFC 9728 `resource`).
    pub audience: String,
    pub jwks: JwksSource,
    /// The claim whose string value is the agent id (default `sub`).
    pub agent_claim: String,
    pub leeway: Duration,
    pub timings: JwksTimings,
    /// For protected-resource metadata (default: the issuer).
    pub authorization_servers: Vec<String>,
    /// Scopes a token needs: key `*` (every request), `<server>` (requests to that
    /// server) or `<server>.<tool>` (calls of that tool).
    pub required_scopes: BTreeMap<String, Vec<String>>,
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    pub agent: String,
    pub iss: String,
    pub sub: Option<String>,
    pub jti: Option<String>,
    pub scopes: BTreeSet<String>,
}

impl Verified {
    pub fn proof(&self) -> Proof {
        Proof::Jwt {
            iss: self.iss.clone(),
            sub: self.sub.clone(),
            jti: self.jti.clone(),
        }
    }
}

/// Verifies tokens of one issuer.
pub struct JwtVerifier {
    cfg: JwtConfig,
    jwks: JwksCache,
    /// Tokens whose signature and claims were verified, by SHA-256 of (endpoint,
    /// token): an agent presents the same token on every request until it expires,
    /// and its signature (35–75 µs) is checked once instead of each time.
    verified: Mutex<HashMap<[u8; 32], Cached>>,
}

/// A verified token in [`JwtVerifier::verified`].
///
/// INVARIANT: an entry counts only while the key set it was verified with is the one
/// in force (any JWKS refresh voids it), and only within its `exp`/`nbf` (re-checked on
/// every use, with the same leeway as the first verification).
struct Cached {
    set: Arc<KeySet>,
    exp: i64,
    nbf: Option<i64>,
    verified: Verified,
}

/// Most tokens remembered at once (the map is emptied when full).
const VERIFIED_TOKENS_MAX: usize = 4096;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn cache_key(token: &str, server: Option<&str>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(server.unwrap_or("").as_bytes());
    h.update([0]);
    h.update(token.as_bytes());
    h.finalize().into()
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.cfg.issuer)
            .finish_non_exhaustive()
    }
}

fn bad(m: &str) -> AuthError {
    AuthError::InvalidToken(m.to_string())
}

fn b64(part: &str) -> Result<Vec<u8>, AuthError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| bad("a part of the token is not base64url"))
}

/// A claim that is a short printable string.
fn text_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control))
        .map(str::to_string)
}

/// The token's scopes: `scope` (space-separated, RFC 8693 / RFC 9068) or `scp`.
fn scopes_of(claims: &Map<String, Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => {
                out.extend(s.split(' ').filter(|s| !s.is_empty()).map(String::from))
            }
            Some(Value::Array(a)) => {
                out.extend(a.iter().filter_map(Value::as_str).map(String::from))
            }
            _ => {}
        }
    }
    out
}

/// The header's algorithm, refused unless it is one this gateway verifies.
pub fn header_algorithm(header: &Value) -> Result<Algorithm, AuthError> {
    let Some(alg) = header.get("alg").and_then(Value::as_str) else {
        return Err(bad("the token header has no `alg`"));
    };
    match alg {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        a if a.eq_ignore_ascii_case("none") => {
            Err(bad("unsigned tokens (`alg: none`) are refused"))
        }
        a if a.to_ascii_uppercase().starts_with("HS") => Err(bad(
            "symmetric algorithms (`HS*`) are refused: only RS256, ES256 and EdDSA are accepted",
        )),
        _ => Err(bad("the token's `alg` is not one of RS256, ES256, EdDSA")),
    }
}

impl JwtVerifier {
    pub fn new(cfg: JwtConfig) -> JwtVerifier {
        let jwks = JwksCache::new(cfg.jwks.clone(), cfg.timings);
        JwtVerifier {
            cfg,
            jwks,
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &JwtConfig {
        &self.cfg
    }

    pub fn jwks(&self) -> &JwksCache {
        &self.jwks
    }

    /// Verify a compact JWS access token presented at `/mcp` (`server: None`, or any
    /// other endpoint of the gateway) or at `/mcp/<server>` (where a token whose `aud` is
    /// that endpoint's own resource identifier is accepted too).
    pub async fn verify(&self, token: &str, server: Option<&str>) -> Result<Verified, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(bad("the token is too long"));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [h, p, s] = parts.as_slice() else {
            return Err(bad("not a signed jwt (three base64url parts)"));
        };
        if h.is_empty() || p.is_empty() || s.is_empty() {
            return Err(bad("not a signed jwt (an empty part)"));
        }
        let header_bytes = b64(h)?;
        let payload_bytes = b64(p)?;
        // INVARIANT: duplicate member names are refused, in the header and the claims.
        if crate::http::has_duplicate_keys(&header_bytes)
            || crate::http::has_duplicate_keys(&payload_bytes)
        {
            return Err(bad("a member name occurs twice in the token"));
        }
        let header: Value = serde_json::from_slice(&header_bytes)
            .map_err(|_| bad("the token header is not json"))?;
        if !header.is_object() {
            return Err(bad("the token header is not a json object"));
        }
        let alg = header_algorithm(&header)?;
        if header.get("crit").is_some() {
            return Err(bad(
                "the token header has `crit` extensions this gateway does not know",
            ));
        }
        if let Some(typ) = header.get("typ") {
            let ok = typ.as_str().is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                matches!(t.as_str(), "jwt" | "at+jwt" | "application/at+jwt")
            });
            if !ok {
                return Err(bad("the token's `typ` is not `JWT` or `at+jwt`"));
            }
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(bad("the token's `kid` is not a string")),
        };
        let (key, set) = self.jwks.key_in_set(kid, alg).await?;
        let leeway = i64::try_from(self.cfg.leeway.as_secs()).unwrap_or(i64::MAX);
        let digest = cache_key(token, server);
        let now = now_secs();
        if let Ok(cache) = self.verified.lock()
            && let Some(c) = cache.get(&digest)
            && Arc::ptr_eq(&c.set, &set)
            && c.exp >= now.saturating_sub(leeway)
            && c.nbf.is_none_or(|n| n <= now.saturating_add(leeway))
        {
            return Ok(c.verified.clone());
        }
        let mut v = Validation::new(alg);
        v.algorithms = vec![key.alg];
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        let mut audiences = vec![self.cfg.audience.clone()];
        if let Some(s) = server {
            audiences.push(super::prm::resource(&self.cfg.audience, Some(s)));
        }
        v.set_audience(&audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.cfg.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v).map_err(|e| {
                bad(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)",
                    ErrorKind::InvalidAudience => "the token is for another audience",
                    ErrorKind::InvalidIssuer => "the token is from another issuer",
                    ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => {
                        "the token's signature does not verify"
                    }
                    ErrorKind::MissingRequiredClaim(c) if c == "exp" => {
                        "the token has no `exp` claim"
                    }
                    ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                        "the token has no `aud` claim"
                    }
                    ErrorKind::MissingRequiredClaim(_) => "the token has no `iss` claim",
                    ErrorKind::InvalidAlgorithm => "the token's `alg` does not fit its key",
                    _ => "the token cannot be read",
                })
            })?;
        let claims = data.claims;
        let Some(agent) = text_claim(&claims, &self.cfg.agent_claim) else {
            return Err(AuthError::InvalidToken(format!(
                "the token has no `{}` claim naming the agent",
                self.cfg.agent_claim
            )));
        };
        let verified = Verified {
            agent,
            iss: text_claim(&claims, "iss").unwrap_or_default(),
            sub: text_claim(&claims, "sub"),
            jti: text_claim(&claims, "jti"),
            scopes: scopes_of(&claims),
        };
        // Remembered only with integer `exp` (required, checked) and `nbf` (if any):
        // a token with other numbers is verified each time.
        let exp = claims.get("exp").and_then(Value::as_i64);
        let nbf = match claims.get("nbf") {
            None => Some(None),
            Some(n) => n.as_i64().map(Some),
        };
        if let (Some(exp), Some(nbf)) = (exp, nbf)
            && let Ok(mut cache) = self.verified.lock()
        {
            if cache.len() >= VERIFIED_TOKENS_MAX {
                cache.clear();
            }
            cache.insert(
                digest,
                Cached {
                    set,
                    exp,
                    nbf,
                    verified: verified.clone(),
                },
            );
        }
        Ok(verified)
    }

    /// The scopes a request needs that `have` lacks (sorted), for a request to
    /// `server` (none: every server) calling `tool` (a tool name of that server).
    pub fn missing_scopes(
        &self,
        server: Option<&str>,
        tool: Option<&str>,
        have: &BTreeSet<String>,
    ) -> Vec<String> {
        let mut need: BTreeSet<&str> = BTreeSet::new();
        let req = &self.cfg.required_scopes;
        if let Some(s) = req.get("*") {
            need.extend(s.iter().map(String::as_str));
        }
        if let Some(server) = server {
            if let Some(s) = req.get(server) {
                need.extend(s.iter().map(String::as_str));
            }
            if let Some(tool) = tool
                && let Some(s) = req.get(&format!("{server}.{tool}"))
            {
                need.extend(s.iter().map(String::as_str));
            }
        }
        need.into_iter()
            .filter(|s| !have.contains(*s))
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refused_algorithms_are_refused_by_name() {
        for (alg, needle) in [
            ("none", "alg: none"),
            ("NONE", "alg: none"),
            ("HS256", "symmetric"),
            ("hs512", "symmetric"),
            ("PS256", "not one of"),
            ("ES384", "not one of"),
        ] {
            let e = header_algorithm(&json!({"alg": alg})).unwrap_err();
            assert!(e.to_string().contains(needle), "{alg}: {e}");
        }
        assert_eq!(
            header_algorithm(&json!({"alg": "ES256"})).unwrap(),
            Algorithm::ES256
        );
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let c = json!({"scope": "a b  c", "scp": ["d"]});
        let s = scopes_of(c.as_object().unwrap());
        assert_eq!(s.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    }
}
