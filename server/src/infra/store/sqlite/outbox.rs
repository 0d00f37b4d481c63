//! The outbox on SQLite: events in id order (one writer at a time, so ids commit in
//! order), positions per consumer.

use async_trait::async_trait;
use sqlx::Row;

use super::SqliteStore;
use crate::domain::events::Event;
use crate::infra::store::{
    OutboxEntry, OutboxPosition, OutboxStore, StoreError, now_millis, outbox_event,
};

/// Adds `event` to the outbox, in the caller's transaction.
pub(super) async fn add(
    conn: &mut sqlx::SqliteConnection,
    event: &Event,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (event, created_at) VALUES (?, ?)")
        .bind(outbox_event(event))
        .bind(now_millis())
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn outbox_after(
        &self,
        consumer: &str,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event FROM outbox
             WHERE id > coalesce((SELECT position FROM outbox_positions WHERE consumer = ?), 0)
             ORDER BY id LIMIT ?",
        )
        .bind(consumer)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            entries.push(OutboxEntry {
                position: OutboxPosition {
                    tx: 0,
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
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO outbox_positions (consumer, position) VALUES (?, ?)
             ON CONFLICT (consumer) DO UPDATE SET position = max(position, excluded.position)",
        )
        .bind(consumer)
        .bind(position.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox_backlog(
        &self,
    ) -> Result<Vec<(String, Option<chrono::DateTime<chrono::Utc>>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.consumer, (SELECT o.created_at FROM outbox o WHERE o.id > p.position
                                 ORDER BY o.id LIMIT 1) AS oldest
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
