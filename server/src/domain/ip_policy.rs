//! IP policies: which client addresses may use a key. A usage plan and an API key each
//! carry one (`allow` and `deny` lists of networks); a request is admitted only if both
//! admit its address, so a key's lists can narrow its plan's but never widen them.
//!
//! One policy admits an address unless the address is in `deny`, or `allow` is not empty
//! and the address is in none of its networks: deny wins over allow, and an empty policy
//! admits everyone. Addresses are compared in their canonical form, so an IPv4 client on
//! a dual-stack socket (`::ffff:203.0.113.7`) matches `203.0.113.0/24`.
//!
//! Networks are kept as written by [`ipnet`], with host bits cleared (`10.1.2.3/8` is kept
//! as `10.0.0.0/8`, the network it denotes), and one address is a `/32` or `/128`.

use std::net::IpAddr;

use ipnet::IpNet;

/// The most networks one list may hold (the document says so too, as `maxItems`): enough
/// for a partner's offices and clouds, and a bound on the work of every request.
pub const MAX_NETWORKS: usize = 100;

/// The allow and deny lists of a plan or a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpPolicy {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl IpPolicy {
    /// Whether a request from `address` passes this policy.
    pub fn admits(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        let listed = |networks: &[IpNet]| networks.iter().any(|net| net.contains(&address));
        !listed(&self.deny) && (self.allow.is_empty() || listed(&self.allow))
    }

    /// Whether this policy admits every address.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// A policy from the lists as the API or the store spells them; the first entry that
    /// is neither a network nor an address is the error.
    pub fn parse<S: AsRef<str>>(allow: &[S], deny: &[S]) -> Result<Self, InvalidNetwork> {
        Ok(Self {
            allow: parse_networks(allow)?,
            deny: parse_networks(deny)?,
        })
    }
}

/// An entry of an IP list that is neither a CIDR network nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither a network in CIDR notation nor an IP address")]
pub struct InvalidNetwork(pub String);

/// A network in CIDR notation (`203.0.113.0/24`, `2001:db8::/32`) or one address, with
/// its host bits cleared.
pub fn parse_network(text: &str) -> Result<IpNet, InvalidNetwork> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| {
            text.parse::<IpAddr>()
                .map(|address| IpNet::from(address.to_canonical()))
        })
        .map(|net| net.trunc())
        .map_err(|_| InvalidNetwork(text.to_owned()))
}

fn parse_networks<S: AsRef<str>>(entries: &[S]) -> Result<Vec<IpNet>, InvalidNetwork> {
    entries
        .iter()
        .map(|entry| parse_network(entry.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> IpPolicy {
        IpPolicy::parse(allow, deny).expect("valid networks")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn an_empty_policy_admits_everyone() {
        assert!(IpPolicy::default().admits(ip("198.51.100.1")));
        assert!(IpPolicy::default().admits(ip("2001:db8::1")));
    }

    #[test]
    fn allow_admits_only_its_networks_and_deny_wins() {
        let office = policy(&["203.0.113.0/24", "2001:db8::/32"], &["203.0.113.66"]);
        assert!(office.admits(ip("203.0.113.7")));
        assert!(office.admits(ip("2001:db8:1::7")));
        assert!(
            !office.admits(ip("203.0.113.66")),
            "denied inside an allowed network"
        );
        assert!(!office.admits(ip("198.51.100.1")));
        assert!(!office.admits(ip("2001:db9::1")));
    }

    #[test]
    fn a_deny_list_alone_admits_the_rest() {
        let blocked = policy(&[], &["198.51.100.0/24"]);
        assert!(!blocked.admits(ip("198.51.100.200")));
        assert!(blocked.admits(ip("198.51.101.1")));
    }

    #[test]
    fn ipv4_clients_on_a_dual_stack_socket_match_ipv4_networks() {
        let office = policy(&["203.0.113.0/24"], &[]);
        assert!(office.admits(ip("::ffff:203.0.113.7")));
        let blocked = policy(&[], &["::ffff:198.51.100.1"]);
        assert!(!blocked.admits(ip("198.51.100.1")));
    }

    #[test]
    fn networks_are_kept_with_host_bits_cleared_and_addresses_as_hosts() {
        let kept = policy(&["10.1.2.3/8", "203.0.113.7", "2001:db8::1"], &[]);
        let written: Vec<String> = kept.allow.iter().map(ToString::to_string).collect();
        assert_eq!(written, ["10.0.0.0/8", "203.0.113.7/32", "2001:db8::1/128"]);
    }

    #[test]
    fn anything_else_is_refused_naming_the_entry() {
        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "300.1.1.1",
            "example.com",
            "",
            "/8",
        ] {
            assert_eq!(
                IpPolicy::parse(&["10.0.0.0/8", bad], &[]),
                Err(InvalidNetwork(bad.to_owned())),
                "{bad:?}"
            );
        }
    }
}
