//! Password hashing with argon2id at OWASP's recommended cost (19 MiB, two
//! passes, one lane: the crate's defaults).
//!
//! Hashing is CPU-bound, so it runs off the async workers, on a few threads
//! of its own: one per core, the others waiting their turn. More at once
//! would finish no sooner, and each hash takes 19 MiB: on tokio's blocking
//! pool, which starts a thread per waiting task, a burst of 64 logins ran
//! dozens side by side and took gigabytes (see docs/benchmarks.md).

use std::sync::LazyLock;
use std::thread::available_parallelism;

use anyhow::anyhow;
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::oneshot;

use crate::error::{AppError, AppResult};

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;

/// Checked against when the email is unknown, so a failed login costs the
/// same time whether or not the account exists.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"not-a-real-password")
        .ok()
        .map(|h| h.to_string())
});

static HASHERS: LazyLock<Result<rayon::ThreadPool, rayon::ThreadPoolBuildError>> =
    LazyLock::new(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(available_parallelism().map_or(1, |n| n.get()))
            .thread_name(|i| format!("argon2-{i}"))
            // Rayon aborts the process on a panic by default; here the
            // caller gets an internal error instead.
            .panic_handler(|_| tracing::error!("a password hash panicked"))
            .build()
    });

/// Runs `work` on a hashing thread once one is free. A caller that has gone
/// (the client hung up) while its turn came is skipped.
async fn on_hashing_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let hashers = HASHERS
        .as_ref()
        .map_err(|e| anyhow!("starting the hashing threads: {e}"))?;
    let (done, answer) = oneshot::channel();
    hashers.spawn(move || {
        if !done.is_closed() {
            let _ = done.send(work());
        }
    });
    answer
        .await
        .map_err(|_| anyhow!("a password hash ended without an answer"))
}

pub fn validate(password: &str, field: &str) -> AppResult<()> {
    let chars = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&chars) {
        return Err(AppError::bad_input(
            field,
            format!("the password must be {MIN_LEN} to {MAX_LEN} characters"),
        ));
    }
    if password.trim().is_empty() {
        return Err(AppError::bad_input(
            field,
            "the password cannot be only spaces",
        ));
    }
    Ok(())
}

pub async fn hash(password: &str) -> AppResult<String> {
    let password = password.to_owned();
    on_hashing_thread(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow!("hashing a password: {e}"))
    })
    .await?
    .map_err(AppError::from)
}

/// True when `password` matches `stored`. With no stored hash (unknown
/// account) it still spends the time of one verification, then says no.
pub async fn verify(password: &str, stored: Option<&str>) -> bool {
    let password = password.to_owned();
    let stored = stored.map(str::to_owned);
    let known = stored.is_some();
    let matched = on_hashing_thread(move || {
        let Some(hash) = stored.or_else(|| DUMMY_HASH.clone()) else {
            return false;
        };
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .unwrap_or(false);
    known && matched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hash = hash("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", Some(&hash)).await);
        assert!(!verify("wrong horse battery", Some(&hash)).await);
        assert!(!verify("correct horse battery", None).await);
    }

    #[test]
    fn length_limits_count_characters() {
        assert!(validate("1234567", "password").is_err());
        assert!(validate("12345678", "password").is_ok());
        assert!(validate(&"ñ".repeat(256), "password").is_ok());
        assert!(validate(&"a".repeat(257), "password").is_err());
    }
}
