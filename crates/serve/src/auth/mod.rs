//! Who is calling: agent authentication for every way into `serve` (the MCP endpoints
//! and the AuthZEN API), and the proof of it that goes into every audit record.
//!
//! One seam: [`Authenticator::authenticate`] takes the request's headers and what the
//! connection proved ([`ConnInfo`]: the peer, the verified client certificate) and
//! answers [`Authenticated`] (the agent and how it was proven) or an [`AuthError`]
//! that the HTTP layer turns into a 401 with `WWW-Authenticate` (see [`prm`]).
//!
//! Methods ([`crate::config::Auth`]): API keys ([`keys`]), JWT access tokens verified
//! against a JWKS ([`jwt`], [`jwks`]), client certificates ([`mtls`]), or on a loopback
//! listener one fixed agent (`none`).
//!
//! INVARIANT: fail closed. A credential that is missing, malformed, unknown, expired,
//! for another audience, signed with a refused algorithm or by an unknown key, or that
//! cannot be checked right now (the JWKS cannot be fetched) is a refusal. When a request
//! carries several credentials (a client certificate and a bearer token), every one must
//! be valid and all must name the same agent.
//!
//! INVARIANT: a credential never leaves through our outputs: errors, logs, metrics and
//! audit records name the method, a key id (8 hex digits of the key's SHA-256), the
//! token's `iss`/`sub`/`jti` or the certificate's SHA-256 fingerprint — never the key,
//! the token or the certificate's private part.

pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod mtls;
pub mod prm;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::config::{Auth, AuthMethods};

/// What the connection itself proved, before any header was read.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: Option<SocketAddr>,
    /// The client certificate the TLS handshake verified against `tls.client_ca`.
    pub client_cert: Option<Arc<mtls::ClientCert>>,
}

/// How an agent proved who it is (what the audit record keeps; never the credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// `auth: {none: …}`: a fixed agent on a loopback listener.
    Fixed,
    /// An API key; `key_id` is the first 8 hex digits of its SHA-256.
    ApiKey { key_id: String },
    /// A JWT access token.
    Jwt {
        iss: String,
        sub: Option<String>,
        jti: Option<String>,
    },
    /// A client certificate; `sha256` is its fingerprint (hex of the DER's SHA-256).
    Cert { sha256: String },
}

impl Proof {
    /// The short name used in metrics and logs.
    pub fn method(&self) -> &'static str {
        match self {
            Proof::Fixed => "none",
            Proof::ApiKey { .. } => "api_key",
            Proof::Jwt { .. } => "jwt",
            Proof::Cert { .. } => "mtls",
        }
    }

    /// The JSON written into audit records.
    pub fn to_json(&self) -> Value {
        match self {
            Proof::Fixed => json!({"method": "none"}),
            Proof::ApiKey { key_id } => json!({"method": "api_key", "key_id": key_id}),
            Proof::Jwt { iss, sub, jti } => {
                let mut m = serde_json::Map::new();
                m.insert("method".into(), json!("jwt"));
                m.insert("iss".into(), json!(iss));
                if let Some(s) = sub {
                    m.insert("sub".into(), json!(s));
                }
                if let Some(j) = jti {
                    m.insert("jti".into(), json!(j));
                }
                Value::Object(m)
            }
            Proof::Cert { sha256 } => json!({"method": "mtls", "sha256": sha256}),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The agent id the policy knows.
    pub agent: String,
    /// Every credential that proved it (one, or a certificate and a token).
    pub proof: Vec<Proof>,
    /// The token's scopes (`scope` or `scp`), when a token was presented.
    pub scopes: Option<std::collections::BTreeSet<String>>,
}

impl Authenticated {
    /// The proof as the audit record's `auth` member: one object, or an array of them.
    pub fn proof_json(&self) -> Value {
        match self.proof.as_slice() {
            [one] => one.to_json(),
            many => Value::Array(many.iter().map(Proof::to_json).collect()),
        }
    }

    /// The methods, joined with `+` (for logs and metrics).
    pub fn methods(&self) -> String {
        self.proof
            .iter()
            .map(Proof::method)
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// Why a request is not authenticated. Messages never contain the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send `Authorization: Bearer …`")]
    Missing,
    #[error("malformed credentials: {0}")]
    Malformed(String),
    #[error("unknown api key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("the token cannot be verified now: {0}")]
    KeysUnavailable(String),
    #[error("a client certificate is required")]
    CertRequired,
    #[error("the client certificate names no agent: {0}")]
    CertIdentity(String),
    #[error("the credentials name different agents")]
    Disagree,
    #[error("`{0}` credentials are not accepted by this gateway")]
    NotAccepted(&'static str),
}

impl AuthError {
    /// The label of the `auth_failures` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::KeysUnavailable(_) => "keys_unavailable",
            AuthError::CertRequired => "cert_required",
            AuthError::CertIdentity(_) => "cert_identity",
            AuthError::Disagree => "disagree",
            AuthError::NotAccepted(_) => "not_accepted",
        }
    }

    /// The RFC 6750 `error` code of the challenge, when one applies.
    pub fn bearer_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing | AuthError::CertRequired | AuthError::CertIdentity(_) => None,
            AuthError::Malformed(_) | AuthError::Disagree | AuthError::NotAccepted(_) => {
                Some("invalid_request")
            }
            AuthError::UnknownKey | AuthError::InvalidToken(_) | AuthError::KeysUnavailable(_) => {
                Some("invalid_token")
            }
        }
    }
}

