//! The decoding probes: a string that is JSON, base64 or percent-encoded is decoded
//! once and scanned again.

use base64::Engine as _;

/// `s.trim()`, without the Unicode search when neither end can be white space: a
/// Unicode white-space character is ASCII `\t`–`\r` or ` `, or starts with a byte of
/// 0x80 or more. Every decoding probe trims each string it looks at.
#[inline]
fn trim(s: &str) -> &str {
    let solid = |b: u8| b > b' ' && b < 0x80;
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(&a), Some(&z)) if solid(a) && solid(z) => s,
        _ => s.trim(),
    }
}

/// The alphabets a whole string (trimmed) is written in, found in one pass that stops
/// at the first block holding a byte outside all of them: [`HEX`], [`BASE32`],
/// [`BASE64`]. The same sets as [`alphabet_of`] (a unit test checks every byte and
/// compares the two on strings of every length).
pub(crate) fn alphabets(s: &str) -> u8 {
    let t = trim(s).as_bytes();
    if t.len() < 24 {
        return 0;
    }
    // Prose fails within its first few bytes: one byte at a time for the first 8, then
    // 32 bytes per step by arithmetic on each byte (no branch per byte, so the
    // compiler can use SIMD compares).
    let (head, rest) = t.split_at(8);
    let mut m = HEX | BASE32 | BASE64;
    for &b in head {
        m &= alphabet_of(b);
    }
    if m == 0 {
        return 0;
    }
    let mut chunks = rest.chunks_exact(32);
    for ch in chunks.by_ref() {
        m &= alphabet_block(ch);
        if m == 0 {
            return 0;
        }
    }
    for &b in chunks.remainder() {
        m &= alphabet_of(b);
    }
    m
}

/// The alphabets byte `b` belongs to (the reference for [`alphabet_block`]).
fn alphabet_of(b: u8) -> u8 {
    match b {
        b'0'..=b'1' | b'8'..=b'9' => HEX | BASE64,
        b'2'..=b'7' => HEX | BASE32 | BASE64,
        b'a'..=b'f' => HEX | BASE64,
        b'A'..=b'F' => HEX | BASE32 | BASE64,
        b'G'..=b'Z' => BASE32 | BASE64,
        b'g'..=b'z' | b'+' | b'/' | b'-' | b'_' | b'\r' | b'\n' => BASE64,
        b'=' => BASE32 | BASE64,
        _ => 0,
    }
}

/// The alphabets every byte of `ch` belongs to (the intersection of [`alphabet_of`]).
#[inline(always)]
fn alphabet_block(ch: &[u8]) -> u8 {
    let (mut not_hex, mut not_b32, mut not_b64) = (0u8, 0u8, 0u8);
    for &b in ch {
        let digit = u8::from(b.wrapping_sub(b'0') < 10);
        let upper = u8::from(b.wrapping_sub(b'A') < 26);
        let lower = u8::from(b.wrapping_sub(b'a') < 26);
        let hex_letter = u8::from((b | 0x20).wrapping_sub(b'a') < 6);
        let b32_digit = u8::from(b.wrapping_sub(b'2') < 6);
        let pad = u8::from(b == b'=');
        let other = u8::from(b == b'+')
            | u8::from(b == b'/')
            | u8::from(b == b'-')
            | u8::from(b == b'_')
            | u8::from(b == b'\r')
            | u8::from(b == b'\n');
        not_hex |= 1 ^ (digit | hex_letter);
        not_b32 |= 1 ^ (upper | b32_digit | pad);
        not_b64 |= 1 ^ (digit | upper | lower | pad | other);
    }
    ((1 ^ not_hex) * HEX) | ((1 ^ not_b32) * BASE32) | ((1 ^ not_b64) * BASE64)
}

/// See [`alphabets`].
pub(crate) const HEX: u8 = 1;
/// See [`alphabets`].
pub(crate) const BASE32: u8 = 2;
/// See [`alphabets`].
pub(crate) const BASE64: u8 = 4;

