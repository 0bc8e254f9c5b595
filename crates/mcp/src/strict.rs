//! Strict JSON reading for messages the gate decides on.
//!
//! INVARIANT: a message is accepted only if every common reader reads the same
//! members from it. serde_json and `JSON.parse` keep the last of two equal member
//! names, first-wins readers keep the first, and Go's `encoding/json` matches member
//! names with Unicode case folding (`paramſ` — U+017F LATIN SMALL LETTER LONG S — is
//! `params` to it, the Kelvin sign `K` is `k`) and keeps the last match. So any object,
//! at any depth, holding two member names that are equal or equal under case folding
//! makes the whole message ambiguous, and it is refused.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The case-folded form of a member name: every character upper-cased then
/// lower-cased (so `ſ` → `S` → `s`, `K` → `k`, `ß` → `SS` → `ss`). This is at least as
/// wide as Go's `bytes.EqualFold` simple folding; folding wider only refuses more.
pub fn fold(name: &str) -> String {
    conductor_types::fold_name(name)
}

/// Parse `bytes` as one JSON value, refusing ambiguous objects (see the module docs).
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictValue::deserialize(&mut de)?;
    de.end()?;
    Ok(v.0)
}

struct StrictValue(Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

/// A member name shown in an error: escaped and cut (it is the client's own input,
/// but it may be long or hold control characters).
fn shown(name: &str) -> String {
    let mut s: String = name
        .chars()
        .take(40)
        .flat_map(char::escape_default)
        .collect();
    if name.chars().count() > 40 {
        s.push('…');
    }
    s
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut folded: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate member `{}` (readers disagree on which one counts)",
                    shown(&key)
                )));
            }
            let f = fold(&key);
            if !folded.insert(f) {
                return Err(de::Error::custom(format!(
                    "member `{}` equals another member name under case folding (go's encoding/json would read them as one)",
                    shown(&key)
                )));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_at_any_depth_are_refused() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"params":{"name":"echo","name":"delete_everything"}}"#,
            r#"{"x":[{"k":1,"k":1}]}"#,
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_case_folding_variants_are_refused() {
        // Regression (issue 10, class 2): Go's encoding/json matched `paramſ` to
        // `params` and took the last match; the server ran `delete_everything` while the
        // audit trail said `echo` allowed.
        for bad in [
            "{\"params\":{\"name\":\"echo\"},\"param\u{17f}\":{\"name\":\"delete_everything\"}}",
            "{\"arguments\":{},\"argument\u{17f}\":{}}",
            "{\"kind\":1,\"\u{212a}ind\":2}",
            r#"{"method":"a","METHOD":"b"}"#,
        ] {
            let e = parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("case folding"), "{bad}: {e}");
        }
    }

    #[test]
    fn ordinary_messages_parse_as_serde_json_does() {
        let ok = r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,-2,3e2,true,null,"s"],"A_b":{}}}}"#;
        let strict = parse(ok.as_bytes()).unwrap();
        let plain: Value = serde_json::from_str(ok).unwrap();
        assert_eq!(strict, plain);
        assert!(parse(b"{} {}").is_err());
    }
}
