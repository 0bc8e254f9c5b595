//! The handlers: login, approvals, the audit explorer, sessions, chain, live.

#![expect(
    clippy::result_large_err,
    reason = "an early answer is a whole `Response`; these functions run once per request"
)]

use std::fmt::Write as _;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::approvals::ScopeChoice;
use crate::auth::{self, Login};
use crate::data::{self, AuditQuery};
use crate::view::{self, BASE, Nav, Who, attr, badge, text, text_max};
use crate::{COOKIE, LOGIN_COOKIE, St, field, form};

/// A small page that says why a request was refused.
pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    let body = view::page(
        "Refused",
        Nav::None,
        None,
        &format!(
            "<section class=\"card narrow\"><h1>{}</h1><p>{}</p><p><a href=\"{BASE}/login\">Log in</a></p></section>",
            status.as_u16(),
            text(message)
        ),
    );
    html(status, body)
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn redirect(to: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn set_cookie(r: &mut Response, st: &St, name: &str, value: &str, max_age: Option<u64>) {
    let secure = if st.opts.tls { "; Secure" } else { "" };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    let c = format!("{name}={value}; Path={BASE}; HttpOnly; SameSite=Strict{secure}{age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn cookie_header(h: &HeaderMap) -> Option<&str> {
    // Several `Cookie` headers: refused as a whole (not guessed between).
    if h.get_all(header::COOKIE).iter().count() != 1 {
        return None;
    }
    h.get(header::COOKIE).and_then(|v| v.to_str().ok())
}

struct Authed {
    id: String,
    login: Login,
}

fn current(st: &St, h: &HeaderMap) -> Option<Authed> {
    let id = auth::cookie(cookie_header(h), COOKIE)?;
    let login = st.sessions.get(id)?;
    Some(Authed {
        id: id.to_string(),
        login,
    })
}

fn who(a: &Authed) -> Who<'_> {
    Who {
        approver: &a.login.approver,
        csrf: &a.login.csrf,
    }
}

/// The login (for a GET page): or a redirect to the login page.
fn need(st: &St, h: &HeaderMap) -> Result<Authed, Response> {
    current(st, h).ok_or_else(|| redirect(&format!("{BASE}/login")))
}

/// The login of a POST whose CSRF token matches: or 401/403.
fn need_post(st: &St, h: &HeaderMap, f: &[(String, String)]) -> Result<Authed, Response> {
    let Some(a) = current(st, h) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "log in as an approver first",
        ));
    };
    // INVARIANT: the token of this login, exactly once, compared in constant time.
    match field(f, "csrf") {
        Some(t) if auth::ct_eq(t.as_bytes(), a.login.csrf.as_bytes()) => Ok(a),
        _ => Err(refuse(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong: reload the page and try again",
        )),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| "the reading task failed".to_string())?
}

fn error_box(message: &str) -> String {
    format!("<div class=\"alert alert-bad\">{}</div>", text(message))
}

pub(crate) async fn home(State(st): State<St>, h: HeaderMap) -> Response {
    match current(&st, &h) {
        Some(_) => redirect(&format!("{BASE}/approvals")),
        None => redirect(&format!("{BASE}/login")),
    }
}

pub(crate) async fn not_found(State(st): State<St>, h: HeaderMap) -> Response {
    match current(&st, &h) {
        Some(a) => html(
            StatusCode::NOT_FOUND,
            view::page(
                "Not found",
                Nav::None,
                Some(&who(&a)),
                "<section class=\"card narrow\"><h1>Not found</h1><p>No such page.</p></section>",
            ),
        ),
        None => refuse(StatusCode::NOT_FOUND, "no such page"),
    }
}

// ------------------------------------------------------------------------------------
// Login
// ------------------------------------------------------------------------------------

fn login_page(st: &St, status: StatusCode, message: Option<&str>) -> Response {
    let Some(token) = auth::random_token() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the system's random number generator failed: nobody can log in",
        );
    };
    let mut body = String::from(
        "<section class=\"card narrow login\"><h1>Approver login</h1>\
         <p class=\"muted\">People approve and deny held calls here. Agents cannot log in.</p>",
    );
    if let Some(m) = message {
        body.push_str(&error_box(m));
    }
    if st.opts.approvers.is_empty() {
        body.push_str(&error_box(
            "no approver accounts are configured: start the console with an approvers file",
        ));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{BASE}/login\" class=\"stack\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Name <input name=\"name\" id=\"name\" autocomplete=\"username\" required maxlength=\"64\"></label>\
         <label>Approver key <input name=\"key\" id=\"key\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"512\"></label>\
         <button type=\"submit\" class=\"primary\" id=\"login\">Log in</button></form></section>",
        attr(&token)
    );
    let mut r = html(status, view::page("Log in", Nav::None, None, &body));
    set_cookie(&mut r, st, LOGIN_COOKIE, &token, Some(600));
    r
}