/// The string as JSON (an object or an array), parsed into a `serde_json::Value`.
/// The scan uses [`as_json_tree`]; this is the reference it is tested against.
#[cfg(test)]
pub(crate) fn as_json(s: &str) -> Option<serde_json::Value> {
    serde_json::from_str(json_candidate(s)?).ok()
}

/// The trimmed string when it could be a JSON object or array.
fn json_candidate(s: &str) -> Option<&str> {
    let t = trim(s);
    let (first, last) = (t.as_bytes().first()?, t.as_bytes().last()?);
    if !matches!((first, last), (b'{', b'}') | (b'[', b']')) || t.len() < 2 {
        return None;
    }
    Some(t)
}

/// The string as JSON (an object or an array), as a [`Json`] tree that borrows its
/// strings from `s` where they hold no escapes. Accepts exactly what
/// `serde_json::from_str::<serde_json::Value>` accepts (the same parser, the same
/// limits: only the visitor differs) and holds the same strings in the same order.
pub(crate) fn as_json_tree(s: &str) -> Option<Json<'_>> {
    serde_json::from_str(json_candidate(s)?).ok()
}

/// A decoded JSON document as the scan needs it: the strings, the arrays and the
/// objects; numbers, booleans and nulls are `Other`. Parsing into this instead of a
/// `serde_json::Value` saves a `String` per key and per string (they are borrowed)
/// and the map's nodes.
#[derive(Debug, PartialEq)]
pub(crate) enum Json<'a> {
    Str(std::borrow::Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    /// Members ordered by key, a repeated key holding its last value: the iteration
    /// order and contents of the `serde_json::Map` (a `BTreeMap`) the same text gives.
    Obj(Vec<(std::borrow::Cow<'a, str>, Json<'a>)>),
    Other,
}

