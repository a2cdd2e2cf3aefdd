//! age encryption: the recipients a backup is encrypted to
//! (`BACKUP_RECIPIENT`), the identity that opens it (`BACKUP_IDENTITY`), and
//! new key pairs. Keys never reach an error message or a log line.

use std::io::{self, BufRead, Read, Write};

use age::secrecy::ExposeSecret as _;
use age::stream::{StreamReader, StreamWriter};
use age::{DecryptError, Decryptor, Encryptor, Identity, IdentityFile, Recipient, x25519};

use super::BackupError;

/// The public keys a backup is encrypted to; any one of their identities
/// can open it.
pub struct Recipients(Vec<x25519::Recipient>);

impl Recipients {
    /// Parses `BACKUP_RECIPIENT`'s entries (`age1…` each).
    pub fn parse(entries: &[String]) -> Result<Self, BackupError> {
        if entries.is_empty() {
            return Err(BackupError::NoRecipient);
        }
        entries
            .iter()
            .map(|entry| {
                entry
                    .trim()
                    .parse::<x25519::Recipient>()
                    .map_err(|_| bad_recipient(entry.trim()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Starts an age stream over `output`; `finish` must be called on it.
    pub fn encrypt<W: Write>(&self, output: W) -> io::Result<StreamWriter<W>> {
        let recipients = self.0.iter().map(|r| r as &dyn Recipient);
        Encryptor::with_recipients(recipients)
            .map_err(io::Error::other)?
            .wrap_output(output)
    }
}

/// A wrong recipient is quoted only when it looks like a public key: the
/// identity put into the wrong variable must not reach the journal.
fn bad_recipient(entry: &str) -> BackupError {
    if holds_secret_key(entry) {
        return BackupError::SecretKeyAsRecipient;
    }
    let shown = if entry.starts_with("age1") {
        format!("{entry:?}")
    } else {
        "that does not start with age1 (not shown)".to_string()
    };
    BackupError::BadRecipient(shown)
}

/// Whether a value holds an age secret key, in any letter case.
fn holds_secret_key(value: &str) -> bool {
    value.to_ascii_uppercase().contains("AGE-SECRET-KEY-")
}

/// The secret keys `BACKUP_IDENTITY` gives, inline or in a file.
pub struct Identities(Vec<Box<dyn Identity + Send + Sync>>);

impl Identities {
    /// `value` is either the `AGE-SECRET-KEY-1…` string itself (alone, or
    /// the whole identity file's text, as `$(cat key)` gives it) or the path
    /// of an identity file (as `age-keygen` or `spanglish backup-keygen`
    /// write it). Only a path is ever quoted in an error.
    pub fn parse(value: Option<&str>) -> Result<Self, BackupError> {
        let value = value.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Err(BackupError::NoIdentity);
        }

        let inline = holds_secret_key(value);
        let text = if inline {
            value.to_string()
        } else {
            std::fs::read_to_string(value).map_err(|e| {
                BackupError::BadIdentity(format!("cannot read the identity file {value}: {e}"))
            })?
        };

        // age's own parse errors may quote the offending line: say only where.
        let where_ = if inline {
            "the value".to_string()
        } else {
            format!("the file {value}")
        };
        let bad = || BackupError::BadIdentity(format!("{where_} holds no valid age identity"));
        let identities = IdentityFile::from_buffer(text.as_bytes())
            .map_err(|_| bad())?
            .into_identities()
            .map_err(|_| bad())?;
        if identities.is_empty() {
            return Err(bad());
        }
        Ok(Self(identities))
    }

    /// Reads the age header and unlocks the payload. A file that is not age
    /// at all is "not a backup"; one that is age but opens with none of our
    /// keys was encrypted to someone else.
    pub fn decrypt<R: BufRead>(&self, mut input: R) -> Result<StreamReader<R>, BackupError> {
        // Peeked, not consumed: an age file cut inside its header is damaged,
        // not foreign.
        let age_magic = input
            .fill_buf()
            .map_err(|e| BackupError::Io(format!("reading the backup: {e}")))?
            .starts_with(b"age-encryption.org/");
        let decryptor = Decryptor::new_buffered(input).map_err(|e| match e {
            DecryptError::Io(e) if e.kind() != io::ErrorKind::UnexpectedEof => {
                BackupError::Io(format!("reading the backup: {e}"))
            }
            _ if age_magic => {
                BackupError::Corrupted("its encryption header is cut short or damaged".into())
            }
            _ => BackupError::NotABackup("it is not an age-encrypted file".into()),
        })?;
        decryptor
            .decrypt(self.0.iter().map(|i| i.as_ref() as &dyn Identity))
            .map_err(|e| match e {
                DecryptError::NoMatchingKeys | DecryptError::KeyDecryptionFailed => {
                    BackupError::WrongKey
                }
                DecryptError::Io(e) => BackupError::Io(format!("reading the backup: {e}")),
                _ => BackupError::Corrupted("its encryption header was altered".into()),
            })
    }
}

/// Marks an error raised by the age layer (a chunk that fails
/// authentication, or a stream cut short), so the reader can tell a damaged
/// file from contents that are simply not a backup.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Damaged(String);

/// Wraps the decrypting reader, tagging its errors as [`Damaged`].
pub struct Authenticated<R>(pub R);

impl<R: Read> Read for Authenticated<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), Damaged(e.to_string())))
    }
}

