//! Typed configuration, layered: built-in defaults, then `config/default.toml`,
//! then `config/<APP_ENV>.toml`, then the environment. It is validated once at
//! boot and then passed in; nothing reads the environment after that.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AppEnv {
    #[default]
    Development,
    Staging,
    Production,
}

impl AppEnv {
    pub fn as_str(self) -> &'static str {
        match self {
            AppEnv::Development => "development",
            AppEnv::Staging => "staging",
            AppEnv::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// A value that must never reach a log line or a debug print.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Every setting of the contract's Environment table, plus the GraphQL limits.
/// Field names are the variable names in lower case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub app_env: AppEnv,
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    pub jwt_secret: Option<Secret>,
    pub public_url: Option<String>,
    #[serde(deserialize_with = "string_list")]
    pub cors_origins: Vec<String>,
    #[serde(deserialize_with = "string_list")]
    pub trusted_proxies: Vec<String>,
    pub rate_limit_auth_per_ip: u32,
    pub rate_limit_login_per_email: u32,
    pub ticket_hold_seconds: u64,
    pub media_storage: String,
    pub media_dir: PathBuf,
    pub media_max_bytes: u64,
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
    pub s3_endpoint: Option<String>,
    pub aws_access_key_id: Option<Secret>,
    pub aws_secret_access_key: Option<Secret>,
    pub stripe_secret_key: Option<Secret>,
    pub stripe_webhook_secret: Option<Secret>,
    pub stripe_api_base: Option<String>,
    pub mercadopago_access_token: Option<Secret>,
    pub mercadopago_webhook_secret: Option<Secret>,
    pub mercadopago_api_base: Option<String>,
    pub email_transport: String,
    pub email_from: Option<String>,
    pub smtp_url: Option<Secret>,
    pub resend_api_key: Option<Secret>,
    pub postmark_server_token: Option<Secret>,
    pub email_api_base: Option<String>,
    pub rust_log: String,
    pub log_format: Option<LogFormat>,
    /// Where errors and panics are reported; unset, nothing is sent.
    pub sentry_dsn: Option<Secret>,
    /// `None` means "on in development only".
    pub graphql_introspection: Option<bool>,
    pub graphql_playground: Option<bool>,
    pub graphql_max_depth: usize,
    pub graphql_max_complexity: usize,
    pub graphql_max_root_fields: usize,
    pub graphql_max_batch: usize,
    pub graphql_max_query_bytes: usize,
    /// Seconds a CDN may keep an anonymous GET query's answer; 0 turns
    /// public caching off.
    pub graphql_cache_max_age: u64,
    /// Milliseconds this process shares an anonymous query's answer with
    /// everyone asking the same; 0 turns it off.
    pub graphql_answer_cache_ms: u64,
    pub request_body_limit_bytes: usize,
    pub request_timeout_seconds: u64,
    pub shutdown_timeout_seconds: u64,
    /// Run the periodic jobs (hold expiry, email delivery, payment
    /// reconciliation) in this process. Every replica may; tests turn them
    /// off and drive the jobs themselves.
    pub background_jobs: bool,
    /// The age public keys (`age1…`) backups are encrypted to; any one's
    /// identity can open them.
    #[serde(deserialize_with = "string_list")]
    pub backup_recipient: Vec<String>,
    /// The age secret key that opens backups for `spanglish restore`, or the
    /// path of a file holding it. Only needed where restores run.
    pub backup_identity: Option<Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            app_env: AppEnv::Development,
            host: "127.0.0.1".into(),
            port: 8080,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 10,
            jwt_secret: None,
            public_url: None,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            rate_limit_auth_per_ip: 60,
            rate_limit_login_per_email: 10,
            ticket_hold_seconds: 900,
            media_storage: "local".into(),
            media_dir: PathBuf::from("./data/media"),
            media_max_bytes: 10 * 1024 * 1024,
            s3_bucket: None,
            s3_region: None,
            s3_endpoint: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_base: None,
            mercadopago_access_token: None,
            mercadopago_webhook_secret: None,
            mercadopago_api_base: None,
            email_transport: "log".into(),
            email_from: None,
            smtp_url: None,
            resend_api_key: None,
            postmark_server_token: None,
            email_api_base: None,
            rust_log: "info".into(),
            log_format: None,
            sentry_dsn: None,
            graphql_introspection: None,
            graphql_playground: None,
            graphql_max_depth: 12,
            graphql_max_complexity: 5_000,
            graphql_max_root_fields: 50,
            graphql_max_batch: 10,
            graphql_max_query_bytes: 32 * 1024,
            graphql_cache_max_age: 30,
            graphql_answer_cache_ms: 1000,
            request_body_limit_bytes: 1024 * 1024,
            request_timeout_seconds: 30,
            shutdown_timeout_seconds: 30,
            background_jobs: true,
            backup_recipient: Vec::new(),
            backup_identity: None,
        }
    }
}

