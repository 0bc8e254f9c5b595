//! Walking a JSON value: pointers, budget, keyed fingerprints and one bounded level
//! of decoding per string.
use conductor_types::{JsonPath, Step};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::decode::{
    BASE32, BASE64, HEX, Json, alphabets, as_base32, as_base64_in_alphabet, as_hex, as_json_tree,
    as_percent, data_uri_payloads,
};
use crate::engine::Engine;
use crate::text::scan_text;
use crate::{BUDGET_DETECTOR, Finding, FingerprintKey, ScanLimits, Scanner};

impl Scanner {
    /// Scan every string (keys too) of `value`. Findings are ordered by pointer, then start.
    pub fn scan(&self, value: &serde_json::Value, key: &FingerprintKey) -> Vec<Finding> {
        self.scan_with_limits(value, key, ScanLimits::default())
    }

    /// [`Scanner::scan`] with explicit limits. When the budget runs out, the result
    /// holds a [`BUDGET_DETECTOR`] finding for every label (fail closed).
    pub fn scan_with_limits(
        &self,
        value: &serde_json::Value,
        key: &FingerprintKey,
        limits: ScanLimits,
    ) -> Vec<Finding> {
        let mut cx = Cx {
            e: &self.inner,
            key: Keyed::new(key),
            budget: limits.max_total_bytes,
            exhausted: false,
            out: Vec::new(),
        };
        cx.walk(value, None);
        finish(cx)
    }

    /// Scan one text as if it were the string at pointer `""`.
    pub fn scan_str(&self, text: &str, key: &FingerprintKey) -> Vec<Finding> {
        let mut cx = Cx {
            e: &self.inner,
            key: Keyed::new(key),
            budget: ScanLimits::default().max_total_bytes,
            exhausted: false,
            out: Vec::new(),
        };
        cx.string(text, &[], None, false, None, true);
        finish(cx)
    }

    #[doc(hidden)]
    /// Keyword hits per keyword in `text` (for tuning the prefilter).
    pub fn keyword_hits(&self, text: &str) -> Vec<(String, usize)> {
        let e = &self.inner;
        let mut counts = vec![0usize; e.keywords.len()];
        let mut hits = Vec::new();
        if let Some(k) = &e.keys {
            k.find_all(text.as_bytes(), &mut hits);
        }
        for (p, _, _) in hits {
            if let Some(c) = counts.get_mut(p) {
                *c += 1;
            }
        }
        let mut v: Vec<(String, usize)> = e
            .keywords
            .iter()
            .cloned()
            .zip(counts)
            .filter(|x| x.1 > 0)
            .collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        v
    }

    /// Whether the scanner has any detector at all.
    pub fn is_empty(&self) -> bool {
        let e = &self.inner;
        e.rules.is_empty()
            && e.literals.is_empty()
            && e.email.is_empty()
            && e.phone.is_empty()
            && e.card.is_empty()
            && e.ssn.is_empty()
            && e.iban.is_empty()
    }
}

fn finish(cx: Cx<'_>) -> Vec<Finding> {
    let mut out = cx.out;
    // By pointer text (the order findings had when pointers were strings), then the
    // rest of the finding: a total order, so that the result (and which duplicates
    // end up adjacent for `dedup`) does not depend on the sort's handling of ties.
    let rest = |a: &Finding, b: &Finding| {
        (
            a.in_key,
            a.start,
            a.end,
            &a.detector,
            &a.label,
            &a.encoding,
            &a.fingerprint,
        )
            .cmp(&(
                b.in_key,
                b.start,
                b.end,
                &b.detector,
                &b.label,
                &b.encoding,
                &b.fingerprint,
            ))
    };
    // `cmp_pointer` renders the differing segments of two pointers on every
    // comparison (`/documents/17` against `/documents/170`): with findings in more than
    // one string, each finding's pointer text is rendered once instead. The same
    // order: `cmp_pointer` orders as the texts do (a property test of
    // `conductor-types`), and the order is total.
    let many_pointers = out.len() > 8
        && out
            .first()
            .is_some_and(|f0| out.iter().any(|f| f.pointer != f0.pointer));
    if many_pointers {
        let mut keyed: Vec<(String, Finding)> = out
            .into_iter()
            .map(|f| (f.pointer.to_string(), f))
            .collect();
        keyed.sort_unstable_by(|(pa, a), (pb, b)| pa.cmp(pb).then_with(|| rest(a, b)));
        out = keyed.into_iter().map(|(_, f)| f).collect();
    } else {
        out.sort_unstable_by(|a, b| a.pointer.cmp_pointer(&b.pointer).then_with(|| rest(a, b)));
    }
    out.dedup();
    out
}

