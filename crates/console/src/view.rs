//! Server-rendered HTML: escaping, the page frame, badges.
//!
//! INVARIANT: every text that came from outside (agents, tools, servers, the store, the
//! query string) reaches the page through [`text`] (the one display sanitizer, then
//! HTML escaping) or [`attr`]; no page holds inline script or style, so the CSP can
//! forbid both.

use std::fmt::Write as _;

/// The path every console page lives under.
pub const BASE: &str = "/console";

/// Longest text shown in a table cell (longer text is cut and marked).
pub const CELL: usize = 200;

/// `s` made safe for HTML text and attribute values (after the display sanitizer).
pub fn text(s: &str) -> String {
    text_max(s, 4000)
}

/// [`text`] with another length bound.
pub fn text_max(s: &str, max: usize) -> String {
    // The sanitizer escapes backticks for terminals; in HTML they are plain text (and
    // messages use them to quote input), so they are shown as themselves.
    escape(&conductor_types::display::shown(s, max).replace("\\u{60}", "`"))
}

/// `s` escaped for a double-quoted attribute value (not cut: ids, tokens, urls we build).
pub fn attr(s: &str) -> String {
    escape(s)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A percent-encoded query value.
pub fn q(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A badge for a decision or status.
pub fn badge(kind: &str) -> String {
    let class = match kind {
        "allow" | "approved" | "intact" => "ok",
        "deny" | "denied" | "broken" => "bad",
        "approve" | "pending" => "wait",
        "expired" | "revoked" => "muted",
        _ => "muted",
    };
    format!(
        "<span class=\"badge badge-{class}\">{}</span>",
        text_max(kind, 40)
    )
}

/// Which page of the header is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Approvals,
    Audit,
    Sessions,
    Chain,
    None,
}

/// Who is logged in (for the header) and the CSRF token of the logout form.
pub struct Who<'a> {
    pub approver: &'a str,
    pub csrf: &'a str,
}

/// A whole page.
pub fn page(title: &str, nav: Nav, who: Option<&Who<'_>>, body: &str) -> String {
    let mut h = String::with_capacity(body.len() + 2048);
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(h, "<title>{} · Conductor</title>", text(title));
    let _ = write!(
        h,
        "<link rel=\"stylesheet\" href=\"{BASE}/assets/console.css\">\
         <script src=\"{BASE}/assets/console.js\" defer></script></head><body>"
    );
    h.push_str("<header class=\"top\"><a class=\"brand\" href=\"");
    h.push_str(BASE);
    h.push_str("/\"><span class=\"logo\">◆</span> Conductor</a>");
    if let Some(w) = who {
        h.push_str("<nav>");
        for (n, href, label) in [
            (Nav::Approvals, "approvals", "Approvals"),
            (Nav::Audit, "audit", "Audit"),
            (Nav::Sessions, "sessions", "Sessions"),
            (Nav::Chain, "chain", "Chain"),
        ] {
            let cur = if n == nav {
                " class=\"current\" aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(h, "<a href=\"{BASE}/{href}\"{cur}>{label}</a>");
            if n == Nav::Approvals {
                h.push_str("<span id=\"pending-count\" class=\"count\" hidden></span>");
            }
        }
        h.push_str("</nav>");
        let _ = write!(
            h,
            "<div class=\"who\"><span class=\"live\" id=\"live\" title=\"live updates\">●</span> \
             <span class=\"approver\">{}</span>\
             <form method=\"post\" action=\"{BASE}/logout\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" class=\"link\">Log out</button></form></div>",
            text(w.approver),
            attr(w.csrf)
        );
    }
    h.push_str("</header><main id=\"main\">");
    h.push_str(body);
    h.push_str(
        "</main><footer>Conductor — every call decided before it happens</footer></body></html>\n",
    );
    h
}

/// `<pre>` of pretty JSON (already redacted by whoever stored it), sanitized.
pub fn json_block(v: &serde_json::Value) -> String {
    let s = serde_json::to_string_pretty(v).unwrap_or_default();
    // Newlines and indentation are ours; every other control character is escaped.
    let lines: Vec<String> = s.lines().map(|l| text_max(l, 2000)).collect();
    format!("<pre class=\"json\">{}</pre>", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_controls_are_escaped() {
        let s = text("<script>alert(1)</script>\u{1b}[2J\"'&");
        assert!(!s.contains('<') && !s.contains('"') && !s.contains('\u{1b}'));
        assert!(s.contains("&lt;script&gt;") && s.contains("&amp;"));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(q("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
