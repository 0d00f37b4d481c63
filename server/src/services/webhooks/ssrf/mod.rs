//! The SSRF guard for partner webhook URLs: which URLs a partner may register, and which
//! addresses the delivery client may connect to (issue 19).
//!
//! A webhook URL is chosen by a partner but fetched by us, from inside our network; without
//! a guard it reaches the cloud metadata service (169.254.169.254), the Redis next door or
//! an admin port on loopback. So the rule is: **only public addresses**, unless the
//! operator explicitly allows a network (tests, on-premise receivers on loopback or a LAN).
//!
//! The guard has three parts, because the address can change between the checks:
//! - [`UrlPolicy::check`], at registration: the URL's syntax (http or https, a host, no
//!   userinfo, at most [`MAX_URL_BYTES`]), then every address its host resolves to. A
//!   partner learns at once, with a reason, why a URL is refused.
//! - [`UrlPolicy::http_client`], at delivery: a client whose DNS resolver is this policy.
//!   It resolves the name and hands the connector only the addresses that pass, failing the
//!   resolution when none does. The address checked is the address connected to, so a name
//!   that resolved to a public address at registration and to 127.0.0.1 now (DNS
//!   rebinding) is refused at connect time. It follows no redirect (a 302 to
//!   `http://169.254.169.254/` is the classic bypass), ignores proxy settings (a proxy would
//!   resolve the name itself), and sends `User-Agent: Minitter-Webhooks/1.0`.
//! - [`UrlPolicy::recheck`], right before each request: the syntax again and, for an IP
//!   literal host, the address. The connector does not resolve literals, so the resolver
//!   never sees them; a policy narrowed since registration must still hold.
//!
//! What is public is decided on the *parsed* host. The WHATWG parsing of `reqwest::Url`
//! already turns `http://2130706433/`, `http://0177.0.0.1/` and `http://0x7f.0.0.1/` into
//! the IPv4 host 127.0.0.1, which is then judged like any other. IPv6 addresses that carry
//! an IPv4 address (IPv4-mapped, IPv4-compatible, SIIT, NAT64, 6to4) are judged by that
//! IPv4 address, since that is where the packets end up. The ranges are the tables
//! [`IPV4_RESERVED`] and [`IPV6_RESERVED`] below, taken from IANA's special-purpose address
//! registries; for IPv6 only the global unicast space 2000::/3 is public at all.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The longest URL a partner may register, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// The `User-Agent` of every delivery, so receivers can tell webhooks from other traffic.
pub const USER_AGENT: &str = "Minitter-Webhooks/1.0";
/// How long registration waits for the host's addresses: a handler must not hang on a
/// slow name server. (At delivery the client's own timeout bounds the resolution.)
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which webhook URLs and addresses are allowed: public addresses, plus the networks the
/// operator allows explicitly.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    /// Networks admitted even though they are not public (loopback in tests, a LAN for an
    /// on-premise receiver). An IPv4-mapped IPv6 address is also matched as its IPv4 form.
    allowed: Vec<IpNet>,
}

/// Why a webhook URL was refused. The messages are written for the partner who sent it.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the URL is longer than {MAX_URL_BYTES} bytes")]
    TooLong,
    /// The URL does not parse; the text is the parser's reason.
    #[error("the URL is not valid: {0}")]
    Malformed(String),
    #[error("the URL's scheme must be http or https, not {}", shown(.0))]
    Scheme(String),
    #[error("the URL must not contain a user name or password")]
    Userinfo,
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL's host {} could not be resolved", shown(.host))]
    Unresolvable {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("the URL's host {} resolves to no address", shown(.host))]
    NoAddress { host: String },
    /// The host is, or resolves to, an address that is not public and not allowed. `host`
    /// is the name when the address came from resolving it, `None` for an IP literal.
    #[error("{}", forbidden_message(.host.as_deref(), *.address, *.reserved))]
    Forbidden {
        host: Option<String>,
        address: IpAddr,
        reserved: Reserved,
    },
}

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

/// The most characters of a partner's host or scheme a refusal repeats: a URL may be
/// 2 KiB, and a problem's `detail` is at most 2,000 characters.
const SHOWN_CHARS: usize = 100;