pub(crate) async fn login_form(State(st): State<St>, h: HeaderMap) -> Response {
    if current(&st, &h).is_some() {
        return redirect(&format!("{BASE}/approvals"));
    }
    login_page(&st, StatusCode::OK, None)
}

pub(crate) async fn login(State(st): State<St>, h: HeaderMap, body: Bytes) -> Response {
    let Some(f) = form(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the form cannot be read");
    };
    // INVARIANT: the login form's token must match its pre-login cookie (login CSRF).
    let pre = auth::cookie(cookie_header(&h), LOGIN_COOKIE);
    match (pre, field(&f, "csrf")) {
        (Some(c), Some(t)) if !c.is_empty() && auth::ct_eq(c.as_bytes(), t.as_bytes()) => {}
        _ => {
            return refuse(
                StatusCode::FORBIDDEN,
                "the login form's CSRF token is missing or wrong: reload the login page",
            );
        }
    }
    let name = field(&f, "name").unwrap_or_default();
    let key = field(&f, "key").unwrap_or_default();
    if st.sessions.throttled(name) {
        return login_page(
            &st,
            StatusCode::TOO_MANY_REQUESTS,
            Some("too many failed logins: wait a few minutes"),
        );
    }
    let Some(approver) = st.opts.approvers.check(name, key).map(|a| a.name.clone()) else {
        st.sessions.failed(name);
        tracing::warn!("console login failed");
        return login_page(
            &st,
            StatusCode::UNAUTHORIZED,
            Some("that name and key do not match an approver"),
        );
    };
    let Some((id, _csrf)) = st.sessions.start(&approver) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the system's random number generator failed: nobody can log in",
        );
    };
    tracing::info!(approver = %approver, "console login");
    let mut r = redirect(&format!("{BASE}/approvals"));
    set_cookie(&mut r, &st, COOKIE, &id, None);
    set_cookie(&mut r, &st, LOGIN_COOKIE, "", Some(0));
    r
}

pub(crate) async fn logout(State(st): State<St>, h: HeaderMap, body: Bytes) -> Response {
    let Some(f) = form(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the form cannot be read");
    };
    let a = match need_post(&st, &h, &f) {
        Ok(a) => a,
        Err(r) => return r,
    };
    st.sessions.end(&a.id);
    let mut r = redirect(&format!("{BASE}/login"));
    set_cookie(&mut r, &st, COOKIE, "", Some(0));
    r
}

// ------------------------------------------------------------------------------------
// Approvals
// ------------------------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Flash {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn reasons_list(reasons: &Value) -> String {
    let mut out = String::from("<ul class=\"reasons\">");
    for r in reasons.as_array().map(Vec::as_slice).unwrap_or_default() {
        let _ = write!(
            out,
            "<li><span class=\"check\">{}</span> <code>{}</code> {}</li>",
            text_max(s(r, "check"), 40),
            text_max(s(r, "rule"), 120),
            text_max(s(r, "message"), 400)
        );
    }
    out.push_str("</ul>");
    out
}

