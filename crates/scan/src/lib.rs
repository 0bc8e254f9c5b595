//! Data detectors: credentials and personal data in tool-call arguments and results.
//!
//! CONTRACT (used by `conductor-policy` and `conductor-core`; keep these signatures):
//! - [`BUILTIN_DETECTORS`], [`is_builtin`]
//! - [`parse_gitleaks_toml`] → [`GitleaksRule`]
//! - [`LabelSpec`] → [`Scanner::new`] → [`Scanner::scan`] → [`Finding`]
//! - [`FingerprintKey`], [`redact`]
//!
//! Additions: [`Scanner::scan_with_limits`], [`Scanner::scan_str`], [`ScanLimits`],
//! [`BUDGET_DETECTOR`], [`Finding::in_key`], [`GitleaksRule::allowlists`],
//! [`secret_detector_ids`]. Pointers name a member whose key holds a detection as
//! `[key:<i>]` (see [`Finding::pointer`]).
//!
//! INVARIANT: nothing this crate returns or prints contains a matched value; a
//! [`Finding`] names the detector, the JSON pointer, the byte span and a keyed
//! fingerprint only.
//!
//! # How a string is scanned (and what it costs)
//! 1. One Aho-Corasick pass over the string finds the keywords of every `secrets` rule
//!    and every keyworded gitleaks rule (case-insensitively, every occurrence). The
//!    automaton is a dense DFA walked over four interleaved segments of the text
//!    (`kwdfa`). A hit must pass a cheap check (exact case, word start, an assignment
//!    or a token after it) before the rule's regex runs, and the regex runs only on a
//!    window around the hit: the cost grows with the number of hits, not with the
//!    number of rules. A few short case-sensitive keywords (`SK`, `AC`) are found with
//!    memchr's SIMD substring search instead.
//! 2. `email` looks only at `@` bytes (memchr); `phone`, `payment-card`, `us-ssn` and
//!    `iban` look only at runs of digits (skipping digit-free 32-byte blocks, and whole
//!    tokens when digits are glued to letters: hex ids, base64), and are checked by
//!    hand (Luhn and issuer ranges, mod-97 and country lengths, SSA ranges), without
//!    regexes.
//! 3. User `match:` regexes and keyword-less gitleaks rules run over the whole string.
//! 4. A string that is itself JSON, base64 (standard or URL-safe, at least 24
//!    characters) or percent-encoded is decoded once and the result is scanned again
//!    (not decoded further); such findings carry `encoding`.
//!
//! Every call has a byte budget ([`ScanLimits`]): the bytes scanned, raw and decoded,
//! may not exceed `max_total_bytes` (default 64 MiB). When the budget runs out the
//! scan stops and reports a `scan.budget-exceeded` finding for every label, so a
//! caller that denies on findings fails closed.

mod checks;
mod gitleaks;
mod kwdfa;
mod pii;
mod rules;

use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use regex::bytes::{Regex, RegexBuilder};
use serde::Serialize;
use sha2::Sha256;

pub use gitleaks::{
    AllowTarget, GitleaksAllowlist, GitleaksError, GitleaksRule, parse_gitleaks_toml,
};

use checks::Verdict;
use pii::{NumberKind, NumberWants};
use rules::{BuiltinRule, Follow, Verify};

/// Built-in detector names a label's `detect:` may use.
pub const BUILTIN_DETECTORS: &[&str] = &[
    "secrets",
    "email",
    "phone",
    "payment-card",
    "us-ssn",
    "iban",
];

/// Whether `name` is a built-in detector.
pub fn is_builtin(name: &str) -> bool {
    BUILTIN_DETECTORS.contains(&name)
}

/// Every detector id the built-in `secrets` detector can report (`secrets.<kind>`),
/// sorted, without duplicates.
pub fn secret_detector_ids() -> Vec<String> {
    let mut ids: Vec<String> = rules::RULES
        .iter()
        .map(|r| format!("secrets.{}", r.id))
        .chain(["secrets.database-url".to_string()])
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// What a data label detects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSpec {
    /// The label's name (`credentials`, `personal`, ...).
    pub name: String,
    /// Built-in detector names (see [`BUILTIN_DETECTORS`]).
    pub builtins: Vec<String>,
    /// User regexes (`match:`), in order.
    pub patterns: Vec<String>,
    /// Imported gitleaks rules.
    pub gitleaks: Vec<GitleaksRule>,
}

/// A label spec that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanConfigError {
    /// The label concerned.
    pub label: String,
    /// `Some(i)` when the error is about `patterns[i]`.
    pub pattern: Option<usize>,
    /// Lowercase message, no trailing period.
    pub message: String,
}

/// Per-installation key for the keyed fingerprints of findings (HMAC-SHA256).
#[derive(Clone)]
pub struct FingerprintKey(pub [u8; 32]);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

/// One detected value. Never carries the value itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Detector id, e.g. `secrets.aws-access-key-id`, `email`, `match[0]`, `gitleaks.<id>`.
    pub detector: String,
    /// The label whose detector fired.
    pub label: String,
    /// JSON pointer (RFC 6901) to the string (or key) in the scanned value.
    ///
    /// INVARIANT: a key that holds a detection is never spelled out: its reference
    /// token is `[key:<i>]` (the member's position in the object's iteration order) in
    /// the key's own findings and in every finding below it. [`redact`] understands it.
    pub pointer: String,
    /// Byte span within that string (of the decoded text when `encoding` is set; for
    /// `json`, within the decoded string that held the match).
    pub start: usize,
    pub end: usize,
    /// `None`, or the encoding that was decoded to find it (`base64`, `percent`, `json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// `hmac-sha256:<hex>` of the matched value under the installation key.
    pub fingerprint: String,
    /// The match is in the object *key* of the member `pointer` names, not its value.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_key: bool,
}

