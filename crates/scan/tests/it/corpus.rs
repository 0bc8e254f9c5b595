//! The detector corpus: loading, template expansion, recall and false positives.

use base64::Engine as _;
use conductor_scan::{FingerprintKey, LabelSpec, Scanner};
use serde_json::Value;

/// Deterministic xorshift64* generator: fixtures are format-valid but random, built at
/// test time, so no secret-looking literal is stored in the repository.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn alphabet(kind: &str) -> &'static [u8] {
    match kind {
        "alnum" => ALNUM,
        "alpha" => ALPHA,
        "lower" => b"abcdefghijklmnopqrstuvwxyz",
        "upper" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "digits" => b"0123456789",
        "hex" => b"0123456789abcdef",
        "HEX" => b"0123456789ABCDEF",
        "b64" => B64,
        "b64url" => B64URL,
        "base32" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
        "bech32" => b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
        other => panic!("unknown template kind {other}"),
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A whole generated value for `${name}` / `${name:arg}`.
fn generate(rng: &mut Rng, name: &str, arg: &str) -> String {
    match name {
        "jwt" => {
            let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
            let payload = b64url(
                format!(
                    r#"{{"sub":"{}","name":"Test User","iat":1516239022}}"#,
                    rng.pick(b"0123456789", 10)
                )
                .as_bytes(),
            );
            format!("{header}.{payload}.{}", rng.pick(B64URL, 43))
        }
        "discord" => {
            let id = format!("1{}", rng.pick(b"0123456789", 17));
            format!(
                "{}.{}.{}",
                b64url(id.as_bytes()),
                rng.pick(B64URL, 6),
                rng.pick(B64URL, 38)
            )
        }
        "basic" => base64::engine::general_purpose::STANDARD
            .encode(format!("svc-user:{}", rng.pick(ALNUM, 16))),
        "pem" => {
            let body = rng.pick(B64, 1600);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN {arg}-----\n{}\n-----END {arg}-----",
                lines.join("\n")
            )
        }
        kind => {
            let n: usize = arg
                .parse()
                .unwrap_or_else(|_| panic!("bad count in ${{{kind}:{arg}}}"));
            rng.pick(alphabet(kind), n)
        }
    }
}

/// Expand `${...}` templates; `json` escapes generated values for a JSON string.
pub fn expand(rng: &mut Rng, text: &str, json: bool) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut generated = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let Some(j) = rest[i..].find('}') else { break };
        let inner = &rest[i + 2..i + j];
        let (name, arg) = inner.split_once(':').unwrap_or((inner, ""));
        let known = matches!(name, "jwt" | "discord" | "basic" | "pem")
            || [
                "alnum", "alpha", "lower", "upper", "digits", "hex", "HEX", "b64", "b64url",
                "base32", "bech32",
            ]
            .contains(&name);
        out.push_str(&rest[..i]);
        if known {
            let v = generate(rng, name, arg);
            if json {
                let enc = serde_json::to_string(&v).unwrap();
                out.push_str(&enc[1..enc.len() - 1]);
            } else {
                out.push_str(&v);
            }
            generated.push(v);
        } else {
            // `${VAR}` in a carrier is literal text (a shell reference).
            out.push_str(&rest[i..i + j + 1]);
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    (out, generated)
}

pub struct Case {
    pub line: usize,
    pub expect: Option<String>,
    pub value: Value,
    /// The generated values (for leak checks).
    pub generated: Vec<String>,
    pub source: String,
    /// The file and the section heading (`# --- x ---` / `# ==== x ====`) it is under.
    pub family: String,
}

fn carrier(rng: &mut Rng, c: &str) -> (Value, Vec<String>) {
    if let Some(j) = c.strip_prefix("json:") {
        let (text, g) = expand(rng, j, true);
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad json carrier {j}: {e}"));
        (v, g)
    } else if let Some(t) = c.strip_prefix("b64:") {
        let (text, g) = expand(rng, &t.replace("\\n", "\n"), false);
        (
            Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
            g,
        )
    } else if let Some(t) = c.strip_prefix("hex:") {
        let (text, g) = expand(rng, &t.replace("\\n", "\n"), false);
        (Value::String(hex::encode(text)), g)
    } else if let Some(t) = c.strip_prefix("b32:") {
        let (text, g) = expand(rng, &t.replace("\\n", "\n"), false);
        (Value::String(base32(text.as_bytes())), g)
    } else if let Some(t) = c.strip_prefix("pct:") {
        let (text, g) = expand(rng, t, false);
        (Value::String(text), g)
    } else {
        let (text, g) = expand(rng, &c.replace("\\n", "\n"), false);
        (Value::String(text), g)
    }
}

