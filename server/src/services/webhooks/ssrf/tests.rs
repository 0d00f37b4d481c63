use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn loopback_allowed() -> UrlPolicy {
    UrlPolicy::new(vec![
        "127.0.0.0/8".parse().expect("a network"),
        "::1/128".parse().expect("a network"),
    ])
}

/// The refusal's reason and address, for a URL that must be refused as an address.
async fn forbidden(policy: &UrlPolicy, url: &str) -> (Reserved, IpAddr) {
    match policy.check(url).await {
        Err(Refusal::Forbidden {
            reserved, address, ..
        }) => (reserved, address),
        other => panic!("{url}: expected a forbidden address, got {other:?}"),
    }
}

#[tokio::test]
async fn ssrf_non_public_ipv4_literals_are_refused_with_their_range() {
    let policy = UrlPolicy::default();
    let cases = [
        ("http://127.0.0.1/", Reserved::Loopback),
        ("http://127.255.255.254:8080/hook", Reserved::Loopback),
        ("http://10.0.0.5/", Reserved::Private),
        ("http://172.16.0.1/", Reserved::Private),
        ("http://172.31.255.255/", Reserved::Private),
        ("http://192.168.1.1/", Reserved::Private),
        (
            "http://169.254.169.254/latest/meta-data/",
            Reserved::LinkLocal,
        ),
        ("http://169.254.0.1/", Reserved::LinkLocal),
        ("http://100.64.0.1/", Reserved::SharedCgnat),
        ("http://100.127.255.255/", Reserved::SharedCgnat),
        ("http://224.0.0.1/", Reserved::Multicast),
        ("http://239.255.255.250/", Reserved::Multicast),
        ("http://0.0.0.0/", Reserved::Unspecified),
        ("http://0.1.2.3/", Reserved::ThisNetwork),
        ("http://255.255.255.255/", Reserved::Broadcast),
        ("http://240.0.0.1/", Reserved::FutureUse),
        ("http://192.0.0.8/", Reserved::ProtocolAssignments),
        ("http://192.0.2.1/", Reserved::Documentation),
        ("http://198.51.100.7/", Reserved::Documentation),
        ("http://203.0.113.9/", Reserved::Documentation),
        ("http://198.18.0.1/", Reserved::Benchmarking),
        ("http://192.88.99.1/", Reserved::SixToFourRelay),
    ];
    for (url, expected) in cases {
        let (reserved, _) = forbidden(&policy, url).await;
        assert_eq!(reserved, expected, "{url}");
    }
}

#[tokio::test]
async fn ssrf_non_public_ipv6_literals_and_embedded_ipv4_are_refused() {
    let policy = UrlPolicy::default();
    let cases = [
        ("http://[::1]/", Reserved::Loopback),
        ("http://[::]/", Reserved::Unspecified),
        ("http://[fc00::1]/", Reserved::UniqueLocal),
        ("http://[fd00:ec2::254]/", Reserved::UniqueLocal),
        ("http://[fe80::1]/", Reserved::LinkLocal),
        ("http://[febf:ffff::1]/", Reserved::LinkLocal),
        ("http://[fec0::1]/", Reserved::SiteLocal),
        ("http://[ff02::1]/", Reserved::Multicast),
        ("http://[2001:db8::1]/", Reserved::Documentation),
        ("http://[2001::1]/", Reserved::Teredo),
        ("http://[100::1]/", Reserved::Discard),
        ("http://[64:ff9b:1::a00:1]/", Reserved::LocalNat64),
        ("http://[4000::1]/", Reserved::NotGlobalUnicast),
        // IPv4-mapped: judged by the IPv4 address inside.
        ("http://[::ffff:127.0.0.1]/", Reserved::Loopback),
        ("http://[::ffff:169.254.169.254]/", Reserved::LinkLocal),
        ("http://[::ffff:10.0.0.1]/", Reserved::Private),
        ("http://[::ffff:0.0.0.0]/", Reserved::Unspecified),
        // IPv4-compatible (deprecated), SIIT, NAT64 and 6to4.
        ("http://[::127.0.0.1]/", Reserved::Loopback),
        ("http://[::ffff:0:7f00:1]/", Reserved::Loopback),
        ("http://[64:ff9b::7f00:1]/", Reserved::Loopback),
        ("http://[64:ff9b::a9fe:a9fe]/", Reserved::LinkLocal),
        ("http://[64:ff9b::192.168.0.1]/", Reserved::Private),
        ("http://[2002:7f00:1::1]/", Reserved::Loopback),
        ("http://[2002:a9fe:a9fe::]/", Reserved::LinkLocal),
    ];
    for (url, expected) in cases {
        let (reserved, _) = forbidden(&policy, url).await;
        assert_eq!(reserved, expected, "{url}");
    }
}

