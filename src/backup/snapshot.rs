//! Reading every table in one consistent snapshot: a `REPEATABLE READ, READ
//! ONLY` transaction on PostgreSQL, one read transaction on SQLite (WAL keeps
//! its view fixed from the first read). Rows are read through each domain's
//! sea-orm entity, so every column comes back as its Rust type whatever the
//! database stored, and streamed to the writer thread one at a time.

use std::marker::PhantomData;
use std::path::Path;
use std::pin::pin;

use futures_util::TryStreamExt as _;
use futures_util::future::BoxFuture;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    AccessMode, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IdenStatic,
    IsolationLevel, Iterable, JsonValue, ModelTrait, PrimaryKeyToColumn, QueryOrder, Statement,
    TransactionOptions, TransactionTrait,
};
use tokio::sync::mpsc;

use super::BackupError;
use super::archive::{Finished, Writer};
use super::crypto::Recipients;
use super::format::{self, ColumnSchema, FORMAT_NAME, FORMAT_VERSION, Header, Kind, TableSchema};
use crate::db::{self, Db};
use crate::{accounts, audit, email, events, media, payments, tickets};

/// One table of the data model, read through its entity.
pub trait Table: Send + Sync {
    fn name(&self) -> &'static str;

    /// Its columns and their portable types.
    fn schema(&self) -> Result<TableSchema, BackupError>;

    /// Sends every row, in primary-key order, to the writer.
    fn dump<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        out: &'a mpsc::Sender<Message>,
    ) -> BoxFuture<'a, Result<(), BackupError>>;
}

/// Every table, in foreign-key order: a table comes after every table it
/// points to, so a restore can insert them in this order. A test compares
/// this list with the tables the migrations create.
pub fn tables() -> Vec<Box<dyn Table>> {
    use accounts::entity::{password_reset, refresh_token, user};
    use payments::entity::{payment, refund, webhook_event};
    vec![
        table::<user::Entity>(),
        table::<refresh_token::Entity>(),
        table::<password_reset::Entity>(),
        table::<media::entity::Entity>(),
        table::<events::entity::Entity>(),
        table::<tickets::entity::Entity>(),
        table::<payment::Entity>(),
        table::<refund::Entity>(),
        table::<webhook_event::Entity>(),
        table::<email::entity::Entity>(),
        table::<audit::entity::Entity>(),
    ]
}

fn table<E>() -> Box<dyn Table>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    Box::new(EntityTable::<E>(PhantomData))
}

struct EntityTable<E>(PhantomData<fn() -> E>);

impl<E> Table for EntityTable<E>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    fn name(&self) -> &'static str {
        E::default().table_name()
    }

    fn schema(&self) -> Result<TableSchema, BackupError> {
        let columns = E::Column::iter()
            .map(|column| {
                let kind = Kind::of(column.def().get_column_type()).ok_or_else(|| {
                    BackupError::Unsupported(format!(
                        "{}.{} has a column type backups do not carry",
                        self.name(),
                        column.as_str()
                    ))
                })?;
                Ok(ColumnSchema {
                    name: column.as_str().to_string(),
                    kind,
                })
            })
            .collect::<Result<Vec<_>, BackupError>>()?;
        Ok(TableSchema {
            name: self.name().to_string(),
            columns,
        })
    }

    fn dump<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        out: &'a mpsc::Sender<Message>,
    ) -> BoxFuture<'a, Result<(), BackupError>> {
        Box::pin(async move {
            let mut select = E::find();
            for key in E::PrimaryKey::iter() {
                select = select.order_by_asc(key.into_column());
            }
            let mut rows = pin!(select.stream(txn).await?);
            while let Some(model) = rows.try_next().await? {
                let mut row = serde_json::Map::new();
                for column in E::Column::iter() {
                    row.insert(
                        column.as_str().to_string(),
                        format::encode(model.get(column))?,
                    );
                }
                out.send(Message::Row(self.name(), row))
                    .await
                    .map_err(|_| BackupError::WriterStopped)?;
            }
            Ok(())
        })
    }
}

/// From the snapshot to the writer thread.
pub enum Message {
    Row(&'static str, serde_json::Map<String, JsonValue>),
    /// Every table was read: the writer may finish the file.
    Done,
}

/// The schema of every table, as a header lists it.
pub fn schemas() -> Result<Vec<TableSchema>, BackupError> {
    tables().iter().map(|t| t.schema()).collect()
}

/// The migrations this binary knows, in order.
pub fn known_migrations() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .collect()
}