impl<'a> Json<'a> {
    /// The value of member `k` of an object.
    pub(crate) fn get(&self, k: &str) -> Option<&Json<'a>> {
        match self {
            Json::Obj(m) => m
                .binary_search_by(|(key, _)| key.as_ref().cmp(k))
                .ok()
                .and_then(|i| m.get(i))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct JsonVisitor;

/// A string (a key, a value) borrowed from the input when it has no escapes.
struct JsonStr<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr(std::borrow::Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(std::borrow::Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(std::borrow::Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(std::borrow::Cow::Owned(v)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Json<'de>, A::Error> {
        // Capacity for a typical short array up front (one allocation, not 4 → 8 → 16).
        let mut items = Vec::with_capacity(4);
        while let Some(v) = a.next_element()? {
            items.push(v);
        }
        Ok(Json::Arr(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Json<'de>, A::Error> {
        let mut members: Vec<(std::borrow::Cow<'de, str>, Json<'de>)> = Vec::with_capacity(8);
        while let Some((JsonStr(k), v)) = a.next_entry::<JsonStr<'de>, Json<'de>>()? {
            members.push((k, v));
        }
        // As a `BTreeMap` holds them: by key (stable, so repeats stay in text order),
        // then each repeated key with its last value.
        if !members.is_sorted_by(|x, y| x.0 < y.0) {
            members.sort_by(|x, y| x.0.cmp(&y.0));
            members.dedup_by(|later, kept| {
                if later.0 == kept.0 {
                    std::mem::swap(&mut later.1, &mut kept.1);
                    true
                } else {
                    false
                }
            });
        }
        Ok(Json::Obj(members))
    }
}

impl<'de> serde::Deserialize<'de> for Json<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
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
/// allowed), at least 24 characters, decoding to mostly-printable UTF-8: the reference
/// [`as_base64_in_alphabet`] is tested against.
#[cfg(test)]
pub(crate) fn as_base64(s: &str) -> Option<String> {
    as_base64_depth(s, 2)
}

/// Whole-string base64 (standard or URL-safe alphabet, padded or not, line breaks
/// allowed), at least 24 characters, decoding to mostly-printable UTF-8, of a string
/// that [`alphabets`] found entirely in [`BASE64`] (the scan only asks then): the
/// classes that matter are found with `memchr` instead of a second pass that
/// classifies every byte. The same result (a unit test compares the two).
pub(crate) fn as_base64_in_alphabet(s: &str) -> Option<String> {
    let t = trim(s).as_bytes();
    if t.len() < 24 {
        return None;
    }
    base64_classified(t, known_b64_classes(t), 2)
}

/// [`b64_classes`] of bytes known to be all in the base64 alphabet.
fn known_b64_classes(t: &[u8]) -> u8 {
    let mut all = 0u8;
    if t.iter().any(u8::is_ascii_alphanumeric) {
        all |= B64_ALNUM;
    }
    if memchr::memchr2(b'+', b'/', t).is_some() {
        all |= B64_STD;
    }
    if memchr::memchr2(b'-', b'_', t).is_some() {
        all |= B64_URL;
    }
    if memchr::memchr(b'=', t).is_some() {
        all |= B64_PAD;
    }
    if memchr::memchr2(b'\r', b'\n', t).is_some() {
        all |= B64_EOL;
    }
    all
}

/// Byte classes of the base64 probe (bit flags, 0: not in any base64 alphabet).
const B64_ALNUM: u8 = 1;
const B64_STD: u8 = 2;
const B64_URL: u8 = 4;
const B64_PAD: u8 = 8;
const B64_EOL: u8 = 16;

#[expect(
    clippy::indexing_slicing,
    reason = "compile-time table: `i < 256` indexes a 256-entry array"
)]
const B64_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphanumeric() {
            B64_ALNUM
        } else if b == b'+' || b == b'/' {
            B64_STD
        } else if b == b'-' || b == b'_' {
            B64_URL
        } else if b == b'=' {
            B64_PAD
        } else if b == b'\r' || b == b'\n' {
            B64_EOL
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Whether every byte of a block is in a base64 class, and the union of their classes,
/// by arithmetic on each byte (no table look-up, so the compiler can use SIMD compares).
/// The same classes as [`B64_CLASS`] (a unit test checks every byte).
#[inline(always)]
fn b64_block(ch: &[u8]) -> (bool, u8) {
    let (mut bad, mut aln, mut std, mut url, mut pad, mut eol) = (0u8, 0u8, 0u8, 0u8, 0u8, 0u8);
    for &b in ch {
        let a = u8::from((b | 0x20).wrapping_sub(b'a') < 26) | u8::from(b.wrapping_sub(b'0') < 10);
        let s = u8::from(b == b'+') | u8::from(b == b'/');
        let u = u8::from(b == b'-') | u8::from(b == b'_');
        let p = u8::from(b == b'=');
        let e = u8::from(b == b'\r') | u8::from(b == b'\n');
        aln |= a;
        std |= s;
        url |= u;
        pad |= p;
        eol |= e;
        bad |= 1 ^ (a | s | u | p | e);
    }
    (
        bad == 0,
        (aln * B64_ALNUM) | (std * B64_STD) | (url * B64_URL) | (pad * B64_PAD) | (eol * B64_EOL),
    )
}

#[inline(always)]
fn b64_class(b: u8) -> u8 {
    B64_CLASS.get(usize::from(b)).copied().unwrap_or(0)
}

/// The union of the base64 classes of `t`'s bytes, or `None` at the first byte outside
/// them. Prose, code and log lines fail on an early byte (the first 8-byte block);
/// long tokens are classified 32 bytes per step without a branch per byte.
fn b64_classes(t: &[u8]) -> Option<u8> {
    let mut all = 0u8;
    let (head, rest) = t.split_at(t.len().min(8));
    for &b in head {
        let c = b64_class(b);
        if c == 0 {
            return None;
        }
        all |= c;
    }
    let mut chunks = rest.chunks_exact(32);
    for ch in chunks.by_ref() {
        let (ok, or) = b64_block(ch);
        if !ok {
            return None;
        }
        all |= or;
    }
    for &b in chunks.remainder() {
        let c = b64_class(b);
        if c == 0 {
            return None;
        }
        all |= c;
    }
    Some(all)
}

/// The length of the run of base64 bytes (line breaks excluded) at the start of `t`,
/// and the union of their classes. The end is found 8 bytes per step with one table
/// load and an AND per byte; the classes that matter are then found with memchr.
fn b64_run(t: &[u8]) -> (usize, u8) {
    const IN_RUN: u8 = B64_ALNUM | B64_STD | B64_URL | B64_PAD;
    let in_run = |b: u8| b64_class(b) & IN_RUN != 0;
    let mut len = 0usize;
    let mut chunks = t.chunks_exact(8);
    for ch in chunks.by_ref() {
        if ch.iter().fold(true, |all, &b| all & in_run(b)) {
            len += 8;
        } else {
            break;
        }
    }
    len += t
        .get(len..)
        .unwrap_or(&[])
        .iter()
        .position(|&b| !in_run(b))
        .unwrap_or(t.len() - len);
    // The run holds no line break, so its EOL class stays clear.
    (len, known_b64_classes(t.get(..len).unwrap_or(&[])))
}

fn as_base64_depth(s: &str, depth: u8) -> Option<String> {
    let t = trim(s).as_bytes();
    if t.len() < 24 {
        return None;
    }
    // Cheap rejection before any allocation: prose, code and log lines fail on their
    // first space or punctuation.
    let classes = b64_classes(t)?;
    base64_classified(t, classes, depth)
}

/// Decode `t` (trimmed, at least 24 bytes), every byte of which is in a base64 class;
/// `classes` is the union of their classes.
fn base64_classified(t: &[u8], classes: u8, depth: u8) -> Option<String> {
    if classes & B64_STD != 0 && classes & B64_URL != 0 {
        return None;
    }
    // Line breaks are dropped (a copy only when there are any).
    let owned;
    let clean: &[u8] = if classes & B64_EOL != 0 {
        owned = t
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect::<Vec<u8>>();
        &owned
    } else {
        t
    };
    // Padding only at the end.
    let body_len = if classes & B64_PAD != 0 {
        let p = memchr::memchr(b'=', clean).unwrap_or(clean.len());
        if clean.get(p..).is_some_and(|r| r.iter().any(|&b| b != b'=')) {
            return None;
        }
        p
    } else {
        clean.len()
    };
    if body_len % 4 == 1 {
        return None;
    }
    let body = clean.get(..body_len)?;
    if let Some(runs) = binary_runs(body) {
        return runs;
    }
    decode_eager(body, classes, depth)
}

/// Decode `body` (base64 bytes only, no padding, length not 1 mod 4) with the
/// `base64` crate and read it as text ([`bytes_as_text`]).
fn decode_eager(body: &[u8], classes: u8, depth: u8) -> Option<String> {
    let bytes = if classes & B64_URL != 0 {
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

/// The 6-bit value of a base64 byte, either alphabet (`+` and `-` are 62, `/` and `_`
/// 63; a payload never mixes them: `base64_classified` rejects that first).
#[expect(
    clippy::indexing_slicing,
    reason = "compile-time table: `i < 256` indexes a 256-entry array"
)]
const B64_VALUE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => 0,
        };
        i += 1;
    }
    t
};

/// Bytes read from a base64 body one at a time, without decoding the whole of it.
struct LazyB64<'a> {
    body: &'a [u8],
}

impl LazyB64<'_> {
    fn value(&self, i: usize) -> u8 {
        self.body
            .get(i)
            .and_then(|&b| B64_VALUE.get(usize::from(b)))
            .copied()
            .unwrap_or(0)
    }

