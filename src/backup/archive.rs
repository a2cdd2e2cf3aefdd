//! The file itself: JSON lines, gzip-compressed, then age-encrypted. The
//! writer and the reader are synchronous (age and flate2 are); the snapshot
//! and the loader run them on a blocking thread and pass lines over a
//! channel, so a backup of any size takes a few buffers of memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use age::stream::{StreamReader, StreamWriter};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sea_orm::{JsonValue, Value};
use tempfile::NamedTempFile;

use super::BackupError;
use super::crypto::{Authenticated, Identities, Recipients, is_damaged};
use super::format::{self, FORMAT_NAME, FORMAT_VERSION, Header, Line, Trailer};

/// Writes a backup into a temporary file beside its destination; only
/// `persist` gives it its final name, so an interrupted backup leaves no
/// half file there (the temporary one is removed when dropped).
pub struct Writer {
    out: GzEncoder<StreamWriter<BufWriter<NamedTempFile>>>,
    counts: BTreeMap<String, u64>,
}

impl Writer {
    /// Starts a backup in `dir` and writes its header.
    pub fn create(
        dir: &Path,
        recipients: &Recipients,
        header: &Header,
    ) -> Result<Self, BackupError> {
        let file = NamedTempFile::with_prefix_in(".spanglish-backup-", dir)
            .map_err(|e| io_error(&format!("creating a file in {}", dir.display()), e))?;
        let encrypted = recipients
            .encrypt(BufWriter::new(file))
            .map_err(|e| io_error("starting the encryption", e))?;
        let mut writer = Self {
            out: GzEncoder::new(encrypted, Compression::default()),
            counts: header.tables.iter().map(|t| (t.name.clone(), 0)).collect(),
        };
        writer.line(&serde_json::to_vec(header).map_err(json_error)?)?;
        Ok(writer)
    }

    /// One row, as `{"table": …, "row": {column: value}}`.
    pub fn row(
        &mut self,
        table: &str,
        row: serde_json::Map<String, JsonValue>,
    ) -> Result<(), BackupError> {
        *self.counts.entry(table.to_string()).or_default() += 1;
        let line = Line::Row {
            table: table.to_string(),
            row,
        };
        self.line(&serde_json::to_vec(&line).map_err(json_error)?)
    }

    fn line(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.out
            .write_all(bytes)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| io_error("writing the backup", e))
    }

    /// Writes the trailer, closes the compression and the encryption, and
    /// flushes the file to disk. The file still has its temporary name.
    pub fn finish(mut self) -> Result<Finished, BackupError> {
        let counts = std::mem::take(&mut self.counts);
        let trailer = Line::Trailer {
            trailer: Trailer {
                counts: counts.clone(),
            },
        };
        self.line(&serde_json::to_vec(&trailer).map_err(json_error)?)?;

        let file = self
            .out
            .finish()
            .and_then(StreamWriter::finish)
            .and_then(|buffered| buffered.into_inner().map_err(|e| e.into_error()))
            .map_err(|e| io_error("finishing the backup", e))?;
        file.as_file()
            .sync_all()
            .map_err(|e| io_error("flushing the backup to disk", e))?;
        Ok(Finished { file, counts })
    }
}

/// A complete backup under a temporary name.
pub struct Finished {
    pub file: NamedTempFile,
    pub counts: BTreeMap<String, u64>,
}

impl Finished {
    /// Gives the file its final name (a rename: atomic on one file system).
    pub fn persist(self, path: &Path) -> Result<BTreeMap<String, u64>, BackupError> {
        self.file.persist(path).map_err(|e| {
            io_error(
                &format!("renaming the backup to {}", path.display()),
                e.error,
            )
        })?;
        Ok(self.counts)
    }
}

/// The file, decrypted (its chunks authenticated) and decompressed.
type Plaintext = GzDecoder<Authenticated<StreamReader<BufReader<File>>>>;

/// Reads a backup back: the header first (so a wrong key or a stray file is
/// refused before the database is touched), then one row at a time.
pub struct Reader {
    lines: io::Lines<BufReader<Plaintext>>,
    header: Header,
    line_number: u64,
    counts: BTreeMap<String, u64>,
    /// The index in the header of the table being read: each table's rows
    /// come together, in the header's order.
    position: usize,
}

