//! The one display sanitizer: everything a person reads (a terminal line, the console,
//! a log message) goes through [`shown`], so that no text from an agent, a tool or a
//! server can move the cursor, recolour the terminal, forge a line, or hide text with
//! bidirectional or zero-width characters.
//!
//! Callers scrub secrets *before* they show a value (a cut must never leave part of a
//! secret behind): [`shown`] only escapes and cuts.

/// Whether `c` must be escaped before a person sees it.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '`' | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// `text` made safe to show: dangerous characters escaped (`\u{1b}`), at most
/// `max_chars` characters of the result kept, `…` marking a cut.
pub fn shown(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut count = 0usize;
    for c in text.chars() {
        let piece: String = if needs_escape(c) {
            c.escape_unicode().collect()
        } else {
            c.to_string()
        };
        let n = piece.chars().count();
        if count + n > max_chars {
            out.push('…');
            return out;
        }
        count += n;
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_and_forged_lines_are_neutralised() {
        // Regression (issue 10, class 10): `audit tail --format human` printed control
        // characters from tool names — terminal escapes and forged lines.
        let evil = "echo\u{1b}[2J\u{1b}]0;owned\u{7}\n2026-01-01  #1 allow  admin  ok\u{202e}txt";
        let s = shown(evil, 200);
        assert!(!s.chars().any(needs_escape), "{s}");
        assert!(s.contains("\\u{1b}") && s.contains("\\u{a}") && s.contains("\\u{202e}"));
    }

    #[test]
    fn cuts_after_escaping_and_marks_the_cut() {
        assert_eq!(shown("abcdef", 3), "abc…");
        assert_eq!(shown("ab", 3), "ab");
        // An escape is never cut in the middle.
        let s = shown("a\u{1b}bc", 4);
        assert_eq!(s, "a…");
    }
}
