//! The built-in address and name tables behind [`Class`]. Every entry is documented,
//! with its source, in `crates/net/CLASSES.md`; keep the two in step.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Class;
use crate::ip::{Embedding, embedded_ipv4};

/// An IPv4 range of a table: base address, prefix length, class, what it is.
struct V4 {
    base: u32,
    len: u8,
    class: Class,
    what: &'static str,
}

/// An IPv6 range of a table.
struct V6 {
    base: u128,
    len: u8,
    class: Class,
    what: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, class: Class, what: &'static str) -> V4 {
    V4 {
        base: u32::from_be_bytes([a, b, c, d]),
        len,
        class,
        what,
    }
}

const fn v6(segments: [u16; 8], len: u8, class: Class, what: &'static str) -> V6 {
    let [a, b, c, d, e, f, g, h] = segments;
    let base = (a as u128) << 112
        | (b as u128) << 96
        | (c as u128) << 80
        | (d as u128) << 64
        | (e as u128) << 48
        | (f as u128) << 32
        | (g as u128) << 16
        | h as u128;
    V6 {
        base,
        len,
        class,
        what,
    }
}

use Class::{CloudMetadata, LinkLocal, Loopback, Multicast, Private, Reserved, Unspecified};

// INVARIANT: more specific entries (cloud metadata /32s) come first, so that the first
// match names the most specific reason; classification still collects *every* match.
const V4_TABLE: &[V4] = &[
    // Cloud metadata endpoints (CLASSES.md, "cloud-metadata").
    v4(
        169,
        254,
        169,
        254,
        32,
        CloudMetadata,
        "the instance metadata service of AWS, GCP, Azure, Oracle, DigitalOcean, Hetzner, OpenStack and others",
    ),
    v4(
        169,
        254,
        170,
        2,
        32,
        CloudMetadata,
        "the AWS ECS task metadata and credentials endpoint",
    ),
    v4(
        169,
        254,
        170,
        23,
        32,
        CloudMetadata,
        "the AWS EKS Pod Identity agent",
    ),
    v4(168, 63, 129, 16, 32, CloudMetadata, "the Azure WireServer"),
    v4(
        100,
        100,
        100,
        200,
        32,
        CloudMetadata,
        "the Alibaba Cloud metadata service",
    ),
    v4(
        192,
        0,
        0,
        192,
        32,
        CloudMetadata,
        "the Oracle Cloud legacy metadata service",
    ),
    v4(
        169,
        254,
        0,
        23,
        32,
        CloudMetadata,
        "the Tencent Cloud metadata service",
    ),
    v4(
        169,
        254,
        42,
        42,
        32,
        CloudMetadata,
        "the Scaleway metadata service",
    ),
    v4(
        169,
        254,
        169,
        250,
        32,
        CloudMetadata,
        "the Rancher metadata service",
    ),
    // Special-purpose ranges (IANA IPv4 Special-Purpose Address Registry, RFC 6890 and successors).
    v4(0, 0, 0, 0, 32, Unspecified, "the unspecified address"),
    v4(
        0,
        0,
        0,
        0,
        8,
        Unspecified,
        "\"this network\", RFC 791; on Linux 0.0.0.0 reaches the local host",
    ),
    v4(127, 0, 0, 0, 8, Loopback, "loopback, RFC 1122"),
    v4(169, 254, 0, 0, 16, LinkLocal, "link-local, RFC 3927"),
    v4(10, 0, 0, 0, 8, Private, "private-use, RFC 1918"),
    v4(172, 16, 0, 0, 12, Private, "private-use, RFC 1918"),
    v4(192, 168, 0, 0, 16, Private, "private-use, RFC 1918"),
    v4(
        100,
        64,
        0,
        0,
        10,
        Private,
        "shared address space / carrier-grade NAT, RFC 6598",
    ),
    v4(224, 0, 0, 0, 4, Multicast, "multicast, RFC 5771"),
    v4(
        192,
        0,
        0,
        0,
        24,
        Reserved,
        "IETF protocol assignments, RFC 6890",
    ),
    v4(
        192,
        0,
        2,
        0,
        24,
        Reserved,
        "documentation TEST-NET-1, RFC 5737",
    ),
    v4(
        198,
        51,
        100,
        0,
        24,
        Reserved,
        "documentation TEST-NET-2, RFC 5737",
    ),
    v4(
        203,
        0,
        113,
        0,
        24,
        Reserved,
        "documentation TEST-NET-3, RFC 5737",
    ),
    v4(198, 18, 0, 0, 15, Reserved, "benchmarking, RFC 2544"),
    v4(
        192,
        88,
        99,
        0,
        24,
        Reserved,
        "deprecated 6to4 relay anycast, RFC 7526",
    ),
    v4(
        240,
        0,
        0,
        0,
        4,
        Reserved,
        "reserved for future use, RFC 1112",
    ),
    v4(
        255,
        255,
        255,
        255,
        32,
        Reserved,
        "limited broadcast, RFC 919",
    ),
];

