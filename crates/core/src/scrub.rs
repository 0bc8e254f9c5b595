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

use aho_corasick::{AhoCorasick, MatchKind};
use conductor_net::Destination;
use conductor_scan::Finding;
use conductor_types::{JsonPath, Segment};
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

/// The strings a finding may be about: the key (for `in_key`) or the string value.
/// A [`Segment::Member`] names the i-th member of an object (the scanner never
/// spells out a key that holds a detection).
fn targets<'a>(arguments: &'a Value, f: &Finding) -> Vec<&'a str> {
    let mut out = Vec::new();
    let path = &f.pointer;
    let Some(last) = path.last() else {
        if !f.in_key
            && let Some(s) = arguments.as_str()
        {
            out.push(s);
        }
        return out;
    };
    if !f.in_key {
        if let Some(s) = path.get(arguments).and_then(Value::as_str) {
            out.push(s);
        }
        return out;
    }
    if let Some(Value::Object(map)) = path.parent().and_then(|p| p.get(arguments)) {
        let key = match last {
            Segment::Member(i) => map.keys().nth(*i),
            Segment::Key(k) => map.get_key_value(k).map(|(k, _)| k),
            Segment::Index(_) => None,
        };
        if let Some(k) = key {
            out.push(k.as_str());
        }
    }
    out
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Every secret, matched ASCII-case-insensitively, longest first at each position.
struct Scrubber {
    ac: Option<AhoCorasick>,
    replacements: Vec<String>,
}

impl Scrubber {
    fn new(secrets: &[Secret]) -> Scrubber {
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(secrets.iter().map(|s| s.lower.as_str()))
            .ok();
        Scrubber {
            ac,
            replacements: secrets.iter().map(|s| s.replacement.clone()).collect(),
        }
    }

    /// `path` with every secret in its member names replaced.
    fn scrub_path(&self, path: &JsonPath) -> JsonPath {
        JsonPath::from_segments(
            path.segments()
                .iter()
                .map(|seg| match seg {
                    Segment::Key(k) => {
                        let mut k = k.clone();
                        self.scrub(&mut k);
                        Segment::Key(k)
                    }
                    other => other.clone(),
                })
                .collect(),
        )
    }

    /// Replace every occurrence of a secret in the written-out `path` (where it may
    /// also span segments, e.g. a matched `a/b` in the path `/a/b`): the path then
    /// becomes the replaced text read back as a path (a path of one withheld
    /// `[REDACTED]` key if that text is no pointer).
    fn scrub_written(&self, path: &mut JsonPath) {
        if self.replacements.is_empty() {
            return;
        }
        let text = path.to_pointer();
        let mut scrubbed = text.clone();
        self.scrub(&mut scrubbed);
        if scrubbed != text {
            *path =
                JsonPath::parse(&scrubbed).unwrap_or_else(|_| JsonPath::root().key("[REDACTED]"));
        }
    }

    /// Replace every occurrence of a secret in `s`. Fails closed: if the matcher
    /// could not be built, the whole string is replaced.
    fn scrub(&self, s: &mut String) {
        if self.replacements.is_empty() {
            return;
        }
        let Some(ac) = &self.ac else {
            *s = "[REDACTED]".to_string();
            return;
        };
        if !ac.is_match(s.as_str()) {
            return;
        }
        let mut out = String::with_capacity(s.len());
        ac.replace_all_with(s, &mut out, |m, _, dst| {
            dst.push_str(
                self.replacements
                    .get(m.pattern().as_usize())
                    .map_or("[REDACTED]", String::as_str),
            );
            true
        });
        *s = out;
    }
}

/// What the scrubbing of one decision needs, built from the arguments and findings
/// before the decision is complete (so the arguments need not be kept).
pub(crate) struct Scrub {
    scrubber: Scrubber,
    /// Paths of strings that held an encoded finding, with their replacement.
    whole: Vec<(JsonPath, String)>,
}

impl Scrub {
    /// Look up every value `findings` matched in `arguments`.
    pub(crate) fn new(arguments: &Value, findings: &[Finding]) -> Scrub {
        if findings.is_empty() {
            return Scrub {
                scrubber: Scrubber {
                    ac: None,
                    replacements: Vec::new(),
                },
                whole: Vec::new(),
            };
        }
        let mut secrets: Vec<Secret> = Vec::new();
        // Destinations whose string held an encoded finding: replaced whole.
        let mut whole: Vec<(JsonPath, String)> = Vec::new();
        for f in findings {
            let replacement = format!("[REDACTED:{}]", f.label);
            if f.encoding.is_some() {
                whole.push((f.pointer.clone(), replacement.clone()));
            }
            for t in targets(arguments, f) {
                let value = if f.encoding.is_some() {
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
        }
        // Longest first, so a value containing another is replaced whole.
        secrets.sort_by_cached_key(|s| (std::cmp::Reverse(s.lower.len()), s.lower.clone()));
        secrets.dedup_by(|a, b| a.lower == b.lower);
        Scrub {
            scrubber: Scrubber::new(&secrets),
            whole,
        }
    }

    /// Whether the host name of `dest` carries a value a detector found: the name
    /// contains a matched value (ASCII case-insensitively), or the string it was
    /// found in held an encoded finding (which cannot be located, so it counts).
    pub(crate) fn carries(&self, dest: &Destination) -> bool {
        if dest
            .pointer
            .as_ref()
            .is_some_and(|p| self.whole.iter().any(|(w, _)| w.same_place(p)))
        {
            return true;
        }
        if self.scrubber.replacements.is_empty() {
            return false;
        }
        match &self.scrubber.ac {
            Some(ac) => ac.is_match(dest.host.as_str()),
            // INVARIANT: fail closed — without a matcher every name counts.
            None => true,
        }
    }

    /// Remove every matched value from the reasons, destinations and finding pointers.
    pub(crate) fn apply(
        &self,
        findings: &mut [Finding],
        destinations: &mut [Destination],
        reasons: &mut [Reason],
    ) {
        if findings.is_empty() {
            return;
        }
        let scrubber = &self.scrubber;
        // Destination inputs replaced whole or in part, to be replaced in messages too.
        let mut quoted: Vec<Secret> = Vec::new();
        for d in destinations.iter_mut() {
            let original = d.input.clone();
            if let Some(p) = &d.pointer
                && let Some((_, r)) = self.whole.iter().find(|(wp, _)| wp.same_place(p))
            {
                d.input = r.clone();
            } else {
                scrubber.scrub(&mut d.input);
            }
            if d.input != original && original.len() >= MIN_SECRET_LEN {
                quoted.push(Secret {
                    lower: original.to_ascii_lowercase(),
                    replacement: d.input.clone(),
                });
            }
            if let Some(p) = &mut d.pointer {
                *p = scrubber.scrub_path(p);
            }
            scrubber.scrub(&mut d.host);
        }
        quoted.sort_by_cached_key(|s| (std::cmp::Reverse(s.lower.len()), s.lower.clone()));
        quoted.dedup_by(|a, b| a.lower == b.lower);
        let quoted = Scrubber::new(&quoted);
        for r in reasons.iter_mut() {
            quoted.scrub(&mut r.message);
            scrubber.scrub(&mut r.message);
        }
        for f in findings.iter_mut() {
            scrubber.scrub_written(&mut f.pointer);
        }
    }
}