#[tokio::test]
async fn ssrf_decimal_octal_and_hex_hosts_are_judged_as_the_ipv4_they_parse_to() {
    let policy = UrlPolicy::default();
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for url in [
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.0.0.1/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://127.1/",
        "http://0x7F.1/",
    ] {
        assert_eq!(
            forbidden(&policy, url).await,
            (Reserved::Loopback, loopback),
            "{url}"
        );
    }
    assert_eq!(
        forbidden(&policy, "http://0xa9fea9fe/").await,
        (
            Reserved::LinkLocal,
            IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))
        )
    );
}

#[tokio::test]
async fn ssrf_syntax_rules_refuse_other_schemes_userinfo_and_long_urls() {
    let policy = UrlPolicy::default();
    for url in [
        "ftp://93.184.215.14/",
        "file:///etc/passwd",
        "gopher://93.184.215.14:6379/_INFO",
        "ws://93.184.215.14/",
    ] {
        assert!(
            matches!(policy.check(url).await, Err(Refusal::Scheme(_))),
            "{url}"
        );
    }
    for url in [
        "http://user:pass@93.184.215.14/",
        "http://user@93.184.215.14/",
        "https://:secret@93.184.215.14/",
    ] {
        assert!(
            matches!(policy.check(url).await, Err(Refusal::Userinfo)),
            "{url}"
        );
    }
    for url in ["not a url", "http://[::1/", "/relative/path", "http://"] {
        assert!(
            matches!(policy.check(url).await, Err(Refusal::Malformed(_))),
            "{url}"
        );
    }
    let long = format!("http://93.184.215.14/{}", "a".repeat(MAX_URL_BYTES));
    assert!(matches!(policy.check(&long).await, Err(Refusal::TooLong)));
    let exactly = format!(
        "http://93.184.215.14/{}",
        "a".repeat(MAX_URL_BYTES - "http://93.184.215.14/".len())
    );
    assert!(policy.check(&exactly).await.is_ok());
}

#[tokio::test]
async fn ssrf_public_literals_are_admitted() {
    let policy = UrlPolicy::default();
    for url in [
        "http://93.184.215.14/",
        "https://93.184.215.14:8443/hooks/minitter?x=1",
        "https://[2606:4700::1]/hook",
        "http://[::ffff:93.184.215.14]/",
        "http://[64:ff9b::5db8:d70e]/",
        "http://[2002:5db8:d70e::1]/",
        "http://1572394766/",
    ] {
        let checked = policy.check(url).await.expect("a public address");
        assert_eq!(checked.as_str(), Url::parse(url).expect("a URL").as_str());
    }
}