pub fn is_damaged(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<Damaged>())
}

/// A new key pair: the identity file's text (keep it offline) and the
/// recipient to put in `BACKUP_RECIPIENT`.
pub fn keygen(now: chrono::DateTime<chrono::Utc>) -> (String, String) {
    let identity = x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let file = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        identity.to_string().expose_secret()
    );
    (file, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_works_inline_and_from_a_file() {
        let (file, recipient) = keygen(chrono::Utc::now());
        let recipients = Recipients::parse(&[recipient]).unwrap();

        let mut sealed = Vec::new();
        let mut writer = recipients.encrypt(&mut sealed).unwrap();
        writer.write_all(b"hola").unwrap();
        writer.finish().unwrap();

        let secret = file.lines().find(|l| !l.starts_with('#')).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.key");
        std::fs::write(&path, &file).unwrap();
        for identities in [
            Identities::parse(Some(secret)).unwrap(),
            Identities::parse(path.to_str()).unwrap(),
        ] {
            let mut plain = String::new();
            identities
                .decrypt(&sealed[..])
                .unwrap()
                .read_to_string(&mut plain)
                .unwrap();
            assert_eq!(plain, "hola");
        }
    }

    #[test]
    fn a_file_cut_inside_its_header_is_damaged_not_foreign() {
        let (file, recipient) = keygen(chrono::Utc::now());
        let recipients = Recipients::parse(&[recipient]).unwrap();
        let mut sealed = Vec::new();
        let mut writer = recipients.encrypt(&mut sealed).unwrap();
        writer.write_all(b"hola").unwrap();
        writer.finish().unwrap();
        let secret = file.lines().find(|l| !l.starts_with('#')).unwrap();
        let identities = Identities::parse(Some(secret)).unwrap();

        let cut = identities.decrypt(&sealed[..60]).err().unwrap();
        assert!(matches!(cut, BackupError::Corrupted(_)), "{cut}");
        let foreign = identities.decrypt(&b"PGDMP dump"[..]).err().unwrap();
        assert!(matches!(foreign, BackupError::NotABackup(_)), "{foreign}");
    }

    #[test]
    fn bad_keys_are_named_without_being_printed() {
        let missing = Recipients::parse(&[]).err().unwrap().to_string();
        assert!(missing.contains("BACKUP_RECIPIENT"), "{missing}");

        let bad = Recipients::parse(&["age1nope".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(
            bad.contains("BACKUP_RECIPIENT") && bad.contains("age1nope"),
            "{bad}"
        );

        let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
        let bad = Identities::parse(Some(secret)).err().unwrap().to_string();
        assert!(bad.contains("BACKUP_IDENTITY"), "{bad}");
        assert!(!bad.contains("QQQQ"), "the key leaked: {bad}");

        let none = Identities::parse(None).err().unwrap().to_string();
        assert!(none.contains("BACKUP_IDENTITY"), "{none}");
    }
}
