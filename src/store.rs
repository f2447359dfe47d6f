//! Storage: one sqlx `Any` pool over SQLite (default) or PostgreSQL.
//!
//! Queries are written once with `$n` placeholders, which both drivers accept,
//! against the portable schema in `migrations/`. The serving path never calls
//! this module: it reads the registry snapshot and the auth cache. Every SQL
//! statement goes through here and is counted, so tests and metrics can prove it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, Row};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("duplicate: {0}")]
    Conflict(String),
    #[error("still referenced: {0}")]
    Referenced(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Something only the operator can fix (retrying will not help).
    #[error("{0}")]
    Setup(String),
    /// A leader write carried a fencing token older than one already used:
    /// this replica lost the lease and another leader has written since.
    #[error("refused a write of a former leader (fencing token {0} is stale)")]
    Fenced(i64),
    #[error("stored data is corrupt in {table}.{column}: {message}")]
    Corrupt {
        table: &'static str,
        column: &'static str,
        message: String,
    },
}

impl StoreError {
    /// The HTTP status this failure means, wherever it surfaces.
    pub fn status(&self) -> u16 {
        match self {
            StoreError::Conflict(_) | StoreError::Referenced(_) | StoreError::Fenced(_) => 409,
            StoreError::Unavailable(_) => 503,
            StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::Setup(_)
            | StoreError::Corrupt { .. } => 500,
        }
    }
}

fn classify(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.message().contains("prepared statement")
        && db.message().contains("already exists")
    {
        return StoreError::Unavailable(format!(
            "{} (this looks like PgBouncer in transaction pooling mode: set DB_PREPARE_THRESHOLD=0)",
            db.message()
        ));
    }
    match &e {
        // SQLite busy or locked (5, 6, 261, 517): another writer holds the
        // file; nothing is wrong but the moment, so the client may retry.
        sqlx::Error::Database(db)
            if matches!(db.code().as_deref(), Some("5" | "6" | "261" | "517")) =>
        {
            StoreError::Unavailable(db.message().to_owned())
        }
        sqlx::Error::Database(db) => match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::error::ErrorKind::ForeignKeyViolation => {
                StoreError::Referenced(db.message().to_owned())
            }
            _ => StoreError::Database(e),
        },
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Database(e),
    }
}

/// The database named in the URL does not exist: say how to create it.
fn missing_database(message: &str, config: &Config) -> String {
    let url = crate::config::normalize_database_url(&config.database_url);
    let Ok(u) = url::Url::parse(&url) else {
        return message.to_owned();
    };
    let name = u.path().trim_start_matches('/');
    let mut createdb = format!("createdb -h {}", u.host_str().unwrap_or("127.0.0.1"));
    if let Some(port) = u.port() {
        createdb.push_str(&format!(" -p {port}"));
    }
    if !u.username().is_empty() {
        createdb.push_str(&format!(" -U {}", u.username()));
    }
    format!(
        "{message}: create it first ({createdb} {name}, or CREATE DATABASE \"{name}\"; as a superuser); mcpgate then creates its tables"
    )
}

/// A value bound to a statement. The `Any` driver moves only a few scalar
/// types, which is all the portable schema uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Text(Option<String>),
    Int(Option<i64>),
    Real(Option<f64>),
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(Some(v))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Val::Text(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(Some(v as i64))
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(Some(v))
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Val::Int(v)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::Real(Some(v))
    }
}

fn bind<'q>(mut q: Query<'q, Any, AnyArguments>, vals: Vec<Val>) -> Query<'q, Any, AnyArguments> {
    for v in vals {
        q = match v {
            Val::Text(t) => q.bind(t),
            Val::Int(i) => q.bind(i),
            Val::Real(r) => q.bind(r),
        };
    }
    q
}

/// A row type stored in one table, the first column being its `id`.
pub trait Record: Sized + Send + Sync {
    const TABLE: &'static str;
    const COLUMNS: &'static [&'static str];
    fn id(&self) -> &str;
    fn values(&self) -> Vec<Val>;
    fn from_row(row: &AnyRow) -> Result<Self, StoreError>;
}

/// Reads a column, naming it on failure.
pub fn col<'r, T>(
    row: &'r AnyRow,
    table: &'static str,
    column: &'static str,
) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column).map_err(|e| StoreError::Corrupt {
        table,
        column,
        message: e.to_string(),
    })
}

pub fn col_bool(
    row: &AnyRow,
    table: &'static str,
    column: &'static str,
) -> Result<bool, StoreError> {
    Ok(col::<i64>(row, table, column)? != 0)
}