    /// Decoded length (`body.len() % 4 != 1`).
    fn len(&self) -> usize {
        let n = self.body.len();
        n / 4 * 3 + (n % 4).saturating_sub(1)
    }

    /// Decoded byte `i` (`i < len()`).
    fn at(&self, i: usize) -> u8 {
        let (q, r) = (i / 3 * 4, i % 3);
        let (a, b) = (self.value(q + r), self.value(q + r + 1));
        match r {
            0 => (a << 2) | (b >> 4),
            1 => (a << 4) | (b >> 2),
            _ => (a << 6) | b,
        }
    }
}

/// Bytes decoded before a payload is known to be binary.
const BINARY_PROBE: usize = 64;

/// A base64 body read as [`bytes_as_text`] would read its decoded bytes, without
/// decoding all of it, when that is known early: the last symbol carries no stray bits
/// (which the `base64` crate would refuse), the bytes do not start a gzip stream, and
/// an invalid UTF-8 sequence occurs in the first [`BINARY_PROBE`] bytes. Then the text
/// is the printable runs (an image, a digest: `data:` payloads), and only about one
/// byte in [`MIN_RUN`] is decoded. `Some(None)`: not base64 (stray bits in the last
/// symbol). `None`: decode eagerly. A unit test checks that the result is the eager
/// decoding's.
fn binary_runs(body: &[u8]) -> Option<Option<String>> {
    let lazy = LazyB64 { body };
    let stray = match body.len() % 4 {
        2 => 0x0f,
        3 => 0x03,
        _ => 0,
    };
    // Bits left over in the last symbol: the `base64` crate's decoders (configured
    // without `decode_allow_trailing_bits`) refuse such a body, so it is not base64;
    // said here before the whole body is decoded only to fail on its last byte
    // (`lazy_binary_payloads_read_like_the_eager_decoding` checks that the crate
    // refuses every such body).
    if lazy.value(body.len().wrapping_sub(1)) & stray != 0 {
        return Some(None);
    }
    let n = lazy.len();
    // Random bytes break UTF-8 within a few bytes: 16 decoded bytes first, then 64.
    let mut head = [0u8; BINARY_PROBE];
    let mut done = 0;
    for k in [16, BINARY_PROBE] {
        let k = k.min(n);
        for (i, h) in head.iter_mut().enumerate().take(k).skip(done) {
            *h = lazy.at(i);
        }
        done = k;
        let head = head.get(..k)?;
        if head.starts_with(&[0x1f, 0x8b]) {
            return None;
        }
        // `error_len() == None` is a sequence cut off at the end of the probe: undecided.
        if let Err(e) = std::str::from_utf8(head)
            && e.error_len().is_some()
        {
            return Some(printable_runs_by(n, |i| lazy.at(i)));
        }
    }
    None
}

