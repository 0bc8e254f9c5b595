//! The one display sanitizer of a decision: everything a person reads (reasons'
//! messages, destinations' inputs and pointers) is scrubbed first ([`crate::scrub`])
//! and then cut here — never the other way round, since a cut before scrubbing
//! leaves the start of a secret behind.

use conductor_net::Destination;
use conductor_types::{JsonPath, Segment};

use crate::Reason;

/// Longest value quoted in a message (characters between backticks).
pub(crate) const MAX_QUOTED: usize = 120;
/// Longest message (characters).
pub(crate) const MAX_MESSAGE: usize = 1024;
/// Longest destination input or pointer shown (bytes).
pub(crate) const MAX_SHOWN: usize = 2048;

/// Cut every string of a (scrubbed) decision for display.
// INVARIANT: called only after scrubbing.
pub(crate) fn cut(reasons: &mut [Reason], destinations: &mut [Destination]) {
    for r in reasons {
        cut_message(&mut r.message);
    }
    for d in destinations {
        cut_bytes(&mut d.input, MAX_SHOWN);
        if let Some(p) = &mut d.pointer
            && p.to_pointer().len() > MAX_SHOWN
        {
            *p = cut_path(p);
        }
    }
}

/// Cut each backtick-quoted value to [`MAX_QUOTED`] characters and the message to
/// [`MAX_MESSAGE`] (values in messages are quoted, and their backticks escaped).
pub(crate) fn cut_message(m: &mut String) {
    if m.len() <= MAX_QUOTED && m.chars().count() <= MAX_QUOTED {
        return;
    }
    let mut out = String::with_capacity(m.len().min(MAX_MESSAGE * 4));
    let mut quoted = false;
    let mut in_span = 0usize;
    let mut total = 0usize;
    for c in m.chars() {
        if c == '`' {
            quoted = !quoted;
            in_span = 0;
        } else if quoted {
            in_span += 1;
            if in_span > MAX_QUOTED {
                if in_span == MAX_QUOTED + 1 {
                    out.push('…');
                    total += 1;
                }
                continue;
            }
        }
        if total >= MAX_MESSAGE {
            out.push('…');
            break;
        }
        out.push(c);
        total += 1;
    }
    *m = out;
}

/// Cut `s` to at most `max` bytes at a character boundary, marking the cut with `…`.
/// A path too long to show: each member name cut to [`MAX_QUOTED`] bytes, and at most
/// as many segments as fit in [`MAX_SHOWN`].
fn cut_path(p: &JsonPath) -> JsonPath {
    let mut shown = 0;
    let mut out = Vec::new();
    for seg in p.segments() {
        let seg = match seg {
            Segment::Key(k) => {
                let mut k = k.clone();
                cut_bytes(&mut k, MAX_QUOTED);
                Segment::Key(k)
            }
            other => other.clone(),
        };
        shown += JsonPath::from_segments(vec![seg.clone()])
            .to_pointer()
            .len();
        if shown > MAX_SHOWN {
            out.push(Segment::Key("…".into()));
            break;
        }
        out.push(seg);
    }
    JsonPath::from_segments(out)
}

fn cut_bytes(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
    s.push('…');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_cut_and_the_rest_kept() {
        let long = "x".repeat(500);
        let mut m = format!("`{long}` matches no entry of `destinations.allow`");
        cut_message(&mut m);
        assert_eq!(
            m,
            format!(
                "`{}…` matches no entry of `destinations.allow`",
                "x".repeat(MAX_QUOTED)
            )
        );
        let mut m = "y".repeat(5000);
        cut_message(&mut m);
        assert_eq!(m.chars().count(), MAX_MESSAGE + 1);
        let mut s = "é".repeat(2000);
        cut_bytes(&mut s, 2047);
        assert!(s.len() <= 2047 + '…'.len_utf8() && s.ends_with('…'));
    }
}
