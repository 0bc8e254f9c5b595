//! Import of gitleaks-format rule files (`[[rules]]` with `id`, `regex`, `keywords`,
//! `secretGroup`, `entropy`, and `[[rules.allowlists]]` / global `[allowlist]`).
//!
//! Path-only rules (no `regex`) are skipped: call arguments have no file path.
//! Allowlists that depend on paths or commits are ignored for the same reason
//! (with `condition = "AND"` such an allowlist can never apply, so it is dropped).
//! `[extend]` is not followed: the imported file must be self-contained.

use serde::Deserialize;

/// What an allowlist regex is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllowTarget {
    /// The secret (capture group); gitleaks' default.
    #[default]
    Secret,
    /// The whole regex match.
    Match,
    /// The line the match is on.
    Line,
}

/// One allowlist of a gitleaks rule (global allowlists are merged into every rule).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GitleaksAllowlist {
    /// What the regexes are matched against (`regexTarget`).
    pub target: AllowTarget,
    /// Allowlist regexes (`regexes`), in gitleaks' Go syntax rewritten for Rust.
    pub regexes: Vec<String>,
    /// Lowercase; a secret containing one is allowed.
    pub stopwords: Vec<String>,
    /// `condition = "AND"`: both a regex and a stopword must match (when both are given).
    pub and: bool,
}

/// One rule imported from a gitleaks-format TOML file.
#[derive(Debug, Clone, PartialEq)]
pub struct GitleaksRule {
    /// The rule id, reported as `gitleaks.<id>`.
    pub id: String,
    /// The rule's regex, rewritten from Go RE2 syntax where they differ.
    pub regex: String,
    /// Keywords (lowercase): the regex runs only near one; none: on every string.
    pub keywords: Vec<String>,
    /// `secretGroup`: the capture group that is the secret (`None`: the first that took part).
    pub secret_group: Option<usize>,
    /// Minimum Shannon entropy (bits per byte) of the secret.
    pub entropy: Option<f64>,
    /// The rule's allowlists followed by the file's global ones.
    pub allowlists: Vec<GitleaksAllowlist>,
}

/// A gitleaks file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GitleaksError {
    /// Lowercase message naming the rule (by id or index) and what is wrong.
    pub message: String,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    allowlist: Option<RawAllow>,
    #[serde(default)]
    allowlists: Vec<RawAllow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    id: Option<String>,
    regex: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    secret_group: Option<i64>,
    entropy: Option<f64>,
    #[serde(default)]
    allowlist: Option<RawAllow>,
    #[serde(default)]
    allowlists: Vec<RawAllow>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawAllow {
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    regex_target: Option<String>,
    condition: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
}

fn convert_allow(raw: RawAllow, rule: &str, errors: &mut Vec<String>) -> Option<GitleaksAllowlist> {
    let and = raw
        .condition
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("and"));
    let target = match raw.regex_target.as_deref() {
        None | Some("secret") => AllowTarget::Secret,
        Some("match") => AllowTarget::Match,
        Some("line") => AllowTarget::Line,
        Some(other) => {
            errors.push(format!(
                "{rule}: unknown `regexTarget` `{other}` (expected `secret`, `match` or `line`)"
            ));
            return None;
        }
    };
    let has_path_terms = !raw.paths.is_empty() || !raw.commits.is_empty();
    if has_path_terms && and {
        return None;
    }
    let mut regexes = Vec::new();
    for r in raw.regexes {
        let fixed = go_to_rust_regex(&r);
        match crate::compile_bytes_regex(&fixed, false) {
            Ok(_) => regexes.push(fixed),
            Err(e) => errors.push(format!("{rule}: allowlist regex `{r}` is invalid: {e}")),
        }
    }
    let stopwords: Vec<String> = raw.stopwords.iter().map(|s| s.to_lowercase()).collect();
    if regexes.is_empty() && stopwords.is_empty() {
        return None;
    }
    Some(GitleaksAllowlist {
        target,
        regexes,
        stopwords,
        and,
    })
}