/// Reads a JSON text column into a value.
pub fn col_json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    table: &'static str,
    column: &'static str,
) -> Result<T, StoreError> {
    let text: String = col(row, table, column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        table,
        column,
        message: e.to_string(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    queries: Arc<AtomicU64>,
    /// `db_query_duration_seconds`: each statement's time, pool wait
    /// included (what a request waits for).
    durations: prometheus::Histogram,
    /// Named, cached server-side statements (`DB_PREPARE_THRESHOLD` > 0).
    /// Off, every statement is unnamed: what PgBouncer's transaction
    /// pooling needs, where a client's next transaction may run on another
    /// server connection.
    persistent: bool,
}

/// Adds driver options to the configured URL: SQLite creates its file;
/// PostgreSQL with `DB_PREPARE_THRESHOLD=0` keeps no statement cache.
fn connect_url(config: &Config) -> String {
    let url = crate::config::normalize_database_url(&config.database_url);
    let sep = if url.contains('?') { '&' } else { '?' };
    if url.starts_with("sqlite:") {
        if url.contains("mode=") {
            url
        } else {
            format!("{url}{sep}mode=rwc")
        }
    } else if config.db_prepare_threshold == 0 && !url.contains("statement-cache-capacity") {
        format!("{url}{sep}statement-cache-capacity=0")
    } else {
        url
    }
}

/// `name(q)`: runs `q` with `method` on the pool, or pinned to one
/// connection through PgBouncer (see `Store::pinned`).
macro_rules! on_pool {
    ($name:ident, $method:ident, $out:ty) => {
        async fn $name(&self, q: Query<'static, Any, AnyArguments>) -> Result<$out, sqlx::Error> {
            let _timer = self.durations.start_timer();
            if self.persistent {
                return q.$method(&self.pool).await;
            }
            self.pinned(q, |q, c| Box::pin(q.$method(c))).await
        }
    };
}

impl Store {
    fn query(&self, sql: impl sqlx::SqlSafeStr) -> Query<'static, Any, AnyArguments> {
        sqlx::query(sql).persistent(self.persistent)
    }

    pub async fn connect(config: &Config) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if config.is_postgres() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        // SQLite serialises writers; a handful of connections serve reads and
        // avoid piling up writers on the file lock.
        let max = match backend {
            Backend::Postgres => config.db_pool_size + config.db_max_overflow,
            Backend::Sqlite => (config.db_pool_size + config.db_max_overflow).min(8),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(config.db_pool_timeout))
            .max_lifetime(Duration::from_secs(config.db_pool_recycle.max(1)))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url(config))
            .await
            .map_err(|e| {
                if let sqlx::Error::Database(db) = &e
                    && db.code().as_deref() == Some("3D000")
                {
                    return StoreError::Setup(missing_database(db.message(), config));
                }
                let m = e.to_string();
                if m.contains("extra_float_digits") {
                    StoreError::Unavailable(format!(
                        "{m} (PgBouncer refuses a startup parameter the driver sends: add `ignore_startup_parameters = extra_float_digits` to pgbouncer.ini; the edoburu/pgbouncer image sets it by default)"
                    ))
                } else {
                    StoreError::Unavailable(m)
                }
            })?;
        let durations = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "db_query_duration_seconds",
                "Time of each SQL statement, waiting for a pooled connection included",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
        )
        .expect("valid metric");
        Ok(Store {
            pool,
            backend,
            queries: Arc::new(AtomicU64::new(0)),
            durations,
            persistent: backend == Backend::Sqlite || config.db_prepare_threshold > 0,
        })
    }

    /// Runs one statement on the pool. Through PgBouncer (unnamed
    /// statements) it runs in a transaction of its own: sqlx prepares and
    /// executes in two round trips, and outside a transaction PgBouncer may
    /// send them to different server connections.
    async fn pinned<'q, T, F>(
        &self,
        q: Query<'q, Any, AnyArguments>,
        run: F,
    ) -> Result<T, sqlx::Error>
    where
        F: for<'c> FnOnce(
            Query<'q, Any, AnyArguments>,
            &'c mut sqlx::AnyConnection,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'c>,
        >,
        'q: 'static,
    {
        let mut tx = self.pool.begin().await?;
        let r = run(q, &mut tx).await;
        if r.is_ok() {
            tx.commit().await?;
        }
        r
    }

    on_pool!(row, fetch_optional, Option<AnyRow>);
    on_pool!(one, fetch_one, AnyRow);
    on_pool!(exec, execute, sqlx::any::AnyQueryResult);

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `db_query_duration_seconds`, to register where metrics are served.
    pub fn query_durations(&self) -> prometheus::Histogram {
        self.durations.clone()
    }

    /// `(the pool's size, connections in use)`.
    pub fn pool_usage(&self) -> (u32, u32) {
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(open);
        (
            self.pool.options().get_max_connections(),
            open.saturating_sub(idle),
        )
    }

    /// Number of SQL statements this store has run.
    pub fn query_count(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies the migrations. Through PgBouncer (`DB_PREPARE_THRESHOLD=0`)
    /// the session-level advisory lock sqlx takes cannot work (lock and
    /// unlock may land on different server connections), so it is not
    /// taken; replicas starting together may then race, and the loser
    /// retries once the winner's migration is visible.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = sqlx::migrate!("./migrations");
        self.count();
        if self.backend == Backend::Postgres && !self.persistent {
            return self.migrate_in_one_transaction(&migrator).await;
        }
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// sqlx's migrator as PgBouncer's transaction pooling allows it: the
    /// whole check-and-apply in one transaction (one server connection),
    /// serialized between replicas by a transaction-scoped advisory lock,
    /// with unnamed statements and the simple protocol. It keeps sqlx's
    /// bookkeeping table, so either way of migrating sees the other's work.
    async fn migrate_in_one_transaction(
        &self,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<(), StoreError> {
        use sqlx::migrate::MigrateError;
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let raw = |sql: &'static str| sqlx::raw_sql(sql);
        raw("SELECT pg_advisory_xact_lock(7343823640283141)")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        raw("CREATE TABLE IF NOT EXISTS _sqlx_migrations (\
               version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
               installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, \
               checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let rows = self
            .query("SELECT version, encode(checksum, 'hex') AS checksum, CASE WHEN success THEN 1 ELSE 0 END AS ok FROM _sqlx_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        let mut applied = std::collections::HashMap::new();
        for r in &rows {
            let version: i64 = col(r, "_sqlx_migrations", "version")?;
            let checksum: String = col(r, "_sqlx_migrations", "checksum")?;
            let ok: i64 = col(r, "_sqlx_migrations", "ok")?;
            applied.insert(version, (checksum, ok == 1));
        }
        for m in migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
        {
            let hex: String = m.checksum.iter().map(|b| format!("{b:02x}")).collect();
            match applied.get(&m.version) {
                Some((_, false)) => return Err(MigrateError::Dirty(m.version).into()),
                Some((sum, true)) if *sum != hex => {
                    return Err(MigrateError::VersionMismatch(m.version).into());
                }
                Some(_) => continue,
                None => {}
            }
            let started = std::time::Instant::now();
            sqlx::raw_sql(AssertSqlSafe(m.sql.as_str().to_owned()))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            bind(
                self.query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, $2, TRUE, decode($3, 'hex'), $4)"),
                vec![
                    Val::from(m.version),
                    Val::from(m.description.as_ref()),
                    Val::from(hex),
                    Val::from(started.elapsed().as_nanos() as i64),
                ],
            )
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            tracing::info!(version = m.version, description = %m.description, "migration applied");
        }
        tx.commit().await.map_err(classify)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.count();
        self.exec(self.query("SELECT 1")).await.map_err(classify)?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Every row of `R`'s table, read in one transaction.
    pub async fn load_all<R: Record>(&self) -> Result<Vec<R>, StoreError> {
        let mut tx = self.begin_read().await?;
        let rows = tx.load_all().await?;
        tx.commit().await?;
        Ok(rows)
    }

    pub async fn fetch_optional<R: Record>(
        &self,
        filter_column: &'static str,
        value: Val,
    ) -> Result<Option<R>, StoreError> {
        self.count();
        let sql = format!(
            "SELECT {} FROM {} WHERE {filter_column} = $1",
            R::COLUMNS.join(", "),
            R::TABLE
        );
        let row = self
            .row(bind(self.query(AssertSqlSafe(sql)), vec![value]))
            .await
            .map_err(classify)?;
        row.as_ref().map(R::from_row).transpose()
    }

    /// Rows of `R` whose `filter_column` equals `value`.
    pub async fn fetch_where<R: Record>(
        &self,
        filter_column: &'static str,
        value: Val,
    ) -> Result<Vec<R>, StoreError> {
        let mut tx = self.begin_read().await?;
        let rows = tx.fetch_where(filter_column, value).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The first column of the first row, as an integer (`None`: no row).
    pub async fn scalar_i64(
        &self,
        sql: &'static str,
        vals: Vec<Val>,
    ) -> Result<Option<i64>, StoreError> {
        self.count();
        let row = self
            .row(bind(self.query(sql), vals))
            .await
            .map_err(classify)?;
        row.map(|r| r.try_get::<i64, _>(0).map_err(classify))
            .transpose()
    }

    pub async fn exists(&self, sql: &'static str, vals: Vec<Val>) -> Result<bool, StoreError> {
        self.count();
        let row = self
            .row(bind(self.query(sql), vals))
            .await
            .map_err(classify)?;
        Ok(row.is_some())
    }

    pub async fn registry_version(&self) -> Result<i64, StoreError> {
        self.count();
        let row = self
            .one(self.query("SELECT version FROM registry_state WHERE id = 1"))
            .await
            .map_err(classify)?;
        col(&row, "registry_state", "version")
    }

    /// A read-only transaction that sees one state of the database (the
    /// snapshot is built in one, so it never mixes two writes' halves).
    pub async fn begin_read(&self) -> Result<Tx<'_>, StoreError> {
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            tx.run(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY".to_owned(),
                vec![],
            )
            .await?;
        }
        Ok(tx)
    }

    pub async fn begin(&self) -> Result<Tx<'_>, StoreError> {
        self.count();
        let tx = self.pool.begin().await.map_err(classify)?;
        Ok(Tx { store: self, tx })
    }

    /// A transaction that will write. SQLite takes the write lock at once
    /// (`BEGIN IMMEDIATE`, waiting up to its busy timeout): a transaction
    /// that reads first and writes later cannot take it once another
    /// writer committed meanwhile, and fails at once ("database is
    /// locked", `SQLITE_BUSY_SNAPSHOT`) whatever the timeout.
    pub async fn begin_write(&self) -> Result<Tx<'_>, StoreError> {
        if self.backend != Backend::Sqlite {
            return self.begin().await;
        }
        self.count();
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)?;
        Ok(Tx { store: self, tx })
    }
}

