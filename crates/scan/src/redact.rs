//! Redaction of findings in a JSON value.

use conductor_types::{JsonPath, Segment};

use crate::Finding;

/// The replacement of a URL parameter redacted by its name.
pub const REDACTED_PARAMETER: &str = "[REDACTED:credential-parameter]";

/// Names (ASCII case-insensitive) of URL query and fragment parameters that carry a
/// credential, redacted by [`redact`] whatever their value. Sources:
/// - OAuth 2.0 (RFC 6749 §4.1.2, §4.2.2, §4.3.2, §2.3.1; RFC 6750 §2.3; OpenID Connect
///   Core §3.2.2.5): `access_token`, `refresh_token`, `id_token`, `code`,
///   `client_secret`, `password`; RFC 7521 §4.1 `assertion`, `client_assertion`.
/// - AWS Signature V4 presigned URLs (Amazon S3 API reference, "Authenticating
///   Requests: Using Query Parameters"): `X-Amz-Signature`, `X-Amz-Credential`,
///   `X-Amz-Security-Token`; S3 SigV2 and CloudFront signed URLs (CloudFront developer
///   guide): `Signature`, `AWSAccessKeyId`, `Key-Pair-Id`, `Policy`.
/// - Google Cloud Storage signed URLs (V4 signing docs): `X-Goog-Signature`,
///   `X-Goog-Credential`, `GoogleAccessId`; Google APIs "Using API keys": `key`.
/// - Azure Storage SAS (service SAS docs): `sig`.
/// - GitLab REST API authentication: `private_token`; Firebase Realtime Database REST
///   (`?auth=`); Sentry envelope endpoint (`sentry_key`); Slack Web API (`token`).
/// - Servlet and PHP session ids (`jsessionid`, `phpsessid`), which are bearer
///   credentials of a session.
/// - Common names in API documentation and the gitleaks `generic-api-key` keywords:
///   `api_key`, `apikey`, `api-key`, `token`, `auth_token`, `secret`, `s`, `sig`,
///   `signature`, `passwd`, `pwd`, `pass`, `access_key`, `secret_key`, `session`,
///   `sessionid`, `hmac`.
pub const CREDENTIAL_PARAMETERS: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "code",
    "client_secret",
    "password",
    "assertion",
    "client_assertion",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "signature",
    "awsaccesskeyid",
    "key-pair-id",
    "policy",
    "x-goog-signature",
    "x-goog-credential",
    "googleaccessid",
    "key",
    "sig",
    "private_token",
    "auth",
    "sentry_key",
    "token",
    "jsessionid",
    "phpsessid",
    "api_key",
    "apikey",
    "api-key",
    "auth_token",
    "authtoken",
    "secret",
    "s",
    "passwd",
    "pwd",
    "pass",
    "access_key",
    "secret_key",
    "session",
    "sessionid",
    "hmac",
];

/// A copy of `value` with every finding's span replaced by `[REDACTED:<label>]`
/// (the whole string when the finding was in decoded content), and the value of every
/// URL query or fragment parameter named in [`CREDENTIAL_PARAMETERS`] replaced by
/// [`REDACTED_PARAMETER`] in every string and key, whether or not a detector fired.
pub fn redact(value: &serde_json::Value, findings: &[Finding]) -> serde_json::Value {
    let mut out = value.clone();
    // Group by (pointer, in_key).
    let mut groups: Vec<((&JsonPath, bool), Vec<&Finding>)> = Vec::new();
    for f in findings {
        let k = (&f.pointer, f.in_key);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(f),
            None => groups.push((k, vec![f])),
        }
    }
    // Resolve every path against the original value first (renaming keys would
    // move members; a withheld member `~k<i>` is member i, never a key named so),
    // then change values, then keys from the deepest up.
    let mut edits: Vec<(JsonPath, bool, Vec<&Finding>)> = groups
        .into_iter()
        .filter_map(|((ptr, in_key), fs)| ptr.resolve(value).map(|p| (p, in_key, fs)))
        .collect();
    edits.sort_by_key(|(path, in_key, _)| (*in_key, std::cmp::Reverse(path.len())));
    for (path, in_key, fs) in edits {
        if in_key {
            let (Some(Segment::Key(old)), Some(parent)) = (path.last(), path.parent()) else {
                continue;
            };
            let Some(serde_json::Value::Object(map)) = parent.get_mut(&mut out) else {
                continue;
            };
            let new = redact_text(old, &fs);
            if new != *old
                && let Some(v) = map.remove(old)
            {
                map.insert(new, v);
            }
        } else if let Some(serde_json::Value::String(s)) = path.get_mut(&mut out) {
            *s = redact_text(s, &fs);
        }
    }
    redact_parameters(&mut out);
    out
}

