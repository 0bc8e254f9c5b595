//! HTTP-level tests: the console router in-process, a real audit store on disk.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use conductor_audit::{AuditOptions, AuditStore, NewRecord};
use conductor_console::{Approver, Approvers, ConsoleOptions};
use serde_json::json;
use tower::ServiceExt as _;

pub const KEY: &str = "ak_test_6f1e0c9b2a7d4e3f8a1b0c2d3e4f5a6b";
/// An AWS-shaped secret used as the matched value of a stored finding (AWS's own
/// documentation example key, docs.aws.amazon.com "Managing access keys").
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub router: Router,
}

pub fn record(agent: &str, tool: &str, decision: &str, reasons: serde_json::Value) -> NewRecord {
    NewRecord {
        event: "tools/call".into(),
        agent: agent.into(),
        session: Some("sess-1".into()),
        workflow: None,
        server: Some(tool.split('.').next().unwrap_or("x").into()),
        tool: tool.into(),
        action: "read".into(),
        decision: decision.into(),
        reasons,
        destinations: json!([]),
        findings: json!([]),
        policy: "sha256:00".into(),
        request_digest: "sha256:11".into(),
        arguments: Some(json!({"q": "hello"})),
        latency_us: 12,
        auth: None,
    }
}

pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = AuditStore::open(&path, AuditOptions::default()).unwrap();
    store
        .append(record("research-bot", "fetch.fetch", "allow", json!([])))
        .unwrap();
    store
        .append(record(
            "research-bot",
            "github.delete_repo",
            "deny",
            json!([{"check": "tool", "rule": "roles.researcher.deny[0]", "message": "denied by rule"}]),
        ))
        .unwrap();
    let mut secret = record(
        "deploy-bot",
        "paste.create",
        "deny",
        json!([{"check": "data", "rule": "data.labels.credentials", "message": "a credential would reach a public destination"}]),
    );
    // As a store in `Full` arguments mode keeps it: the value itself.
    secret.arguments = Some(json!({"text": format!("key={SECRET}"), "title": "notes"}));
    secret.findings = json!([{"detector": "secrets.aws-secret-access-key", "label": "credentials",
        "pointer": "/text", "start": 4, "end": 44, "fingerprint": "hmac-sha256:abcd"}]);
    secret.destinations = json!([{"input": "https://paste.example/", "pointer": "/url", "scheme": "https",
        "host": "paste.example", "port": 443, "addresses": ["93.184.215.14"], "classes": []}]);
    store.append(secret).unwrap();
    store
        .append(record(
            "evil<script>alert(1)</script>",
            "x.<img src=x onerror=alert(1)>",
            "deny",
            json!([{"check": "identity", "rule": "agents", "message": "<b>unknown</b>"}]),
        ))
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let router = conductor_console::router(ConsoleOptions {
        audit: path,
        approvers: Approvers::new(vec![Approver::with_key("alice", KEY).unwrap()]).unwrap(),
        tls: false,
        hosts: vec![],
    });
    Env { dir, router }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

pub async fn send(router: &Router, req: Request<Body>) -> Resp {
    let r = router.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 22).await.unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri).header(header::HOST, "127.0.0.1:9");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

pub fn post(uri: &str, cookie: Option<&str>, form: &str) -> Request<Body> {
    let mut b = Request::post(uri)
        .header(header::HOST, "127.0.0.1:9")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(form.to_string())).unwrap()
}

fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn cookie_value(set: &str) -> String {
    set.split(';').next().unwrap().to_string()
}

fn hidden_csrf(body: &str) -> String {
    let i = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    body[i..i + 64].to_string()
}

fn enc(s: &str) -> String {
    conductor_console::view::q(s)
}

