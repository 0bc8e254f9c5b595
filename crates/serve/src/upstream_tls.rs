//! TLS toward `https` upstreams, and every HTTP client the gateway builds.
//!
//! An `https` upstream is verified against the system's roots (reqwest's rustls backend
//! with the platform verifier), or, with `tls.ca`, against that CA only; `tls.cert` and
//! `tls.key` add the gateway's own client certificate. The host name is always verified
//! and there is no setting that turns verification off: a certificate the gateway cannot
//! verify ends the connection before any request is written (fail closed).
//!
//! Every `reqwest` client of the gateway comes from [`client_builder`]: the build uses
//! rustls with the *ring* provider (the one the listener uses too), installed as the
//! process default the first time, so that reqwest's own TLS set-up never has to pick a
//! provider (it would panic without one).

use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::Duration;

use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// `servers.<id>.tls` of an `https` server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// Trust only this CA (PEM, one or more certificates) instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// The gateway's client certificate chain (PEM), presented to the upstream.
    pub cert: Option<PathBuf>,
    /// The key of [`UpstreamTls::cert`] (PEM).
    pub key: Option<PathBuf>,
}

pub use crate::auth::mtls::TlsError as UpstreamTlsError;
use crate::auth::mtls::{certs, read};

static PROVIDER: Once = Once::new();

/// A `reqwest` client builder whose TLS set-up has its crypto provider. The only way
/// the gateway builds an HTTP client (clippy's `disallowed-methods` holds the others).
#[expect(
    clippy::disallowed_methods,
    reason = "the one place that builds reqwest clients: it installs the provider first"
)]
pub fn client_builder() -> reqwest::ClientBuilder {
    PROVIDER.call_once(|| {
        // Err: another part of the process installed one first; that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// The settings every client toward upstreams shares: no proxy from the environment,
/// bounded connects, pooled keep-alive connections, redirects never followed (an
/// upstream's redirect is its answer, not a new destination the gate did not decide).
pub fn upstream_client_builder() -> reqwest::ClientBuilder {
    client_builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .redirect(reqwest::redirect::Policy::none())
}

/// The rustls configuration of `tls`; `None` when it needs nothing but the system's
/// roots (the default client serves it). Read from the files each time (a rotated
/// certificate takes effect with the next connection to the upstream).
pub fn client_config(tls: &UpstreamTls) -> Result<Option<rustls::ClientConfig>, UpstreamTlsError> {
    if tls.ca.is_none() && tls.cert.is_none() {
        return Ok(None);
    }
    let provider = crate::auth::mtls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| UpstreamTlsError::Rustls(e.to_string()))?;
    let builder = match &tls.ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| UpstreamTlsError::Invalid {
                    path: ca.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
            builder.with_root_certificates(roots)
        }
        // A client certificate toward a server with a public certificate: the
        // system's roots, as the default client has them.
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(UpstreamTlsError::Rustls(
                    "the system has no root certificates: name the upstream's CA in `tls.ca`"
                        .into(),
                ));
            }
            builder.with_root_certificates(roots)
        }
    };
    let mut cfg = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert)?;
            let key_pem = read(key)?;
            let key_der =
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| UpstreamTlsError::Empty {
                    path: key.display().to_string(),
                    what: "pem private key",
                })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                UpstreamTlsError::Invalid {
                    path: cert.display().to_string(),
                    reason: e.to_string(),
                }
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(cfg))
}

/// The client for an upstream with `tls`: `default` when it needs only the system's
/// roots, else one of its own.
pub fn client_for(
    tls: Option<&UpstreamTls>,
    default: &reqwest::Client,
) -> Result<reqwest::Client, UpstreamTlsError> {
    let Some(cfg) = tls.map(client_config).transpose()?.flatten() else {
        return Ok(default.clone());
    };
    upstream_client_builder()
        .tls_backend_preconfigured(cfg)
        .build()
        .map_err(|e| UpstreamTlsError::Rustls(e.to_string()))
}

/// The errors `e` wraps, outermost first (at most 16). An `io::Error`'s `source()` skips
/// the error it wraps, so the walk steps into that one instead.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut cur = Some(e);
    std::iter::from_fn(move || {
        let err = cur?;
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
        Some(err)
    })
    .take(16)
}

/// What went wrong in TLS with an upstream, when that is why `e` failed: rustls's own
/// words (a certificate problem, a handshake alert), which carry no secret.
pub fn tls_reason(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    chain(e).find_map(|err| err.downcast_ref::<rustls::Error>().map(ToString::to_string))
}

/// Whether `e` is the peer closing the connection early (for an `https` upstream that
/// requires a client certificate, how most servers refuse a client without one).
pub fn closed_early(e: &(dyn std::error::Error + 'static)) -> bool {
    chain(e).any(|err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let none = UpstreamTls {
            ca: Some(dir.path().join("absent.pem")),
            ..UpstreamTls::default()
        };
        let e = client_config(&none).unwrap_err().to_string();
        assert!(e.contains("absent.pem") && e.contains("not found"), "{e}");
        std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
        let empty = UpstreamTls {
            ca: Some(dir.path().join("empty.pem")),
            ..UpstreamTls::default()
        };
        let e = client_config(&empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no pem certificate"),
            "{e}"
        );
    }

    #[test]
    fn without_settings_the_default_client_serves() {
        assert!(client_config(&UpstreamTls::default()).unwrap().is_none());
    }

    #[test]
    fn the_reason_of_a_wrapped_rustls_error_is_found() {
        // As tokio-rustls and hyper-util wrap it: an io error in an io error.
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, inner));
        let r = tls_reason(&io).unwrap();
        assert!(r.contains("invalid peer certificate"), "{r}");
        let plain = std::io::Error::other("connection refused");
        assert!(tls_reason(&plain).is_none());
    }
}
