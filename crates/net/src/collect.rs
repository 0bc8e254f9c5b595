//! Finding the destination strings of a call: declared pointers, declared literals and
//! (when scanning) URL-looking strings anywhere in the arguments.

use std::borrow::Cow;

use conductor_types::{JsonPath, Step};

use crate::extract::{self, find_in_text};

/// A destination string found in a call, before canonicalization.
pub(crate) struct Found<'a> {
    pub(crate) input: Cow<'a, str>,
    pub(crate) pointer: Option<JsonPath>,
    /// Set when the value at a declared pointer is not a string (or number).
    pub(crate) not_a_string: Option<&'static str>,
}

pub(crate) fn collect<'a>(
    arguments: &'a serde_json::Value,
    pointers: &[JsonPath],
    literals: &'a [String],
    scan: bool,
) -> Vec<Found<'a>> {
    use serde_json::Value;
    let mut found: Vec<Found<'a>> = Vec::new();
    let mut declared: Vec<JsonPath> = Vec::new();
    let push = |found: &mut Vec<Found<'a>>, input: Cow<'a, str>, pointer: Option<JsonPath>| {
        if !found.iter().any(|f| f.input == input) {
            found.push(Found {
                input,
                pointer,
                not_a_string: None,
            });
        }
    };
    for p in pointers {
        let value = p.get(arguments);
        let items: Vec<(JsonPath, &Value)> = match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (p.index(i), v))
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
        // kept as borrowed steps: a `JsonPath` is only built for a string that holds a hit.
        let mut path: Vec<Step<'a>> = Vec::new();
        let mut stack: Vec<(usize, Option<Step<'a>>, &'a Value)> = vec![(0, None, arguments)];
        while let Some((depth, seg, v)) = stack.pop() {
            path.truncate(depth.saturating_sub(1));
            if let Some(seg) = seg {
                path.push(seg);
            }
            match v {
                Value::String(s) => scan_string(s, &path, &declared, &mut found),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push((depth + 1, Some(Step::Index(i)), item));
                    }
                }
                Value::Object(map) => {
                    for (k, item) in map.iter().rev() {
                        path.push(Step::Key(k));
                        scan_string(k, &path, &declared, &mut found);
                        path.pop();
                        stack.push((depth + 1, Some(Step::Key(k)), item));
                    }
                }
                _ => {}
            }
        }
    }
    found
}

fn scan_string<'a>(
    s: &'a str,
    path: &[Step<'_>],
    declared: &[JsonPath],
    found: &mut Vec<Found<'a>>,
) {
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
    // The whole string as a relative reference a tool joins to its base URL
    // (`//localhost:6379/`, `/\t/169.254.169.254/`), when no hit starts it already.
    if !hits.iter().any(|(_, at_start)| *at_start) {
        for t in std::iter::once(s).chain(decoded.iter().map(String::as_str)) {
            if let Some(r) = extract::whole_reference(t) {
                hits.push((Cow::Owned(r), true));
                break;
            }
        }
    }
    if hits.is_empty() {
        return;
    }
    let is_declared = declared.iter().any(|d| d.is_at(path));
    let mut ptr: Option<JsonPath> = None;
    for (h, at_start) in hits {
        // A declared value is a destination as a whole already; what starts where it
        // starts is that destination (or a prefix of it), not another one.
        if is_declared && at_start {
            continue;
        }
        if !found.iter().any(|f| f.input == h) {
            let pointer = ptr
                .get_or_insert_with(|| JsonPath::from_steps(path))
                .clone();
            found.push(Found {
                input: h,
                pointer: Some(pointer),
                not_a_string: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use conductor_types::{JsonPath, Step};

    #[test]
    fn is_at_agrees_with_the_written_path() {
        let paths: Vec<Vec<Step<'_>>> = vec![
            vec![],
            vec![Step::Key("")],
            vec![Step::Key("url")],
            vec![Step::Key("a/b"), Step::Index(0)],
            vec![Step::Key("~x"), Step::Index(10), Step::Key("y")],
        ];
        for p in &paths {
            let text = JsonPath::from_steps(p).to_pointer();
            let declared = JsonPath::parse(&text).unwrap();
            for q in &paths {
                assert_eq!(
                    declared.is_at(q),
                    JsonPath::from_steps(q).to_pointer() == text,
                    "{text}"
                );
            }
        }
        assert!(!JsonPath::parse("/01").unwrap().is_at(&[Step::Index(1)]));
        assert!(JsonPath::parse("/1").unwrap().is_at(&[Step::Index(1)]));
    }
}