const V6_TABLE: &[V6] = &[
    // Cloud metadata endpoints over IPv6.
    v6(
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254],
        128,
        CloudMetadata,
        "the AWS instance metadata service (IPv6)",
    ),
    v6(
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0023],
        128,
        CloudMetadata,
        "the AWS EKS Pod Identity agent (IPv6)",
    ),
    v6(
        [0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x0254],
        128,
        CloudMetadata,
        "the GCP metadata server (IPv6)",
    ),
    v6(
        [0xfd00, 0x0042, 0, 0, 0, 0, 0, 0x0042],
        128,
        CloudMetadata,
        "the Scaleway metadata service (IPv6)",
    ),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0xa9fe, 0xa9fe],
        128,
        CloudMetadata,
        "the OpenStack metadata service (IPv6)",
    ),
    // Special-purpose ranges (IANA IPv6 Special-Purpose Address Registry).
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        128,
        Unspecified,
        "the unspecified address",
    ),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 1],
        128,
        Loopback,
        "loopback, RFC 4291",
    ),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        LinkLocal,
        "link-local, RFC 4291",
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        Private,
        "unique local, RFC 4193",
    ),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        Private,
        "deprecated site-local, RFC 3879",
    ),
    v6(
        [0x0064, 0xff9b, 0x0001, 0, 0, 0, 0, 0],
        48,
        Private,
        "local-use IPv4/IPv6 translation, RFC 8215",
    ),
    v6(
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        Multicast,
        "multicast, RFC 4291",
    ),
    v6(
        [0x2001, 0x0db8, 0, 0, 0, 0, 0, 0],
        32,
        Reserved,
        "documentation, RFC 3849",
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        Reserved,
        "documentation, RFC 9637",
    ),
    v6(
        [0x0100, 0, 0, 0, 0, 0, 0, 0],
        64,
        Reserved,
        "discard-only, RFC 6666",
    ),
    v6(
        [0x0100, 0, 0, 0, 0x0001, 0, 0, 0],
        64,
        Reserved,
        "dummy IPv6 prefix, RFC 9780",
    ),
    v6(
        [0x2001, 0x0002, 0, 0, 0, 0, 0, 0],
        48,
        Reserved,
        "benchmarking, RFC 5180",
    ),
    v6(
        [0x2001, 0x0010, 0, 0, 0, 0, 0, 0],
        28,
        Reserved,
        "deprecated ORCHID, RFC 4843",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        Reserved,
        "IETF protocol assignments, RFC 2928",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        Reserved,
        "segment routing SIDs, RFC 9602",
    ),
];

/// Host names that are blocked by name, without resolution: `(name, class, what)`.
/// Names are canonical (lowercase ASCII, no trailing dot).
const NAMES: &[(&str, Class, &str)] = &[
    (
        "metadata.google.internal",
        CloudMetadata,
        "the GCP metadata server",
    ),
    (
        "metadata",
        CloudMetadata,
        "the GCP metadata server (short name)",
    ),
    ("metadata.goog", CloudMetadata, "a GCP metadata server name"),
    (
        "instance-data",
        CloudMetadata,
        "the AWS instance metadata service",
    ),
    (
        "instance-data.ec2.internal",
        CloudMetadata,
        "the AWS instance metadata service",
    ),
    (
        "metadata.tencentyun.com",
        CloudMetadata,
        "the Tencent Cloud metadata service",
    ),
    (
        "metadata.packet.net",
        CloudMetadata,
        "the Equinix Metal (Packet) metadata service",
    ),
    (
        "metadata.platformequinix.com",
        CloudMetadata,
        "the Equinix Metal metadata service",
    ),
    (
        "api.metadata.cloud.ibm.com",
        CloudMetadata,
        "the IBM Cloud metadata service",
    ),
    (
        "rancher-metadata",
        CloudMetadata,
        "the Rancher metadata service",
    ),
    (
        "metadata.azure.internal",
        CloudMetadata,
        "an Azure metadata name",
    ),
    ("localhost", Loopback, "the loopback host name of RFC 6761"),
    (
        "localhost.localdomain",
        Loopback,
        "a common alias of `localhost`",
    ),
    ("ip6-localhost", Loopback, "a common alias of `localhost`"),
    ("ip6-loopback", Loopback, "a common alias of `localhost`"),
];

/// One reason an address is in a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub class: Class,
    /// What the matching table entry is, e.g. "private-use, RFC 1918".
    pub what: &'static str,
    /// The IPv4 address this hit was found on, when it was carried inside IPv6.
    pub via: Option<(Embedding, Ipv4Addr)>,
}

