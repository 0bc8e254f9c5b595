//! Canonicalization of one destination string.
//!
//! The string is parsed twice: the WHATWG way (the `url` crate: what browsers and most
//! modern HTTP stacks do) and the RFC 3986 way (a small parser here: what curl, Python's
//! `urllib`, Go's `net/url` and most hand-written splitters do — authority ends at the
//! first `/`, `?` or `#`, backslash is an ordinary character, tabs and newlines are
//! kept). Both hosts then go through the same host canonicalization (percent-decoding,
//! UTS 46 mapping, legacy `inet_aton` IPv4 spellings, trailing dot). Where the two
//! readings differ on host or port the caller denies: that is the gap allowlist
//! bypasses live in (Orange Tsai, "A New Era of SSRF", Black Hat USA 2017).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::ip::parse_ipv4_legacy;

/// Inputs longer than this are not parsed (and so are denied).
pub const MAX_INPUT: usize = 8192;

/// A canonical host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP address (any spelling of it in the input).
    Ip(IpAddr),
    /// A domain name: lowercase ASCII (punycode), no trailing dot, never all-numeric.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(a) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// One destination string, canonicalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// Lowercase scheme; empty when the input had none (a bare host or `//host`).
    pub scheme: String,
    /// `None` for URLs without a host (`file:///…`, `mailto:…`, `data:…`).
    pub host: Option<Host>,
    /// Explicit port, or the scheme's default port (`http` 80, `https` 443, `ws` 80,
    /// `wss` 443, `ftp` 21); `None` when neither is known.
    pub port: Option<u16>,
    /// An IPv6 zone id that was present (and removed), e.g. `eth0`.
    pub zone: Option<String>,
    /// Set when the RFC 3986 reading disagrees with the WHATWG one: what it read.
    pub mismatch: Option<String>,
    /// How the input named its scheme (for [`Canonical::written`]).
    form: Form,
}

/// How to show the origin of a canonicalized input, as written (see [`Origin::written`]).
#[derive(Debug, Clone, Copy)]
pub struct Origin(Form);

impl Origin {
    /// The origin as written in `input` (the string that was canonicalized): scheme,
    /// host and port, no userinfo, path or query (they may carry secrets), made safe for
    /// messages (control characters escaped, truncated).
    pub fn written(self, input: &str) -> String {
        let s = input.trim_matches(|c: char| c <= ' ');
        written_origin(s, &self.0)
    }
}

impl Canonical {
    /// See [`Origin::written`].
    pub fn written(&self, input: &str) -> String {
        self.origin().written(input)
    }

    /// What [`Canonical::written`] needs, without borrowing `self`.
    pub fn origin(&self) -> Origin {
        Origin(self.form)
    }

    /// The canonical text: `scheme://host[:port]/`, or `host[:port]` without a scheme.
    /// Canonicalizing this text gives back the same scheme, host and port.
    pub fn to_canonical_string(&self) -> String {
        let host = match &self.host {
            Some(Host::Ip(IpAddr::V6(a))) => format!("[{a}]"),
            Some(h) => h.to_string(),
            None => String::new(),
        };
        let port = match self.port {
            Some(p) if Some(p) != default_port(&self.scheme) => format!(":{p}"),
            _ => String::new(),
        };
        if self.scheme.is_empty() {
            // `//host:port`, not `host:port`: a host named like a scheme (`data:80`)
            // must not read as one.
            if port.is_empty() {
                host
            } else {
                format!("//{host}{port}")
            }
        } else if self.host.is_none() {
            format!("{}:", self.scheme)
        } else {
            format!("{}://{host}{port}/", self.scheme)
        }
    }
}

/// Why a destination string could not be canonicalized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    /// Nothing but whitespace.
    #[error("it is empty")]
    Empty,
    /// Longer than [`MAX_INPUT`].
    #[error("it is longer than {MAX_INPUT} bytes")]
    TooLong,
    /// No URL parser reads it as a URL or host (the parser's reason).
    #[error("it is not a valid URL or host ({0})")]
    Invalid(String),
}

