//! TLS on the listener (rustls, ring) and client certificates (mTLS).
//!
//! With `tls.client_ca`, the handshake requires a client certificate that chains to
//! one of those roots, is within its validity period and (with `tls.crl`) is not
//! revoked: rustls' `WebPkiClientVerifier` checks all of it, and a connection that
//! fails never reaches HTTP. The agent is then read from the verified leaf certificate
//! (`auth.mtls.agent_from`).
//!
//! INVARIANT: the agent comes only from a certificate the verifier accepted, and from
//! exactly one name: a certificate with two common names, or two SANs of the asked
//! kind, names no agent (readers would pick different ones).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::AuthError;

/// The `tls:` block of the gateway file (paths resolved against the file's folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub crl: Vec<PathBuf>,
}

/// Where the agent id of a client certificate is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentFrom {
    SubjectCn,
    SanDns,
    SanUri,
}

impl AgentFrom {
    pub fn parse(s: &str) -> Option<AgentFrom> {
        match s {
            "subject.cn" => Some(AgentFrom::SubjectCn),
            "san.dns" => Some(AgentFrom::SanDns),
            "san.uri" => Some(AgentFrom::SanUri),
            _ => None,
        }
    }
}

/// The `auth.mtls` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsConfig {
    pub agent_from: AgentFrom,
}

/// Why the TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{path}`: {reason}")]
    Read { path: String, reason: String },
    #[error("`{path}` holds no {what}")]
    Empty { path: String, what: &'static str },
    #[error("the tls configuration is not usable: {0}")]
    Rustls(String),
    #[error("`{path}`: {reason}")]
    Invalid { path: String, reason: String },
}

/// What a verified client certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Hex SHA-256 of the leaf certificate's DER.
    pub sha256: String,
    pub common_names: Vec<String>,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
}

fn valid_agent(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

impl ClientCert {
    /// Read the names of a leaf certificate (already verified by the handshake).
    pub fn from_der(der: &[u8]) -> Option<ClientCert> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_names = cert
            .subject()
            .iter_common_name()
            .map(|cn| cn.as_str().map(str::to_string))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let mut dns = Vec::new();
        let mut uris = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => dns.push((*d).to_string()),
                    GeneralName::URI(u) => uris.push((*u).to_string()),
                    _ => {}
                }
            }
        }
        Some(ClientCert {
            sha256: hex::encode(Sha256::digest(der)),
            common_names,
            dns,
            uris,
        })
    }

    /// The agent this certificate names.
    pub fn agent(&self, from: AgentFrom) -> Result<String, AuthError> {
        let (names, what) = match from {
            AgentFrom::SubjectCn => (&self.common_names, "subject common name"),
            AgentFrom::SanDns => (&self.dns, "dns subject alternative name"),
            AgentFrom::SanUri => (&self.uris, "uri subject alternative name"),
        };
        match names.as_slice() {
            [one] if valid_agent(one) => Ok(one.clone()),
            [] => Err(AuthError::CertIdentity(format!("it has no {what}"))),
            [_] => Err(AuthError::CertIdentity(format!(
                "its {what} is not an agent id"
            ))),
            _ => Err(AuthError::CertIdentity(format!(
                "it has more than one {what}"
            ))),
        }
    }
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        reason: e.kind().to_string().to_lowercase(),
    })
}

pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.display().to_string(),
            what: "pem certificate",
        });
    }
    Ok(certs)
}

/// The provider every TLS part of the gateway uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The listener's TLS configuration: certificate, key, and (with `client_ca`) the
/// client certificate verifier.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs(&tls.cert)?;
    let key_pem = read(&tls.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Empty {
        path: tls.key.display().to_string(),
        what: "pem private key",
    })?;
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Rustls(format!("`{}`: {e}", ca.display())))?;
            }
            let mut crls = Vec::new();
            for p in &tls.crl {
                let pem = read(p)?;
                let found: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&pem)
                    .filter_map(Result::ok)
                    .collect();
                if found.is_empty() {
                    return Err(TlsError::Empty {
                        path: p.display().to_string(),
                        what: "pem certificate revocation list",
                    });
                }
                crls.extend(found);
            }
            // INVARIANT: a client certificate is required (no `allow_unauthenticated`).
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The verified client certificate of an accepted connection, if any.
pub fn peer_cert(conn: &rustls::ServerConnection) -> Option<Arc<ClientCert>> {
    let leaf = conn.peer_certificates()?.first()?;
    ClientCert::from_der(leaf.as_ref()).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cns: &[&str], dns: &[&str]) -> ClientCert {
        ClientCert {
            sha256: "00".into(),
            common_names: cns.iter().map(|s| s.to_string()).collect(),
            dns: dns.iter().map(|s| s.to_string()).collect(),
            uris: vec![],
        }
    }

    #[test]
    fn exactly_one_name_names_the_agent() {
        assert_eq!(
            cert(&["bot"], &[]).agent(AgentFrom::SubjectCn).unwrap(),
            "bot"
        );
        assert!(cert(&["a", "b"], &[]).agent(AgentFrom::SubjectCn).is_err());
        assert!(cert(&["a"], &[]).agent(AgentFrom::SanDns).is_err());
        assert!(cert(&[], &["x", "y"]).agent(AgentFrom::SanDns).is_err());
        assert!(cert(&["a\nb"], &[]).agent(AgentFrom::SubjectCn).is_err());
    }
}
