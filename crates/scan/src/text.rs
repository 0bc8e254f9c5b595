//! Detections in one text: the keyword prefilter, regexes on windows, key context,
//! and the personal-data scanners.

use crate::checks::{self, KeyWords, Verdict, key_has_any};
use crate::engine::{Engine, RegexRule, Trigger};
use crate::gitleaks::AllowTarget;
use crate::pii::{self, NumberKind, NumberWants};
use crate::rules::{Follow, Verify};
use crate::walk::Hit;

fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The cheap check of what follows a keyword ending at `at`.
fn follows(f: Follow, t: &[u8], at: usize) -> bool {
    let b = |i: usize| t.get(i).copied().unwrap_or(0);
    match f {
        Follow::Any => true,
        Follow::Assign => {
            let mut i = at;
            while i < t.len()
                && i - at < 40
                && (b(i).is_ascii_alphanumeric() || matches!(b(i), b'_' | b'.' | b'-'))
            {
                i += 1;
            }
            if b(i) == b'\\' {
                i += 1;
            }
            if matches!(b(i), b'"' | b'\'') {
                i += 1;
            }
            let sp = i;
            while i < t.len() && i - sp < 5 && matches!(b(i), b' ' | b'\t') {
                i += 1;
            }
            matches!(b(i), b'=' | b':' | b'|')
        }
        Follow::Jwt => {
            let mut i = at;
            while i < t.len()
                && i - at < 1024
                && (b(i).is_ascii_alphanumeric() || matches!(b(i), b'_' | b'-'))
            {
                i += 1;
            }
            b(i) == b'.' && b(i + 1) == b'e' && b(i + 2) == b'y'
        }
        Follow::AlnumThen(n, end) => {
            t.get(at..at + n)
                .is_some_and(|r| r.iter().all(u8::is_ascii_alphanumeric))
                && b(at + n) == end
        }
        Follow::Userinfo(n) => {
            let mut colon = false;
            for &c in t.get(at..).unwrap_or(&[]).iter().take(n) {
                match c {
                    b'@' => return colon,
                    b':' => colon = true,
                    b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b'/' | b'?' | b'#' | b'"'
                    | b'\'' | b'<' | b'>' | b'\\' => return false,
                    _ => {}
                }
            }
            false
        }
        Follow::Space => {
            let mut i = at;
            while i < t.len() && i - at < 5 && matches!(b(i), b' ' | b'\t') {
                i += 1;
            }
            i > at && (b(i).is_ascii_alphanumeric() || matches!(b(i), b'+' | b'/' | b'-' | b'_'))
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    !(b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'`' | b'<' | b'>'))
}

/// Strings up to this size are scanned whole by each triggered rule.
const SMALL: usize = 2048;

/// Literal keywords in strings shorter than this are found with `memchr` on their
/// first byte instead of the `memmem` searcher (whose set-up dominates short strings).
const LITERAL_MEMCHR_BELOW: usize = 4096;

/// Every detection in one text.
pub(crate) fn scan_text(e: &Engine, t: &[u8], key_ctx: Option<&str>) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::new();
    // 1. Keyword prefilter → windows per rule.
    let mut windows: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
    let mut on_hit = |tr: &Trigger, ms: usize, me: usize| {
        if let Some(case) = tr.case
            && !eq_bytes(t.get(ms..me).unwrap_or(&[]), case.as_bytes())
        {
            return;
        }
        if tr.word_start
            && ms > 0
            && t.get(ms - 1)
                .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return;
        }
        if !follows(tr.follow, t, me) {
            return;
        }
        let Some(rule) = e.rules.get(tr.rule) else {
            return;
        };
        let (ws, we) = if t.len() <= SMALL {
            (0, t.len())
        } else {
            (
                ms.saturating_sub(rule.before),
                (me + rule.after).min(t.len()),
            )
        };
        match windows.iter_mut().find(|(r, _)| *r == tr.rule) {
            Some((_, v)) => match v.last_mut() {
                Some(last) if ws <= last.1 => last.1 = last.1.max(we),
                _ => v.push((ws, we)),
            },
            None => windows.push((tr.rule, vec![(ws, we)])),
        }
    };
    if let Some(k) = &e.keys {
        let mut kh = Vec::new();
        k.find_all(t, &mut kh);
        for (p, ms, me) in kh {
            if let Some(trs) = e.triggers.get(p) {
                for tr in trs {
                    on_hit(tr, ms, me);
                }
            }
        }
    }
    // Short strings: one memchr for the first bytes of every literal (two today, `S`
    // and `A`), not one per literal: it costs less than the packed-pair searcher's
    // set-up, and a string of a JSON document holds neither most of the time.
    let short_firsts = match e.literal_firsts.as_slice() {
        firsts @ ([_] | [_, _] | [_, _, _]) if t.len() < LITERAL_MEMCHR_BELOW => Some(firsts),
        _ => None,
    };
    if let Some(firsts) = short_firsts {
        let mut at_first = |ms: usize| {
            for (f, tr) in &e.literals {
                let needle = f.needle();
                if t.get(ms..).is_some_and(|r| r.starts_with(needle)) {
                    on_hit(tr, ms, ms + needle.len());
                }
            }
        };
        match *firsts {
            [a] => memchr::memchr_iter(a, t).for_each(&mut at_first),
            [a, b] => memchr::memchr2_iter(a, b, t).for_each(&mut at_first),
            [a, b, c] => memchr::memchr3_iter(a, b, c, t).for_each(&mut at_first),
            _ => {}
        }
    } else {
        for (f, tr) in &e.literals {
            let n = f.needle().len();
            for ms in f.find_iter(t) {
                on_hit(tr, ms, ms + n);
            }
        }
    }
    // Literal hits come after the automaton's: keep each rule's windows ordered.
    for (_, v) in &mut windows {
        if !v.is_sorted() {
            v.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::with_capacity(v.len());
            for w in v.drain(..) {
                match merged.last_mut() {
                    Some(last) if w.0 <= last.1 => last.1 = last.1.max(w.1),
                    _ => merged.push(w),
                }
            }
            *v = merged;
        }
    }
    for (ri, ws) in windows {
        for (a, b) in ws {
            // Extend to token boundaries so that `\b` and anchors see whole tokens.
            let mut a2 = a;
            while a2 > 0 && a - a2 < 256 && t.get(a2 - 1).is_some_and(|&c| is_token_byte(c)) {
                a2 -= 1;
            }
            let mut b2 = b;
            while b2 < t.len() && b2 - b < 256 && t.get(b2).is_some_and(|&c| is_token_byte(c)) {
                b2 += 1;
            }
            run_rule(e, ri, t, a2, b2, &mut hits);
        }
    }
    // 2. Rules without keywords (user patterns, keyword-less gitleaks rules).
    for &ri in &e.always {
        run_rule(e, ri, t, 0, t.len(), &mut hits);
    }
    // 3. Key context for the built-in secrets.
    if let Some(k) = key_ctx
        && !e.secrets.is_empty()
    {
        key_context_hits(e, k, t, &mut hits);
    }
    // Specific secrets win over generic ones on the same bytes.
    if hits.iter().any(|h| h.low_priority) {
        let strong: Vec<(usize, usize)> = hits
            .iter()
            .filter(|h| !h.low_priority && h.detector.starts_with("secrets."))
            .map(|h| (h.start, h.end))
            .collect();
        hits.retain(|h| !h.low_priority || !strong.iter().any(|&(a, b)| h.start < b && a < h.end));
    }
    // 4. Personal data.
    if !e.email.is_empty() {
        let mut spans = Vec::new();
        pii::find_emails(t, &mut spans);
        for (a, b) in spans {
            hits.push(Hit {
                detector: "email".into(),
                labels: e.email.clone(),
                start: a,
                end: b,
                low_priority: false,
            });
        }
    }
    let wants = NumberWants {
        phone: !e.phone.is_empty(),
        card: !e.card.is_empty(),
        ssn: !e.ssn.is_empty(),
        iban: !e.iban.is_empty(),
        key: key_ctx,
    };
    if wants.any() {
        let mut spans = Vec::new();
        pii::find_numbers(t, wants, &mut spans);
        for (kind, a, b) in spans {
            let (det, labels) = match kind {
                NumberKind::Phone => ("phone", &e.phone),
                NumberKind::Card => ("payment-card", &e.card),
                NumberKind::Ssn => ("us-ssn", &e.ssn),
                NumberKind::Iban => ("iban", &e.iban),
            };
            hits.push(Hit {
                detector: det.into(),
                labels: labels.clone(),
                start: a,
                end: b,
                low_priority: false,
            });
        }
    }
    hits
}

