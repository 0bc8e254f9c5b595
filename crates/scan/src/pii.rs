//! Personal-data detectors without regexes: `email`, `phone`, `payment-card`, `us-ssn`,
//! `iban`. Each is gated on a cheap byte test (`@`, a digit) and then checked by hand,
//! so their cost is one pass over the text.

use crate::checks::{KeyWords, key_has_any};

/// Which number detectors are wanted, and the context a key gives.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NumberWants<'k> {
    pub phone: bool,
    pub card: bool,
    pub ssn: bool,
    pub iban: bool,
    /// The key whose value the string is: whether it names a phone number or a social
    /// security number is looked up (`key_has_any`) only when a digit cluster gets as
    /// far as the phone and SSN checks, most strings with digits never do (ids, hashes,
    /// dates).
    pub key: Option<&'k str>,
}

/// Whether a key names a phone number / a social security number.
pub(crate) static PHONE_KEY: KeyWords = KeyWords::new(&["phone", "mobile", "tel", "fax", "cell"]);
pub(crate) static SSN_KEY: KeyWords = KeyWords::new(&["ssn", "social_security", "socialsecurity"]);

/// `(phone_key, ssn_key)` of `key`, computed on first use (the same answer as computing
/// it up front: `key_has_any` is a pure function of the key).
fn key_flags(key: Option<&str>, memo: &mut Option<(bool, bool)>) -> (bool, bool) {
    *memo.get_or_insert_with(|| {
        key.map_or((false, false), |k| {
            (key_has_any(k, &PHONE_KEY), key_has_any(k, &SSN_KEY))
        })
    })
}

impl NumberWants<'_> {
    pub(crate) fn any(&self) -> bool {
        self.phone || self.card || self.ssn || self.iban
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberKind {
    Phone,
    Card,
    Ssn,
    Iban,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn before(s: &[u8], i: usize) -> u8 {
    i.checked_sub(1).map_or(0, |j| at(s, j))
}

// ---- email ----------------------------------------------------------------------

/// File extensions that follow `@` in asset names (`icon@2x.png`), not top-level domains.
const NOT_TLDS: &[&[u8]] = &[
    b"png",
    b"jpg",
    b"jpeg",
    b"gif",
    b"svg",
    b"webp",
    b"ico",
    b"js",
    b"css",
    b"ts",
    b"map",
    b"json",
    b"txt",
    b"md",
    b"lock",
    b"yaml",
    b"yml",
    b"toml",
    b"py",
    b"rs",
    b"go",
    b"tsx",
    b"jsx",
    b"mjs",
    b"cjs",
    b"local",
    b"localhost",
    b"localdomain",
    b"internal",
    b"lan",
];

/// A byte of a local part: RFC 5322 atext (the common subset) and UTF-8 (RFC 6531).
fn local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'') || b >= 0x80
}

/// A byte of a domain label: LDH, or UTF-8 of an internationalised label (RFC 5890).
fn label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80
}

/// Find e-mail addresses: RFC 5322 dot-atom and quoted local parts, UTF-8 local parts
/// and domains (RFC 6531), and `%40` for `@` (percent-encoded, as in URL queries).
///
/// INVARIANT: only the userinfo of a URL (`scheme://user:pass@host`) is exempt; an
/// address in a URL's path, query or fragment is found.
pub(crate) fn find_emails(s: &[u8], out: &mut Vec<(usize, usize)>) {
    // One search for both spellings of `@` (most strings hold neither: one call).
    for a in memchr::memchr2_iter(b'@', b'%', s) {
        if at(s, a) == b'@' {
            email_at(s, a, 1, out);
        } else if s.get(a..a + 3) == Some(b"%40") {
            email_at(s, a, 3, out);
        }
    }
}

