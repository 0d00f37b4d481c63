//! The outbox: events written in the transaction of the change they announce, read by
//! each consumer from a position it keeps in `outbox_positions`, one instance at a time
//! (a turn: [`OutboxStore::claim_outbox`]).
//!
//! The one real difference between the backends is the order events become visible in.
//! SQLite has one writer at a time, so ids commit in order and a position is an id (its
//! `tx` is always 0). On PostgreSQL concurrent transactions take ids in one order and may
//! commit in another, so events are read in (transaction, id) order and only from
//! transactions older than any still running, so that a position never steps past an
//! event that commits later (see `migrations/postgres/0006_outbox.sql`). Hence one
//! statement per dialect below, each bound with the same parameters.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Transaction;

use super::rows::OutboxRow;
use super::{Backend, QueryExt, Sql, SqlStore};
use crate::domain::events::Event;
use crate::infra::store::{
    EndTurn, OutboxEntry, OutboxPosition, OutboxStore, OutboxTurn, StoreError, now_millis,
    outbox_event,
};

/// `$1` the event's JSON, `$2` now (PostgreSQL's rows take the database's clock instead,
/// and the transaction id, by default).
const ADD: Sql = Sql {
    sqlite: "INSERT INTO outbox (event, created_at) VALUES ($1, $2)",
    postgres: "INSERT INTO outbox (event) VALUES ($1::jsonb)",
};

/// `$1` a JSON array of events' JSON texts, added in the array's order; `$2` now, as
/// [`ADD`].
const ADD_ALL: Sql = Sql {
    sqlite: "INSERT INTO outbox (event, created_at)
             SELECT value, $2 FROM json_each($1) ORDER BY key",
    postgres: "INSERT INTO outbox (event)
               SELECT event::jsonb FROM json_array_elements_text($1::json)
                   WITH ORDINALITY AS batch (event, n)
               ORDER BY n",
};

/// `$1` consumer, `$2` the most events.
const AFTER: Sql = Sql {
    sqlite: "SELECT id, 0 AS tx, event, created_at AS written_at FROM outbox
             WHERE id > coalesce((SELECT position FROM outbox_positions WHERE consumer = $1), 0)
             ORDER BY id LIMIT $2",
    postgres: "WITH position AS (
                   SELECT coalesce((SELECT tx FROM outbox_positions WHERE consumer = $1),
                                   '0'::xid8) AS tx,
                          coalesce((SELECT id FROM outbox_positions WHERE consumer = $1), 0) AS id)
               SELECT o.id, o.tx::text::bigint AS tx, o.event::text AS event,
                      o.created_at AS written_at
               FROM outbox o, position p
               WHERE (o.tx, o.id) > (p.tx, p.id)
                 AND o.tx < pg_snapshot_xmin(pg_current_snapshot())
               ORDER BY o.tx, o.id LIMIT $2",
};

/// `$1` consumer, `$2` transaction (as text: PostgreSQL's xid8 has no binary sqlx type),
/// `$3` id. A position only moves forwards.
const ADVANCE: Sql = Sql {
    sqlite: "INSERT INTO outbox_positions (consumer, position) VALUES ($1, $3)
             ON CONFLICT (consumer) DO UPDATE SET position = max(position, excluded.position)",
    postgres: "INSERT INTO outbox_positions (consumer, tx, id) VALUES ($1, $2::text::xid8, $3)
               ON CONFLICT (consumer) DO UPDATE SET tx = excluded.tx, id = excluded.id
               WHERE (outbox_positions.tx, outbox_positions.id) < (excluded.tx, excluded.id)",
};

/// `$1` consumer: takes the consumer's turn for the rest of the transaction, if no other
/// transaction has it (PostgreSQL only: SQLite's one process takes turns in memory).
/// Advisory locks are database-wide, so the key names the schema too: deployments (and
/// tests) in other schemas of one database keep turns of their own.
const TAKE_TURN: &str = "SELECT pg_try_advisory_xact_lock(hashtextextended(
                             'minitter.outbox.' || current_schema() || '.' || $1, 0))";

/// Each consumer and the time of the oldest event past its position, in reading order.
const BACKLOG: Sql = Sql {
    sqlite: "SELECT p.consumer, (SELECT o.created_at FROM outbox o WHERE o.id > p.position
                                 ORDER BY o.id LIMIT 1) AS oldest
             FROM outbox_positions p ORDER BY p.consumer",
    postgres: "SELECT p.consumer, (SELECT o.created_at FROM outbox o
                                   WHERE (o.tx, o.id) > (p.tx, p.id)
                                   ORDER BY o.tx, o.id LIMIT 1) AS oldest
               FROM outbox_positions p ORDER BY p.consumer",
};

/// `$1` the cutoff, `$2` the most events: of the oldest `$2` events (in reading order),
/// those older than the cutoff that no consumer's position is still before.
const PRUNE: Sql = Sql {
    sqlite: "DELETE FROM outbox WHERE id IN (
                 SELECT o.id FROM (SELECT id, created_at FROM outbox ORDER BY id LIMIT $2) o
                 WHERE o.created_at < $1
                   AND NOT EXISTS (SELECT 1 FROM outbox_positions p WHERE p.position < o.id))",
    postgres: "DELETE FROM outbox WHERE id IN (
                   SELECT o.id FROM (SELECT id, tx, created_at FROM outbox
                                     ORDER BY tx, id LIMIT $2) o
                   WHERE o.created_at < $1
                     AND NOT EXISTS (SELECT 1 FROM outbox_positions p
                                     WHERE (p.tx, p.id) < (o.tx, o.id)))",
};

