//! The rate limits a response reports, typed: what the gateway allows the key, what is
//! left, and when it resets.
//!
//! Every keyed response carries `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers): lists of named policies, such as
//! `"quota";q=10000;w=86400` and `"quota";r=9999;t=3600`. They are RFC 9651 structured
//! fields, read here with the `sfv` crate, and joined by name. Minitter names its plan's
//! quota `"quota"` and its throttle's bucket `"burst"`; a response reports the quota when
//! the plan has one, else the throttle. [`RateLimitExt::rate_limit`] is available on a
//! success ([`ResponseValue`]), an error ([`Error`], a `429` included) and a conditional
//! read ([`Conditional`]).

use std::time::Duration;

use reqwest::header::HeaderMap;
use sfv::{BareItem, ListEntry, Parser};

use crate::{Conditional, Error, ResponseValue};

/// The header naming each policy's limit (`q`) and window (`w`).
const POLICY_HEADER: &str = "ratelimit-policy";
/// The header giving each policy's remaining units (`r`) and seconds to reset (`t`).
const STATE_HEADER: &str = "ratelimit";

/// The rate-limit policies a response reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimit {
    policies: Vec<RateLimitPolicy>,
}

/// One policy: a limit per window, and what is left of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// The policy's name: `quota` or `burst` from Minitter.
    pub name: String,
    /// Requests allowed per window (`q`).
    pub limit: Option<u64>,
    /// The window's length (`w`).
    pub window: Option<Duration>,
    /// Requests left in this window (`r`).
    pub remaining: Option<u64>,
    /// Time until the window resets (`t`).
    pub reset: Option<Duration>,
}

impl RateLimit {
    /// The policies in these headers, or `None` when they name none.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut policies: Vec<RateLimitPolicy> = Vec::new();
        for (header, fields) in [(POLICY_HEADER, ["q", "w"]), (STATE_HEADER, ["r", "t"])] {
            for (name, [count, seconds]) in entries(headers, header, fields) {
                let index = match policies.iter().position(|p| p.name == name) {
                    Some(index) => index,
                    None => {
                        policies.push(RateLimitPolicy::named(name));
                        policies.len() - 1
                    }
                };
                let policy = &mut policies[index];
                if header == POLICY_HEADER {
                    policy.limit = count;
                    policy.window = seconds.map(Duration::from_secs);
                } else {
                    policy.remaining = count;
                    policy.reset = seconds.map(Duration::from_secs);
                }
            }
        }
        (!policies.is_empty()).then_some(Self { policies })
    }

    /// Every policy reported, in the order the server listed them.
    pub fn policies(&self) -> &[RateLimitPolicy] {
        &self.policies
    }

    /// The policy with this name.
    pub fn policy(&self, name: &str) -> Option<&RateLimitPolicy> {
        self.policies.iter().find(|policy| policy.name == name)
    }

    /// The plan's quota (requests per day, week or month), when reported.
    pub fn quota(&self) -> Option<&RateLimitPolicy> {
        self.policy("quota")
    }

    /// The plan's throttle (its token bucket), when reported.
    pub fn throttle(&self) -> Option<&RateLimitPolicy> {
        self.policy("burst")
    }
}

impl RateLimitPolicy {
    fn named(name: String) -> Self {
        Self {
            name,
            limit: None,
            window: None,
            remaining: None,
            reset: None,
        }
    }
}

/// The policies of one header (all its lines, as one list): each name with the two
/// non-negative integer parameters asked for. A header that does not parse is ignored.
fn entries(
    headers: &HeaderMap,
    header: &str,
    fields: [&str; 2],
) -> Vec<(String, [Option<u64>; 2])> {
    let lines: Vec<&str> = headers
        .get_all(header)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    if lines.is_empty() {
        return Vec::new();
    }
    let Ok(list) = Parser::new(&lines.join(", ")).parse_list::<sfv::List>() else {
        return Vec::new();
    };
    list.into_iter()
        .filter_map(|entry| {
            let ListEntry::Item(item) = entry else {
                return None;
            };
            let name = match &item.bare_item {
                BareItem::String(name) => name.as_str().to_owned(),
                BareItem::Token(name) => name.as_str().to_owned(),
                _ => return None,
            };
            let parameter = |wanted: &str| {
                item.params
                    .iter()
                    .find(|(key, _)| key.as_str() == wanted)
                    .and_then(|(_, value)| value.as_integer())
                    .and_then(|value| u64::try_from(i64::from(value)).ok())
            };
            Some((name, fields.map(parameter)))
        })
        .collect()
}

/// `rate_limit()` on anything that carries response headers.
pub trait RateLimitExt {
    /// The rate limits the response reported, or `None` (an unkeyed operation such as
    /// `get_health`, or no response at all).
    fn rate_limit(&self) -> Option<RateLimit>;
}

impl<T> RateLimitExt for ResponseValue<T> {
    fn rate_limit(&self) -> Option<RateLimit> {
        RateLimit::from_headers(self.headers())
    }
}

impl<E> RateLimitExt for Error<E> {
    fn rate_limit(&self) -> Option<RateLimit> {
        match self {
            Error::ErrorResponse(response) => RateLimit::from_headers(response.headers()),
            Error::UnexpectedResponse(response) => RateLimit::from_headers(response.headers()),
            _ => None,
        }
    }
}

impl<T> RateLimitExt for Conditional<T> {
    fn rate_limit(&self) -> Option<RateLimit> {
        RateLimit::from_headers(self.headers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).expect("a value"));
        }
        headers
    }

    #[test]
    fn a_policy_and_its_state_are_joined_by_name() {
        let limits = RateLimit::from_headers(&headers(&[
            ("ratelimit-policy", r#""quota";q=10000;w=86400"#),
            ("ratelimit", r#""quota";r=9999;t=3600"#),
        ]))
        .expect("limits");
        assert_eq!(
            limits.quota(),
            Some(&RateLimitPolicy {
                name: "quota".into(),
                limit: Some(10_000),
                window: Some(Duration::from_secs(86_400)),
                remaining: Some(9_999),
                reset: Some(Duration::from_secs(3_600)),
            })
        );
        assert_eq!(limits.throttle(), None);
    }

    #[test]
    fn several_policies_on_one_line_or_several_are_all_read() {
        let limits = RateLimit::from_headers(&headers(&[
            (
                "ratelimit-policy",
                r#""quota";q=100;w=86400, "burst";q=5;w=1"#,
            ),
            ("ratelimit", r#""burst";r=0;t=1"#),
            ("ratelimit", r#""quota";r=42;t=60"#),
        ]))
        .expect("limits");
        let names: Vec<&str> = limits.policies().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["quota", "burst"]);
        let burst = limits.throttle().expect("the throttle");
        assert_eq!((burst.limit, burst.remaining), (Some(5), Some(0)));
        assert_eq!(limits.quota().and_then(|q| q.remaining), Some(42));
    }

    #[test]
    fn absent_or_malformed_headers_give_nothing() {
        assert_eq!(RateLimit::from_headers(&HeaderMap::new()), None);
        let broken = headers(&[("ratelimit-policy", "\"quota;q=1"), ("ratelimit", "q=-1")]);
        assert_eq!(RateLimit::from_headers(&broken), None);
        let negative = RateLimit::from_headers(&headers(&[("ratelimit", r#""quota";r=-1"#)]))
            .expect("a named policy");
        assert_eq!(negative.quota().and_then(|q| q.remaining), None);
    }
}
