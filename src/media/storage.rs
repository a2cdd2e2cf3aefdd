//! Where media bytes live: a folder on this machine (`MEDIA_STORAGE=local`)
//! or an S3-compatible bucket (`MEDIA_STORAGE=s3`), behind one small trait so
//! the service never knows which.
//!
//! Keys are always made by the server (`media::service` builds them from the
//! media id); the local backend still refuses anything but a plain relative
//! key, so a bug elsewhere cannot turn a key into a path outside `MEDIA_DIR`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls;
use futures_util::future::BoxFuture;

use crate::config::Config;

pub type SharedStorage = Arc<dyn Storage>;

pub trait Storage: Send + Sync + 'static {
    /// Stores `bytes` under `key`, replacing anything there.
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// The bytes under `key`, or `None` when nothing is stored there.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<Option<Vec<u8>>>>;

    /// Removes `key`; removing a missing key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// The backend `MEDIA_STORAGE` names. Building one does no I/O.
pub fn from_config(config: &Config) -> anyhow::Result<SharedStorage> {
    match config.media_storage.as_str() {
        "local" => Ok(Arc::new(LocalStorage::new(config.media_dir.clone()))),
        "s3" => Ok(Arc::new(S3Storage::from_config(config)?)),
        other => bail!("unknown MEDIA_STORAGE {other}"),
    }
}

/// Files under one folder, one file per key.
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        let plain = !key.is_empty()
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
        if !plain {
            bail!("refusing storage key {key:?}");
        }
        Ok(self.root.join(key))
    }
}

impl Storage for LocalStorage {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        _content_type: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let path = self.path(key)?;
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            // Written aside, then renamed: a reader never sees half a file.
            let partial = path.with_extension("partial");
            tokio::fs::write(&partial, bytes)
                .await
                .with_context(|| format!("writing {}", partial.display()))?;
            tokio::fs::rename(&partial, &path)
                .await
                .with_context(|| format!("renaming to {}", path.display()))
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::read(&path).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(err) => Err(err).with_context(|| format!("removing {}", path.display())),
            }
        })
    }
}

/// One bucket of S3 or any S3-compatible store (MinIO, R2, s3s-fs, …).
pub struct S3Storage {
    client: Client,
    bucket: String,
}

impl S3Storage {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let bucket = config
            .s3_bucket
            .clone()
            .ok_or_else(|| anyhow!("S3_BUCKET is required when MEDIA_STORAGE=s3"))?;
        let (Some(key_id), Some(secret)) =
            (&config.aws_access_key_id, &config.aws_secret_access_key)
        else {
            bail!("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are required when MEDIA_STORAGE=s3");
        };
        let region = config
            .s3_region
            .clone()
            .unwrap_or_else(|| "us-east-1".into());
        let client = s3_client(
            config.s3_endpoint.as_deref(),
            &region,
            key_id.expose(),
            secret.expose(),
        );
        Ok(Self { client, bucket })
    }
}

/// An S3 client with static credentials and, for a custom endpoint,
/// path-style addressing (most S3-compatible servers do not resolve
/// `bucket.host` names). ring backs TLS, as everywhere else in the service.
pub fn s3_client(endpoint: Option<&str>, region: &str, key_id: &str, secret: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .http_client(http)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(key_id, secret, None, None, "static"));
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    Client::from_conf(builder.build())
}

impl Storage for S3Storage {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .with_context(|| format!("S3 put {key}"))?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let answer = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await;
            let object = match answer {
                Ok(object) => object,
                Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                    return Ok(None);
                }
                Err(err) => return Err(err).with_context(|| format!("S3 get {key}")),
            };
            let bytes = object
                .body
                .collect()
                .await
                .with_context(|| format!("S3 read {key}"))?;
            Ok(Some(bytes.to_vec()))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .with_context(|| format!("S3 delete {key}"))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_keys_never_leave_the_root() {
        let storage = LocalStorage::new(PathBuf::from("/srv/media"));
        assert!(storage.path("media/abc.png").is_ok());
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "media/../../x",
            "",
            "a//b",
            "a b",
        ] {
            assert!(storage.path(bad).is_err(), "{bad}");
        }
    }
}