/// The default port of a scheme, where the WHATWG URL standard defines one.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Schemes that are always read as a scheme, even in `scheme:1234` (otherwise read as
/// `host:port`).
const KNOWN_SCHEMES: &[&str] = &[
    "http",
    "https",
    "ws",
    "wss",
    "ftp",
    "file",
    "gopher",
    "dict",
    "ldap",
    "ldaps",
    "tftp",
    "sftp",
    "ssh",
    "telnet",
    "smb",
    "jar",
    "netdoc",
    "mailto",
    "data",
    "javascript",
    "redis",
    "mysql",
    "postgres",
    "postgresql",
    "mongodb",
    "ftps",
    "imap",
    "pop3",
    "smtp",
    "rtsp",
];

/// How the input names its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `scheme:…`; the string is parsed as it is.
    Scheme,
    /// `//host…` (or with backslashes); parsed after `http:`, reported without scheme.
    Relative,
    /// `host[:port][/…]`; parsed after `http://`, reported without scheme.
    Bare,
    /// A bare IPv6 address (`fd00:ec2::254`, `fe80::1%eth0`).
    BareV6,
}

fn form_of(s: &str) -> Form {
    if let Some(colon) = s.find(':') {
        let (scheme, after) = s.split_at(colon);
        let after = after.get(1..).unwrap_or("");
        if is_scheme(scheme) {
            if after.starts_with(['/', '\\'])
                || KNOWN_SCHEMES.iter().any(|k| k.eq_ignore_ascii_case(scheme))
            {
                return Form::Scheme;
            }
            // `example.com:8080`, `localhost:6379/0`: a host and a port.
            let port_end = after.find(['/', '?', '#']).unwrap_or(after.len());
            let port = after.get(..port_end).unwrap_or("");
            if port.bytes().all(|b| b.is_ascii_digit()) {
                return Form::Bare;
            }
            return Form::Scheme;
        }
    }
    let b = s.as_bytes();
    if matches!(b, [b'/' | b'\\', b'/' | b'\\', ..]) {
        Form::Relative
    } else {
        Form::Bare
    }
}

/// Canonicalize one destination string: a URL (`scheme:…`), a scheme-relative
/// reference (`//host/…`) or a bare host (`host`, `host:port`, `[v6]:port`, `v6`).
pub fn canonicalize(input: &str) -> Result<Canonical, CanonError> {
    if input.len() > MAX_INPUT {
        return Err(CanonError::TooLong);
    }
    // WHATWG: strip leading and trailing C0 controls and spaces.
    let s = input.trim_matches(|c: char| c <= ' ');
    if s.is_empty() {
        return Err(CanonError::Empty);
    }
    // A bare IPv6 address, possibly with a zone id: `fd00:ec2::254`, `fe80::1%eth0`.
    if s.contains(':') && !s.contains(['/', '[']) {
        let (addr, zone) = match s.split_once('%') {
            Some((a, z)) => (a, Some(z)),
            None => (s, None),
        };
        if let Ok(a) = addr.parse::<Ipv6Addr>() {
            return Ok(Canonical {
                scheme: String::new(),
                host: Some(Host::Ip(IpAddr::V6(a))),
                port: None,
                zone: zone.map(percent_decode_lossy),
                mismatch: None,
                form: Form::BareV6,
            });
        }
    }
    let form = form_of(s);
    if form == Form::Scheme
        && let Some(c) = simple_http(s)
    {
        return Ok(c);
    }
    general(s, form)
}

/// Canonicalization without the fast path (for the property test that checks it).
#[cfg(test)]
fn canonicalize_general(input: &str) -> Result<Canonical, CanonError> {
    let s = input.trim_matches(|c: char| c <= ' ');
    general(s, form_of(s))
}

