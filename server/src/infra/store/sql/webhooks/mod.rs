//! The `webhooks` and `webhook_deliveries` tables: partners' subscriptions, the deliveries
//! queued for them, and the leases the delivery worker takes on subscriptions
//! ([`WebhookStore`]).
//!
//! Every read and write the API makes is scoped by the API key in the statement itself
//! (`WHERE api_key_id = $k AND id = $id`), so another partner's subscription is simply
//! not found; a delivery is scoped by its subscription, which the caller found through
//! its key. Machine times (due, lease, breaker) are integer milliseconds on both
//! databases (`migrations/*/0011_webhooks.sql`), so those comparisons are one statement
//! for both; what still differs is only the row locking of PostgreSQL, whose instances
//! share the tables, spelled beside SQLite's plain statement (`Sql`, in [`statements`]):
//! the key's row while creating, the subscription's row while queueing a delivery for it,
//! and `FOR UPDATE SKIP LOCKED` while leasing.
//!
//! The rows are read into the `#[derive(sqlx::FromRow)]` structs of [`rows`].

mod rows;
mod statements;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::exec::Rows;
use super::{Backend, QueryExt, SqlStore, json_list, overfetch};
use crate::domain::webhooks::{
    AttemptRecord, DISABLED_GONE, DeliveryRecord, DeliveryStatus, DueDelivery, LeasedWebhook,
    NewDelivery, NewWebhook, Subscription, WebhookChanges, WebhookCreation, WebhookRecord,
};
use crate::infra::store::{Page, StoreError, WebhookStore};
use rows::{DeliveryRow, DueRow, LeaseRow, SubscriptionRow, WebhookRow, ids_column};
use statements::{ADD_DELIVERIES, DELIVERIES_PER_STATEMENT, DeliveryJson, LEASE, LOCK_KEY};

/// The columns [`WebhookRow`] is read from (a macro, so that `concat!` builds whole
/// statements at compile time).
macro_rules! webhook_columns {
    () => {
        "id, api_key_id, url, event_types, user_ids, description, enabled, disabled_reason, \
         consecutive_failures, open_until, previous_secret_expires_at, created_at"
    };
}

/// The columns [`DeliveryRow`] is read from.
macro_rules! delivery_columns {
    () => {
        "id, webhook_id, event_type, payload, status, attempts, next_attempt_at, \
         last_attempt_at, last_status_code, last_error, last_latency_ms, \
         last_response_excerpt, created_at, delivered_at"
    };
}

/// The rows of this file, as one bound that [`Backend`] lists (generic code can decode
/// only the rows its bounds name).
pub trait WebhookRows:
    Rows<WebhookRow> + Rows<DeliveryRow> + Rows<SubscriptionRow> + Rows<LeaseRow> + Rows<DueRow>
{
}

impl<DB> WebhookRows for DB where
    DB: Rows<WebhookRow>
        + Rows<DeliveryRow>
        + Rows<SubscriptionRow>
        + Rows<LeaseRow>
        + Rows<DueRow>
{
}