/// A transaction. The SQL that changes registry tables is written in the
/// registry's write door (`registry::updater`), which is the only user of
/// this type; the store only moves statements and values.
pub struct Tx<'s> {
    store: &'s Store,
    tx: sqlx::Transaction<'static, Any>,
}

impl Tx<'_> {
    /// Runs one statement; returns the number of rows it changed.
    pub async fn run(&mut self, sql: String, vals: Vec<Val>) -> Result<u64, StoreError> {
        self.store.count();
        let _timer = self.store.durations.start_timer();
        let r = bind(self.store.query(AssertSqlSafe(sql)), vals)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        Ok(r.rows_affected())
    }

    /// Runs one statement that returns a single integer (`RETURNING`).
    pub async fn run_returning(
        &mut self,
        sql: String,
        vals: Vec<Val>,
    ) -> Result<Option<i64>, StoreError> {
        self.store.count();
        let _timer = self.store.durations.start_timer();
        let row = bind(self.store.query(AssertSqlSafe(sql)), vals)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(classify)?;
        row.map(|r| r.try_get::<i64, _>(0).map_err(classify))
            .transpose()
    }

    /// Rows of `R` whose `filter_column` equals `value`, read inside the
    /// transaction.
    pub async fn fetch_where<R: Record>(
        &mut self,
        filter_column: &'static str,
        value: Val,
    ) -> Result<Vec<R>, StoreError> {
        self.store.count();
        let _timer = self.store.durations.start_timer();
        let sql = format!(
            "SELECT {} FROM {} WHERE {filter_column} = $1 ORDER BY {}",
            R::COLUMNS.join(", "),
            R::TABLE,
            R::COLUMNS[0]
        );
        let rows = bind(self.store.query(AssertSqlSafe(sql)), vec![value])
            .fetch_all(&mut *self.tx)
            .await
            .map_err(classify)?;
        rows.iter().map(R::from_row).collect()
    }

    /// Every row of `R`'s table.
    pub async fn load_all<R: Record>(&mut self) -> Result<Vec<R>, StoreError> {
        self.store.count();
        let _timer = self.store.durations.start_timer();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            R::COLUMNS.join(", "),
            R::TABLE,
            R::COLUMNS[0]
        );
        let rows = self
            .store
            .query(AssertSqlSafe(sql))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(classify)?;
        rows.iter().map(R::from_row).collect()
    }

    /// Rows of a two-column association table, as (left, right) pairs.
    pub async fn load_pairs(
        &mut self,
        table: &'static str,
        left: &'static str,
        right: &'static str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.store.count();
        let sql = format!("SELECT {left}, {right} FROM {table} ORDER BY {left}, {right}");
        let rows = self
            .store
            .query(AssertSqlSafe(sql))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|r| Ok((col(r, table, left)?, col(r, table, right)?)))
            .collect()
    }

    pub async fn registry_version(&mut self) -> Result<i64, StoreError> {
        self.store.count();
        let row = self
            .store
            .query("SELECT version FROM registry_state WHERE id = 1")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(classify)?;
        col(&row, "registry_state", "version")
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.store.count();
        self.tx.commit().await.map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_url_adds_driver_options() {
        let mut c = Config::default();
        assert_eq!(connect_url(&c), "sqlite://mcpgate.db?mode=rwc");
        c.database_url = "postgresql://u@h/db".into();
        assert_eq!(connect_url(&c), "postgres://u@h/db");
        c.db_prepare_threshold = 0;
        assert_eq!(
            connect_url(&c),
            "postgres://u@h/db?statement-cache-capacity=0"
        );
    }
}
