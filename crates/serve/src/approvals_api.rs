//! The approvers' JSON API on `serve`: list, show, approve (with a scope), deny (with
//! a reason), grants and revoke — over the approvals store the gate holds calls in.
//!
//! ```text
//! GET  /v1/approvals[?status=pending|all&agent=A&tool=T]   {"approvals": [...]}
//! GET  /v1/approvals/{id}                                   the approval
//! POST /v1/approvals/{id}/approve  {"scope": "call"|"session"|"window", "for": "30m", "pattern": {"/repo": "acme/*"}}
//! POST /v1/approvals/{id}/deny     {"reason": "…"}
//! GET  /v1/grants[?status=active|all]                       {"grants": [...]}
//! POST /v1/grants/{id}/revoke
//! ```
//!
//! INVARIANT: only approvers act here. A request is answered only when its
//! `Authorization: Bearer …` is the key of an account of the gateway file's
//! `approvers:` (checked by the console's account code, constant-time). Agents'
//! credentials are another kind: an agent API key, a token or a client certificate is
//! not an approver key (401), and a request carrying `X-API-Key` (the agents' header)
//! is refused with 403 whatever else it carries. The agent authenticator is never
//! consulted here, so no agent identity can ever approve.
//!
//! INVARIANT: every grant, denial and revocation is recorded by the store in the audit
//! chain, naming the approver account, in the same transaction as the change.

#![expect(
    clippy::result_large_err,
    reason = "an early answer is a whole `Response`; these functions run once per request"
)]

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use conductor_audit::{ApprovalError, ApprovalFilter, ApprovalStore, Scope};
use serde_json::{Map, Value, json};
use std::sync::Arc;

use crate::http::{St, counted, hygiene, json_response};

/// Longest `for` a session or window grant may be given (7 days).
const MAX_GRANT: Duration = Duration::from_secs(7 * 86_400);
/// Longest denial reason kept.
const MAX_REASON: usize = 1000;

pub(crate) fn routes() -> Router<St> {
    Router::new()
        .route("/v1/approvals", get(list))
        .route("/v1/approvals/{id}", get(show))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
        .route("/v1/grants", get(grants))
        .route("/v1/grants/{id}/revoke", post(revoke))
}

fn error(status: StatusCode, message: &str) -> Response {
    let mut r = json_response(
        status,
        &json!({"error": {"status": status.as_u16(), "message": message}}),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"conductor-approvers\""),
        );
    }
    r
}

/// The approver a request is made by, or the refusal.
fn approver(st: &St, h: &HeaderMap) -> Result<String, Response> {
    let cfg = st.app.config();
    hygiene(st, &cfg, h)?;
    // INVARIANT: the agents' key header is never an approver's credential.
    if h.contains_key("x-api-key") {
        return Err(error(
            StatusCode::FORBIDDEN,
            "agent credentials are not accepted by the approvals api: approvers use their approver key",
        ));
    }
    let mut all = h.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (all.next(), all.next()) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "an approver key is required: `Authorization: Bearer <approver key>` (given once)",
        ));
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "the `Authorization` header must be `Bearer <approver key>`",
        ));
    };
    match cfg.approvers.by_key(key) {
        Some(a) => Ok(a.name.clone()),
        None => {
            // The credential itself is never logged.
            tracing::info!(reason = "not_an_approver", "approvals api request refused");
            Err(error(
                StatusCode::UNAUTHORIZED,
                "this is not an approver key of this gateway",
            ))
        }
    }
}

fn store(st: &St) -> Result<Arc<dyn ApprovalStore>, Response> {
    st.app.gates.service().approvals().ok_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this gateway holds no calls for approval (no approvals store)",
        )
    })
}

fn store_error(e: &ApprovalError) -> Response {
    let status = match e {
        ApprovalError::NotFound { .. } => StatusCode::NOT_FOUND,
        ApprovalError::NotPending { .. } => StatusCode::CONFLICT,
        ApprovalError::Invalid { .. } => StatusCode::BAD_REQUEST,
        ApprovalError::Store { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(error = %e, "approvals store failed");
        return error(status, "the approvals store cannot be used");
    }
    error(status, &e.to_string())
}

/// Run a store operation off the async threads (SQLite blocks).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApprovalError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(store_error(&e)),
        Err(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the approvals store failed",
        )),
    }
}

