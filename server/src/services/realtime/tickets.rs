//! One-time tickets that open the realtime stream (`POST /v1/stream/tickets`, then
//! `GET /v1/stream?ticket=…`).
//!
//! A browser cannot set headers on a WebSocket, and an API key or a bearer token in a
//! URL ends up in logs and histories. So the REST API, where both are checked as on any
//! call, hands out a ticket instead: 32 random bytes, valid for [`TICKET_LIFETIME`] and
//! for one upgrade. Only the ticket's SHA-256 is kept, so a leaked store opens nothing,
//! and a lookup by hash needs no constant-time comparison (finding the entry is the
//! check). With Redis the tickets are shared, since the upgrade may reach another
//! instance than the one that issued the ticket; `GETDEL` redeems one atomically, so a
//! ticket opens one stream however many instances race for it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::infra::redis::{REDIS_TIMEOUT, SharedRedis};
use crate::services::gateway::limits::PlanLimits;

/// How long a ticket opens a stream.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(30);

/// What every ticket starts with, so that one is recognised in a leaked text.
const PREFIX: &str = "st_";

/// Who a ticket lets in: the user, under the key that asked for it, with the limits of
/// the key's plan when it asked (a socket keeps them; a ticket of a release that kept
/// fewer fields is refused, and the client asks for another).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub user_id: Uuid,
    pub key_id: Uuid,
    pub plan_id: Uuid,
    /// The plan's throttle and quota, which the socket's messages count against.
    pub limits: PlanLimits,
    /// How many sockets the key may hold open.
    pub connection_limit: u32,
}

/// A ticket as issued: the secret, once.
#[derive(Debug)]
pub struct Issued {
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
}

/// Tickets by their hash, with who each lets in and until when.
type ByHash = HashMap<[u8; 32], (Holder, DateTime<Utc>)>;

/// Where the tickets are kept: this process, or Redis for every instance.
pub enum Tickets {
    InProcess(Mutex<ByHash>),
    Shared(SharedRedis),
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InProcess(_) => "Tickets::InProcess",
            Self::Shared(_) => "Tickets::Shared",
        })
    }
}

impl Tickets {
    pub fn new(redis: Option<SharedRedis>) -> Self {
        match redis {
            Some(redis) => Self::Shared(redis),
            None => Self::InProcess(Mutex::default()),
        }
    }

    /// A new ticket for `holder`. Fails only when Redis does not answer.
    pub async fn issue(&self, holder: Holder) -> anyhow::Result<Issued> {
        let ticket = format!(
            "{PREFIX}{}",
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        let expires_at = Utc::now() + TICKET_LIFETIME;
        let hash = hash(&ticket);
        match self {
            Self::InProcess(tickets) => {
                let mut tickets = tickets.lock().unwrap_or_else(|e| e.into_inner());
                // Forget the expired ones as new ones come: the map stays as small as the
                // tickets of the last 30 seconds.
                let now = Utc::now();
                tickets.retain(|_, (_, until)| *until > now);
                tickets.insert(hash, (holder, expires_at));
            }
            Self::Shared(redis) => {
                let value = serde_json::to_string(&holder)?;
                let mut connection = redis.connection();
                let command = redis::cmd("SET")
                    .arg(key(&hash))
                    .arg(value)
                    .arg("PX")
                    .arg(u64::try_from(TICKET_LIFETIME.as_millis()).unwrap_or(u64::MAX))
                    .to_owned();
                tokio::time::timeout(REDIS_TIMEOUT, command.exec_async(&mut connection))
                    .await
                    .context("Redis did not answer")??;
            }
        }
        Ok(Issued { ticket, expires_at })
    }

    /// Who `ticket` lets in, if it was issued, has not expired and was not redeemed
    /// before; it is redeemed now. `Err` only when Redis does not answer.
    pub async fn redeem(&self, ticket: &str) -> anyhow::Result<Option<Holder>> {
        if !ticket.starts_with(PREFIX) || ticket.len() > 128 {
            return Ok(None);
        }
        let hash = hash(ticket);
        match self {
            Self::InProcess(tickets) => {
                let mut tickets = tickets.lock().unwrap_or_else(|e| e.into_inner());
                Ok(tickets
                    .remove(&hash)
                    .filter(|(_, until)| *until > Utc::now())
                    .map(|(holder, _)| holder))
            }
            Self::Shared(redis) => {
                let mut connection = redis.connection();
                let command = redis::cmd("GETDEL").arg(key(&hash)).to_owned();
                let value: Option<String> =
                    tokio::time::timeout(REDIS_TIMEOUT, command.query_async(&mut connection))
                        .await
                        .context("Redis did not answer")??;
                // Redis expires the key itself; what it holds was written by `issue`.
                Ok(value.and_then(|value| serde_json::from_str(&value).ok()))
            }
        }
    }
}

fn hash(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

fn key(hash: &[u8; 32]) -> String {
    format!("stream-ticket:{}", URL_SAFE_NO_PAD.encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> Holder {
        Holder {
            user_id: Uuid::now_v7(),
            key_id: Uuid::now_v7(),
            plan_id: Uuid::now_v7(),
            limits: PlanLimits {
                throttle: None,
                quota: None,
            },
            connection_limit: 1,
        }
    }

    #[tokio::test]
    async fn a_ticket_opens_once() {
        let tickets = Tickets::new(None);
        let holder = holder();
        let issued = tickets.issue(holder).await.expect("issue");
        assert!(issued.ticket.starts_with("st_"));
        assert_eq!(issued.ticket.len(), 3 + 43);
        assert_eq!(
            tickets.redeem(&issued.ticket).await.expect("redeem"),
            Some(holder)
        );
        assert_eq!(tickets.redeem(&issued.ticket).await.expect("redeem"), None);
    }

    #[tokio::test]
    async fn forged_and_expired_tickets_open_nothing() {
        let tickets = Tickets::new(None);
        let issued = tickets.issue(holder()).await.expect("issue");
        let forged = format!("{}x", &issued.ticket[..issued.ticket.len() - 1]);
        assert_eq!(tickets.redeem(&forged).await.expect("redeem"), None);
        assert_eq!(tickets.redeem("").await.expect("redeem"), None);
        if let Tickets::InProcess(map) = &tickets {
            for (_, until) in map.lock().expect("lock").values_mut() {
                *until = Utc::now() - chrono::Duration::seconds(1);
            }
        }
        assert_eq!(tickets.redeem(&issued.ticket).await.expect("redeem"), None);
    }
}