pub(crate) async fn approvals(
    State(st): State<St>,
    h: HeaderMap,
    Query(flash): Query<Flash>,
) -> Response {
    let a = match need(&st, &h) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let store = st.approvals.clone();
    let got = blocking(move || Ok((store.pending(), store.grants(), store.recent()))).await;
    let mut body = String::from("<h1>Pending approvals</h1>");
    if let (Some(done), Some(id)) = (flash.done.as_deref(), flash.id.as_deref()) {
        let what = match done {
            "approved" => "approved: the held call is released",
            "denied" => "denied: the held call is refused",
            "revoked" => "revoked: the grant no longer releases calls",
            _ => "",
        };
        if !what.is_empty() {
            let _ = write!(
                body,
                "<div class=\"alert alert-ok\" id=\"flash\"><code>{}</code> {what}</div>",
                text_max(id, 64)
            );
        }
    }
    match got {
        Err(e) => body.push_str(&error_box(&e)),
        Ok((pending, grants, recent)) => {
            match pending {
                Err(e) => body.push_str(&error_box(&e)),
                Ok(list) if list.is_empty() => body.push_str(
                    "<p class=\"empty\" id=\"no-pending\">No call is waiting for a decision.</p>",
                ),
                Ok(list) => {
                    body.push_str("<div class=\"cards\" id=\"pending\">");
                    for p in &list {
                        body.push_str(&pending_card(p, &a.login.csrf));
                    }
                    body.push_str("</div>");
                }
            }
            if let Ok(g) = grants {
                body.push_str("<h2>Standing grants</h2>");
                if g.is_empty() {
                    body.push_str("<p class=\"empty\">No grant is in force.</p>");
                } else {
                    body.push_str(
                        "<table><thead><tr><th>Grant</th><th>Agent</th><th>Tool</th><th>Scope</th><th>Expires</th><th>By</th><th></th></tr></thead><tbody>",
                    );
                    for x in &g {
                        let _ = write!(
                            body,
                            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"time\">{}</td><td>{}</td>\
                             <td><form method=\"post\" action=\"{BASE}/grants/{}/revoke\" class=\"inline\">\
                             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                             <button class=\"danger small\" type=\"submit\">Revoke</button></form></td></tr>",
                            text_max(s(x, "id"), 12),
                            text_max(s(x, "agent"), 80),
                            text_max(s(x, "tool"), 120),
                            text_max(s(x, "scope"), 20),
                            text_max(s(x, "expires"), 40),
                            text_max(s(x, "approver"), 64),
                            view::q(s(x, "id")),
                            attr(&a.login.csrf)
                        );
                    }
                    body.push_str("</tbody></table>");
                }
            }
            if let Ok(r) = recent
                && !r.is_empty()
            {
                body.push_str("<h2>Recently decided</h2><table><thead><tr><th>Id</th><th>Agent</th><th>Tool</th><th>Status</th><th>By</th><th>When</th></tr></thead><tbody>");
                for x in r.iter().take(20) {
                    let _ = write!(
                        body,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"time\">{}</td></tr>",
                        text_max(s(x, "id"), 12),
                        text_max(s(x, "agent"), 80),
                        text_max(s(x, "tool"), 120),
                        badge(s(x, "status")),
                        text_max(s(x, "decided_by"), 64),
                        text_max(s(x, "decided_at"), 40),
                    );
                }
                body.push_str("</tbody></table>");
            }
        }
    }
    html(
        StatusCode::OK,
        view::page("Approvals", Nav::Approvals, Some(&who(&a)), &body),
    )
}

fn pending_card(p: &Value, csrf: &str) -> String {
    let id = s(p, "id");
    let qid = view::q(id);
    let mut c = String::new();
    let _ = write!(
        c,
        "<article class=\"card pending\" data-id=\"{}\"><header><span class=\"tool\">{}</span> {} \
         <span class=\"muted\">by</span> <span class=\"agent\">{}</span></header>",
        attr(&text_max(id, 64)),
        text_max(s(p, "tool"), 120),
        badge("pending"),
        text_max(s(p, "agent"), 80),
    );
    let _ = write!(
        c,
        "<dl class=\"facts\"><dt>Id</dt><dd><code>{}</code></dd><dt>Action</dt><dd>{}</dd>\
         <dt>Session</dt><dd>{}</dd><dt>Workflow</dt><dd>{}</dd>\
         <dt>Held since</dt><dd class=\"time\">{}</dd><dt>Expires</dt><dd class=\"time\">{}</dd>\
         <dt>Request</dt><dd><code>{}</code></dd></dl>",
        text_max(id, 64),
        text_max(s(p, "action"), 20),
        text_max(s(p, "session"), 80),
        text_max(s(p, "workflow"), 80),
        text_max(s(p, "created"), 40),
        text_max(s(p, "expires"), 40),
        text_max(s(p, "request_digest"), 80),
    );
    c.push_str("<h3>Why approval is needed</h3>");
    c.push_str(&reasons_list(p.get("reasons").unwrap_or(&Value::Null)));
    c.push_str("<h3>Arguments <span class=\"muted\">(as recorded: redacted)</span></h3>");
    c.push_str(&view::json_block(
        p.get("arguments").unwrap_or(&Value::Null),
    ));
    let _ = write!(
        c,
        "<div class=\"actions\"><form method=\"post\" action=\"{BASE}/approvals/{qid}/approve\" class=\"approve-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>Scope <select name=\"scope\">\
         <option value=\"call\" selected>This call only</option>\
         <option value=\"session\">This call again in this session</option>\
         <option value=\"window\">This agent and tool, matching arguments</option></select></label>\
         <label>For <select name=\"for\"><option value=\"900\">15 minutes</option><option value=\"3600\" selected>1 hour</option>\
         <option value=\"28800\">8 hours</option><option value=\"86400\">1 day</option></select></label>\
         <label class=\"wide\">Argument pattern <span class=\"muted\">(window: one <code>/pointer=glob</code> per line; empty: the same arguments)</span>\
         <textarea name=\"pattern\" rows=\"2\" maxlength=\"2000\"></textarea></label>\
         <button type=\"submit\" class=\"primary approve\">Approve</button></form>\
         <form method=\"post\" action=\"{BASE}/approvals/{qid}/deny\" class=\"deny-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label class=\"wide\">Reason <input name=\"reason\" maxlength=\"500\" placeholder=\"why this call is refused\" required></label>\
         <button type=\"submit\" class=\"danger deny\">Deny</button></form></div></article>",
        csrf = attr(csrf),
    );
    c
}

