//! The `api_keys` table: the operator API's keys, and the gateway's lookup of a
//! request's key with its plan.
//!
//! A key in an unknown plan fails its foreign key ([`KeyWrite::UnknownPlan`]), rather
//! than a check before the write that another writer could outdate. Updates return the
//! row they wrote (`RETURNING`). Secrets are stored only hashed ([`secret_hash`]).

use async_trait::async_trait;
use uuid::Uuid;

use super::rows::{KeyPlanRow, KeyRow, key_columns, networks_column};
use super::{Backend, QueryExt, SqlStore, overfetch};
use crate::infra::store::error::is_foreign_key_violation;
use crate::infra::store::{
    KeyChanges, KeyRecord, KeySettings, KeyStore, KeyWrite, NewKey, Page, PlanRecord, StoreError,
    new_secret, secret_hash, secret_prefix,
};

#[async_trait]
impl<DB: Backend> KeyStore for SqlStore<DB> {
    async fn create_key(&self, settings: KeySettings) -> Result<KeyWrite<NewKey>, StoreError> {
        let new = NewKey::new(settings);
        let key = &new.record;
        let ip_allow = networks_column(&key.ip_policy.allow);
        let ip_deny = networks_column(&key.ip_policy.deny);
        let _turn = self.turn().await;
        let inserted = Self::query(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, plan_id, enabled, created_at,
                 ip_allow, ip_deny)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .arg(key.id)
        .arg(key.name.as_str())
        .arg(key.prefix.as_str())
        .arg(secret_hash(&new.secret))
        .arg(key.plan_id)
        .arg(key.enabled)
        .arg(key.created_at)
        .arg(ip_allow.as_str())
        .arg(ip_deny.as_str())
        .execute_on(&mut *self.conn().await?)
        .await;
        match inserted {
            Ok(_) => Ok(KeyWrite::Done(new)),
            Err(error) if is_foreign_key_violation(&error) => Ok(KeyWrite::UnknownPlan),
            Err(error) => Err(error.into()),
        }
    }

    async fn key(&self, id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
        let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1");
        let row: Option<KeyRow> = Self::query(sql)
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(row.map(KeyRecord::try_from).transpose()?)
    }

    async fn keys(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<KeyRecord, Uuid>, StoreError> {
        // UUIDv7 ids: newest first is id order, and Uuid::max() is past every id.
        let sql = concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE id < $1 ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<KeyRow> = Self::query(sql)
            .arg(before.unwrap_or(Uuid::max()))
            .arg(overfetch(limit))
            .fetch_all_as(&mut *self.conn().await?)
            .await?;
        let keys = rows
            .into_iter()
            .map(KeyRecord::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Page::by_id(keys, limit, |key| key.id))
    }

    async fn keys_in_plan(&self, plan_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let rows: Vec<(Uuid,)> =
            Self::query("SELECT id FROM api_keys WHERE plan_id = $1 ORDER BY id")
                .arg(plan_id)
                .fetch_all_as(&mut *self.conn().await?)
                .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn update_key(
        &self,
        id: Uuid,
        changes: KeyChanges,
    ) -> Result<KeyWrite<KeyRecord>, StoreError> {
        // COALESCE: a field left out (a NULL) keeps its value.
        let sql = concat!(
            "UPDATE api_keys SET name = COALESCE($1, name), plan_id = COALESCE($2, plan_id),
                 enabled = COALESCE($3, enabled), ip_allow = COALESCE($4, ip_allow),
                 ip_deny = COALESCE($5, ip_deny)
             WHERE id = $6 RETURNING ",
            key_columns!()
        );
        let policy = changes.ip_policy.as_ref();
        let ip_allow = policy.map(|policy| networks_column(&policy.allow));
        let ip_deny = policy.map(|policy| networks_column(&policy.deny));
        let _turn = self.turn().await;
        let updated: Result<Option<KeyRow>, _> = Self::query(sql)
            .arg(changes.name.as_deref())
            .arg(changes.plan_id)
            .arg(changes.enabled)
            .arg(ip_allow.as_deref())
            .arg(ip_deny.as_deref())
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await;
        match updated {
            Ok(Some(row)) => Ok(KeyWrite::Done(row.try_into()?)),
            Ok(None) => Ok(KeyWrite::NotFound),
            Err(error) if is_foreign_key_violation(&error) => Ok(KeyWrite::UnknownPlan),
            Err(error) => Err(error.into()),
        }
    }

    async fn rotate_key(&self, id: Uuid) -> Result<Option<NewKey>, StoreError> {
        let secret = new_secret();
        // One statement: from its commit on, only the new secret's hash matches.
        let sql = concat!(
            "UPDATE api_keys SET secret_hash = $1, prefix = $2 WHERE id = $3 RETURNING ",
            key_columns!()
        );
        let _turn = self.turn().await;
        let row: Option<KeyRow> = Self::query(sql)
            .arg(secret_hash(&secret))
            .arg(secret_prefix(&secret))
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        row.map(|row| {
            Ok(NewKey {
                record: row.try_into()?,
                secret,
            })
        })
        .transpose()
    }

    async fn delete_key(&self, id: Uuid) -> Result<bool, StoreError> {
        let _turn = self.turn().await;
        let deleted = Self::query("DELETE FROM api_keys WHERE id = $1")
            .arg(id)
            .execute_on(&mut *self.conn().await?)
            .await?;
        Ok(deleted == 1)
    }

    async fn key_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<(KeyRecord, PlanRecord, String)>, StoreError> {
        // One query through the unique index on secret_hash: the key and its plan are read
        // from one snapshot, so they agree with each other.
        let row: Option<KeyPlanRow> = Self::query(
            "SELECT k.id, k.name, k.prefix, k.plan_id, k.enabled, k.created_at, k.last_used_at,
                 k.ip_allow, k.ip_deny, k.secret_hash,
                 p.name AS plan_name, p.description AS plan_description,
                 p.throttle_rate, p.throttle_burst, p.quota_limit, p.quota_period,
                 p.allow_cache_refresh, p.ip_allow AS plan_ip_allow, p.ip_deny AS plan_ip_deny, p.webhook_limit,
                 p.stream_connection_limit,
                 p.created_at AS plan_created_at
             FROM api_keys k JOIN usage_plans p ON p.id = k.plan_id
             WHERE k.secret_hash = $1",
        )
        .arg(secret_hash)
        .fetch_optional_as(&mut *self.conn().await?)
        .await?;
        Ok(row.map(TryInto::try_into).transpose()?)
    }
}
