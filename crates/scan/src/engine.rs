//! Compiling label specs into one engine: the built-in rules, user patterns,
//! imported gitleaks rules and the keyword prefilter that triggers them.
use std::sync::{Arc, LazyLock, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::bytes::{Regex, RegexBuilder};

use crate::gitleaks::AllowTarget;
use crate::rules::{self, BuiltinRule, Follow, Verify};
use crate::{BUILTIN_DETECTORS, LabelSpec, ScanConfigError, Scanner, kwdfa};

#[derive(Debug)]
pub(crate) struct RegexRule {
    pub(crate) detector: String,
    pub(crate) labels: Vec<usize>,
    pub(crate) regex: RuleRegex,
    pub(crate) group: Option<usize>,
    pub(crate) min_entropy: f64,
    pub(crate) verify: Verify,
    pub(crate) before: usize,
    pub(crate) after: usize,
    pub(crate) low_priority: bool,
    pub(crate) builtin: bool,
    pub(crate) allow: Vec<CompiledAllow>,
}

/// A rule's regex. Patterns from the policy (`match:`, imported gitleaks rules) are
/// compiled, and so validated, when the policy is loaded; a built-in rule's regex is
/// known to compile (`every_builtin_regex_compiles`) and is compiled the first time its
/// keyword prefilter hits, once per process — a process that scans nothing with a
/// keyword in it (a `conductor hook` call, most `check`s) compiles none of the ~180.
#[derive(Debug)]
pub(crate) enum RuleRegex {
    Ready(Regex),
    /// Index into `rules::RULES`.
    Builtin(usize),
}

impl RuleRegex {
    /// The compiled regex (`None` only if a built-in one did not compile, which the
    /// unit test rules out; the rule then finds nothing, as a rule skipped at load did).
    pub(crate) fn get(&self) -> Option<&Regex> {
        match self {
            RuleRegex::Ready(re) => Some(re),
            RuleRegex::Builtin(i) => builtin_regex(*i),
        }
    }
}

#[derive(Debug)]
pub(crate) struct CompiledAllow {
    pub(crate) target: AllowTarget,
    pub(crate) regexes: Vec<Regex>,
    pub(crate) stopwords: Vec<String>,
    pub(crate) and: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub(crate) rule: usize,
    /// Exact-case spelling the hit must have (`None`: any case).
    pub(crate) case: Option<&'static str>,
    pub(crate) word_start: bool,
    pub(crate) follow: Follow,
}

/// The keyword prefilter: the dense multi-stream DFA, or (for keyword sets too large
/// for it) the aho-corasick crate's automaton with the same all-occurrences semantics.
#[derive(Debug)]
pub(crate) enum Keywords {
    Dfa(Box<kwdfa::KwDfa>),
    Ac(AhoCorasick),
}

impl Keywords {
    pub(crate) fn find_all(&self, t: &[u8], hits: &mut Vec<(usize, usize, usize)>) {
        match self {
            Keywords::Dfa(d) => d.find_all(t, hits),
            Keywords::Ac(ac) => {
                for m in ac.find_overlapping_iter(t) {
                    hits.push((m.pattern().as_usize(), m.start(), m.end()));
                }
            }
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Engine {
    pub(crate) labels: Vec<String>,
    pub(crate) rules: Vec<RegexRule>,
    pub(crate) keys: Option<Keywords>,
    pub(crate) keywords: Vec<String>,
    pub(crate) triggers: Vec<Vec<Trigger>>,
    /// Case-sensitive literal keywords searched with memmem: (finder, trigger).
    pub(crate) literals: Vec<(memchr::memmem::Finder<'static>, Trigger)>,
    /// The distinct first bytes of `literals` (searched for together in short strings).
    pub(crate) literal_firsts: Vec<u8>,
    pub(crate) always: Vec<usize>,
    pub(crate) secrets: Vec<usize>,
    /// Vendor-gated built-in rules (rule index, keywords), also run on `key=value` of
    /// a JSON member whose key names the vendor.
    pub(crate) vendor: Vec<(usize, &'static [&'static str])>,
    pub(crate) email: Vec<usize>,
    pub(crate) phone: Vec<usize>,
    pub(crate) card: Vec<usize>,
    pub(crate) ssn: Vec<usize>,
    pub(crate) iban: Vec<usize>,
}

/// Compile a byte regex with size limits; `unicode` for user patterns.
pub(crate) fn compile_bytes_regex(src: &str, unicode: bool) -> Result<Regex, String> {
    RegexBuilder::new(src)
        .unicode(unicode)
        .size_limit(8 << 20)
        .dfa_size_limit(8 << 20)
        .nest_limit(100)
        .build()
        .map_err(|e| match e {
            regex::Error::Syntax(s) => {
                let last = s.lines().last().unwrap_or("").trim();
                last.strip_prefix("error: ").unwrap_or(last).to_string()
            }
            regex::Error::CompiledTooBig(n) => {
                format!("the regex compiles to more than {n} bytes; simplify it")
            }
            _ => "the regex cannot be compiled".to_string(),
        })
}

/// The built-in rule `i`'s regex, compiled on first use, once per process.
pub(crate) fn builtin_regex(i: usize) -> Option<&'static Regex> {
    static CELLS: LazyLock<Vec<OnceLock<Option<Regex>>>> =
        LazyLock::new(|| rules::RULES.iter().map(|_| OnceLock::new()).collect());
    let rule = rules::RULES.get(i)?;
    CELLS
        .get(i)?
        .get_or_init(|| compile_bytes_regex(rule.regex, false).ok())
        .as_ref()
}

impl Scanner {
    /// Compile every label; every bad pattern is reported, not only the first.
    pub fn new(labels: &[LabelSpec]) -> Result<Self, Vec<ScanConfigError>> {
        let mut errors = Vec::new();
        let mut e = Engine {
            labels: labels.iter().map(|l| l.name.clone()).collect(),
            ..Engine::default()
        };
        for (li, l) in labels.iter().enumerate() {
            for b in &l.builtins {
                match b.as_str() {
                    "secrets" => e.secrets.push(li),
                    "email" => e.email.push(li),
                    "phone" => e.phone.push(li),
                    "payment-card" => e.card.push(li),
                    "us-ssn" => e.ssn.push(li),
                    "iban" => e.iban.push(li),
                    other => errors.push(ScanConfigError {
                        label: l.name.clone(),
                        pattern: None,
                        message: format!(
                            "unknown detector `{other}` (built-in detectors are {})",
                            BUILTIN_DETECTORS.join(", ")
                        ),
                    }),
                }
            }
        }
        e.secrets.dedup();
        let mut keywords: Vec<String> = Vec::new();
        let mut kw_triggers: Vec<Vec<Trigger>> = Vec::new();
        let mut add_kw = |kw: &str, t: Trigger, keywords: &mut Vec<String>| {
            let kw = kw.to_ascii_lowercase();
            match keywords.iter().position(|k| *k == kw) {
                Some(i) => {
                    if let Some(v) = kw_triggers.get_mut(i) {
                        v.push(t);
                    }
                }
                None => {
                    keywords.push(kw);
                    kw_triggers.push(vec![t]);
                }
            }
        };
        if !e.secrets.is_empty() {
            for (ri, r) in rules::RULES.iter().enumerate() {
                let idx = e.rules.len();
                e.rules
                    .push(builtin_rule(r, RuleRegex::Builtin(ri), e.secrets.clone()));
                if r.vendor {
                    e.vendor.push((idx, r.keywords));
                }
                if r.literal {
                    for kw in r.case_keywords.unwrap_or(r.keywords) {
                        e.literals.push((
                            memchr::memmem::Finder::new(kw.as_bytes()).into_owned(),
                            Trigger {
                                rule: idx,
                                case: None,
                                word_start: r.word_start,
                                follow: r.follow,
                            },
                        ));
                    }
                    continue;
                }
                for (ki, kw) in r.keywords.iter().enumerate() {
                    let case = r.case_keywords.and_then(|c| c.get(ki).copied());
                    add_kw(
                        kw,
                        Trigger {
                            rule: idx,
                            case,
                            word_start: r.word_start,
                            follow: r.follow,
                        },
                        &mut keywords,
                    );
                }
            }
        }
        for (f, _) in &e.literals {
            if let Some(&b) = f.needle().first()
                && !e.literal_firsts.contains(&b)
            {
                e.literal_firsts.push(b);
            }
        }
        for (li, l) in labels.iter().enumerate() {
            for (pi, p) in l.patterns.iter().enumerate() {
                match compile_bytes_regex(p, true) {
                    Ok(re) => {
                        e.always.push(e.rules.len());
                        e.rules.push(RegexRule {
                            detector: format!("match[{pi}]"),
                            labels: vec![li],
                            regex: RuleRegex::Ready(re),
                            group: Some(0),
                            min_entropy: 0.0,
                            verify: Verify::None,
                            before: 0,
                            after: 0,
                            low_priority: false,
                            builtin: false,
                            allow: Vec::new(),
                        });
                    }
                    Err(m) => errors.push(ScanConfigError {
                        label: l.name.clone(),
                        pattern: Some(pi),
                        message: format!("invalid regex: {m}"),
                    }),
                }
            }
            for g in &l.gitleaks {
                let re = match compile_bytes_regex(&g.regex, false) {
                    Ok(re) => re,
                    Err(m) => {
                        errors.push(ScanConfigError {
                            label: l.name.clone(),
                            pattern: None,
                            message: format!("gitleaks rule `{}`: invalid regex: {m}", g.id),
                        });
                        continue;
                    }
                };
                let mut allow = Vec::new();
                for a in &g.allowlists {
                    let mut regexes = Vec::new();
                    for r in &a.regexes {
                        match compile_bytes_regex(r, false) {
                            Ok(re) => regexes.push(re),
                            Err(m) => errors.push(ScanConfigError {
                                label: l.name.clone(),
                                pattern: None,
                                message: format!(
                                    "gitleaks rule `{}`: invalid allowlist regex: {m}",
                                    g.id
                                ),
                            }),
                        }
                    }
                    allow.push(CompiledAllow {
                        target: a.target,
                        regexes,
                        stopwords: a.stopwords.clone(),
                        and: a.and,
                    });
                }
                let idx = e.rules.len();
                e.rules.push(RegexRule {
                    detector: format!("gitleaks.{}", g.id),
                    labels: vec![li],
                    regex: RuleRegex::Ready(re),
                    group: g.secret_group,
                    min_entropy: g.entropy.unwrap_or(0.0),
                    verify: Verify::None,
                    before: 256,
                    after: 1024,
                    low_priority: false,
                    builtin: false,
                    allow,
                });
                let kws: Vec<&String> = g.keywords.iter().filter(|k| !k.is_empty()).collect();
                if kws.is_empty() {
                    e.always.push(idx);
                } else {
                    for k in kws {
                        add_kw(
                            k,
                            Trigger {
                                rule: idx,
                                case: None,
                                word_start: false,
                                follow: Follow::Any,
                            },
                            &mut keywords,
                        );
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if !keywords.is_empty() {
            // Every occurrence of every keyword is reported (overlapping ones too), so
            // a keyword hidden inside a longer one still triggers its rules.
            let keys = match kwdfa::KwDfa::new(&keywords) {
                Ok(d) => Keywords::Dfa(Box::new(d)),
                Err(kwdfa::TooLarge) => Keywords::Ac(
                    AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .match_kind(MatchKind::Standard)
                        .kind(Some(AhoCorasickKind::DFA))
                        .build(&keywords)
                        .map_err(|err| {
                            vec![ScanConfigError {
                                label: labels.first().map(|l| l.name.clone()).unwrap_or_default(),
                                pattern: None,
                                message: format!("the keyword set cannot be compiled: {err}"),
                            }]
                        })?,
                ),
            };
            e.keys = Some(keys);
            e.keywords = keywords;
            e.triggers = kw_triggers;
        }
        Ok(Scanner { inner: Arc::new(e) })
    }
}

fn builtin_rule(r: &BuiltinRule, re: RuleRegex, labels: Vec<usize>) -> RegexRule {
    RegexRule {
        detector: format!("secrets.{}", r.id),
        labels,
        regex: re,
        group: r.group,
        min_entropy: r.min_entropy,
        verify: r.verify,
        before: r.before,
        after: r.after,
        low_priority: r.low_priority,
        builtin: true,
        allow: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in keyword set must fit the dense multi-stream DFA (16-bit premultiplied
    /// state ids); the aho-corasick fallback costs about a third more per byte.
    #[test]
    fn builtin_keywords_fit_the_dense_dfa() {
        let s = Scanner::new(&[LabelSpec {
            name: "c".into(),
            builtins: vec!["secrets".into()],
            ..LabelSpec::default()
        }])
        .unwrap();
        let e = &s.inner;
        let mut classes = std::collections::BTreeSet::new();
        let mut bytes = 0;
        for k in &e.keywords {
            bytes += k.len();
            classes.extend(k.bytes());
        }
        println!(
            "{} keywords, {bytes} bytes, {} byte classes",
            e.keywords.len(),
            classes.len() + 1
        );
        assert!(
            matches!(e.keys, Some(Keywords::Dfa(_))),
            "the keyword DFA is too large"
        );
    }

    /// Built-in regexes are compiled lazily; a policy's own patterns still are not:
    /// an invalid `match:` regex next to the `secrets` detector fails at load.
    #[test]
    fn lazy_builtins_keep_user_patterns_validated_at_load() {
        let errors = Scanner::new(&[LabelSpec {
            name: "c".into(),
            builtins: vec!["secrets".into()],
            patterns: vec!["(unclosed".into()],
            ..LabelSpec::default()
        }])
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.starts_with("invalid regex"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn every_builtin_regex_compiles() {
        for (i, r) in rules::RULES.iter().enumerate() {
            assert!(builtin_regex(i).is_some(), "{} does not compile", r.id);
            if let Some(c) = r.case_keywords {
                assert_eq!(c.len(), r.keywords.len(), "{}", r.id);
                for (a, b) in c.iter().zip(r.keywords) {
                    assert_eq!(a.to_ascii_lowercase(), *b, "{}", r.id);
                }
            }
            for k in r.keywords {
                assert_eq!(k.to_ascii_lowercase(), *k, "{}", r.id);
            }
        }
    }
}