/// Go RE2 accepts a `{` that does not start a repetition as a literal; Rust's regex
/// does not. Escape such braces (outside character classes).
pub(crate) fn go_to_rust_regex(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while let Some(&ch) = chars.get(i) {
        match ch {
            '\\' => {
                out.push('\\');
                if let Some(&n) = chars.get(i + 1) {
                    out.push(n);
                }
                i += 2;
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // A `]` right after `[` or `[^` is literal.
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            '[' if in_class => {
                // Rust nests classes; Go does not (except `[:name:]`).
                if chars.get(i + 1) == Some(&':') {
                    out.push('[');
                } else {
                    out.push_str("\\[");
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' | '-' if in_class && chars.get(i + 1) == Some(&ch) => {
                // `&&`, `~~`, `--` are set operators in Rust classes.
                out.push('\\');
                out.push(ch);
            }
            '{' if !in_class => {
                let mut j = i + 1;
                let d1 = chars
                    .get(j..)
                    .unwrap_or(&[])
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                j += d1;
                if d1 > 0 && chars.get(j) == Some(&',') {
                    j += 1;
                    j += chars
                        .get(j..)
                        .unwrap_or(&[])
                        .iter()
                        .take_while(|c| c.is_ascii_digit())
                        .count();
                }
                if d1 > 0 && chars.get(j) == Some(&'}') {
                    for c in chars.get(i..=j).unwrap_or(&[]) {
                        out.push(*c);
                    }
                    i = j + 1;
                    continue;
                }
                out.push_str("\\{");
            }
            '}' if !in_class => out.push_str("\\}"),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Parse a gitleaks-format rules file (`[[rules]] id/regex/keywords/secretGroup/entropy`).
pub fn parse_gitleaks_toml(text: &str) -> Result<Vec<GitleaksRule>, GitleaksError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| GitleaksError {
        message: format!("not a gitleaks rules file: {}", lower_first(e.message())),
    })?;
    let mut errors = Vec::new();
    let mut global = Vec::new();
    for a in raw.allowlist.into_iter().chain(raw.allowlists) {
        if let Some(a) = convert_allow(a, "global allowlist", &mut errors) {
            global.push(a);
        }
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let name = match &r.id {
            Some(id) => format!("rule `{id}`"),
            None => format!("rule {}", i + 1),
        };
        let Some(id) = r.id.clone() else {
            errors.push(format!("{name} has no `id`"));
            continue;
        };
        let Some(regex) = r.regex else {
            // Path-only rules cannot apply to call arguments.
            continue;
        };
        let fixed = go_to_rust_regex(&regex);
        let groups = match crate::compile_bytes_regex(&fixed, false) {
            Ok(re) => re.captures_len(),
            Err(e) => {
                errors.push(format!("{name}: invalid regex: {e}"));
                continue;
            }
        };
        let secret_group = match r.secret_group {
            None | Some(0) => None,
            Some(g) if g > 0 && (g as usize) < groups => Some(g as usize),
            Some(g) => {
                errors.push(format!(
                    "{name}: `secretGroup` {g} does not exist (the regex has {} groups)",
                    groups.saturating_sub(1)
                ));
                continue;
            }
        };
        if let Some(e) = r.entropy
            && !(0.0..=8.0).contains(&e)
        {
            errors.push(format!("{name}: `entropy` {e} is outside 0 to 8"));
            continue;
        }
        let mut allowlists = Vec::new();
        for a in r.allowlist.into_iter().chain(r.allowlists) {
            if let Some(a) = convert_allow(a, &name, &mut errors) {
                allowlists.push(a);
            }
        }
        allowlists.extend(global.iter().cloned());
        rules.push(GitleaksRule {
            id,
            regex: fixed,
            keywords: r.keywords.iter().map(|k| k.to_lowercase()).collect(),
            secret_group,
            entropy: r.entropy,
            allowlists,
        });
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(GitleaksError {
            message: errors.join("; "),
        })
    }
}

fn lower_first(s: &str) -> String {
    let s = s.trim().trim_end_matches('.');
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_fixed() {
        assert_eq!(
            go_to_rust_regex(r"^\$(?:\d+|{\d+})$"),
            r"^\$(?:\d+|\{\d+\})$"
        );
        assert_eq!(go_to_rust_regex(r"a{2,3}b{4}"), r"a{2,3}b{4}");
        assert_eq!(go_to_rust_regex(r"[{}]x"), r"[{}]x");
    }

    #[test]
    fn parses_rules_and_allowlists() {
        let t = r#"
title = "x"
[allowlist]
stopwords = ["EXAMPLE"]
[[rules]]
id = "demo"
regex = '''demo_([a-z0-9]{8})'''
keywords = ["demo_"]
secretGroup = 1
entropy = 2.5
[[rules.allowlists]]
regexTarget = "match"
regexes = ['''demo_0+''']
[[rules]]
id = "pkcs12"
path = '''\.p12$'''
"#;
        let rules = parse_gitleaks_toml(t).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].secret_group, Some(1));
        assert_eq!(rules[0].allowlists.len(), 2);
        assert_eq!(
            rules[0].allowlists[1].stopwords,
            vec!["example".to_string()]
        );
    }

    #[test]
    fn reports_every_bad_rule() {
        let t = r#"
[[rules]]
id = "a"
regex = '''(unclosed'''
[[rules]]
regex = '''x'''
[[rules]]
id = "c"
regex = '''c(x)'''
secretGroup = 3
"#;
        let e = parse_gitleaks_toml(t).unwrap_err().message;
        assert!(e.contains("rule `a`: invalid regex"), "{e}");
        assert!(e.contains("rule 2 has no `id`"), "{e}");
        assert!(e.contains("`secretGroup` 3"), "{e}");
    }
}
