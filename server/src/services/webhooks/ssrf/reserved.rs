//! Which addresses are not public: the IANA special-purpose registries as tables of
//! networks, each row naming the kind of address it holds, and the classification of an
//! address against them (an IPv6 address that embeds an IPv4 one is judged as that too).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// The kind of non-public address a table row stands for; its `Display` is the phrase a
/// refusal uses ("a private address").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    Unspecified,
    ThisNetwork,
    Loopback,
    Private,
    SharedCgnat,
    LinkLocal,
    ProtocolAssignments,
    Documentation,
    SixToFourRelay,
    Benchmarking,
    Multicast,
    Broadcast,
    FutureUse,
    UniqueLocal,
    SiteLocal,
    Discard,
    LocalNat64,
    Teredo,
    NotGlobalUnicast,
}

impl std::fmt::Display for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "the unspecified address",
            Self::ThisNetwork => "an address of the \"this network\" block 0.0.0.0/8",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::SharedCgnat => "a shared (carrier-grade NAT) address",
            Self::LinkLocal => "a link-local address",
            Self::ProtocolAssignments => "an address reserved for IETF protocol assignments",
            Self::Documentation => "a documentation address",
            Self::SixToFourRelay => "a 6to4 relay anycast address",
            Self::Benchmarking => "a benchmarking address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::FutureUse => "an address reserved for future use",
            Self::UniqueLocal => "a unique-local address",
            Self::SiteLocal => "a site-local address",
            Self::Discard => "a discard-only address",
            Self::LocalNat64 => "a local-use NAT64 address",
            Self::Teredo => "a Teredo address",
            Self::NotGlobalUnicast => "an address outside the global unicast space",
        })
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// IPv4 networks that are not public (IANA IPv4 Special-Purpose Address Registry, plus
/// multicast and the future-use block). The first row that contains an address names
/// it, so a more specific row comes before the block it sits in.
pub const IPV4_RESERVED: &[(Ipv4Net, Reserved)] = &[
    // 0.0.0.0 means "any address of this host": connecting to it reaches loopback.
    (v4(0, 0, 0, 0, 32), Reserved::Unspecified),
    // RFC 791 "this network"; Linux routes much of it to the local host.
    (v4(0, 0, 0, 0, 8), Reserved::ThisNetwork),
    // RFC 1918.
    (v4(10, 0, 0, 0, 8), Reserved::Private),
    // RFC 6598 shared address space (carrier-grade NAT; also some clouds' metadata
    // services, e.g. 100.100.100.200).
    (v4(100, 64, 0, 0, 10), Reserved::SharedCgnat),
    (v4(127, 0, 0, 0, 8), Reserved::Loopback),
    // RFC 3927, including the cloud metadata service 169.254.169.254.
    (v4(169, 254, 0, 0, 16), Reserved::LinkLocal),
    (v4(172, 16, 0, 0, 12), Reserved::Private),
    // RFC 6890 (a few anycast services inside are global; no webhook lives there).
    (v4(192, 0, 0, 0, 24), Reserved::ProtocolAssignments),
    // RFC 5737 TEST-NET-1, -2, -3.
    (v4(192, 0, 2, 0, 24), Reserved::Documentation),
    // RFC 7526: deprecated 6to4 relay anycast.
    (v4(192, 88, 99, 0, 24), Reserved::SixToFourRelay),
    (v4(192, 168, 0, 0, 16), Reserved::Private),
    // RFC 2544.
    (v4(198, 18, 0, 0, 15), Reserved::Benchmarking),
    (v4(198, 51, 100, 0, 24), Reserved::Documentation),
    (v4(203, 0, 113, 0, 24), Reserved::Documentation),
    (v4(224, 0, 0, 0, 4), Reserved::Multicast),
    // The limited broadcast address sits inside 240.0.0.0/4.
    (v4(255, 255, 255, 255, 32), Reserved::Broadcast),
    // RFC 1112 class E.
    (v4(240, 0, 0, 0, 4), Reserved::FutureUse),
];

/// IPv6 networks that are not public (IANA IPv6 Special-Purpose Address Registry), looked
/// up before the IPv4-embedding forms are unwrapped and before the rule that only 2000::/3
/// is public; the rows outside 2000::/3 are there for a precise message.
#[rustfmt::skip]
pub const IPV6_RESERVED: &[(Ipv6Net, Reserved)] = &[
    // `::` and `::1` sit inside the IPv4-compatible block ::/96 and must not be read as
    // 0.0.0.0 and 0.0.0.1.
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), Reserved::Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Reserved::Loopback),
    // RFC 8215 local-use IPv4/IPv6 translation: where it leads is the operator's business.
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), Reserved::LocalNat64),
    // RFC 6666 discard-only.
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), Reserved::Discard),
    // RFC 4380 Teredo: the client's IPv4 address is obfuscated in it; refused outright.
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), Reserved::Teredo),
    // RFC 2928 IETF protocol assignments (benchmarking, ORCHID, AMT ...).
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), Reserved::ProtocolAssignments),
    // RFC 3849 and RFC 9637.
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), Reserved::Documentation),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), Reserved::Documentation),
    // RFC 4193, including AWS's metadata service fd00:ec2::254.
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), Reserved::UniqueLocal),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), Reserved::LinkLocal),
    // RFC 3879: deprecated, but still routed to the site by old stacks.
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), Reserved::SiteLocal),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), Reserved::Multicast),
];

/// RFC 4291 global unicast: every public IPv6 address is in it.
const IPV6_GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// The IPv4 address an IPv6 address carries, where packets to it end up at that IPv4
/// address: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d` (deprecated),
/// SIIT `::ffff:0:a.b.c.d` (RFC 2765), NAT64 `64:ff9b::a.b.c.d` (RFC 6052) and 6to4
/// `2002:aabb:ccdd::/48` (RFC 3056). `::` and `::1` are not IPv4-compatible.
pub(super) fn embedded_ipv4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = address.segments();
    let low32 = Ipv4Addr::from(((u32::from(s[6])) << 16) | u32::from(s[7]));
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low32),
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] => Some(low32),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low32),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low32),
        [0x2002, high, low, ..] => Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))),
        _ => None,
    }
}

/// The row of the tables that makes `address` non-public, or `None` for a public address.
/// This is the built-in rule, before the operator's allow list.
pub fn classify(address: IpAddr) -> Option<Reserved> {
    match address.to_canonical() {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether `address` is public by the built-in rule (no allow list).
pub fn is_public(address: IpAddr) -> bool {
    classify(address).is_none()
}

fn classify_v4(address: Ipv4Addr) -> Option<Reserved> {
    IPV4_RESERVED
        .iter()
        .find(|(network, _)| network.contains(&address))
        .map(|&(_, reserved)| reserved)
}

fn classify_v6(address: Ipv6Addr) -> Option<Reserved> {
    if let Some(&(_, reserved)) = IPV6_RESERVED
        .iter()
        .find(|(network, _)| network.contains(&address))
    {
        return Some(reserved);
    }
    if let Some(inner) = embedded_ipv4(address) {
        return classify_v4(inner);
    }
    if !IPV6_GLOBAL_UNICAST.contains(&address) {
        return Some(Reserved::NotGlobalUnicast);
    }
    None
}
