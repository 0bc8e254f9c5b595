//! The last line of defence for "secrets never leave through the gate's own
//! outputs": before a decision leaves the core, every value a detector matched is
//! removed from every string the decision carries.
//!
//! Detectors name pointers and spans, never values; but other parts of a decision
//! quote the request: a destination's `input` (a URL with a token in its query or
//! userinfo), a pointer through an object key that is itself a secret, messages
//! that quote those. The core has the arguments, so it can look the matched values
//! up and replace them (case-insensitively) with `[REDACTED:<label>]`.
//!
//! INVARIANT: no decision string contains a value any finding matched (of four
//! bytes or more), in raw or JSON-pointer-escaped form; a destination whose
//! string held an *encoded* finding (base64, percent, JSON) is shown as
//! `[REDACTED:<label>]` as a whole.

use conductor_net::Destination;
use conductor_scan::Finding;
use serde_json::Value;

use crate::Reason;

/// Matched values shorter than this are not scrubbed (they would wreck
/// unrelated text and are not credentials).
const MIN_SECRET_LEN: usize = 4;

struct Secret {
    /// The value, ASCII-lowercased for matching.
    lower: String,
    replacement: String,
}

/// The string a finding is about: the key (for `in_key`) or the string value.
fn target<'a>(arguments: &'a Value, f: &Finding) -> Option<&'a str> {
    if f.in_key {
        let cut = f.pointer.rfind('/')?;
        let parent = arguments.pointer(f.pointer.get(..cut)?)?;
        let token = unescape(f.pointer.get(cut + 1..)?);
        parent
            .as_object()?
            .get_key_value(&token)
            .map(|(k, _)| k.as_str())
    } else {
        arguments.pointer(&f.pointer)?.as_str()
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Replace every case-insensitive occurrence of each secret in `s`.
fn scrub_str(s: &mut String, secrets: &[Secret]) {
    for sec in secrets {
        let lower = s.to_ascii_lowercase();
        if !lower.contains(&sec.lower) {
            continue;
        }
        // ASCII lowercasing keeps byte offsets, so indices found in `lower` are
        // valid in `s`.
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for (i, _) in lower.match_indices(&sec.lower) {
            if i < last {
                continue;
            }
            out.push_str(s.get(last..i).unwrap_or_default());
            out.push_str(&sec.replacement);
            last = i + sec.lower.len();
        }
        out.push_str(s.get(last..).unwrap_or_default());
        *s = out;
    }
}

/// Remove every matched value from the reasons, destinations and finding pointers.
pub fn scrub(
    arguments: &Value,
    findings: &mut [Finding],
    destinations: &mut [Destination],
    reasons: &mut [Reason],
) {
    if findings.is_empty() {
        return;
    }
    let mut secrets: Vec<Secret> = Vec::new();
    // Destinations whose string held an encoded finding: replaced whole.
    let mut whole: Vec<(String, String)> = Vec::new();
    for f in findings.iter() {
        let Some(t) = target(arguments, f) else {
            continue;
        };
        let replacement = format!("[REDACTED:{}]", f.label);
        let value = if f.encoding.is_some() {
            whole.push((f.pointer.clone(), replacement.clone()));
            t
        } else {
            t.get(f.start..f.end).unwrap_or(t)
        };
        if value.len() >= MIN_SECRET_LEN {
            for v in [value.to_string(), escape(value)] {
                secrets.push(Secret {
                    lower: v.to_ascii_lowercase(),
                    replacement: replacement.clone(),
                });
            }
        }
    }
    // Longest first, so a value containing another is replaced whole.
    secrets.sort_by_cached_key(|s| (std::cmp::Reverse(s.lower.len()), s.lower.clone()));
    secrets.dedup_by(|a, b| a.lower == b.lower);

    for d in destinations.iter_mut() {
        let original = d.input.clone();
        if let Some(p) = &d.pointer
            && let Some((_, r)) = whole.iter().find(|(wp, _)| wp == p)
        {
            d.input = r.clone();
        } else {
            scrub_str(&mut d.input, &secrets);
        }
        if d.input != original && original.len() >= MIN_SECRET_LEN {
            // Messages quote the input: replace it there too.
            let lower = original.to_ascii_lowercase();
            let replacement = d.input.clone();
            for r in reasons.iter_mut() {
                scrub_str(
                    &mut r.message,
                    &[Secret {
                        lower: lower.clone(),
                        replacement: replacement.clone(),
                    }],
                );
            }
        }
        if let Some(p) = &mut d.pointer {
            scrub_str(p, &secrets);
        }
        scrub_str(&mut d.host, &secrets);
    }
    for r in reasons.iter_mut() {
        scrub_str(&mut r.message, &secrets);
    }
    for f in findings.iter_mut() {
        scrub_str(&mut f.pointer, &secrets);
    }
}