/// The address whose `@` (`width` bytes: `@` or `%40`) is at `a`, if any.
fn email_at(s: &[u8], a: usize, width: usize, out: &mut Vec<(usize, usize)>) {
    {
        // Local part: a quoted string (`"john doe"@`), or a dot-atom.
        let mut ls = a;
        if width == 1 && before(s, a) == b'"' {
            let open = s
                .get(a.saturating_sub(66)..a - 1)
                .and_then(|w| w.iter().rposition(|&b| b == b'"'))
                .map(|i| a.saturating_sub(66) + i);
            if let Some(o) = open
                && s.get(o + 1..a - 1)
                    .is_some_and(|q| !q.is_empty() && !q.iter().any(|&b| b < 0x20))
                && !is_word(before(s, o))
            {
                ls = o;
            }
        }
        if ls == a {
            while ls > 0 && a - ls < 64 && local_char(before(s, ls)) {
                ls -= 1;
            }
            while ls < a && matches!(at(s, ls), b'.' | b'\'') {
                ls += 1;
            }
            // A UTF-8 local part starts at a character boundary.
            while ls < a && (0x80..0xC0).contains(&at(s, ls)) {
                ls += 1;
            }
            if ls == a || at(s, a - 1) == b'.' {
                return;
            }
        }
        // Userinfo of a URL (`scheme://user:pass@host`) is not an address: the `@` ends
        // an authority that no `/`, `?` or `#` has ended before it.
        let mut rs = ls;
        while rs > 0 && ls - rs < 256 {
            let b = before(s, rs);
            if b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'(' | b'[') {
                break;
            }
            rs -= 1;
        }
        if let Some(run) = s.get(rs..ls)
            && let Some(p) = run.windows(3).rposition(|w| w == b"://")
            && !run
                .get(p + 3..)
                .is_some_and(|auth| auth.iter().any(|&b| matches!(b, b'/' | b'?' | b'#')))
        {
            return;
        }
        // Domain: labels separated by dots, at least two, alphabetic TLD.
        let mut i = a + width;
        let mut labels = 0usize;
        let mut last_label = (i, i);
        let mut end = a + 1;
        loop {
            let ls2 = i;
            while i < s.len() && label_char(at(s, i)) && i - ls2 < 252 {
                i += 1;
            }
            if i == ls2 || at(s, ls2) == b'-' || at(s, i - 1) == b'-' {
                break;
            }
            labels += 1;
            last_label = (ls2, i);
            end = i;
            if at(s, i) == b'.' && label_char(at(s, i + 1)) {
                i += 1;
            } else {
                break;
            }
        }
        if labels < 2 || end - a > 254 {
            return;
        }
        let Some(mut tld) = s.get(last_label.0..last_label.1) else {
            return;
        };
        // An ASCII address glued to following UTF-8 text (`a@b.com。`) ends at the ASCII.
        if let Some(k) = tld.iter().position(|&b| b >= 0x80)
            && k >= 2
            && tld
                .get(..k)
                .is_some_and(|p| p.iter().all(u8::is_ascii_alphabetic))
        {
            end = last_label.0 + k;
            tld = tld.get(..k).unwrap_or(&[]);
        }
        let ascii_tld = (2..=24).contains(&tld.len()) && tld.iter().all(u8::is_ascii_alphabetic);
        let idn_tld = (2..=63).contains(&tld.len()) && tld.iter().all(|&b| b >= 0x80);
        let puny_tld = tld.len() > 4
            && tld
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"xn--"))
            && tld.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
        if !(ascii_tld || idn_tld || puny_tld) {
            return;
        }
        let tld_lower = tld.to_ascii_lowercase();
        if NOT_TLDS.contains(&tld_lower.as_slice()) {
            return;
        }
        let next = at(s, end);
        if next == b'_' || next == b'@' || next == b'-' {
            return;
        }
        // scp-style remotes: git@github.com:org/repo.git
        if next == b':' {
            let n2 = at(s, end + 1);
            if n2 != 0 && !n2.is_ascii_whitespace() && !n2.is_ascii_digit() {
                return;
            }
        }
        out.push((ls, end));
    }
}

// ---- numbers --------------------------------------------------------------------

/// Bytes of words, base64 and hex tokens: `[A-Za-z0-9_+/-]`.
#[expect(
    clippy::indexing_slicing,
    reason = "compile-time table: `i < 256` indexes a 256-entry array"
)]
const B64_WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b == b'+' || b == b'/' || b == b'-';
        i += 1;
    }
    t
};

/// The end of the token (`[A-Za-z0-9_+/-]*`: words, base64, hex ids) starting at `j`.
/// Digits glued to such a token are not numbers of interest.
fn skip_word(s: &[u8], j: usize) -> usize {
    let rest = s.get(j..).unwrap_or(&[]);
    let mut off = 0;
    // Long tokens (base64 blobs, hashes): whole 32-byte blocks at a time, one table
    // load and an AND per byte (the arithmetic form stayed scalar, ~12 operations).
    for c in rest.chunks_exact(32) {
        if !c.iter().fold(true, |all, &b| {
            all & B64_WORD.get(usize::from(b)).copied().unwrap_or(false)
        }) {
            break;
        }
        off += 32;
    }
    let tail = rest.get(off..).unwrap_or(&[]);
    j + off
        + tail
            .iter()
            .position(|&b| !B64_WORD.get(usize::from(b)).copied().unwrap_or(false))
            .unwrap_or(tail.len())
}

const MAX_GROUPS: usize = 16;

// Separator codes between digit groups.
const OTHER: u8 = 0;
const SP: u8 = 1;
const DASH: u8 = 2;
const DOT: u8 = 3;
const RPAR: u8 = 4;
const RPAR_SP: u8 = 5;
const LPAR: u8 = 6;
const SP_LPAR: u8 = 7;
const RPAR_SP_LPAR: u8 = 8;
const SP_DASH_SP: u8 = 9;
const SLASH: u8 = 10;

