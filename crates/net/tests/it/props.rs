//! Property tests: canonicalization is idempotent; every spelling of an IPv4 address
//! classifies (and is decided) the same.

use std::net::{IpAddr, Ipv4Addr};

use conductor_net::{Host, canonicalize, classes_of};
use proptest::prelude::*;

use crate::common::{Fixed, eval_url, policy, rules};

/// One part of a legacy IPv4 spelling, in a random base, case and zero padding.
fn spell_part(value: u32, base: u8, upper: bool, pad: usize) -> String {
    let zeros = "0".repeat(pad);
    match base {
        8 => format!("0{zeros}{value:o}"),
        16 => {
            let x = if upper { "0X" } else { "0x" };
            let digits = if upper {
                format!("{value:X}")
            } else {
                format!("{value:x}")
            };
            format!("{x}{zeros}{digits}")
        }
        _ => format!("{value}"),
    }
}

/// A spelling of `addr` with `parts` parts (the last fills the remaining bytes).
fn spell(
    addr: u32,
    parts: usize,
    bases: &[u8],
    upper: bool,
    pad: usize,
    trailing_dot: bool,
) -> String {
    let b = addr.to_be_bytes();
    let head = parts - 1;
    let mut out: Vec<String> = Vec::new();
    for (i, byte) in b.iter().take(head).enumerate() {
        out.push(spell_part(
            u32::from(*byte),
            bases[i % bases.len()],
            upper,
            pad,
        ));
    }
    let mut last: u32 = 0;
    for byte in &b[head..] {
        last = (last << 8) | u32::from(*byte);
    }
    out.push(spell_part(last, bases[head % bases.len()], upper, pad));
    let mut s = out.join(".");
    if trailing_dot {
        s.push('.');
    }
    s
}

/// Map ASCII digits, letters and dots to their full-width forms (UTS 46 maps them back).
fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '.' => '\u{FF0E}',
            c if c.is_ascii_alphanumeric() => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap(),
            c => c,
        })
        .collect()
}

fn percent_encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02x}")).collect()
}