/// The general path: WHATWG parse (the `url` crate), RFC 3986 parse, compare.
fn general(s: &str, form: Form) -> Result<Canonical, CanonError> {
    let prefixed: std::borrow::Cow<'_, str> = match form {
        Form::Scheme => std::borrow::Cow::Borrowed(s),
        Form::Relative => std::borrow::Cow::Owned(format!("http:{s}")),
        Form::Bare | Form::BareV6 => std::borrow::Cow::Owned(format!("http://{s}")),
    };
    let (text, zone) = strip_zone(&prefixed);
    let url =
        url::Url::parse(authority_prefix(&text)).map_err(|e| CanonError::Invalid(e.to_string()))?;
    let scheme = match form {
        Form::Scheme => url.scheme().to_string(),
        _ => String::new(),
    };
    let host = match url.host() {
        None => None,
        Some(url::Host::Ipv4(a)) => Some(Host::Ip(IpAddr::V4(a))),
        Some(url::Host::Ipv6(a)) => Some(Host::Ip(IpAddr::V6(a))),
        Some(url::Host::Domain("")) => None,
        // Opaque hosts of non-special schemes (`gopher://0x7f.1/`) are not canonicalized
        // by the URL standard, but the tool's resolver will read them like this.
        Some(url::Host::Domain(d)) => {
            Some(canonical_host_text(d).map_err(|e| CanonError::Invalid(format!("host: {e}")))?)
        }
    };
    // The second reading.
    let parse_scheme = url.scheme();
    let rfc = rfc3986_host_port(&text, url.host_str().zip(host.as_ref()));
    let w_port = url.port_or_known_default();
    let port = if scheme.is_empty() {
        // Only an explicit port counts for a bare host (the WHATWG reading drops `:80`).
        match &rfc {
            Rfc::Parsed { port, .. } => *port,
            _ => url.port(),
        }
    } else {
        w_port
    };
    let mismatch = match (&host, &rfc) {
        (None, Rfc::NoAuthority) => None,
        (Some(h), Rfc::Parsed { host: rh, port: rp })
            if h == rh && w_port == rp.or_else(|| default_port(parse_scheme)) =>
        {
            None
        }
        (_, Rfc::Parsed { host: rh, port: rp }) => Some(match rp {
            Some(p) => format!("host `{}` port {p}", safe(&rh.to_string())),
            None => format!("host `{}`", safe(&rh.to_string())),
        }),
        (
            _,
            Rfc::BadUserinfo {
                host: rh,
                port: rp,
                why,
            },
        ) => Some(match rp {
            Some(p) => format!("host `{}` port {p} ({why})", safe(&rh.to_string())),
            None => format!("host `{}` ({why})", safe(&rh.to_string())),
        }),
        (_, Rfc::NoAuthority) => Some("no host at all".to_string()),
        (_, Rfc::Invalid(why)) => Some(format!("no valid host ({why})")),
    };
    Ok(Canonical {
        scheme,
        host,
        port,
        zone,
        mismatch,
        form,
    })
}

/// The commonest destination — `http://` or `https://`, a lowercase LDH host name, an
/// optional port, then nothing or a path, query or fragment — read without the general
/// parsers. For exactly these strings both readings are the text itself: UTS 46 maps
/// lowercase ASCII letters, digits, `-` and `.` to themselves, there is no userinfo,
/// percent-escape, bracket, backslash, tab or newline that a parser could treat
/// differently, and a last label that is not numeric keeps it from being an IPv4 address.
/// Anything else returns `None` and takes the general path.
// INVARIANT: `simple_http(s) == Some(c)` implies the general path gives `c` too; the
// property test `simple_http_agrees_with_the_parsers` checks it.
fn simple_http(s: &str) -> Option<Canonical> {
    let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
        ("https", r)
    } else {
        ("http", s.strip_prefix("http://")?)
    };
    let b = rest.as_bytes();
    let end = b
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#' | b'\\'))
        .unwrap_or(b.len());
    if b.get(end) == Some(&b'\\') || b.iter().any(|&c| matches!(c, b'\t' | b'\n' | b'\r')) {
        return None;
    }
    let authority = rest.get(..end)?;
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let hb = host.as_bytes();
    // An IPv4 spelling (digits, hex, dots): the URL standard's IPv4 parser and
    // `parse_ipv4_legacy` are the same algorithm; when it fails, the general path decides.
    if !hb.is_empty()
        && hb
            .iter()
            .all(|&c| c.is_ascii_hexdigit() || matches!(c, b'.' | b'x' | b'X'))
    {
        let addr = parse_ipv4_legacy(host)?;
        return Some(Canonical {
            scheme: scheme.to_string(),
            host: Some(Host::Ip(IpAddr::V4(addr))),
            port: simple_port(scheme, port)?,
            zone: None,
            mismatch: None,
            form: Form::Scheme,
        });
    }
    let ldh = !hb.is_empty()
        && hb
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && hb.first() != Some(&b'.')
        && hb.last() != Some(&b'.')
        && !hb.windows(2).any(|w| w == b"..");
    if !ldh || host.starts_with("xn--") || hb.windows(5).any(|w| w == b".xn--") {
        return None;
    }
    let last = host.rsplit('.').next().unwrap_or(host);
    let numeric = last.bytes().all(|c| c.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
    if numeric {
        return None;
    }
    Some(Canonical {
        scheme: scheme.to_string(),
        host: Some(Host::Name(host.to_string())),
        port: simple_port(scheme, port)?,
        zone: None,
        mismatch: None,
        form: Form::Scheme,
    })
}

