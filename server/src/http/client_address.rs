//! Who is calling, by address: the TCP peer, or, when the peer is a proxy the operator
//! trusts (`MINITTER_TRUSTED_PROXIES`), the address that proxy forwards. IP policies
//! ([`crate::domain::ip_policy`]), the login throttle and the access log all read the
//! [`ClientAddress`] this middleware leaves on the request, so they agree on who called.
//!
//! Forwarding headers are anyone's to write, so they are believed only as far as a chain
//! of trusted hops vouches for them. From an untrusted peer they are ignored entirely.
//! From a trusted one, the hops of `Forwarded` (RFC 7239, `for=`), or of `X-Forwarded-For`
//! when there is no `Forwarded`, are read from the right, the end the proxies append to:
//! each trusted hop passes on to the one before it, and the first untrusted one is the
//! client. A hop that is not an address (`unknown`, an obfuscated name, garbage) ends the
//! walk at the last hop that was one: nothing left of it can be vouched for. The nginx of
//! `deploy/` appends the peer it saw (`$proxy_add_x_forwarded_for`), so a client that sends
//! its own `X-Forwarded-For` only adds hops to the left of the one nginx vouches for.

use std::net::IpAddr;
use std::sync::Arc;

use forwarded_header_value::{ForwardedHeaderValue, Identifier};
use ipnet::IpNet;
use poem::http::HeaderMap;
use poem::{Endpoint, Middleware, Request};

use crate::domain::ip_policy::{InvalidNetwork, parse_network};

/// The client's address, in canonical form (an IPv4 client of a dual-stack socket is
/// `203.0.113.7`, not `::ffff:203.0.113.7`). Absent when the peer has no IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl ClientAddress {
    /// The address this middleware found for `request`, if any.
    pub fn of(request: &Request) -> Option<IpAddr> {
        request.extensions().get::<Self>().map(|client| client.0)
    }
}

/// The proxies whose forwarding headers are believed: `MINITTER_TRUSTED_PROXIES`, networks
/// or addresses separated by commas (`127.0.0.1, 10.0.0.0/8, ::1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl std::str::FromStr for TrustedProxies {
    type Err = InvalidNetwork;

    fn from_str(text: &str) -> Result<Self, InvalidNetwork> {
        text.split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(parse_network)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// The client's address of a request from `peer` with `headers`, given the trusted proxies.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    for hop in forwarded_hops(headers).into_iter().rev() {
        let Some(address) = hop else { break };
        client = address.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// The `for=` hops of every `Forwarded` line, or else of every `X-Forwarded-For` line, in
/// order, each `None` where it names no address. A `Forwarded` line that does not parse is
/// one such hop; an `X-Forwarded-For` line is a plain list, read entry by entry.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let for_address = |value: ForwardedHeaderValue| -> Vec<Option<IpAddr>> {
        value
            .iter()
            .map(|stanza| stanza.forwarded_for.as_ref().and_then(Identifier::ip))
            .collect()
    };
    let lines = |name| {
        headers
            .get_all(name)
            .into_iter()
            .map(|line| line.to_str().ok())
    };
    if headers.contains_key("forwarded") {
        lines("forwarded")
            .flat_map(
                |line| match line.map(ForwardedHeaderValue::from_forwarded) {
                    Some(Ok(value)) => for_address(value),
                    _ => vec![None],
                },
            )
            .collect()
    } else {
        lines("x-forwarded-for")
            .flat_map(|line| {
                let Some(line) = line else { return vec![None] };
                line.split(',')
                    .flat_map(
                        |entry| match ForwardedHeaderValue::from_x_forwarded_for(entry) {
                            Ok(value) => for_address(value),
                            Err(_) => vec![None],
                        },
                    )
                    .collect()
            })
            .collect()
    }
}

/// Middleware: puts the [`ClientAddress`] on every request.
pub struct Resolve {
    trusted: Arc<[IpNet]>,
}

