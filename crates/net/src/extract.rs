//! Finding destinations: declared JSON pointers, declared literals and (with `scan`)
//! URL-looking strings anywhere in the arguments.
//!
//! "URL-looking" (documented in `crates/net/README.md`) is, inside any string (object
//! keys included), wherever it occurs in the text:
//! 1. `scheme://…`, `scheme:\\…` and the like (any RFC 3986 scheme), and for the
//!    WHATWG special schemes (`http`, `https`, `ws`, `wss`, `ftp`) also
//!    `scheme:/host` and `scheme:host`, which browsers and the `url` crate accept;
//! 2. a word starting with `//` or `\\` followed by a host that is an IP address (any
//!    form), a name blocked by name, or contains a dot (`//169.254.169.254/x`,
//!    `//2852039166/`, `//localhost:6379/`, `\\fileserver.corp\share`); and a whole
//!    string that is a network-path reference once tab/LF/CR are removed, whatever its
//!    host (`/\t/169.254.169.254/`, `///evil.example.net/`: [`whole_reference`]);
//! 3. a word that is a dotted-quad IPv4 address in any base (`169.254.169.254`,
//!    `0xa9.0xfe.0xa9.0xfe`, `0251.0376.0251.0376`), optionally with `:port`; with a
//!    port, also a short form naming a blocked class (`127.1:8080`, `0x7f000001:6379`,
//!    `2852039166:80`; the dotless ones with a path too: `2852039166/latest/`);
//! 4. a word that is an IPv6 address, bare or in brackets (`fd00:ec2::254`, `[::1]:80`);
//! 5. a whole string (trimmed) that is a name blocked by name (`metadata.google.internal`,
//!    `localhost:6379`), and in prose a word that is one: dotted (`metadata.google.internal/x`)
//!    or with a port or path (`localhost:6379`, `metadata/computeMetadata/v1`);
//!    Items 2–5 apply also to what follows a `=`, `@` or `:` inside a word, or an
//!    option's letters (`host=10.0.0.5`, `root@10.0.0.5`, `-h10.0.0.5`,
//!    `--resolve *:443:169.254.169.254`, `src=//169.254.169.254/`);
//! 6. and all of the above again in the percent-decoded text when the string contains
//!    percent-escapes (`?next=http%3A%2F%2F169.254.169.254%2F`);
//! 7. for every URL of item 1, the readings a parser given the rest of the string makes
//!    where they name another host ([`other_readings`]: tab/LF/CR removed, the host after
//!    the last `@` of the authority — `http://example.com;@169.254.169.254/`).
//!
//! Words with non-ASCII characters are mapped as UTS 46 maps them (full-width digits,
//! ideographic dots, enclosed numbers) before the IPv4 test.
//!
//! Words (the prose reading) end at whitespace and at `"`, `'`, `<`, `>`, `` ` ``, `(`, `)`, `,`, `;`, `|`,
//! `{`, `}`; trailing `.`, `:`, `!`, `?`, `]` (unbalanced) are dropped. Dotless or
//! short IPv4 forms without a port (`2852039166`, `127.1`) are *not* found by scanning
//! (they are ordinary numbers); they are destinations when a tool declares the argument.

use crate::canon::{Host, canonical_host_text};
use crate::classes::name_hit;
use crate::ip::parse_ipv4_legacy;

/// Schemes found without slashes too (`http:host`, which the URL standard accepts).
/// Not `file` (`file:line` is prose, and `file:x` names no host anyway).
const SPECIAL: &[&str] = &["http", "https", "ws", "wss", "ftp"];

fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

const fn is_word_end(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | '`' | '(' | ')' | ',' | ';' | '|' | '{' | '}'
        )
}

/// `is_word_end` for the ASCII characters, as a table.
const ASCII_WORD_END: [bool; 128] = ascii_word_end_table();

#[expect(
    clippy::indexing_slicing,
    reason = "`i` runs over 0..128, the table's length"
)]
const fn ascii_word_end_table() -> [bool; 128] {
    let mut t = [false; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = is_word_end(i as u8 as char);
        i += 1;
    }
    t
}