#[async_trait]
impl<DB: Backend> WebhookStore for SqlStore<DB> {
    async fn create_webhook(
        &self,
        new: &NewWebhook,
        limit: u32,
    ) -> Result<WebhookCreation, StoreError> {
        let event_types = new.event_types.join(",");
        let user_ids = new.user_ids.as_deref().map(ids_column);
        let (event_types, user_ids) = (event_types.as_str(), user_ids.as_deref());
        let insert = concat!(
            "INSERT INTO webhooks (id, api_key_id, url, event_types, user_ids, description,
                 enabled, secret, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
            webhook_columns!()
        );
        self.write(move |mut tx| async move {
            Self::dialect(&LOCK_KEY)
                .arg(new.api_key_id)
                .execute_on(&mut *tx)
                .await?;
            let (held,): (i64,) =
                Self::query("SELECT count(*) FROM webhooks WHERE api_key_id = $1")
                    .arg(new.api_key_id)
                    .fetch_one_as(&mut *tx)
                    .await?;
            if held >= i64::from(limit) {
                // Dropping the transaction rolls it back (and releases the lock).
                return Ok(WebhookCreation::LimitReached);
            }
            let row: WebhookRow = Self::query(insert)
                .arg(new.id)
                .arg(new.api_key_id)
                .arg(new.url.as_str())
                .arg(event_types)
                .arg(user_ids)
                .arg(new.description.as_deref())
                .arg(new.enabled)
                .arg(new.secret.as_str())
                .arg(new.created_at)
                .fetch_one_as(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(WebhookCreation::Created(row.try_into()?))
        })
        .await
    }

    async fn webhook(&self, key: Uuid, id: Uuid) -> Result<Option<WebhookRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE api_key_id = $1 AND id = $2"
        );
        let row: Option<WebhookRow> = Self::query(sql)
            .arg(key)
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(row.map(WebhookRecord::try_from).transpose()?)
    }

    async fn webhooks(
        &self,
        key: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<WebhookRecord, Uuid>, StoreError> {
        // UUIDv7 ids: newest first is id order, and Uuid::max() is past every id. Through
        // webhooks_by_key (api_key_id, id), read backwards.
        let sql = concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE api_key_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<WebhookRow> = Self::query(sql)
            .arg(key)
            .arg(before.unwrap_or(Uuid::max()))
            .arg(overfetch(limit))
            .fetch_all_as(&mut *self.conn().await?)
            .await?;
        let webhooks = rows
            .into_iter()
            .map(WebhookRecord::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Page::by_id(webhooks, limit, |webhook| webhook.id))
    }

    async fn update_webhook(
        &self,
        key: Uuid,
        id: Uuid,
        changes: &WebhookChanges,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        // COALESCE: a field left out (a NULL) keeps its value. user_ids can be set to NULL
        // (every user), so it has a flag of its own ($3). Enabling ($6 true) also closes
        // the breaker and forgets why the server had disabled the subscription; a NULL
        // $6 takes every CASE's ELSE.
        let sql = concat!(
            "UPDATE webhooks SET url = COALESCE($1, url),
                 event_types = COALESCE($2, event_types),
                 user_ids = CASE WHEN $3 THEN $4 ELSE user_ids END,
                 description = COALESCE($5, description),
                 enabled = COALESCE($6, enabled),
                 consecutive_failures = CASE WHEN $6 THEN 0 ELSE consecutive_failures END,
                 open_until = CASE WHEN $6 THEN NULL ELSE open_until END,
                 disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END
             WHERE api_key_id = $7 AND id = $8 RETURNING ",
            webhook_columns!()
        );
        let event_types = changes.event_types.as_ref().map(|types| types.join(","));
        let user_ids = changes
            .user_ids
            .as_ref()
            .and_then(|ids| ids.as_deref().map(ids_column));
        let _turn = self.turn().await;
        let row: Option<WebhookRow> = Self::query(sql)
            .arg(changes.url.as_deref())
            .arg(event_types.as_deref())
            .arg(changes.user_ids.is_some())
            .arg(user_ids.as_deref())
            .arg(changes.description.as_deref())
            .arg(changes.enabled)
            .arg(key)
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(row.map(WebhookRecord::try_from).transpose()?)
    }

    async fn delete_webhook(&self, key: Uuid, id: Uuid) -> Result<bool, StoreError> {
        // The deliveries go with it (ON DELETE CASCADE).
        let _turn = self.turn().await;
        let deleted = Self::query("DELETE FROM webhooks WHERE api_key_id = $1 AND id = $2")
            .arg(key)
            .arg(id)
            .execute_on(&mut *self.conn().await?)
            .await?;
        Ok(deleted == 1)
    }

    async fn rotate_webhook_secret(
        &self,
        key: Uuid,
        id: Uuid,
        secret: &str,
        previous_until: DateTime<Utc>,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        // One statement (the right-hand sides read the row as it was): the replaced secret
        // becomes the previous one, whatever a concurrent rotation did before.
        let sql = concat!(
            "UPDATE webhooks SET previous_secret = secret, secret = $1,
                 previous_secret_expires_at = $2
             WHERE api_key_id = $3 AND id = $4 RETURNING ",
            webhook_columns!()
        );
        let _turn = self.turn().await;
        let row: Option<WebhookRow> = Self::query(sql)
            .arg(secret)
            .arg(previous_until.timestamp_millis())
            .arg(key)
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(row.map(WebhookRecord::try_from).transpose()?)
    }

    async fn subscriptions(&self, event_type: &str) -> Result<Vec<Subscription>, StoreError> {
        // Commas around the list and the name: "tweet.created" matches the whole name
        // only. (The wire names, EVENT_TYPES, hold no LIKE wildcard, `%` or `_`.)
        let rows: Vec<SubscriptionRow> = Self::query(
            "SELECT id, user_ids FROM webhooks
             WHERE enabled AND ',' || event_types || ',' LIKE '%,' || $1 || ',%'
             ORDER BY id",
        )
        .arg(event_type)
        .fetch_all_as(&mut *self.conn().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(Subscription::try_from)
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn add_deliveries(&self, deliveries: &[NewDelivery]) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let batches = deliveries
            .chunks(DELIVERIES_PER_STATEMENT)
            .map(|chunk| json_list(&chunk.iter().map(DeliveryJson::from).collect::<Vec<_>>()))
            .collect::<Result<Vec<_>, _>>()?;
        self.write(|mut tx| {
            let batches = &batches;
            async move {
                for batch in batches {
                    Self::dialect(&ADD_DELIVERIES)
                        .arg(batch.as_str())
                        .execute_on(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }
        })
        .await
    }

    async fn delivery(
        &self,
        webhook: Uuid,
        id: Uuid,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2"
        );
        let row: Option<DeliveryRow> = Self::query(sql)
            .arg(webhook)
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(row.map(DeliveryRecord::try_from).transpose()?)
    }

    async fn deliveries(
        &self,
        webhook: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<DeliveryRecord, Uuid>, StoreError> {
        // UUIDv7 ids, as for the subscriptions; through webhook_deliveries_by_webhook.
        let sql = concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2
             ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<DeliveryRow> = Self::query(sql)
            .arg(webhook)
            .arg(before.unwrap_or(Uuid::max()))
            .arg(overfetch(limit))
            .fetch_all_as(&mut *self.conn().await?)
            .await?;
        let deliveries = rows
            .into_iter()
            .map(DeliveryRecord::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Page::by_id(deliveries, limit, |delivery| delivery.id))
    }

    async fn requeue_delivery(
        &self,
        webhook: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let sql = concat!(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1
             WHERE webhook_id = $2 AND id = $3 RETURNING ",
            delivery_columns!()
        );
        let _turn = self.turn().await;
        let row: Option<DeliveryRow> = Self::query(sql)
            .arg(now.timestamp_millis())
            .arg(webhook)
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(row.map(DeliveryRecord::try_from).transpose()?)
    }

    async fn lease_webhooks(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<LeasedWebhook>, StoreError> {
        // One random token for the leases of this call: each names its subscription too,
        // and a token nobody can guess is what keeps a worker that lost its lease out.
        let lease = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let now = now.timestamp_millis();
        let _turn = self.turn().await;
        let rows: Vec<LeaseRow> = Self::dialect(&LEASE)
            .arg(lease)
            .arg(until.timestamp_millis())
            .arg(now)
            .arg(i64::from(limit))
            .fetch_all_as(&mut *self.conn().await?)
            .await?;
        let mut leased = rows
            .into_iter()
            .map(|row| row.leased(lease, now))
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING keeps no order; id order, as they were chosen.
        leased.sort_by_key(|webhook| webhook.id);
        Ok(leased)
    }

    async fn renew_webhook_lease(
        &self,
        id: Uuid,
        lease: Uuid,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _turn = self.turn().await;
        let renewed =
            Self::query("UPDATE webhooks SET lease_until = $1 WHERE id = $2 AND lease_token = $3")
                .arg(until.timestamp_millis())
                .arg(id)
                .arg(lease)
                .execute_on(&mut *self.conn().await?)
                .await?;
        Ok(renewed == 1)
    }

    async fn release_webhook(&self, id: Uuid, lease: Uuid) -> Result<(), StoreError> {
        let _turn = self.turn().await;
        Self::query(
            "UPDATE webhooks SET lease_token = NULL, lease_until = NULL
             WHERE id = $1 AND lease_token = $2",
        )
        .arg(id)
        .arg(lease)
        .execute_on(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    async fn due_deliveries(
        &self,
        webhook: Uuid,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        // Through the partial index webhook_deliveries_due: no sort.
        let rows: Vec<DueRow> = Self::query(
            "SELECT id, payload, attempts, created_at FROM webhook_deliveries
             WHERE webhook_id = $1 AND status = 'pending' AND next_attempt_at <= $2
             ORDER BY next_attempt_at, id LIMIT $3",
        )
        .arg(webhook)
        .arg(now.timestamp_millis())
        .arg(i64::from(limit))
        .fetch_all_as(&mut *self.conn().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(DueDelivery::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn record_attempts(
        &self,
        webhook: Uuid,
        attempts: &[(Uuid, AttemptRecord)],
    ) -> Result<(), StoreError> {
        let Some((_, last)) = attempts.last() else {
            return Ok(());
        };
        let disable = attempts.iter().any(|(_, attempt)| attempt.disable);
        self.write(move |mut tx| async move {
            for (delivery, attempt) in attempts {
                let at = attempt.at.timestamp_millis();
                let delivered_at = (attempt.status == DeliveryStatus::Delivered).then_some(at);
                Self::query(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, status = $1,
                         next_attempt_at = $2, last_attempt_at = $3, last_status_code = $4,
                         last_error = $5, last_latency_ms = $6, last_response_excerpt = $7,
                         delivered_at = COALESCE($8, delivered_at)
                     WHERE webhook_id = $9 AND id = $10
                       AND (next_attempt_at IS NULL OR next_attempt_at <= $11)",
                )
                .arg(attempt.status.as_str())
                .arg(attempt.next_attempt_at.map(|next| next.timestamp_millis()))
                .arg(at)
                .arg(attempt.status_code.map(i64::from))
                .arg(attempt.error.as_deref())
                .arg(i64::try_from(attempt.latency_ms).unwrap_or(i64::MAX))
                .arg(attempt.excerpt.as_str())
                .arg(delivered_at)
                .arg(webhook)
                .arg(*delivery)
                .arg(attempt.sent_at.timestamp_millis())
                .execute_on(&mut *tx)
                .await?;
            }
            Self::query(
                "UPDATE webhooks SET consecutive_failures = $1, open_until = $2,
                     enabled = CASE WHEN $3 THEN false ELSE enabled END,
                     disabled_reason = CASE WHEN $3 THEN $4 ELSE disabled_reason END
                 WHERE id = $5",
            )
            .arg(i64::from(last.consecutive_failures))
            .arg(last.open_until.map(|open| open.timestamp_millis()))
            .arg(disable)
            .arg(DISABLED_GONE)
            .arg(webhook)
            .execute_on(&mut *tx)
            .await?;
            tx.commit().await
        })
        .await
    }

    async fn open_breakers(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let (open,): (i64,) =
            Self::query("SELECT count(*) FROM webhooks WHERE enabled AND open_until > $1")
                .arg(now.timestamp_millis())
                .fetch_one_as(&mut *self.conn().await?)
                .await?;
        Ok(u64::try_from(open).unwrap_or(0))
    }

    async fn prune_deliveries(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        // A short write in SQLite's turn (one batch), so writers wait for one batch at
        // most; oldest first by id, through the primary key: a UUIDv7 starts with the
        // millisecond it was made, so every id below the first possible id of the cutoff's
        // millisecond is older (migration 0012). Pending deliveries stay, however old:
        // they are still to be sent.
        let before = uuid::Builder::from_unix_timestamp_millis(
            u64::try_from(cutoff.timestamp_millis()).unwrap_or(0),
            &[0; 10],
        )
        .into_uuid();
        let _turn = self.turn().await;
        Ok(Self::query(
            "DELETE FROM webhook_deliveries WHERE id IN (
                 SELECT id FROM webhook_deliveries
                 WHERE status <> 'pending' AND id < $1
                 ORDER BY id LIMIT $2)",
        )
        .arg(before)
        .arg(i64::from(batch))
        .execute_on(&mut *self.conn().await?)
        .await?)
    }
}
