//! Where a backup goes or comes from: a file, or an object in an S3 bucket
//! (`s3://bucket/key`, through the same settings and client as media
//! storage). S3 transfers go through a temporary local file, so neither
//! direction holds the backup in memory, and an upload happens only once the
//! backup is complete.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt as _;

use super::BackupError;
use crate::config::Config;
use crate::media::storage::s3_client;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl Location {
    /// `s3://bucket/key`, or else a file path.
    pub fn parse(text: &str) -> Result<Self, BackupError> {
        let Some(rest) = text.strip_prefix("s3://") else {
            if text.trim().is_empty() {
                return Err(BackupError::Location("the path is empty".into()));
            }
            return Ok(Location::File(PathBuf::from(text)));
        };
        match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Location::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            }),
            _ => Err(BackupError::Location(format!(
                "{text} is not of the form s3://bucket/key"
            ))),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// The folder a backup to `path` is written in before its rename: the
/// destination's own, so the rename stays on one file system.
pub fn folder_of(path: &Path) -> Result<PathBuf, BackupError> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(BackupError::Location(format!(
            "the folder {} does not exist",
            folder.display()
        )));
    }
    Ok(folder)
}

/// The S3 client of the media settings (`S3_REGION`, `S3_ENDPOINT`, the AWS
/// keys); the bucket comes from the location, not from `S3_BUCKET`.
pub fn s3(config: &Config) -> Result<Client, BackupError> {
    let (Some(key_id), Some(secret)) = (&config.aws_access_key_id, &config.aws_secret_access_key)
    else {
        return Err(BackupError::Location(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are required for an s3:// location".into(),
        ));
    };
    let region = config.s3_region.as_deref().unwrap_or("us-east-1");
    Ok(s3_client(
        config.s3_endpoint.as_deref(),
        region,
        key_id.expose(),
        secret.expose(),
    ))
}

/// Uploads the finished file in one PUT (S3 caps those at 5 GB).
pub async fn upload(
    client: &Client,
    bucket: &str,
    key: &str,
    file: &Path,
) -> Result<(), BackupError> {
    let body = ByteStream::from_path(file)
        .await
        .map_err(|e| BackupError::Io(format!("reading {}: {e}", file.display())))?;
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/octet-stream")
        .body(body)
        .send()
        .await
        .map_err(|e| s3_error(&format!("uploading to s3://{bucket}/{key}"), &e))?;
    Ok(())
}

/// Downloads the object into a temporary file, removed when dropped.
pub async fn download(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<NamedTempFile, BackupError> {
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3_error(&format!("downloading s3://{bucket}/{key}"), &e))?;

    let file = NamedTempFile::with_prefix(".spanglish-restore-")
        .map_err(|e| BackupError::Io(format!("creating a temporary file: {e}")))?;
    let copy = file
        .reopen()
        .map_err(|e| BackupError::Io(format!("opening the temporary file: {e}")))?;
    let mut out = tokio::fs::File::from_std(copy);
    let mut body = object.body;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| BackupError::Io(format!("downloading s3://{bucket}/{key}: {e}")))?
    {
        out.write_all(&chunk)
            .await
            .map_err(|e| BackupError::Io(format!("writing the download: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| BackupError::Io(format!("writing the download: {e}")))?;
    Ok(file)
}

/// The SDK's error with its service message, when there is one.
fn s3_error<E>(context: &str, err: &aws_sdk_s3::error::SdkError<E>) -> BackupError
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata,
{
    let detail = err
        .as_service_error()
        .map(|e| {
            format!(
                "{} {}",
                e.code().unwrap_or("error"),
                e.message().unwrap_or_default()
            )
        })
        .unwrap_or_else(|| format!("{err}"));
    BackupError::Io(format!("{context}: {}", detail.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_files_or_s3_objects() {
        assert_eq!(
            Location::parse("s3://backups/spanglish/2026-12-03.age").unwrap(),
            Location::S3 {
                bucket: "backups".into(),
                key: "spanglish/2026-12-03.age".into()
            }
        );
        assert_eq!(
            Location::parse("/var/backups/x.age").unwrap(),
            Location::File("/var/backups/x.age".into())
        );
        assert!(Location::parse("s3://bucket-only").is_err());
        assert!(Location::parse("s3:///key").is_err());
        assert!(Location::parse("").is_err());
    }
}