/// [`sep_code`] of the 1 to 3 separator bytes packed big-endian into `packed` (none
/// of them is 0, so the packing is unambiguous).
fn sep_code_packed(packed: u32) -> u8 {
    #[expect(
        clippy::indexing_slicing,
        reason = "compile-time constants: `i < s.len()`"
    )]
    const fn p(s: &[u8]) -> u32 {
        let mut v = 0u32;
        let mut i = 0;
        while i < s.len() {
            v = v << 8 | s[i] as u32;
            i += 1;
        }
        v
    }
    const SP_: u32 = p(b" ");
    const DASH_: u32 = p(b"-");
    const DOT_: u32 = p(b".");
    const RPAR_: u32 = p(b")");
    const RPAR_SP_: u32 = p(b") ");
    const LPAR_: u32 = p(b"(");
    const SP_LPAR_: u32 = p(b" (");
    const RPAR_SP_LPAR_: u32 = p(b") (");
    const SP_DASH_SP_: u32 = p(b" - ");
    const SLASH_: u32 = p(b"/");
    match packed {
        SP_ => SP,
        DASH_ => DASH,
        DOT_ => DOT,
        RPAR_ => RPAR,
        RPAR_SP_ => RPAR_SP,
        LPAR_ => LPAR,
        SP_LPAR_ => SP_LPAR,
        RPAR_SP_LPAR_ => RPAR_SP_LPAR,
        SP_DASH_SP_ => SP_DASH_SP,
        SLASH_ => SLASH,
        _ => OTHER,
    }
}

#[cfg(test)]
fn sep_code(sep: &[u8]) -> u8 {
    match sep {
        b" " => SP,
        b"-" => DASH,
        b"." => DOT,
        b")" => RPAR,
        b") " => RPAR_SP,
        b"(" => LPAR,
        b" (" => SP_LPAR,
        b") (" => RPAR_SP_LPAR,
        b" - " => SP_DASH_SP,
        b"/" => SLASH,
        _ => OTHER,
    }
}

/// A run of digit groups joined by short separators (` `, `-`, `.`, `(`, `)`).
struct Cluster {
    groups: [(usize, usize); MAX_GROUPS],
    n: usize,
    /// The cluster continued beyond `MAX_GROUPS` groups.
    overflow: bool,
    end: usize,
    /// Digits in all groups.
    total: usize,
    /// `seps[i]`: the separator code between groups `i` and `i + 1`.
    seps: [u8; MAX_GROUPS],
}

impl Cluster {
    fn group(&self, i: usize) -> (usize, usize) {
        self.groups.get(i).copied().unwrap_or((0, 0))
    }
    fn len(&self, i: usize) -> usize {
        let (a, b) = self.group(i);
        b - a
    }
    /// Separator bytes between group `i` and `i + 1`.
    fn sep(&self, _s: &[u8], i: usize) -> u8 {
        self.seps.get(i).copied().unwrap_or(OTHER)
    }
}

fn fill_cluster(s: &[u8], d: usize, c: &mut Cluster) {
    c.n = 0;
    c.total = 0;
    c.overflow = false;
    c.end = d;
    let mut i = d;
    loop {
        let gs = i;
        while at(s, i).is_ascii_digit() {
            i += 1;
        }
        c.total += i - gs;
        if c.n < MAX_GROUPS {
            if let Some(g) = c.groups.get_mut(c.n) {
                *g = (gs, i);
            }
            c.n += 1;
        } else {
            c.overflow = true;
        }
        c.end = i;
        // Separator: up to 3 bytes of ` -.()/`, then a digit. Its bytes are packed
        // into an integer as they are read (for `sep_code_packed`), and its dots and
        // dashes counted, in the one pass.
        let mut j = i;
        let mut packed = 0u32;
        let mut dots = 0;
        while j < s.len() && j - i < 3 {
            let b = at(s, j);
            if !matches!(b, b' ' | b'-' | b'.' | b'(' | b')' | b'/') {
                break;
            }
            packed = packed << 8 | u32::from(b);
            dots += usize::from(b == b'.' || b == b'-');
            j += 1;
        }
        if j > i && at(s, j).is_ascii_digit() {
            if let Some(x) = c.seps.get_mut(c.n.saturating_sub(1)) {
                *x = sep_code_packed(packed);
            }
            // A sentence end (`. `) or two different dashes/dots is not a separator.
            if dots > 1 {
                break;
            }
            i = j;
        } else {
            break;
        }
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Known issuer prefixes and lengths (ISO/IEC 7812 IIN ranges as published by the networks).
fn iin_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| -> u32 {
        d.iter()
            .take(k)
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
    };
    match at(d, 0) {
        // Visa
        b'4' => matches!(n, 13 | 16 | 19),
        // Mastercard 51-55, 2221-2720; Maestro 50, 56-58
        b'5' => {
            (p(2) >= 51 && p(2) <= 55 && n == 16)
                || (matches!(p(2), 50 | 56..=58) && (12..=19).contains(&n))
        }
        b'2' => (2221..=2720).contains(&p(4)) && n == 16,
        // Amex 34/37; Diners 300-305, 36, 38-39; JCB 3528-3589
        b'3' => {
            (matches!(p(2), 34 | 37) && n == 15)
                || ((300..=305).contains(&p(3)) && (14..=19).contains(&n))
                || (matches!(p(2), 36 | 38 | 39) && (14..=19).contains(&n))
                || ((3528..=3589).contains(&p(4)) && (16..=19).contains(&n))
        }
        // Discover 6011, 644-649, 65; UnionPay 62; Maestro 6x
        b'6' => (16..=19).contains(&n) || (12..=19).contains(&n) && matches!(p(2), 63 | 67),
        b'1' => p(4) == 1800 && n == 15,
        _ => false,
    }
}

fn card_grouping_ok(lens: &[usize]) -> bool {
    match lens {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&l| l == 4) && (1..=4).contains(last),
        [] => false,
    }
}