/// A query string as unique name/value pairs (a name given twice is refused).
fn query(raw: Option<&str>, known: &[&str]) -> Result<Map<String, Value>, Response> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| error(StatusCode::BAD_REQUEST, "the query string cannot be read"))?;
    let mut out = Map::new();
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "unknown query parameter `{}`; known: {}",
                    conductor_types::display::shown(&k, 40),
                    known.join(", ")
                ),
            ));
        }
        if out.insert(k.clone(), Value::String(v)).is_some() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("query parameter `{k}` is given more than once"),
            ));
        }
    }
    Ok(out)
}

fn done(st: &St, r: Result<Response, Response>) -> Response {
    counted(&st.app, r.unwrap_or_else(|e| e))
}

async fn list(State(st): State<St>, h: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let r = async {
        approver(&st, &h)?;
        let q = query(q.as_deref(), &["status", "agent", "tool"])?;
        let pending_only = match q.get("status").and_then(Value::as_str) {
            None | Some("pending") => true,
            Some("all") => false,
            Some(_) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "`status` must be `pending` or `all`",
                ));
            }
        };
        let filter = ApprovalFilter {
            pending_only,
            agent: q.get("agent").and_then(Value::as_str).map(str::to_string),
            tool: q.get("tool").and_then(Value::as_str).map(str::to_string),
            limit: None,
        };
        let s = store(&st)?;
        let list = blocking(move || s.list(&filter)).await?;
        let list: Vec<Value> = list
            .iter()
            .map(conductor_audit::Approval::to_json)
            .collect();
        Ok(json_response(StatusCode::OK, &json!({"approvals": list})))
    }
    .await;
    done(&st, r)
}

async fn show(State(st): State<St>, h: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        approver(&st, &h)?;
        let s = store(&st)?;
        let a = blocking(move || s.show(&id)).await?;
        Ok(json_response(StatusCode::OK, &a.to_json()))
    }
    .await;
    done(&st, r)
}

fn body(h: &HeaderMap, body: &[u8], known: &[&str]) -> Result<Map<String, Value>, Response> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    let m = crate::authzen::body_object(h, body)
        .map_err(|p| error(StatusCode::BAD_REQUEST, &p.message))?;
    if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown member `{}`; known: {}",
                conductor_types::display::shown(k, 40),
                known.join(", ")
            ),
        ));
    }
    Ok(m)
}

/// The scope an approve body asks for.
fn scope_of(m: &Map<String, Value>) -> Result<Scope, String> {
    let duration = || -> Result<Option<Duration>, String> {
        match m.get("for") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => conductor_policy::parse_duration(s)
                .filter(|d| !d.is_zero() && *d <= MAX_GRANT)
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "`for` must be a duration up to 7 days such as `90s`, `30m`, `8h`, `7d`, not `{}`",
                        conductor_types::display::shown(s, 20)
                    )
                }),
            Some(_) => Err("`for` must be a string such as `30m`".into()),
        }
    };
    let pattern = || -> Result<Vec<(String, String)>, String> {
        match m.get("pattern") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(p)) => p
                .iter()
                .map(|(ptr, g)| match g {
                    Value::String(g) if ptr.starts_with('/') => Ok((ptr.clone(), g.clone())),
                    _ => Err(format!(
                        "`pattern` maps json pointers (`/repo`) to globs (strings); `{}` does not",
                        conductor_types::display::shown(ptr, 40)
                    )),
                })
                .collect(),
            Some(_) => Err("`pattern` must be an object of pointer → glob".into()),
        }
    };
    let scope = match m.get("scope") {
        None | Some(Value::Null) => "call",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("`scope` must be a string".into()),
    };
    match scope {
        "call" => {
            if m.get("for").is_some_and(|v| !v.is_null())
                || m.get("pattern").is_some_and(|v| !v.is_null())
            {
                return Err(
                    "`for` and `pattern` belong to the `session` and `window` scopes".into(),
                );
            }
            Ok(Scope::Call)
        }
        "session" => {
            if m.get("pattern").is_some_and(|v| !v.is_null()) {
                return Err("`pattern` belongs to the `window` scope".into());
            }
            Ok(Scope::Session {
                duration: duration()?,
            })
        }
        "window" => Ok(Scope::Window {
            duration: duration()?.ok_or("the `window` scope needs `for` (how long it holds)")?,
            pattern: pattern()?,
        }),
        other => Err(format!(
            "`scope` must be `call`, `session` or `window`, not `{}`",
            conductor_types::display::shown(other, 20)
        )),
    }
}

