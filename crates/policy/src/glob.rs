//! The glob dialect of tool names (and of `when: {glob: …}` constraints).
//!
//! - `*` matches any sequence of characters, **including `.`** and `/`: globs are
//!   over whole qualified names, so `fetch.*` matches `fetch.fetch`, `*.delete_*`
//!   matches `github.delete_repo`, and `*` matches every tool;
//! - `?` matches exactly one character;
//! - `\` makes the next character literal (`\*`, `\?`, `\\`); a trailing lone `\`
//!   is an error;
//! - every other character matches itself, case-sensitively; there are no
//!   character classes or braces (`[`, `{` are literal);
//! - the glob must match the whole name.

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    matcher: Matcher,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    /// No wildcard at all.
    Exact(String),
    /// `literal*`
    Prefix(String),
    /// `*literal`
    Suffix(String),
    /// `*`
    Any,
    General(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(String),
    Star,
    One,
}

/// Why a glob does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("a glob cannot be empty")]
    Empty,
    #[error("the glob `{0}` ends in a lone `\\`; write `\\\\` for a literal backslash")]
    TrailingEscape(String),
}

impl Glob {
    pub fn new(source: &str) -> Result<Glob, GlobError> {
        if source.is_empty() {
            return Err(GlobError::Empty);
        }
        let mut tokens: Vec<Token> = Vec::new();
        let mut chars = source.chars();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::One),
                '\\' => match chars.next() {
                    Some(n) => push_lit(&mut tokens, n),
                    None => return Err(GlobError::TrailingEscape(source.to_string())),
                },
                c => push_lit(&mut tokens, c),
            }
        }
        let matcher = match tokens.as_slice() {
            [] => Matcher::Exact(String::new()),
            [Token::Lit(l)] => Matcher::Exact(l.clone()),
            [Token::Star] => Matcher::Any,
            [Token::Lit(l), Token::Star] => Matcher::Prefix(l.clone()),
            [Token::Star, Token::Lit(l)] => Matcher::Suffix(l.clone()),
            _ => Matcher::General(tokens),
        };
        Ok(Glob {
            source: source.to_string(),
            matcher,
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// `Some(name)` when the glob has no wildcard (it names exactly one thing).
    pub fn literal(&self) -> Option<&str> {
        match &self.matcher {
            Matcher::Exact(s) => Some(s),
            _ => None,
        }
    }

    /// The server id every name this glob matches must have, when the glob starts
    /// with a literal `<server>.` (server ids match `[a-z0-9_-]+` and contain no
    /// `.`, so the first `.` of a qualified name ends the server id).
    pub fn server(&self) -> Option<&str> {
        let lit = match &self.matcher {
            Matcher::Exact(s) | Matcher::Prefix(s) => s.as_str(),
            Matcher::General(t) => match t.first() {
                Some(Token::Lit(l)) => l.as_str(),
                _ => return None,
            },
            Matcher::Suffix(_) | Matcher::Any => return None,
        };
        let (server, _) = lit.split_once('.')?;
        let valid = !server.is_empty()
            && server
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        valid.then_some(server)
    }

    /// Number of literal characters: a measure of specificity (more is more specific).
    pub fn literal_len(&self) -> usize {
        match &self.matcher {
            Matcher::Exact(s) | Matcher::Prefix(s) | Matcher::Suffix(s) => s.chars().count(),
            Matcher::Any => 0,
            Matcher::General(t) => t
                .iter()
                .map(|t| match t {
                    Token::Lit(l) => l.chars().count(),
                    Token::One => 0,
                    Token::Star => 0,
                })
                .sum(),
        }
    }

    /// Whether `text` matches the whole glob.
    pub fn matches(&self, text: &str) -> bool {
        match &self.matcher {
            Matcher::Exact(s) => s == text,
            Matcher::Prefix(p) => text.starts_with(p.as_str()),
            Matcher::Suffix(s) => text.ends_with(s.as_str()),
            Matcher::Any => true,
            Matcher::General(tokens) => general_match(tokens, text),
        }
    }
}

fn push_lit(tokens: &mut Vec<Token>, c: char) {
    if let Some(Token::Lit(l)) = tokens.last_mut() {
        l.push(c);
    } else {
        tokens.push(Token::Lit(c.to_string()));
    }
}

/// Byte length of the character starting at byte `i` of `text` (1 when out of range).
fn char_len_at(text: &str, i: usize) -> usize {
    text.get(i..)
        .and_then(|s| s.chars().next())
        .map_or(1, char::len_utf8)
}

/// Classic single-backtrack wildcard matching: linear in practice, O(n·m) worst case.
fn general_match(tokens: &[Token], text: &str) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(tok) = tokens.get(p) {
            match tok {
                Token::Star => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                Token::Lit(l) => {
                    if text
                        .get(t..)
                        .is_some_and(|rest| rest.starts_with(l.as_str()))
                    {
                        t += l.len();
                        p += 1;
                        continue;
                    }
                }
                Token::One => {
                    if t < text.len() {
                        t += char_len_at(text, t);
                        p += 1;
                        continue;
                    }
                }
            }
        } else if t >= text.len() {
            return true;
        }
        match star {
            Some((sp, st)) if st < text.len() => {
                let nt = st + char_len_at(text, st);
                star = Some((sp, nt));
                p = sp + 1;
                t = nt;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(g: &str, t: &str) -> bool {
        Glob::new(g).unwrap().matches(t)
    }

    #[test]
    fn star_crosses_dots() {
        assert!(m("fetch.*", "fetch.fetch"));
        assert!(m("*.delete_*", "github.delete_repo"));
        assert!(!m("*.delete_*", "github.remove_repo"));
        assert!(m("*", "a.b.c"));
        assert!(m("fetch*", "fetcher.x"));
        assert!(!m("fetch.*", "fetch"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(m("a*b*c", "abbbc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("*a*", "xxax"));
    }

    #[test]
    fn question_and_escape() {
        assert!(m("git?ub.x", "github.x"));
        assert!(!m("git?ub.x", "gitub.x"));
        assert!(m("é?.x", "éé.x"));
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axb"));
        assert!(m(r"a\\b", r"a\b"));
        assert!(m(r"a\?", "a?"));
        assert!(!m(r"a\?", "ab"));
        assert!(Glob::new(r"a\").is_err());
        assert!(Glob::new("").is_err());
        assert!(m("[ab]", "[ab]"));
    }

    #[test]
    fn server_prefix() {
        assert_eq!(Glob::new("github.*").unwrap().server(), Some("github"));
        assert_eq!(Glob::new("github.a*b").unwrap().server(), Some("github"));
        assert_eq!(Glob::new("git*.x").unwrap().server(), None);
        assert_eq!(Glob::new("*.x").unwrap().server(), None);
        assert_eq!(Glob::new("Git.x*").unwrap().server(), None);
        assert_eq!(Glob::new("g?t.x").unwrap().server(), None);
    }

    #[test]
    fn specificity() {
        assert!(
            Glob::new("github.*").unwrap().literal_len() > Glob::new("*").unwrap().literal_len()
        );
        assert_eq!(Glob::new("a.b").unwrap().literal(), Some("a.b"));
        assert_eq!(Glob::new(r"a\*").unwrap().literal(), Some("a*"));
    }

    fn reference(glob: &str, text: &str) -> bool {
        let mut re = String::from("^");
        let mut chars = glob.chars();
        while let Some(c) = chars.next() {
            match c {
                '*' => re.push_str("(?s:.*)"),
                '?' => re.push_str("(?s:.)"),
                '\\' => re.push_str(&regex::escape(&chars.next().unwrap().to_string())),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        regex::Regex::new(&re).unwrap().is_match(text)
    }

    proptest::proptest! {
        /// The matcher agrees with a regex translation of the same glob.
        #[test]
        fn agrees_with_a_regex_reference(
            glob in "([ab.é*?]|\\\\[*?ab]){1,8}",
            text in "[ab.é*?]{0,10}",
        ) {
            let g = Glob::new(&glob).unwrap();
            proptest::prop_assert_eq!(g.matches(&text), reference(&glob, &text), "glob {:?} text {:?}", glob, text);
        }
    }
}