/// The port of [`simple_http`]: `Some(port)` (explicit or default), or `None` when the
/// text is not a plain port (the general path decides then).
#[expect(
    clippy::option_option,
    reason = "outer: fast path applies; inner: the port"
)]
fn simple_port(scheme: &str, port: Option<&str>) -> Option<Option<u16>> {
    match port {
        None | Some("") => Some(default_port(scheme)),
        Some(p) if p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()) => p
            .parse::<u32>()
            .ok()
            .and_then(|n| u16::try_from(n).ok())
            .map(Some),
        Some(_) => None,
    }
}

/// Remove an IPv6 zone id (`%25eth0`, `%eth0`) from the first bracketed host, which
/// the URL standard rejects but curl and `getaddrinfo` accept.
fn strip_zone(s: &str) -> (std::borrow::Cow<'_, str>, Option<String>) {
    if let Some(open) = s.find('[')
        && let Some(close_rel) = s.get(open..).and_then(|r| r.find(']'))
    {
        let close = open + close_rel;
        if let Some(inner) = s.get(open..close)
            && let Some(pct) = inner.find('%')
        {
            let zone_raw = inner.get(pct + 1..).unwrap_or("");
            let zone = percent_decode_lossy(zone_raw.strip_prefix("25").unwrap_or(zone_raw));
            let mut out = String::with_capacity(s.len());
            out.push_str(s.get(..open + pct).unwrap_or(""));
            out.push_str(s.get(close..).unwrap_or(""));
            return (std::borrow::Cow::Owned(out), Some(zone));
        }
    }
    (std::borrow::Cow::Borrowed(s), None)
}

/// Percent-decode bytes (`%XX`; a `%` not followed by two hex digits stays as it is).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|x| (*x as char).to_digit(16)),
                b.get(i + 2).and_then(|x| (*x as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn percent_decode_lossy(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode(s)).into_owned()
}

/// Canonicalize a host as text (not bracketed): percent-decoding, UTS 46 (IDNA)
/// mapping with the URL standard's forbidden code points, one trailing dot removed,
/// legacy IPv4 spellings. Names whose last label is numeric but that are not IPv4
/// addresses are rejected, as the URL standard does.
pub fn canonical_host_text(raw: &str) -> Result<Host, String> {
    let decoded = if raw.contains('%') {
        std::borrow::Cow::Owned(
            String::from_utf8(percent_decode(raw))
                .map_err(|_| "the host percent-decodes to invalid UTF-8".to_string())?,
        )
    } else {
        std::borrow::Cow::Borrowed(raw)
    };
    if let Some(inner) = decoded.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let addr = inner.split('%').next().unwrap_or(inner);
        return addr
            .parse::<Ipv6Addr>()
            .map(|a| Host::Ip(IpAddr::V6(a)))
            .map_err(|_| format!("`{}` is not an IPv6 address", safe(inner)));
    }
    // Fast path: plain lowercase LDH names (and IPv4 spellings) need no UTS 46 pass.
    // INVARIANT: the fast path only takes strings UTS 46 maps to themselves: ASCII
    // lowercase letters, digits, `-`, `_`, `.`, and no `xn--` label (those are checked).
    let plain = !decoded.is_empty()
        && decoded.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
        && !decoded.starts_with("xn--")
        && !decoded.as_bytes().windows(5).any(|w| w == b".xn--");
    let ascii = if plain {
        std::borrow::Cow::Borrowed(decoded.as_ref())
    } else {
        idna::domain_to_ascii_cow(decoded.as_bytes(), idna::AsciiDenyList::URL)
            .map_err(|_| format!("`{}` is not a valid host name", safe(&decoded)))?
    };
    if ascii.is_empty() {
        return Err("the host is empty".into());
    }
    if let Some(a) = parse_ipv4_legacy(&ascii) {
        return Ok(Host::Ip(IpAddr::V4(a)));
    }
    let name = ascii.strip_suffix('.').unwrap_or(&ascii);
    if name.is_empty()
        || name.ends_with('.')
        || name.starts_with('.')
        || name.as_bytes().windows(2).any(|w| w == b"..")
    {
        return Err(format!("`{}` has an empty label", safe(&ascii)));
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return Err(format!(
            "`{}` ends in a number but is not an IPv4 address",
            safe(name)
        ));
    }
    Ok(Host::Name(name.to_string()))
}

