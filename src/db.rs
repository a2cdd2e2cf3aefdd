//! Connecting to SQLite or PostgreSQL, migrating, and starting transactions
//! that behave the same on both.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseConnectionType,
    DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

pub type Db = DatabaseConnection;

/// Opens a pool. SQLite gets WAL (readers never wait for the writer), a busy
/// timeout (writers queue instead of failing) and enforced foreign keys.
pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbErr> {
    ensure_sqlite_dir(url);

    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    Database::connect(options).await
}

/// `cargo run` on a fresh checkout must work: create the folder of a SQLite
/// file so the database can be created in it.
fn ensure_sqlite_dir(url: &str) {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return;
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(parent);
    }
}

pub async fn migrate(db: &Db) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Starts a transaction that will write. On SQLite it takes the write lock at
/// once (`BEGIN IMMEDIATE`): a transaction that reads first and upgrades later
/// can fail with "database is locked" instead of waiting its turn.
pub async fn begin_write(db: &Db) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

pub async fn ping(db: &Db) -> bool {
    db.execute_unprepared("SELECT 1").await.is_ok()
}

/// How the pool's connections are used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    pub idle: u32,
    pub in_use: u32,
    pub max: u32,
}

/// A snapshot of the pool, read without taking a connection. `None` for a
/// connection that is not a pool (never the case in this service).
pub fn pool_use(db: &Db) -> Option<PoolUse> {
    match &db.inner {
        DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
            Some(snapshot(db.get_postgres_connection_pool()))
        }
        DatabaseConnectionType::SqlxSqlitePoolConnection(_) => {
            Some(snapshot(db.get_sqlite_connection_pool()))
        }
        _ => None,
    }
}

fn snapshot<D: sea_orm::sqlx::Database>(pool: &sea_orm::sqlx::Pool<D>) -> PoolUse {
    // Size and idle count are read one after the other; a connection taken
    // in between must not make `in_use` wrap around.
    let size = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
    PoolUse {
        idle,
        in_use: size - idle,
        max: pool.options().get_max_connections(),
    }
}

pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}