/// The scope an approve form asks for.
fn scope_of(f: &[(String, String)]) -> Result<ScopeChoice, String> {
    let seconds = || -> Result<u64, String> {
        let v = field(f, "for").unwrap_or("3600");
        v.parse::<u64>()
            .ok()
            .filter(|s| (60..=7 * 86_400).contains(s))
            .ok_or_else(|| format!("the duration `{}` must be 60 s to 7 days", text_max(v, 20)))
    };
    match field(f, "scope").unwrap_or("call") {
        "call" => Ok(ScopeChoice::Call),
        "session" => Ok(ScopeChoice::Session {
            seconds: seconds()?,
        }),
        "window" => {
            let mut pattern = Vec::new();
            for line in field(f, "pattern").unwrap_or("").lines() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let (p, g) = line
                    .split_once('=')
                    .filter(|(p, _)| p.starts_with('/'))
                    .ok_or_else(|| {
                        format!(
                            "pattern line `{}` must be `/pointer=glob`",
                            text_max(line, 80)
                        )
                    })?;
                pattern.push((p.to_string(), g.to_string()));
            }
            Ok(ScopeChoice::Window {
                seconds: seconds()?,
                pattern,
            })
        }
        other => Err(format!(
            "scope `{}` must be call, session or window",
            text_max(other, 20)
        )),
    }
}

fn decided(a: &Authed, r: Result<(), String>, done: &str, id: &str) -> Response {
    match r {
        Ok(()) => redirect(&format!("{BASE}/approvals?done={done}&id={}", view::q(id))),
        Err(e) => html(
            StatusCode::CONFLICT,
            view::page(
                "Approvals",
                Nav::Approvals,
                Some(&who(a)),
                &format!(
                    "<h1>Not done</h1>{}<p><a href=\"{BASE}/approvals\">Back to the approvals</a></p>",
                    error_box(&e)
                ),
            ),
        ),
    }
}

pub(crate) async fn approve(
    State(st): State<St>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the form cannot be read");
    };
    let a = match need_post(&st, &h, &f) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let scope = match scope_of(&f) {
        Ok(s) => s,
        Err(e) => return decided(&a, Err(e), "", &id),
    };
    let store = st.approvals.clone();
    let (who_, id2) = (a.login.approver.clone(), id.clone());
    let r = blocking(move || store.approve(&id2, &who_, &scope)).await;
    if r.is_ok() {
        tracing::info!(approver = %a.login.approver, approval = %id, "approved in the console");
    }
    decided(&a, r, "approved", &id)
}

pub(crate) async fn deny(
    State(st): State<St>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the form cannot be read");
    };
    let a = match need_post(&st, &h, &f) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let reason = field(&f, "reason").unwrap_or("").trim().to_string();
    if reason.is_empty() {
        return decided(&a, Err("a denial needs a reason".into()), "", &id);
    }
    let store = st.approvals.clone();
    let (who_, id2) = (a.login.approver.clone(), id.clone());
    let r = blocking(move || store.deny(&id2, &who_, &reason)).await;
    decided(&a, r, "denied", &id)
}

pub(crate) async fn revoke(
    State(st): State<St>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the form cannot be read");
    };
    let a = match need_post(&st, &h, &f) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let store = st.approvals.clone();
    let (who_, id2) = (a.login.approver.clone(), id.clone());
    let r = blocking(move || store.revoke(&id2, &who_)).await;
    decided(&a, r, "revoked", &id)
}

