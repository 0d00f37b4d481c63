//! A TCP relay in front of a service (PostgreSQL, S3, Redis) that a test can cut and
//! restore, to play an outage of the service without touching the service itself.
//!
//! Cutting closes every relayed connection at once (as a crashed server or a broken
//! network would, so pooled connections fail too) and refuses new ones until restored.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running relay; it stops when dropped.
#[derive(Debug)]
pub struct Relay {
    address: SocketAddr,
    cut: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays a port of 127.0.0.1 to `target` (`host:port`).
    pub async fn to(target: impl Into<String>) -> Self {
        let target = target.into();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (cut, watch_cut) = watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *watch_cut.borrow() {
                    continue; // dropped: the client sees the connection reset
                }
                tokio::spawn(relay(inbound, target.clone(), watch_cut.clone()));
            }
        });
        Self {
            address,
            cut,
            accept,
        }
    }

    /// The relay's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Relays again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.accept.abort();
    }
}

async fn relay(mut inbound: TcpStream, target: String, mut cut: watch::Receiver<bool>) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}