/// Writes a backup of `db` into a temporary file in `dir`.
pub async fn write(db: &Db, dir: &Path, recipients: Recipients) -> Result<Finished, BackupError> {
    let tables = tables();
    let schemas = schemas()?;
    let txn = begin_snapshot(db).await?;
    let header = Header {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        app_version: env!("CARGO_PKG_VERSION").into(),
        source: if db::is_postgres(&txn) {
            "postgres"
        } else {
            "sqlite"
        }
        .into(),
        migrations: source_migrations(&txn).await?,
        created_at: chrono::Utc::now(),
        tables: schemas,
    };

    let (sender, receiver) = mpsc::channel(256);
    let dir = dir.to_path_buf();
    let writer =
        tokio::task::spawn_blocking(move || write_file(&dir, &recipients, &header, receiver));

    let dumped = dump_all(&tables, &txn, &sender).await;
    drop(sender);
    // Read only: nothing to keep, and ending it frees the snapshot early.
    txn.rollback().await.ok();
    let written = writer
        .await
        .map_err(|e| BackupError::Io(format!("the writer thread failed: {e}")))?;

    // The writer's own failure (a full disk, say) explains a stopped dump.
    match (dumped, written) {
        (Err(BackupError::WriterStopped), Err(e)) | (Ok(()), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(()), Ok(finished)) => Ok(finished),
    }
}

async fn dump_all(
    tables: &[Box<dyn Table>],
    txn: &DatabaseTransaction,
    out: &mpsc::Sender<Message>,
) -> Result<(), BackupError> {
    for table in tables {
        table.dump(txn, out).await?;
    }
    out.send(Message::Done)
        .await
        .map_err(|_| BackupError::WriterStopped)
}

fn write_file(
    dir: &Path,
    recipients: &Recipients,
    header: &Header,
    mut rows: mpsc::Receiver<Message>,
) -> Result<Finished, BackupError> {
    let mut writer = Writer::create(dir, recipients, header)?;
    while let Some(message) = rows.blocking_recv() {
        match message {
            Message::Row(table, row) => writer.row(table, row)?,
            Message::Done => return writer.finish(),
        }
    }
    // The snapshot ended without `Done`: it failed, and its error is reported.
    Err(BackupError::WriterStopped)
}

async fn begin_snapshot(db: &Db) -> Result<DatabaseTransaction, BackupError> {
    let options = if db::is_postgres(db) {
        TransactionOptions {
            isolation_level: Some(IsolationLevel::RepeatableRead),
            access_mode: Some(AccessMode::ReadOnly),
            ..Default::default()
        }
    } else {
        TransactionOptions::default()
    };
    Ok(db.begin_with_options(options).await?)
}

/// The migrations applied to the source, which must be exactly the ones
/// this binary knows: its entities describe that schema and no other.
async fn source_migrations(txn: &DatabaseTransaction) -> Result<Vec<String>, BackupError> {
    let applied = applied_migrations(txn).await?;
    let known = known_migrations();
    if let Some(unknown) = applied.iter().find(|m| !known.contains(m)) {
        return Err(BackupError::SourceSchema(format!(
            "the database has migration {unknown}, which this spanglish does not know; \
             back it up with the spanglish that runs it"
        )));
    }
    if let Some(missing) = known.iter().find(|m| !applied.contains(m)) {
        return Err(BackupError::SourceSchema(format!(
            "the database lacks migration {missing}; run `spanglish migrate` first"
        )));
    }
    Ok(applied)
}

/// The migrations recorded in `seaql_migrations`, oldest first (their names
/// begin with their date); none when the table does not exist.
pub async fn applied_migrations(db: &impl ConnectionTrait) -> Result<Vec<String>, BackupError> {
    if !database_tables(db)
        .await?
        .iter()
        .any(|t| t == MIGRATIONS_TABLE)
    {
        return Ok(Vec::new());
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version"),
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "version").map_err(Into::into))
        .collect()
}

pub const MIGRATIONS_TABLE: &str = "seaql_migrations";

/// Every table in the database (the migrations' own included), by name.
pub async fn database_tables(db: &impl ConnectionTrait) -> Result<Vec<String>, BackupError> {
    let sql = if db::is_postgres(db) {
        "SELECT tablename AS name FROM pg_catalog.pg_tables \
         WHERE schemaname = current_schema() ORDER BY tablename"
    } else {
        "SELECT name FROM sqlite_master \
         WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    };
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "name").map_err(Into::into))
        .collect()
}