fn ssn_ok(area: u32, group: u32, serial: u32) -> bool {
    // SSA: area 000, 666 and 900-999 are never issued; group 00 and serial 0000 neither.
    // 078-05-1120 and 219-09-9999 were voided after publication in advertising.
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !(area == 78 && group == 5 && serial == 1120)
        && !(area == 219 && group == 9 && serial == 9999)
}

fn num(s: &[u8], (a, b): (usize, usize)) -> u32 {
    s.get(a..b).unwrap_or(&[]).iter().fold(0u32, |acc, &c| {
        acc.saturating_mul(10).saturating_add(u32::from(c - b'0'))
    })
}

fn context_before(s: &[u8], start: usize, words: &ContextWords) -> bool {
    let from = start.saturating_sub(40);
    let Some(hay) = s.get(from..start) else {
        return false;
    };
    // One pass over the window; at each byte, only the words that start with it (either
    // case) are compared, ASCII case-insensitively and in place (no lowercased copy).
    hay.iter().enumerate().any(|(i, &c)| {
        let mut m = words.starting.get(usize::from(c)).copied().unwrap_or(0);
        while m != 0 {
            let w = m.trailing_zeros() as usize;
            m &= m - 1;
            if let Some(k) = words.words.get(w)
                && hay
                    .get(i..i + k.len())
                    .is_some_and(|x| x.eq_ignore_ascii_case(k))
            {
                return true;
            }
        }
        false
    })
}

/// Context words (lowercase) and, per byte, the set of words that start with it in
/// either case: a window is compared only where a word starts, and only with the words
/// that start there (a context window of JSON or a log line holds many of the phone
/// words' first letters).
struct ContextWords {
    words: &'static [&'static [u8]],
    /// Bit `w` of `starting[b]`: word `w` starts with byte `b` (ASCII case folded).
    starting: [u32; 256],
}

impl ContextWords {
    #[expect(
        clippy::indexing_slicing,
        reason = "compile-time table: a `u8` indexes a 256-entry array"
    )]
    const fn new(words: &'static [&'static [u8]]) -> ContextWords {
        assert!(words.len() <= 32, "a word set is a 32-bit mask");
        let mut starting = [0u32; 256];
        let mut w = 0;
        while w < words.len() {
            let word = words[w];
            if !word.is_empty() {
                starting[word[0] as usize] |= 1 << w;
                starting[word[0].to_ascii_uppercase() as usize] |= 1 << w;
            }
            w += 1;
        }
        ContextWords { words, starting }
    }
}

static PHONE_CONTEXT: ContextWords = ContextWords::new(PHONE_WORDS);
static SSN_CONTEXT: ContextWords = ContextWords::new(SSN_WORDS);

const PHONE_WORDS: &[&[u8]] = &[
    b"phone",
    b"tel",
    b"mobile",
    b"cell",
    b"fax",
    b"call",
    b"whatsapp",
    b"sms",
    b"contact",
    b"handy",
    b"portable",
    // Words of the national formats' own languages (UTF-8 bytes; `tél`, `電話`, `携帯`).
    "t\u{e9}l".as_bytes(),
    b"mobil",
    b"rufnummer",
    b"cellulare",
    b"movil",
    "m\u{f3}vil".as_bytes(),
    b"telf",
    "\u{96fb}\u{8a71}".as_bytes(),
    "\u{643a}\u{5e2f}".as_bytes(),
];
const SSN_WORDS: &[&[u8]] = &[
    b"ssn",
    b"social security",
    b"social-security",
    b"ss#",
    b"ss no",
];

/// IBAN lengths per country (ISO 13616 registry, SWIFT IBAN Registry).
fn iban_len(cc: [u8; 2]) -> Option<usize> {
    Some(match &cc {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BR" => 29,
        b"BY" => 28,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IQ" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LC" => 32,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NL" => 18,
        b"NO" => 15,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"SA" => 24,
        b"SC" => 31,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"ST" => 25,
        b"SV" => 28,
        b"TL" => 23,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VA" => 22,
        b"VG" => 24,
        b"XK" => 20,
        _ => return None,
    })
}

