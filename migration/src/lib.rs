//! Database migrations for the Spanglish API, shared by SQLite and PostgreSQL.
//!
//! Every migration must run on both databases: write portable sea-query
//! statements, and keep backend-specific SQL behind an explicit backend check.

pub use sea_orm_migration::prelude::*;

mod m20261203_000001_initial;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261203_000001_initial::Migration)]
    }
}
