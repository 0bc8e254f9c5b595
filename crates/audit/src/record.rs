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
    /// How the agent was authenticated (absent in older records and where no
    /// transport authenticated it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<serde_json::Value>,
    pub latency_us: u64,
    /// `sha256:<hex>` of the previous record (64 zeros for the first).
    pub prev: String,
    /// `sha256:<hex>` of this record (not part of the hashed bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// The caller-side part of a record, already in canonical form (built outside the writer
/// thread so that the writer only adds `seq`, `time` and `prev`).
///
/// The members are written in RFC 8785 order (ASCII names: byte order) straight into four
/// segments, split where the store's own members `prev`, `seq` and `time` go:
/// `{ head , "prev" , mid , "seq" , tail , "time" , last }`. `head`, `mid` and `last`
/// always hold at least one member; `tail` (`server`, `session`) may be empty.
#[derive(Debug)]
pub(crate) struct Prepared {
    head: String,
    mid: String,
    tail: String,
    last: String,
}

fn member(out: &mut String, key: &str, value: impl FnOnce(&mut String)) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    value(out);
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(
            HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
        ));
        out.push(char::from(
            HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0'),
        ));
    }
}

impl Prepared {
    pub(crate) fn new(r: &NewRecord) -> Self {
        fn s(v: &str) -> impl FnOnce(&mut String) + '_ {
            move |out| jcs::write_string(out, v)
        }
        fn j(v: &serde_json::Value) -> impl FnOnce(&mut String) + '_ {
            move |out| jcs::write_value(out, v)
        }
        // INVARIANT: members are written in ascending byte order of their (ASCII) names,
        // which is RFC 8785's UTF-16 order; `record::tests` checks it against
        // `canonical_json` for every combination of optional members.
        let mut head = String::with_capacity(512);
        member(&mut head, "action", s(&r.action));
        member(&mut head, "agent", s(&r.agent));
        if let Some(v) = &r.arguments {
            member(&mut head, "arguments", j(v));
        }
        if let Some(v) = &r.auth {
            member(&mut head, "auth", j(v));
        }
        member(&mut head, "decision", s(&r.decision));
        member(&mut head, "destinations", j(&r.destinations));
        member(&mut head, "event", s(&r.event));
        member(&mut head, "findings", j(&r.findings));
        member(&mut head, "latency_us", |out| {
            jcs::write_number(out, r.latency_us as f64);
        });
        member(&mut head, "policy", s(&r.policy));
        // "prev" goes here.
        let mut mid = String::with_capacity(256);
        member(&mut mid, "reasons", j(&r.reasons));
        member(&mut mid, "request_digest", s(&r.request_digest));
        // "seq" goes here.
        let mut tail = String::new();
        if let Some(v) = &r.server {
            member(&mut tail, "server", s(v));
        }
        if let Some(v) = &r.session {
            member(&mut tail, "session", s(v));
        }
        // "time" goes here.
        let mut last = String::with_capacity(64);
        member(&mut last, "tool", s(&r.tool));
        member(&mut last, "v", |out| {
            jcs::write_number(out, RECORD_VERSION as f64)
        });
        if let Some(v) = &r.workflow {
            member(&mut last, "workflow", s(v));
        }
        Self {
            head,
            mid,
            tail,
            last,
        }
    }

    /// The canonical record text once the store has assigned `seq`, `time` and `prev`.
    pub(crate) fn finish(&self, seq: u64, time: &str, prev: &[u8; 32]) -> String {
        let mut out = String::with_capacity(
            self.head.len() + self.mid.len() + self.tail.len() + self.last.len() + 160,
        );
        out.push('{');
        out.push_str(&self.head);
        out.push_str(",\"prev\":\"sha256:");
        push_hex(&mut out, prev);
        out.push_str("\",");
        out.push_str(&self.mid);
        out.push_str(",\"seq\":");
        jcs::write_number(&mut out, seq as f64);
        if !self.tail.is_empty() {
            out.push(',');
            out.push_str(&self.tail);
        }
        out.push_str(",\"time\":");
        jcs::write_string(&mut out, time);
        out.push(',');
        out.push_str(&self.last);
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
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    push_hex(&mut out, h);
    out
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
        for mask in 0..32u8 {
            let mut r = r.clone();
            r.auth = (mask & 16 != 0)
                .then(|| serde_json::json!({"method": "api_key", "key_id": "0a1b2c3d"}));
            r.session = (mask & 1 != 0).then(|| "s\u{1}\"1".to_string());
            r.workflow = (mask & 2 != 0).then(|| "wf".to_string());
            r.server = (mask & 4 != 0).then(|| "fetch".to_string());
            if mask & 8 == 0 {
                r.arguments = None;
            }
            let text = Prepared::new(&r).finish(3, "2026-01-01T00:00:00.000000Z", &GENESIS);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(crate::canonical_json(&value), text, "mask {mask}");
            let back: Record = serde_json::from_value(value).unwrap();
            assert_eq!(back.seq, 3);
            assert_eq!(back.agent, "research-bot");
            assert_eq!(back.workflow, r.workflow);
            assert_eq!(back.session, r.session);
            assert_eq!(back.server, r.server);
            assert_eq!(back.arguments, r.arguments);
            assert_eq!(back.auth, r.auth);
            assert_eq!(back.prev, hash_text(&GENESIS));
        }
    }
}