/// An IBAN starting at `cs` (the country code): returns its end.
fn iban_at(s: &[u8], cs: usize) -> Option<usize> {
    let cc = [at(s, cs), at(s, cs + 1)];
    let want = iban_len(cc)?;
    let mut chars: Vec<u8> = Vec::with_capacity(want);
    let mut i = cs;
    while chars.len() < want {
        let b = at(s, i);
        if b.is_ascii_uppercase() || b.is_ascii_digit() {
            chars.push(b);
            i += 1;
        } else if b == b' ' && !chars.is_empty() && {
            let n = at(s, i + 1);
            n.is_ascii_uppercase() || n.is_ascii_digit()
        } {
            i += 1;
        } else {
            return None;
        }
    }
    if is_word(at(s, i)) {
        return None;
    }
    // mod-97 over BBAN + country + check digits (ISO 7064 MOD 97-10).
    let mut rem = 0u32;
    for &b in chars.iter().skip(4).chain(chars.iter().take(4)) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(b - b'A') + 10) % 97;
        }
    }
    (rem == 1).then_some(i)
}

/// The high bit of every byte of `x` that is an ASCII digit, exactly (SWAR "has a
/// byte between 0x2F and 0x3A": no carry or borrow crosses bytes, so no byte is
/// misreported).
#[inline(always)]
fn digit_mask(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = x & (ONES * 127);
    (ONES * (127 + 0x3A) - low7) & !x & (low7 + ONES * (127 - 0x2F)) & HIGH
}

/// The next ASCII digit at or after `from`; tests 8 bytes per step.
fn next_digit(s: &[u8], from: usize) -> Option<usize> {
    let rest = s.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut off = from;
    for c in chunks.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let m = digit_mask(u64::from_le_bytes(w));
        if m != 0 {
            return Some(off + (m.trailing_zeros() / 8) as usize);
        }
        off += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| off + p)
}

/// Find phone numbers, payment cards, US SSNs and IBANs.
///
/// Digit runs glued to a word or a base64/hex token are skipped with the token; the
/// rest are checked by hand.
pub(crate) fn find_numbers(
    s: &[u8],
    w: NumberWants<'_>,
    out: &mut Vec<(NumberKind, usize, usize)>,
) {
    let Some(first) = next_digit(s, 0) else {
        return;
    };
    let mut from = first;
    let mut c = Cluster {
        groups: [(0, 0); MAX_GROUPS],
        n: 0,
        overflow: false,
        end: 0,
        total: 0,
        seps: [OTHER; MAX_GROUPS],
    };
    let mut keys = None;
    while let Some(d) = next_digit(s, from) {
        from = at_digit_run(s, d, w, &mut c, &mut keys, out).max(d + 1);
    }
}

/// Check the digit run starting at `d`; returns where the search resumes.
fn at_digit_run(
    s: &[u8],
    d: usize,
    w: NumberWants<'_>,
    c: &mut Cluster,
    keys: &mut Option<(bool, bool)>,
    out: &mut Vec<(NumberKind, usize, usize)>,
) -> usize {
    // IBAN: two capital letters right before the check digits.
    if w.iban && d >= 2 {
        let (c0, c1) = (at(s, d - 2), at(s, d - 1));
        if c0.is_ascii_uppercase()
            && c1.is_ascii_uppercase()
            && !is_word(before(s, d - 2))
            && let Some(end) = iban_at(s, d - 2)
        {
            out.push((NumberKind::Iban, d - 2, end));
            return end;
        }
    }
    // Digits glued to a word (hex ids, `v1`, `abc123`): skip the whole word.
    if is_word(before(s, d)) {
        return skip_word(s, d);
    }
    // Fast path: a short run of digits that no separator continues.
    let mut j = d;
    while at(s, j).is_ascii_digit() {
        j += 1;
    }
    if j - d < 7 && before(s, d) != b'+' && before(s, d) != b'(' {
        let nb = at(s, j);
        let continues = matches!(nb, b' ' | b'-' | b'.' | b'(' | b')' | b'/')
            && (at(s, j + 1).is_ascii_digit()
                || at(s, j + 2).is_ascii_digit()
                || at(s, j + 3).is_ascii_digit());
        if !continues {
            return j;
        }
    }
    fill_cluster(s, d, c);
    let from = c.end.max(d + 1);
    // Nothing below has fewer than 7 digits.
    if c.total < 7 {
        return from;
    }
    // Lead: `+` or `(` before the first group; the byte before that must end a word.
    let mut lead = d;
    if before(s, lead) == b'(' {
        lead -= 1;
    }
    let plus = before(s, lead) == b'+';
    if plus {
        lead -= 1;
    }
    let lb = before(s, lead);
    if is_word(lb) || matches!(lb, b'.' | b'-' | b'/' | b'\\' | b'+' | b',') && !plus {
        return from;
    }
    let rb = at(s, c.end);
    if is_word(rb)
        || (rb == b'.' && at(s, c.end + 1).is_ascii_digit())
        || rb == b'/'
        || rb == b':' && at(s, c.end + 1).is_ascii_digit()
    {
        return from;
    }
    if c.overflow {
        return from;
    }
    let mut found = false;
    if w.card {
        found = find_card(s, c, out);
    }
    if !found && w.ssn {
        found = find_ssn(s, c, key_flags(w.key, keys).1, out);
    }
    if !found && w.phone {
        find_phone(s, c, lead, plus, key_flags(w.key, keys).0, out);
    }
    from
}

