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
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

mod reserved;

use reserved::embedded_ipv4;
pub use reserved::{IPV4_RESERVED, IPV6_RESERVED, Reserved, classify, is_public};

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
