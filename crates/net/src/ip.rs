//! IP address spellings: the legacy `inet_aton` IPv4 forms and the IPv4 addresses
//! that IPv6 addresses carry.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// Parse an IPv4 address the way `inet_aton(3)` and the WHATWG URL standard do:
/// one to four parts separated by `.`, each decimal, octal (leading `0`) or hex
/// (`0x`); the last part fills the remaining bytes (`127.1`, `2852039166`); one
/// trailing `.` is allowed. `None` for anything else (including out-of-range parts).
pub fn parse_ipv4_legacy(input: &str) -> Option<Ipv4Addr> {
    let s = input.strip_suffix('.').unwrap_or(input);
    if s.is_empty() || s.len() > 80 {
        return None;
    }
    let mut parts = [0u64; 4];
    let mut n = 0usize;
    for part in s.split('.') {
        let slot = parts.get_mut(n)?;
        *slot = parse_part(part)?;
        n += 1;
    }
    let (last, head) = parts.get(..n)?.split_last()?;
    if head.iter().any(|&p| p > 255) {
        return None;
    }
    // The last part fills 4 - (n - 1) bytes.
    let last_bytes = 5 - n as u32;
    let limit = 1u64 << (8 * last_bytes);
    if *last >= limit {
        return None;
    }
    let mut value: u64 = 0;
    for (i, &p) in head.iter().enumerate() {
        value |= p << (8 * (3 - i as u32));
    }
    value |= *last;
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn parse_part(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(h) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (h, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (part.get(1..)?, 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // `0x` alone is zero (WHATWG, glibc).
        return (radix == 16).then_some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 16 {
        return None;
    }
    if trimmed.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(trimmed, radix).ok()
}

/// How an IPv6 address carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Embedding {
    /// `::ffff:0:0/96` (RFC 4291).
    Mapped,
    /// `::/96`, deprecated (RFC 4291).
    Compatible,
    /// `::ffff:0:0:0/96` (RFC 2765 SIIT).
    Siit,
    /// `64:ff9b::/96` (RFC 6052) — any address in `64:ff9b::/32` is read this way.
    Nat64,
    /// `64:ff9b:1::/48` (RFC 8215), read with every RFC 6052 prefix length that fits.
    Nat64Local,
    /// `2002::/16` (RFC 3056).
    SixToFour,
    /// ISATAP interface identifier `[02]00:5efe:a.b.c.d` under any prefix (RFC 5214).
    Isatap,
    /// Teredo `2001::/32` client address, stored XOR `0xffffffff` (RFC 4380).
    Teredo,
}

impl Embedding {
    /// The name used in messages (`IPv4-mapped`, `6to4`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Embedding::Mapped => "IPv4-mapped",
            Embedding::Compatible => "IPv4-compatible",
            Embedding::Siit => "SIIT",
            Embedding::Nat64 => "NAT64",
            Embedding::Nat64Local => "local-use NAT64",
            Embedding::SixToFour => "6to4",
            Embedding::Isatap => "ISATAP",
            Embedding::Teredo => "Teredo",
        }
    }
}

