//! The outbox on PostgreSQL: events in (transaction, id) order, read only from
//! transactions older than any still running, so that a consumer's position never steps
//! past an event that commits later (see `migrations/postgres/0006_outbox.sql`).

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::domain::events::Event;
use crate::infra::store::{OutboxEntry, OutboxPosition, OutboxStore, StoreError, outbox_event};

/// Adds `event` to the outbox, in the caller's transaction.
pub(super) async fn add(conn: &mut sqlx::PgConnection, event: &Event) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (event) VALUES ($1::jsonb)")
        .bind(outbox_event(event))
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn outbox_after(
        &self,
        consumer: &str,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query(
            "WITH position AS (
                 SELECT coalesce((SELECT tx FROM outbox_positions WHERE consumer = $1), '0'::xid8) AS tx,
                        coalesce((SELECT id FROM outbox_positions WHERE consumer = $1), 0) AS id)
             SELECT o.id, o.tx::text::bigint AS tx, o.event::text AS event
             FROM outbox o, position p
             WHERE (o.tx, o.id) > (p.tx, p.id)
               AND o.tx < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY o.tx, o.id LIMIT $2",
        )
        .bind(consumer)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            entries.push(OutboxEntry {
                position: OutboxPosition {
                    tx: row.try_get("tx")?,
                    id: row.try_get("id")?,
                },
                event: row.try_get("event")?,
            });
        }
        Ok(entries)
    }

    async fn advance_outbox(
        &self,
        consumer: &str,
        position: OutboxPosition,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO outbox_positions (consumer, tx, id)
             VALUES ($1, $2::text::xid8, $3)
             ON CONFLICT (consumer) DO UPDATE SET tx = excluded.tx, id = excluded.id
             WHERE (outbox_positions.tx, outbox_positions.id) < (excluded.tx, excluded.id)",
        )
        .bind(consumer)
        .bind(position.tx.to_string())
        .bind(position.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox_backlog(
        &self,
    ) -> Result<Vec<(String, Option<chrono::DateTime<chrono::Utc>>)>, StoreError> {
        // The oldest event past each position, in the order consumers read.
        let rows = sqlx::query(
            "SELECT p.consumer, (SELECT o.created_at FROM outbox o WHERE (o.tx, o.id) > (p.tx, p.id)
                                 ORDER BY o.tx, o.id LIMIT 1) AS oldest
             FROM outbox_positions p ORDER BY p.consumer",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| Ok((row.try_get("consumer")?, row.try_get("oldest")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }
}