/// Bounds on the work of one [`Scanner::scan_with_limits`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Bytes of text scanned per call, raw and decoded together.
    pub max_total_bytes: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_total_bytes: 64 << 20,
        }
    }
}

/// The detector id reported when a call's budget runs out.
pub const BUDGET_DETECTOR: &str = "scan.budget-exceeded";

/// A compiled set of detectors, grouped by label. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scanner {
    inner: Arc<Engine>,
}

#[derive(Debug)]
struct RegexRule {
    detector: String,
    labels: Vec<usize>,
    regex: Regex,
    group: Option<usize>,
    min_entropy: f64,
    verify: Verify,
    before: usize,
    after: usize,
    low_priority: bool,
    builtin: bool,
    allow: Vec<CompiledAllow>,
}

#[derive(Debug)]
struct CompiledAllow {
    target: AllowTarget,
    regexes: Vec<Regex>,
    stopwords: Vec<String>,
    and: bool,
}

#[derive(Debug, Clone)]
struct Trigger {
    rule: usize,
    /// Exact-case spelling the hit must have (`None`: any case).
    case: Option<&'static str>,
    word_start: bool,
    follow: Follow,
}

/// The keyword prefilter: the dense multi-stream DFA, or (for keyword sets too large
/// for it) the aho-corasick crate's automaton with the same all-occurrences semantics.
#[derive(Debug)]
enum Keywords {
    Dfa(Box<kwdfa::KwDfa>),
    Ac(AhoCorasick),
}