/// The authentication in force (rebuilt when the gateway file's `auth` changes).
pub struct Authenticator {
    auth: Auth,
    keys: keys::KeyTable,
    jwt: Option<jwt::JwtVerifier>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// The bearer credential of a request: `Authorization: Bearer …` or `X-API-Key`.
enum Presented<'a> {
    None,
    Bearer(&'a str),
    ApiKey(&'a str),
}

/// Read the one bearer credential of a request.
// INVARIANT: one credential header, given once: two `Authorization` headers, or an
// `Authorization` and an `X-API-Key`, are refused (readers would pick different ones).
fn presented(h: &HeaderMap) -> Result<Presented<'_>, AuthError> {
    let one = |name: &str| -> Result<Option<&str>, AuthError> {
        let mut all = h.get_all(name).iter();
        let first = all.next();
        if all.next().is_some() {
            return Err(AuthError::Malformed(format!(
                "`{name}` is given more than once"
            )));
        }
        first
            .map(|v| {
                v.to_str()
                    .map_err(|_| AuthError::Malformed(format!("`{name}` is not visible ascii")))
            })
            .transpose()
    };
    let authz = one("authorization")?;
    let key = one("x-api-key")?;
    match (authz, key) {
        (Some(_), Some(_)) => Err(AuthError::Malformed(
            "both `Authorization` and `X-API-Key` are given; send one".into(),
        )),
        (None, None) => Ok(Presented::None),
        (None, Some(k)) => Ok(Presented::ApiKey(k.trim_matches([' ', '\t']))),
        (Some(a), None) => {
            let a = a.trim_matches([' ', '\t']);
            let (scheme, rest) = a.split_once(' ').unwrap_or((a, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(AuthError::Malformed(
                    "the `Authorization` scheme must be `Bearer`".into(),
                ));
            }
            let token = rest.trim_start_matches(' ');
            // RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
            let body = token.trim_end_matches('=');
            if body.is_empty()
                || !body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
            {
                return Err(AuthError::Malformed(
                    "the bearer token is not a token68 value".into(),
                ));
            }
            Ok(Presented::Bearer(token))
        }
    }
}

impl Authenticator {
    /// The authenticator of `auth`.
    pub fn new(auth: &Auth) -> Authenticator {
        let (keys, jwt) = match auth {
            Auth::None { .. } => (keys::KeyTable::default(), None),
            Auth::Verified(m) => {
                let AuthMethods { api_keys, jwt, .. } = m.as_ref();
                (
                    keys::KeyTable::new(api_keys),
                    jwt.as_ref().map(|j| jwt::JwtVerifier::new(j.clone())),
                )
            }
        };
        Authenticator {
            auth: auth.clone(),
            keys,
            jwt,
        }
    }

    /// The configuration this authenticator was built from.
    pub fn config(&self) -> &Auth {
        &self.auth
    }

    /// The JWT verifier, when tokens are accepted.
    pub fn jwt(&self) -> Option<&jwt::JwtVerifier> {
        self.jwt.as_ref()
    }

    /// Authenticate one request to the gateway as a whole (`/mcp`, the AuthZEN API).
    pub async fn authenticate(
        &self,
        h: &HeaderMap,
        conn: &ConnInfo,
    ) -> Result<Authenticated, AuthError> {
        self.authenticate_for(h, conn, None).await
    }

    /// Authenticate one request to `/mcp/<server>` (`Some(server)`) or the gateway.
    pub async fn authenticate_for(
        &self,
        h: &HeaderMap,
        conn: &ConnInfo,
        server: Option<&str>,
    ) -> Result<Authenticated, AuthError> {
        let methods = match &self.auth {
            // INVARIANT: `none` exists only on loopback listeners (config and `serve`
            // both refuse it elsewhere); a credential sent anyway is not looked at.
            Auth::None { agent } => {
                return Ok(Authenticated {
                    agent: agent.clone(),
                    proof: vec![Proof::Fixed],
                    scopes: None,
                });
            }
            Auth::Verified(m) => m,
        };
        let mut found: Vec<(String, Proof)> = Vec::new();
        let mut scopes = None;
        if let Some(m) = &methods.mtls {
            let Some(cert) = &conn.client_cert else {
                return Err(AuthError::CertRequired);
            };
            let agent = cert.agent(m.agent_from)?;
            found.push((
                agent,
                Proof::Cert {
                    sha256: cert.sha256.clone(),
                },
            ));
        }
        match presented(h)? {
            Presented::None => {}
            Presented::ApiKey(k) => {
                if self.keys.is_empty() {
                    return Err(AuthError::NotAccepted("api key"));
                }
                let (agent, key_id) = self.keys.find(k).ok_or(AuthError::UnknownKey)?;
                found.push((agent, Proof::ApiKey { key_id }));
            }
            Presented::Bearer(t) if t.starts_with(keys::PREFIX) => {
                if self.keys.is_empty() {
                    return Err(AuthError::NotAccepted("api key"));
                }
                let (agent, key_id) = self.keys.find(t).ok_or(AuthError::UnknownKey)?;
                found.push((agent, Proof::ApiKey { key_id }));
            }
            Presented::Bearer(t) => {
                let Some(v) = &self.jwt else {
                    return Err(if self.keys.is_empty() {
                        AuthError::NotAccepted("bearer token")
                    } else {
                        AuthError::UnknownKey
                    });
                };
                let tok = v.verify(t, server).await?;
                scopes = Some(tok.scopes.clone());
                found.push((tok.agent.clone(), tok.proof()));
            }
        }
        let Some((agent, _)) = found.first() else {
            return Err(AuthError::Missing);
        };
        let agent = agent.clone();
        if found.iter().any(|(a, _)| a != &agent) {
            return Err(AuthError::Disagree);
        }
        Ok(Authenticated {
            agent,
            proof: found.into_iter().map(|(_, p)| p).collect(),
            scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn one_credential_header_only() {
        assert!(matches!(
            presented(&headers(&[
                ("authorization", "Bearer a"),
                ("authorization", "Bearer b")
            ])),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            presented(&headers(&[
                ("authorization", "Bearer a"),
                ("x-api-key", "b")
            ])),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            presented(&headers(&[("authorization", "Basic YTpi")])),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            presented(&headers(&[("authorization", "Bearer a,b")])),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            presented(&headers(&[("authorization", "bearer  abc==")])),
            Ok(Presented::Bearer("abc=="))
        ));
    }
}
