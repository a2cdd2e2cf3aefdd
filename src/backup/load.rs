//! Loading a backup into an empty database, all or nothing: one transaction
//! migrates the target to the backup's schema, inserts every row in the
//! header's (foreign-key) order, migrates on to this binary's schema and only
//! then commits. SQLite and PostgreSQL both run DDL inside a transaction, so
//! a wrong row, a damaged file or a constraint error leaves the target
//! exactly as it was, not even migrated.

use std::collections::BTreeMap;
use std::path::Path;

use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement, Value};
use tokio::sync::mpsc;

use super::BackupError;
use super::archive::Reader;
use super::crypto::Identities;
use super::format::{Header, TableSchema};
use super::snapshot::{MIGRATIONS_TABLE, applied_migrations, database_tables, known_migrations};
use crate::db::{self, Db};

/// From the reader thread to the loader.
enum Message {
    Header(Box<Header>),
    /// Rows of the header's table at this index, values in column order.
    Rows(usize, Vec<Vec<Value>>),
    /// The trailer was read and agrees with the rows.
    End,
}

/// Rows handed over and inserted at once.
const BATCH_ROWS: usize = 200;

/// Bound parameters per INSERT, well under SQLite's and PostgreSQL's limits.
const MAX_PARAMETERS: usize = 10_000;

/// What a restore loaded.
pub struct Loaded {
    pub header: Header,
    pub counts: BTreeMap<String, u64>,
}

/// Restores the backup at `path` into `db`.
pub async fn restore(db: &Db, path: &Path, identities: Identities) -> Result<Loaded, BackupError> {
    let (sender, mut receiver) = mpsc::channel(8);
    let path = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_file(&path, &identities, &sender));

    // The header first: a wrong key or a stray file stops here, before the
    // database is touched.
    let header = match receiver.recv().await {
        Some(Ok(Message::Header(header))) => *header,
        Some(Err(e)) => return Err(e),
        _ => return Err(reader_failed(reader).await),
    };
    let steps = check_backup_schema(&header.migrations, &known_migrations())?;

    let txn = db::begin_write(db).await?;
    prepare_target(&txn, &header, steps).await?;
    let counts = load_rows(&txn, &header, &mut receiver).await?;
    reset_sequences(&txn).await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await?;
    Ok(Loaded { header, counts })
}

/// Refuses a backup of a schema this binary does not know; for an older one,
/// says how many migrations build its schema.
pub fn check_backup_schema(backup: &[String], ours: &[String]) -> Result<u32, BackupError> {
    for (position, name) in backup.iter().enumerate() {
        if ours.get(position) != Some(name) {
            return Err(BackupError::NewerSchema(name.clone()));
        }
    }
    u32::try_from(backup.len()).map_err(|_| BackupError::NewerSchema("(too many)".into()))
}

/// Refuses a target with any row in any table, or one migrated past the
/// backup's schema; then migrates it to exactly the backup's schema.
async fn prepare_target(
    txn: &DatabaseTransaction,
    header: &Header,
    backup_steps: u32,
) -> Result<(), BackupError> {
    for table in database_tables(txn).await? {
        if table != MIGRATIONS_TABLE && has_rows(txn, &table).await? {
            return Err(BackupError::NotEmpty { table });
        }
    }

    let applied = applied_migrations(txn).await?;
    let fits = applied.len() <= header.migrations.len()
        && applied.iter().zip(&header.migrations).all(|(a, b)| a == b);
    if !fits {
        return Err(BackupError::TargetAhead {
            target: applied.last().cloned().unwrap_or_default(),
            backup: header.migrations.last().cloned().unwrap_or_default(),
        });
    }

    let missing = backup_steps.saturating_sub(u32::try_from(applied.len()).unwrap_or(u32::MAX));
    if missing > 0 {
        Migrator::up(txn, Some(missing)).await?;
    }
    Ok(())
}

async fn has_rows(txn: &DatabaseTransaction, table: &str) -> Result<bool, BackupError> {
    let query = Query::select()
        .expr(Expr::val(1))
        .from(Alias::new(table))
        .limit(1)
        .to_owned();
    Ok(txn.query_one(&query).await?.is_some())
}

/// Inserts each batch the reader sends, until its end. Any error returns at
/// once; dropping the transaction then rolls everything back.
async fn load_rows(
    txn: &DatabaseTransaction,
    header: &Header,
    receiver: &mut mpsc::Receiver<Result<Message, BackupError>>,
) -> Result<BTreeMap<String, u64>, BackupError> {
    let mut counts: BTreeMap<String, u64> =
        header.tables.iter().map(|t| (t.name.clone(), 0)).collect();
    loop {
        match receiver.recv().await {
            Some(Ok(Message::Rows(index, rows))) => {
                let table = &header.tables[index];
                *counts.entry(table.name.clone()).or_default() += rows.len() as u64;
                insert(txn, table, rows).await?;
            }
            Some(Ok(Message::End)) => return Ok(counts),
            Some(Err(e)) => return Err(e),
            Some(Ok(Message::Header(_))) | None => {
                return Err(BackupError::Corrupted("the reader stopped early".into()));
            }
        }
    }
}

