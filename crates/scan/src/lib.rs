//! Data detectors: credentials and personal data in tool-call arguments and results.
//!
//! CONTRACT (used by `conductor-policy` and `conductor-core`; keep these signatures):
//! - [`BUILTIN_DETECTORS`], [`is_builtin`]
//! - [`parse_gitleaks_toml`] → [`GitleaksRule`]
//! - [`LabelSpec`] → [`Scanner::new`] → [`Scanner::scan`] → [`Finding`]
//! - [`FingerprintKey`], [`redact`]
//!
//! INVARIANT: nothing this crate returns or prints contains a matched value; a
//! [`Finding`] names the detector, the JSON pointer, the byte span and a keyed
//! fingerprint only.

use serde::Serialize;

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

/// One rule imported from a gitleaks-format TOML file.
#[derive(Debug, Clone, PartialEq)]
pub struct GitleaksRule {
    pub id: String,
    pub regex: String,
    pub keywords: Vec<String>,
    pub secret_group: Option<usize>,
    pub entropy: Option<f64>,
}

/// A gitleaks file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GitleaksError {
    /// Lowercase message naming the rule (by id or index) and what is wrong.
    pub message: String,
}

/// Parse a gitleaks-format rules file (`[[rules]] id/regex/keywords/secretGroup/entropy`).
pub fn parse_gitleaks_toml(text: &str) -> Result<Vec<GitleaksRule>, GitleaksError> {
    let _ = text;
    Err(GitleaksError {
        message: "gitleaks import is not implemented yet".into(),
    })
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
    pub pointer: String,
    /// Byte span within that string (of the decoded text when `encoding` is set).
    pub start: usize,
    pub end: usize,
    /// `None`, or the encoding that was decoded to find it (`base64`, `percent`, `json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// `hmac-sha256:<hex>` of the matched value under the installation key.
    pub fingerprint: String,
}

/// A compiled set of detectors, grouped by label.
#[derive(Debug, Clone)]
pub struct Scanner {
    labels: Vec<LabelSpec>,
}

impl Scanner {
    /// Compile every label; every bad pattern is reported, not only the first.
    pub fn new(labels: &[LabelSpec]) -> Result<Self, Vec<ScanConfigError>> {
        Ok(Scanner {
            labels: labels.to_vec(),
        })
    }

    /// Scan every string (keys too) of `value`. Findings are ordered by pointer, then start.
    pub fn scan(&self, value: &serde_json::Value, key: &FingerprintKey) -> Vec<Finding> {
        let _ = (value, key, &self.labels);
        Vec::new()
    }
}

/// A copy of `value` with every finding's span replaced by `[REDACTED:<label>]`
/// (the whole string when the finding was in decoded content).
pub fn redact(value: &serde_json::Value, findings: &[Finding]) -> serde_json::Value {
    let _ = findings;
    value.clone()
}
