//! The Spanglish API: a headless backend for a bilingual language-exchange
//! community (events, tickets, members, payments, emails).
//!
//! `app::App` builds everything (database, schema, router); the binary, the
//! workers and the tests all start the service through it.

pub mod accounts;
pub mod app;
pub mod audit;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod email;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod media;
pub mod money;
pub mod payments;
pub mod playground;
pub mod rate_limit;
pub mod telemetry;
pub mod text;
pub mod tickets;

pub use app::App;
pub use config::Config;
pub use error::{AppError, AppResult};