fn find_card(s: &[u8], c: &Cluster, out: &mut Vec<(NumberKind, usize, usize)>) -> bool {
    let total: usize = (0..c.n).map(|i| c.len(i)).sum();
    if total < 13 {
        return false;
    }
    for a in 0..c.n {
        if a > 0 && c.sep(s, a - 1) != SP {
            continue;
        }
        let mut digits = 0;
        let mut lens = [0usize; MAX_GROUPS];
        for b in a..c.n {
            digits += c.len(b);
            if let Some(l) = lens.get_mut(b - a) {
                *l = c.len(b);
            }
            if digits > 19 {
                break;
            }
            if digits < 13 {
                continue;
            }
            if b + 1 < c.n && c.sep(s, b) != SP {
                continue;
            }
            let seps_same = (a..b).all(|k| {
                let sp = c.sep(s, k);
                (sp == SP || sp == DASH) && sp == c.sep(s, a)
            });
            if !seps_same || !card_grouping_ok(lens.get(..=b - a).unwrap_or(&[])) {
                continue;
            }
            // The 13 to 19 digits, on the stack (this runs for every long digit run).
            let mut buf = [0u8; 19];
            let mut nd = 0;
            for k in a..=b {
                let (x, y) = c.group(k);
                for &d in s.get(x..y).unwrap_or(&[]) {
                    if let Some(slot) = buf.get_mut(nd) {
                        *slot = d;
                        nd += 1;
                    }
                }
            }
            let ds = buf.get(..nd).unwrap_or(&[]);
            let first = ds.first().copied().unwrap_or(b'0');
            if ds.iter().all(|&x| x == first) || !iin_ok(ds) || !luhn(ds) {
                continue;
            }
            out.push((NumberKind::Card, c.group(a).0, c.group(b).1));
            return true;
        }
    }
    false
}

fn find_ssn(
    s: &[u8],
    c: &Cluster,
    key_ctx: bool,
    out: &mut Vec<(NumberKind, usize, usize)>,
) -> bool {
    // Formatted: AAA-GG-SSSS (or spaces, with context); the groups are the whole cluster
    // or set off by spaces.
    for a in 0..c.n.saturating_sub(2) {
        if c.len(a) != 3 || c.len(a + 1) != 2 || c.len(a + 2) != 4 {
            continue;
        }
        let (s1, s2) = (c.sep(s, a), c.sep(s, a + 1));
        if s1 != s2 || !(s1 == DASH || s1 == SP) {
            continue;
        }
        if (a > 0 && c.sep(s, a - 1) != SP) || (a + 3 < c.n && c.sep(s, a + 2) != SP) {
            continue;
        }
        let start = c.group(a).0;
        if s1 == SP && !(key_ctx || context_before(s, start, &SSN_CONTEXT)) {
            continue;
        }
        if ssn_ok(
            num(s, c.group(a)),
            num(s, c.group(a + 1)),
            num(s, c.group(a + 2)),
        ) {
            out.push((NumberKind::Ssn, start, c.group(a + 2).1));
            return true;
        }
    }
    // Bare nine digits, with context.
    if c.n == 1 && c.len(0) == 9 {
        let (x, _) = c.group(0);
        if key_ctx || context_before(s, x, &SSN_CONTEXT) {
            let area = num(s, (x, x + 3));
            let group = num(s, (x + 3, x + 5));
            let serial = num(s, (x + 5, x + 9));
            if ssn_ok(area, group, serial) {
                out.push((NumberKind::Ssn, x, x + 9));
                return true;
            }
        }
    }
    false
}

fn phone_sep_ok(sep: u8) -> bool {
    sep != OTHER
}

