//! Portable, encrypted backups: `spanglish backup` writes every table from
//! one consistent snapshot in a database-neutral format (`format`),
//! compressed and encrypted with age (`crypto`, `archive`), to a file or S3
//! (`destination`); `spanglish restore` loads one into an empty SQLite or
//! PostgreSQL database in a single transaction (`load`). A backup from
//! SQLite restores into PostgreSQL and back.

pub mod archive;
pub mod crypto;
pub mod destination;
pub mod format;
pub mod load;
pub mod snapshot;

use std::collections::BTreeMap;

pub use crypto::{Identities, Recipients};
pub use destination::Location;
pub use format::Header;

use crate::config::Config;
use crate::db::Db;

/// Everything that can stop a backup or a restore, each naming what is wrong
/// and what to do. No variant ever carries a key.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "BACKUP_RECIPIENT is not set: give the age public key (age1…) to encrypt backups to \
         (`spanglish backup-keygen` makes a key pair)"
    )]
    NoRecipient,
    /// The entry, quoted when it looks like a public key, otherwise only described.
    #[error("BACKUP_RECIPIENT has an invalid age recipient {0}; expected a public key age1…")]
    BadRecipient(String),
    #[error(
        "BACKUP_RECIPIENT holds a secret key (AGE-SECRET-KEY-…): give its public key age1… \
         instead, and keep the secret key off the servers"
    )]
    SecretKeyAsRecipient,
    #[error(
        "BACKUP_IDENTITY is not set: give the age secret key (AGE-SECRET-KEY-1…) or the path of \
         an identity file"
    )]
    NoIdentity,
    #[error("BACKUP_IDENTITY is not usable: {0}")]
    BadIdentity(String),
    #[error("this backup was not encrypted to BACKUP_IDENTITY's recipient")]
    WrongKey,
    #[error("the backup is truncated or corrupted: {0}")]
    Corrupted(String),
    #[error("not a Spanglish backup: {0}")]
    NotABackup(String),
    #[error(
        "the backup was made by a newer schema: it has migration {0}, which this spanglish does \
         not know; restore it with a newer spanglish"
    )]
    NewerSchema(String),
    #[error(
        "the target database is not empty (table {table} has rows); restore only into an empty \
         database"
    )]
    NotEmpty { table: String },
    #[error(
        "the target database is migrated past the backup's schema (it has {target}, the backup \
         ends at {backup}); restore into a new, empty database"
    )]
    TargetAhead { target: String, backup: String },
    #[error("cannot back up: {0}")]
    SourceSchema(String),
    #[error("{0}")]
    Location(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Io(String),
    #[error("database: {0}")]
    Db(String),
    /// The file writer stopped; its own error says why.
    #[error("the backup writer stopped")]
    WriterStopped,
}

// The database's message is kept as text, not as a source: the CLI prints
// the source chain, and it would say the same thing twice.
impl From<sea_orm::DbErr> for BackupError {
    fn from(err: sea_orm::DbErr) -> Self {
        BackupError::Db(err.to_string())
    }
}

/// What a backup wrote or a restore loaded.
pub struct Summary {
    pub location: Location,
    pub header: Option<Header>,
    pub counts: BTreeMap<String, u64>,
}

impl Summary {
    pub fn rows(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// Backs up `db` to `to`, encrypted to `BACKUP_RECIPIENT`.
pub async fn backup(db: &Db, to: &Location, config: &Config) -> Result<Summary, BackupError> {
    let recipients = Recipients::parse(&config.backup_recipient)?;
    let counts = match to {
        Location::File(path) => {
            let folder = destination::folder_of(path)?;
            snapshot::write(db, &folder, recipients)
                .await?
                .persist(path)?
        }
        Location::S3 { bucket, key } => {
            let client = destination::s3(config)?;
            let finished = snapshot::write(db, &std::env::temp_dir(), recipients).await?;
            destination::upload(&client, bucket, key, finished.file.path()).await?;
            finished.counts
        }
    };
    tracing::info!(backup.location = %to, backup.rows = counts.values().sum::<u64>(), "backup written");
    Ok(Summary {
        location: to.clone(),
        header: None,
        counts,
    })
}

/// Restores the backup at `from` into `db`, which must be empty, with the
/// key of `BACKUP_IDENTITY`.
pub async fn restore(db: &Db, from: &Location, config: &Config) -> Result<Summary, BackupError> {
    let identity = config.backup_identity.as_ref().map(|s| s.expose());
    let identities = Identities::parse(identity)?;
    let loaded = match from {
        Location::File(path) => load::restore(db, path, identities).await?,
        Location::S3 { bucket, key } => {
            let client = destination::s3(config)?;
            let file = destination::download(&client, bucket, key).await?;
            load::restore(db, file.path(), identities).await?
        }
    };
    tracing::info!(
        backup.location = %from,
        backup.rows = loaded.counts.values().sum::<u64>(),
        "backup restored"
    );
    Ok(Summary {
        location: from.clone(),
        header: Some(loaded.header),
        counts: loaded.counts,
    })
}