enum Rfc {
    NoAuthority,
    Parsed {
        host: Host,
        port: Option<u16>,
    },
    /// A host, but after a userinfo that is not RFC 3986 userinfo (some parsers stop
    /// there, others split elsewhere): never a clean agreement.
    BadUserinfo {
        host: Host,
        port: Option<u16>,
        why: String,
    },
    Invalid(String),
}

/// The RFC 3986 reading of `s` (which starts with a scheme): authority after `//`,
/// up to the first `/`, `?` or `#`; userinfo up to the last `@`; port after the first
/// `:` outside brackets. The port is the explicit one, if any.
fn rfc3986_host_port(s: &str, whatwg: Option<(&str, &Host)>) -> Rfc {
    let Some((_, rest)) = s.split_once(':') else {
        return Rfc::NoAuthority;
    };
    let Some(rest) = rest.strip_prefix("//") else {
        return Rfc::NoAuthority;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or("");
    if authority.matches('@').count() > 1 {
        return Rfc::Invalid("more than one `@` in the authority".into());
    }
    let mut userinfo_bad: Option<String> = None;
    let hostport = match authority.rfind('@') {
        Some(at) => {
            userinfo_bad = userinfo_problem(authority.get(..at).unwrap_or(""));
            authority.get(at + 1..).unwrap_or("")
        }
        None => authority,
    };
    let (host_raw, port_raw) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(close) => {
                let after = hostport.get(close + 1..).unwrap_or("");
                let host = hostport.get(..=close).unwrap_or("");
                match after.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None if after.is_empty() => (host, None),
                    None => return Rfc::Invalid("text after `]`".into()),
                }
            }
            None => return Rfc::Invalid("unclosed `[`".into()),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host_raw.is_empty() {
        return Rfc::NoAuthority;
    }
    let port = match port_raw {
        None | Some("") => None,
        Some(p) => {
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return Rfc::Invalid(format!("port `{}` is not a number", safe(p)));
            }
            match p.trim_start_matches('0') {
                "" => Some(0),
                t => match t.parse::<u16>() {
                    Ok(n) => Some(n),
                    Err(_) => return Rfc::Invalid("port out of range".into()),
                },
            }
        }
    };
    // The same text canonicalizes the same way: reuse the WHATWG side's work.
    let host = match whatwg {
        Some((text, host)) if text == host_raw => Ok(host.clone()),
        _ => canonical_host_text(host_raw),
    };
    match (host, userinfo_bad) {
        (Ok(host), None) => Rfc::Parsed { host, port },
        (Ok(host), Some(why)) => Rfc::BadUserinfo { host, port, why },
        (Err(e), _) => Rfc::Invalid(e),
    }
}

/// The prefix of `text` up to the end of its authority, for the WHATWG parse: the path,
/// query and fragment cannot change the scheme, host or port, and parsing them is most
/// of the work. Only for the special schemes other than `file` and only when `text` has
/// no tab or newline (which the URL standard removes wherever they are); otherwise all
/// of `text`.
// INVARIANT: the cut is at the first `/`, `\`, `?` or `#` after the slashes that follow
// the scheme — exactly where the URL standard's authority state ends for these schemes.
fn authority_prefix(text: &str) -> &str {
    if text.bytes().any(|b| matches!(b, b'\t' | b'\n' | b'\r')) {
        return text;
    }
    let Some(colon) = text.find(':') else {
        return text;
    };
    let scheme = text.get(..colon).unwrap_or("");
    if !["http", "https", "ws", "wss", "ftp"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(scheme))
    {
        return text;
    }
    let after = text.get(colon + 1..).unwrap_or("");
    let slashes = after.len() - after.trim_start_matches(['/', '\\']).len();
    let authority = after.get(slashes..).unwrap_or("");
    match authority.find(['/', '\\', '?', '#']) {
        // The URL standard trims trailing spaces and C0 controls from the whole input:
        // a cut just after one would make the parser drop it, so do not cut there.
        Some(end)
            if authority
                .get(..end)
                .is_some_and(|a| !a.ends_with(|c: char| c <= ' ')) =>
        {
            text.get(..colon + 1 + slashes + end).unwrap_or(text)
        }
        _ => text,
    }
}

