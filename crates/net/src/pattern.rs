//! `allow` / `deny` / egress patterns: `[scheme://]host[:port]` where host is `*`, a
//! name, a name glob (`*.github.com`, `api-*.example.com`), an IP address or a CIDR.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::Destination;
use crate::canon::{Host, canonical_host_text, safe};
use crate::ip::{Embedding, embedded_ipv4};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPat {
    /// `*`: any host.
    Any,
    /// An exact canonical name.
    Name(String),
    /// `*.suffix`: any name with at least one label before `.suffix` (not the apex).
    Subdomains(String),
    /// Labels with `*` inside (`api-*.example.com`); `*` never crosses a dot.
    Labels(Vec<String>),
    /// An IP address.
    Ip(IpAddr),
    /// A CIDR block.
    Net(IpNet),
}

/// How strictly a pattern matches what is not known about a destination (no scheme,
/// no port, several addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// For `allow` and egress: an unknown port does not match a pattern's port, and an
    /// address pattern must hold for *every* address.
    Strict,
    /// For `deny`: an unknown port matches, and *any* address matching is enough.
    Loose,
}

impl HostPat {
    pub(crate) fn needs_addresses(&self) -> bool {
        matches!(self, HostPat::Ip(_) | HostPat::Net(_))
    }
}

fn parse_host(host: &str, pattern: &str) -> Result<HostPat, String> {
    if host == "*" {
        return Ok(HostPat::Any);
    }
    if host.is_empty() {
        return Err(format!("`{}` has no host", safe(pattern)));
    }
    if let Some(bad) = host.chars().find(|c| {
        matches!(
            c,
            '?' | '[' | ']' | '{' | '}' | '!' | '/' | '\\' | '@' | ' '
        )
    }) {
        return Err(format!(
            "`{}` contains `{bad}`, which patterns do not support",
            safe(pattern)
        ));
    }
    if let Some(rest) = host.strip_prefix("*.")
        && !rest.contains('*')
    {
        return match canonical_host_text(rest) {
            Ok(Host::Name(n)) => Ok(HostPat::Subdomains(n)),
            Ok(Host::Ip(_)) => Err(format!(
                "`{}`: `*.` cannot precede an IP address",
                safe(pattern)
            )),
            Err(e) => Err(format!("`{}`: {e}", safe(pattern))),
        };
    }
    if host.contains('*') {
        if host.contains("**") {
            return Err(format!(
                "`{}` contains `**`; use `*.` for any subdomain",
                safe(pattern)
            ));
        }
        let lower = host.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        if !lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*'))
        {
            return Err(format!(
                "`{}`: a host glob must be ASCII (write IDNs in punycode)",
                safe(pattern)
            ));
        }
        return Ok(HostPat::Labels(
            lower.split('.').map(str::to_string).collect(),
        ));
    }
    match canonical_host_text(host) {
        Ok(Host::Name(n)) => Ok(HostPat::Name(n)),
        Ok(Host::Ip(a)) => Ok(HostPat::Ip(a)),
        Err(e) => Err(format!("`{}`: {e}", safe(pattern))),
    }
}