#[tokio::test]
async fn ssrf_localhost_is_refused_at_registration() {
    let policy = UrlPolicy::default();
    match policy.check("http://localhost:8080/hook").await {
        Err(
            refusal @ Refusal::Forbidden {
                reserved: Reserved::Loopback,
                ..
            },
        ) => {
            assert!(
                refusal
                    .to_string()
                    .starts_with("the URL's host localhost resolves to a loopback address"),
                "{refusal}"
            );
        }
        other => panic!("expected a loopback refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn ssrf_allow_list_admits_loopback_and_only_it() {
    let policy = UrlPolicy::new(vec!["127.0.0.0/8".parse().expect("a network")]);
    assert!(policy.admits("127.0.0.1".parse().expect("an address")));
    assert!(policy.admits("127.1.2.3".parse().expect("an address")));
    assert!(policy.admits("::ffff:127.0.0.1".parse().expect("an address")));
    assert!(!policy.admits("10.0.0.1".parse().expect("an address")));
    assert!(!policy.admits("169.254.169.254".parse().expect("an address")));
    assert!(!policy.admits("::1".parse().expect("an address")));
    assert!(policy.check("http://127.0.0.1:8080/hook").await.is_ok());
    assert!(policy.check("http://localhost:8080/hook").await.is_ok());
    assert!(policy.check("http://0x7f.0.0.1/").await.is_ok());
}

#[test]
fn ssrf_refusals_read_well() {
    let literal = Refusal::Forbidden {
        host: None,
        address: "10.0.0.5".parse().expect("an address"),
        reserved: Reserved::Private,
    };
    assert_eq!(
        literal.to_string(),
        "the URL's host is a private address (10.0.0.5)"
    );
    let resolved = Refusal::Forbidden {
        host: Some("hooks.example.com".to_owned()),
        address: "64:ff9b::a9fe:a9fe".parse().expect("an address"),
        reserved: Reserved::LinkLocal,
    };
    assert_eq!(
        resolved.to_string(),
        "the URL's host hooks.example.com resolves to a link-local address \
         (64:ff9b::a9fe:a9fe, which embeds 169.254.169.254)"
    );
}

#[test]
fn ssrf_refusals_repeat_only_the_start_of_a_long_host() {
    let host = format!("{}.example.com", "é".repeat(2000));
    let refusal = Refusal::NoAddress { host: host.clone() }.to_string();
    assert!(refusal.chars().count() < 200, "{refusal}");
    assert!(refusal.starts_with(&format!("the URL's host {}…", "é".repeat(100))));
    assert!(refusal.ends_with(" resolves to no address"));
    let scheme = Refusal::Scheme("x".repeat(2000)).to_string();
    assert!(scheme.chars().count() < 200, "{scheme}");
}

#[test]
fn ssrf_recheck_judges_literals_and_leaves_names_to_the_resolver() {
    let policy = UrlPolicy::default();
    let url = |s: &str| Url::parse(s).expect("a URL");
    assert!(matches!(
        policy.recheck(&url("http://127.0.0.1/")),
        Err(Refusal::Forbidden {
            reserved: Reserved::Loopback,
            ..
        })
    ));
    assert!(matches!(
        policy.recheck(&url("http://[::ffff:a9fe:a9fe]/")),
        Err(Refusal::Forbidden {
            reserved: Reserved::LinkLocal,
            ..
        })
    ));
    assert!(matches!(
        policy.recheck(&url("http://u:p@93.184.215.14/")),
        Err(Refusal::Userinfo)
    ));
    assert!(policy.recheck(&url("https://93.184.215.14/")).is_ok());
    assert!(policy.recheck(&url("http://localhost/")).is_ok());
    assert!(loopback_allowed().recheck(&url("http://[::1]:80/")).is_ok());
}

#[test]
fn ssrf_tables_agree_with_std_and_are_written_as_networks() {
    for (network, _) in IPV4_RESERVED {
        assert_eq!(*network, network.trunc(), "{network} has host bits");
    }
    for (network, _) in IPV6_RESERVED {
        assert_eq!(*network, network.trunc(), "{network} has host bits");
    }
    let v4: [Ipv4Addr; 12] = [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(10, 255, 0, 1),
        Ipv4Addr::new(172, 20, 1, 1),
        Ipv4Addr::new(192, 168, 255, 255),
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(224, 0, 0, 251),
        Ipv4Addr::new(0, 0, 0, 0),
        Ipv4Addr::new(255, 255, 255, 255),
        Ipv4Addr::new(192, 0, 2, 255),
        Ipv4Addr::new(203, 0, 113, 0),
        Ipv4Addr::new(8, 8, 8, 8),
        Ipv4Addr::new(172, 32, 0, 1),
    ];
    for address in v4 {
        let std_says_special = address.is_loopback()
            || address.is_private()
            || address.is_link_local()
            || address.is_multicast()
            || address.is_unspecified()
            || address.is_broadcast()
            || address.is_documentation();
        assert_eq!(is_public(address.into()), !std_says_special, "{address}");
    }
    let v6: [Ipv6Addr; 7] = [
        Ipv6Addr::LOCALHOST,
        Ipv6Addr::UNSPECIFIED,
        "fd12::1".parse().expect("an address"),
        "fe80::abcd".parse().expect("an address"),
        "ff05::2".parse().expect("an address"),
        "2606:4700::1".parse().expect("an address"),
        "2a00:1450::200e".parse().expect("an address"),
    ];
    for address in v6 {
        let std_says_special = address.is_loopback()
            || address.is_unspecified()
            || address.is_unique_local()
            || address.is_unicast_link_local()
            || address.is_multicast();
        assert_eq!(is_public(address.into()), !std_says_special, "{address}");
    }
}

/// A loopback HTTP server that answers every request with `response`; it counts the
/// requests and keeps the last request head.
struct Listener {
    port: u16,
    requests: Arc<AtomicUsize>,
    last_head: Arc<std::sync::Mutex<String>>,
}

async fn listen(response: impl Fn(u16) -> String + Send + 'static) -> Listener {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("a local address").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let last_head = Arc::new(std::sync::Mutex::new(String::new()));
    let (counted, head) = (requests.clone(), last_head.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = Vec::new();
            let mut chunk = [0_u8; 1024];
            while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            counted.fetch_add(1, Ordering::SeqCst);
            *head.lock().expect("an unpoisoned lock") =
                String::from_utf8_lossy(&buffer).into_owned();
            let _ = stream.write_all(response(port).as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    Listener {
        port,
        requests,
        last_head,
    }
}

fn no_content(_port: u16) -> String {
    "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_owned()
}

#[tokio::test]
async fn ssrf_client_refuses_a_name_resolving_to_loopback_in_its_resolver() {
    let listener = listen(no_content).await;
    let client = UrlPolicy::default().http_client(Duration::from_secs(5));

    let error = client
        .get(format!("http://localhost:{}/hook", listener.port))
        .send()
        .await
        .expect_err("loopback is not allowed");

    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut refusal = None;
    while let Some(cause) = source {
        if let Some(found) = cause.downcast_ref::<Refusal>() {
            refusal = Some(found);
        }
        source = cause.source();
    }
    match refusal {
        Some(Refusal::Forbidden {
            host: Some(host),
            reserved: Reserved::Loopback,
            ..
        }) => assert_eq!(host, "localhost"),
        other => panic!("expected the resolver's loopback refusal, got {other:?} in {error:?}"),
    }
    assert!(error.is_connect(), "{error:?}");
    assert_eq!(listener.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn ssrf_client_serves_loopback_when_the_operator_allows_it() {
    let listener = listen(no_content).await;
    let policy = UrlPolicy::new(vec!["127.0.0.0/8".parse().expect("a network")]);
    let client = policy.http_client(Duration::from_secs(5));

    let response = client
        .post(format!("http://localhost:{}/hook", listener.port))
        .body("{}")
        .send()
        .await
        .expect("loopback is allowed");

    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    assert_eq!(listener.requests.load(Ordering::SeqCst), 1);
    let head = listener
        .last_head
        .lock()
        .expect("an unpoisoned lock")
        .to_ascii_lowercase();
    assert!(
        head.contains("user-agent: minitter-webhooks/1.0\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn ssrf_client_does_not_follow_redirects() {
    let listener = listen(|port| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/elsewhere\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    })
    .await;
    let client = loopback_allowed().http_client(Duration::from_secs(5));

    let response = client
        .get(format!("http://localhost:{}/hook", listener.port))
        .send()
        .await
        .expect("a response");

    assert_eq!(response.status(), reqwest::StatusCode::FOUND);
    assert_eq!(listener.requests.load(Ordering::SeqCst), 1);
    let head = listener
        .last_head
        .lock()
        .expect("an unpoisoned lock")
        .clone();
    assert!(head.starts_with("GET /hook "), "{head}");
}
