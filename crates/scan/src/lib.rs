//! Data detectors: credentials and personal data in tool-call arguments and results.
//!
//! # Using it
//! `conductor-policy` compiles a policy's labels to [`LabelSpec`]s (checking detector
//! names with [`is_builtin`] / [`BUILTIN_DETECTORS`], importing rules with
//! [`parse_gitleaks_toml`]); [`Scanner::new`] compiles them once; `conductor-core` calls
//! [`Scanner::scan`] (or [`Scanner::scan_with_limits`]) on every argument and result
//! with the installation's [`FingerprintKey`], and [`redact`]s what it records. The
//! documented items below are the crate's contract: their signatures stay.
//! Pointers name a member whose key holds a detection as `~k<i>` (see
//! [`Finding::pointer`]). The detector kinds, their sources and the decisions about
//! test keys are listed in `docs/detectors.md`.
//!
//! # Where things are
//! `engine` compiles label specs (built-in rules in `rules`, keyword DFA in `kwdfa`,
//! gitleaks import in `gitleaks`); `walk` walks a JSON value (pointers, budget,
//! fingerprints, one level of decoding via `decode`); `text` finds detections in one
//! string (`checks` holds the format checks, `pii` the personal-data scanners);
//! `redact` rewrites a value. A new detector kind is a `BuiltinRule` in `rules` plus
//! two carriers in `tests/corpus/`.
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

#![warn(missing_docs, unreachable_pub)]

mod checks;
mod decode;
mod engine;
mod gitleaks;
mod kwdfa;
mod pii;
mod redact;
mod rules;
mod text;
mod walk;

use std::sync::Arc;

use conductor_types::JsonPath;

use serde::Serialize;

pub use gitleaks::{
    AllowTarget, GitleaksAllowlist, GitleaksError, GitleaksRule, parse_gitleaks_toml,
};
pub use redact::{CREDENTIAL_PARAMETERS, REDACTED_PARAMETER, redact};

use engine::Engine;
pub(crate) use engine::compile_bytes_regex;

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
        .chain(
            [
                "secrets.database-url",
                "secrets.jwk-private-key",
                "secrets.docker-config-auth",
                "secrets.kubeconfig-client-key",
                "secrets.kubernetes-secret",
            ]
            .map(String::from),
        )
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
    /// Where the string (or key) is in the scanned value; written out (serialised)
    /// as an RFC 6901 JSON pointer.
    ///
    /// INVARIANT: a key that holds a detection is never spelled out: its segment is
    /// [`Segment::Member`] (`~k<i>` when written: the member's position in the
    /// object's iteration order) in the key's own findings and in every finding below
    /// it. [`redact`] understands it.
    ///
    /// [`Segment::Member`]: conductor_types::Segment::Member
    pub pointer: JsonPath,
    /// Start of the byte span within that string (of the decoded text when `encoding`
    /// is set; for `json`, within the decoded string that held the match).
    pub start: usize,
    /// End (exclusive) of the byte span; see [`Finding::start`].
    pub end: usize,
    /// `None`, or the encoding that was decoded to find it (`base64`, `hex`, `base32`,
    /// `percent`, `json`).
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