impl Reader {
    pub fn open(path: &Path, identities: &Identities) -> Result<Self, BackupError> {
        let file = File::open(path)
            .map_err(|e| io_error(&format!("opening the backup {}", path.display()), e))?;
        let decrypted = identities.decrypt(BufReader::new(file))?;
        let mut lines = BufReader::new(GzDecoder::new(Authenticated(decrypted))).lines();

        let not_a_backup =
            || BackupError::NotABackup("its contents are not a Spanglish backup".into());
        let first = match lines.next() {
            Some(Ok(line)) => line,
            Some(Err(e)) if is_damaged(&e) => return Err(damaged(&e)),
            Some(Err(_)) | None => return Err(not_a_backup()),
        };
        let header = parse_header(&first).ok_or_else(not_a_backup)?;
        if header.format_version > FORMAT_VERSION {
            return Err(BackupError::NotABackup(format!(
                "it has format version {}, newer than this spanglish reads ({FORMAT_VERSION}); \
                 restore it with a spanglish of version {} or later",
                header.format_version, header.app_version
            )));
        }
        Ok(Self {
            lines,
            header,
            line_number: 1,
            counts: BTreeMap::new(),
            position: 0,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next row as (index of its table in the header, typed values in
    /// the header's column order), or `None` once the trailer was read and
    /// agrees with what came before it. Damage, a missing trailer or counts
    /// that disagree are errors: the loader then rolls back.
    pub fn next_row(&mut self) -> Result<Option<(usize, Vec<Value>)>, BackupError> {
        let Some(line) = self.next_line()? else {
            return Err(BackupError::Corrupted(
                "it ends before its trailer (truncated)".into(),
            ));
        };
        let line: Line = serde_json::from_str(&line).map_err(|e| self.bad_line(&e.to_string()))?;
        match line {
            Line::Row { table, row } => {
                let values = self.typed_row(&table, row)?;
                Ok(Some((self.position, values)))
            }
            Line::Trailer { trailer } => {
                self.check_trailer(&trailer)?;
                Ok(None)
            }
        }
    }

    fn next_line(&mut self) -> Result<Option<String>, BackupError> {
        match self.lines.next() {
            None => Ok(None),
            Some(Ok(line)) => {
                self.line_number += 1;
                Ok(Some(line))
            }
            Some(Err(e)) if is_damaged(&e) => Err(damaged(&e)),
            Some(Err(e)) => Err(BackupError::Corrupted(format!(
                "line {} cannot be read ({e})",
                self.line_number + 1
            ))),
        }
    }

    fn bad_line(&self, problem: &str) -> BackupError {
        BackupError::Corrupted(format!("line {}: {problem}", self.line_number))
    }

    /// Checks the row stands where it belongs and has exactly its table's
    /// columns, and types every value by the header's schema.
    fn typed_row(
        &mut self,
        table: &str,
        mut row: serde_json::Map<String, JsonValue>,
    ) -> Result<Vec<Value>, BackupError> {
        self.move_to(table)?;
        let schema = &self.header.tables[self.position];
        if row.len() != schema.columns.len() {
            return Err(self.bad_line(&format!(
                "a row of {table} has other columns than its header"
            )));
        }
        let mut values = Vec::with_capacity(schema.columns.len());
        for column in &schema.columns {
            let json = row
                .remove(&column.name)
                .ok_or_else(|| self.bad_line(&format!("{table}.{} is missing", column.name)))?;
            let value = format::decode(column.kind, &json)
                .map_err(|problem| self.bad_line(&format!("{table}.{}: {problem}", column.name)))?;
            values.push(value);
        }
        *self.counts.entry(table.to_string()).or_default() += 1;
        Ok(values)
    }

    /// Rows of one table never come back after another table's started.
    fn move_to(&mut self, table: &str) -> Result<(), BackupError> {
        let offset = self.header.tables[self.position..]
            .iter()
            .position(|t| t.name == table)
            .ok_or_else(|| self.bad_line(&format!("rows of {table} out of place")))?;
        self.position += offset;
        Ok(())
    }

    fn check_trailer(&mut self, trailer: &Trailer) -> Result<(), BackupError> {
        for schema in &self.header.tables {
            let read = self.counts.get(&schema.name).copied().unwrap_or(0);
            let promised = trailer.counts.get(&schema.name).copied().unwrap_or(0);
            if read != promised {
                return Err(BackupError::Corrupted(format!(
                    "{} has {read} rows but its trailer promises {promised}",
                    schema.name
                )));
            }
        }
        if self.next_line()?.is_some() {
            return Err(BackupError::Corrupted(
                "something follows its trailer".into(),
            ));
        }
        Ok(())
    }
}

fn parse_header(line: &str) -> Option<Header> {
    let header: Header = serde_json::from_str(line).ok()?;
    (header.format == FORMAT_NAME).then_some(header)
}

fn damaged(err: &io::Error) -> BackupError {
    BackupError::Corrupted(format!(
        "the encrypted data is truncated or was altered ({err})"
    ))
}

fn io_error(context: &str, err: io::Error) -> BackupError {
    BackupError::Io(format!("{context}: {err}"))
}

fn json_error(err: serde_json::Error) -> BackupError {
    BackupError::Io(format!("encoding a line: {err}"))
}
