//! Batch loaders, one set per request, so that a list of N items with related
//! objects costs a bounded number of queries rather than N.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::Context;
use async_graphql::dataloader::{DataLoader, Loader};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::accounts::entity::user;
use crate::db::Db;
use crate::error::AppError;

pub struct UserLoader {
    db: Db,
}

impl Loader<Uuid> for UserLoader {
    type Value = user::Model;
    type Error = Arc<sea_orm::DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = user::Entity::find()
            .filter(user::Column::Id.is_in(keys.iter().copied()))
            .all(&self.db)
            .await
            .map_err(Arc::new)?;
        Ok(rows.into_iter().map(|u| (u.id, u)).collect())
    }
}

/// The loaders of one request. Their caches live as long as the request, so
/// nobody sees another request's data.
pub struct Loaders {
    pub users: DataLoader<UserLoader>,
}

impl Loaders {
    pub fn new(db: &Db) -> Self {
        Self {
            users: DataLoader::new(UserLoader { db: db.clone() }, tokio::spawn),
        }
    }
}

fn loaders<'a>(ctx: &'a Context<'_>) -> Result<&'a Loaders, AppError> {
    ctx.data_opt::<Loaders>()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("request has no loaders")))
}

fn load_error(err: Arc<sea_orm::DbErr>) -> AppError {
    AppError::Internal(anyhow::anyhow!("batch load: {err}"))
}

pub async fn user(ctx: &Context<'_>, id: Uuid) -> Result<Option<user::Model>, AppError> {
    loaders(ctx)?.users.load_one(id).await.map_err(load_error)
}
