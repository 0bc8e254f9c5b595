//! Cheap checks shared by the detectors: entropy, placeholders, format verifiers.

use base64::Engine as _;

use crate::rules::Verify;

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Substring search for short haystacks (no searcher to build).
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&n0, rest) = needle.split_first()?;
    hay.iter().enumerate().position(|(i, &c)| {
        c == n0
            && hay
                .get(i + 1..i + 1 + rest.len())
                .is_some_and(|x| x.iter().zip(rest).all(|(a, b)| a == b))
    })
}

/// Words that mark documentation examples and template placeholders.
const PLACEHOLDER_WORDS: &[&str] = &[
    "xxxx",
    "example",
    "your_",
    "your-",
    "yourkey",
    "yourtoken",
    "placeholder",
    "changeme",
    "change_me",
    "dummy",
    "redacted",
    "sample",
    "insert",
    "replace",
    "secret_here",
    "token_here",
    "key_here",
    "here>",
    "notreal",
    "not_real",
    "not-a-real",
];

/// Vendors' documented test keys, exactly (never credentials of anyone).
const VENDOR_TEST_KEYS: &[&[u8]] = &[
    // Google reCAPTCHA v2 test site key and secret (reCAPTCHA FAQ, automated tests).
    b"6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI",
    b"6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe",
];

/// Prefixes of test-mode keys (they act on a vendor's test data only) and of keys
/// that are public by design. Decision recorded in docs/detectors.md.
const TEST_OR_PUBLIC_PREFIXES: &[&[u8]] = &[
    b"sk_test_",
    b"rk_test_",
    b"pk_test_",
    b"pk_live_",
    b"whsec_test_",
    b"shippo_test_",
    b"duffel_test_",
    b"EZTK",
    b"access-sandbox-",
    b"access_token$sandbox$",
    b"FLWSECK_TEST-",
    b"FLWPUBK_TEST-",
    b"phc_",
    b"pk.eyJ",
];

/// A vendor's test-mode, public or documented test key.
pub(crate) fn is_test_or_public_key(v: &[u8]) -> bool {
    // Every prefix and test key starts with one of these bytes: most values leave here.
    if !matches!(
        v.first(),
        Some(b's' | b'r' | b'p' | b'w' | b'd' | b'E' | b'a' | b'F' | b'1'..=b'3' | b'6')
    ) {
        return false;
    }
    TEST_OR_PUBLIC_PREFIXES.iter().any(|p| v.starts_with(p))
        || VENDOR_TEST_KEYS.contains(&v)
        // Cloudflare Turnstile dummy secrets: `1x`/`2x`/`3x` + zeros + `AA`.
        || (v.len() >= 20
            && matches!(v.first(), Some(b'1'..=b'3'))
            && v.get(1) == Some(&b'x')
            && v.ends_with(b"AA")
            && v.get(2..v.len() - 2).is_some_and(|m| m.iter().all(|&b| b == b'0')))
}

