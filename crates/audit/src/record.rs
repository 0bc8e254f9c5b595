//! The stored record: its canonical bytes and its place in the hash chain.
//!
//! A stored record is the RFC 8785 canonical JSON object of the fields below (absent
//! optional fields are left out). Its chain hash is
//! `SHA-256(prev_hash_bytes ‖ canonical_record_bytes)`, where `prev_hash_bytes` are the 32
//! raw bytes of the previous record's hash (32 zero bytes for the first record) and the
//! record itself also names the previous hash in `prev`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::NewRecord;
use crate::jcs;

/// The record format version, stored in every record as `v`.
pub const RECORD_VERSION: u64 = 1;

/// The hash the first record chains onto.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// One committed record, as read back from a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub v: u64,
    pub seq: u64,
    /// RFC 3339 UTC, microseconds, taken by the store when the record was committed.
    pub time: String,
    pub event: String,
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub tool: String,
    pub action: String,
    pub decision: String,
    pub reasons: serde_json::Value,
    pub destinations: serde_json::Value,
    pub findings: serde_json::Value,
    pub policy: String,
    pub request_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    pub latency_us: u64,
    /// `sha256:<hex>` of the previous record (64 zeros for the first).
    pub prev: String,
    /// `sha256:<hex>` of this record (not part of the hashed bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// The caller-side part of a record, already in canonical form (built outside the writer
/// thread so that the writer only adds `seq`, `time` and `prev`).
#[derive(Debug)]
pub(crate) struct Prepared {
    fields: Vec<(&'static str, String)>,
}

impl Prepared {
    pub(crate) fn new(r: &NewRecord) -> Self {
        let mut fields: Vec<(&'static str, String)> = Vec::with_capacity(20);
        let s = |v: &str| {
            let mut out = String::with_capacity(v.len() + 2);
            jcs::write_string(&mut out, v);
            out
        };
        let j = |v: &serde_json::Value| {
            let mut out = String::new();
            jcs::write_value(&mut out, v);
            out
        };
        fields.push(("v", RECORD_VERSION.to_string()));
        fields.push(("event", s(&r.event)));
        fields.push(("agent", s(&r.agent)));
        if let Some(v) = &r.session {
            fields.push(("session", s(v)));
        }
        if let Some(v) = &r.workflow {
            fields.push(("workflow", s(v)));
        }
        if let Some(v) = &r.server {
            fields.push(("server", s(v)));
        }
        fields.push(("tool", s(&r.tool)));
        fields.push(("action", s(&r.action)));
        fields.push(("decision", s(&r.decision)));
        fields.push(("reasons", j(&r.reasons)));
        fields.push(("destinations", j(&r.destinations)));
        fields.push(("findings", j(&r.findings)));
        fields.push(("policy", s(&r.policy)));
        fields.push(("request_digest", s(&r.request_digest)));
        if let Some(v) = &r.arguments {
            fields.push(("arguments", j(v)));
        }
        // latency_us is a JSON number: format it as JCS does (a double).
        let mut lat = String::new();
        jcs::write_number(&mut lat, r.latency_us as f64);
        fields.push(("latency_us", lat));
        Self { fields }
    }

    /// The canonical record text once the store has assigned `seq`, `time` and `prev`.
    pub(crate) fn finish(&self, seq: u64, time: &str, prev: &[u8; 32]) -> String {
        let mut seq_s = String::new();
        jcs::write_number(&mut seq_s, seq as f64);
        let mut time_s = String::new();
        jcs::write_string(&mut time_s, time);
        let prev_s = format!("\"{}\"", hash_text(prev));
        let mut all: Vec<(&str, &str)> =
            self.fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.push(("seq", &seq_s));
        all.push(("time", &time_s));
        all.push(("prev", &prev_s));
        // INVARIANT: member names are ASCII, so byte order is RFC 8785's UTF-16 order.
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = String::with_capacity(all.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
        out.push('{');
        for (i, (k, v)) in all.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
            out.push_str(v);
        }
        out.push('}');
        out
    }
}

/// The chain hash of a record: `SHA-256(prev ‖ canonical)`.
pub fn chain_hash(prev: &[u8; 32], canonical: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical.as_bytes());
    h.finalize().into()
}

/// `sha256:<hex>`.
pub fn hash_text(h: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(h))
}

/// Parse `sha256:<64 hex digits>`.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let hexpart = s.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hexpart, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_text_is_the_canonical_form_of_the_record() {
        let r = NewRecord {
            event: "tools/call".into(),
            agent: "research-bot".into(),
            session: Some("s1".into()),
            tool: "fetch.fetch".into(),
            action: "read".into(),
            decision: "deny".into(),
            reasons: serde_json::json!([{"check": "destination", "rule": "r", "message": "m"}]),
            destinations: serde_json::json!([]),
            findings: serde_json::json!([]),
            policy: "sha256:00".into(),
            request_digest: "sha256:11".into(),
            arguments: Some(serde_json::json!({"url": "http://x/", "n": 1.50})),
            latency_us: 17,
            ..NewRecord::default()
        };
        let text = Prepared::new(&r).finish(3, "2026-01-01T00:00:00.000000Z", &GENESIS);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(crate::canonical_json(&value), text);
        let back: Record = serde_json::from_value(value).unwrap();
        assert_eq!(back.seq, 3);
        assert_eq!(back.agent, "research-bot");
        assert_eq!(back.workflow, None);
        assert_eq!(back.prev, hash_text(&GENESIS));
    }
}