impl Resolve {
    pub fn trusting(proxies: &TrustedProxies) -> Self {
        Self {
            trusted: proxies.0.as_slice().into(),
        }
    }
}

impl<E: Endpoint> Middleware<E> for Resolve {
    type Output = Resolved<E>;

    fn transform(&self, inner: E) -> Self::Output {
        Resolved {
            inner,
            trusted: Arc::clone(&self.trusted),
        }
    }
}

/// The endpoint [`Resolve`] makes.
pub struct Resolved<E> {
    inner: E,
    trusted: Arc<[IpNet]>,
}

impl<E: Endpoint> Endpoint for Resolved<E> {
    type Output = E::Output;

    async fn call(&self, mut request: Request) -> poem::Result<Self::Output> {
        if let Some(peer) = request.remote_addr().as_socket_addr().map(|a| a.ip()) {
            let client = resolve(peer, request.headers(), &self.trusted);
            request.extensions_mut().insert(ClientAddress(client));
        }
        self.inner.call(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    const NGINX: &str = "127.0.0.1";

    fn trusted() -> Vec<IpNet> {
        ["127.0.0.1/32", "10.0.0.0/8"]
            .map(|net| net.parse().expect("a network"))
            .to_vec()
    }

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn client(peer: &str, lines: &[(&'static str, &'static str)]) -> String {
        let peer = peer.parse().expect("an address");
        resolve(peer, &headers(lines), &trusted()).to_string()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let spoofed = [
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=203.0.113.8"),
        ];
        assert_eq!(client("198.51.100.1", &spoofed), "198.51.100.1");
    }

    #[test]
    fn behind_a_trusted_proxy_the_first_untrusted_hop_from_the_right_is_the_client() {
        let chain = [("x-forwarded-for", "203.0.113.9, 198.51.100.1, 10.1.2.3")];
        // The client's own claim (203.0.113.9) is left of the hop nginx vouched for.
        assert_eq!(client(NGINX, &chain), "198.51.100.1");
        let lines = [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.1"),
        ];
        assert_eq!(client(NGINX, &lines), "198.51.100.1");
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_reads_ipv6_with_ports() {
        let both = [
            (
                "forwarded",
                r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.2"#,
            ),
            ("x-forwarded-for", "198.51.100.1"),
        ];
        assert_eq!(client(NGINX, &both), "2001:db8::7");
    }

    #[test]
    fn without_a_header_or_with_only_trusted_hops_the_leftmost_known_address_stands() {
        assert_eq!(client(NGINX, &[]), NGINX);
        assert_eq!(
            client(NGINX, &[("x-forwarded-for", "10.0.0.9, 10.0.0.8")]),
            "10.0.0.9"
        );
    }

    #[test]
    fn a_hop_that_is_no_address_ends_the_walk() {
        let lines = [("x-forwarded-for", "203.0.113.9, unknown, 10.0.0.8")];
        assert_eq!(client(NGINX, &lines), "10.0.0.8");
        let garbage = [
            ("forwarded", "for=203.0.113.9"),
            ("forwarded", "for=\"unterminated"),
        ];
        assert_eq!(client(NGINX, &garbage), NGINX);
    }

    #[test]
    fn the_setting_is_a_comma_separated_list_of_networks_or_addresses() {
        let proxies: TrustedProxies = " 127.0.0.1, 10.0.0.0/8,::1 ,".parse().expect("valid");
        let written: Vec<String> = proxies.0.iter().map(ToString::to_string).collect();
        assert_eq!(written, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        assert_eq!("".parse(), Ok(TrustedProxies::default()));
        assert!("127.0.0.1, nginx".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn ipv4_mapped_peers_are_canonical() {
        assert_eq!(client("::ffff:198.51.100.1", &[]), "198.51.100.1");
        let behind = [("x-forwarded-for", "198.51.100.1")];
        assert_eq!(client("::ffff:127.0.0.1", &behind), "198.51.100.1");
    }
}