fn glob_label(pat: &str, label: &str) -> bool {
    // Iterative `*` matching within one label.
    let parts: Vec<&str> = pat.split('*').collect();
    let Some((first, rest)) = parts.split_first() else {
        return false;
    };
    let Some(mut remaining) = label.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for m in middle {
        match remaining.find(m) {
            Some(i) => remaining = remaining.get(i + m.len()..).unwrap_or(""),
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// The addresses an address pattern is checked against: the address itself and, for an
/// IPv4-mapped IPv6 address, the IPv4 address (they are the same socket destination).
fn address_forms(a: IpAddr) -> impl Iterator<Item = IpAddr> {
    let mapped = match a {
        IpAddr::V6(v6) => embedded_ipv4(v6)
            .into_iter()
            .find(|(how, _)| *how == Embedding::Mapped)
            .map(|(_, v4)| IpAddr::V4(v4)),
        IpAddr::V4(_) => None,
    };
    std::iter::once(a).chain(mapped)
}

/// One `allow`/`deny`/egress pattern: optional scheme, host glob or CIDR, optional port.
#[derive(Debug, Clone)]
pub struct DestPattern {
    raw: String,
    pub(crate) scheme: Option<String>,
    pub(crate) host: HostPat,
    port: Option<u16>,
}

impl DestPattern {
    /// Parse a pattern such as `https://*.github.com`, `*.internal`, `198.51.100.0/24`, `*`.
    /// The error is lowercase, quotes the pattern in backticks and says what is wrong.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let p = pattern.trim();
        if p.is_empty() {
            return Err("the pattern is empty".into());
        }
        let (scheme, rest) = match p.split_once("://") {
            Some((s, rest)) => {
                let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
                if !ok {
                    return Err(format!("`{}` has an invalid scheme `{}`", safe(p), safe(s)));
                }
                (Some(s.to_ascii_lowercase()), rest)
            }
            None => (None, p),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // CIDR: `10.0.0.0/8`, `fd00::/8`, `[fd00::]/8`.
        if let Some((net, len)) = rest.rsplit_once('/') {
            let len: u8 = len.parse().map_err(|_| {
                format!(
                    "`{}`: patterns match hosts, not paths (a CIDR looks like `10.0.0.0/8`)",
                    safe(p)
                )
            })?;
            let addr_text = net.trim_start_matches('[').trim_end_matches(']');
            let addr: IpAddr = match addr_text.parse() {
                Ok(a) => a,
                Err(_) => {
                    return Err(format!(
                        "`{}`: `{}` is not an IP address",
                        safe(p),
                        safe(net)
                    ));
                }
            };
            let block = IpNet::new(addr, len)
                .map_err(|_| format!("`{}`: prefix length {len} is too long", safe(p)))?;
            if block.trunc() != block {
                return Err(format!(
                    "`{}` has host bits set; did you mean `{}`",
                    safe(p),
                    block.trunc()
                ));
            }
            return Ok(DestPattern {
                raw: p.to_string(),
                scheme,
                host: HostPat::Net(block),
                port: None,
            });
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let Some((addr, after)) = inner.split_once(']') else {
                return Err(format!("`{}` has an unclosed `[`", safe(p)));
            };
            let port = match after {
                "" => None,
                a => Some(
                    a.strip_prefix(':')
                        .ok_or_else(|| format!("`{}` has text after `]`", safe(p)))?,
                ),
            };
            let a: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{}`: `{}` is not an IPv6 address", safe(p), safe(addr)))?;
            (HostPat::Ip(a), port)
        } else if rest.matches(':').count() >= 2 {
            let a: IpAddr = rest
                .parse()
                .map_err(|_| format!("`{}` is not a host, IPv6 address or CIDR", safe(p)))?;
            (HostPat::Ip(a), None)
        } else {
            match rest.split_once(':') {
                Some((h, port)) => (parse_host(h, p)?, Some(port)),
                None => (parse_host(rest, p)?, None),
            }
        };
        let port = match port {
            None => None,
            Some(text) => Some(
                text.parse::<u16>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("`{}` has an invalid port `{}`", safe(p), safe(text)))?,
            ),
        };
        Ok(DestPattern {
            raw: p.to_string(),
            scheme,
            host,
            port,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether the (already canonicalized and resolved) destination matches: scheme
    /// (a destination without scheme matches `http` and `https` patterns), port (an
    /// unknown port matches only patterns without a port) and host (names by glob;
    /// address patterns must hold for every address, IPv4-mapped IPv6 included).
    pub fn matches(&self, dest: &Destination) -> bool {
        self.matches_mode(dest, Mode::Strict)
    }

    /// Whether the host part is an address or a CIDR block: then it matches a name
    /// only through the name's addresses.
    pub fn needs_addresses(&self) -> bool {
        self.host.needs_addresses()
    }

    /// Whether the pattern could match `dest` (a name whose addresses are not known
    /// yet) once its addresses are known: an address pattern whose scheme and port
    /// match.
    pub fn may_match_once_resolved(&self, dest: &Destination) -> bool {
        self.host.needs_addresses() && self.matches_scheme_port(dest, Mode::Strict)
    }

    pub(crate) fn matches_mode(&self, dest: &Destination, mode: Mode) -> bool {
        self.matches_scheme_port(dest, mode) && self.matches_host(dest, mode)
    }

    pub(crate) fn matches_scheme_port(&self, dest: &Destination, mode: Mode) -> bool {
        let scheme_ok = match &self.scheme {
            None => true,
            Some(s) if dest.scheme.is_empty() => mode == Mode::Loose || s == "http" || s == "https",
            Some(s) => *s == dest.scheme,
        };
        let port_ok = match (self.port, dest.port) {
            (None, _) => true,
            (Some(p), Some(d)) => p == d,
            (Some(_), None) => mode == Mode::Loose,
        };
        scheme_ok && port_ok
    }

    /// Host part only; address patterns look at `dest.addresses`.
    pub(crate) fn matches_host(&self, dest: &Destination, mode: Mode) -> bool {
        let host = dest.host.as_str();
        // Canonical hosts: IPv6 text has a `:`, IPv4 text is digits and dots, and a
        // canonical name is neither (its last label is never numeric).
        let is_ip = host.contains(':') || host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        match &self.host {
            HostPat::Any => true,
            HostPat::Name(n) => !is_ip && host == n,
            HostPat::Subdomains(suffix) => {
                !is_ip
                    && host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes().get(host.len() - suffix.len() - 1) == Some(&b'.')
            }
            HostPat::Labels(labels) => {
                !is_ip
                    && host.split('.').count() == labels.len()
                    && host.split('.').zip(labels).all(|(l, p)| glob_label(p, l))
            }
            HostPat::Ip(a) => self.addresses_match(dest, mode, |x| x == *a),
            HostPat::Net(n) => self.addresses_match(dest, mode, |x| n.contains(&x)),
        }
    }

    fn addresses_match(&self, dest: &Destination, mode: Mode, f: impl Fn(IpAddr) -> bool) -> bool {
        let one = |a: &IpAddr| address_forms(*a).any(&f);
        match mode {
            Mode::Strict => !dest.addresses.is_empty() && dest.addresses.iter().all(one),
            Mode::Loose => dest.addresses.iter().any(one),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(scheme: &str, host: &str, port: Option<u16>, addrs: &[&str]) -> Destination {
        Destination {
            input: String::new(),
            pointer: None,
            scheme: scheme.into(),
            host: host.into(),
            port,
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            classes: vec![],
        }
    }

    fn m(p: &str, dest: &Destination) -> bool {
        DestPattern::parse(p).unwrap().matches(dest)
    }

    #[test]
    fn globs() {
        let api = d("https", "api.github.com", Some(443), &["140.82.112.6"]);
        let apex = d("https", "github.com", Some(443), &["140.82.112.3"]);
        assert!(m("*.github.com", &api));
        assert!(!m("*.github.com", &apex));
        assert!(m("https://*.github.com", &api));
        assert!(!m("http://*.github.com", &api));
        assert!(m("https://api.github.com:443", &api));
        assert!(!m("https://api.github.com:8443", &api));
        assert!(m(
            "api-*.github.com",
            &d("https", "api-v3.github.com", Some(443), &[])
        ));
        assert!(!m(
            "api-*.github.com",
            &d("https", "x.api-v3.github.com", Some(443), &[])
        ));
        assert!(!m(
            "*.github.com",
            &d("https", "evilgithub.com", Some(443), &[])
        ));
        assert!(m("*", &api));
        assert!(m("API.GitHub.com.", &api));
    }

    #[test]
    fn addresses() {
        let one = d("http", "x.example", Some(80), &["198.51.100.7"]);
        let two = d("http", "x.example", Some(80), &["198.51.100.7", "10.0.0.1"]);
        let mapped = d(
            "http",
            "::ffff:198.51.100.7",
            Some(80),
            &["::ffff:198.51.100.7"],
        );
        assert!(m("198.51.100.0/24", &one));
        assert!(!m("198.51.100.0/24", &two));
        assert!(
            DestPattern::parse("10.0.0.0/8")
                .unwrap()
                .matches_mode(&two, Mode::Loose)
        );
        assert!(m("198.51.100.0/24", &mapped));
        assert!(m("198.51.100.7", &one));
        assert!(m("[::ffff:198.51.100.7]", &mapped));
    }

    #[test]
    fn bare_hosts() {
        let bare = d("", "api.github.com", None, &[]);
        assert!(m("https://api.github.com", &bare));
        assert!(!m("gopher://api.github.com", &bare));
        assert!(!m("api.github.com:443", &bare));
    }

    #[test]
    fn errors() {
        for p in [
            "",
            "10.0.0.1/8",
            "example.com/path",
            "ex?mple.com",
            "ftp://",
            "a.com:99999",
            "a.com:0",
            "**.a.com",
            "1.2.3.4/33",
            "[::1",
            "h%%s://x",
        ] {
            assert!(DestPattern::parse(p).is_err(), "{p}");
        }
    }
}