fn interesting_addr() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        Just(u32::from(Ipv4Addr::new(169, 254, 169, 254))),
        Just(u32::from(Ipv4Addr::new(127, 0, 0, 1))),
        Just(u32::from(Ipv4Addr::new(100, 100, 100, 200))),
        Just(u32::from(Ipv4Addr::new(168, 63, 129, 16))),
        (0u32..=0xffff).prop_map(|x| u32::from(Ipv4Addr::new(169, 254, 0, 0)) | x),
        (0u32..=0xffffff).prop_map(|x| u32::from(Ipv4Addr::new(10, 0, 0, 0)) | x),
        (0u32..=0xffffff).prop_map(|x| u32::from(Ipv4Addr::new(127, 0, 0, 0)) | x),
        Just(0u32),
        Just(u32::MAX),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_ipv4_spelling_classifies_the_same(
        addr in interesting_addr(),
        parts in 1usize..=4,
        bases in proptest::collection::vec(prop_oneof![Just(8u8), Just(10u8), Just(16u8)], 4),
        upper in any::<bool>(),
        pad in 0usize..3,
        trailing_dot in any::<bool>(),
        wrap in 0u8..5,
    ) {
        let spelled = spell(addr, parts, &bases, upper, pad, trailing_dot);
        let host = match wrap {
            1 => full_width(&spelled),
            2 => percent_encode_all(&spelled),
            3 => {
                let a = Ipv4Addr::from(addr);
                // Mapped IPv6, hex form: [::ffff:a9fe:a9fe].
                let [o0, o1, o2, o3] = a.octets();
                format!("[::ffff:{:x}:{:x}]", u16::from_be_bytes([o0, o1]), u16::from_be_bytes([o2, o3]))
            }
            4 => format!("user:pw@{spelled}"),
            _ => spelled.clone(),
        };
        let url = format!("http://{host}/x");
        let c = canonicalize(&url).unwrap();
        let want_ip = IpAddr::V4(Ipv4Addr::from(addr));
        let got_ip = match c.host.clone().unwrap() {
            Host::Ip(IpAddr::V6(v6)) => IpAddr::V4(v6.to_ipv4_mapped().unwrap()),
            Host::Ip(ip) => ip,
            Host::Name(n) => panic!("`{url}` read as the name `{n}`"),
        };
        prop_assert_eq!(got_ip, want_ip, "{}", url);
        prop_assert!(c.mismatch.is_none(), "{}: {:?}", url, c.mismatch);
        let classes = classes_of(c.host.as_ref().map(|h| match h { Host::Ip(ip) => *ip, Host::Name(_) => unreachable!() }).unwrap());
        prop_assert_eq!(&classes, &classes_of(want_ip), "{}", url);
        // And the decision is the same as for the dotted-quad spelling.
        let p = policy(&["*"], &[], &[]);
        let r = Fixed::default();
        prop_assert_eq!(
            rules(&eval_url(&p, &url, &r)),
            rules(&eval_url(&p, &format!("http://{}/x", Ipv4Addr::from(addr)), &r)),
            "{}", url
        );
    }

    #[test]
    fn canonicalization_is_idempotent(input in prop_oneof![
        // Structured URL-ish strings.
        (
            prop_oneof![Just(""), Just("http://"), Just("https://"), Just("gopher://"), Just("//"), Just("HTTP://"), Just("ws://"), Just("ftp://")],
            prop_oneof![Just(""), Just("user@"), Just("u:p@"), Just("a@b@")],
            prop_oneof![
                "[a-zA-Z0-9.-]{1,20}",
                "[0-9]{1,10}",
                "0x[0-9a-f]{1,8}",
                "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
                "\\[[0-9a-f:.]{2,30}\\]",
                "[a-z\u{00e0}-\u{00ff}\u{ff10}-\u{ff19}\u{2460}-\u{2473}\u{3002}.]{1,12}",
                "(%[0-9a-f]{2}){1,6}",
            ],
            prop_oneof![Just(String::new()), (0u32..70000).prop_map(|p| format!(":{p}"))],
            prop_oneof![Just(""), Just("/"), Just("/a?b#c"), Just("\\x"), Just("#@evil")],
        ).prop_map(|(s, u, h, p, t)| format!("{s}{u}{h}{p}{t}")),
        // Anything at all.
        "\\PC{0,40}",
    ]) {
        if let Ok(c) = canonicalize(&input)
            && c.host.is_some()
            && c.mismatch.is_none()
        {
                let again_text = c.to_canonical_string();
                let again = canonicalize(&again_text);
                prop_assert!(again.is_ok(), "`{}` → `{}` does not parse: {:?}", input, again_text, again);
                let again = again.unwrap();
                prop_assert_eq!(&again.scheme, &c.scheme, "`{}` → `{}`", input, again_text);
                prop_assert_eq!(&again.host, &c.host, "`{}` → `{}`", input, again_text);
                prop_assert_eq!(again.port, c.port, "`{}` → `{}`", input, again_text);
                prop_assert!(again.mismatch.is_none(), "`{}` → `{}`: {:?}", input, again_text, again.mismatch);
                prop_assert_eq!(again.to_canonical_string(), again_text);
        }
    }

    /// Whatever the input, evaluation never panics and an error never allows.
    #[test]
    fn garbage_never_allows_silently(input in "\\PC{0,60}") {
        let p = policy(&["*"], &[], &[]);
        let o = eval_url(&p, &input, &Fixed::default());
        // A declared destination that is not a well-formed http(s) URL of a public
        // address is denied; one that is allowed has a host and an address.
        if o.violations.is_empty() {
            for d in &o.destinations {
                prop_assert!(!d.host.is_empty() && !d.addresses.is_empty(), "{:?}", d);
                prop_assert!(d.classes.is_empty(), "{:?}", d);
            }
        }
    }

    /// A userinfo password never reaches a message or a destination's `input`.
    #[test]
    fn passwords_never_shown(
        prefix in prop_oneof![Just("http://"), Just("https://"), Just("//"), Just(""), Just("gopher://"), Just("HTTP:\\\\")],
        host in "[a-z0-9.:\\[\\] %-]{0,20}",
        tail in "[/?#@a-z ]{0,10}",
    ) {
        let input = format!("{prefix}user:S3CR3TPW@{host}{tail}");
        let p = policy(&["*"], &[], &[]);
        let o = eval_url(&p, &input, &Fixed::default());
        for v in &o.violations {
            prop_assert!(!v.message.contains("S3CR3TPW"), "{}: {}", input, v.message);
        }
        for d in &o.destinations {
            prop_assert!(!d.input.contains("S3CR3TPW"), "{}: {}", input, d.input);
        }
    }
}