fn find_phone(
    s: &[u8],
    c: &Cluster,
    lead: usize,
    plus: bool,
    key_ctx: bool,
    out: &mut Vec<(NumberKind, usize, usize)>,
) {
    let total: usize = (0..c.n).map(|i| c.len(i)).sum();
    let seps_ok = (0..c.n.saturating_sub(1)).all(|k| phone_sep_ok(c.sep(s, k)));
    // E.164 written with `+`: 8 to 15 digits, country code not starting with 0.
    if plus {
        let first = at(s, c.group(0).0);
        if seps_ok && (8..=15).contains(&total) && first != b'0' && c.len(0) <= 4
            || (c.n == 1 && (8..=15).contains(&total) && first != b'0')
        {
            out.push((NumberKind::Phone, lead, c.end));
        }
        return;
    }
    // NANP: (NXX) NXX-XXXX, NXX-NXX-XXXX, NXX.NXX.XXXX, optionally led by `1-`/`1 `.
    for a in 0..c.n.saturating_sub(2) {
        if c.len(a) != 3 || c.len(a + 1) != 3 || c.len(a + 2) != 4 {
            continue;
        }
        let (ga, gb) = (c.group(a), c.group(a + 1));
        if !(b'2'..=b'9').contains(&at(s, ga.0)) || !(b'2'..=b'9').contains(&at(s, gb.0)) {
            continue;
        }
        let (s1, s2) = (c.sep(s, a), c.sep(s, a + 1));
        let paren = before(s, ga.0) == b'('
            && (s1 == RPAR_SP || s1 == RPAR)
            && matches!(s2, DASH | DOT | SP);
        let same = s1 == s2 && matches!(s1, DASH | DOT | SLASH) || s1 == SLASH && s2 == DASH;
        let spaced = s1 == SP && s2 == SP && (key_ctx || context_before(s, ga.0, &PHONE_CONTEXT));
        if !(paren || same || spaced) {
            continue;
        }
        // What comes before must be nothing, a leading `1`, or a space.
        let mut start = if paren { ga.0 - 1 } else { ga.0 };
        if a > 0 {
            let prev = c.sep(s, a - 1);
            let lead_one = a == 1
                && c.len(0) == 1
                && at(s, c.group(0).0) == b'1'
                && matches!(prev, SP | DASH | SP_LPAR | LPAR | DOT);
            if lead_one {
                start = c.group(0).0;
            } else if prev != SP && prev != SP_LPAR {
                continue;
            }
        }
        if a + 3 < c.n && c.sep(s, a + 2) != SP {
            continue;
        }
        out.push((NumberKind::Phone, start, c.group(a + 2).1));
        return;
    }
    // Dates and times are not phone numbers: 2026-11-26, 26.11.2026, 11/26/2026.
    if c.n == 3 {
        let l = (c.len(0), c.len(1), c.len(2));
        if matches!(l, (4, 2, 2) | (2, 2, 4) | (1, 2, 4) | (2, 1, 4) | (1, 1, 4))
            && c.sep(s, 0) == c.sep(s, 1)
        {
            return;
        }
    }
    // National formats with context: "Tel: 020 7946 0958" (grouped, or a leading 0).
    if !(key_ctx || c.n >= 2 || at(s, c.group(0).0) == b'0') {
        return;
    }
    // A lone run of fewer than 9 digits needs a key; the context words are looked up
    // last (they cost a pass over 40 bytes).
    if c.n == 1 && !key_ctx && total < 9 {
        return;
    }
    if seps_ok && (7..=15).contains(&total) && (key_ctx || context_before(s, lead, &PHONE_CONTEXT))
    {
        out.push((NumberKind::Phone, lead, c.end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nums(s: &str) -> Vec<(NumberKind, String)> {
        let mut out = Vec::new();
        let w = NumberWants {
            phone: true,
            card: true,
            ssn: true,
            iban: true,
            ..NumberWants::default()
        };
        find_numbers(s.as_bytes(), w, &mut out);
        out.into_iter()
            .map(|(k, a, b)| (k, s[a..b].to_string()))
            .collect()
    }

    #[test]
    fn digit_mask_is_exact_for_every_byte_in_every_lane() {
        for b in 0..=255u8 {
            for lane in 0..8 {
                let mut w = [b'a'; 8];
                w[lane] = b;
                let m = digit_mask(u64::from_le_bytes(w));
                let want = if b.is_ascii_digit() {
                    0x80u64 << (8 * lane)
                } else {
                    0
                };
                assert_eq!(m, want, "byte {b} lane {lane}");
            }
            // Next to digits and extreme values, to catch borrows between lanes.
            let w = [b, b'0', b, b'9', b, 0xff, b, 0];
            let m = digit_mask(u64::from_le_bytes(w));
            let want: u64 = w
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| 0x80u64 << (8 * i))
                .sum();
            assert_eq!(m, want, "byte {b} mixed");
        }
    }

    /// `[A-Za-z0-9_+/-]` by arithmetic, to check `B64_WORD` against.
    #[inline(always)]
    fn b64_word(b: u8) -> bool {
        ((b | 0x20).wrapping_sub(b'a') < 26)
            | (b.wrapping_sub(b'0') < 10)
            | (b == b'_')
            | (b == b'+')
            | (b == b'/')
            | (b == b'-')
    }

    #[test]
    fn fast_byte_tests_match_the_tables() {
        for b in 0..=255u8 {
            assert_eq!(b64_word(b), B64_WORD[usize::from(b)], "{b}");
        }
        let long = format!("{}x{}", "A1b2+/-_".repeat(20), " 5");
        assert_eq!(skip_word(long.as_bytes(), 0), 161);
        assert_eq!(skip_word(long.as_bytes(), 3), 161);
        let mut s = vec![b'x'; 100];
        assert_eq!(next_digit(&s, 0), None);
        for p in [0, 31, 32, 63, 64, 99] {
            s[p] = b'7';
            assert_eq!(next_digit(&s, 0), Some(p));
            assert_eq!(next_digit(&s, p + 1), None);
            s[p] = b'x';
        }
    }

    #[test]
    fn context_words_are_found_anywhere_in_the_window() {
        assert!(context_before(b"Tel: ", 5, &PHONE_CONTEXT));
        assert!(context_before(b"my social security no ", 22, &SSN_CONTEXT));
        assert!(context_before(
            b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx SSN ",
            52,
            &SSN_CONTEXT
        ));
        assert!(!context_before(b"the score was ", 14, &PHONE_CONTEXT));
        assert!(!context_before(b"socia", 5, &SSN_CONTEXT));
    }

    /// The in-place, per-letter word look-up finds a context word exactly where a
    /// search of the lowercased 40-byte window does (random windows of word pieces in
    /// mixed case, UTF-8 words, words cut by the window's start).
    #[test]
    fn context_words_match_a_lowercased_search() {
        fn naive(s: &[u8], start: usize, words: &[&[u8]]) -> bool {
            let w = s[start.saturating_sub(40)..start].to_ascii_lowercase();
            words.iter().any(|k| w.windows(k.len()).any(|x| x == *k))
        }
        let pieces: &[&str] = &[
            "TEL",
            "tel",
            "Phone",
            "ssN",
            "Social Security",
            "social-security",
            "ss#",
            "SS No",
            "t\u{e9}l",
            "T\u{e9}L",
            "\u{96fb}\u{8a71}",
            "m\u{f3}vil",
            "MOBIL",
            "fax",
            "s",
            "t",
            "p",
            "x",
            " ",
            ":",
            "-",
            "\"",
            "ph",
            "socia",
            "call",
            "whatsApp",
        ];
        let mut r = 7u64;
        let mut hits = 0;
        for _ in 0..20000 {
            let mut t = String::new();
            for _ in 0..(r % 12) {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                t.push_str(pieces[(r % pieces.len() as u64) as usize]);
            }
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let b = t.as_bytes();
            for (set, words) in [(&PHONE_CONTEXT, PHONE_WORDS), (&SSN_CONTEXT, SSN_WORDS)] {
                let want = naive(b, b.len(), words);
                hits += usize::from(want);
                assert_eq!(context_before(b, b.len(), set), want, "{t:?}");
            }
        }
        assert!(hits > 1000, "{hits}");
    }

    /// The packed separator codes are the slice codes, for every separator the
    /// cluster fill can read (1 to 3 bytes of ` -.()/`).
    #[test]
    fn packed_separator_codes_match_the_slice_codes() {
        let abc = b" -.()/";
        let mut seen = std::collections::BTreeSet::new();
        for n in 1..=3u32 {
            for k in 0..6usize.pow(n) {
                let mut sep = Vec::new();
                let mut x = k;
                for _ in 0..n {
                    sep.push(abc[x % 6]);
                    x /= 6;
                }
                let packed = sep.iter().fold(0u32, |v, &b| v << 8 | u32::from(b));
                assert_eq!(sep_code_packed(packed), sep_code(&sep), "{sep:?}");
                seen.insert(sep_code(&sep));
            }
        }
        assert_eq!(seen.len(), 11, "every code, OTHER included");
    }

    #[test]
    fn luhn_known() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
    }

    #[test]
    fn numbers_found() {
        assert_eq!(
            nums("card 4111 1111 1111 1111."),
            vec![(NumberKind::Card, "4111 1111 1111 1111".into())]
        );
        assert_eq!(
            nums("ssn 123-45-6789"),
            vec![(NumberKind::Ssn, "123-45-6789".into())]
        );
        assert_eq!(
            nums("call (212) 555-0123"),
            vec![(NumberKind::Phone, "(212) 555-0123".into())]
        );
        assert_eq!(
            nums("+44 20 7946 0958"),
            vec![(NumberKind::Phone, "+44 20 7946 0958".into())]
        );
        assert_eq!(
            nums("GB82 WEST 1234 5698 7654 32"),
            vec![(NumberKind::Iban, "GB82 WEST 1234 5698 7654 32".into())]
        );
        assert!(nums("on 2024-01-15 at 12:30, v1.2.3, 192.168.1.1").is_empty());
    }

    #[test]
    fn emails_found() {
        let s =
            "mail alice@example.com or git@github.com:org/repo.git icon@2x.png https://u:p@h.io";
        let mut out = Vec::new();
        find_emails(s.as_bytes(), &mut out);
        let got: Vec<&str> = out.iter().map(|&(a, b)| &s[a..b]).collect();
        assert_eq!(got, vec!["alice@example.com"]);
    }
}