async fn approve(State(st): State<St>, h: HeaderMap, Path(id): Path<String>, b: Bytes) -> Response {
    let r = async {
        let who = approver(&st, &h)?;
        let m = body(&h, &b, &["scope", "for", "pattern"])?;
        let scope = scope_of(&m).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
        let s = store(&st)?;
        let (w, i) = (who.clone(), id.clone());
        let a = blocking(move || s.approve(&i, &w, &scope)).await?;
        tracing::info!(approver = %who, approval = %id, scope = a.scope.as_deref().unwrap_or(""), "approved through the api");
        Ok(json_response(StatusCode::OK, &a.to_json()))
    }
    .await;
    done(&st, r)
}

async fn deny(State(st): State<St>, h: HeaderMap, Path(id): Path<String>, b: Bytes) -> Response {
    let r = async {
        let who = approver(&st, &h)?;
        let m = body(&h, &b, &["reason"])?;
        let reason = match m.get("reason") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "a denial needs a `reason` (a non-empty string)",
                ));
            }
        };
        if reason.len() > MAX_REASON {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("the `reason` is longer than {MAX_REASON} bytes"),
            ));
        }
        let s = store(&st)?;
        let (w, i) = (who.clone(), id.clone());
        let a = blocking(move || s.deny(&i, &w, &reason)).await?;
        tracing::info!(approver = %who, approval = %id, "denied through the api");
        Ok(json_response(StatusCode::OK, &a.to_json()))
    }
    .await;
    done(&st, r)
}

async fn grants(State(st): State<St>, h: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let r = async {
        approver(&st, &h)?;
        let q = query(q.as_deref(), &["status"])?;
        let active_only = match q.get("status").and_then(Value::as_str) {
            None | Some("active") => true,
            Some("all") => false,
            Some(_) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "`status` must be `active` or `all`",
                ));
            }
        };
        let s = store(&st)?;
        let list = blocking(move || s.grants(active_only)).await?;
        let list: Vec<Value> = list.iter().map(conductor_audit::Grant::to_json).collect();
        Ok(json_response(StatusCode::OK, &json!({"grants": list})))
    }
    .await;
    done(&st, r)
}

async fn revoke(State(st): State<St>, h: HeaderMap, Path(id): Path<String>, b: Bytes) -> Response {
    let r = async {
        let who = approver(&st, &h)?;
        body(&h, &b, &[])?;
        let s = store(&st)?;
        let (w, i) = (who.clone(), id.clone());
        let g = blocking(move || s.revoke(&i, &w)).await?;
        tracing::info!(approver = %who, grant = %id, "grant revoked through the api");
        Ok(json_response(StatusCode::OK, &g.to_json()))
    }
    .await;
    done(&st, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn scopes_are_read_strictly() {
        assert_eq!(scope_of(&m(json!({}))), Ok(Scope::Call));
        assert_eq!(
            scope_of(&m(json!({"scope": "session"}))),
            Ok(Scope::Session { duration: None })
        );
        assert_eq!(
            scope_of(&m(
                json!({"scope": "window", "for": "30m", "pattern": {"/repo": "acme/*"}})
            )),
            Ok(Scope::Window {
                duration: Duration::from_secs(1800),
                pattern: vec![("/repo".into(), "acme/*".into())]
            })
        );
        for bad in [
            json!({"scope": "window"}),
            json!({"scope": "forever"}),
            json!({"scope": "call", "for": "1h"}),
            json!({"scope": "session", "for": "8d"}),
            json!({"scope": "session", "for": 60}),
            json!({"scope": "window", "for": "1h", "pattern": {"repo": "x"}}),
            json!({"scope": "window", "for": "1h", "pattern": {"/repo": 1}}),
        ] {
            assert!(scope_of(&m(bad.clone())).is_err(), "{bad}");
        }
    }
}