fn printable(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || b == b'\t'
}

/// The runs of at least [`MIN_RUN`] printable ASCII bytes, one per line.
///
/// Random binary (images, digests) holds almost no such run, so the search looks at
/// every [`MIN_RUN`]th byte first: a run of `MIN_RUN` bytes that starts anywhere in
/// `[i, i + MIN_RUN)` contains the byte at `i + MIN_RUN - 1`, so a non-printable byte
/// there rules the whole block out.
fn printable_runs(bytes: &[u8]) -> Option<String> {
    printable_runs_by(bytes.len(), |i| bytes.get(i).copied().unwrap_or(0))
}

/// [`printable_runs`] of the `n` bytes that `at` gives.
fn printable_runs_by(n: usize, at: impl Fn(usize) -> u8) -> Option<String> {
    let mut out = String::new();
    let mut i = 0;
    while i + MIN_RUN <= n {
        let probe = i + MIN_RUN - 1;
        if !printable(at(probe)) {
            i = probe + 1;
            continue;
        }
        // The run that holds `probe`: back to its start (not before `i`, where no run
        // of interest began), then forward to its end.
        let mut s = probe;
        while s > i && printable(at(s - 1)) {
            s -= 1;
        }
        let mut e = probe + 1;
        while e < n && printable(at(e)) {
            e += 1;
        }
        if e - s >= MIN_RUN {
            if !out.is_empty() {
                out.push('\n');
            }
            out.extend((s..e).map(|j| char::from(at(j))));
        }
        i = e + 1;
    }
    (!out.is_empty()).then_some(out)
}

/// The next `;base64,` at or after `from`: a memchr for `;` (rare in text, about one
/// in 360 bytes of the mixed corpus) and a compare, which costs less than the
/// substring searcher over text without a marker.
fn data_uri_marker(b: &[u8], from: usize) -> Option<usize> {
    let rest = b.get(from..)?;
    memchr::memchr_iter(b';', rest)
        .find(|&i| rest.get(i..).is_some_and(|r| r.starts_with(b";base64,")))
        .map(|i| from + i)
}