/// Whether a candidate secret is a template, a reference or a documentation example.
pub(crate) fn is_placeholder(v: &[u8]) -> bool {
    if is_test_or_public_key(v) {
        return true;
    }
    if v.len() < 300 {
        // One pass for every placeholder word (and the `EXAMPLE` suffix AWS documents
        // its example keys with, AKIAIOSFODNN7EXAMPLE, which the words cover).
        static WORDS: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>> =
            std::sync::OnceLock::new();
        let ac = WORDS.get_or_init(|| {
            aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(PLACEHOLDER_WORDS)
                .ok()
        });
        match ac {
            Some(ac) if ac.is_match(v) => return true,
            Some(_) => {}
            // INVARIANT: the word list compiles; if it did not, fall back to a slow scan.
            None => {
                let lower = v.to_ascii_lowercase();
                if PLACEHOLDER_WORDS
                    .iter()
                    .any(|w| find(&lower, w.as_bytes()).is_some())
                {
                    return true;
                }
            }
        }
    }
    // References and templates: ${VAR}, $VAR, {{ x }}, <your-key>, %VAR%, ****.
    let Some(&first) = v.first() else {
        return true;
    };
    if matches!(first, b'$' | b'<' | b'%' | b'{' | b'[') {
        return true;
    }
    if find(v, b"${").is_some()
        || find(v, b"{{").is_some()
        || find(v, b"****").is_some()
        || find(v, b"...").is_some()
    {
        return true;
    }
    // One repeated character or a short repeated unit (abcabcabc...).
    for unit in 1..=4usize {
        if v.len() >= unit * 3 && is_repetition(v, unit) {
            return true;
        }
    }
    // Straight runs: 0123456789, abcdefgh.
    let straight = v
        .windows(2)
        .filter(|w| matches!(w, [a, b] if b.wrapping_sub(*a) == 1))
        .count();
    v.len() >= 8 && straight + 1 >= v.len() * 3 / 4
}

fn is_repetition(v: &[u8], unit: usize) -> bool {
    let Some(head) = v.get(..unit) else {
        return false;
    };
    v.chunks(unit).all(|c| head.starts_with(c))
}

/// Variable references and code expressions rather than values.
fn is_reference(v: &[u8]) -> bool {
    let lower = v.to_ascii_lowercase();
    const REFS: &[&[u8]] = &[
        b"process.env",
        b"os.environ",
        b"os.getenv",
        b"getenv(",
        b"env(",
        b"env.",
        b"secrets.",
        b"vault:",
        b"arn:aws:",
        b"http://",
        b"https://",
        b"file://",
        b"./",
        b"../",
        b"/etc/",
        b"/run/secrets",
        b"/var/",
        b"/home/",
        b"/users/",
        b"self.",
        b"this.",
        b"config.",
        b"settings.",
        b"params.",
        b"request.",
        b"args.",
        b"props.",
    ];
    REFS.iter().any(|r| find(&lower, r).is_some())
}

/// A value that could be a real secret (generic rules and context rules).
pub(crate) fn generic_value_ok(v: &[u8]) -> bool {
    if v.len() < 8 || v.len() > 200 || is_placeholder(v) || is_reference(v) {
        return false;
    }
    // Words, identifiers, dotted names: letters and `_.-` only (gl:generic-api-key allowlist).
    if v.iter()
        .all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'.' | b'-'))
    {
        return false;
    }
    // Numbers, dates, versions, times.
    if v.iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b':' | b'/' | b'+' | b'_'))
    {
        return false;
    }
    // Colon-separated paths and identifiers (ARNs, URNs, `host:port:db`).
    if v.iter().filter(|&&b| b == b':').count() >= 2 {
        return false;
    }
    // Function calls and code: `foo(bar)`, `a.b.c`, `x[1]`.
    if v.ends_with(b")") || v.ends_with(b"]") {
        return false;
    }
    let words: &[&[u8]] = &[
        b"true",
        b"false",
        b"null",
        b"none",
        b"undefined",
        b"string",
        b"required",
        b"optional",
        b"password",
        b"secret",
        b"token",
        b"test1234",
        b"password1",
        b"password123",
        b"admin123",
        b"letmein",
        b"qwerty",
    ];
    let lower = v.to_ascii_lowercase();
    if words.iter().any(|w| lower == *w) {
        return false;
    }
    let len_bits = (v.len() as f64).log2();
    entropy(v) >= (len_bits - 0.6).min(3.0)
}