fn run_rule(e: &Engine, ri: usize, t: &[u8], a: usize, b: usize, hits: &mut Vec<Hit>) {
    let Some(rule) = e.rules.get(ri) else {
        return;
    };
    let Some(window) = t.get(a..b) else {
        return;
    };
    let Some(regex) = rule.regex.get() else {
        return;
    };
    let generic = rule.builtin && rule.verify == Verify::Generic;
    let mut locs = regex.capture_locations();
    // The matches are found with the DFAs alone; the capture groups (the bounded
    // backtracker, most of a rule's cost) are read only for a match that can pass.
    for m in regex.find_iter(window) {
        if generic && generic_value_fails(m.as_bytes()) {
            continue;
        }
        // The leftmost match from `m`'s start is `m` itself: no match starts earlier
        // after the previous one, and one start has one leftmost-first match.
        if regex
            .captures_read_at(&mut locs, window, m.start())
            .is_none()
        {
            continue;
        }
        let group = |g: usize| locs.get(g);
        let Some((m0, m1)) = group(0) else {
            continue;
        };
        let sec = match rule.group {
            Some(g) => group(g),
            None => (1..locs.len()).find_map(group).or(Some((m0, m1))),
        };
        let Some((s0, s1)) = sec else {
            continue;
        };
        if s1 <= s0 {
            continue;
        }
        let secret = window.get(s0..s1).unwrap_or(&[]);
        let (ms, me) = (a + m0, a + m1);
        let (ss, se) = (a + s0, a + s1);
        if rule.builtin && rule.verify != Verify::UrlPassword && checks::is_placeholder(secret) {
            continue;
        }
        if rule.min_entropy > 0.0 && checks::entropy(secret) < rule.min_entropy {
            continue;
        }
        let name = if rule.group == Some(2) {
            group(1).and_then(|(n0, n1)| window.get(n0..n1))
        } else {
            None
        };
        let detector = match checks::verify(rule.verify, t, (ms, me), secret, name) {
            Verdict::Reject => continue,
            Verdict::Accept => rule.detector.clone(),
            Verdict::AcceptAs(id) => format!("secrets.{id}"),
        };
        if allowed(rule, t, (ms, me), secret) {
            continue;
        }
        hits.push(Hit {
            detector,
            labels: rule.labels.clone(),
            start: ss,
            end: se,
            low_priority: rule.low_priority,
        });
    }
}