/// RFC 4648 §6 base32 with padding.
fn base32(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let v = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let n = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < n {
                out.push(A[((v >> (35 - 5 * i)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn load(name: &str, with_expect: bool) -> Vec<Case> {
    let path = format!("{}/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cases = Vec::new();
    let mut family = String::from("(top)");
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let l = line.trim_end();
        if let Some(h) = l.strip_prefix("# ---").or_else(|| l.strip_prefix("# ====")) {
            family = h
                .trim_matches(|c: char| c == '-' || c == '=' || c == ' ')
                .to_string();
            continue;
        }
        if l.trim().is_empty() || l.starts_with('#') {
            continue;
        }
        let mut rng = Rng::new(line_no as u64 * 7919 + name.len() as u64);
        let (expect, c) = if with_expect {
            let (d, c) = l
                .split_once(" | ")
                .unwrap_or_else(|| panic!("{name}:{line_no}: no ` | `"));
            (Some(d.trim().to_string()), c)
        } else {
            (None, l)
        };
        let (value, generated) = carrier(&mut rng, c);
        cases.push(Case {
            line: line_no,
            expect,
            value,
            generated,
            source: l.to_string(),
            family: format!("{name}: {family}"),
        });
    }
    cases
}

pub fn all_builtins() -> Scanner {
    Scanner::new(&[LabelSpec {
        name: "all".into(),
        builtins: conductor_scan::BUILTIN_DETECTORS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..LabelSpec::default()
    }])
    .unwrap()
}

pub fn key() -> FingerprintKey {
    FingerprintKey([7u8; 32])
}

#[test]
fn corpus_recall_and_false_positives() {
    let scanner = all_builtins();
    let k = key();
    let positives = all_positives();
    let negatives = all_negatives();
    let mut missed = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for c in &positives {
        let want = c.expect.as_deref().unwrap();
        kinds.insert(want.to_string());
        let found = scanner.scan(&c.value, &k);
        if !found.iter().any(|f| f.detector == want) {
            let got: Vec<&str> = found.iter().map(|f| f.detector.as_str()).collect();
            missed.push(format!(
                "{}:{}: want {want}, got {got:?}: {}",
                c.family, c.line, c.source
            ));
        }
    }
    let mut fps = Vec::new();
    for c in &negatives {
        let found = scanner.scan(&c.value, &k);
        if !found.is_empty() {
            let got: Vec<String> = found
                .iter()
                .map(|f| format!("{}@{}[{}..{}]", f.detector, f.pointer, f.start, f.end))
                .collect();
            fps.push(format!("{}:{}: {got:?}: {}", c.family, c.line, c.source));
        }
    }
    let hit = positives.len() - missed.len();
    let secret_kinds = kinds.iter().filter(|k| k.starts_with("secrets.")).count();
    println!(
        "corpus: recall {hit}/{} ({:.1}%), false positives {}/{} negatives; {} detector ids exercised ({} secret kinds)",
        positives.len(),
        100.0 * hit as f64 / positives.len() as f64,
        fps.len(),
        negatives.len(),
        kinds.len(),
        secret_kinds
    );
    for m in &missed {
        println!("MISSED {m}");
    }
    for f in &fps {
        println!("FALSE POSITIVE {f}");
    }
    assert!(missed.is_empty(), "{} positives missed", missed.len());
    assert!(fps.is_empty(), "{} negatives fired", fps.len());
    assert!(
        secret_kinds >= 40,
        "only {secret_kinds} secret kinds in the corpus"
    );
}

/// Every positive corpus file.
pub fn all_positives() -> Vec<Case> {
    let mut v = load("positives.txt", true);
    v.extend(load("positives-issue16.txt", true));
    v
}

/// Every negative corpus file.
pub fn all_negatives() -> Vec<Case> {
    let mut v = load("negatives.txt", false);
    v.extend(load("negatives-issue16.txt", false));
    v
}

/// The pass rate per family (section of a corpus file): a positive passes when its
/// detector fires, a negative when nothing fires. Printed; fails under 100 %.
#[test]
fn corpus_pass_rate_per_family() {
    let scanner = all_builtins();
    let k = key();
    let mut fam: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut failed = Vec::new();
    for c in all_positives().iter().chain(all_negatives().iter()) {
        let found = scanner.scan(&c.value, &k);
        let ok = match c.expect.as_deref() {
            Some(want) => found.iter().any(|f| f.detector == want),
            None => found.is_empty(),
        };
        let e = fam.entry(c.family.clone()).or_default();
        e.1 += 1;
        if ok {
            e.0 += 1;
        } else {
            let got: Vec<&str> = found.iter().map(|f| f.detector.as_str()).collect();
            failed.push(format!(
                "{}:{}: got {got:?}: {}",
                c.family, c.line, c.source
            ));
        }
    }
    println!("{:<100} {:>7} {:>7}", "family", "pass", "rate");
    for (f, (ok, n)) in &fam {
        println!(
            "{f:<100} {ok:>3}/{n:<3} {:>6.1}%",
            100.0 * *ok as f64 / *n as f64
        );
    }
    for f in &failed {
        println!("FAILED {f}");
    }
    assert!(failed.is_empty(), "{} corpus cases failed", failed.len());
}

#[test]
fn every_secret_detector_id_has_a_corpus_case() {
    let positives = all_positives();
    let covered: std::collections::BTreeSet<String> =
        positives.iter().filter_map(|c| c.expect.clone()).collect();
    let missing: Vec<String> = conductor_scan::secret_detector_ids()
        .into_iter()
        .filter(|id| !covered.contains(id))
        .collect();
    assert!(missing.is_empty(), "no positive case for {missing:?}");
}
