//! Redaction of findings in a JSON value.

use crate::Finding;
use crate::walk::unescape_token;

/// A copy of `value` with every finding's span replaced by `[REDACTED:<label>]`
/// (the whole string when the finding was in decoded content).
pub fn redact(value: &serde_json::Value, findings: &[Finding]) -> serde_json::Value {
    let mut out = value.clone();
    // Group by (pointer, in_key).
    let mut groups: Vec<((&str, bool), Vec<&Finding>)> = Vec::new();
    for f in findings {
        let k = (f.pointer.as_str(), f.in_key);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(f),
            None => groups.push((k, vec![f])),
        }
    }
    // Resolve every pointer against the original value first (renaming keys would
    // move members), then change values, then keys from the deepest up.
    let mut edits: Vec<(Vec<Step>, bool, Vec<&Finding>)> = groups
        .into_iter()
        .filter_map(|((ptr, in_key), fs)| resolve(value, ptr).map(|p| (p, in_key, fs)))
        .collect();
    edits.sort_by_key(|(path, in_key, _)| (*in_key, std::cmp::Reverse(path.len())));
    for (path, in_key, fs) in edits {
        if in_key {
            let Some((Step::Key(old), parent)) = path.split_last() else {
                continue;
            };
            let Some(serde_json::Value::Object(map)) = step_mut(&mut out, parent) else {
                continue;
            };
            let new = redact_text(old, &fs);
            if new != *old
                && let Some(v) = map.remove(old)
            {
                map.insert(new, v);
            }
        } else if let Some(serde_json::Value::String(s)) = step_mut(&mut out, &path) {
            *s = redact_text(s, &fs);
        }
    }
    out
}

/// One step of a resolved pointer.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Resolve a pointer of a finding (RFC 6901, plus `[key:<i>]` for the i-th member).
fn resolve(value: &serde_json::Value, ptr: &str) -> Option<Vec<Step>> {
    let mut cur = value;
    let mut path = Vec::new();
    if ptr.is_empty() {
        return Some(path);
    }
    for tok in ptr.strip_prefix('/')?.split('/') {
        match cur {
            serde_json::Value::Object(map) => {
                let name = unescape_token(tok);
                let key = if map.contains_key(&name) {
                    name
                } else {
                    let i: usize = tok.strip_prefix("[key:")?.strip_suffix(']')?.parse().ok()?;
                    map.keys().nth(i)?.clone()
                };
                cur = map.get(&key)?;
                path.push(Step::Key(key));
            }
            serde_json::Value::Array(items) => {
                let i: usize = tok.parse().ok()?;
                cur = items.get(i)?;
                path.push(Step::Index(i));
            }
            _ => return None,
        }
    }
    Some(path)
}

fn step_mut<'a>(v: &'a mut serde_json::Value, path: &[Step]) -> Option<&'a mut serde_json::Value> {
    let mut cur = v;
    for st in path {
        cur = match (cur, st) {
            (serde_json::Value::Object(m), Step::Key(k)) => m.get_mut(k)?,
            (serde_json::Value::Array(a), Step::Index(i)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
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