// ------------------------------------------------------------------------------------
// Audit explorer
// ------------------------------------------------------------------------------------

const CHECKS: &[&str] = &[
    "identity",
    "tool",
    "role",
    "workflow",
    "destination",
    "data",
    "flow",
    "pin",
    "input",
    "audit",
    "approval",
];

fn chain_summary(c: &Result<data::ChainStatus, String>) -> String {
    match c {
        Err(e) => format!(
            "<div class=\"chain chain-bad\" id=\"chain-status\">{} chain cannot be read: {}</div>",
            badge("broken"),
            text(e)
        ),
        Ok(c) => match &c.broken {
            None => format!(
                "<div class=\"chain chain-ok\" id=\"chain-status\">{} hash chain verified: {} records · head <code>{}</code> · <a href=\"{BASE}/chain\">checkpoint</a></div>",
                badge("intact"),
                c.verified,
                text_max(c.head.as_ref().map(|h| h.1.as_str()).unwrap_or("none"), 24)
            ),
            Some((seq, kind, msg)) => format!(
                "<div class=\"chain chain-bad\" id=\"chain-status\">{} chain broken at record {seq} ({}): {} · <a href=\"{BASE}/chain\">details</a></div>",
                badge("broken"),
                text(kind),
                text(msg)
            ),
        },
    }
}

/// How long the explorer reuses a verification of an unchanged head (the chain page
/// always verifies afresh).
const CHAIN_REUSE: std::time::Duration = std::time::Duration::from_secs(10);

/// The chain's verification: reused for [`CHAIN_REUSE`] while the head is the same,
/// unless `fresh`.
async fn chain_status(st: &St, fresh: bool) -> Result<data::ChainStatus, String> {
    let path = st.opts.audit.clone();
    let head = blocking(move || data::head(&path).map_err(|e| e.to_string())).await?;
    if !fresh
        && let Ok(g) = st.chain.lock()
        && let Some((at, c)) = g.as_ref()
        && c.head == head
        && at.elapsed() < CHAIN_REUSE
    {
        return Ok(c.clone());
    }
    let path = st.opts.audit.clone();
    let c = blocking(move || data::verify(&path).map_err(|e| e.to_string())).await?;
    if let Ok(mut g) = st.chain.lock() {
        *g = Some((std::time::Instant::now(), c.clone()));
    }
    Ok(c)
}

fn opt(v: &Option<String>) -> String {
    attr(&text_max(v.as_deref().unwrap_or(""), 200))
}

pub(crate) async fn audit(
    State(st): State<St>,
    h: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let a = match need(&st, &h) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let chain = chain_status(&st, false).await;
    let path = st.opts.audit.clone();
    let q2 = q.clone();
    let page = blocking(move || data::records(&path, &q2).map_err(|e| e.to_string())).await;
    let mut body = String::from("<h1>Audit explorer</h1>");
    body.push_str(&chain_summary(&chain));
    // The filter form (GET: nothing changes).
    let _ = write!(
        body,
        "<form method=\"get\" action=\"{BASE}/audit\" class=\"filters\" id=\"filters\">\
         <label>Agent <input name=\"agent\" value=\"{}\" placeholder=\"glob\"></label>\
         <label>Tool <input name=\"tool\" value=\"{}\" placeholder=\"glob, e.g. fetch.*\"></label>\
         <label>Decision <select name=\"decision\">",
        opt(&q.agent),
        opt(&q.tool)
    );
    for d in ["", "allow", "deny", "approve"] {
        let sel = if q.decision() == Some(d) || (d.is_empty() && q.decision().is_none()) {
            " selected"
        } else {
            ""
        };
        let label = if d.is_empty() { "any" } else { d };
        let _ = write!(body, "<option value=\"{d}\"{sel}>{label}</option>");
    }
    body.push_str("</select></label><label>Check <select name=\"check\">");
    for c in std::iter::once("").chain(CHECKS.iter().copied()) {
        let sel = if q.check() == Some(c) || (c.is_empty() && q.check().is_none()) {
            " selected"
        } else {
            ""
        };
        let label = if c.is_empty() { "any" } else { c };
        let _ = write!(body, "<option value=\"{c}\"{sel}>{label}</option>");
    }
    let _ = write!(
        body,
        "</select></label>\
         <label>Since <input name=\"since\" value=\"{}\" placeholder=\"2h, 2026-01-02, RFC 3339\"></label>\
         <label>Until <input name=\"until\" value=\"{}\" placeholder=\"RFC 3339\"></label>\
         <button type=\"submit\" class=\"primary\">Filter</button> <a class=\"button\" href=\"{BASE}/audit\">Clear</a></form>",
        opt(&q.since),
        opt(&q.until)
    );
    match page {
        Err(e) => body.push_str(&error_box(&e)),
        Ok(p) => {
            for pr in &p.problems {
                body.push_str(&error_box(pr));
            }
            if p.records.is_empty() {
                body.push_str("<p class=\"empty\">No record matches.</p>");
            } else {
                body.push_str(
                    "<table class=\"records\" id=\"records\"><thead><tr><th>#</th><th>Time (UTC)</th><th>Agent</th><th>Tool</th>\
                     <th>Decision</th><th>Checks</th><th>Destinations</th><th>Findings</th></tr></thead><tbody>",
                );
                for r in &p.records {
                    body.push_str(&record_row(r));
                }
                body.push_str("</tbody></table>");
                if p.more
                    && let Some(last) = p.records.last()
                {
                    let mut qs = String::new();
                    for (k, v) in [
                        ("agent", q.agent()),
                        ("tool", q.tool()),
                        ("decision", q.decision()),
                        ("check", q.check()),
                        ("since", q.since()),
                        ("until", q.until()),
                    ] {
                        if let Some(v) = v {
                            let _ = write!(qs, "{k}={}&", view::q(v));
                        }
                    }
                    let _ = write!(
                        body,
                        "<p class=\"pager\"><a class=\"button\" href=\"{BASE}/audit?{}before={}\">Older records →</a></p>",
                        attr(&qs),
                        last.seq
                    );
                }
            }
        }
    }
    html(
        StatusCode::OK,
        view::page("Audit", Nav::Audit, Some(&who(&a)), &body),
    )
}

