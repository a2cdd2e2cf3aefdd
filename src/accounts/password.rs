//! Password hashing with argon2id at OWASP's recommended cost (19 MiB, two
//! passes, one lane: the crate's defaults). Hashing is CPU-bound, so it runs
//! on the blocking pool rather than stalling the async workers, and at most
//! one hash per core runs at a time: each takes 19 MiB, and a burst of logins
//! would otherwise take that much per request in flight (the benchmark saw
//! gigabytes) without finishing any sooner.

use std::sync::LazyLock;
use std::thread::available_parallelism;

use anyhow::anyhow;
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

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

static HASHING_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = available_parallelism().map_or(1, |n| n.get());
    Semaphore::new(cores)
});

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
    let _slot = HASHING_SLOTS
        .acquire()
        .await
        .map_err(|e| anyhow!("hashing slots: {e}"))?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow!("hashing a password: {e}"))
    })
    .await
    .map_err(|e| anyhow!("hashing task: {e}"))?
    .map_err(AppError::from)
}

/// True when `password` matches `stored`. With no stored hash (unknown
/// account) it still spends the time of one verification, then says no.
pub async fn verify(password: &str, stored: Option<&str>) -> bool {
    let password = password.to_owned();
    let stored = stored.map(str::to_owned);
    let known = stored.is_some();
    let Ok(_slot) = HASHING_SLOTS.acquire().await else {
        return false;
    };
    let matched = tokio::task::spawn_blocking(move || {
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