/// A value under a key that names a password: any non-template word will do.
pub(crate) fn generic_value_ok_relaxed(v: &[u8]) -> bool {
    if is_reference(v) || is_placeholder(v) {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    const WORDS: &[&[u8]] = &[
        b"password",
        b"passwd",
        b"secret",
        b"string",
        b"required",
        b"optional",
        b"hidden",
        b"masked",
        b"none",
        b"null",
        b"undefined",
        b"true",
        b"false",
        b"empty",
        b"unset",
        b"default",
        b"prompt",
    ];
    !WORDS.iter().any(|w| lower == *w)
}

/// Names whose value is a secret (`password`, `api_key`, `client_secret`, ...).
pub(crate) fn key_is_secretish(key: &str) -> bool {
    // Lowercased on the stack and compared where a word's first letter is: this runs
    // for every match of the generic rule (most of them code, `token = os.environ`).
    key_has_any(key, &SECRETISH) && !key_has_any(key, &NOT_SECRETISH_WORDS) && !names_a_ref(key)
}

/// `key` names a reference to a secret (`token_ref`, `secretRef`): `ref` anywhere but as
/// the start of `refresh` — `refresh_token` is a credential, not a reference to one.
fn names_a_ref(key: &str) -> bool {
    let b = key.as_bytes();
    (0..b.len()).any(|i| {
        b.get(i..i + 3)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"ref"))
            && !b
                .get(i + 3..i + 7)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"resh"))
    })
}

/// Lowercase key words and a table of their first bytes, for [`key_has_any`].
pub(crate) struct KeyWords {
    words: &'static [&'static str],
    first: [bool; 256],
}

impl KeyWords {
    #[expect(
        clippy::indexing_slicing,
        reason = "compile-time table: a `u8` indexes a 256-entry array"
    )]
    pub(crate) const fn new(words: &'static [&'static str]) -> KeyWords {
        let mut first = [false; 256];
        let mut w = 0;
        while w < words.len() {
            let word = words[w].as_bytes();
            if !word.is_empty() {
                first[word[0] as usize] = true;
            }
            w += 1;
        }
        KeyWords { words, first }
    }
}

/// `key`, ASCII-lowercased, contains one of `words`. Keys up to 64 bytes are
/// lowercased on the stack and words compared only where one's first byte is: this
/// runs for every member of every object.
pub(crate) fn key_has_any(key: &str, words: &KeyWords) -> bool {
    let b = key.as_bytes();
    let mut buf = [0u8; 64];
    if b.len() > buf.len() {
        let k = key.to_ascii_lowercase();
        return words.words.iter().any(|w| k.contains(w));
    }
    for (d, c) in buf.iter_mut().zip(b) {
        *d = c.to_ascii_lowercase();
    }
    let hay = buf.get(..b.len()).unwrap_or(&[]);
    hay.iter().enumerate().any(|(i, &c)| {
        words.first.get(usize::from(c)).copied().unwrap_or(false)
            && words.words.iter().any(|w| {
                w.as_bytes().first() == Some(&c)
                    && hay.get(i..i + w.len()).is_some_and(|x| x == w.as_bytes())
            })
    })
}

static SECRETISH: KeyWords = KeyWords::new(SECRETISH_KEY_WORDS);
static NOT_SECRETISH_WORDS: KeyWords = KeyWords::new(NOT_SECRETISH);

/// Words that make a key name a secret ([`key_is_secretish`]).
pub(crate) const SECRETISH_KEY_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "accesskey",
    "access-key",
    "auth_key",
    "authkey",
    "credential",
    "private_key",
    "privatekey",
    "signing_key",
    "encryption_key",
    "master_key",
    "session_key",
];

/// Words that make a key name something else (`max_tokens`, `secret_name`).
const NOT_SECRETISH: &[&str] = &[
    "count",
    "limit",
    "max",
    "min",
    "length",
    "size",
    "type",
    "name",
    "_id",
    "url",
    "uri",
    "path",
    "file",
    "ttl",
    "expir",
    "usage",
    "policy",
    "endpoint",
    "format",
    "prefix",
    "header",
    "field",
    "kind",
    "tokenizer",
    // MCP's `progressToken` (and its snake/kebab spellings): a correlator the client
    // picks for progress notifications, not a credential.
    "progresstoken",
    "progress_token",
    "progress-token",
    "version",
    "enabled",
    "rotation",
    "hint",
    "label",
    "description",
    "csrf",
    "sha",
    "hash",
    "digest",
    "checksum",
    "fingerprint",
    "public",
];

