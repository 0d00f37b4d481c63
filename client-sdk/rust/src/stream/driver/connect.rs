//! Opening a socket: a ticket from the REST API, the socket's URL, TLS for `wss://` and
//! the upgrade, within [`CONNECT_TIMEOUT`]. Each failure becomes what the reconnect
//! policy decides on ([`Disconnect`]), or a fatal [`StreamError`] where no retry can help.

use std::time::Duration;

use tokio::net::TcpStream;
#[cfg(feature = "rustls")]
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Driver, Ending};
use crate::Error;
use crate::stream::reconnect::{self, Disconnect, Plan};
use crate::stream::{StreamError, socket_url};
use crate::types;

/// The longest the TCP connection, TLS and the upgrade may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest message accepted from the server (a tweet or a problem is a few KiB).
const MAX_MESSAGE_BYTES: usize = 1 << 20;

pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl Driver {
    /// Gets a ticket and opens the socket it is for.
    pub(super) async fn connect(&mut self) -> Result<Socket, Ending> {
        let ticket = self.ticket().await?;
        let url = socket_url(&self.client.baseurl, &ticket.url).map_err(Ending::Fatal)?;
        let request = url
            .as_str()
            .into_client_request()
            .map_err(|error| Ending::Fatal(StreamError::InvalidUrl(error.to_string())))?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        // With rustls, `wss://` gets the platform verifier (as reqwest does); otherwise
        // tokio-tungstenite's choice: native-tls with the `native-tls` feature, else a
        // refusal of `wss://` (`StreamError::InvalidUrl`).
        #[cfg(feature = "rustls")]
        let connecting = {
            let connector = if url.starts_with("wss://") {
                Some(self.tls_connector()?)
            } else {
                None
            };
            tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
        };
        #[cfg(not(feature = "rustls"))]
        let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let socket = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok((socket, _response))) => socket,
            Ok(Err(error)) => return Err(upgrade_failure(error)),
            Err(_) => {
                return Err(Disconnect::Unreachable {
                    error: format!("no WebSocket within {CONNECT_TIMEOUT:?}"),
                }
                .into());
            }
        };
        Ok(socket)
    }

    /// A ticket from `POST /v1/stream/tickets`, as the client's user under its key.
    async fn ticket(&self) -> Result<types::StreamTicket, Ending> {
        let error = match self.client.create_stream_ticket().send().await {
            Ok(ticket) => return Ok(ticket.into_inner()),
            Err(error) => error,
        };
        let refused = |status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap| {
            Disconnect::TicketRefused {
                status: status.as_u16(),
                retry_after: crate::retry::retry_after(headers),
            }
        };
        let disconnect = match &error {
            Error::ErrorResponse(response) => refused(response.status(), response.headers()),
            Error::UnexpectedResponse(response) => refused(response.status(), response.headers()),
            Error::CommunicationError(cause)
            | Error::ResponseBodyError(cause)
            | Error::InvalidUpgrade(cause) => Disconnect::TicketUnreachable {
                error: cause.to_string(),
            },
            Error::InvalidResponsePayload(_, cause) => Disconnect::TicketUnreachable {
                error: format!("the ticket could not be read: {cause}"),
            },
            Error::InvalidRequest(_) | Error::Custom(_) => {
                return Err(Ending::Fatal(StreamError::Ticket(Box::new(error))));
            }
        };
        if reconnect::plan(&disconnect) == Plan::Stop {
            return Err(Ending::Fatal(StreamError::Ticket(Box::new(error))));
        }
        Err(disconnect.into())
    }

    /// `wss://`'s TLS: what reqwest's `rustls` feature builds for `https://` (aws-lc-rs,
    /// and the platform's verifier: its certificate authorities, its revocation checks).
    #[cfg(feature = "rustls")]
    fn tls_connector(&mut self) -> Result<Connector, Ending> {
        use rustls_platform_verifier::BuilderVerifierExt;

        if let Some(connector) = &self.connector {
            return Ok(connector.clone());
        }
        let tls = |error: rustls::Error| Ending::Fatal(StreamError::Tls(error.to_string()));
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_platform_verifier()
            .map_err(tls)?
            .with_no_client_auth();
        let connector = Connector::Rustls(std::sync::Arc::new(config));
        self.connector = Some(connector.clone());
        Ok(connector)
    }
}

/// What a failed upgrade means: a refusal with a status, a URL no socket can be opened
/// for, or a connection that could not be made.
fn upgrade_failure(error: tungstenite::Error) -> Ending {
    match error {
        tungstenite::Error::Http(response) => Disconnect::UpgradeRefused {
            status: response.status().as_u16(),
            retry_after: crate::retry::retry_after(response.headers()),
        }
        .into(),
        tungstenite::Error::Url(error) => Ending::Fatal(StreamError::InvalidUrl(error.to_string())),
        other => Disconnect::Unreachable {
            error: other.to_string(),
        }
        .into(),
    }
}