/// Where the word at the start of `text` ends (byte offset), as `find(is_word_end)`
/// would say, with a byte loop for the ASCII part.
fn word_end(text: &str) -> usize {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c < 0x80 {
            if ASCII_WORD_END.get(usize::from(c)).copied().unwrap_or(true) {
                return i;
            }
            i += 1;
        } else {
            // A non-ASCII character: decode it (it may be a Unicode space).
            let Some(ch) = text.get(i..).and_then(|t| t.chars().next()) else {
                return i;
            };
            if is_word_end(ch) {
                return i;
            }
            i += ch.len_utf8();
        }
    }
    b.len()
}

/// Trim what commonly follows a URL in prose.
fn trim_tail(s: &str) -> &str {
    let mut t = s;
    loop {
        let before = t.len();
        t = t.trim_end_matches(['.', ':', '!', '?', '*']);
        if t.ends_with(']') && t.matches('[').count() < t.matches(']').count() {
            t = t.get(..t.len() - 1).unwrap_or("");
        }
        if t.len() == before {
            return t;
        }
    }
}

/// Byte ranges of URL-looking substrings of `text` (see the module docs, items 1–5).
pub fn find_in_text(text: &str) -> Vec<(usize, usize)> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    // Every kind of hit has a `:`, a `.`, a `/` or a `\` (or non-ASCII dots).
    if !text
        .bytes()
        .any(|b| matches!(b, b':' | b'.' | b'/' | b'\\') || b >= 0x80)
    {
        return found;
    }
    let bytes = text.as_bytes();
    // 1. scheme:…
    let mut from = 0;
    while let Some(rel) = text.get(from..).and_then(|t| t.find(':')) {
        let colon = from + rel;
        from = colon + 1;
        let mut start = colon;
        while start > 0 && bytes.get(start - 1).copied().is_some_and(is_scheme_char) {
            start -= 1;
        }
        // The scheme starts with a letter; skip leading digits/punctuation.
        while start < colon && !bytes.get(start).is_some_and(|b| b.is_ascii_alphabetic()) {
            start += 1;
        }
        if start == colon {
            continue;
        }
        let scheme = text.get(start..colon).unwrap_or("");
        let after = text.get(colon + 1..).unwrap_or("");
        let slashes = after.starts_with("//")
            || after.starts_with("\\\\")
            || after.starts_with("/\\")
            || after.starts_with("\\/");
        let ok = slashes
            || (SPECIAL.iter().any(|k| k.eq_ignore_ascii_case(scheme))
                && after
                    .chars()
                    .next()
                    .is_some_and(|c| c == '/' || c == '\\' || c.is_alphanumeric() || c == '['));
        if !ok {
            continue;
        }
        let end_rel = word_end(after);
        let candidate = trim_tail(text.get(start..colon + 1 + end_rel).unwrap_or(""));
        // `scheme:` alone (or `scheme://`) is not a destination.
        if candidate.len() > colon + 1 - start {
            found.push((start, start + candidate.len()));
        }
    }
    // 2–4: words, in the text outside the URLs found above (which are in order of
    // their start: they were found left to right).
    let urls = found.len();
    let mut at = 0;
    for i in 0..=urls {
        let (gap_end, next_at) = match found.get(i) {
            Some(&(s, e)) if i < urls => (s, e),
            _ => (text.len(), text.len()),
        };
        if gap_end > at
            && let Some(gap) = text.get(at..gap_end)
            && maybe_word_hit(gap)
        {
            let mut pos = at;
            for word in gap.split(is_word_end) {
                let wstart = pos;
                pos += word.len()
                    + text
                        .get(wstart + word.len()..)
                        .and_then(|t| t.chars().next())
                        .map_or(0, char::len_utf8);
                let w = trim_tail(word);
                if !w.is_empty()
                    && let Some((off, len)) = destination_in_word(w)
                {
                    found.push((wstart + off, wstart + off + len));
                }
            }
        }
        at = at.max(next_at);
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Whether a stretch of text can hold a word hit at all: `//` or `\\\\` (rule 2), `[` or
/// two `:` (IPv6), or a digit next to a `.` (IPv4). Cheap, so most prose skips the
/// word pass.
fn maybe_word_hit(text: &str) -> bool {
    let b = text.as_bytes();
    b.windows(2).any(|w| match w {
        [b'/' | b'\\', b'/' | b'\\'] => true,
        [b'[', _] | [_, b'['] => true,
        [x, b'.'] | [b'.', x] => x.is_ascii_digit(),
        // `0x7f000001:6379`: a hexadecimal address.
        [b'0', b'x' | b'X'] => true,
        _ => false,
    }) || b.iter().filter(|&&c| c == b':').count() >= 2
        || !text.is_ascii()
        || long_digits_then_colon(b)
        || has_blocked_name_word(b)
}

/// Eight or more digits followed by `:` or `/` (`2852039166:80`, `2852039166/x`: a
/// dotless address and a port or path).
fn long_digits_then_colon(b: &[u8]) -> bool {
    let mut run = 0usize;
    for &c in b {
        if c.is_ascii_digit() {
            run += 1;
        } else {
            if matches!(c, b':' | b'/') && run >= 8 {
                return true;
            }
            run = 0;
        }
    }
    false
}

/// Every name blocked by name holds one of these (ASCII, any case).
const NAME_NEEDLES: &[&[u8]] = &[b"localhost", b"metadata", b"instance-data", b"loopback"];

/// Whether the text holds a word of a name blocked by name (see [`NAME_NEEDLES`]).
fn has_blocked_name_word(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &c)| {
        matches!(c | 0x20, b'l' | b'm' | b'i')
            && NAME_NEEDLES.iter().any(|n| {
                b.get(i..i + n.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(n))
            })
    })
}

