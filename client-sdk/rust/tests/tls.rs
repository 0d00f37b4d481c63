//! HTTPS out of the box: the SDK's default features include rustls, so an `https://`
//! base URL works with no extra crate or feature. A test certificate authority (rcgen)
//! signs a certificate for `127.0.0.1`, a local TLS terminator (tokio-rustls) presents it
//! in front of the real server, and the SDK trusts the authority through
//! `ClientBuilder::add_root_certificate`; without it, the connection is refused. The
//! realtime stream's socket on such a base URL is `wss://`, verified by the platform's
//! verifier.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use minitter_client::{ClientBuilder, Error, RetryPolicy};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use support::Server;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, crypto::aws_lc_rs};

/// A certificate authority, and a server certificate it signed for `127.0.0.1`.
struct TestPki {
    authority_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

fn test_pki() -> TestPki {
    let authority_key = KeyPair::generate().expect("a key");
    let mut authority = CertificateParams::new(Vec::<String>::new()).expect("parameters");
    authority.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    authority.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    authority
        .distinguished_name
        .push(DnType::CommonName, "minitter-client test authority");
    let authority_cert = authority.self_signed(&authority_key).expect("a CA");
    let issuer = Issuer::new(authority, authority_key);

    let server_key = KeyPair::generate().expect("a key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("parameters")
        .signed_by(&server_key, &issuer)
        .expect("a certificate");
    TestPki {
        authority_pem: authority_cert.pem(),
        server_chain: vec![server.der().clone()],
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    }
}

/// Terminates TLS on a free port and forwards the plaintext to `upstream`; returns the
/// `https://` URL and how many TLS handshakes completed.
async fn tls_terminator(upstream: &str, pki: &TestPki) -> (String, Arc<AtomicUsize>) {
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
            .expect("a server certificate");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("https://{}", listener.local_addr().expect("an address"));
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handshakes);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream, counter) =
                (acceptor.clone(), upstream.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return; // the client refused the certificate
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut server = TcpStream::connect(&upstream).await.expect("the server");
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    (url, handshakes)
}

#[tokio::test]
async fn a_client_talks_to_the_api_over_https() {
    let server = Server::start().await;
    let pki = test_pki();
    let (url, handshakes) = tls_terminator(&server.base_url, &pki).await;
    let authority =
        reqwest::Certificate::from_pem(pki.authority_pem.as_bytes()).expect("a PEM certificate");
    let client = ClientBuilder::new(&url)
        .api_key(&server.api_key)
        .add_root_certificate(authority)
        .build()
        .expect("a client");

    let health = client.get_health().send().await.expect("health over TLS");
    assert_eq!(health.status().as_u16(), 200);
    let user = client
        .sign_up()
        .body_map(|b| {
            b.username("tls_user")
                .email("tls@example.com")
                .password(support::PASSWORD)
        })
        .send()
        .await
        .expect("a sign-up over TLS");
    assert_eq!(user.username.as_str(), "tls_user");
    assert!(handshakes.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn a_certificate_from_an_unknown_authority_is_refused() {
    let server = Server::start().await;
    let pki = test_pki();
    let (url, handshakes) = tls_terminator(&server.base_url, &pki).await;
    let client = ClientBuilder::new(&url)
        .api_key(&server.api_key)
        .retry_policy(RetryPolicy::disabled())
        .build()
        .expect("a client");

    let error = client
        .get_health()
        .send()
        .await
        .expect_err("the authority is not trusted");

    let Error::CommunicationError(error) = &error else {
        panic!("not a connection error: {error:?}");
    };
    assert!(error.is_connect(), "{error:?}");
    assert!(
        format!("{error:?}").to_lowercase().contains("certificate"),
        "{error:?}"
    );
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);
}

/// The stream's socket is `wss://` on an `https://` base URL, and verifies the server's
/// certificate against the platform's authorities (as reqwest's rustls does); an
/// authority added with `add_root_certificate` is trusted by REST calls only, so here the
/// ticket is issued over HTTPS and the socket refuses the certificate, and backs off.
#[tokio::test]
async fn the_streams_socket_is_wss_and_verifies_the_certificate() {
    use futures::StreamExt;
    use minitter_client::stream::{Backoff, Disconnect, Event, Topic};

    let server = Server::start().await;
    let (_, token) = server.user("tls_streamer").await;
    let pki = test_pki();
    let (url, handshakes) = tls_terminator(&server.base_url, &pki).await;
    let authority =
        reqwest::Certificate::from_pem(pki.authority_pem.as_bytes()).expect("a PEM certificate");
    let client = ClientBuilder::new(&url)
        .api_key(&server.api_key)
        .bearer_token(token)
        .add_root_certificate(authority)
        .build()
        .expect("a client");
    let mut stream = client
        .stream()
        .subscribe(Topic::home())
        .backoff(Backoff::new(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(50),
        ))
        .build();

    let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
        .expect("no error: an untrusted certificate is retried");
    match event {
        Event::Reconnecting {
            cause: Disconnect::Unreachable { error },
            ..
        } => assert!(error.to_lowercase().contains("certificate"), "{error}"),
        other => panic!("expected the socket's certificate refused, got {other:?}"),
    }
    // The ticket's HTTPS request completed its handshake; the socket's never did.
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
}