/// Why a userinfo is not RFC 3986 userinfo, if it is not: characters outside
/// `unreserved / pct-encoded / sub-delims / ":"` (non-ASCII is allowed, as in IRIs), or
/// a percent-encoded delimiter that a parser which decodes first would split on.
fn userinfo_problem(userinfo: &str) -> Option<String> {
    if let Some(c) = userinfo
        .chars()
        .find(|&c| c.is_ascii() && !(c.is_ascii_alphanumeric() || "-._~%!$&'()*+,;=:".contains(c)))
    {
        let shown = if c.is_ascii_graphic() {
            c.to_string()
        } else {
            c.escape_unicode().to_string()
        };
        return Some(format!("the userinfo contains `{shown}`"));
    }
    let lower = userinfo.to_ascii_lowercase();
    for enc in ["%2f", "%5c", "%3f", "%23"] {
        if lower.contains(enc) {
            return Some(format!("the userinfo hides a delimiter as `{enc}`"));
        }
    }
    None
}

/// The origin as written (for messages): scheme, host and port; no userinfo, path,
/// query or fragment (they may carry secrets).
fn written_origin(s: &str, form: &Form) -> String {
    let (prefix, rest) = match form {
        Form::Scheme => match s.split_once(':') {
            Some((scheme, rest)) => {
                let trimmed = rest.trim_start_matches(['/', '\\']);
                if trimmed.len() == rest.len() {
                    // No authority (`mailto:`, `data:`): the scheme says enough.
                    return safe(&format!("{scheme}:"));
                }
                (Some(scheme), trimmed)
            }
            None => (None, s),
        },
        Form::Relative => (Some(""), s.trim_start_matches(['/', '\\'])),
        Form::Bare => (None, s),
        Form::BareV6 => return safe(s),
    };
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or("");
    let hostport = match authority.rfind('@') {
        Some(at) => authority.get(at + 1..).unwrap_or(""),
        None => authority,
    };
    let mut out = String::with_capacity(hostport.len() + 16);
    if let Some(scheme) = prefix {
        if !scheme.is_empty() {
            out.push_str(scheme);
            out.push(':');
        }
        out.push_str("//");
    }
    out.push_str(hostport);
    if !matches!(form, Form::Bare) {
        out.push('/');
    }
    if out.len() <= 120 && out.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'`') {
        out
    } else {
        safe(&out)
    }
}