/// HMAC-SHA256 keyed at most once per call, when the call's first finding needs a
/// fingerprint (most scans find nothing, and the key schedule is two SHA-256 blocks),
/// and the fingerprints already computed in this call: one value is often found many
/// times (the same address in every record, a token in a string and in its decoded
/// form), and a look-up costs a small part of the two SHA-256 blocks. The memo lives
/// as long as the call and holds only (short) values of the scanned input.
struct Keyed<'k> {
    key: &'k FingerprintKey,
    /// Set up on first use; `Some(None)` only if HMAC refused the key (unreachable:
    /// HMAC accepts keys of any length).
    mac: Option<Option<Hmac<Sha256>>>,
    memo: std::collections::HashMap<Vec<u8>, String>,
}

impl<'k> Keyed<'k> {
    fn new(key: &'k FingerprintKey) -> Keyed<'k> {
        Keyed {
            key,
            mac: None,
            memo: std::collections::HashMap::new(),
        }
    }
}

/// `hmac-sha256:<hex>` of `value` under `key`.
fn fingerprint(key: &mut Keyed<'_>, value: &[u8]) -> String {
    if let Some(fp) = key.memo.get(value) {
        return fp.clone();
    }
    let k = key.key;
    let mac = key
        .mac
        .get_or_insert_with(|| <Hmac<Sha256> as Mac>::new_from_slice(&k.0).ok());
    let fp = match mac {
        Some(m) => {
            let mut m = m.clone();
            m.update(value);
            format!("hmac-sha256:{}", hex::encode(m.finalize().into_bytes()))
        }
        None => "hmac-sha256:unavailable".to_string(),
    };
    // Bounded: short values only and a fixed number of them, so that the memo costs at
    // most about 1 MiB whatever the input holds.
    if value.len() <= MEMO_VALUE_MAX && key.memo.len() < MEMO_ENTRIES {
        key.memo.insert(value.to_vec(), fp.clone());
    }
    fp
}

/// Longest value whose fingerprint is remembered.
const MEMO_VALUE_MAX: usize = 256;
/// Most fingerprints remembered per call.
const MEMO_ENTRIES: usize = 4096;

/// A raw detection inside one text.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) detector: String,
    pub(crate) labels: Vec<usize>,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) low_priority: bool,
}

struct Cx<'a> {
    e: &'a Engine,
    /// The keyed MAC, set up at most once per call and cloned per finding.
    key: Keyed<'a>,
    budget: usize,
    exhausted: bool,
    out: Vec<Finding>,
}