fn checks_of(r: &conductor_audit::Record) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in r.reasons.as_array().map(Vec::as_slice).unwrap_or_default() {
        let c = s(x, "check").to_string();
        if !c.is_empty() && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

fn record_row(r: &conductor_audit::Record) -> String {
    let checks = checks_of(r)
        .iter()
        .map(|c| format!("<span class=\"check\">{}</span>", text_max(c, 30)))
        .collect::<Vec<_>>()
        .join(" ");
    let dests = r
        .destinations
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let host = s(d, "host");
            let shown = if host.is_empty() { s(d, "input") } else { host };
            text_max(shown, 60)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let findings = r
        .findings
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            format!(
                "<code>{}</code> at <code>{}</code>",
                text_max(s(f, "detector"), 60),
                text_max(s(f, "pointer"), 80)
            )
        })
        .collect::<Vec<_>>()
        .join("<br>");
    format!(
        "<tr data-seq=\"{seq}\"><td><a href=\"{BASE}/audit/{seq}\">{seq}</a></td><td class=\"time\">{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{checks}</td><td>{dests}</td><td>{findings}</td></tr>",
        text_max(&r.time, 40),
        text_max(&r.agent, 80),
        text_max(&r.tool, 120),
        badge(&r.decision),
        seq = r.seq,
    )
}

/// The arguments as the console shows them: the stored ones with every value a
/// finding points at replaced, or `None` (withheld) when that cannot be done exactly.
pub fn shown_arguments(r: &conductor_audit::Record) -> Option<Value> {
    let mut args = r.arguments.clone()?;
    // INVARIANT: whatever mode the gate stored arguments in, no value a detector
    // matched is shown: each string a finding points at is replaced whole; a finding
    // in an object key, or one whose pointer does not resolve, withholds everything.
    for f in r.findings.as_array().map(Vec::as_slice).unwrap_or_default() {
        let path = conductor_types::JsonPath::parse(s(f, "pointer")).ok()?;
        if f.get("in_key").and_then(Value::as_bool) == Some(true) || path.withholds_a_name() {
            return None;
        }
        let label = s(f, "label");
        let slot = path.get_mut(&mut args)?;
        *slot = Value::String(format!("[REDACTED:{label}]"));
    }
    Some(args)
}