/// Where in the word `w` a destination is: the whole word, or what follows a `=`, a `@`
/// or a `:` in it (`host=10.0.0.5`, `root@10.0.0.5`, `src=//169.254.169.254/`, curl's
/// `--resolve *:443:169.254.169.254` and `--connect-to a:443:169.254.169.254:80`), or
/// what follows an option's letters (`-h10.0.0.5`, `-x169.254.169.254:80`): the byte
/// offset and length of the first such reading that is one.
fn destination_in_word(w: &str) -> Option<(usize, usize)> {
    if word_is_destination(w) {
        return Some((0, w.len()));
    }
    // The separators are ASCII, so their byte offsets are character boundaries. At
    // most 64 readings per word (a long list of separators is no host).
    let seps = w
        .bytes()
        .enumerate()
        .filter(|&(_, b)| matches!(b, b'=' | b'@' | b':'))
        .take(64);
    for (i, _) in seps {
        let rest = w.get(i + 1..).unwrap_or("");
        // Every reading that can be a destination starts with a digit, `[`, `/`, `\`,
        // a letter of a blocked name, `:` (IPv6 `::1`) or a non-ASCII character.
        let lead = rest.as_bytes().first().copied().unwrap_or(b' ');
        if (lead.is_ascii_digit()
            || matches!(lead | 0x20, b'l' | b'm' | b'i')
            || matches!(lead, b'[' | b'/' | b'\\' | b':')
            || lead >= 0x80)
            && word_is_destination(rest)
        {
            return Some((i + 1, rest.len()));
        }
    }
    if let Some(r) = w.strip_prefix('-') {
        let letters = r.bytes().take_while(u8::is_ascii_alphabetic).count();
        let rest = r.get(letters..).unwrap_or("");
        if letters > 0
            && rest.starts_with(|c: char| c.is_ascii_digit() || c == '[')
            && word_is_destination(rest)
        {
            return Some((1 + letters, rest.len()));
        }
    }
    None
}

/// Whether `host` (no port, no path) is a name blocked by name, written in ASCII.
fn is_blocked_name(host: &str) -> bool {
    // Every blocked name is 8 bytes or more and holds a needle: most words are neither.
    if host.len() < 8 || !has_blocked_name_word(host.as_bytes()) {
        return false;
    }
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    name_hit(name).is_some()
}

/// A dotless or short IPv4 form (`2852039166`, `0x7f000001`, `127.1`) that names a
/// blocked class (not `0.x`): what curl and `getaddrinfo` connect to, where prose
/// numbers (`10:30`, `20261204:1`, `1.5:1`) name nothing blocked. `dotless`: only the
/// one-part forms (hexadecimal, or eight or more digits).
fn short_ipv4_blocked(host: &str, dotless: bool) -> bool {
    let Some(ip) = parse_ipv4_legacy(host) else {
        return false;
    };
    let parts = host.split('.').count();
    if parts == 1 {
        if !host.to_ascii_lowercase().starts_with("0x") && host.len() < 8 {
            return false;
        }
    } else if dotless {
        return false;
    }
    ip.octets()[0] != 0 && !crate::classes::classes_of(std::net::IpAddr::V4(ip)).is_empty()
}