/// The variables read from the environment; anything else there is ignored.
const ENV_KEYS: &[&str] = &[
    "APP_ENV",
    "HOST",
    "PORT",
    "DATA_DIR",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "JWT_SECRET",
    "PUBLIC_URL",
    "CORS_ORIGINS",
    "TRUSTED_PROXIES",
    "RATE_LIMIT_AUTH_PER_IP",
    "RATE_LIMIT_LOGIN_PER_EMAIL",
    "TICKET_HOLD_SECONDS",
    "MEDIA_STORAGE",
    "MEDIA_DIR",
    "MEDIA_MAX_BYTES",
    "S3_BUCKET",
    "S3_REGION",
    "S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "MERCADOPAGO_ACCESS_TOKEN",
    "MERCADOPAGO_WEBHOOK_SECRET",
    "MERCADOPAGO_API_BASE",
    "EMAIL_TRANSPORT",
    "EMAIL_FROM",
    "SMTP_URL",
    "RESEND_API_KEY",
    "POSTMARK_SERVER_TOKEN",
    "EMAIL_API_BASE",
    "RUST_LOG",
    "LOG_FORMAT",
    "SENTRY_DSN",
    "GRAPHQL_INTROSPECTION",
    "GRAPHQL_PLAYGROUND",
    "GRAPHQL_MAX_DEPTH",
    "GRAPHQL_MAX_COMPLEXITY",
    "GRAPHQL_MAX_ROOT_FIELDS",
    "GRAPHQL_MAX_BATCH",
    "GRAPHQL_MAX_QUERY_BYTES",
    "GRAPHQL_CACHE_MAX_AGE",
    "GRAPHQL_ANSWER_CACHE_MS",
    "REQUEST_BODY_LIMIT_BYTES",
    "REQUEST_TIMEOUT_SECONDS",
    "SHUTDOWN_TIMEOUT_SECONDS",
    "BACKGROUND_JOBS",
    "BACKUP_RECIPIENT",
    "BACKUP_IDENTITY",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: {setting} {problem}")]
    Invalid {
        setting: &'static str,
        problem: String,
    },
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        problem: problem.into(),
    }
}

impl Config {
    /// Loads the layers from `config_dir` (normally `./config`) and the process
    /// environment, then validates.
    pub fn load(config_dir: &Path) -> Result<Self, ConfigError> {
        let env = || Env::raw().filter(|key| ENV_KEYS.iter().any(|k| key == *k));
        let app_env: AppEnv = Figment::new()
            .merge(Serialized::defaults(Config::default()))
            .merge(env())
            .extract_inner("app_env")
            .map_err(|e| ConfigError::Load(Box::new(e)))?;

        let config: Config = Figment::new()
            .merge(Serialized::defaults(Config::default()))
            .merge(Toml::file(config_dir.join("default.toml")))
            .merge(Toml::file(
                config_dir.join(format!("{}.toml", app_env.as_str())),
            ))
            .merge(env())
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;

        config.validate()?;
        Ok(config)
    }

