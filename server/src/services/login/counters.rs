//! What a place that keeps login budgets must do, whichever it is (this process or
//! Redis): decide a whole group of budgets in one atomic step, a reservation in every
//! budget of the group or in none, and settle a reservation once its attempt's outcome is
//! known. The guard ([`super::guard`]) speaks only this language, so the in-process and the
//! Redis backends are interchangeable: the server's login tests (`server/tests/api/auth.rs`)
//! run the same expectations against both.

use std::time::Duration;

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::http::error::ApiError;

/// One budget: the counter it is kept in, and how many failures it allows.
#[derive(Debug, Clone)]
pub(super) struct Budget {
    pub(super) counter: String,
    pub(super) limit: u64,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// A slot is held in every budget of the group.
    Reserved,
    /// Failures and reservations fill a budget: wait for the reservations' outcomes.
    Busy,
    /// Failures alone fill a budget; one leaves the window in this long.
    Spent { retry_after: Duration },
}

impl Verdict {
    /// The verdict of a group, given one budget's: spent beats busy beats reserved.
    pub(super) fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::Spent { retry_after: a }, Self::Spent { retry_after: b }) => Self::Spent {
                retry_after: a.max(b),
            },
            (spent @ Self::Spent { .. }, _) | (_, spent @ Self::Spent { .. }) => spent,
            (Self::Busy, _) | (_, Self::Busy) => Self::Busy,
            _ => Self::Reserved,
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// A wrong password (or an attempt that was lost): the reservation becomes a failure.
    Failed,
    /// A correct password, or nothing was hashed: the reservation is given back (and so is
    /// the failure its lost lease was taken for).
    Released,
}

/// Budgets kept as sliding logs. A group of budgets is decided in one atomic step: a
/// reservation holds a slot in each of them, or in none.
pub(super) trait AttemptCounters: Send + Sync {
    fn reserve<'a>(
        &'a self,
        group: &'a [Budget],
        id: Uuid,
    ) -> BoxFuture<'a, Result<Verdict, ApiError>>;
    fn settle<'a>(
        &'a self,
        group: &'a [Budget],
        id: Uuid,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
}
