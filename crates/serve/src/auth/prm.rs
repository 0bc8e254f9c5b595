//! OAuth 2.0 Protected Resource Metadata (RFC 9728) and the `WWW-Authenticate`
//! challenges (RFC 6750 §3) that point clients at it.
//!
//! Documents: `/.well-known/oauth-protected-resource` (the gateway), `…/mcp` (the `/mcp`
//! endpoint) and `…/mcp/<server>` (one server's endpoint). The `resource` of each is the
//! identifier a token for that endpoint carries as `aud` (RFC 8707): `jwt.audience` for
//! `/mcp` (and the gateway), `<audience>/<server>` for `/mcp/<server>` — where a token
//! for the whole `/mcp` is accepted too.

use serde_json::{Value, json};

/// The identifier of `/mcp` when `jwt.audience` is not configured: `<base>/mcp`.
pub fn default_audience(base: &str) -> String {
    format!("{}/mcp", base.trim_end_matches('/'))
}

/// The resource identifier of an endpoint: `None` is `/mcp`, `Some(s)` is `/mcp/<s>`.
pub fn resource(audience: &str, server: Option<&str>) -> String {
    match server {
        None => audience.to_string(),
        Some(s) => format!("{}/{s}", audience.trim_end_matches('/')),
    }
}

/// The metadata URL of an endpoint (path-suffixed form, RFC 9728 §3.1).
pub fn metadata_url(base: &str, server: Option<&str>) -> String {
    let base = base.trim_end_matches('/');
    match server {
        None => format!("{base}/.well-known/oauth-protected-resource/mcp"),
        Some(s) => format!("{base}/.well-known/oauth-protected-resource/mcp/{s}"),
    }
}

/// The metadata document.
pub fn document(
    resource: &str,
    authorization_servers: &[String],
    scopes_supported: &[String],
) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("resource".into(), json!(resource));
    if !authorization_servers.is_empty() {
        m.insert("authorization_servers".into(), json!(authorization_servers));
    }
    m.insert("bearer_methods_supported".into(), json!(["header"]));
    if !scopes_supported.is_empty() {
        m.insert("scopes_supported".into(), json!(scopes_supported));
    }
    m.insert("resource_name".into(), json!("Conductor gateway"));
    Value::Object(m)
}

/// A quoted-string value of a challenge parameter: `"` and `\` are dropped, as are
/// control characters (RFC 6750 §3: `error_description` is printable ASCII without them).
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
        .collect()
}

/// `Bearer resource_metadata="…"[, error="…", error_description="…"]`.
pub fn challenge(metadata_url: &str, error: Option<&str>, description: Option<&str>) -> String {
    let mut s = format!("Bearer resource_metadata=\"{}\"", quoted(metadata_url));
    if let Some(e) = error {
        s.push_str(&format!(", error=\"{}\"", quoted(e)));
        if let Some(d) = description {
            s.push_str(&format!(", error_description=\"{}\"", quoted(d)));
        }
    }
    s
}

/// The 403 challenge of a token that lacks scopes.
pub fn insufficient_scope(metadata_url: &str, scopes: &[String]) -> String {
    format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
        quoted(&scopes.join(" ")),
        quoted(metadata_url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_quote_safely() {
        let c = challenge(
            "https://gw/.well-known/oauth-protected-resource/mcp",
            Some("invalid_token"),
            Some("bad \"quote\" \\ and\nnewline"),
        );
        assert_eq!(
            c,
            "Bearer resource_metadata=\"https://gw/.well-known/oauth-protected-resource/mcp\", error=\"invalid_token\", error_description=\"bad quote  andnewline\""
        );
        assert_eq!(
            resource("https://gw/mcp", Some("wiki")),
            "https://gw/mcp/wiki"
        );
    }
}