/// Adds `event` to the outbox, in the caller's transaction.
pub(super) async fn add<DB: Backend>(
    tx: &mut Transaction<'static, DB>,
    event: &Event,
) -> Result<(), sqlx::Error> {
    sqlx::query::<DB>(DB::pick(&ADD))
        .arg(outbox_event(event))
        .arg(now_millis())
        .execute_on(&mut **tx)
        .await?;
    Ok(())
}

/// Adds `events` to the outbox in their order, in the caller's transaction, with one
/// statement (a group of posts on SQLite).
pub(super) async fn add_all<DB: Backend>(
    tx: &mut Transaction<'static, DB>,
    events: impl Iterator<Item = &Event>,
) -> Result<(), sqlx::Error> {
    let texts: Vec<String> = events.map(outbox_event).collect();
    sqlx::query::<DB>(DB::pick(&ADD_ALL))
        .arg(super::json_list(&texts)?)
        .arg(now_millis())
        .execute_on(&mut **tx)
        .await?;
    Ok(())
}

/// Up to `limit` events after `consumer`'s position, read on `conn`.
async fn read_after<DB: Backend>(
    conn: &mut DB::Connection,
    consumer: &str,
    limit: u32,
) -> Result<Vec<OutboxEntry>, sqlx::Error> {
    let rows: Vec<OutboxRow> = sqlx::query::<DB>(DB::pick(&AFTER))
        .arg(consumer)
        .arg(i64::from(limit))
        .fetch_all_as(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| OutboxEntry {
            position: OutboxPosition {
                tx: row.tx,
                id: row.id,
            },
            event: row.event,
            written_at: row.written_at,
        })
        .collect())
}

/// Moves `consumer`'s position to `position`, on `conn`.
async fn advance<DB: Backend>(
    conn: &mut DB::Connection,
    consumer: &str,
    position: OutboxPosition,
) -> Result<(), sqlx::Error> {
    sqlx::query::<DB>(DB::pick(&ADVANCE))
        .arg(consumer)
        .arg(position.tx.to_string())
        .arg(position.id)
        .execute_on(conn)
        .await?;
    Ok(())
}

/// A turn that ends with its transaction (PostgreSQL): the position moves in it, and the
/// commit releases the advisory lock.
struct TransactionTurn<DB: Backend> {
    tx: Transaction<'static, DB>,
    consumer: String,
}

#[async_trait]
impl<DB: Backend> EndTurn for TransactionTurn<DB> {
    async fn end(mut self: Box<Self>, through: Option<OutboxPosition>) -> Result<(), StoreError> {
        if let Some(position) = through {
            advance::<DB>(&mut self.tx, &self.consumer, position).await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

/// A turn the process took by itself (SQLite): the position moves in a write of its own.
struct ProcessTurn<DB: Backend> {
    store: SqlStore<DB>,
    consumer: String,
}

#[async_trait]
impl<DB: Backend> EndTurn for ProcessTurn<DB> {
    async fn end(self: Box<Self>, through: Option<OutboxPosition>) -> Result<(), StoreError> {
        match through {
            Some(position) => self.store.advance_outbox(&self.consumer, position).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl<DB: Backend> OutboxStore for SqlStore<DB> {
    async fn outbox_after(
        &self,
        consumer: &str,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(read_after::<DB>(&mut *self.conn().await?, consumer, limit).await?)
    }

    async fn claim_outbox(
        &self,
        consumer: &str,
        limit: u32,
    ) -> Result<Option<OutboxTurn>, StoreError> {
        if self.is_serialised() {
            let entries = self.outbox_after(consumer, limit).await?;
            let end = ProcessTurn {
                store: self.without_posts(),
                consumer: consumer.to_owned(),
            };
            return Ok(Some(OutboxTurn::new(entries, Box::new(end))));
        }
        let mut tx = self.pool.begin().await?;
        let (ours,): (bool,) = Self::query(TAKE_TURN)
            .arg(consumer)
            .fetch_one_as(&mut *tx)
            .await?;
        if !ours {
            return Ok(None);
        }
        let entries = read_after::<DB>(&mut tx, consumer, limit).await?;
        let end = TransactionTurn {
            tx,
            consumer: consumer.to_owned(),
        };
        Ok(Some(OutboxTurn::new(entries, Box::new(end))))
    }

    async fn advance_outbox(
        &self,
        consumer: &str,
        position: OutboxPosition,
    ) -> Result<(), StoreError> {
        let _turn = self.turn().await;
        Ok(advance::<DB>(&mut *self.conn().await?, consumer, position).await?)
    }

    async fn outbox_backlog(&self) -> Result<Vec<(String, Option<DateTime<Utc>>)>, StoreError> {
        Ok(Self::dialect(&BACKLOG)
            .fetch_all_as(&mut *self.conn().await?)
            .await?)
    }

    async fn prune_outbox(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        // A short write in SQLite's turn (one batch), so writers wait for one batch at most.
        let _turn = self.turn().await;
        Ok(Self::dialect(&PRUNE)
            .arg(cutoff)
            .arg(i64::from(batch))
            .execute_on(&mut *self.conn().await?)
            .await?)
    }
}