pub(crate) async fn record(
    State(st): State<St>,
    h: HeaderMap,
    Path(seq): Path<String>,
) -> Response {
    let a = match need(&st, &h) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(seq) = seq.parse::<u64>() else {
        return not_found(State(st), h).await;
    };
    let path = st.opts.audit.clone();
    let got = blocking(move || data::record(&path, seq).map_err(|e| e.to_string())).await;
    let r = match got {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(State(st), h).await,
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                view::page("Record", Nav::Audit, Some(&who(&a)), &error_box(&e)),
            );
        }
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<p><a href=\"{BASE}/audit\">← Audit explorer</a></p><h1>Record {} {}</h1>\
         <dl class=\"facts\"><dt>Time</dt><dd class=\"time\">{}</dd><dt>Event</dt><dd>{}</dd>\
         <dt>Agent</dt><dd>{}</dd><dt>Tool</dt><dd>{}</dd><dt>Action</dt><dd>{}</dd>\
         <dt>Server</dt><dd>{}</dd><dt>Session</dt><dd>{}</dd><dt>Workflow</dt><dd>{}</dd>\
         <dt>Latency</dt><dd>{} µs</dd><dt>Policy</dt><dd><code>{}</code></dd>\
         <dt>Request digest</dt><dd><code>{}</code></dd><dt>Hash</dt><dd><code>{}</code></dd>\
         <dt>Previous</dt><dd><code>{}</code></dd></dl>",
        r.seq,
        badge(&r.decision),
        text(&r.time),
        text(&r.event),
        text(&r.agent),
        text(&r.tool),
        text(&r.action),
        text(r.server.as_deref().unwrap_or("")),
        text(r.session.as_deref().unwrap_or("")),
        text(r.workflow.as_deref().unwrap_or("")),
        r.latency_us,
        text(&r.policy),
        text(&r.request_digest),
        text(&r.hash),
        text(&r.prev),
    );
    b.push_str("<h2>Reasons</h2>");
    let reasons = r.reasons.as_array().map(Vec::as_slice).unwrap_or_default();
    if reasons.is_empty() {
        b.push_str("<p class=\"empty\">No failing check.</p>");
    } else {
        b.push_str("<table id=\"reasons\"><thead><tr><th>Check</th><th>Rule</th><th>Message</th></tr></thead><tbody>");
        for x in reasons {
            let _ = write!(
                b,
                "<tr><td><span class=\"check\">{}</span></td><td><code>{}</code></td><td>{}</td></tr>",
                text_max(s(x, "check"), 40),
                text_max(s(x, "rule"), 200),
                text(s(x, "message"))
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("<h2>Destinations</h2>");
    let dests = r
        .destinations
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if dests.is_empty() {
        b.push_str("<p class=\"empty\">None.</p>");
    } else {
        b.push_str("<table id=\"destinations\"><thead><tr><th>Input</th><th>At</th><th>Scheme</th><th>Host</th><th>Port</th><th>Addresses</th><th>Classes</th></tr></thead><tbody>");
        for d in dests {
            let list = |k: &str| {
                d.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(|x| text_max(x, 60))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text_max(s(d, "input"), 300),
                text_max(s(d, "pointer"), 100),
                text_max(s(d, "scheme"), 20),
                text_max(s(d, "host"), 200),
                d.get("port")
                    .and_then(Value::as_u64)
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                list("addresses"),
                list("classes"),
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("<h2>Findings <span class=\"muted\">(detector and path only)</span></h2>");
    let findings = r.findings.as_array().map(Vec::as_slice).unwrap_or_default();
    if findings.is_empty() {
        b.push_str("<p class=\"empty\">None.</p>");
    } else {
        b.push_str("<table id=\"findings\"><thead><tr><th>Detector</th><th>Label</th><th>Path</th><th>Encoding</th><th>Fingerprint</th></tr></thead><tbody>");
        for f in findings {
            // Only these members: never a span's text, never a value.
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
                text_max(s(f, "detector"), 80),
                text_max(s(f, "label"), 80),
                text_max(s(f, "pointer"), 200),
                text_max(s(f, "encoding"), 20),
                text_max(s(f, "fingerprint"), 90),
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("<h2>Arguments <span class=\"muted\">(as recorded, findings replaced)</span></h2>");
    match (&r.arguments, shown_arguments(&r)) {
        (None, _) => b.push_str("<p class=\"empty\">Not recorded.</p>"),
        (Some(_), None) => b.push_str(
            "<p class=\"empty\">Withheld: a finding is in an object key or cannot be located.</p>",
        ),
        (Some(_), Some(v)) => b.push_str(&view::json_block(&v)),
    }
    html(
        StatusCode::OK,
        view::page(&format!("Record {}", r.seq), Nav::Audit, Some(&who(&a)), &b),
    )
}

// ------------------------------------------------------------------------------------
// Sessions, chain, live
// ------------------------------------------------------------------------------------

pub(crate) async fn sessions(State(st): State<St>, h: HeaderMap) -> Response {
    let a = match need(&st, &h) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let path = st.opts.audit.clone();
    let got = blocking(move || data::sessions(&path).map_err(|e| e.to_string())).await;
    let mut b = String::from("<h1>Sessions</h1>");
    match got {
        Err(e) => b.push_str(&error_box(&e)),
        Ok((sessions, labels)) => {
            b.push_str("<h2>Labels agents carry <span class=\"muted\">(data they have received; the flow check keeps it from leaving)</span></h2>");
            if labels.is_empty() {
                b.push_str("<p class=\"empty\" id=\"no-labels\">No agent carries a label.</p>");
            } else {
                b.push_str("<table id=\"labels\"><thead><tr><th>Agent</th><th>Workflow</th><th>Label</th><th>Until (UTC)</th></tr></thead><tbody>");
                for l in &labels {
                    let _ = write!(
                        b,
                        "<tr><td>{}</td><td>{}</td><td><span class=\"label\">{}</span></td><td class=\"time\">{}</td></tr>",
                        text_max(&l.agent, 80),
                        text_max(
                            if l.workflow.is_empty() {
                                "—"
                            } else {
                                &l.workflow
                            },
                            80
                        ),
                        text_max(&l.label, 80),
                        text(&conductor_audit::time::format_micros(l.expires)),
                    );
                }
                b.push_str("</tbody></table>");
            }
            b.push_str("<h2>Sessions seen in the audit trail</h2>");
            if sessions.is_empty() {
                b.push_str("<p class=\"empty\">No record names a session.</p>");
            } else {
                b.push_str("<table id=\"sessions\"><thead><tr><th>Session</th><th>Agent</th><th>Workflow</th><th>Calls</th><th>Denied</th><th>First</th><th>Last</th></tr></thead><tbody>");
                for x in &sessions {
                    let _ = write!(
                        b,
                        "<tr><td><a href=\"{BASE}/audit?agent={}\"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"time\">{}</td><td class=\"time\">{}</td></tr>",
                        attr(&view::q(&x.agent)),
                        text_max(&x.session, 40),
                        text_max(&x.agent, 80),
                        text_max(x.workflow.as_deref().unwrap_or("—"), 80),
                        x.calls,
                        x.denied,
                        text_max(&x.first, 40),
                        text_max(&x.last, 40),
                    );
                }
                b.push_str("</tbody></table>");
            }
        }
    }
    html(
        StatusCode::OK,
        view::page("Sessions", Nav::Sessions, Some(&who(&a)), &b),
    )
}

pub(crate) async fn chain(State(st): State<St>, h: HeaderMap) -> Response {
    let a = match need(&st, &h) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let c = chain_status(&st, true).await;
    let mut b = String::from("<h1>Hash chain</h1>");
    b.push_str(&chain_summary(&c));
    if let Ok(c) = &c {
        if c.broken.is_none() {
            let _ = write!(
                b,
                "<h2>Checkpoint of the head</h2><p class=\"muted\">A C2SP tlog-checkpoint body (origin, tree size, RFC 6962 tree head). \
                 Keep a copy elsewhere: <code>conductor audit verify --checkpoint FILE</code> later shows a cut-off tail or a rewritten history.</p>\
                 <pre class=\"checkpoint\" id=\"checkpoint\">{}</pre>",
                text(&c.checkpoint).replace("\\u{a}", "\n")
            );
        } else {
            b.push_str(
                "<p>No checkpoint is offered for a broken chain (it must never be anchored).</p>",
            );
        }
    }
    html(
        StatusCode::OK,
        view::page("Chain", Nav::Chain, Some(&who(&a)), &b),
    )
}

/// The one cheap endpoint the page script polls: the head seq and the pending count.
pub(crate) async fn live(State(st): State<St>, h: HeaderMap) -> Response {
    if current(&st, &h).is_none() {
        let mut r = Response::new(Body::from("{\"error\":\"log in as an approver first\"}"));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    }
    let path = st.opts.audit.clone();
    let store = st.approvals.clone();
    let got = blocking(move || {
        let head = data::head(&path).map_err(|e| e.to_string())?;
        Ok((head.map(|h| h.0).unwrap_or(0), store.pending_count().ok()))
    })
    .await;
    let (status, v) = match got {
        Ok((head, pending)) => (StatusCode::OK, json!({"head": head, "pending": pending})),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json!({"error": e})),
    };
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