fn word_is_destination(w: &str) -> bool {
    // Most words of prose: ASCII without digits or the characters of an address, a port
    // or a path. Such a word is a destination only as a dotted blocked name.
    let b = w.as_bytes();
    if w.is_ascii()
        && !b
            .iter()
            .any(|&c| c.is_ascii_digit() || matches!(c, b':' | b'/' | b'\\' | b'['))
    {
        let h = w.strip_suffix('.').unwrap_or(w);
        return h.contains('.') && is_blocked_name(h);
    }
    if let Some(rest) = w
        .strip_prefix("//")
        .or_else(|| w.strip_prefix("\\\\"))
        .or_else(|| w.strip_prefix("/\\"))
        .or_else(|| w.strip_prefix("\\/"))
    {
        let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
        let authority = rest.get(..end).unwrap_or("");
        let hostport = authority.rsplit('@').next().unwrap_or(authority);
        if hostport.starts_with('[') {
            return true;
        }
        let host = hostport.split(':').next().unwrap_or(hostport);
        // A dotless host too when it is an address (`//2852039166/`, `//0x7f000001/`)
        // or a name blocked by name (`//localhost:6379/`, `//metadata/…`).
        return (host.contains('.') || parse_ipv4_legacy(host).is_some() || is_blocked_name(host))
            && host
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '%');
    }
    // Drop a path.
    let head = w.split(['/', '?', '#']).next().unwrap_or(w);
    if head.starts_with('[') {
        return head.contains(']')
            && canonical_host_text(head.get(..=head.find(']').unwrap_or(0)).unwrap_or("")).is_ok();
    }
    if head.matches(':').count() >= 2 {
        let addr = head.split('%').next().unwrap_or(head);
        return addr.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let host = head.split(':').next().unwrap_or(head);
    let port_ok = head
        .split_once(':')
        .is_none_or(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return false;
    }
    let h = host.strip_suffix('.').unwrap_or(host);
    if h.split('.').count() == 4 && parse_ipv4_legacy(h).is_some() {
        return true;
    }
    let has_port = head.contains(':');
    let has_path = w.len() > head.len();
    // `2852039166:80`, `0x7f000001:6379`, `127.1:8080`, `curl 2852039166/latest/`
    // (curl and `getaddrinfo` read them).
    if (has_port && short_ipv4_blocked(h, false)) || (has_path && short_ipv4_blocked(h, true)) {
        return true;
    }
    // A name blocked by name: a dotted one anywhere (`metadata.google.internal/x`), a
    // dotless one beside a port or a path (`localhost:6379`, `metadata/computeMetadata`;
    // `localhost` alone is prose).
    if is_blocked_name(h) && (h.contains('.') || has_port || has_path) {
        return true;
    }
    // Full-width digits, ideographic dots, enclosed numbers: map them as UTS 46 (and so
    // the URL parser) would, then look again (the host alone: a `:port` after it is no
    // part of a domain).
    if !w.is_ascii() {
        let host_part = head.split([':', '\u{ff1a}']).next().unwrap_or(head);
        if let Ok(mapped) =
            idna::domain_to_ascii_cow(host_part.as_bytes(), idna::AsciiDenyList::URL)
        {
            let m = mapped.strip_suffix('.').unwrap_or(&mapped);
            return m.split('.').count() == 4 && parse_ipv4_legacy(m).is_some();
        }
    }
    false
}