/// A match of the generic rule whose value cannot pass `checks::generic_value_ok`.
///
/// The rule's value group is its last element, so the value is a suffix of the match
/// made of value bytes (`[^\s'"\x60;,<>(){}\[\]]`). When the longest such suffix
/// holds only letters and `_.-`, so does every value the groups could give, and
/// `generic_value_ok` refuses words and dotted names (`token = os.environ`): the
/// match is rejected without reading its groups. A unit test checks the regex's shape.
fn generic_value_fails(m: &[u8]) -> bool {
    m.iter()
        .rev()
        .take_while(|&&b| {
            !(b.is_ascii_whitespace()
                || b == 0x0b
                || matches!(
                    b,
                    b'\''
                        | b'"'
                        | b'`'
                        | b';'
                        | b','
                        | b'<'
                        | b'>'
                        | b'('
                        | b')'
                        | b'{'
                        | b'}'
                        | b'['
                        | b']'
                ))
        })
        .all(|&b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'.' | b'-'))
}

/// gitleaks allowlists: a match is allowed when any allowlist applies.
fn allowed(rule: &RegexRule, t: &[u8], m: (usize, usize), secret: &[u8]) -> bool {
    if rule.allow.is_empty() {
        return false;
    }
    let lower = String::from_utf8_lossy(secret).to_lowercase();
    rule.allow.iter().any(|a| {
        let target: &[u8] = match a.target {
            AllowTarget::Secret => secret,
            AllowTarget::Match => t.get(m.0..m.1).unwrap_or(&[]),
            AllowTarget::Line => {
                let s = t
                    .get(..m.0)
                    .and_then(|p| p.iter().rposition(|&c| c == b'\n'))
                    .map_or(0, |i| i + 1);
                let e = t
                    .get(m.1..)
                    .and_then(|p| p.iter().position(|&c| c == b'\n'))
                    .map_or(t.len(), |i| m.1 + i);
                t.get(s..e).unwrap_or(&[])
            }
        };
        let re_hit = a.regexes.iter().any(|r| r.is_match(target));
        let sw_hit = a.stopwords.iter().any(|w| lower.contains(w.as_str()));
        if a.and && !a.regexes.is_empty() && !a.stopwords.is_empty() {
            re_hit && sw_hit
        } else {
            re_hit || sw_hit
        }
    })
}

