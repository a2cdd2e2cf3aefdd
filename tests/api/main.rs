//! Integration tests: the real server on a random port, spoken to over HTTP,
//! each test against a fresh SQLite file and a fresh PostgreSQL database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly by design"
)]

mod support;

mod accounts;
mod audit;
mod backup;
mod browser;
mod cdn;
mod email;
mod events;
mod graphql_surface;
mod media;
mod observability;
mod operations;
mod payments;
mod rate_limits;
mod replicas;
mod schema_compat;
mod tickets;
mod walkthrough;
