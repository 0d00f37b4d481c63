//! The statements of the webhook store whose dialects differ ([`Sql`]: PostgreSQL's row
//! locks beside SQLite's plain statement, and the two ways a JSON array is unpacked), and
//! the JSON a batch of deliveries travels as.

use uuid::Uuid;

use super::super::Sql;
use crate::domain::webhooks::NewDelivery;

/// `$1` key: its row, locked on PostgreSQL until the creation commits, so that two
/// creations for one key count one after the other. SQLite writers take turns instead.
pub(super) const LOCK_KEY: Sql = Sql {
    sqlite: "SELECT 1 FROM api_keys WHERE id = $1",
    postgres: "SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE",
};

/// `$1` a JSON array of [`DeliveryJson`]: pending deliveries, due at once, except those
/// whose subscription is gone or which the subscription already has for their outbox
/// event. One statement for a whole batch, unpacked by the database as the bulk import
/// does (`sql/import.rs`): on SQLite a turn of the queue then holds the one writer (which
/// posts wait for) for a single statement, not one round trip per delivery. On
/// PostgreSQL each subscription's row is share-locked for the key (`FOR KEY SHARE`, what
/// the foreign key check takes anyway): a delete that began first is waited for and then
/// the row is not found (nothing inserted, rather than a foreign key error that would
/// abort the batch); one that begins later waits for this transaction and deletes the new
/// rows with the subscription.
pub(super) const ADD_DELIVERIES: Sql = Sql {
    sqlite: "INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, outbox_id,
                 status, next_attempt_at, created_at)
             SELECT unhex(value ->> 'id', '-'), unhex(value ->> 'webhook_id', '-'),
                    value ->> 'event_type', value ->> 'payload', value ->> 'outbox_id',
                    'pending', value ->> 'created_at', value ->> 'created_at'
             FROM json_each($1)
             WHERE EXISTS (SELECT 1 FROM webhooks
                           WHERE id = unhex(value ->> 'webhook_id', '-'))
             ON CONFLICT DO NOTHING",
    postgres: "INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, outbox_id,
                   status, next_attempt_at, created_at)
               SELECT d.id, d.webhook_id, d.event_type, d.payload, d.outbox_id,
                      'pending', d.created_at, d.created_at
               FROM json_to_recordset($1::json) AS d (id uuid, webhook_id uuid,
                   event_type text, payload text, outbox_id bigint, created_at bigint)
               WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id
                             FOR KEY SHARE)
               ON CONFLICT DO NOTHING",
};

/// The most deliveries one [`ADD_DELIVERIES`] statement carries (a turn of the queue
/// rarely has more; a backlog read after an outage may, and is then several statements in
/// one transaction).
pub(super) const DELIVERIES_PER_STATEMENT: usize = 1000;

/// A [`NewDelivery`] as [`ADD_DELIVERIES`] unpacks it.
#[derive(serde::Serialize)]
pub(super) struct DeliveryJson<'a> {
    id: Uuid,
    webhook_id: Uuid,
    event_type: &'a str,
    payload: &'a str,
    outbox_id: Option<i64>,
    /// Milliseconds, as every machine time in these tables.
    created_at: i64,
}

impl<'a> From<&'a NewDelivery> for DeliveryJson<'a> {
    fn from(delivery: &'a NewDelivery) -> Self {
        Self {
            id: delivery.id,
            webhook_id: delivery.webhook_id,
            event_type: &delivery.event_type,
            payload: &delivery.payload,
            outbox_id: delivery.outbox_id,
            created_at: delivery.created_at.timestamp_millis(),
        }
    }
}

/// `$1` token, `$2` until, `$3` now, `$4` the most subscriptions. PostgreSQL skips the
/// rows another instance is claiming at this moment; once that one commits, the lease it
/// wrote keeps them out. SQLite's one writer needs no lock.
pub(super) const LEASE: Sql = Sql {
    sqlite: "UPDATE webhooks SET lease_token = $1, lease_until = $2
             WHERE id IN (
                 SELECT w.id FROM webhooks w
                 WHERE w.enabled
                   AND (w.lease_until IS NULL OR w.lease_until <= $3)
                   AND (w.open_until IS NULL OR w.open_until <= $3)
                   AND EXISTS (SELECT 1 FROM webhook_deliveries d
                               WHERE d.webhook_id = w.id AND d.status = 'pending'
                                 AND d.next_attempt_at <= $3)
                 ORDER BY w.id LIMIT $4)
             RETURNING id, url, secret, previous_secret, previous_secret_expires_at,
                 consecutive_failures, open_until",
    postgres: "UPDATE webhooks SET lease_token = $1, lease_until = $2
               WHERE id IN (
                   SELECT w.id FROM webhooks w
                   WHERE w.enabled
                     AND (w.lease_until IS NULL OR w.lease_until <= $3)
                     AND (w.open_until IS NULL OR w.open_until <= $3)
                     AND EXISTS (SELECT 1 FROM webhook_deliveries d
                                 WHERE d.webhook_id = w.id AND d.status = 'pending'
                                   AND d.next_attempt_at <= $3)
                   ORDER BY w.id LIMIT $4
                   FOR UPDATE SKIP LOCKED)
               RETURNING id, url, secret, previous_secret, previous_secret_expires_at,
                   consecutive_failures, open_until",
};
