//! What the shared queries need of a database, said once.
//!
//! sqlx 0.8 lets a function be generic over `DB: sqlx::Database`, but every sqlx call
//! needs bounds that Rust does not carry from one generic item to the next (a
//! where-clause on a trait is not implied where the trait is used): that a
//! `&mut DB::Connection` is an executor, that `Uuid` encodes for `DB`, that a row type
//! decodes from `DB::Row`, ... Repeated on every generic function and impl, they would
//! be most of the code. So each is stated once here, in a small trait with a blanket
//! implementation ([`Run`], [`Param`], [`Rows`]), and [`super::Backend`] lists those
//! traits as supertraits, which Rust does carry: generic code says `DB: Backend` and
//! nothing more. [`QueryExt`] puts them back into sqlx's builder style:
//! `sqlx::query(SQL).arg(id).fetch_optional_as::<UserRow>(conn)`.

use futures::future::BoxFuture;
use sqlx::query::Query;
use sqlx::{Database, Executor, FromRow, IntoArguments};

use super::Backend;

/// A query ready to run: its SQL and its parameters.
pub type Q<'q, DB> = Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// Running a query on a connection, for a database whose connections are executors.
pub trait Run: Database {
    fn run_execute<'q: 'c, 'c>(
        query: Q<'q, Self>,
        conn: &'c mut Self::Connection,
    ) -> BoxFuture<'c, Result<Self::QueryResult, sqlx::Error>>;
    fn run_fetch_all<'q: 'c, 'c>(
        query: Q<'q, Self>,
        conn: &'c mut Self::Connection,
    ) -> BoxFuture<'c, Result<Vec<Self::Row>, sqlx::Error>>;
    fn run_fetch_optional<'q: 'c, 'c>(
        query: Q<'q, Self>,
        conn: &'c mut Self::Connection,
    ) -> BoxFuture<'c, Result<Option<Self::Row>, sqlx::Error>>;
}

impl<DB> Run for DB
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    fn run_execute<'q: 'c, 'c>(
        query: Q<'q, Self>,
        conn: &'c mut Self::Connection,
    ) -> BoxFuture<'c, Result<Self::QueryResult, sqlx::Error>> {
        Box::pin(query.execute(conn))
    }

    fn run_fetch_all<'q: 'c, 'c>(
        query: Q<'q, Self>,
        conn: &'c mut Self::Connection,
    ) -> BoxFuture<'c, Result<Vec<Self::Row>, sqlx::Error>> {
        Box::pin(query.fetch_all(conn))
    }

    fn run_fetch_optional<'q: 'c, 'c>(
        query: Q<'q, Self>,
        conn: &'c mut Self::Connection,
    ) -> BoxFuture<'c, Result<Option<Self::Row>, sqlx::Error>> {
        Box::pin(query.fetch_optional(conn))
    }
}

/// A value `T` that binds as a parameter of this database.
pub trait Param<'q, T>: Database {
    fn bind_param(query: Q<'q, Self>, value: T) -> Q<'q, Self>;
}

impl<'q, DB, T> Param<'q, T> for DB
where
    DB: Database,
    T: sqlx::Encode<'q, DB> + sqlx::Type<DB> + Send + 'q,
{
    fn bind_param(query: Q<'q, Self>, value: T) -> Q<'q, Self> {
        query.bind(value)
    }
}

/// A row type `T` that decodes from this database's rows.
pub trait Rows<T>: Database {
    fn decode_row(row: &Self::Row) -> Result<T, sqlx::Error>;
}

impl<DB, T> Rows<T> for DB
where
    DB: Database,
    T: for<'r> FromRow<'r, DB::Row>,
{
    fn decode_row(row: &Self::Row) -> Result<T, sqlx::Error> {
        T::from_row(row)
    }
}

/// sqlx's builder calls, for any [`Backend`].
pub trait QueryExt<'q, DB: Backend>: Sized {
    fn into_query(self) -> Q<'q, DB>;

    /// Binds the next parameter (`bind`).
    fn arg<T>(self, value: T) -> Q<'q, DB>
    where
        DB: Param<'q, T>,
    {
        DB::bind_param(self.into_query(), value)
    }

    /// Runs the statement; how many rows it changed.
    fn execute_on<'c>(self, conn: &'c mut DB::Connection) -> BoxFuture<'c, Result<u64, sqlx::Error>>
    where
        'q: 'c,
    {
        let done = DB::run_execute(self.into_query(), conn);
        Box::pin(async move { Ok(DB::rows_affected(&done.await?)) })
    }

    /// Every row, decoded as `T`.
    fn fetch_all_as<'c, T: Send + 'c>(
        self,
        conn: &'c mut DB::Connection,
    ) -> BoxFuture<'c, Result<Vec<T>, sqlx::Error>>
    where
        'q: 'c,
        DB: Rows<T>,
    {
        let rows = DB::run_fetch_all(self.into_query(), conn);
        Box::pin(async move { rows.await?.iter().map(DB::decode_row).collect() })
    }

    /// The first row if any, decoded as `T`.
    fn fetch_optional_as<'c, T: Send + 'c>(
        self,
        conn: &'c mut DB::Connection,
    ) -> BoxFuture<'c, Result<Option<T>, sqlx::Error>>
    where
        'q: 'c,
        DB: Rows<T>,
    {
        let row = DB::run_fetch_optional(self.into_query(), conn);
        Box::pin(async move { row.await?.as_ref().map(DB::decode_row).transpose() })
    }

    /// The first row, decoded as `T`; none is an error.
    fn fetch_one_as<'c, T: Send + 'c>(
        self,
        conn: &'c mut DB::Connection,
    ) -> BoxFuture<'c, Result<T, sqlx::Error>>
    where
        'q: 'c,
        DB: Rows<T>,
    {
        let row = self.fetch_optional_as(conn);
        Box::pin(async move { row.await?.ok_or(sqlx::Error::RowNotFound) })
    }
}

impl<'q, DB: Backend> QueryExt<'q, DB> for Q<'q, DB> {
    fn into_query(self) -> Q<'q, DB> {
        self
    }
}