fn v4_of(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

/// Every IPv4 address `addr` may carry, with how it carries it.
// INVARIANT: when in doubt, read more interpretations, never fewer: each one only adds
// classes, and classes only ever deny.
pub fn embedded_ipv4(addr: Ipv6Addr) -> Vec<(Embedding, Ipv4Addr)> {
    let s = addr.segments();
    let o = addr.octets();
    let mut out = Vec::new();
    let [s0, s1, s2, s3, s4, s5, s6, s7] = s;
    let last = v4_of(s6, s7);
    if s0 == 0 && s1 == 0 && s2 == 0 && s3 == 0 && s4 == 0 && s5 == 0xffff {
        out.push((Embedding::Mapped, last));
    }
    if s0 == 0 && s1 == 0 && s2 == 0 && s3 == 0 && s4 == 0 && s5 == 0 && !(s6 == 0 && s7 <= 1) {
        out.push((Embedding::Compatible, last));
    }
    if s0 == 0 && s1 == 0 && s2 == 0 && s3 == 0 && s4 == 0xffff && s5 == 0 {
        out.push((Embedding::Siit, last));
    }
    if s0 == 0x64 && s1 == 0xff9b {
        if s2 == 1 {
            let [
                _,
                _,
                _,
                _,
                _,
                _,
                o6,
                o7,
                _,
                o9,
                o10,
                o11,
                o12,
                o13,
                o14,
                o15,
            ] = o;
            for v in [
                [o6, o7, o9, o10],    // /48
                [o7, o9, o10, o11],   // /56
                [o9, o10, o11, o12],  // /64
                [o12, o13, o14, o15], // /96
            ] {
                out.push((Embedding::Nat64Local, Ipv4Addr::from(v)));
            }
        } else {
            out.push((Embedding::Nat64, last));
        }
    }
    if s0 == 0x2002 {
        out.push((Embedding::SixToFour, v4_of(s1, s2)));
    }
    if s4 & 0xfcff == 0 && s5 == 0x5efe {
        out.push((Embedding::Isatap, last));
    }
    if s0 == 0x2001 && s1 == 0 {
        out.push((Embedding::Teredo, v4_of(!s6, !s7)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<String> {
        parse_ipv4_legacy(s).map(|a| a.to_string())
    }

    #[test]
    fn legacy_forms() {
        let m = Some("169.254.169.254".to_string());
        assert_eq!(p("2852039166"), m);
        assert_eq!(p("0xa9fea9fe"), m);
        assert_eq!(p("0xA9.0xFE.0xA9.0xFE"), m);
        assert_eq!(p("0251.0376.0251.0376"), m);
        assert_eq!(p("0251.254.43518"), m);
        assert_eq!(p("169.16689662"), m);
        assert_eq!(p("169.254.169.254."), m);
        assert_eq!(p("00000251.0376.0xa9.254"), m);
        assert_eq!(p("127.1"), Some("127.0.0.1".into()));
        assert_eq!(p("0"), Some("0.0.0.0".into()));
        assert_eq!(p("0x"), Some("0.0.0.0".into()));
        assert_eq!(p("1.2.3.4.5"), None);
        assert_eq!(p("256.1.1.1"), None);
        assert_eq!(p("1.2.65536"), None);
        assert_eq!(p("08.1.1.1"), None);
        assert_eq!(p("+1.1.1.1"), None);
        assert_eq!(p("1..1"), None);
        assert_eq!(p("4294967296"), None);
        assert_eq!(p("example.com"), None);
    }

    fn e(s: &str) -> Vec<(Embedding, String)> {
        embedded_ipv4(s.parse().unwrap())
            .into_iter()
            .map(|(k, a)| (k, a.to_string()))
            .collect()
    }

    #[test]
    fn embeddings() {
        let m = "169.254.169.254".to_string();
        assert_eq!(e("::ffff:a9fe:a9fe"), vec![(Embedding::Mapped, m.clone())]);
        assert_eq!(e("::a9fe:a9fe"), vec![(Embedding::Compatible, m.clone())]);
        assert_eq!(e("::ffff:0:a9fe:a9fe"), vec![(Embedding::Siit, m.clone())]);
        assert_eq!(e("64:ff9b::a9fe:a9fe"), vec![(Embedding::Nat64, m.clone())]);
        assert_eq!(
            e("2002:a9fe:a9fe::1"),
            vec![(Embedding::SixToFour, m.clone())]
        );
        assert_eq!(
            e("2001:db8::5efe:a9fe:a9fe"),
            vec![(Embedding::Isatap, m.clone())]
        );
        assert_eq!(
            e("fe80::200:5efe:a9fe:a9fe"),
            vec![(Embedding::Isatap, m.clone())]
        );
        // Teredo: server 65.54.227.120, client 169.254.169.254 obfuscated.
        assert_eq!(
            e("2001:0:4136:e378:8000:63bf:5601:5601"),
            vec![(Embedding::Teredo, m.clone())]
        );
        assert!(e("64:ff9b:1::a9fe:a9fe").contains(&(Embedding::Nat64Local, m.clone())));
        assert!(e("64:ff9b:1:a9fe:a9:fea9::").contains(&(Embedding::Nat64Local, m)));
        assert!(e("::1").is_empty());
        assert!(e("::").is_empty());
        assert!(e("2606:4700::1111").is_empty());
    }
}