async fn insert(
    txn: &DatabaseTransaction,
    table: &TableSchema,
    rows: Vec<Vec<Value>>,
) -> Result<(), BackupError> {
    let per_statement = (MAX_PARAMETERS / table.columns.len().max(1)).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut statement = Query::insert();
        statement
            .into_table(Alias::new(&table.name))
            .columns(table.columns.iter().map(|c| Alias::new(&c.name)));
        for row in rows.by_ref().take(per_statement) {
            statement
                .values(row.into_iter().map(Expr::from))
                .map_err(|e| BackupError::Corrupted(format!("a row of {}: {e}", table.name)))?;
        }
        txn.execute(&statement).await?;
    }
    Ok(())
}

/// PostgreSQL sequences do not move when rows are inserted with their ids:
/// set each past the largest id loaded, or the next insert would collide.
/// (Today's tables all use UUIDs; this keeps a future serial column safe.)
async fn reset_sequences(txn: &DatabaseTransaction) -> Result<(), BackupError> {
    if !db::is_postgres(txn) {
        return Ok(());
    }
    let backend = txn.get_database_backend();
    let serials = txn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT quote_ident(table_name) AS tbl, quote_ident(column_name) AS col, \
                    pg_get_serial_sequence(quote_ident(table_name), column_name) AS seq \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() \
               AND pg_get_serial_sequence(quote_ident(table_name), column_name) IS NOT NULL",
        ))
        .await?;
    for serial in serials {
        let table: String = serial.try_get("", "tbl")?;
        let column: String = serial.try_get("", "col")?;
        let sequence: String = serial.try_get("", "seq")?;
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT setval($1, COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            ),
            [sequence.into()],
        ))
        .await?;
    }
    Ok(())
}

/// The reader thread: the header, then batches of rows of one table each,
/// then the end, or the first error. It stops when the loader hangs up.
fn read_file(
    path: &Path,
    identities: &Identities,
    out: &mpsc::Sender<Result<Message, BackupError>>,
) {
    let mut reader = match Reader::open(path, identities) {
        Ok(reader) => reader,
        Err(e) => {
            let _ = out.blocking_send(Err(e));
            return;
        }
    };
    let header = Box::new(reader.header().clone());
    if out.blocking_send(Ok(Message::Header(header))).is_err() {
        return;
    }

    let mut batch: Option<(usize, Vec<Vec<Value>>)> = None;
    loop {
        let next = reader.next_row();
        let (ready, last) = match next {
            Ok(Some((table, values))) => match batch.as_mut() {
                Some((current, rows)) if *current == table && rows.len() < BATCH_ROWS => {
                    rows.push(values);
                    continue;
                }
                _ => (batch.replace((table, vec![values])), false),
            },
            Ok(None) => (batch.take(), true),
            Err(e) => {
                let _ = out.blocking_send(Err(e));
                return;
            }
        };
        if let Some((table, rows)) = ready
            && out.blocking_send(Ok(Message::Rows(table, rows))).is_err()
        {
            return;
        }
        if last {
            let _ = out.blocking_send(Ok(Message::End));
            return;
        }
    }
}

async fn reader_failed(reader: tokio::task::JoinHandle<()>) -> BackupError {
    match reader.await {
        Ok(()) => BackupError::Corrupted("the reader stopped early".into()),
        Err(e) => BackupError::Io(format!("the reader thread failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_backup_of_our_schema_or_an_older_one_is_accepted() {
        let ours = names(&["m1", "m2", "m3"]);
        assert_eq!(check_backup_schema(&ours, &ours).unwrap(), 3);
        assert_eq!(check_backup_schema(&names(&["m1"]), &ours).unwrap(), 1);
    }

    #[test]
    fn a_backup_with_a_migration_we_do_not_know_is_refused_by_name() {
        let ours = names(&["m1", "m2"]);
        let err = check_backup_schema(&names(&["m1", "m2", "m9_future"]), &ours).unwrap_err();
        assert!(err.to_string().contains("m9_future"), "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
        let err = check_backup_schema(&names(&["m1", "m2b"]), &ours).unwrap_err();
        assert!(err.to_string().contains("m2b"), "{err}");
    }
}