/// Log in as alice: the session cookie (`name=value`) and the CSRF token of the login.
pub async fn login(router: &Router) -> (String, String) {
    let page = send(router, get("/console/login", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    let pre = cookie_value(&set_cookie(&page, "conductor_console_login").unwrap());
    let token = hidden_csrf(&page.body);
    let r = send(
        router,
        post(
            "/console/login",
            Some(&pre),
            &format!("csrf={token}&name=alice&key={}", enc(KEY)),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = set_cookie(&r, "conductor_console").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = cookie_value(&set);
    let page = send(router, get("/console/audit", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = hidden_csrf(&page.body);
    (cookie, csrf)
}

#[tokio::test]
async fn csp_and_frame_headers_are_on_every_response() {
    let e = env();
    let (cookie, _) = login(&e.router).await;
    for (uri, c) in [
        ("/console/login", None),
        ("/console/assets/console.css", None),
        ("/console/assets/console.js", None),
        ("/console/audit", Some(cookie.as_str())),
        ("/console/nope", None),
        ("/console/audit", None),
    ] {
        let r = send(&e.router, get(uri, c)).await;
        let csp = r
            .headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{uri}: {csp}");
        assert!(!csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.headers.get("x-frame-options").unwrap(), "DENY", "{uri}");
        assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    }
}

#[tokio::test]
async fn pages_hold_no_inline_script_or_style() {
    let e = env();
    let (cookie, _) = login(&e.router).await;
    for uri in [
        "/console/login",
        "/console/audit",
        "/console/audit/3",
        "/console/sessions",
        "/console/chain",
        "/console/approvals",
    ] {
        let r = send(&e.router, get(uri, Some(&cookie))).await;
        // Every <script> names a src; no style attribute or element, no on* handler.
        for (i, _) in r.body.match_indices("<script") {
            assert!(
                r.body[i..].starts_with("<script src=\"/console/assets/"),
                "{uri}"
            );
        }
        assert!(!r.body.contains("<style"), "{uri}");
        // Inside every real tag (text `<` is escaped): no style attribute, no on* handler.
        for tag in r
            .body
            .split('<')
            .skip(1)
            .map(|t| t.split('>').next().unwrap_or(""))
        {
            assert!(!tag.contains(" style="), "{uri}: <{tag}>");
            let has_handler = tag.split_whitespace().skip(1).any(|a| {
                a.starts_with("on")
                    && a.split('=')
                        .next()
                        .is_some_and(|n| n.len() > 2 && n.chars().all(|c| c.is_ascii_lowercase()))
            });
            assert!(!has_handler, "{uri}: <{tag}>");
        }
    }
}

#[tokio::test]
async fn bad_login_is_refused_and_sets_no_session() {
    let e = env();
    let page = send(&e.router, get("/console/login", None)).await;
    let pre = cookie_value(&set_cookie(&page, "conductor_console_login").unwrap());
    let token = hidden_csrf(&page.body);
    for form in [
        format!("csrf={token}&name=alice&key=wrong"),
        format!("csrf={token}&name=bob&key={}", enc(KEY)),
        format!("csrf={token}&name=alice&key="),
        format!("csrf={token}&name=alice&key={}&key=x", enc(KEY)),
    ] {
        let r = send(&e.router, post("/console/login", Some(&pre), &form)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{form}");
        assert!(set_cookie(&r, "conductor_console").is_none());
        assert!(r.body.contains("do not match an approver"));
    }
}

#[tokio::test]
async fn repeated_bad_logins_pause_that_name() {
    let e = env();
    let page = send(&e.router, get("/console/login", None)).await;
    let pre = cookie_value(&set_cookie(&page, "conductor_console_login").unwrap());
    let token = hidden_csrf(&page.body);
    let mut last = StatusCode::OK;
    for _ in 0..6 {
        last = send(
            &e.router,
            post(
                "/console/login",
                Some(&pre),
                &format!("csrf={token}&name=alice&key=guess"),
            ),
        )
        .await
        .status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // Even the right key waits now.
    let r = send(
        &e.router,
        post(
            "/console/login",
            Some(&pre),
            &format!("csrf={token}&name=alice&key={}", enc(KEY)),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn login_without_its_csrf_token_is_refused() {
    let e = env();
    let page = send(&e.router, get("/console/login", None)).await;
    let pre = cookie_value(&set_cookie(&page, "conductor_console_login").unwrap());
    let token = hidden_csrf(&page.body);
    let key = enc(KEY);
    for (cookie, form) in [
        (None, format!("csrf={token}&name=alice&key={key}")),
        (Some(pre.clone()), format!("name=alice&key={key}")),
        (
            Some(pre.clone()),
            format!("csrf={}&name=alice&key={key}", "0".repeat(64)),
        ),
        (
            Some(pre.clone()),
            format!("csrf={token}&csrf={token}&name=alice&key={key}"),
        ),
        (
            Some(format!("{pre}; {pre}")),
            format!("csrf={token}&name=alice&key={key}"),
        ),
    ] {
        let r = send(&e.router, post("/console/login", cookie.as_deref(), &form)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{cookie:?} {form}");
        assert!(set_cookie(&r, "conductor_console").is_none());
    }
}

#[tokio::test]
async fn post_without_csrf_is_403() {
    let e = env();
    let (cookie, csrf) = login(&e.router).await;
    for uri in [
        "/console/logout",
        "/console/approvals/0123/approve",
        "/console/approvals/0123/deny",
        "/console/grants/0123/revoke",
    ] {
        for form in [
            "reason=x".to_string(),
            format!("csrf={}&reason=x", "a".repeat(64)),
            format!("csrf={csrf}&csrf={csrf}&reason=x"),
            format!("csrf={}&reason=x", &csrf[..63]),
        ] {
            let r = send(&e.router, post(uri, Some(&cookie), &form)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri} {form}");
        }
    }
    // The login still works: the refused logout did nothing.
    let r = send(&e.router, get("/console/audit", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    // And with the token, logout ends it.
    let r = send(
        &e.router,
        post("/console/logout", Some(&cookie), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = send(&e.router, get("/console/audit", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn agent_credentials_get_403_everywhere() {
    let e = env();
    let (cookie, csrf) = login(&e.router).await;
    let routes: &[(&str, &str)] = &[
        ("GET", "/console"),
        ("GET", "/console/login"),
        ("POST", "/console/login"),
        ("GET", "/console/approvals"),
        ("POST", "/console/approvals/0123/approve"),
        ("POST", "/console/approvals/0123/deny"),
        ("POST", "/console/grants/0123/revoke"),
        ("GET", "/console/audit"),
        ("GET", "/console/audit/1"),
        ("GET", "/console/sessions"),
        ("GET", "/console/chain"),
        ("GET", "/console/api/live"),
        ("GET", "/console/assets/console.js"),
    ];
    for (m, uri) in routes {
        for (name, value) in [
            ("authorization", "Bearer cnd_agent_key_0123456789abcdef"),
            ("authorization", &format!("Bearer {KEY}") as &str),
            ("x-api-key", "cnd_agent_key_0123456789abcdef"),
        ] {
            // Even together with a valid approver login and token.
            let req = Request::builder()
                .method(*m)
                .uri(*uri)
                .header(header::HOST, "127.0.0.1:9")
                .header(header::COOKIE, &cookie)
                .header(name, value)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("csrf={csrf}&scope=call")))
                .unwrap();
            let r = send(&e.router, req).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {uri} {name}");
        }
    }
}

#[tokio::test]
async fn pages_need_a_login() {
    let e = env();
    for uri in [
        "/console/approvals",
        "/console/audit",
        "/console/audit/1",
        "/console/sessions",
        "/console/chain",
        "/console/",
    ] {
        let r = send(&e.router, get(uri, None)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(r.headers.get("location").unwrap(), "/console/login");
        let r = send(&e.router, get(uri, Some("conductor_console=forged"))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{uri}");
    }
    let r = send(&e.router, get("/console/api/live", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_foreign_host_is_refused() {
    // DNS rebinding: a page on another name that resolves to 127.0.0.1.
    let e = env();
    for host in ["evil.example", "127.0.0.1.nip.example:9", "localhost.evil"] {
        let req = Request::get("/console/login")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            send(&e.router, req).await.status,
            StatusCode::FORBIDDEN,
            "{host}"
        );
    }
}

#[tokio::test]
async fn cross_origin_posts_are_refused() {
    let e = env();
    let (cookie, csrf) = login(&e.router).await;
    for (h, v) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let req = Request::post("/console/logout")
            .header(header::HOST, "127.0.0.1:9")
            .header(header::COOKIE, &cookie)
            .header(h, v)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap();
        assert_eq!(
            send(&e.router, req).await.status,
            StatusCode::FORBIDDEN,
            "{h}: {v}"
        );
    }
    // Its own origin passes.
    let req = Request::post("/console/logout")
        .header(header::HOST, "127.0.0.1:9")
        .header(header::COOKIE, &cookie)
        .header("origin", "http://127.0.0.1:9")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    assert_eq!(send(&e.router, req).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn audit_filters_select_records() {
    let e = env();
    let (cookie, _) = login(&e.router).await;
    let rows = |body: &str| body.matches("<tr data-seq=").count();
    let all = send(&e.router, get("/console/audit", Some(&cookie))).await;
    assert_eq!(rows(&all.body), 4);
    assert!(all.body.contains("hash chain verified: 4 records"));
    let r = send(
        &e.router,
        get("/console/audit?decision=deny", Some(&cookie)),
    )
    .await;
    assert_eq!(rows(&r.body), 3);
    let r = send(
        &e.router,
        get(
            "/console/audit?agent=research-*&decision=deny",
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(rows(&r.body), 1);
    assert!(r.body.contains("github.delete_repo"));
    let r = send(&e.router, get("/console/audit?check=data", Some(&cookie))).await;
    assert_eq!(rows(&r.body), 1);
    assert!(r.body.contains("paste.create"));
    let r = send(&e.router, get("/console/audit?tool=fetch.*", Some(&cookie))).await;
    assert_eq!(rows(&r.body), 1);
    let r = send(
        &e.router,
        get("/console/audit?since=2999-01-01", Some(&cookie)),
    )
    .await;
    assert_eq!(rows(&r.body), 0);
    let r = send(
        &e.router,
        get("/console/audit?until=2999-01-01T00:00", Some(&cookie)),
    )
    .await;
    assert_eq!(rows(&r.body), 4);
    // A time that cannot be read selects nothing (not everything).
    let r = send(
        &e.router,
        get("/console/audit?since=yesterday-ish", Some(&cookie)),
    )
    .await;
    assert_eq!(rows(&r.body), 0);
    assert!(r.body.contains("is not a time"));
}

#[tokio::test]
async fn findings_show_detector_and_path_never_the_value() {
    let e = env();
    let (cookie, _) = login(&e.router).await;
    let r = send(&e.router, get("/console/audit/3", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("secrets.aws-secret-access-key"));
    assert!(r.body.contains("/text"));
    assert!(r.body.contains("[REDACTED:credentials]"));
    assert!(r.body.contains("paste.example") && r.body.contains("93.184.215.14"));
    for uri in [
        "/console/audit/3",
        "/console/audit",
        "/console/audit?check=data",
    ] {
        let r = send(&e.router, get(uri, Some(&cookie))).await;
        assert!(!r.body.contains(SECRET), "{uri} shows the secret");
        assert!(
            !r.body.contains("EXAMPLEKEY"),
            "{uri} shows part of the secret"
        );
    }
}

#[tokio::test]
async fn markup_from_agents_and_tools_is_escaped() {
    let e = env();
    let (cookie, _) = login(&e.router).await;
    for uri in ["/console/audit", "/console/audit/4", "/console/sessions"] {
        let r = send(&e.router, get(uri, Some(&cookie))).await;
        assert!(!r.body.contains("<script>alert"), "{uri}");
        assert!(!r.body.contains("<img src=x"), "{uri}");
        assert!(!r.body.contains("<b>unknown"), "{uri}");
    }
    let r = send(&e.router, get("/console/audit/4", Some(&cookie))).await;
    assert!(r.body.contains("evil&lt;script&gt;"));
    // A query value reflected into the filter form is escaped too.
    let r = send(
        &e.router,
        get("/console/audit?agent=%22%3E%3Cscript%3Ex", Some(&cookie)),
    )
    .await;
    assert!(!r.body.contains("\"><script>x"));
}

#[tokio::test]
async fn sessions_page_shows_the_agents_labels() {
    let e = env();
    let (cookie, _) = login(&e.router).await;
    let path = e.dir.path().join("audit.db");
    let store = conductor_gate::SqliteStore::open(&path).unwrap();
    use conductor_gate::SessionStore as _;
    store
        .raise(
            &conductor_gate::TaintKey {
                agent: "research-bot".into(),
                workflow: None,
            },
            &["personal".to_string()],
            conductor_audit::time::now_micros() + 3_600_000_000,
        )
        .unwrap();
    let r = send(&e.router, get("/console/sessions", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("<span class=\"label\">personal</span>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("sess-1"));
    assert!(r.body.contains("research-bot"));
}

#[tokio::test]
async fn a_tampered_chain_is_shown_broken_without_a_checkpoint() {
    let e = env();
    let (cookie, _) = login(&e.router).await;
    let r = send(&e.router, get("/console/chain", Some(&cookie))).await;
    assert!(r.body.contains("hash chain verified: 4 records"));
    assert!(
        r.body
            .contains("id=\"checkpoint\">conductor.invalid/audit/")
    );
    let path = e.dir.path().join("audit.db");
    let conn = conductor_audit::rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE records SET record = replace(record, 'fetch.fetch', 'fetch.fetcH') WHERE seq = 1",
        [],
    )
    .unwrap();
    drop(conn);
    let r = send(&e.router, get("/console/chain", Some(&cookie))).await;
    assert!(r.body.contains("chain broken at record 1"), "{}", r.body);
    assert!(!r.body.contains("id=\"checkpoint\""));
    // The explorer shows the verification the chain page just made.
    let r = send(&e.router, get("/console/audit", Some(&cookie))).await;
    assert!(r.body.contains("chain broken at record 1"));
}

#[tokio::test]
async fn live_endpoint_reports_the_head() {
    let e = env();
    let (cookie, _) = login(&e.router).await;
    let r = send(&e.router, get("/console/api/live", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["head"], 4);
}