fn v4_hits(addr: Ipv4Addr, via: Option<(Embedding, Ipv4Addr)>, out: &mut Vec<Hit>) {
    let a = u32::from(addr);
    for e in V4_TABLE {
        let matches = match 32u32.checked_sub(u32::from(e.len)) {
            Some(32) => true,
            Some(shift) => (a ^ e.base).checked_shr(shift).unwrap_or(0) == 0,
            None => false,
        };
        if matches {
            out.push(Hit {
                class: e.class,
                what: e.what,
                via,
            });
        }
    }
}

fn v6_hits(addr: Ipv6Addr, out: &mut Vec<Hit>) {
    let a = u128::from(addr);
    for e in V6_TABLE {
        let matches = match 128u32.checked_sub(u32::from(e.len)) {
            Some(128) => true,
            Some(shift) => (a ^ e.base).checked_shr(shift).unwrap_or(0) == 0,
            None => false,
        };
        if matches {
            out.push(Hit {
                class: e.class,
                what: e.what,
                via: None,
            });
        }
    }
}

/// Every table entry `addr` falls in. An IPv6 address that carries an IPv4 address
/// (mapped, compatible, SIIT, NAT64, 6to4, ISATAP, Teredo) also gets the hits of
/// every IPv4 address it may carry.
pub(crate) fn hits(addr: IpAddr) -> Vec<Hit> {
    let mut out = Vec::new();
    match addr {
        IpAddr::V4(a) => v4_hits(a, None, &mut out),
        IpAddr::V6(a) => {
            v6_hits(a, &mut out);
            for (how, v4) in embedded_ipv4(a) {
                v4_hits(v4, Some((how, v4)), &mut out);
            }
        }
    }
    out
}

/// The classes of an address, sorted and deduplicated.
pub fn classes_of(addr: IpAddr) -> Vec<Class> {
    let mut c: Vec<Class> = hits(addr).into_iter().map(|h| h.class).collect();
    c.sort();
    c.dedup();
    c
}

/// The class and description of a name blocked by name (canonical form), if any.
/// `localhost` and every `*.localhost` name are loopback (RFC 6761 section 6.3).
pub fn name_hit(name: &str) -> Option<(Class, &'static str)> {
    if let Some((_, class, what)) = NAMES.iter().find(|(n, _, _)| *n == name) {
        return Some((*class, what));
    }
    if name.ends_with(".localhost") {
        return Some((Class::Loopback, "a name under `localhost` (RFC 6761)"));
    }
    None
}

/// The human phrase for a class, used in messages.
pub(crate) fn phrase(class: Class) -> &'static str {
    match class {
        Class::CloudMetadata => "a cloud metadata endpoint",
        Class::Loopback => "a loopback address",
        Class::LinkLocal => "a link-local address",
        Class::Private => "a private address",
        Class::Unspecified => "the unspecified address",
        Class::Multicast => "a multicast address",
        Class::Reserved => "a reserved address",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Vec<Class> {
        classes_of(s.parse().unwrap())
    }

    #[test]
    fn metadata_is_also_link_local() {
        assert_eq!(c("169.254.169.254"), vec![CloudMetadata, LinkLocal]);
        assert_eq!(c("168.63.129.16"), vec![CloudMetadata]);
        assert_eq!(c("100.100.100.200"), vec![CloudMetadata, Private]);
        assert_eq!(c("fd00:ec2::254"), vec![CloudMetadata, Private]);
    }

    #[test]
    fn neighbours_are_public() {
        for a in [
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "11.0.0.0",
            "9.255.255.255",
            "126.255.255.255",
            "128.0.0.0",
            "223.255.255.255",
            "168.63.129.17",
            "8.8.8.8",
            "2606:4700::1111",
            "fe7f:ffff::1",
            "fbff::1",
        ] {
            assert!(c(a).is_empty(), "{a} classified as {:?}", c(a));
        }
    }

    #[test]
    fn special_ranges() {
        assert_eq!(c("0.0.0.0"), vec![Unspecified]);
        assert_eq!(c("127.255.0.1"), vec![Loopback]);
        assert_eq!(c("::1"), vec![Loopback]);
        assert_eq!(c("::"), vec![Unspecified]);
        assert_eq!(c("255.255.255.255"), vec![Reserved]);
        assert_eq!(c("239.1.1.1"), vec![Multicast]);
        assert_eq!(c("ff02::1"), vec![Multicast]);
        assert_eq!(c("fe80::1"), vec![LinkLocal]);
        assert_eq!(c("2001:db8::1"), vec![Reserved]);
    }

    #[test]
    fn names() {
        assert_eq!(name_hit("localhost").map(|h| h.0), Some(Loopback));
        assert_eq!(name_hit("a.b.localhost").map(|h| h.0), Some(Loopback));
        assert_eq!(name_hit("notlocalhost"), None);
        assert_eq!(
            name_hit("metadata.google.internal").map(|h| h.0),
            Some(CloudMetadata)
        );
    }
}