/// Readings of the URLs found in `text` that a parser given the rest of the text
/// would make, where they differ from the prose reading of [`find_in_text`]: the
/// URL standard (Node's `fetch`, browsers) and Python's `urllib` remove tab, LF and
/// CR wherever they are, and every common parser (WHATWG, RFC 3986, Python
/// `urllib`/`httpx`) reads the authority up to the first `/`, `?`, `#` (or `\\`)
/// with the host after its **last** `@` — so `http://example.com;@169.254.169.254/`,
/// `http://example.com @169.254.169.254/` and `http://169.254.\t169.254/` name
/// 169.254.169.254, whatever the prose around them says.
///
/// `hits` are [`find_in_text`]'s ranges of `text`. Each reading is returned with the
/// start of its hit, as `scheme://authority/` (the path does not change the host). A reading is added
/// only when its authority has a `@` or lost a tab or newline, and differs from the
/// prose reading's authority.
// INVARIANT: where the end or the host of a scanned URL is ambiguous, every reading
// is a destination (and each is checked; one failing denies).
pub(crate) fn other_readings(text: &str, hits: &[(usize, usize)]) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for &(start, end) in hits {
        let Some(rest) = text.get(start..) else {
            continue;
        };
        let Some(colon) = rest.find(':') else {
            continue;
        };
        let scheme = rest.get(..colon).unwrap_or("");
        if scheme.is_empty() || !scheme.bytes().all(is_scheme_char) {
            continue;
        }
        let after = rest.get(colon + 1..).unwrap_or("");
        let lead = after.len() - after.trim_start_matches(['/', '\\']).len();
        if lead < 2 {
            continue;
        }
        let Some(authority_text) = after.get(lead..) else {
            continue;
        };
        // The authority, read the way a parser reads it: tab/LF/CR removed, up to the
        // first `/`, `?`, `#` or `\\` (or the end of the text).
        let mut authority = String::new();
        let mut lost_controls = false;
        for c in authority_text.chars() {
            match c {
                '\t' | '\n' | '\r' => lost_controls = true,
                '/' | '?' | '#' | '\\' => break,
                _ => authority.push(c),
            }
            if authority.len() > crate::canon::MAX_INPUT {
                break;
            }
        }
        // The prose reading's authority, for comparison.
        let prose = text
            .get(start..end)
            .and_then(|h| h.get(colon + 1 + lead..))
            .unwrap_or("");
        let prose_authority = prose.split(['/', '?', '#', '\\']).next().unwrap_or("");
        let trimmed = authority.trim_end_matches(|c: char| c <= ' ');
        if (!trimmed.contains('@') && !lost_controls) || trimmed == prose_authority {
            continue;
        }
        // Only the host after the last `@` can reach anything: a reading whose host
        // part is empty or holds a space names no host.
        // Nor does one with characters no resolvable host has (a `)` or `"` of the
        // prose after a URL): only names, addresses, percent-escapes and non-ASCII
        // (IDNA, full-width digits) stay.
        let host_part = trimmed.rsplit('@').next().unwrap_or("");
        if host_part.is_empty()
            || !host_part.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, '.' | '-' | '_' | ':' | '[' | ']' | '%')
                    || (!c.is_ascii() && !c.is_whitespace())
            })
        {
            continue;
        }
        // The same host (and port) as the prose reading: nothing else is reached.
        if host_part == prose_authority.rsplit('@').next().unwrap_or("") {
            continue;
        }
        let reading = format!("{}://{trimmed}/", scheme.to_ascii_lowercase());
        if !out.iter().any(|(_, r)| *r == reading) {
            out.push((start, reading));
        }
    }
    out
}

/// Whether a whole string (trimmed) is a host blocked by name, optionally with a port
/// or path (`localhost:6379`, `metadata.google.internal/computeMetadata/v1/`).
pub(crate) fn whole_is_blocked_name(text: &str) -> bool {
    let t = text.trim();
    // The shortest blocked name is `metadata` (8 bytes).
    if t.len() < 8 || t.len() > 300 {
        return false;
    }
    let b = t.as_bytes();
    let head_end = b
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(b.len());
    let Some(head) = t.get(..head_end) else {
        return false;
    };
    // A URL with a scheme is `find_in_text`'s business.
    if head.ends_with(':') && t.get(head_end..).is_some_and(|r| r.starts_with("//")) {
        return false;
    }
    let host = head.rsplit('@').next().unwrap_or(head);
    let host = host.split(':').next().unwrap_or(host);
    if host.len() < 8 || host.contains(char::is_whitespace) {
        return false;
    }
    // Plain ASCII without escapes: compare directly (lowercase, no trailing dot).
    if host
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        let lower = host.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        return name_hit(name).is_some();
    }
    matches!(canonical_host_text(host), Ok(Host::Name(n)) if name_hit(&n).is_some())
}