/// What a verifier says about a match.
pub(crate) enum Verdict {
    Reject,
    Accept,
    /// Accept, reported under another rule id (`secrets.<id>`).
    AcceptAs(&'static str),
}

/// Run a rule's format check. `text` is the whole scanned string, `m` the regex
/// match, `secret` the secret's span; `name` the text of capture group 1 when the
/// rule captures a name.
pub(crate) fn verify(
    v: Verify,
    text: &[u8],
    m: (usize, usize),
    secret: &[u8],
    name: Option<&[u8]>,
) -> Verdict {
    let ok = |b: bool| if b { Verdict::Accept } else { Verdict::Reject };
    match v {
        Verify::None => Verdict::Accept,
        Verify::Jwt => ok(jwt_ok(secret)),
        Verify::Discord => ok(discord_ok(secret)),
        Verify::UrlPassword => url_password(text, m, secret),
        Verify::Generic => ok(name
            .and_then(|n| std::str::from_utf8(n).ok())
            .is_some_and(key_is_secretish)
            && generic_value_ok(secret)),
        Verify::BasicAuth => ok(basic_ok(secret)),
        Verify::Bearer => ok(!is_placeholder(secret) && !is_reference(secret)),
        Verify::PrivateKey => ok(private_key_ok(secret)),
        Verify::AwsSecret => ok(secret.iter().any(u8::is_ascii_uppercase)
            && secret.iter().any(u8::is_ascii_lowercase)
            && secret.iter().any(u8::is_ascii_digit)),
        Verify::SasToken => ok(sas_ok(text, m)),
        Verify::AdoNet => ok(ado_ok(text, m) && password_value_ok(secret)),
        Verify::UserPass => ok(secret
            .iter()
            .position(|&b| b == b':')
            .and_then(|i| secret.get(i + 1..))
            .is_some_and(|p| password_value_ok(p) && !is_reference(p))),
    }
}

fn b64url_decode(part: &[u8]) -> Option<Vec<u8>> {
    let trimmed: &[u8] = match part.iter().position(|&b| b == b'=') {
        Some(i) => part.get(..i)?,
        None => part,
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
}

fn jwt_ok(token: &[u8]) -> bool {
    let mut parts = token.split(|&b| b == b'.');
    let (Some(h), Some(p)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Some(header) = b64url_decode(h) else {
        return false;
    };
    let Ok(serde_json::Value::Object(hm)) = serde_json::from_slice::<serde_json::Value>(&header)
    else {
        return false;
    };
    if !hm.get("alg").is_some_and(serde_json::Value::is_string) {
        return false;
    }
    b64url_decode(p)
        .and_then(|pl| serde_json::from_slice::<serde_json::Value>(&pl).ok())
        .is_some_and(|v| v.is_object())
}

fn discord_ok(token: &[u8]) -> bool {
    let Some(first) = token.split(|&b| b == b'.').next() else {
        return false;
    };
    b64url_decode(first)
        .is_some_and(|id| (17..=20).contains(&id.len()) && id.iter().all(u8::is_ascii_digit))
}

/// Schemes whose URLs name databases, caches and brokers.
const DB_SCHEMES: &[&str] = &[
    "postgres",
    "postgresql",
    "mysql",
    "mariadb",
    "mongodb",
    "mongodb+srv",
    "redis",
    "rediss",
    "amqp",
    "amqps",
    "mssql",
    "sqlserver",
    "oracle",
    "clickhouse",
    "cockroachdb",
    "couchdb",
    "neo4j",
    "neo4j+s",
    "bolt",
    "cassandra",
    "memcached",
    "nats",
    "kafka",
    "elasticsearch",
    "influxdb",
    "snowflake",
    "couchbase",
    "couchbases",
    "db2",
    "valkey",
    "valkeys",
    "mqtt",
    "mqtts",
    "stomp",
    "stomps",
    "pulsar",
    "pulsar+ssl",
    "redis-sentinel",
];

/// A password that is a value, not a template or the word "password".
fn password_value_ok(p: &[u8]) -> bool {
    if p.is_empty() || is_placeholder(p) {
        return false;
    }
    let lower = p.to_ascii_lowercase();
    const WORDS: &[&[u8]] = &[
        b"password",
        b"pass",
        b"passwd",
        b"pwd",
        b"secret",
        b"user",
        b"username",
        b"x",
        b"xxx",
        b"***",
        b"pw",
        b"mypassword",
        b"yourpassword",
        b"pass123",
        b"foo",
        b"bar",
        b"token",
    ];
    if WORDS.iter().any(|w| lower == *w) {
        return false;
    }
    !matches!(p.first(), Some(b'$' | b'%' | b'<' | b'{' | b':' | b'@'))
}

fn url_password(text: &[u8], m: (usize, usize), secret: &[u8]) -> Verdict {
    if !password_value_ok(secret) {
        return Verdict::Reject;
    }
    let Some(mtext) = text.get(m.0..m.1) else {
        return Verdict::Reject;
    };
    let scheme_end = find(mtext, b"://").unwrap_or(0);
    let scheme = mtext
        .get(..scheme_end)
        .map(<[u8]>::to_ascii_lowercase)
        .unwrap_or_default();
    // SQLAlchemy-style `postgresql+psycopg2://`: the dialect before `+` names the database.
    let dialect = scheme.split(|&b| b == b'+').next().unwrap_or(&[]);
    if DB_SCHEMES
        .iter()
        .any(|s| scheme == s.as_bytes() || dialect == s.as_bytes())
    {
        Verdict::AcceptAs("database-url")
    } else {
        Verdict::Accept
    }
}

fn basic_ok(b64: &[u8]) -> bool {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    let Ok(s) = std::str::from_utf8(&raw) else {
        return false;
    };
    match s.split_once(':') {
        Some((user, pass)) => {
            !user.is_empty()
                && !user.chars().any(char::is_control)
                && !pass.chars().any(char::is_control)
                && password_value_ok(pass.as_bytes())
        }
        None => false,
    }
}

fn private_key_ok(block: &[u8]) -> bool {
    // The body: everything after the first `-----` line that is base64.
    let body: Vec<u8> = block
        .iter()
        .copied()
        .skip(10)
        .skip_while(|&b| b != b'\n' && b != b'\\')
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    body.len() >= 64
        && !is_placeholder(body.get(..200.min(body.len())).unwrap_or(&[]))
        && entropy(&body) >= 4.0
}

/// The token (no spaces or quotes) around `m`.
fn token_around(text: &[u8], m: (usize, usize)) -> &[u8] {
    let stop = |b: &u8| b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>');
    let start = text
        .get(..m.0)
        .and_then(|t| t.iter().rposition(stop))
        .map_or(0, |i| i + 1);
    let start = start.max(m.0.saturating_sub(600));
    let end = text
        .get(m.1..)
        .and_then(|t| t.iter().position(stop))
        .map_or(text.len(), |i| m.1 + i);
    let end = end.min(m.1 + 600);
    text.get(start..end).unwrap_or(&[])
}

fn sas_ok(text: &[u8], m: (usize, usize)) -> bool {
    let tok = token_around(text, m).to_ascii_lowercase();
    [&b"sv="[..], b"se=", b"sp=", b"srt=", b"sr="]
        .iter()
        .filter(|p| find(&tok, p).is_some())
        .count()
        >= 2
}

fn ado_ok(text: &[u8], m: (usize, usize)) -> bool {
    // The line around the match.
    let start = text
        .get(..m.0)
        .and_then(|t| t.iter().rposition(|&b| b == b'\n'))
        .map_or(0, |i| i + 1)
        .max(m.0.saturating_sub(400));
    let end = text
        .get(m.1..)
        .and_then(|t| t.iter().position(|&b| b == b'\n'))
        .map_or(text.len(), |i| m.1 + i)
        .min(m.1 + 400);
    let line = text.get(start..end).unwrap_or(&[]).to_ascii_lowercase();
    if memchr::memchr(b';', &line).is_none() {
        return false;
    }
    const KEYS: &[&[u8]] = &[
        b"server=",
        b"data source=",
        b"host=",
        b"user id=",
        b"userid=",
        b"uid=",
        b"initial catalog=",
        b"database=",
        b"driver=",
        b"dsn=",
        b"username=",
        b"user=",
        b"address=",
    ];
    KEYS.iter().any(|k| find(&line, k).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_and_constant() {
        assert!(entropy(b"aaaaaaaa") < 0.01);
        assert!((entropy(b"abcdefgh") - 3.0).abs() < 1e-9);
    }

    #[test]
    fn placeholders() {
        for p in [
            &b"AKIAIOSFODNN7EXAMPLE"[..],
            b"xxxxxxxxxxxxxxxxxxxx",
            b"${GITHUB_TOKEN}",
            b"<your-key>",
            b"abcabcabcabc",
            b"0123456789ab",
            b"{{ secrets.TOKEN }}",
        ] {
            assert!(is_placeholder(p), "{}", String::from_utf8_lossy(p));
        }
        assert!(!is_placeholder(b"q8Xz3LmP0wRt7Yv2"));
    }

    #[test]
    fn generic_values() {
        assert!(generic_value_ok(b"S3cr3tP@ss!x"));
        assert!(!generic_value_ok(b"my-app-secret"));
        assert!(!generic_value_ok(b"2024-01-15"));
        assert!(!generic_value_ok(b"process.env.TOKEN"));
        assert!(key_is_secretish("DB_PASSWORD"));
        // The table-driven look-up decides like lowercasing and `contains`.
        let long = format!("{}Api_Key", "x".repeat(70));
        for key in [
            "DB_PASSWORD",
            "max_tokens",
            "secret_name",
            "GITHUB_TOKEN",
            "x-api-key",
            "AccessKey",
            "tokenizer",
            "private_key_id",
            "passwd",
            "Pwd",
            "author",
            "",
            "_id",
            long.as_str(),
        ] {
            let k = key.to_ascii_lowercase();
            let want = SECRETISH_KEY_WORDS.iter().any(|w| k.contains(w))
                && !NOT_SECRETISH.iter().any(|w| k.contains(w));
            assert_eq!(key_is_secretish(key), want, "{key}");
        }
        assert!(!key_is_secretish("max_tokens"));
        assert!(!key_is_secretish("secret_name"));
        // MCP conformance sends `"progressToken": "progress-test-1"`: flagged as a
        // credential, every progress-tracked call through the gate was refused.
        assert!(!key_is_secretish("progressToken"));
        assert!(!key_is_secretish("progress_token"));
        assert!(key_is_secretish("access_token"));
    }

    /// `refresh_token` (OAuth's long-lived credential) was no secret key name: the
    /// "not a secret" word `ref` (for `token_ref`, `secretRef`) matched inside `refresh`.
    #[test]
    fn refresh_token_is_a_secret_key_name() {
        for key in [
            "refresh_token",
            "refreshToken",
            "REFRESH-TOKEN",
            "oauth_refresh_secret",
        ] {
            assert!(key_is_secretish(key), "{key}");
        }
        for key in [
            "token_ref",
            "secretRef",
            "api_key_ref",
            "refresh_token_expires_in",
        ] {
            assert!(!key_is_secretish(key), "{key}");
        }
    }
}
