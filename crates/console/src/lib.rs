//! The web console: pending approvals (approve or deny, with a scope), the audit
//! explorer (filters, each record's reasons, destinations and findings — detector
//! names and paths only —, chain verification and checkpoint), sessions and their
//! labels, and live updates (a small script polling one cheap endpoint).
//!
//! One [`router`] serves two hosts: `/console` on `conductor serve`, and
//! `conductor console --audit PATH` for `wrap` users. Pages are rendered on the
//! server; the stylesheet and the script are embedded (`include_str!`), nothing is
//! loaded from elsewhere.
//!
//! INVARIANT: only approvers act here. Every page but the login page and the assets
//! needs an approver login (a session cookie, `HttpOnly; SameSite=Strict`, `Secure`
//! when served over TLS); a request that presents an agent credential (`Authorization`,
//! `X-API-Key`) is refused with 403 whatever else it carries, so an agent's credential
//! can never approve.
//!
//! INVARIANT: every POST carries the CSRF token of its login (the login form: the token
//! of its pre-login cookie) and, when the browser sends `Origin`, comes from this
//! console's own origin; otherwise 403 before anything is done. Every response carries
//! a strict CSP (`default-src 'self'`, no inline script or style), `X-Frame-Options:
//! DENY` and `Cache-Control: no-store`.
//!
//! INVARIANT: the `Host` must be this console's (a loopback name, or one listed):
//! a DNS-rebinding page cannot talk to it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub mod approvals;
pub mod auth;
pub mod data;
mod pages;
pub mod view;

pub use approvals::Approvals;
pub use auth::{Approver, Approvers, ApproversError};

/// The session cookie.
pub const COOKIE: &str = "conductor_console";
/// The pre-login cookie (the login form's CSRF token).
pub const LOGIN_COOKIE: &str = "conductor_console_login";

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");

/// Largest request body the console reads.
const MAX_BODY: usize = 64 * 1024;

/// What a console is made of.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The audit database (records, session tables, approvals).
    pub audit: PathBuf,
    /// Who may log in.
    pub approvers: Approvers,
    /// Served over TLS: cookies get `Secure`.
    pub tls: bool,
    /// `Host` values accepted besides loopback names (`127.0.0.1`, `[::1]`,
    /// `localhost`, with any port), e.g. the gateway's public host.
    pub hosts: Vec<String>,
}

pub(crate) struct Console {
    pub(crate) opts: ConsoleOptions,
    pub(crate) sessions: auth::Sessions,
    pub(crate) approvals: Approvals,
    /// The last verification (when, and what it found).
    pub(crate) chain: Mutex<Option<(std::time::Instant, data::ChainStatus)>>,
}

pub(crate) type St = Arc<Console>;