    /// Checks what must hold before the server may start, naming the setting
    /// at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.app_env == AppEnv::Production {
            match &self.jwt_secret {
                None => return Err(invalid("JWT_SECRET", "is required in production")),
                Some(s) if s.expose().len() < 32 => {
                    return Err(invalid(
                        "JWT_SECRET",
                        "must be at least 32 bytes in production",
                    ));
                }
                Some(_) => {}
            }
            if self.public_url.is_none() {
                return Err(invalid("PUBLIC_URL", "is required in production"));
            }
        }
        if let Some(secret) = &self.jwt_secret
            && secret.expose().len() < 32
            && self.app_env != AppEnv::Development
        {
            return Err(invalid("JWT_SECRET", "must be at least 32 bytes"));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres"))
        {
            return Err(invalid(
                "DATABASE_URL",
                "must start with sqlite:// or postgres://",
            ));
        }
        for origin in &self.cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(invalid(
                    "CORS_ORIGINS",
                    format!("has an origin without http(s)://: {origin}"),
                ));
            }
        }
        self.trusted_proxy_nets()?;
        if !matches!(self.media_storage.as_str(), "local" | "s3") {
            return Err(invalid("MEDIA_STORAGE", "must be local or s3"));
        }
        if self.media_storage == "s3" {
            if self.s3_bucket.is_none() {
                return Err(invalid("S3_BUCKET", "is required when MEDIA_STORAGE=s3"));
            }
            if self.aws_access_key_id.is_none() || self.aws_secret_access_key.is_none() {
                return Err(invalid(
                    "AWS_ACCESS_KEY_ID",
                    "and AWS_SECRET_ACCESS_KEY are required when MEDIA_STORAGE=s3",
                ));
            }
        }
        if self.media_max_bytes == 0 {
            return Err(invalid("MEDIA_MAX_BYTES", "must be at least 1"));
        }
        if !matches!(
            self.email_transport.as_str(),
            "log" | "smtp" | "resend" | "postmark"
        ) {
            return Err(invalid(
                "EMAIL_TRANSPORT",
                "must be log, smtp, resend or postmark",
            ));
        }
        if self.rate_limit_auth_per_ip == 0 || self.rate_limit_login_per_email == 0 {
            return Err(invalid(
                "RATE_LIMIT_AUTH_PER_IP",
                "and RATE_LIMIT_LOGIN_PER_EMAIL must be at least 1",
            ));
        }
        // The message never repeats the DSN: it holds the project's key.
        if let Some(dsn) = &self.sentry_dsn
            && dsn.expose().parse::<sentry::types::Dsn>().is_err()
        {
            return Err(invalid(
                "SENTRY_DSN",
                "is not a Sentry DSN (https://<key>@<host>/<project>)",
            ));
        }
        if self.graphql_max_root_fields == 0 || self.graphql_max_batch == 0 {
            return Err(invalid(
                "GRAPHQL_MAX_ROOT_FIELDS",
                "and GRAPHQL_MAX_BATCH must be at least 1",
            ));
        }
        Ok(())
    }

    pub fn trusted_proxy_nets(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|cidr| {
                cidr.parse::<IpNet>()
                    .or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| invalid("TRUSTED_PROXIES", format!("has an invalid CIDR: {cidr}")))
            })
            .collect()
    }

    pub fn is_development(&self) -> bool {
        self.app_env == AppEnv::Development
    }

    pub fn introspection_enabled(&self) -> bool {
        self.graphql_introspection.unwrap_or(self.is_development())
    }

    pub fn playground_enabled(&self) -> bool {
        self.graphql_playground.unwrap_or(self.is_development())
    }

    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(if self.is_development() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        })
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("spanglish.db").display()
            )
        })
    }

    pub fn public_url(&self) -> String {
        let url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", self.host, self.port));
        url.trim_end_matches('/').to_string()
    }
}

/// Accepts `"a, b"` (as environment variables are written) or a TOML array.
fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }

    let items = match Raw::deserialize(deserializer)? {
        Raw::One(s) => s.split(',').map(str::to_string).collect(),
        Raw::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> Config {
        Config {
            app_env: AppEnv::Production,
            jwt_secret: Some(Secret::new("x".repeat(32))),
            public_url: Some("https://api.example.org".into()),
            ..Config::default()
        }
    }

    #[test]
    fn production_without_jwt_secret_is_refused_naming_the_setting() {
        let config = Config {
            jwt_secret: None,
            ..production()
        };
        let message = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("JWT_SECRET"), "{message}");
    }

    #[test]
    fn production_with_a_short_jwt_secret_is_refused() {
        let config = Config {
            jwt_secret: Some(Secret::new("short")),
            ..production()
        };
        let message = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("at least 32 bytes"), "{message}");
    }

    #[test]
    fn production_without_public_url_is_refused() {
        let config = Config {
            public_url: None,
            ..production()
        };
        let message = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("PUBLIC_URL"), "{message}");
    }

    #[test]
    fn a_complete_production_config_is_accepted() {
        assert!(production().validate().is_ok());
        assert!(!production().introspection_enabled());
        assert!(!production().playground_enabled());
    }

    #[test]
    fn secrets_never_print() {
        let config = production();
        assert!(!format!("{config:?}").contains("xxxxxxxx"));
    }

    #[test]
    fn a_malformed_sentry_dsn_is_refused_without_being_repeated() {
        let config = Config {
            sentry_dsn: Some(Secret::new("not-a-dsn-s3cr3tkey")),
            ..Config::default()
        };
        let message = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("SENTRY_DSN"), "{message}");
        assert!(!message.contains("s3cr3tkey"), "{message}");

        let config = Config {
            sentry_dsn: Some(Secret::new("https://0123abcd@sentry.example.org/42")),
            ..Config::default()
        };
        assert!(config.validate().is_ok());
    }

    #[test]
    fn comma_separated_lists_are_split_and_trimmed() {
        let figment = Figment::new()
            .merge(Serialized::defaults(Config::default()))
            .merge(("cors_origins", "https://a.example, https://b.example/"));
        let config: Config = figment.extract().unwrap_or_default();
        assert_eq!(
            config.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }
}