/// The base64 payload of every `data:…;base64,` URI inside `s`, decoded.
pub(crate) fn data_uri_payloads(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut from = data_uri_marker(b, 0)?;
    loop {
        let start = from + 8;
        let after = b.get(start..).unwrap_or(&[]);
        // The payload: the run of base64 bytes (no line breaks), classified as it is
        // found, and decoded without a second pass over it.
        let (end, classes) = b64_run(after);
        if end >= 24
            && let Some(text) = after
                .get(..end)
                .and_then(|p| base64_classified(p, classes, 2))
        {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&text);
        }
        let next = start + end;
        match data_uri_marker(b, next) {
            Some(i) => from = i,
            None => break,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whole-string hex (either case, even length, at least 32 digits: 16 bytes), decoding
/// to mostly-printable UTF-8. Digests and ids decode to binary and are not taken.
pub(crate) fn as_hex(s: &str) -> Option<String> {
    let t = trim(s).as_bytes();
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
    // Then the first 16 bytes on the stack: an invalid UTF-8 sequence there (not one
    // merely cut off by the probe's end) makes the whole decoding invalid UTF-8, which
    // is refused below; random bytes (a digest) have one within a few bytes.
    let mut head = [0u8; 16];
    let k = (t.len() / 2).min(head.len());
    for (h, p) in head.iter_mut().zip(t.chunks_exact(2)) {
        if let [hi, lo] = p {
            *h = nibble(*hi) << 4 | nibble(*lo);
        }
    }
    if let Err(e) = std::str::from_utf8(head.get(..k).unwrap_or(&[]))
        && e.error_len().is_some()
    {
        return None;
    }
    let bytes = hex::decode(t).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    mostly_text(&text).then_some(text)
}

/// Whole-string base32 (RFC 4648 §6 alphabet, upper case, `=` padding at the end only),
/// at least 24 characters, decoding to mostly-printable UTF-8.
pub(crate) fn as_base32(s: &str) -> Option<String> {
    let t = trim(s).as_bytes();
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

    fn naive_printable_runs(bytes: &[u8]) -> Option<String> {
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

    /// The skipping search finds exactly the runs a plain split finds, for texts from
    /// all-binary to all-printable and every length around the block size.
    #[test]
    fn printable_runs_match_a_plain_split() {
        let mut r = 99u64;
        let mut next = || {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            r
        };
        for density in [0u64, 10, 37, 60, 85, 95, 100] {
            for len in (0..70).chain([200, 1000]) {
                for _ in 0..20 {
                    let bytes: Vec<u8> = (0..len)
                        .map(|_| {
                            let x = next();
                            if x % 100 < density {
                                b' ' + (x >> 8) as u8 % 95
                            } else {
                                [0u8, 0x1f, 0x7f, 0x80, 0xff, b'\n'][(x >> 8) as usize % 6]
                            }
                        })
                        .collect();
                    assert_eq!(
                        printable_runs(&bytes),
                        naive_printable_runs(&bytes),
                        "{bytes:?}"
                    );
                }
            }
        }
    }

    /// Reading a binary payload lazily gives what decoding it whole gives: random
    /// bytes, bytes with printable runs, text, gzip magic, text that turns binary
    /// after the probe, both alphabets, every length class, stray trailing bits.
    #[test]
    fn lazy_binary_payloads_read_like_the_eager_decoding() {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let mut r = 5u64;
        let mut next = move || {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            r
        };
        let mut lazy_taken = 0;
        for case in 0..6000u64 {
            let len = (next() % 400) as usize;
            let mode = case % 6;
            let mut bytes: Vec<u8> = (0..len)
                .map(|i| match mode {
                    // Text, or text for the probe's length and then binary.
                    2 => b'a' + (next() % 26) as u8,
                    3 if i < BINARY_PROBE + (case as usize % 3) => b' ' + (next() % 95) as u8,
                    _ => next() as u8,
                })
                .collect();
            if mode == 1 && len > 40 {
                // A printable run somewhere (random length around MIN_RUN).
                let at = (next() as usize) % (len - 30);
                let run = 10 + (next() as usize) % 20;
                for b in bytes.iter_mut().skip(at).take(run) {
                    *b = b'A' + (next() % 26) as u8;
                }
            }
            if mode == 4 && len >= 2 {
                bytes[0] = 0x1f;
                bytes[1] = 0x8b;
            }
            let url = next() % 2 == 0;
            let mut body = if url {
                URL_SAFE_NO_PAD.encode(&bytes)
            } else {
                STANDARD_NO_PAD.encode(&bytes)
            }
            .into_bytes();
            if mode == 5 && !body.is_empty() {
                // Stray bits (or any last symbol) in the last position.
                let last = body.len() - 1;
                body[last] = b"AQgwBCDEfgh9"[(next() % 12) as usize];
            }
            let Some(classes) = b64_classes(&body) else {
                continue;
            };
            if classes & B64_STD != 0 && classes & B64_URL != 0 {
                continue;
            }
            if let Some(lazy) = binary_runs(&body) {
                lazy_taken += 1;
                assert_eq!(
                    lazy,
                    decode_eager(&body, classes, 2),
                    "{:?}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        // The fast path is taken for most binary payloads (modes 0, 1, 5).
        assert!(lazy_taken > 2000, "{lazy_taken}");
    }

    /// The block test gives the per-byte reference's intersection: every byte alone,
    /// and random strings of every length from bytes of every class (where one stray
    /// byte changes the answer).
    #[test]
    fn alphabet_blocks_agree_with_the_byte_reference() {
        for b in 0..=255u8 {
            assert_eq!(alphabet_block(&[b]), alphabet_of(b), "{b}");
        }
        let pool = b"0123456789abcdefABCDEFGHXYZgz+/-_=\r\n \x00\x80~";
        let mut r = 11u64;
        let mut next = move || {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            r
        };
        for case in 0..20_000u64 {
            let len = (next() % 130) as usize;
            // Mostly one class, so that strings stay in an alphabet for a while.
            let class = &pool[..[10, 16, 22, 34, pool.len()][(case % 5) as usize]];
            let mut t: Vec<u8> = (0..len)
                .map(|_| class[(next() as usize) % class.len()])
                .collect();
            if case % 7 == 0 && len > 0 {
                let at = (next() as usize) % len;
                t[at] = pool[(next() as usize) % pool.len()];
            }
            let Ok(s) = std::str::from_utf8(&t) else {
                continue;
            };
            let tr = trim(s).as_bytes();
            let want = if tr.len() < 24 {
                0
            } else {
                tr.iter()
                    .fold(HEX | BASE32 | BASE64, |m, &b| m & alphabet_of(b))
            };
            assert_eq!(alphabets(s), want, "{s:?}");
        }
    }

    /// Strings in the base64 alphabet (every class mixed in, valid or not as base64)
    /// decode the same through the `memchr` classes as through the full probe.
    #[test]
    fn base64_in_alphabet_decodes_like_the_full_probe() {
        use base64::engine::general_purpose::STANDARD;
        let mut r = 23u64;
        let mut next = move || {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            r
        };
        let extra = b"+/-_=\r\n";
        let mut decoded = 0;
        for case in 0..4000u64 {
            let len = 20 + (next() % 200) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| b' ' + (next() % 95) as u8).collect();
            let mut t = STANDARD.encode(&bytes).into_bytes();
            if case % 3 == 0 {
                let at = (next() as usize) % t.len();
                t[at] = extra[(next() as usize) % extra.len()];
            }
            let s = String::from_utf8(t).unwrap();
            if alphabets(&s) & BASE64 == 0 {
                continue;
            }
            let want = as_base64(&s);
            decoded += usize::from(want.is_some());
            assert_eq!(as_base64_in_alphabet(&s), want, "{s:?}");
            let t = trim(&s).as_bytes();
            assert_eq!(Some(known_b64_classes(t)), b64_classes(t), "{s:?}");
        }
        assert!(decoded > 1000, "{decoded}");
    }

    #[test]
    fn base64_block_classes_every_byte_like_the_table() {
        for b in 0..=255u8 {
            let (ok, or) = b64_block(&[b]);
            assert_eq!(ok, b64_class(b) != 0, "{b}");
            assert_eq!(if ok { or } else { 0 }, b64_class(b), "{b}");
        }
        let mut t = vec![b'A'; 64];
        assert_eq!(b64_run(&t), (64, B64_ALNUM));
        t[40] = b'\n';
        assert_eq!(b64_run(&t), (40, B64_ALNUM));
        t[40] = b'=';
        t[50] = b'-';
        assert_eq!(b64_run(&t), (64, B64_ALNUM | B64_PAD | B64_URL));
    }

    #[test]
    fn base64_classes_match_a_plain_test() {
        let alphabet = b"Az09+/-_=\r\n .:";
        let mut r = 7u64;
        for len in 0..120 {
            for _ in 0..50 {
                let t: Vec<u8> = (0..len)
                    .map(|_| {
                        r ^= r << 13;
                        r ^= r >> 7;
                        r ^= r << 17;
                        // Mostly base64, now and then a byte outside it.
                        let i = (r % 1000) as usize;
                        if i < 990 {
                            alphabet[i % 11]
                        } else {
                            alphabet[11 + i % 3]
                        }
                    })
                    .collect();
                let want = t.iter().try_fold(0u8, |acc, &b| {
                    (b64_class(b) != 0).then_some(acc | b64_class(b))
                });
                assert_eq!(b64_classes(&t), want, "{t:?}");
            }
        }
    }

    /// The stack probe of `as_hex` refuses only what the full decoding refuses: hex of
    /// random bytes, of text, and of text with binary or multi-byte characters late.
    #[test]
    fn hex_probe_keeps_the_full_decoding() {
        fn full(s: &str) -> Option<String> {
            let bytes = hex::decode(s).ok()?;
            let text = String::from_utf8(bytes).ok()?;
            mostly_text(&text).then_some(text)
        }
        let mut r = 5u64;
        let mut rnd = || {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            r
        };
        let mut accepted = 0;
        for i in 0..20000 {
            let mut bytes: Vec<u8> = "access key: é€ 電話 token=ab"
                .bytes()
                .cycle()
                .skip(i % 23)
                .take(16 + i % 40)
                .collect();
            // Some random bytes somewhere (or none, or everywhere).
            for _ in 0..(rnd() % 3) {
                let n = bytes.len();
                bytes[(rnd() as usize) % n] = rnd() as u8;
            }
            if i % 5 == 0 {
                bytes.iter_mut().for_each(|b| *b = rnd() as u8);
            }
            let s = hex::encode(&bytes);
            let want = if s.len() >= 32
                && (bytes[0].is_ascii_graphic() || b" \t\n\r".contains(&bytes[0]))
                && (bytes[1].is_ascii_graphic() || b" \t\n\r".contains(&bytes[1]))
            {
                full(&s)
            } else {
                None
            };
            assert_eq!(as_hex(&s), want, "{bytes:?}");
            accepted += usize::from(want.is_some());
        }
        assert!(accepted > 2000, "{accepted}");
    }

    /// `trim` is `str::trim` (every one-byte end, and multi-byte white space).
    #[test]
    fn fast_trim_is_str_trim() {
        let mut ends: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        ends.extend(
            [
                "\u{85}", "\u{a0}", "\u{1680}", "\u{2000}", "\u{2028}", "\u{3000}", "é", "\u{feff}",
            ]
            .map(String::from),
        );
        for a in &ends {
            for z in &ends {
                for mid in ["", "x", " y ", "\u{a0}"] {
                    let s = format!("{a}{mid}{z}");
                    assert_eq!(trim(&s), s.trim(), "{s:?}");
                }
            }
        }
        assert_eq!(trim(""), "");
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
