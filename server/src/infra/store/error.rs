//! How a failed store operation is told apart, for both databases in one place.
//!
//! Callers see a [`StoreError`]: a taken unique value ([`StoreError::Conflict`], named by
//! the constraint or index that refused it, never guessed from the statement), a
//! database that is not answering ([`StoreError::Unavailable`], a 503), or a bug. The
//! store's own code asks [`is_foreign_key_violation`] (an unknown user or plan, a plan in
//! use) and [`is_lost_race`] (a transaction to run again). Each backend's codes are
//! listed side by side, so that the two cannot drift apart again.

use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; `field` names the column.
    #[error("{field} is already taken")]
    Conflict { field: &'static str },
    /// The database did not answer (closed pool, timeout, I/O, a restarting server).
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: a bug or corrupt data.
    #[error("database error")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if let Some(field) = taken_field(&error) {
            return Self::Conflict { field };
        }
        let unavailable = match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => is_transient(db.as_ref()),
            _ => false,
        };
        if unavailable {
            Self::Unavailable(error)
        } else {
            Self::Other(error)
        }
    }
}

/// The unique constraints whose violation is the caller's conflict, and the field each
/// one means: PostgreSQL reports the violated index by name, SQLite the table and
/// column(s) in its (unlocalised) message, "UNIQUE constraint failed: users.email". Any
/// other unique violation (a primary key: a repeated UUIDv7 would be a bug) is not a
/// conflict.
const TAKEN: [(&str, &str, &str); 2] = [
    // (PostgreSQL index, SQLite columns, field)
    ("users_username_lower_key", "users.username", "username"),
    ("users_email_lower_key", "users.email", "email"),
];

/// Which field a unique violation took, if it is one of [`TAKEN`].
fn taken_field(error: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    if !db.is_unique_violation() {
        return None;
    }
    let violated = match db.constraint() {
        Some(index) => index,
        None => db.message().strip_prefix("UNIQUE constraint failed: ")?,
    };
    TAKEN
        .iter()
        .find(|(index, columns, _)| violated == *index || violated == *columns)
        .map(|(_, _, field)| *field)
}

/// Whether a write referenced a row that is not there, or deleted one still referenced.
/// SQLite reports `ON DELETE RESTRICT` as `SQLITE_CONSTRAINT_TRIGGER` (1811), which sqlx
/// does not call a foreign-key violation, with the same message as the others.
pub fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    db.is_foreign_key_violation()
        || (db.try_downcast_ref::<SqliteError>().is_some()
            && db.code().as_deref() == Some("1811")
            && db.message().contains("FOREIGN KEY constraint failed"))
}

/// Whether a transaction was rolled back because of another one, so that running it
/// again will most likely succeed: PostgreSQL's serialization_failure and
/// deadlock_detected. (SQLite's writers take turns, so it has no such error.)
pub fn is_lost_race(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|pg| is_lost_race_code(pg.code())),
        _ => false,
    }
}

fn is_lost_race_code(code: &str) -> bool {
    matches!(code, "40001" | "40P01")
}

/// Whether a database error means "try again later" rather than a bug.
fn is_transient(error: &(dyn DatabaseError + 'static)) -> bool {
    if error.try_downcast_ref::<SqliteError>().is_some() {
        // SQLITE_BUSY (5), SQLITE_LOCKED (6), SQLITE_BUSY_RECOVERY (261),
        // SQLITE_BUSY_SNAPSHOT (517), after the busy timeout.
        return matches!(error.code().as_deref(), Some("5" | "6" | "261" | "517"));
    }
    let Some(error) = error.try_downcast_ref::<PgDatabaseError>() else {
        return false;
    };
    let code = error.code();
    // Class 08: connection exception. Class 53: insufficient resources (too many
    // connections, out of memory or disk).
    code.starts_with("08")
        || code.starts_with("53")
        // admin_shutdown, crash_shutdown, cannot_connect_now (starting up or in recovery),
        // and query_canceled, which is what statement_timeout raises.
        || matches!(code, "57P01" | "57P02" | "57P03" | "57014")
        || is_lost_race_code(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_retry_later_codes_are_lost_races() {
        assert!(is_lost_race_code("40001") && is_lost_race_code("40P01"));
        assert!(!is_lost_race_code("23505") && !is_lost_race_code("57014"));
    }

    #[test]
    fn each_taken_field_is_named_on_both_backends() {
        for (index, columns, field) in TAKEN {
            assert!(index.contains(field) && columns.ends_with(field));
        }
    }
}
