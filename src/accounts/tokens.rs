//! Access tokens (short-lived JWTs, HS256 pinned, issuer and audience
//! checked) and refresh tokens (opaque random strings, stored only hashed).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::{Config, Secret};
use crate::error::{AppError, AppResult};

pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
pub const REFRESH_TOKEN_DAYS: i64 = 30;
const ISSUER: &str = "spanglish";
const AUDIENCE: &str = "spanglish-api";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &Secret) -> anyhow::Result<Self> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked against the service clock in `verify`, so tests
        // can move time; the library would read the system clock.
        validation.validate_exp = false;

        Ok(Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes())?,
            decoding: DecodingKey::from_secret(secret.expose().as_bytes())?,
            validation,
        })
    }

    pub fn issue(&self, user_id: Uuid, now: DateTime<Utc>) -> AppResult<String> {
        let claims = Claims {
            sub: user_id,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now.timestamp(),
            exp: now.timestamp() + ACCESS_TOKEN_SECONDS,
            jti: Uuid::new_v4(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("signing a token: {e}")))
    }

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> AppResult<Claims> {
        let invalid = AppError::Unauthenticated("Invalid or expired token");
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AppError::Unauthenticated("Invalid or expired token"))?;
        if data.claims.exp <= now.timestamp() {
            return Err(invalid);
        }
        Ok(data.claims)
    }
}

/// A fresh opaque token: 256 random bits, URL-safe.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of an opaque token: its SHA-256. The token has 256
/// bits of entropy, so a fast hash is enough and lookups stay indexed.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The signing secret: the configured one, or in development one generated
/// once and kept under the data folder so tokens survive restarts.
pub fn load_or_create_dev_secret(config: &Config) -> anyhow::Result<Secret> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.clone());
    }
    if !config.is_development() {
        anyhow::bail!("JWT_SECRET is required outside development");
    }
    let path = config.data_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && existing.trim().len() >= 32
    {
        return Ok(Secret::new(existing.trim()));
    }
    let secret = random_token();
    write_private(&path, &secret)?;
    tracing::info!(path = %path.display(), "generated a development JWT secret");
    Ok(Secret::new(secret))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn keys() -> TokenKeys {
        TokenKeys::new(&Secret::new("0123456789abcdef0123456789abcdef")).unwrap()
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let now = Utc::now();
        let user = Uuid::new_v4();
        let token = keys().issue(user, now).unwrap();
        assert_eq!(keys().verify(&token, now).unwrap().sub, user);
        let later = now + Duration::seconds(ACCESS_TOKEN_SECONDS);
        assert!(keys().verify(&token, later).is_err());
    }

    #[test]
    fn a_token_signed_with_another_secret_or_algorithm_is_refused() {
        let now = Utc::now();
        let other = TokenKeys::new(&Secret::new("another-secret-another-secret-xx")).unwrap();
        let token = other.issue(Uuid::new_v4(), now).unwrap();
        assert!(keys().verify(&token, now).is_err());

        // alg "none" with the same claims must never pass.
        let forged = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert!(keys().verify(&forged, now).is_err());
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let a = random_token();
        assert_ne!(a, random_token());
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }
}