/// `text` as a refusal repeats it: whole when short, else its start and an ellipsis.
fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn forbidden_message(host: Option<&str>, address: IpAddr, reserved: Reserved) -> String {
    let embeds = match address {
        IpAddr::V6(v6) => embedded_ipv4(v6)
            .map(|inner| format!(", which embeds {inner}"))
            .unwrap_or_default(),
        IpAddr::V4(_) => String::new(),
    };
    match host {
        Some(host) => format!(
            "the URL's host {} resolves to {reserved} ({address}{embeds})",
            shown(host)
        ),
        None => format!("the URL's host is {reserved} ({address}{embeds})"),
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
fn embedded_ipv4(address: Ipv6Addr) -> Option<Ipv4Addr> {
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

/// The host of a URL that passed the syntax rules.
enum Host {
    Literal(IpAddr),
    Name(String),
}

impl UrlPolicy {
    /// A policy that admits public addresses and those inside `allowed`.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Whether the delivery client may connect to `address`: it is inside an allowed
    /// network, or public.
    pub fn admits(&self, address: IpAddr) -> bool {
        self.refuses(address).is_none()
    }

    /// Why `address` may not be connected to, or `None` when it may.
    fn refuses(&self, address: IpAddr) -> Option<Reserved> {
        let canonical = address.to_canonical();
        if self
            .allowed
            .iter()
            .any(|network| network.contains(&address) || network.contains(&canonical))
        {
            return None;
        }
        classify(address)
    }

    /// The registration-time check: the syntax rules, then every address the host resolves
    /// to (an IP literal as is) must be admitted. Returns the parsed URL, which is what to
    /// store. A host that does not resolve is refused too: nobody could deliver to it.
    pub async fn check(&self, url: &str) -> Result<Url, Refusal> {
        let (url, host) = parse(url)?;
        match host {
            Host::Literal(address) => self.judge_literal(address)?,
            Host::Name(name) => {
                let addresses = tokio::time::timeout(RESOLVE_TIMEOUT, lookup(&name))
                    .await
                    .map_err(|_elapsed| Refusal::Unresolvable {
                        host: name.clone(),
                        source: io::Error::new(io::ErrorKind::TimedOut, "name lookup timed out"),
                    })??;
                if let Some((address, reserved)) = addresses
                    .iter()
                    .find_map(|&address| Some((address, self.refuses(address)?)))
                {
                    return Err(Refusal::Forbidden {
                        host: Some(name),
                        address,
                        reserved,
                    });
                }
            }
        }
        Ok(url)
    }

    /// The check to run on a stored URL right before each delivery: the syntax rules and,
    /// for an IP literal host, the address (the client's connector does not resolve
    /// literals, so its resolver never sees them). A host name is left to the resolver of
    /// [`UrlPolicy::http_client`]; no DNS happens here.
    pub fn recheck(&self, url: &Url) -> Result<(), Refusal> {
        let (_, host) = parse(url.as_str())?;
        match host {
            Host::Literal(address) => self.judge_literal(address),
            Host::Name(_) => Ok(()),
        }
    }

    fn judge_literal(&self, address: IpAddr) -> Result<(), Refusal> {
        match self.refuses(address) {
            None => Ok(()),
            Some(reserved) => Err(Refusal::Forbidden {
                host: None,
                address,
                reserved,
            }),
        }
    }

    /// The client to deliver webhooks with: it connects only to addresses this policy
    /// admits (its resolver drops the others, and fails when none is left), follows no
    /// redirect, uses no proxy, gives up after `timeout`, and says who it is.
    ///
    /// # Panics
    /// Like `reqwest::Client::new`, when the TLS backend cannot be initialised, which is a
    /// broken build or system, not a condition to handle per request.
    pub fn http_client(&self, timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(PolicyResolver {
                policy: self.clone(),
            })
            .timeout(timeout)
            .user_agent(USER_AGENT)
            .build()
            .expect("BUG: the webhook client's TLS backend failed to initialise")
    }
}

/// The syntax rules: at most [`MAX_URL_BYTES`], parses, http or https, no userinfo, a host.
fn parse(url: &str) -> Result<(Url, Host), Refusal> {
    if url.len() > MAX_URL_BYTES {
        return Err(Refusal::TooLong);
    }
    let url = Url::parse(url).map_err(|error| Refusal::Malformed(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refusal::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Userinfo);
    }
    let host = url.host_str().ok_or(Refusal::NoHost)?;
    // `host_str` is the parsed host: numeric IPv4 forms are already dotted quads, and an
    // IPv6 literal is bracketed. A domain never parses as an address (the WHATWG parser
    // would have made it one).
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    let host = match bare.parse::<IpAddr>() {
        Ok(address) => Host::Literal(address),
        Err(_) => Host::Name(host.to_owned()),
    };
    Ok((url, host))
}

/// The addresses `name` resolves to, without duplicates (getaddrinfo lists each once per
/// socket type), in the resolver's order.
async fn lookup(name: &str) -> Result<Vec<IpAddr>, Refusal> {
    let unresolvable = |source| Refusal::Unresolvable {
        host: name.to_owned(),
        source,
    };
    let mut addresses = Vec::new();
    for address in tokio::net::lookup_host((name, 0))
        .await
        .map_err(unresolvable)?
    {
        if !addresses.contains(&address.ip()) {
            addresses.push(address.ip());
        }
    }
    if addresses.is_empty() {
        return Err(Refusal::NoAddress {
            host: name.to_owned(),
        });
    }
    Ok(addresses)
}

/// The delivery client's resolver: the system's answer, filtered by the policy.
struct PolicyResolver {
    policy: UrlPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let mut admitted = Vec::new();
            let mut first_refused = None;
            for address in lookup(&name).await? {
                match policy.refuses(address) {
                    // Port 0: reqwest puts in the URL's port.
                    None => admitted.push(SocketAddr::new(address, 0)),
                    Some(reserved) => {
                        first_refused.get_or_insert((address, reserved));
                    }
                }
            }
            match first_refused {
                Some((address, reserved)) if admitted.is_empty() => Err(Refusal::Forbidden {
                    host: Some(name),
                    address,
                    reserved,
                }
                .into()),
                _ => Ok(Box::new(admitted.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests;
