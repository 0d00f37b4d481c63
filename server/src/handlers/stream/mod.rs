//! `stream` tag: the ticket that opens the realtime stream, and the stream itself,
//! `GET /v1/stream?ticket=…`, a WebSocket specified in `asyncapi.yaml` (so not a route of
//! the generated REST router: [`mount`] adds it beside them).
//!
//! The upgrade is refused, before any socket exists, with the REST API's problem
//! document: 401 for a missing, used, expired or forged ticket (it is redeemed here,
//! once: [`crate::services::realtime::tickets`]), 429 `too_many_connections` with
//! `Retry-After` when the key holds as many sockets as its plan allows
//! ([`crate::services::realtime::slots`]), 503 when Redis, which keeps a cluster's
//! tickets and slots, does not answer. Then the socket ([`session`]) acts as the
//! ticket's user under its key.

mod session;

use std::sync::Arc;

use poem::web::websocket::{WebSocket, WebSocketConfig};
use poem::web::{Data, Query};
use poem::{EndpointExt, IntoResponse, Request, Response, Route, get, handler};

use self::session::{MAX_MESSAGE_BYTES, Opened, session};
use super::Handlers;
use crate::generated::types::StreamTicket;
use crate::generated::{CreateStreamTicketAuth, CreateStreamTicketResponse, StreamApi};
use crate::http::error::{ApiError, Result};
use crate::http::request_id::RequestId;
use crate::services::realtime::slots::RETRY_AFTER_SECONDS;
use crate::services::realtime::tickets::Holder;
use crate::state::AppState;

/// The read buffer of a socket.
const READ_BUFFER_BYTES: usize = 4096;

impl StreamApi for Handlers {
    async fn create_stream_ticket(
        &self,
        _request: &poem::Request,
        auth: CreateStreamTicketAuth<Self>,
    ) -> Result<CreateStreamTicketResponse> {
        let key = auth.api_key;
        let holder = Holder {
            user_id: auth.bearer_auth,
            key_id: key.id,
            plan_id: key.plan_id,
            limits: key.limits,
            connection_limit: key.stream_connection_limit,
        };
        let issued = self
            .state
            .tickets
            .issue(holder)
            .await
            .map_err(ApiError::Unavailable)?;
        Ok(CreateStreamTicketResponse::Ok(StreamTicket {
            url: format!("/v1/stream?ticket={}", issued.ticket),
            ticket: issued.ticket,
            expires_at: issued.expires_at,
        }))
    }
}

/// Adds `/v1/stream` to `route`.
pub fn mount(route: Route, state: Arc<AppState>) -> Route {
    route.at("/v1/stream", get(open).data(state))
}

#[derive(serde::Deserialize)]
struct Ticket {
    ticket: Option<String>,
}

#[handler]
async fn open(
    request: &Request,
    socket: WebSocket,
    Query(Ticket { ticket }): Query<Ticket>,
    state: Data<&Arc<AppState>>,
) -> poem::Result<Response> {
    codegen_runtime::announce_operation(request, "open_stream");
    let holder = state
        .tickets
        .redeem(ticket.as_deref().unwrap_or_default())
        .await
        .map_err(ApiError::Unavailable)?
        .ok_or(ApiError::Unauthorized(
            "The stream ticket is missing, used, expired or unknown; get one from POST /v1/stream/tickets.",
        ))?;
    crate::http::telemetry::identify_key(request, holder.key_id);
    crate::http::telemetry::identify_user(request, holder.user_id);
    let slot = state
        .realtime
        .slots
        .take(holder.key_id, holder.connection_limit)
        .await
        .map_err(ApiError::Unavailable)?
        .ok_or(ApiError::TooManyConnections {
            limit: holder.connection_limit,
            retry_after: RETRY_AFTER_SECONDS,
        })?;
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let hub = Arc::clone(&state.realtime);
    let page_tokens = state.page_tokens.clone();
    let opened = Opened {
        holder,
        slot,
        request_id,
    };
    Ok(socket
        .config(
            // Idle sockets are the common case, so a 4 KiB read buffer (tungstenite's
            // default is 128 KiB, allocated for every socket; bench/stream.py measured 136
            // KiB a socket with it): client messages are a few hundred bytes at most.
            WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER_BYTES)
                .max_message_size(Some(MAX_MESSAGE_BYTES))
                .max_frame_size(Some(MAX_MESSAGE_BYTES)),
        )
        .on_upgrade(move |socket| session(socket, hub, page_tokens, opened))
        .into_response())
}
