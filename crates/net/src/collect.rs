//! Finding the destination strings of a call: declared pointers, declared literals and
//! (when scanning) URL-looking strings anywhere in the arguments.

use std::borrow::Cow;

use crate::extract::{self, find_in_text};

/// A destination string found in a call, before canonicalization.
pub(crate) struct Found<'a> {
    pub(crate) input: Cow<'a, str>,
    pub(crate) pointer: Option<String>,
    /// Set when the value at a declared pointer is not a string (or number).
    pub(crate) not_a_string: Option<&'static str>,
}

/// RFC 6901 lookup (like `Value::pointer`, without allocating for plain tokens).
fn json_pointer<'v>(value: &'v serde_json::Value, pointer: &str) -> Option<&'v serde_json::Value> {
    if pointer.is_empty() {
        return Some(value);
    }
    let rest = pointer.strip_prefix('/')?;
    let mut target = value;
    for raw in rest.split('/') {
        let token: std::borrow::Cow<'_, str> = if raw.contains('~') {
            std::borrow::Cow::Owned(raw.replace("~1", "/").replace("~0", "~"))
        } else {
            std::borrow::Cow::Borrowed(raw)
        };
        target = match target {
            serde_json::Value::Object(map) => map.get(token.as_ref())?,
            serde_json::Value::Array(items) => {
                if token.len() > 1 && token.starts_with('0') {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(target)
}

fn escape_token(t: &str) -> String {
    t.replace('~', "~0").replace('/', "~1")
}

pub(crate) fn collect<'a>(
    arguments: &'a serde_json::Value,
    pointers: &[String],
    literals: &'a [String],
    scan: bool,
) -> Vec<Found<'a>> {
    use serde_json::Value;
    let mut found: Vec<Found<'a>> = Vec::new();
    let mut declared: Vec<String> = Vec::new();
    let push = |found: &mut Vec<Found<'a>>, input: Cow<'a, str>, pointer: Option<String>| {
        if !found.iter().any(|f| f.input == input) {
            found.push(Found {
                input,
                pointer,
                not_a_string: None,
            });
        }
    };
    for p in pointers {
        let value = json_pointer(arguments, p);
        let items: Vec<(String, &Value)> = match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{p}/{i}"), v))
                .collect(),
            Some(v) => vec![(p.clone(), v)],
        };
        for (ptr, v) in items {
            match v {
                Value::String(s) => push(&mut found, Cow::Borrowed(s.as_str()), Some(ptr.clone())),
                Value::Number(n) => push(&mut found, Cow::Owned(n.to_string()), Some(ptr.clone())),
                Value::Null => {}
                other => found.push(Found {
                    input: Cow::Borrowed(""),
                    pointer: Some(ptr.clone()),
                    not_a_string: Some(match other {
                        Value::Bool(_) => "a boolean",
                        Value::Array(_) => "an array",
                        _ => "an object",
                    }),
                }),
            }
            declared.push(ptr);
        }
    }
    for l in literals {
        push(&mut found, Cow::Borrowed(l.as_str()), None);
    }
    if scan {
        // Depth-first, with an explicit stack (no recursion limit to hit) and the path
        // kept as segments: a pointer string is only built for a string that holds a hit.
        let mut path: Vec<Seg<'a>> = Vec::new();
        let mut stack: Vec<(usize, Option<Seg<'a>>, &'a Value)> = vec![(0, None, arguments)];
        while let Some((depth, seg, v)) = stack.pop() {
            path.truncate(depth.saturating_sub(1));
            if let Some(seg) = seg {
                path.push(seg);
            }
            match v {
                Value::String(s) => scan_string(s, &path, &declared, &mut found),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push((depth + 1, Some(Seg::Index(i)), item));
                    }
                }
                Value::Object(map) => {
                    for (k, item) in map.iter().rev() {
                        path.push(Seg::Key(k));
                        scan_string(k, &path, &declared, &mut found);
                        path.pop();
                        stack.push((depth + 1, Some(Seg::Key(k)), item));
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// One step of a JSON pointer.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn pointer_of(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        out.push('/');
        match seg {
            Seg::Key(k) if k.contains(['~', '/']) => out.push_str(&escape_token(k)),
            Seg::Key(k) => out.push_str(k),
            Seg::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

fn scan_string<'a>(s: &'a str, path: &[Seg<'_>], declared: &[String], found: &mut Vec<Found<'a>>) {
    let decoded = extract::percent_decoded(s);
    let mut hits: Vec<(Cow<'a, str>, bool)> = Vec::new();
    // Decoded texts are new strings: their hits are owned.
    let collect_hits = |t: &str, hits: &mut Vec<(Cow<'a, str>, bool)>| {
        let lead = t.len() - t.trim_start().len();
        let ranges = find_in_text(t);
        for &(start, end) in &ranges {
            if let Some(sub) = t.get(start..end) {
                hits.push((Cow::Owned(sub.to_string()), start <= lead));
            }
        }
        for (start, r) in extract::other_readings(t, &ranges) {
            hits.push((Cow::Owned(r), start <= lead));
        }
        if extract::whole_is_blocked_name(t) {
            hits.push((Cow::Owned(t.trim().to_string()), true));
        }
    };
    // The original text: hits borrow from it.
    {
        let lead = s.len() - s.trim_start().len();
        let ranges = find_in_text(s);
        for &(start, end) in &ranges {
            if let Some(sub) = s.get(start..end) {
                hits.push((Cow::Borrowed(sub), start <= lead));
            }
        }
        if !ranges.is_empty() {
            for (start, r) in extract::other_readings(s, &ranges) {
                hits.push((Cow::Owned(r), start <= lead));
            }
        }
        if extract::whole_is_blocked_name(s) {
            hits.push((Cow::Borrowed(s.trim()), true));
        }
    }
    for t in &decoded {
        collect_hits(t, &mut hits);
    }
    if hits.is_empty() {
        return;
    }
    let is_declared = declared.iter().any(|d| path_is(path, d));
    let mut ptr: Option<String> = None;
    for (h, at_start) in hits {
        // A declared value is a destination as a whole already; what starts where it
        // starts is that destination (or a prefix of it), not another one.
        if is_declared && at_start {
            continue;
        }
        if !found.iter().any(|f| f.input == h) {
            let pointer = ptr.get_or_insert_with(|| pointer_of(path)).clone();
            found.push(Found {
                input: h,
                pointer: Some(pointer),
                not_a_string: None,
            });
        }
    }
}

/// Whether `path` is the JSON pointer `pointer` (without building the pointer text).
fn path_is(path: &[Seg<'_>], pointer: &str) -> bool {
    let Some(rest) = pointer.strip_prefix('/') else {
        return path.is_empty() && pointer.is_empty();
    };
    let mut tokens = rest.split('/');
    for seg in path {
        let Some(t) = tokens.next() else {
            return false;
        };
        let same = match seg {
            Seg::Key(k) if t.contains('~') => t.replace("~1", "/").replace("~0", "~") == *k,
            Seg::Key(k) => t == *k,
            Seg::Index(i) => {
                t.parse::<usize>().ok() == Some(*i) && (t == "0" || !t.starts_with('0'))
            }
        };
        if !same {
            return false;
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::{Seg, path_is, pointer_of};

    #[test]
    fn path_is_agrees_with_pointer_of() {
        let paths: Vec<Vec<Seg<'_>>> = vec![
            vec![],
            vec![Seg::Key("")],
            vec![Seg::Key("url")],
            vec![Seg::Key("a/b"), Seg::Index(0)],
            vec![Seg::Key("~x"), Seg::Index(10), Seg::Key("y")],
        ];
        for p in &paths {
            let text = pointer_of(p);
            for q in &paths {
                assert_eq!(path_is(q, &text), pointer_of(q) == text, "{text}");
            }
        }
        assert!(!path_is(&[Seg::Index(1)], "/01"));
    }
}