/// A whole string that a URL parser given a base reads as a network-path reference
/// (RFC 3986 §4.2; the URL standard's special-authority slashes): once leading and
/// trailing C0 controls and spaces are trimmed and every tab, LF and CR is removed (as
/// the URL standard and Python's `urllib` do), two or more `/` or `\` and then an
/// authority — `/\t/169.254.169.254/`, `//2852039166/`, `//localhost:6379/`,
/// `/\/evil.example.net/`, `///evil.example.net/` (the URL standard skips every slash;
/// RFC 3986 readers see an empty authority: the readers differ, so it is a
/// destination), `\\\\fileserver\\share`. Returns `//host[:port]/` (the host after the
/// last `@`); `None` when there is no such reference, or its host is empty or holds a
/// character no host has (`// a comment`).
pub(crate) fn whole_reference(text: &str) -> Option<String> {
    let t = text.trim_matches(|c: char| c <= ' ');
    if !t.starts_with(['/', '\\']) {
        return None;
    }
    let cleaned: String = t
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .take(crate::canon::MAX_INPUT)
        .collect();
    let rest = cleaned.trim_start_matches(['/', '\\']);
    if cleaned.len() - rest.len() < 2 {
        return None;
    }
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    let host_port = authority.rsplit('@').next()?;
    let host_chars_ok = host_port.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '-' | '_' | ':' | '[' | ']' | '%')
            || (!c.is_ascii() && !c.is_whitespace())
    });
    if host_port.is_empty() || host_port.starts_with(':') || !host_chars_ok {
        return None;
    }
    Some(format!("//{host_port}/"))
}

/// The percent-decoded forms of `text` (decoded once, twice, three times — as long as
/// decoding changes it and yields UTF-8), for destinations hidden in parameters.
pub(crate) fn percent_decoded(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if !text.as_bytes().contains(&b'%') {
        return out;
    }
    let mut current = text.to_string();
    for _ in 0..3 {
        if !current.contains('%') {
            break;
        }
        match String::from_utf8(crate::canon::percent_decode(&current)) {
            Ok(d) if d != current => {
                out.push(d.clone());
                current = d;
            }
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(t: &str) -> Vec<&str> {
        find_in_text(t).into_iter().map(|(s, e)| &t[s..e]).collect()
    }

    #[test]
    fn finds_in_prose() {
        assert_eq!(
            f("please GET http://169.254.169.254/ now"),
            vec!["http://169.254.169.254/"]
        );
        assert_eq!(
            f("(see https://example.com/x)."),
            vec!["https://example.com/x"]
        );
        assert_eq!(
            f("a http://a.example/?u=http://b.example/ b"),
            vec!["http://a.example/?u=http://b.example/", "http://b.example/"]
        );
        assert_eq!(
            f("go to //169.254.169.254/latest"),
            vec!["//169.254.169.254/latest"]
        );
        assert_eq!(
            f("ip 10.0.0.1:8080 and [::1]:80 and fd00:ec2::254."),
            vec!["10.0.0.1:8080", "[::1]:80", "fd00:ec2::254"]
        );
        assert_eq!(
            f("gopher://127.0.0.1:70/_x"),
            vec!["gopher://127.0.0.1:70/_x"]
        );
        assert_eq!(
            f("HTTP:\\\\169.254.169.254\\"),
            vec!["HTTP:\\\\169.254.169.254\\"]
        );
        assert_eq!(f("http:169.254.169.254"), vec!["http:169.254.169.254"]);
        assert_eq!(
            f("\\\\fileserver.corp\\share"),
            vec!["\\\\fileserver.corp\\share"]
        );
    }

    #[test]
    fn ignores_ordinary_text() {
        for t in [
            "see file:12 for details",
            "hello world",
            "pi is 3.14",
            "version 1.2.3",
            "a: b",
            "ratio 2:1",
            "// INVARIANT: x",
            "http: the protocol",
            "12:30:45",
            "see foo.rs:12",
            "2852039166",
        ] {
            assert!(f(t).is_empty(), "{t}: {:?}", f(t));
        }
    }

    #[test]
    fn blocked_names() {
        assert!(whole_is_blocked_name("localhost:6379"));
        assert!(whole_is_blocked_name(
            " metadata.google.internal/computeMetadata/v1/ "
        ));
        assert!(whole_is_blocked_name("METADATA.GOOGLE.INTERNAL."));
        assert!(!whole_is_blocked_name("example.com"));
        assert!(!whole_is_blocked_name("connect to localhost"));
    }
}
