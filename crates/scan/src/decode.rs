//! The decoding probes: a string that is JSON, base64 or percent-encoded is decoded
//! once and scanned again.

use base64::Engine as _;

/// The alphabets a whole string (trimmed) is written in, found in one pass that stops
/// at the first byte outside all of them: [`HEX`], [`BASE32`], [`BASE64`].
pub(crate) fn alphabets(s: &str) -> u8 {
    let t = s.trim().as_bytes();
    if t.len() < 24 {
        return 0;
    }
    let mut m = HEX | BASE32 | BASE64;
    for &b in t {
        m &= match b {
            b'0'..=b'1' | b'8'..=b'9' => HEX | BASE64,
            b'2'..=b'7' => HEX | BASE32 | BASE64,
            b'a'..=b'f' => HEX | BASE64,
            b'A'..=b'F' => HEX | BASE32 | BASE64,
            b'G'..=b'Z' => BASE32 | BASE64,
            b'g'..=b'z' | b'+' | b'/' | b'-' | b'_' | b'\r' | b'\n' => BASE64,
            b'=' => BASE32 | BASE64,
            _ => 0,
        };
        if m == 0 {
            break;
        }
    }
    m
}

/// See [`alphabets`].
pub(crate) const HEX: u8 = 1;
/// See [`alphabets`].
pub(crate) const BASE32: u8 = 2;
/// See [`alphabets`].
pub(crate) const BASE64: u8 = 4;

pub(crate) fn as_json(s: &str) -> Option<serde_json::Value> {
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
pub(crate) fn as_base64(s: &str) -> Option<String> {
    as_base64_depth(s, 2)
}

fn as_base64_depth(s: &str, depth: u8) -> Option<String> {
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
    bytes_as_text(bytes, depth)
}

/// Largest output of inflating a gzip payload found inside base64.
const MAX_INFLATED: u64 = 1 << 20;
/// Shortest run of printable bytes taken from a binary payload.
const MIN_RUN: usize = 16;

/// What a detector can read in decoded bytes: a gzip payload inflated (bounded); text
/// that is itself whole-string base64 decoded once more (double base64; `depth`
/// bounds it); mostly-printable UTF-8 as it is; otherwise the runs of at least
/// [`MIN_RUN`] printable bytes (a credential inside a binary blob).
fn bytes_as_text(bytes: Vec<u8>, depth: u8) -> Option<String> {
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        let mut gz = flate2::read::GzDecoder::new(bytes.as_slice());
        use std::io::Read as _;
        match (&mut gz).take(MAX_INFLATED).read_to_end(&mut out) {
            Ok(_) if !out.is_empty() => out,
            // A truncated stream still yields what inflated before the cut.
            _ if !out.is_empty() => out,
            _ => bytes,
        }
    } else {
        bytes
    };
    match String::from_utf8(bytes) {
        Ok(text) if mostly_text(&text) => {
            if depth > 1
                && let Some(inner) = as_base64_depth(&text, depth - 1)
            {
                return Some(inner);
            }
            Some(text)
        }
        Ok(text) => printable_runs(text.as_bytes()),
        Err(e) => printable_runs(e.as_bytes()),
    }
}

/// The runs of at least [`MIN_RUN`] printable ASCII bytes, one per line.
fn printable_runs(bytes: &[u8]) -> Option<String> {
    let mut out = String::new();
    for run in bytes.split(|b| !(0x20..0x7f).contains(b) && *b != b'\t') {
        if run.len() >= MIN_RUN {
            if !out.is_empty() {
                out.push('\n');
            }
            out.extend(run.iter().map(|&b| char::from(b)));
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The base64 payload of every `data:…;base64,` URI inside `s`, decoded.
pub(crate) fn data_uri_payloads(s: &str) -> Option<String> {
    if !s.contains(";base64,") {
        return None;
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(";base64,") {
        let after = rest.get(i + 8..).unwrap_or("");
        let end = after
            .find(|c: char| {
                !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_'))
            })
            .unwrap_or(after.len());
        if let Some(text) = after.get(..end).and_then(as_base64) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&text);
        }
        rest = after.get(end..).unwrap_or("");
    }
    (!out.is_empty()).then_some(out)
}

/// Whole-string hex (either case, even length, at least 32 digits: 16 bytes), decoding
/// to mostly-printable UTF-8. Digests and ids decode to binary and are not taken.
pub(crate) fn as_hex(s: &str) -> Option<String> {
    let t = s.trim().as_bytes();
    if t.len() < 32 || !t.len().is_multiple_of(2) || !t.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    // Digests and ids (random bytes) are left before allocating: the first two decoded
    // bytes must be ASCII text (a random pair is, one time in seven). Hex of text that
    // starts with a non-ASCII character is not decoded.
    let nibble = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    let binary = t.chunks_exact(2).take(2).any(|p| {
        let v = match p {
            [h, l] => nibble(*h) << 4 | nibble(*l),
            _ => 0,
        };
        !(v.is_ascii_graphic() || matches!(v, b' ' | b'\t' | b'\n' | b'\r'))
    });
    if binary {
        return None;
    }
    let bytes = hex::decode(t).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    mostly_text(&text).then_some(text)
}

/// Whole-string base32 (RFC 4648 §6 alphabet, upper case, `=` padding at the end only),
/// at least 24 characters, decoding to mostly-printable UTF-8.
pub(crate) fn as_base32(s: &str) -> Option<String> {
    let t = s.trim().as_bytes();
    // Cheap rejection first: prose, code and lower-case tokens fail on an early byte.
    if t.len() < 24
        || !t
            .iter()
            .all(|&b| matches!(b, b'A'..=b'Z' | b'2'..=b'7' | b'='))
    {
        return None;
    }
    let body_len = t.iter().position(|&b| b == b'=').unwrap_or(t.len());
    let (body, pad) = t.split_at(body_len);
    if !pad.iter().all(|&b| b == b'=')
        || !body.iter().all(|&b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
        || (!pad.is_empty() && !t.len().is_multiple_of(8))
        || matches!(body.len() % 8, 1 | 3 | 6)
    {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 5 / 8);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in body {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            _ => b - b'2' + 26,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    let text = String::from_utf8(out).ok()?;
    mostly_text(&text).then_some(text)
}

/// Percent-decoding (RFC 3986) of a string that looks percent-encoded: at least one
/// `%XX` escape and no raw whitespace (prose that merely quotes a URL is scanned raw).
pub(crate) fn as_percent(s: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // RFC 4648 §10 test vectors, and text.
        assert_eq!(as_base32("MZXW6YTBOI======").as_deref(), None); // "foobar": too short
        assert_eq!(
            as_base32("NBSWY3DPEB3W64TMMQQGQZLMNRXSA53POJWGI===").as_deref(),
            Some("hello world hello world")
        );
        assert_eq!(as_base32("AKIAIOSFODNN7EXAMPLEAAAA"), None);
        assert_eq!(
            as_hex("68656c6c6f20776f726c642c2068656c6c6f").as_deref(),
            Some("hello world, hello")
        );
        assert_eq!(as_hex(&"ab".repeat(32)), None);
        assert_eq!(
            as_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            None
        );
    }
}