/// A key names a secret only if it contains one of these: the AWS names contain
/// `secret` or `token`, and every word of `checks::SECRETISH_KEY_WORDS` contains one
/// (a unit test checks it).
const KEY_CONTEXT_WORDS: &[&str] = &[
    "secret",
    "token",
    "twilio",
    "pass",
    "pwd",
    "key",
    "credential",
];

static KEY_CONTEXT: KeyWords = KeyWords::new(KEY_CONTEXT_WORDS);

/// The value of a member whose key names a secret.
fn key_context_hits(e: &Engine, key: &str, t: &[u8], hits: &mut Vec<Hit>) {
    // Docker `config.json`: `"auths": {"<registry>": {"auth": "<base64 user:password>"}}`.
    if key.eq_ignore_ascii_case("auth") {
        let v = t.trim_ascii();
        if v.len() >= 8
            && matches!(
                checks::verify(Verify::BasicAuth, t, (0, t.len()), v, None),
                Verdict::Accept
            )
        {
            let start = t.len() - t.trim_ascii_start().len();
            hits.push(Hit {
                detector: "secrets.docker-config-auth".into(),
                labels: e.secrets.clone(),
                start,
                end: start + v.len(),
                low_priority: false,
            });
        }
        return;
    }
    // INVARIANT: every branch below needs one of `KEY_CONTEXT_WORDS` in the key, so
    // other keys (`id`, `name`, `score`: most keys) are done here.
    if !key_has_any(key, &KEY_CONTEXT) {
        return;
    }
    let k = key.to_ascii_lowercase();
    // Vendor-gated rules: `{"datadog_api_key": "<value>"}` is read as
    // `datadog_api_key=<value>`.
    if !e.vendor.is_empty() && t.len() <= SMALL {
        let mut found = false;
        for &(ri, kws) in &e.vendor {
            if !kws.iter().any(|w| k.contains(w)) {
                continue;
            }
            let mut text = Vec::with_capacity(k.len() + 1 + t.len());
            text.extend_from_slice(k.as_bytes());
            text.push(b'=');
            text.extend_from_slice(t);
            let off = k.len() + 1;
            let mut vh = Vec::new();
            run_rule(e, ri, &text, 0, text.len(), &mut vh);
            for mut h in vh {
                if h.start >= off {
                    h.start -= off;
                    h.end -= off;
                    hits.push(h);
                    found = true;
                }
            }
        }
        if found {
            return;
        }
    }
    // kubeconfig `client-key-data`: the base64 of a PEM private key.
    if k == "client-key-data" && t.trim_ascii().starts_with(b"LS0tLS1CRUdJTi") {
        let v = t.trim_ascii();
        let start = t.len() - t.trim_ascii_start().len();
        hits.push(Hit {
            detector: "secrets.kubeconfig-client-key".into(),
            labels: e.secrets.clone(),
            start,
            end: start + v.len(),
            low_priority: false,
        });
        return;
    }
    let start = t.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
    let end = t
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    let Some(v) = t.get(start..end) else {
        return;
    };
    if v.is_empty() {
        return;
    }
    let b64 = |min: usize, max: usize| {
        (min..=max).contains(&v.len())
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    };
    let mut push = |id: &str, low: bool| {
        hits.push(Hit {
            detector: format!("secrets.{id}"),
            labels: e.secrets.clone(),
            start,
            end,
            low_priority: low,
        });
    };
    if (k.contains("aws") && k.contains("secret")
        || k == "secretaccesskey"
        || k == "secret_access_key")
        && b64(40, 40)
        && !checks::is_placeholder(v)
        && checks::entropy(v) >= 4.0
    {
        push("aws-secret-access-key", false);
        return;
    }
    if (k.contains("session_token") || k.contains("sessiontoken") || k.contains("security_token"))
        && b64(100, 8192)
        && checks::entropy(v) >= 4.0
    {
        push("aws-session-token", false);
        return;
    }
    if k.contains("twilio")
        && v.len() == 32
        && v.iter().all(u8::is_ascii_hexdigit)
        && checks::entropy(v) >= 3.0
    {
        push("twilio-auth-token", false);
        return;
    }
    let password_key = ["password", "passwd", "passphrase"]
        .iter()
        .any(|w| k.contains(w))
        || k == "pwd"
        || k.ends_with("_pwd");
    if checks::key_is_secretish(key) {
        let ok = if password_key {
            (6..=200).contains(&v.len())
                && !checks::is_placeholder(v)
                && !v.iter().any(|b| b.is_ascii_whitespace())
                && checks::generic_value_ok_relaxed(v)
        } else {
            checks::generic_value_ok(v)
        };
        if ok {
            push("generic-secret", true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// `Follow::Userinfo` only skips a `://` at which `url-password` cannot match:
        /// for every match, the check passes at the match's own `://` (random URL-ish
        /// texts built from the bytes that decide it, userinfo lengths up to past the
        /// regex's bounds).
        #[test]
        fn userinfo_follow_never_skips_a_url_password_match(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("://".to_string()),
                    " [a-z]{2,8}://[a-z0-9.]{0,12}:[a-zA-Z0-9:%\\[\\]]{1,24}@[a-z]{1,6}",
                    "[a-z]{1,8}",
                    "[:@/?# \t\x0b\r\n\"'<>\\\\\\[\\]%.]",
                    "[a-zA-Z0-9]{100,300}",
                ],
                1..16,
            )
        ) {
            let text = parts.concat();
            let rule = crate::rules::RULES
                .iter()
                .find(|r| r.id == "url-password")
                .expect("url-password rule");
            let re = crate::engine::compile_bytes_regex(rule.regex, false).expect("compiles");
            let t = text.as_bytes();
            let mut matched = 0usize;
            for caps in re.captures_iter(t) {
                matched += 1;
                let scheme = caps.get(1).expect("scheme group");
                proptest::prop_assert!(
                    follows(rule.follow, t, scheme.end() + 3),
                    "skipped a match in {:?}",
                    text
                );
            }
            // Every generated userinfo URL is a match (so the property is exercised).
            if parts.iter().any(|p| p.len() > 3 && p.contains("://") && p.contains('@')) {
                proptest::prop_assert!(matched > 0, "no match in {:?}", text);
            }
        }
    }

    /// The generic rule's groups are read only when `generic_value_fails` allows it:
    /// whenever it says a match fails, the value the groups give fails
    /// `generic_value_ok`, on the corpus and on random assignments built from pieces.
    #[test]
    fn generic_matches_skipped_unread_would_fail() {
        let (ri, rule) = crate::rules::RULES
            .iter()
            .enumerate()
            .find(|(_, r)| r.verify == Verify::Generic)
            .unwrap();
        assert!(
            rule.regex.ends_with(r#"([^\s'"\x60;,<>(){}\[\]]{8,200})"#) && rule.group == Some(2),
            "the value group must be the regex's last element"
        );
        let re = crate::engine::builtin_regex(ri).unwrap();
        let mut texts: Vec<String> = [
            include_str!("../tests/corpus/positives.txt"),
            include_str!("../tests/corpus/negatives.txt"),
            include_str!("../tests/corpus/positives-issue16.txt"),
            include_str!("../tests/corpus/negatives-issue16.txt"),
        ]
        .iter()
        .flat_map(|f| f.lines().map(str::to_string))
        .collect();
        let pieces = [
            "token",
            "password",
            "API_KEY",
            "secret",
            " ",
            "=",
            ":",
            "=>",
            "\"",
            "'",
            "\t",
            "os.environ",
            "abc",
            "XyZ",
            "_",
            ".",
            "-",
            "1",
            "42",
            "/",
            "+",
            "=",
            "[",
            "]",
            "(",
            ")",
            ";",
            "\n",
            "\x0b",
            "é",
            "a1b2c3d4e5",
            "config.db.password",
        ];
        let mut r = 11u64;
        for _ in 0..20000 {
            let mut t = String::new();
            for _ in 0..12 {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                t.push_str(pieces[(r % pieces.len() as u64) as usize]);
            }
            texts.push(t);
        }
        let mut skipped = 0;
        for t in &texts {
            for caps in re.captures_iter(t.as_bytes()) {
                let m = caps.get(0).unwrap();
                if generic_value_fails(m.as_bytes()) {
                    skipped += 1;
                    let v = caps.get(2).unwrap().as_bytes();
                    assert!(!checks::generic_value_ok(v), "{t:?}");
                }
            }
        }
        assert!(skipped > 100, "{skipped}");
    }

    #[test]
    fn key_context_prefilter_covers_every_secretish_word() {
        for w in checks::SECRETISH_KEY_WORDS {
            assert!(
                KEY_CONTEXT_WORDS.iter().any(|k| w.contains(k)),
                "`{w}` escapes the key prefilter"
            );
        }
        for w in [
            "secretaccesskey",
            "aws_secret",
            "session_token",
            "sessiontoken",
            "security_token",
            "twilio_auth",
        ] {
            assert!(KEY_CONTEXT_WORDS.iter().any(|k| w.contains(k)), "{w}");
        }
    }

    #[test]
    fn key_word_lookup_matches_lowercase_contains() {
        const WORDS: &[&str] = &["phone", "tel", "ssn", "social_security", "key"];
        static SET: KeyWords = KeyWords::new(WORDS);
        let words = WORDS;
        let long = format!("{}Social_Security", "x".repeat(70));
        for key in [
            "",
            "PHONE",
            "x_tel",
            "Te",
            "SSN_no",
            "api_KEY",
            "ke",
            "Social_Securit",
            "mobile",
            "é-tel",
            long.as_str(),
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxPHONE",
        ] {
            let want = words.iter().any(|w| key.to_ascii_lowercase().contains(w));
            assert_eq!(key_has_any(key, &SET), want, "{key}");
        }
    }
}
