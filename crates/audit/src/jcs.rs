//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! - objects: members sorted by the UTF-16 code units of their names (RFC 8785 §3.2.3);
//! - strings: the ECMAScript `JSON.stringify` escaping (§3.2.2.2): `\"`, `\\`, the short forms
//!   `\b \f \n \r \t`, other controls as `\u00xx` (lowercase hex), everything else literal;
//! - numbers: IEEE 754 doubles printed as ECMAScript `Number.prototype.toString` does
//!   (§3.2.2.3): the shortest digits that round-trip, decimal notation for exponents in
//!   `[-7, 21)`, otherwise `d.ddde±x`; `-0` prints as `0`;
//! - no whitespace.
//!
//! Integers are numbers too: serde_json keeps `u64`/`i64` exactly, but JCS reads every number
//! as a double, so an integer beyond ±2^53 prints as the nearest double (as the RFC requires;
//! callers that need such integers exactly should send them as strings, RFC 8785 §6).

use serde_json::Value;

/// Append the JCS text of `value` to `out`.
pub(crate) fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            // INVARIANT: every number goes through the double formatter, so 1, 1.0 and 1e0
            // (the same JSON number) have one canonical form.
            let f = n.as_f64().unwrap_or(0.0);
            write_number(out, f);
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // serde_json's map is usually already in byte order, which equals UTF-16 order
            // unless names mix U+E000..U+FFFF with supplementary characters: sort only when
            // the iteration order is not already the canonical one.
            let sorted = map
                .keys()
                .zip(map.keys().skip(1))
                .all(|(a, b)| utf16_cmp(a, b).is_lt());
            if sorted {
                out.push('{');
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, k);
                    out.push(':');
                    write_value(out, v);
                }
                out.push('}');
                return;
            }
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| utf16_cmp(a.0, b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

/// Order of two member names by their UTF-16 code units (RFC 8785 §3.2.3).
pub(crate) fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    // Fast path: byte order equals UTF-16 order as long as no character above U+FFFF is
    // compared with one in U+E000..=U+FFFF; ASCII-only names are the common case.
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Append a JSON string literal the way ECMAScript's `JSON.stringify` writes it.
pub(crate) fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\u{08}' => Some("\\b"),
            '\u{0c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let b = c as u32;
                out.push_str("\\u00");
                out.push(char::from(
                    HEX.get((b >> 4) as usize).copied().unwrap_or(b'0'),
                ));
                out.push(char::from(
                    HEX.get((b & 0xf) as usize).copied().unwrap_or(b'0'),
                ));
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// Append `f` as ECMAScript's `Number.prototype.toString(10)` prints it.
pub(crate) fn write_number(out: &mut String, f: f64) {
    if f == 0.0 || !f.is_finite() {
        // -0 prints as 0; non-finite numbers cannot occur in a serde_json value.
        out.push('0');
        return;
    }
    if f < 0.0 {
        out.push('-');
    }
    // Integers up to 2^53 print as their digits: with a spacing of at most 1 between
    // doubles there, no shorter digit string round-trips (ECMA-262 Number::toString).
    if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
        use std::fmt::Write as _;
        let _ = write!(out, "{}", f.abs() as u128);
        return;
    }
    // Rust's `{:e}` prints the shortest digit string that round-trips (like ECMAScript's
    // algorithm, ECMA-262 Number::toString step 5): "d[.ddd]e[-]x".
    let abs = f.abs();
    let mut sci = format!("{abs:e}");
    // ECMA-262: among the shortest digit strings, take the one closest to the value, ties
    // to even. Rust's shortest mode can round a tie up (RFC 8785 Appendix B,
    // 1424953923781206.25 → ...206.2 not ...206.3); the exact mode at the same precision
    // rounds half to even, so use it whenever it still round-trips.
    let shortest_digits = sci
        .split_once('e')
        .map_or(0, |(m, _)| m.len() - usize::from(m.contains('.')));
    if shortest_digits > 1 {
        let exact = format!("{abs:.prec$e}", prec = shortest_digits - 1);
        if exact.parse::<f64>().ok() == Some(abs) {
            sci = exact;
        }
    }
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // The exact mode may leave trailing zeros ("1.50e0"): JCS digits are minimal.
    let digits = match digits.trim_end_matches('0') {
        "" => "0".to_string(),
        d => d.to_string(),
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let k = digits.len() as i32;
    let n = exp + 1; // value = 0.digits × 10^n
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        let e = n - 1;
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&e.abs().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(f: f64) -> String {
        let mut s = String::new();
        write_number(&mut s, f);
        s
    }

    /// RFC 8785 Appendix B: "Number Serialization Samples" (IEEE 754 bit patterns and the
    /// expected ECMAScript text). NaN and Infinity are left out: JSON cannot carry them.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, want) in cases {
            assert_eq!(num(f64::from_bits(*bits)), *want, "bits {bits:#018x}");
        }
    }

    #[test]
    fn strings_escape_like_ecmascript() {
        let mut s = String::new();
        write_string(&mut s, "\u{0}\u{1f}\u{7f}\"\\/\u{8}\u{c}\n\r\t€😀\u{2028}");
        assert_eq!(
            s,
            "\"\\u0000\\u001f\u{7f}\\\"\\\\/\\b\\f\\n\\r\\t€😀\u{2028}\""
        );
    }

    #[test]
    fn utf16_order_differs_from_code_point_order() {
        // U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16, after it in UTF-8.
        assert_eq!(utf16_cmp("\u{1F600}", "\u{FB33}"), std::cmp::Ordering::Less);
        assert_eq!("\u{1F600}".cmp("\u{FB33}"), std::cmp::Ordering::Greater);
    }
}
