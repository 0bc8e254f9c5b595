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
    crate::fold_name(name)
}

/// Parse `bytes` as one JSON value, refusing ambiguous objects (see the module docs).
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictValue::deserialize(&mut de)?;
    de.end()?;
    Ok(v.0)
}

/// What a [`parse`] error says without quoting the input (a member name may be a
/// secret): the kind of problem and its line (and column).
pub fn position_only(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.contains("appears twice") {
        format!(
            "a member name appears twice (readers disagree on which one counts), line {} column {}",
            e.line(),
            e.column()
        )
    } else if text.contains("case folding") {
        format!(
            "two member names are equal under case folding (go's encoding/json would read them as one), line {} column {}",
            e.line(),
            e.column()
        )
    } else {
        format!("line {} column {}", e.line(), e.column())
    }
}

struct StrictValue(Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

/// Up to this many members, an object of ASCII names is checked for case variants by
/// comparing names pairwise.
const FEW_MEMBERS: usize = 16;

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
        // The folded names, built only once the comparison without them no longer
        // applies: while every name is ASCII (and there are few), two fold alike
        // exactly when they are ASCII case variants, which needs no folded copy.
        let mut folded: Option<HashSet<String>> = None;
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                // INVARIANT: the name is not quoted (it may be a secret): serde adds
                // the line and column.
                return Err(de::Error::custom(
                    "a member name appears twice in one object (readers disagree on which one counts)",
                ));
            }
            let clash = match &mut folded {
                None if key.is_ascii() && out.len() < FEW_MEMBERS => {
                    out.keys().any(|k| k.eq_ignore_ascii_case(&key))
                }
                None => {
                    let mut set: HashSet<String> = out.keys().map(|k| fold(k)).collect();
                    let clash = !set.insert(fold(&key));
                    folded = Some(set);
                    clash
                }
                Some(set) => !set.insert(fold(&key)),
            };
            if clash {
                return Err(de::Error::custom(
                    "two member names in one object are equal under case folding (go's encoding/json would read them as one)",
                ));
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
            // A non-ASCII name first, its ASCII twin after.
            "{\"\u{212a}ind\":1,\"kind\":2}",
            // ASCII case variants, within and past the pairwise comparison.
            "{\"Params\":1,\"params\":2}",
            "{\"m0\":0,\"m1\":0,\"m2\":0,\"m3\":0,\"m4\":0,\"m5\":0,\"m6\":0,\"m7\":0,\"m8\":0,\"m9\":0,\"m10\":0,\"m11\":0,\"m12\":0,\"m13\":0,\"m14\":0,\"m15\":0,\"m16\":0,\"M3\":0}",
            r#"{"method":"a","METHOD":"b"}"#,
        ] {
            let e = parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("case folding"), "{bad}: {e}");
        }
        // Distinct names, few or many, ASCII or not, are not refused.
        let many: Vec<String> = (0..40).map(|i| format!("\"m{i}\":{i}")).collect();
        for good in [
            format!("{{{}}}", many.join(",")),
            "{\"param\u{17f}x\":1,\"params\":2,\"\u{212a}\":3,\"kk\":4}".to_string(),
            r#"{"a":1,"b":{"a":2},"ab":3}"#.to_string(),
        ] {
            assert!(parse(good.as_bytes()).is_ok(), "{good}");
        }
    }

    #[test]
    fn errors_never_quote_the_member_name() {
        // A member name may be a secret; the error goes back through the agent's
        // runtime (and its logs). Line and column say where.
        for bad in [
            r#"{"AKIAQYLPMN5HHHFPZAM2":1,"AKIAQYLPMN5HHHFPZAM2":2}"#,
            r#"{"akiaqylpmn5hhhfpzam2":1,"AKIAQYLPMN5HHHFPZAM2":2}"#,
        ] {
            let e = parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(!e.to_lowercase().contains("akia"), "{e}");
            assert!(e.contains("line 1 column"), "{e}");
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