impl Keywords {
    fn find_all(&self, t: &[u8], hits: &mut Vec<(usize, usize, usize)>) {
        match self {
            Keywords::Dfa(d) => d.find_all(t, hits),
            Keywords::Ac(ac) => {
                for m in ac.find_overlapping_iter(t) {
                    hits.push((m.pattern().as_usize(), m.start(), m.end()));
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct Engine {
    labels: Vec<String>,
    rules: Vec<RegexRule>,
    keys: Option<Keywords>,
    keywords: Vec<String>,
    triggers: Vec<Vec<Trigger>>,
    /// Case-sensitive literal keywords searched with memmem: (finder, trigger).
    literals: Vec<(memchr::memmem::Finder<'static>, Trigger)>,
    always: Vec<usize>,
    secrets: Vec<usize>,
    email: Vec<usize>,
    phone: Vec<usize>,
    card: Vec<usize>,
    ssn: Vec<usize>,
    iban: Vec<usize>,
}

/// Compile a byte regex with size limits; `unicode` for user patterns.
pub(crate) fn compile_bytes_regex(src: &str, unicode: bool) -> Result<Regex, String> {
    RegexBuilder::new(src)
        .unicode(unicode)
        .size_limit(8 << 20)
        .dfa_size_limit(8 << 20)
        .nest_limit(100)
        .build()
        .map_err(|e| match e {
            regex::Error::Syntax(s) => {
                let last = s.lines().last().unwrap_or("").trim();
                last.strip_prefix("error: ").unwrap_or(last).to_string()
            }
            regex::Error::CompiledTooBig(n) => {
                format!("the regex compiles to more than {n} bytes; simplify it")
            }
            _ => "the regex cannot be compiled".to_string(),
        })
}

/// The built-in rules, compiled once per process.
fn builtin_regexes() -> &'static [Option<Regex>] {
    static CELL: OnceLock<Vec<Option<Regex>>> = OnceLock::new();
    CELL.get_or_init(|| {
        rules::RULES
            .iter()
            .map(|r| compile_bytes_regex(r.regex, false).ok())
            .collect()
    })
}

impl Scanner {
    /// Compile every label; every bad pattern is reported, not only the first.
    pub fn new(labels: &[LabelSpec]) -> Result<Self, Vec<ScanConfigError>> {
        let mut errors = Vec::new();
        let mut e = Engine {
            labels: labels.iter().map(|l| l.name.clone()).collect(),
            ..Engine::default()
        };
        for (li, l) in labels.iter().enumerate() {
            for b in &l.builtins {
                match b.as_str() {
                    "secrets" => e.secrets.push(li),
                    "email" => e.email.push(li),
                    "phone" => e.phone.push(li),
                    "payment-card" => e.card.push(li),
                    "us-ssn" => e.ssn.push(li),
                    "iban" => e.iban.push(li),
                    other => errors.push(ScanConfigError {
                        label: l.name.clone(),
                        pattern: None,
                        message: format!(
                            "unknown detector `{other}` (built-in detectors are {})",
                            BUILTIN_DETECTORS.join(", ")
                        ),
                    }),
                }
            }
        }
        e.secrets.dedup();
        let mut keywords: Vec<String> = Vec::new();
        let mut kw_triggers: Vec<Vec<Trigger>> = Vec::new();
        let mut add_kw = |kw: &str, t: Trigger, keywords: &mut Vec<String>| {
            let kw = kw.to_ascii_lowercase();
            match keywords.iter().position(|k| *k == kw) {
                Some(i) => {
                    if let Some(v) = kw_triggers.get_mut(i) {
                        v.push(t);
                    }
                }
                None => {
                    keywords.push(kw);
                    kw_triggers.push(vec![t]);
                }
            }
        };
        if !e.secrets.is_empty() {
            let compiled = builtin_regexes();
            for (ri, r) in rules::RULES.iter().enumerate() {
                let Some(Some(re)) = compiled.get(ri) else {
                    // INVARIANT: built-in regexes compile (a unit test checks every one).
                    continue;
                };
                let idx = e.rules.len();
                e.rules.push(builtin_rule(r, re.clone(), e.secrets.clone()));
                if r.literal {
                    for kw in r.case_keywords.unwrap_or(r.keywords) {
                        e.literals.push((
                            memchr::memmem::Finder::new(kw.as_bytes()).into_owned(),
                            Trigger {
                                rule: idx,
                                case: None,
                                word_start: r.word_start,
                                follow: r.follow,
                            },
                        ));
                    }
                    continue;
                }
                for (ki, kw) in r.keywords.iter().enumerate() {
                    let case = r.case_keywords.and_then(|c| c.get(ki).copied());
                    add_kw(
                        kw,
                        Trigger {
                            rule: idx,
                            case,
                            word_start: r.word_start,
                            follow: r.follow,
                        },
                        &mut keywords,
                    );
                }
            }
        }
        for (li, l) in labels.iter().enumerate() {
            for (pi, p) in l.patterns.iter().enumerate() {
                match compile_bytes_regex(p, true) {
                    Ok(re) => {
                        e.always.push(e.rules.len());
                        e.rules.push(RegexRule {
                            detector: format!("match[{pi}]"),
                            labels: vec![li],
                            regex: re,
                            group: Some(0),
                            min_entropy: 0.0,
                            verify: Verify::None,
                            before: 0,
                            after: 0,
                            low_priority: false,
                            builtin: false,
                            allow: Vec::new(),
                        });
                    }
                    Err(m) => errors.push(ScanConfigError {
                        label: l.name.clone(),
                        pattern: Some(pi),
                        message: format!("invalid regex: {m}"),
                    }),
                }
            }
            for g in &l.gitleaks {
                let re = match compile_bytes_regex(&g.regex, false) {
                    Ok(re) => re,
                    Err(m) => {
                        errors.push(ScanConfigError {
                            label: l.name.clone(),
                            pattern: None,
                            message: format!("gitleaks rule `{}`: invalid regex: {m}", g.id),
                        });
                        continue;
                    }
                };
                let mut allow = Vec::new();
                for a in &g.allowlists {
                    let mut regexes = Vec::new();
                    for r in &a.regexes {
                        match compile_bytes_regex(r, false) {
                            Ok(re) => regexes.push(re),
                            Err(m) => errors.push(ScanConfigError {
                                label: l.name.clone(),
                                pattern: None,
                                message: format!(
                                    "gitleaks rule `{}`: invalid allowlist regex: {m}",
                                    g.id
                                ),
                            }),
                        }
                    }
                    allow.push(CompiledAllow {
                        target: a.target,
                        regexes,
                        stopwords: a.stopwords.clone(),
                        and: a.and,
                    });
                }
                let idx = e.rules.len();
                e.rules.push(RegexRule {
                    detector: format!("gitleaks.{}", g.id),
                    labels: vec![li],
                    regex: re,
                    group: g.secret_group,
                    min_entropy: g.entropy.unwrap_or(0.0),
                    verify: Verify::None,
                    before: 256,
                    after: 1024,
                    low_priority: false,
                    builtin: false,
                    allow,
                });
                let kws: Vec<&String> = g.keywords.iter().filter(|k| !k.is_empty()).collect();
                if kws.is_empty() {
                    e.always.push(idx);
                } else {
                    for k in kws {
                        add_kw(
                            k,
                            Trigger {
                                rule: idx,
                                case: None,
                                word_start: false,
                                follow: Follow::Any,
                            },
                            &mut keywords,
                        );
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if !keywords.is_empty() {
            // Every occurrence of every keyword is reported (overlapping ones too), so
            // a keyword hidden inside a longer one still triggers its rules.
            let keys = match kwdfa::KwDfa::new(&keywords) {
                Ok(d) => Keywords::Dfa(Box::new(d)),
                Err(kwdfa::TooLarge) => Keywords::Ac(
                    AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .match_kind(MatchKind::Standard)
                        .kind(Some(AhoCorasickKind::DFA))
                        .build(&keywords)
                        .map_err(|err| {
                            vec![ScanConfigError {
                                label: labels.first().map(|l| l.name.clone()).unwrap_or_default(),
                                pattern: None,
                                message: format!("the keyword set cannot be compiled: {err}"),
                            }]
                        })?,
                ),
            };
            e.keys = Some(keys);
            e.keywords = keywords;
            e.triggers = kw_triggers;
        }
        Ok(Scanner { inner: Arc::new(e) })
    }

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
        cx.walk(value, String::new(), None);
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
        cx.string(text, "", None, false, None, true);
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

fn builtin_rule(r: &BuiltinRule, re: Regex, labels: Vec<usize>) -> RegexRule {
    RegexRule {
        detector: format!("secrets.{}", r.id),
        labels,
        regex: re,
        group: r.group,
        min_entropy: r.min_entropy,
        verify: r.verify,
        before: r.before,
        after: r.after,
        low_priority: r.low_priority,
        builtin: true,
        allow: Vec::new(),
    }
}

fn finish(cx: Cx<'_>) -> Vec<Finding> {
    let mut out = cx.out;
    out.sort_unstable_by(|a, b| {
        (&a.pointer, a.in_key, a.start, a.end, &a.detector, &a.label).cmp(&(
            &b.pointer,
            b.in_key,
            b.start,
            b.end,
            &b.detector,
            &b.label,
        ))
    });
    out.dedup();
    out
}

/// HMAC-SHA256 keyed once per call (the key schedule is not redone per finding).
struct Keyed(Option<Hmac<Sha256>>);

impl Keyed {
    fn new(key: &FingerprintKey) -> Keyed {
        // HMAC accepts keys of any length; `None` is unreachable in practice.
        Keyed(<Hmac<Sha256> as Mac>::new_from_slice(&key.0).ok())
    }
}

/// `hmac-sha256:<hex>` of `value` under `key`.
fn fingerprint(key: &Keyed, value: &[u8]) -> String {
    match &key.0 {
        Some(m) => {
            let mut m = m.clone();
            m.update(value);
            format!("hmac-sha256:{}", hex::encode(m.finalize().into_bytes()))
        }
        None => "hmac-sha256:unavailable".to_string(),
    }
}

/// Append `/` and the escaped reference token `t` to a pointer.
/// Append the decimal digits of `n` (no formatting machinery: called per element).
fn push_usize(ptr: &mut String, mut n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for &d in buf.get(i..).unwrap_or(&[]) {
        ptr.push(char::from(d));
    }
}

fn push_token(ptr: &mut String, t: &str) {
    ptr.push('/');
    for c in t.chars() {
        match c {
            '~' => ptr.push_str("~0"),
            '/' => ptr.push_str("~1"),
            c => ptr.push(c),
        }
    }
}

fn unescape_token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

/// A raw detection inside one text.
#[derive(Debug, Clone)]
struct Hit {
    detector: String,
    labels: Vec<usize>,
    start: usize,
    end: usize,
    low_priority: bool,
}

struct Cx<'a> {
    e: &'a Engine,
    /// The keyed MAC, set up once per call and cloned per finding.
    key: Keyed,
    budget: usize,
    exhausted: bool,
    out: Vec<Finding>,
}

impl Cx<'_> {
    /// Walk `value`. With `fixed` set (decoded JSON), every finding is reported at the
    /// fixed pointer with that encoding and nothing is decoded again.
    fn walk(
        &mut self,
        value: &serde_json::Value,
        base: String,
        fixed: Option<(&str, &'static str)>,
    ) {
        // Explicit stack: values built in code may be deeper than any parser allows.
        // The pointer of the current value lives in one buffer that grows and shrinks
        // with the walk (no allocation per element); an entry holds its parent's
        // pointer length and its own reference token.
        enum Tok<'v> {
            Root,
            Index(usize),
            Key(&'v str),
            /// A member whose key holds a finding: named by position, not by the key.
            KeyIndex(usize, &'v str),
        }
        let mut ptr = base;
        let root_len = ptr.len();
        let mut stack: Vec<(&serde_json::Value, usize, Tok<'_>)> =
            vec![(value, root_len, Tok::Root)];
        while let Some((v, parent_len, tok)) = stack.pop() {
            if self.exhausted {
                return;
            }
            ptr.truncate(parent_len);
            let parent_key = match tok {
                Tok::Root => None,
                Tok::Index(i) => {
                    ptr.push('/');
                    push_usize(&mut ptr, i);
                    None
                }
                Tok::Key(k) => {
                    push_token(&mut ptr, k);
                    Some(k)
                }
                Tok::KeyIndex(i, k) => {
                    use std::fmt::Write as _;
                    let _ = write!(ptr, "/[key:{i}]");
                    Some(k)
                }
            };
            match v {
                serde_json::Value::String(s) => {
                    let (p, enc, decode) = match fixed {
                        Some((fp, enc)) => (fp, Some(enc), false),
                        None => (ptr.as_str(), None, true),
                    };
                    self.string(s, p, parent_key, false, enc, decode);
                }
                serde_json::Value::Array(items) => {
                    let here = ptr.len();
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push((item, here, Tok::Index(i)));
                    }
                }
                serde_json::Value::Object(map) => {
                    self.object_shape(map, &ptr, fixed);
                    let here = ptr.len();
                    for (idx, (k, item)) in map.iter().enumerate().rev() {
                        // INVARIANT: a key that holds a detection is never spelled out in
                        // a pointer: its findings, and every finding below it, name the
                        // member `[key:<index>]` (its position among the members).
                        ptr.push_str("/[key:");
                        push_usize(&mut ptr, idx);
                        ptr.push(']');
                        let (p, enc, decode) = match fixed {
                            Some((fp, enc)) => (fp, Some(enc), false),
                            None => (ptr.as_str(), None, true),
                        };
                        let before = self.out.len();
                        self.string(k, p, None, fixed.is_none(), enc, decode);
                        let key_hit = self.out.len() > before;
                        ptr.truncate(here);
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

    /// Whole-object checks: a GCP service-account key file.
    fn object_shape(
        &mut self,
        map: &serde_json::Map<String, serde_json::Value>,
        ptr: &str,
        fixed: Option<(&str, &'static str)>,
    ) {
        if self.e.secrets.is_empty() {
            return;
        }
        if let (Some(serde_json::Value::String(pk)), Some(serde_json::Value::String(_))) =
            (map.get("private_key"), map.get("client_email"))
            && pk.len() >= 64
        {
            let (p, enc) = match fixed {
                Some((fp, enc)) => (fp.to_string(), Some(enc.to_string())),
                None => (format!("{ptr}/private_key"), None),
            };
            let fp = fingerprint(&self.key, pk.as_bytes());
            for &li in &self.e.secrets {
                self.out.push(Finding {
                    detector: "secrets.gcp-service-account".into(),
                    label: self.label(li),
                    pointer: p.clone(),
                    start: 0,
                    end: pk.len(),
                    encoding: enc.clone(),
                    fingerprint: fp.clone(),
                    in_key: false,
                });
            }
        }
    }

    fn label(&self, li: usize) -> String {
        self.e.labels.get(li).cloned().unwrap_or_default()
    }

    fn take_budget(&mut self, n: usize, pointer: &str) -> bool {
        if self.exhausted {
            return false;
        }
        if n > self.budget {
            self.exhausted = true;
            self.budget = 0;
            let fp = fingerprint(&self.key, b"");
            for li in 0..self.e.labels.len() {
                self.out.push(Finding {
                    detector: BUDGET_DETECTOR.into(),
                    label: self.label(li),
                    pointer: pointer.to_string(),
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
        pointer: &str,
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
        for h in &hits {
            let value = s.as_bytes().get(h.start..h.end).unwrap_or(&[]);
            let fp = fingerprint(&self.key, value);
            if decode {
                raw_prints.push((h.detector.clone(), fp.clone()));
            }
            for &li in &h.labels {
                self.out.push(Finding {
                    detector: h.detector.clone(),
                    label: self.label(li),
                    pointer: pointer.to_string(),
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
        if let Some(v) = as_json(s) {
            let before = self.out.len();
            self.walk(&v, String::new(), Some((pointer, "json")));
            self.drop_duplicates(before, &raw_prints, in_key);
            return;
        }
        let decoded = as_base64(s)
            .map(|d| (d, "base64"))
            .or_else(|| as_percent(s).map(|d| (d, "percent")));
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

fn as_json(s: &str) -> Option<serde_json::Value> {
    let t = s.trim();
    let (first, last) = (t.as_bytes().first()?, t.as_bytes().last()?);
    if !matches!((first, last), (b'{', b'}') | (b'[', b']')) || t.len() < 2 {
        return None;
    }
    serde_json::from_str(t).ok()
}

fn mostly_text(s: &str) -> bool {
    let total = s.chars().count().max(1);
    let control = s
        .chars()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        .count();
    control * 20 < total
}

/// Whole-string base64 (standard or URL-safe alphabet, padded or not, line breaks
/// allowed), at least 24 characters, decoding to mostly-printable UTF-8.
fn as_base64(s: &str) -> Option<String> {
    let t = s.trim();
    if t.len() < 24 {
        return None;
    }
    // Cheap rejection before any allocation: prose, code and log lines fail on their
    // first space or punctuation.
    if !t.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=' | b'\r' | b'\n')
    }) {
        return None;
    }
    let mut clean: Vec<u8> = Vec::with_capacity(t.len());
    let mut url = false;
    let mut std_chars = false;
    for &b in t.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => clean.push(b),
            b'+' | b'/' => {
                std_chars = true;
                clean.push(b);
            }
            b'-' | b'_' => {
                url = true;
                clean.push(b);
            }
            b'=' => clean.push(b),
            b'\r' | b'\n' => {}
            _ => return None,
        }
    }
    if url && std_chars {
        return None;
    }
    // Padding only at the end.
    let body_len = clean.iter().position(|&b| b == b'=').unwrap_or(clean.len());
    if clean
        .get(body_len..)
        .is_some_and(|p| p.iter().any(|&b| b != b'='))
        || body_len % 4 == 1
    {
        return None;
    }
    let body = clean.get(..body_len)?;
    let bytes = if url {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?
    } else {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(body)
            .ok()?
    };
    let text = String::from_utf8(bytes).ok()?;
    mostly_text(&text).then_some(text)
}

/// Percent-decoding (RFC 3986) of a string that looks percent-encoded: at least one
/// `%XX` escape and no raw whitespace (prose that merely quotes a URL is scanned raw).
fn as_percent(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let hexval = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let first = memchr::memchr_iter(b'%', b).find(|&i| {
        b.get(i + 1).copied().and_then(hexval).is_some()
            && b.get(i + 2).copied().and_then(hexval).is_some()
    })?;
    if b.iter().any(u8::is_ascii_whitespace) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(b.get(..first)?);
    let mut i = first;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hexval),
                b.get(i + 2).copied().and_then(hexval),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    let text = String::from_utf8(out).ok()?;
    mostly_text(&text).then_some(text)
}

fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The cheap check of what follows a keyword ending at `at`.
fn follows(f: Follow, t: &[u8], at: usize) -> bool {
    let b = |i: usize| t.get(i).copied().unwrap_or(0);
    match f {
        Follow::Any => true,
        Follow::Assign => {
            let mut i = at;
            while i < t.len()
                && i - at < 40
                && (b(i).is_ascii_alphanumeric() || matches!(b(i), b'_' | b'.' | b'-'))
            {
                i += 1;
            }
            if b(i) == b'\\' {
                i += 1;
            }
            if matches!(b(i), b'"' | b'\'') {
                i += 1;
            }
            let sp = i;
            while i < t.len() && i - sp < 5 && matches!(b(i), b' ' | b'\t') {
                i += 1;
            }
            matches!(b(i), b'=' | b':' | b'|')
        }
        Follow::Jwt => {
            let mut i = at;
            while i < t.len()
                && i - at < 1024
                && (b(i).is_ascii_alphanumeric() || matches!(b(i), b'_' | b'-'))
            {
                i += 1;
            }
            b(i) == b'.' && b(i + 1) == b'e' && b(i + 2) == b'y'
        }
        Follow::Space => {
            let mut i = at;
            while i < t.len() && i - at < 5 && matches!(b(i), b' ' | b'\t') {
                i += 1;
            }
            i > at && (b(i).is_ascii_alphanumeric() || matches!(b(i), b'+' | b'/' | b'-' | b'_'))
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    !(b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'`' | b'<' | b'>'))
}

/// Strings up to this size are scanned whole by each triggered rule.
const SMALL: usize = 2048;

/// Literal keywords in strings shorter than this are found with `memchr` on their
/// first byte instead of the `memmem` searcher (whose set-up dominates short strings).
const LITERAL_MEMCHR_BELOW: usize = 4096;

/// Every detection in one text.
fn scan_text(e: &Engine, t: &[u8], key_ctx: Option<&str>) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::new();
    // 1. Keyword prefilter → windows per rule.
    let mut windows: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
    let mut on_hit = |tr: &Trigger, ms: usize, me: usize| {
        if let Some(case) = tr.case
            && !eq_bytes(t.get(ms..me).unwrap_or(&[]), case.as_bytes())
        {
            return;
        }
        if tr.word_start
            && ms > 0
            && t.get(ms - 1)
                .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return;
        }
        if !follows(tr.follow, t, me) {
            return;
        }
        let Some(rule) = e.rules.get(tr.rule) else {
            return;
        };
        let (ws, we) = if t.len() <= SMALL {
            (0, t.len())
        } else {
            (
                ms.saturating_sub(rule.before),
                (me + rule.after).min(t.len()),
            )
        };
        match windows.iter_mut().find(|(r, _)| *r == tr.rule) {
            Some((_, v)) => match v.last_mut() {
                Some(last) if ws <= last.1 => last.1 = last.1.max(we),
                _ => v.push((ws, we)),
            },
            None => windows.push((tr.rule, vec![(ws, we)])),
        }
    };
    if let Some(k) = &e.keys {
        let mut kh = Vec::new();
        k.find_all(t, &mut kh);
        for (p, ms, me) in kh {
            if let Some(trs) = e.triggers.get(p) {
                for tr in trs {
                    on_hit(tr, ms, me);
                }
            }
        }
    }
    for (f, tr) in &e.literals {
        let needle = f.needle();
        let n = needle.len();
        match needle.split_first() {
            // Short strings: a memchr for the first byte costs less than setting up
            // the packed-pair searcher.
            Some((&first, _)) if t.len() < LITERAL_MEMCHR_BELOW => {
                for ms in memchr::memchr_iter(first, t) {
                    if t.get(ms..).is_some_and(|r| r.starts_with(needle)) {
                        on_hit(tr, ms, ms + n);
                    }
                }
            }
            _ => {
                for ms in f.find_iter(t) {
                    on_hit(tr, ms, ms + n);
                }
            }
        }
    }
    // Literal hits come after the automaton's: keep each rule's windows ordered.
    for (_, v) in &mut windows {
        if !v.is_sorted() {
            v.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::with_capacity(v.len());
            for w in v.drain(..) {
                match merged.last_mut() {
                    Some(last) if w.0 <= last.1 => last.1 = last.1.max(w.1),
                    _ => merged.push(w),
                }
            }
            *v = merged;
        }
    }
    for (ri, ws) in windows {
        for (a, b) in ws {
            // Extend to token boundaries so that `\b` and anchors see whole tokens.
            let mut a2 = a;
            while a2 > 0 && a - a2 < 256 && t.get(a2 - 1).is_some_and(|&c| is_token_byte(c)) {
                a2 -= 1;
            }
            let mut b2 = b;
            while b2 < t.len() && b2 - b < 256 && t.get(b2).is_some_and(|&c| is_token_byte(c)) {
                b2 += 1;
            }
            run_rule(e, ri, t, a2, b2, &mut hits);
        }
    }
    // 2. Rules without keywords (user patterns, keyword-less gitleaks rules).
    for &ri in &e.always {
        run_rule(e, ri, t, 0, t.len(), &mut hits);
    }
    // 3. Key context for the built-in secrets.
    if let Some(k) = key_ctx
        && !e.secrets.is_empty()
    {
        key_context_hits(e, k, t, &mut hits);
    }
    // Specific secrets win over generic ones on the same bytes.
    if hits.iter().any(|h| h.low_priority) {
        let strong: Vec<(usize, usize)> = hits
            .iter()
            .filter(|h| !h.low_priority && h.detector.starts_with("secrets."))
            .map(|h| (h.start, h.end))
            .collect();
        hits.retain(|h| !h.low_priority || !strong.iter().any(|&(a, b)| h.start < b && a < h.end));
    }
    // 4. Personal data.
    if !e.email.is_empty() {
        let mut spans = Vec::new();
        pii::find_emails(t, &mut spans);
        for (a, b) in spans {
            hits.push(Hit {
                detector: "email".into(),
                labels: e.email.clone(),
                start: a,
                end: b,
                low_priority: false,
            });
        }
    }
    // Every number detection needs a digit: strings without one skip the key check.
    let (phone_key, ssn_key) = match key_ctx {
        Some(key)
            if !(e.phone.is_empty() && e.ssn.is_empty()) && t.iter().any(u8::is_ascii_digit) =>
        {
            (
                key_has_any(key, &["phone", "mobile", "tel", "fax", "cell"]),
                key_has_any(key, &["ssn", "social_security", "socialsecurity"]),
            )
        }
        _ => (false, false),
    };
    let wants = NumberWants {
        phone: !e.phone.is_empty(),
        card: !e.card.is_empty(),
        ssn: !e.ssn.is_empty(),
        iban: !e.iban.is_empty(),
        phone_key,
        ssn_key,
    };
    if wants.any() {
        let mut spans = Vec::new();
        pii::find_numbers(t, wants, &mut spans);
        for (kind, a, b) in spans {
            let (det, labels) = match kind {
                NumberKind::Phone => ("phone", &e.phone),
                NumberKind::Card => ("payment-card", &e.card),
                NumberKind::Ssn => ("us-ssn", &e.ssn),
                NumberKind::Iban => ("iban", &e.iban),
            };
            hits.push(Hit {
                detector: det.into(),
                labels: labels.clone(),
                start: a,
                end: b,
                low_priority: false,
            });
        }
    }
    hits
}

fn run_rule(e: &Engine, ri: usize, t: &[u8], a: usize, b: usize, hits: &mut Vec<Hit>) {
    let Some(rule) = e.rules.get(ri) else {
        return;
    };
    let Some(window) = t.get(a..b) else {
        return;
    };
    for caps in rule.regex.captures_iter(window) {
        let Some(m) = caps.get(0) else {
            continue;
        };
        let sec = match rule.group {
            Some(g) => caps.get(g),
            None => (1..caps.len()).find_map(|g| caps.get(g)).or(Some(m)),
        };
        let Some(sec) = sec else {
            continue;
        };
        if sec.is_empty() {
            continue;
        }
        let secret = sec.as_bytes();
        let (ms, me) = (a + m.start(), a + m.end());
        let (ss, se) = (a + sec.start(), a + sec.end());
        if rule.builtin && rule.verify != Verify::UrlPassword && checks::is_placeholder(secret) {
            continue;
        }
        if rule.min_entropy > 0.0 && checks::entropy(secret) < rule.min_entropy {
            continue;
        }
        let name = if rule.group == Some(2) {
            caps.get(1).map(|n| n.as_bytes())
        } else {
            None
        };
        let detector = match checks::verify(rule.verify, t, (ms, me), secret, name) {
            Verdict::Reject => continue,
            Verdict::Accept => rule.detector.clone(),
            Verdict::AcceptAs(id) => format!("secrets.{id}"),
        };
        if allowed(rule, t, (ms, me), secret) {
            continue;
        }
        hits.push(Hit {
            detector,
            labels: rule.labels.clone(),
            start: ss,
            end: se,
            low_priority: rule.low_priority,
        });
    }
}

/// gitleaks allowlists: a match is allowed when any allowlist applies.
fn allowed(rule: &RegexRule, t: &[u8], m: (usize, usize), secret: &[u8]) -> bool {
    if rule.allow.is_empty() {
        return false;
    }
    let lower = String::from_utf8_lossy(secret).to_lowercase();
    rule.allow.iter().any(|a| {
        let target: &[u8] = match a.target {
            AllowTarget::Secret => secret,
            AllowTarget::Match => t.get(m.0..m.1).unwrap_or(&[]),
            AllowTarget::Line => {
                let s = t
                    .get(..m.0)
                    .and_then(|p| p.iter().rposition(|&c| c == b'\n'))
                    .map_or(0, |i| i + 1);
                let e = t
                    .get(m.1..)
                    .and_then(|p| p.iter().position(|&c| c == b'\n'))
                    .map_or(t.len(), |i| m.1 + i);
                t.get(s..e).unwrap_or(&[])
            }
        };
        let re_hit = a.regexes.iter().any(|r| r.is_match(target));
        let sw_hit = a.stopwords.iter().any(|w| lower.contains(w.as_str()));
        if a.and && !a.regexes.is_empty() && !a.stopwords.is_empty() {
            re_hit && sw_hit
        } else {
            re_hit || sw_hit
        }
    })
}

/// A key names a secret only if it contains one of these: the AWS names contain
/// `secret` or `token`, and every word of `checks::SECRETISH_KEY_WORDS` contains one
/// (a unit test checks it).
const KEY_CONTEXT_WORDS: &[&str] = &[
    "secret",
    "token",
    "twilio",
    "pass",
    "pwd",
    "key",
    "credential",
];

/// `key`, ASCII-lowercased, contains one of `words` (lowercase). Keys up to 64 bytes
/// are lowercased on the stack: this runs for every member of every object.
fn key_has_any(key: &str, words: &[&str]) -> bool {
    let b = key.as_bytes();
    let mut buf = [0u8; 64];
    if b.len() > buf.len() {
        let k = key.to_ascii_lowercase();
        return words.iter().any(|w| k.contains(w));
    }
    for (d, c) in buf.iter_mut().zip(b) {
        *d = c.to_ascii_lowercase();
    }
    let hay = buf.get(..b.len()).unwrap_or(&[]);
    hay.iter().enumerate().any(|(i, &c)| {
        words.iter().any(|w| {
            w.as_bytes().first() == Some(&c)
                && hay.get(i..i + w.len()).is_some_and(|x| x == w.as_bytes())
        })
    })
}

/// The value of a member whose key names a secret.
fn key_context_hits(e: &Engine, key: &str, t: &[u8], hits: &mut Vec<Hit>) {
    // INVARIANT: every branch below needs one of `KEY_CONTEXT_WORDS` in the key, so
    // other keys (`id`, `name`, `score`: most keys) are done here.
    if !key_has_any(key, KEY_CONTEXT_WORDS) {
        return;
    }
    let k = key.to_ascii_lowercase();
    let start = t.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
    let end = t
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    let Some(v) = t.get(start..end) else {
        return;
    };
    if v.is_empty() {
        return;
    }
    let b64 = |min: usize, max: usize| {
        (min..=max).contains(&v.len())
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    };
    let mut push = |id: &str, low: bool| {
        hits.push(Hit {
            detector: format!("secrets.{id}"),
            labels: e.secrets.clone(),
            start,
            end,
            low_priority: low,
        });
    };
    if (k.contains("aws") && k.contains("secret")
        || k == "secretaccesskey"
        || k == "secret_access_key")
        && b64(40, 40)
        && !checks::is_placeholder(v)
        && checks::entropy(v) >= 4.0
    {
        push("aws-secret-access-key", false);
        return;
    }
    if (k.contains("session_token") || k.contains("sessiontoken") || k.contains("security_token"))
        && b64(100, 8192)
        && checks::entropy(v) >= 4.0
    {
        push("aws-session-token", false);
        return;
    }
    if k.contains("twilio")
        && v.len() == 32
        && v.iter().all(u8::is_ascii_hexdigit)
        && checks::entropy(v) >= 3.0
    {
        push("twilio-auth-token", false);
        return;
    }
    let password_key = ["password", "passwd", "passphrase"]
        .iter()
        .any(|w| k.contains(w))
        || k == "pwd"
        || k.ends_with("_pwd");
    if checks::key_is_secretish(key) {
        let ok = if password_key {
            (6..=200).contains(&v.len())
                && !checks::is_placeholder(v)
                && !v.iter().any(|b| b.is_ascii_whitespace())
                && checks::generic_value_ok_relaxed(v)
        } else {
            checks::generic_value_ok(v)
        };
        if ok {
            push("generic-secret", true);
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_regex_compiles() {
        for (r, re) in rules::RULES.iter().zip(builtin_regexes()) {
            assert!(re.is_some(), "{} does not compile", r.id);
            if let Some(c) = r.case_keywords {
                assert_eq!(c.len(), r.keywords.len(), "{}", r.id);
                for (a, b) in c.iter().zip(r.keywords) {
                    assert_eq!(a.to_ascii_lowercase(), *b, "{}", r.id);
                }
            }
            for k in r.keywords {
                assert_eq!(k.to_ascii_lowercase(), *k, "{}", r.id);
            }
        }
    }

    #[test]
    fn key_context_prefilter_covers_every_secretish_word() {
        for w in checks::SECRETISH_KEY_WORDS {
            assert!(
                KEY_CONTEXT_WORDS.iter().any(|k| w.contains(k)),
                "`{w}` escapes the key prefilter"
            );
        }
        for w in [
            "secretaccesskey",
            "aws_secret",
            "session_token",
            "sessiontoken",
            "security_token",
            "twilio_auth",
        ] {
            assert!(KEY_CONTEXT_WORDS.iter().any(|k| w.contains(k)), "{w}");
        }
    }

    #[test]
    fn key_word_lookup_matches_lowercase_contains() {
        let words = ["phone", "tel", "ssn", "social_security", "key"];
        let long = format!("{}Social_Security", "x".repeat(70));
        for key in [
            "",
            "PHONE",
            "x_tel",
            "Te",
            "SSN_no",
            "api_KEY",
            "ke",
            "Social_Securit",
            "mobile",
            "é-tel",
            long.as_str(),
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxPHONE",
        ] {
            let want = words.iter().any(|w| key.to_ascii_lowercase().contains(w));
            assert_eq!(key_has_any(key, &words), want, "{key}");
        }
    }

    #[test]
    fn decimal_pointer_tokens() {
        for n in [0usize, 7, 10, 99, 1234, usize::MAX] {
            let mut s = String::new();
            push_usize(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn decoding_probes() {
        assert_eq!(
            as_percent("to=alice%40example.com").as_deref(),
            Some("to=alice@example.com")
        );
        assert_eq!(as_percent("see https://x.io/a%20b for 50% off"), None);
        assert_eq!(as_percent("100%"), None);
        assert_eq!(
            as_base64("aGVsbG8gd29ybGQsIGhlbGxvIHdvcmxk").as_deref(),
            Some("hello world, hello world")
        );
        assert_eq!(as_base64("not base64 at all, has spaces"), None);
        assert!(as_json(" {\"a\": 1} ").is_some());
        assert!(as_json("{not json}").is_none());
    }

    #[test]
    fn pointer_tokens_round_trip() {
        let mut p = String::from("/x");
        push_token(&mut p, "a/b~c");
        assert_eq!(p, "/x/a~1b~0c");
        assert_eq!(unescape_token("a~1b~0c"), "a/b~c");
        assert_eq!(unescape_token("~01"), "~1");
    }
}