/// The console's routes, all under `/console` (merge them into a host's router).
pub fn router(opts: ConsoleOptions) -> Router {
    let approvals = Approvals::new(&opts.audit);
    let st: St = Arc::new(Console {
        opts,
        sessions: auth::Sessions::default(),
        approvals,
        chain: Mutex::new(None),
    });
    Router::new()
        .route("/console", get(pages::home))
        .route("/console/", get(pages::home))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .route("/console/login", get(pages::login_form).post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/approvals", get(pages::approvals))
        .route("/console/approvals/{id}/approve", post(pages::approve))
        .route("/console/approvals/{id}/deny", post(pages::deny))
        .route("/console/grants/{id}/revoke", post(pages::revoke))
        .route("/console/audit", get(pages::audit))
        .route("/console/audit/{seq}", get(pages::record))
        .route("/console/sessions", get(pages::sessions))
        .route("/console/chain", get(pages::chain))
        .route("/console/api/live", get(pages::live))
        .route(
            "/console/{*rest}",
            get(pages::not_found).post(pages::not_found),
        )
        .layer(middleware::from_fn_with_state(Arc::clone(&st), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(st)
}

/// Run the console alone (`conductor console`) on `listener` until `shutdown` resolves:
/// the console's routes, and `/` sending people to them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    opts: ConsoleOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(opts).route(
        "/",
        get(|| async {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/console/"));
            secure_headers(r)
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A new approver key and the SHA-256 (hex) to put in the approvers file, or `None`
/// when the system's random number generator fails.
pub fn new_key() -> Option<(String, String)> {
    use sha2::Digest as _;
    let key = format!("cnd_approver_{}", auth::random_token()?);
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    Some((key, hash))
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(ct: &'static str, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// Whether `host` (a `Host` header value) names this console.
fn host_allowed(host: &str, extra: &[String]) -> bool {
    let h = host.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        // `[::1]:port`
        match rest.split_once(']') {
            Some((ip, tail)) if tail.is_empty() || port_ok(tail) => format!("[{ip}]"),
            _ => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((n, p)) if port_ok(&format!(":{p}")) => n.to_string(),
            Some(_) => return false,
            None => h.to_string(),
        }
    };
    let lower = name.to_ascii_lowercase();
    matches!(lower.as_str(), "127.0.0.1" | "[::1]" | "localhost")
        || extra.iter().any(|e| e.eq_ignore_ascii_case(h))
}

fn port_ok(tail: &str) -> bool {
    tail.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Refusals every request passes first, and the headers every response gets.
async fn guard(State(st): State<St>, req: Request, next: Next) -> Response {
    let h = req.headers();
    // INVARIANT: an agent credential is never accepted here, whatever else comes with it.
    let r = if h.contains_key(header::AUTHORIZATION) || h.contains_key("x-api-key") {
        pages::refuse(
            StatusCode::FORBIDDEN,
            "agent credentials are not accepted by the console: approvers log in with their approver key",
        )
    } else if !h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| host_allowed(v, &st.opts.hosts))
        || h.get_all(header::HOST).iter().count() > 1
    {
        pages::refuse(StatusCode::FORBIDDEN, "this host name is not the console's")
    } else if req.method() == Method::POST && !same_origin(h) {
        pages::refuse(
            StatusCode::FORBIDDEN,
            "cross-origin form posts are refused: use the console's own pages",
        )
    } else if req.method() != Method::GET
        && req.method() != Method::POST
        && req.method() != Method::HEAD
    {
        pages::refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else {
        next.run(req).await
    };
    secure_headers(r)
}

/// A POST is same-origin when the browser does not call it cross-site
/// (`Sec-Fetch-Site`) and its `Origin`, if any, is this host's. Chromium sends
/// `Origin: null` on some same-origin form posts (seen in the browser test): that is
/// accepted only together with `Sec-Fetch-Site: same-origin`.
fn same_origin(h: &HeaderMap) -> bool {
    let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site
        .is_some_and(|v| !v.eq_ignore_ascii_case("same-origin") && !v.eq_ignore_ascii_case("none"))
    {
        return false;
    }
    let Some(origin) = h.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (
        origin.to_str(),
        h.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    if origin == "null" {
        return site.is_some_and(|v| v.eq_ignore_ascii_case("same-origin"));
    }
    let host = host.trim();
    origin.eq_ignore_ascii_case(&format!("http://{host}"))
        || origin.eq_ignore_ascii_case(&format!("https://{host}"))
}

fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// The body of a form post as name/value pairs.
pub(crate) fn form(body: &Bytes) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).ok()
}

/// The value of `name` in a form, if it is there exactly once.
pub(crate) fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut it = f.iter().filter(|(k, _)| k == name);
    let first = it.next()?;
    // INVARIANT: a field given twice is not guessed between.
    if it.next().is_some() {
        return None;
    }
    Some(first.1.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_listed_hosts_are_the_console() {
        let extra = vec!["gw.example.com".to_string()];
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost:1",
            "[::1]:9",
            "LOCALHOST",
            "gw.example.com",
        ] {
            assert!(host_allowed(ok, &extra), "{ok}");
        }
        for bad in [
            "evil.example",
            "127.0.0.1.evil.example",
            "localhost.evil:80",
            "127.0.0.1:80x",
            "[::1]x",
            "127.0.0.2",
            "",
            "gw.example.com.evil",
        ] {
            assert!(!host_allowed(bad, &extra), "{bad}");
        }
    }

    #[test]
    fn duplicate_form_fields_are_not_guessed_between() {
        let f = form(&Bytes::from_static(b"csrf=a&csrf=b&x=1")).unwrap();
        assert_eq!(field(&f, "csrf"), None);
        assert_eq!(field(&f, "x"), Some("1"));
    }
}