impl Cx<'_> {
    /// Walk `value`. With `fixed` set (decoded JSON), every finding is reported at the
    /// fixed path with that encoding and nothing is decoded again.
    fn walk(&mut self, value: &serde_json::Value, fixed: Option<(&[Step<'_>], &'static str)>) {
        // Explicit stack: values built in code may be deeper than any parser allows.
        // The path of the current value is a stack of borrowed steps that grows and
        // shrinks with the walk (no allocation, no formatting per element; a
        // `JsonPath` is built only for a finding); an entry holds its parent's depth
        // and its own step.
        enum Tok<'v> {
            Root,
            Index(usize),
            Key(&'v str),
            /// A member whose key holds a finding: named by position, not by the key.
            KeyIndex(usize, &'v str),
        }
        let mut path: Vec<Step<'_>> = Vec::new();
        let mut stack: Vec<(&serde_json::Value, usize, Tok<'_>)> = vec![(value, 0, Tok::Root)];
        while let Some((v, parent_len, tok)) = stack.pop() {
            if self.exhausted {
                return;
            }
            path.truncate(parent_len);
            let parent_key = match tok {
                Tok::Root => None,
                Tok::Index(i) => {
                    path.push(Step::Index(i));
                    None
                }
                Tok::Key(k) => {
                    path.push(Step::Key(k));
                    Some(k)
                }
                Tok::KeyIndex(i, k) => {
                    path.push(Step::Member(i));
                    Some(k)
                }
            };
            match v {
                serde_json::Value::String(s) => {
                    let (p, enc, decode) = match fixed {
                        Some((fp, enc)) => (fp, Some(enc), false),
                        None => (path.as_slice(), None, true),
                    };
                    self.string(s, p, parent_key, false, enc, decode);
                }
                serde_json::Value::Array(items) => {
                    let here = path.len();
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push((item, here, Tok::Index(i)));
                    }
                }
                serde_json::Value::Object(map) => {
                    self.object_shape(map, &path, fixed);
                    let here = path.len();
                    for (idx, (k, item)) in map.iter().enumerate().rev() {
                        // INVARIANT: a key that holds a detection is never spelled out in
                        // a pointer: its findings, and every finding below it, name the
                        // member `~k<index>` (its position among the members): the
                        // withheld-member segment of `conductor_types::JsonPath`, which no
                        // real key can be written as (a key's `~` is always `~0`).
                        path.push(Step::Member(idx));
                        let (p, enc, decode) = match fixed {
                            Some((fp, enc)) => (fp, Some(enc), false),
                            None => (path.as_slice(), None, true),
                        };
                        let before = self.out.len();
                        self.string(k, p, None, fixed.is_none(), enc, decode);
                        let key_hit = self.out.len() > before;
                        path.truncate(here);
                        let tok = if key_hit {
                            Tok::KeyIndex(idx, k)
                        } else {
                            Tok::Key(k)
                        };
                        stack.push((item, here, tok));
                    }
                }
                _ => {}
            }
        }
    }

    /// [`Cx::walk`] of a decoded JSON document with `fixed` set: the same strings in
    /// the same order, each reported at `ptr` with `enc` (a unit test compares the two
    /// walks' findings); no path is kept, as every finding is at `ptr`.
    fn walk_decoded(&mut self, value: &Json<'_>, ptr: &[Step<'_>], enc: &'static str) {
        let mut stack: Vec<(&Json<'_>, Option<&str>)> = vec![(value, None)];
        while let Some((v, parent_key)) = stack.pop() {
            if self.exhausted {
                return;
            }
            match v {
                Json::Str(s) => self.string(s, ptr, parent_key, false, Some(enc), false),
                Json::Arr(items) => {
                    for item in items.iter().rev() {
                        stack.push((item, None));
                    }
                }
                Json::Obj(members) => {
                    self.object_shape_decoded(v, ptr, enc);
                    for (k, item) in members.iter().rev() {
                        self.string(k, ptr, None, false, Some(enc), false);
                        stack.push((item, Some(k)));
                    }
                }
                Json::Other => {}
            }
        }
    }

    /// [`Cx::object_shape`] of a decoded JSON object (every finding at `ptr`).
    fn object_shape_decoded(&mut self, obj: &Json<'_>, ptr: &[Step<'_>], enc: &'static str) {
        if self.e.secrets.is_empty() {
            return;
        }
        // Each shape needs one of these members; most objects have none of them, and
        // one pass over the keys costs less than the look-ups below.
        let Json::Obj(members) = obj else {
            return;
        };
        if !members
            .iter()
            .any(|(k, _)| matches!(k.as_ref(), "private_key" | "kty" | "kind"))
        {
            return;
        }
        let fixed = Some((ptr, enc));
        if let Some(pk) = obj.get("private_key").and_then(Json::as_str)
            && pk.len() >= 64
            && obj.get("client_email").and_then(Json::as_str).is_some()
        {
            self.shape_finding("secrets.gcp-service-account", ptr, &[], pk, fixed);
        }
        if obj.get("kty").and_then(Json::as_str).is_some()
            && let Some(d) = obj.get("d").and_then(Json::as_str)
            && d.len() >= 16
        {
            self.shape_finding("secrets.jwk-private-key", ptr, &[], d, fixed);
        }
        if obj.get("kind").and_then(Json::as_str) == Some("Secret")
            && let Some(Json::Obj(data)) = obj.get("data")
        {
            for (_, v) in data {
                if let Json::Str(s) = v
                    && s.len() >= 4
                {
                    self.shape_finding("secrets.kubernetes-secret", ptr, &[], s, fixed);
                }
            }
        }
    }

    /// Whole-object checks: a GCP service-account key file.
    fn object_shape(
        &mut self,
        map: &serde_json::Map<String, serde_json::Value>,
        ptr: &[Step<'_>],
        fixed: Option<(&[Step<'_>], &'static str)>,
    ) {
        if self.e.secrets.is_empty() {
            return;
        }
        // One look-up per shape unless its first member is there (this runs per object).
        if let Some(serde_json::Value::String(pk)) = map.get("private_key")
            && pk.len() >= 64
            && matches!(map.get("client_email"), Some(serde_json::Value::String(_)))
        {
            self.shape_finding(
                "secrets.gcp-service-account",
                ptr,
                &["private_key"],
                pk,
                fixed,
            );
        }
        // A JSON Web Key with its private part (RFC 7517 §4, RFC 7518 §6.2.2.1 / §6.3.2.1:
        // `d` is the private exponent or the EC/OKP private key).
        if matches!(map.get("kty"), Some(serde_json::Value::String(_)))
            && let Some(serde_json::Value::String(d)) = map.get("d")
            && d.len() >= 16
        {
            self.shape_finding("secrets.jwk-private-key", ptr, &["d"], d, fixed);
        }
        // A Kubernetes Secret as JSON (`kubectl get secret -o json`): every `data` value.
        if let Some(serde_json::Value::String(kind)) = map.get("kind")
            && kind == "Secret"
            && let Some(serde_json::Value::Object(data)) = map.get("data")
        {
            for (k, v) in data {
                if let serde_json::Value::String(s) = v
                    && s.len() >= 4
                {
                    self.shape_finding("secrets.kubernetes-secret", ptr, &["data", k], s, fixed);
                }
            }
        }
    }

    /// A whole-value finding of an object's member at `ptr` + `tokens`.
    fn shape_finding(
        &mut self,
        detector: &str,
        ptr: &[Step<'_>],
        tokens: &[&str],
        value: &str,
        fixed: Option<(&[Step<'_>], &'static str)>,
    ) {
        let (p, enc) = match fixed {
            Some((fp, enc)) => (JsonPath::from_steps(fp), Some(enc.to_string())),
            None => {
                let mut p = JsonPath::from_steps(ptr);
                for t in tokens {
                    p = p.key(t);
                }
                (p, None)
            }
        };
        let fp = fingerprint(&mut self.key, value.as_bytes());
        for &li in &self.e.secrets {
            self.out.push(Finding {
                detector: detector.into(),
                label: self.label(li),
                pointer: p.clone(),
                start: 0,
                end: value.len(),
                encoding: enc.clone(),
                fingerprint: fp.clone(),
                in_key: false,
            });
        }
    }

    fn label(&self, li: usize) -> String {
        self.e.labels.get(li).cloned().unwrap_or_default()
    }

    fn take_budget(&mut self, n: usize, pointer: &[Step<'_>]) -> bool {
        if self.exhausted {
            return false;
        }
        if n > self.budget {
            self.exhausted = true;
            self.budget = 0;
            let fp = fingerprint(&mut self.key, b"");
            let pointer = JsonPath::from_steps(pointer);
            for li in 0..self.e.labels.len() {
                self.out.push(Finding {
                    detector: BUDGET_DETECTOR.into(),
                    label: self.label(li),
                    pointer: pointer.clone(),
                    start: 0,
                    end: 0,
                    encoding: None,
                    fingerprint: fp.clone(),
                    in_key: false,
                });
            }
            return false;
        }
        self.budget -= n;
        true
    }

    /// Scan one string (and, when `decode`, its decoded form).
    fn string(
        &mut self,
        s: &str,
        pointer: &[Step<'_>],
        key_ctx: Option<&str>,
        in_key: bool,
        encoding: Option<&'static str>,
        decode: bool,
    ) {
        if !self.take_budget(s.len(), pointer) {
            return;
        }
        let hits = scan_text(self.e, s.as_bytes(), key_ctx);
        let mut raw_prints: Vec<(String, String)> = Vec::new();
        // Built once, for the first finding of this string.
        let mut path: Option<JsonPath> = None;
        for h in &hits {
            let value = s.as_bytes().get(h.start..h.end).unwrap_or(&[]);
            let fp = fingerprint(&mut self.key, value);
            if decode {
                raw_prints.push((h.detector.clone(), fp.clone()));
            }
            for &li in &h.labels {
                self.out.push(Finding {
                    detector: h.detector.clone(),
                    label: self.label(li),
                    pointer: path
                        .get_or_insert_with(|| JsonPath::from_steps(pointer))
                        .clone(),
                    start: h.start,
                    end: h.end,
                    encoding: encoding.map(str::to_string),
                    fingerprint: fp.clone(),
                    in_key,
                });
            }
        }
        if !decode {
            return;
        }
        // One bounded level of decoding.
        if let Some(v) = as_json_tree(s) {
            let before = self.out.len();
            self.walk_decoded(&v, pointer, "json");
            self.drop_duplicates(before, &raw_prints, in_key);
            return;
        }
        // INVARIANT: one level only, and the strictest alphabets first (a hex or base32
        // string is also base64).
        let abc = alphabets(s);
        // Percent-encoding needs a `%`, a `data:` URI a `;`: one search for both rules
        // the two probes out for most strings (each was a search of its own).
        let pct_or_uri = memchr::memchr2(b'%', b';', s.as_bytes()).is_some();
        let decoded = None
            .or_else(|| {
                (abc & HEX != 0)
                    .then(|| as_hex(s))
                    .flatten()
                    .map(|d| (d, "hex"))
            })
            .or_else(|| {
                (abc & BASE32 != 0)
                    .then(|| as_base32(s))
                    .flatten()
                    .map(|d| (d, "base32"))
            })
            .or_else(|| {
                (abc & BASE64 != 0)
                    .then(|| as_base64_in_alphabet(s))
                    .flatten()
                    .map(|d| (d, "base64"))
            })
            .or_else(|| {
                pct_or_uri
                    .then(|| as_percent(s))
                    .flatten()
                    .map(|d| (d, "percent"))
            })
            .or_else(|| {
                pct_or_uri
                    .then(|| data_uri_payloads(s))
                    .flatten()
                    .map(|d| (d, "data-uri"))
            });
        if let Some((text, enc)) = decoded {
            let before = self.out.len();
            self.string(&text, pointer, key_ctx, in_key, Some(enc), false);
            self.drop_duplicates(before, &raw_prints, in_key);
        }
    }

    /// Drop decoded findings that repeat a raw finding of the same string.
    fn drop_duplicates(&mut self, from: usize, raw: &[(String, String)], in_key: bool) {
        let mut i = from;
        while i < self.out.len() {
            let dup = self.out.get(i).is_some_and(|f| {
                raw.iter()
                    .any(|(d, fp)| *d == f.detector && *fp == f.fingerprint)
            });
            if dup {
                self.out.remove(i);
            } else {
                if let Some(f) = self.out.get_mut(i) {
                    f.in_key = in_key;
                }
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LabelSpec;

    fn all_detectors() -> Scanner {
        Scanner::new(&[
            LabelSpec {
                name: "credentials".into(),
                builtins: vec!["secrets".into()],
                ..LabelSpec::default()
            },
            LabelSpec {
                name: "personal".into(),
                builtins: ["email", "phone", "payment-card", "us-ssn", "iban"]
                    .iter()
                    .map(|s| (*s).to_string())
                    .collect(),
                ..LabelSpec::default()
            },
        ])
        .unwrap()
    }

    /// Decoded JSON: the walk of the borrowed tree finds what the walk of the
    /// `serde_json::Value` finds (same findings, same order before sorting), with any
    /// budget, and the tree parses exactly the documents `serde_json` parses.
    #[test]
    fn decoded_json_tree_walk_matches_the_value_walk() {
        let s = all_detectors();
        let key = FingerprintKey([5; 32]);
        let mut docs: Vec<String> = [
            include_str!("../tests/corpus/positives.txt"),
            include_str!("../tests/corpus/negatives.txt"),
            include_str!("../tests/corpus/positives-issue16.txt"),
            include_str!("../tests/corpus/negatives-issue16.txt"),
        ]
        .iter()
        .flat_map(|f| f.lines())
        .map(str::to_string)
        .collect();
        let values: Vec<String> = docs
            .iter()
            .filter(|l| !l.starts_with('#') && l.len() < 400)
            .cloned()
            .collect();
        // Objects from pieces: repeated and unsorted keys, escapes, nesting, the
        // whole-object shapes, numbers, and some broken documents.
        let keys = [
            "password",
            "token",
            "b",
            "a",
            "phone",
            "ssn",
            "private_key",
            "client_email",
            "kty",
            "d",
            "kind",
            "data",
            "auth",
            "api_key",
            "x\\u0041",
            "\\\"q",
            "a",
        ];
        let mut r = 7u64;
        let mut next = |n: usize| {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            (r % n as u64) as usize
        };
        for _ in 0..3000 {
            let mut doc = String::from("{");
            for m in 0..next(6) {
                if m > 0 {
                    doc.push(',');
                }
                let k = keys[next(keys.len())];
                let v = match next(8) {
                    0 => "1e5".to_string(),
                    1 => "[true, null, \"x\", {\"tel\": \"+44 20 7946 0958\"}]".to_string(),
                    2 => "\"Secret\"".to_string(),
                    3 => format!(
                        "{{\"{}\": {}}}",
                        keys[next(keys.len())],
                        serde_json::to_string(&values[next(values.len())]).unwrap()
                    ),
                    4 => "\"tab\\there \\u00e9 078-05-1120 123-45-6789\"".to_string(),
                    _ => serde_json::to_string(&values[next(values.len())]).unwrap(),
                };
                doc.push_str(&format!("\"{k}\": {v}"));
            }
            doc.push('}');
            match next(20) {
                0 => doc.push(','),
                1 => doc = format!("[{doc}, {doc}]"),
                2 => doc.insert(1, '['),
                _ => {}
            }
            docs.push(doc);
        }
        docs.push(format!("{}{}", "[".repeat(200), "]".repeat(200)));
        docs.push(format!("{}1{}", "[".repeat(127), "]".repeat(127)));
        docs.push("[1e400]".into());
        docs.push("{\"a\": \"\\ud800\"}".into());
        let (mut parsed, mut with_findings, mut exhausted) = (0, 0, 0);
        for doc in &docs {
            let (old, new) = (
                crate::decode::as_json(doc),
                crate::decode::as_json_tree(doc),
            );
            assert_eq!(old.is_some(), new.is_some(), "{doc}");
            let (Some(old), Some(new)) = (old, new) else {
                continue;
            };
            parsed += 1;
            let ptr = [Step::Key("p")];
            for budget in [usize::MAX, 40, 200] {
                let mut a = Cx {
                    e: &s.inner,
                    key: Keyed::new(&key),
                    budget,
                    exhausted: false,
                    out: Vec::new(),
                };
                let mut b = Cx {
                    e: &s.inner,
                    key: Keyed::new(&key),
                    budget,
                    exhausted: false,
                    out: Vec::new(),
                };
                a.walk(&old, Some((&ptr, "json")));
                b.walk_decoded(&new, &ptr, "json");
                assert_eq!(a.out, b.out, "{doc} (budget {budget})");
                assert_eq!(a.exhausted, b.exhausted);
                with_findings += usize::from(!a.out.is_empty());
                exhausted += usize::from(a.exhausted);
            }
        }
        assert!(
            parsed > 2500 && with_findings > 1000 && exhausted > 500,
            "{parsed} {with_findings} {exhausted}"
        );
    }

    /// A remembered fingerprint is the one computed afresh, and the memo stays bounded.
    #[test]
    fn remembered_fingerprints_are_the_computed_ones() {
        let key = FingerprintKey([3; 32]);
        let mut memo = Keyed::new(&key);
        let long = vec![b'x'; MEMO_VALUE_MAX + 1];
        for v in [
            &b"jane.doe@example.com"[..],
            b"",
            b"+44 20 7946 0958",
            &long,
        ] {
            let first = fingerprint(&mut memo, v);
            let again = fingerprint(&mut memo, v);
            let fresh = fingerprint(&mut Keyed::new(&key), v);
            assert_eq!(first, fresh);
            assert_eq!(again, fresh);
        }
        assert_eq!(
            memo.memo.len(),
            3,
            "a value longer than the bound is not kept"
        );
        let other = fingerprint(&mut Keyed::new(&FingerprintKey([4; 32])), b"");
        assert_ne!(other, fingerprint(&mut memo, b""));
        for i in 0..MEMO_ENTRIES + 10 {
            fingerprint(&mut memo, i.to_string().as_bytes());
        }
        assert_eq!(memo.memo.len(), MEMO_ENTRIES);
    }
}
