//! The audit log: one append-only entry for every privileged act, written in
//! the same transaction as the change it records.

pub mod graphql;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use uuid::Uuid;

use crate::error::AppResult;
use crate::graphql::pagination::{Cursor, Direction, Page, PageRequest, keyset_page};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_logs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Option<Uuid>,
        /// `entity.verb`, e.g. `event.update`.
        pub action: String,
        /// `entity:<id>`.
        pub target: String,
        pub details: Option<Json>,
        pub timestamp: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub fn target(entity: &str, id: Uuid) -> String {
    format!("{entity}:{id}")
}

/// Appends one entry. Pass the transaction of the change, so the entry and
/// the change commit or vanish together.
pub async fn record(
    db: &impl ConnectionTrait,
    actor: Option<Uuid>,
    action: &str,
    target: &str,
    details: serde_json::Value,
    at: DateTime<Utc>,
) -> AppResult<()> {
    entity::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(actor),
        action: Set(action.to_string()),
        target: Set(target.to_string()),
        details: Set(Some(details)),
        timestamp: Set(at),
    }
    .insert(db)
    .await?;
    tracing::info!(audit.action = action, audit.target = target, "audited");
    Ok(())
}

/// Entries matching `condition`, newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    condition: sea_orm::Condition,
    page: &PageRequest,
) -> AppResult<Page<entity::Model>> {
    keyset_page::<entity::Entity>(
        db,
        condition,
        page,
        (entity::Column::Timestamp, entity::Column::Id),
        Direction::Descending,
        |row| Cursor::new(row.timestamp, row.id),
    )
    .await
}