/// Redact credential parameters by name in every string and key of `v`.
fn redact_parameters(v: &mut serde_json::Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => {
                if let Some(r) = redact_params_text(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(items) => stack.extend(items.iter_mut()),
            serde_json::Value::Object(map) => {
                let renames: Vec<(String, String)> = map
                    .keys()
                    .filter_map(|k| redact_params_text(k).map(|n| (k.clone(), n)))
                    .collect();
                for (old, new) in renames {
                    if let Some(x) = map.remove(&old) {
                        map.insert(new, x);
                    }
                }
                stack.extend(map.values_mut());
            }
            _ => {}
        }
    }
}

fn is_credential_parameter(name: &[u8]) -> bool {
    let decoded;
    let name = if name.contains(&b'%') {
        decoded = percent_decode(name);
        decoded.as_slice()
    } else {
        name
    };
    CREDENTIAL_PARAMETERS
        .iter()
        .any(|p| p.as_bytes().eq_ignore_ascii_case(name))
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let hexval = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hexval),
                b.get(i + 2).copied().and_then(hexval),
            )
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `s` with the value of every credential parameter of a query or fragment (after `?`
/// or `#`, up to whitespace or a quote) replaced; `None` when nothing changed.
fn redact_params_text(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let term = |c: u8| c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'<' | b'>' | b'`');
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut from = 0;
    while let Some(q) = b.get(from..).and_then(|r| memchr::memchr2(b'?', b'#', r)) {
        let mut i = from + q + 1;
        // Parameters `name=value` separated by `&` or `;`, until the query ends.
        loop {
            let ns = i;
            while b
                .get(i)
                .is_some_and(|&c| !term(c) && !matches!(c, b'=' | b'&' | b';' | b'#'))
            {
                i += 1;
            }
            if b.get(i) == Some(&b'=') {
                let name = b.get(ns..i).unwrap_or(&[]);
                let vs = i + 1;
                let mut ve = vs;
                while b
                    .get(ve)
                    .is_some_and(|&c| !term(c) && !matches!(c, b'&' | b';' | b'#'))
                {
                    ve += 1;
                }
                let value = b.get(vs..ve).unwrap_or(&[]);
                if ve > vs && !value.starts_with(b"[REDACTED") && is_credential_parameter(name) {
                    spans.push((vs, ve));
                }
                i = ve;
            }
            match b.get(i) {
                Some(b'&' | b';') => i += 1,
                _ => break,
            }
        }
        from = i.max(from + q + 1);
        if b.get(from) == Some(&b'#') {
            continue;
        }
    }
    if spans.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    for (a, e) in spans {
        out.push_str(s.get(pos..a)?);
        out.push_str(REDACTED_PARAMETER);
        pos = e;
    }
    out.push_str(s.get(pos..)?);
    Some(out)
}

fn redact_text(s: &str, fs: &[&Finding]) -> String {
    if let Some(f) = fs.iter().find(|f| f.encoding.is_some()) {
        return format!("[REDACTED:{}]", f.label);
    }
    let mut spans: Vec<(usize, usize, &str)> = fs
        .iter()
        .map(|f| {
            let mut a = f.start.min(s.len());
            while a > 0 && !s.is_char_boundary(a) {
                a -= 1;
            }
            let mut b = f.end.min(s.len());
            while b < s.len() && !s.is_char_boundary(b) {
                b += 1;
            }
            (a, b, f.label.as_str())
        })
        .collect();
    spans.sort();
    let mut merged: Vec<(usize, usize, &str)> = Vec::new();
    for sp in spans {
        match merged.last_mut() {
            Some(last) if sp.0 < last.1 => last.1 = last.1.max(sp.1),
            _ => merged.push(sp),
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    for (a, b, label) in merged {
        out.push_str(s.get(pos..a).unwrap_or(""));
        out.push_str("[REDACTED:");
        out.push_str(label);
        out.push(']');
        pos = b;
    }
    out.push_str(s.get(pos..).unwrap_or(""));
    out
}