/// Escape control and other invisible characters (and backticks), for messages.
pub fn safe(s: &str) -> String {
    // Not cut here: a cut before scrubbing could leave part of a secret behind. The
    // decision core scrubs every string a person reads first, then cuts it.
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control()
            || c == '`'
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{feff}')
        {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> String {
        let c = canonicalize(s).unwrap();
        c.host.map(|h| h.to_string()).unwrap_or_default()
    }

    #[test]
    fn ipv4_spellings() {
        for s in [
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://169.254.169.254./",
            "http://%31%36%39.254.169.254/",
            "http://１６９．２５４．１６９．２５４/",
            "http://169。254。169。254/",
            "http://⑯⑨.②⑤④.⑯⑨.②⑤④/",
            "169.254.169.254",
            "2852039166",
            "//169.254.169.254/latest",
            "http://user:pass@169.254.169.254:80/",
            "gopher://0xa9fea9fe:70/_x",
        ] {
            assert_eq!(host(s), "169.254.169.254", "{s}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(host("http://LOCALHOST./"), "localhost");
        assert_eq!(host("http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/"), "localhost");
        assert_eq!(host("http://bücher.example/"), "xn--bcher-kva.example");
        assert_eq!(host("example.com:8080"), "example.com");
        assert_eq!(canonicalize("example.com:8080").unwrap().port, Some(8080));
        assert_eq!(canonicalize("example.com").unwrap().port, None);
        assert_eq!(canonicalize("https://example.com").unwrap().port, Some(443));
    }

    #[test]
    fn ipv6() {
        assert_eq!(host("http://[::ffff:a9fe:a9fe]/"), "::ffff:169.254.169.254");
        assert_eq!(host("fd00:ec2::254"), "fd00:ec2::254");
        let c = canonicalize("http://[fe80::a9fe:a9fe%25eth0]/").unwrap();
        assert_eq!(c.host.unwrap().to_string(), "fe80::a9fe:a9fe");
        assert_eq!(c.zone.as_deref(), Some("eth0"));
        assert!(c.mismatch.is_none());
    }

    #[test]
    fn parser_differentials() {
        for s in [
            "http://evil.example\\@169.254.169.254/",
            "http://169.254.169.254:80\\@good.example/",
            "http://a@b@169.254.169.254/",
            "http:\\\\169.254.169.254\\",
            "http://169.254.169.2\t54/",
            "https:example.com",
        ] {
            let c = canonicalize(s).unwrap();
            assert!(c.mismatch.is_some(), "{s}: {c:?}");
        }
        for s in [
            "https://example.com/a\\b",
            "http://user:pw@example.com:8080/x?y#z",
            "http://google.com#@169.254.169.254/",
            "http://[::1]:80/",
            "file:///etc/passwd",
            "mailto:a@example.com",
            "example.com",
        ] {
            let c = canonicalize(s).unwrap();
            assert!(c.mismatch.is_none(), "{s}: {c:?}");
        }
    }

    #[test]
    fn written_has_no_userinfo_or_path() {
        assert_eq!(
            canonicalize("http://u:secret@2852039166/latest?x=1")
                .unwrap()
                .written("http://u:secret@2852039166/latest?x=1"),
            "http://2852039166/"
        );
        assert_eq!(
            canonicalize("example.com:81/x")
                .unwrap()
                .written("example.com:81/x"),
            "example.com:81"
        );
    }

    proptest::proptest! {
        /// Parsing only up to the end of the authority gives the WHATWG parser's own
        /// answer for scheme, host and port (or its own failure).
        #[test]
        fn authority_prefix_changes_nothing(
            scheme in "(http|HTTPS|ws|wss|ftp|gopher|file)",
            sep in "[:/\\\\]{1,4}",
            rest in "[a-z0-9.@:%\\[\\]/\\\\?#\t\n\r\x00\x01\x1f \u{a0}\u{3000}\u{ff0e}-]{0,30}",
        ) {
            let text = format!("{scheme}{sep}{rest}");
            let full = url::Url::parse(&text);
            let cut = url::Url::parse(authority_prefix(&text));
            match (full, cut) {
                (Ok(a), Ok(b)) => {
                    proptest::prop_assert_eq!(a.scheme(), b.scheme());
                    proptest::prop_assert_eq!(a.host_str(), b.host_str(), "{}", text);
                    proptest::prop_assert_eq!(a.port(), b.port(), "{}", text);
                }
                (Err(_), Err(_)) => {}
                (a, b) => proptest::prop_assert!(false, "`{}`: {:?} vs {:?}", text, a, b),
            }
        }
    }

    use proptest::prelude::prop_oneof;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..Default::default() })]
        /// The fast path answers exactly what the general path answers.
        #[test]
        fn simple_http_agrees_with_the_parsers(
            scheme in "(http|https|HTTP|ftp)://",
            host in prop_oneof![
                "[a-z0-9.-]{0,12}(\\.(com|0x1f|12|xn--bcher-kva|-|))?",
                "[0-9a-fA-FxX.]{0,14}",
                "((0[xX][0-9a-fA-F]{0,3}|0[0-7]{0,4}|[0-9]{1,4})\\.){0,4}(0[xX][0-9a-fA-F]{0,9}|0[0-7]{0,12}|[0-9]{1,11})\\.?",
            ],
            port in "(:[0-9]{0,6})?",
            rest in "[/?#\\\\@a-z%]{0,6}",
        ) {
            let text = format!("{scheme}{host}{port}{rest}");
            if let Some(fast) = simple_http(&text) {
                let slow = canonicalize_general(&text);
                proptest::prop_assert_eq!(Ok(fast), slow, "{}", text);
            }
        }
    }

    #[test]
    fn unparseable() {
        for s in [
            "",
            "   ",
            "http://",
            "http://1.2.3.4.5/",
            "http://256.0.0.1/",
            "http://a b/",
            "http://[::1/",
        ] {
            assert!(canonicalize(s).is_err(), "{s}");
        }
    }
}
