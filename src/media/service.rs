//! The rules of media: who may upload, how files become stored pictures,
//! what may be deleted. The REST and GraphQL edges only translate.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::entity as media;
use super::images::{self, Processed};
use crate::accounts::CurrentUser;
use crate::app::AppState;
use crate::audit;
use crate::db;
use crate::error::{AppError, AppResult};
use crate::events::entity as event;
use crate::graphql::pagination::{Cursor, Direction, Page, PageRequest, keyset_page};

/// A file as it arrived: only its bytes count, never its name.
pub struct Upload {
    pub bytes: Vec<u8>,
    pub related_id: Option<Uuid>,
}

/// The public address of a media's file.
pub fn url(state: &AppState, id: Uuid) -> String {
    format!("{}/api/media/{id}", state.config.public_url())
}

pub fn thumbnail_url(state: &AppState, id: Uuid) -> String {
    format!("{}/thumbnail", url(state, id))
}

/// Decodes, cleans and stores the picture and its thumbnail, then records
/// the row and its audit entry in one transaction. Objects are written
/// first: a row never points at a missing file, and if the row cannot be
/// written the objects are removed again.
pub async fn upload(
    state: &AppState,
    caller: CurrentUser,
    upload: Upload,
) -> AppResult<media::Model> {
    let uploaded_size = upload.bytes.len();
    let processed = tokio::task::spawn_blocking(move || images::process(&upload.bytes))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("image task: {e}")))??;

    let id = Uuid::now_v7();
    let ext = processed.format.extension();
    let key = format!("media/{id}.{ext}");
    let thumbnail_key = format!("media/{id}-thumb.{ext}");
    let model = media::ActiveModel {
        id: Set(id),
        storage_key: Set(key.clone()),
        thumbnail_key: Set(Some(thumbnail_key.clone())),
        content_type: Set(processed.format.content_type().to_string()),
        size: Set(processed.bytes.len() as i64),
        width: Set(Some(processed.width as i32)),
        height: Set(Some(processed.height as i32)),
        related_id: Set(upload.related_id),
        uploaded_by: Set(Some(caller.id)),
        created_at: Set(state.clock.now()),
    };
    store(state, &key, &thumbnail_key, processed).await?;

    match record(state, caller, model, uploaded_size).await {
        Ok(model) => Ok(model),
        Err(err) => {
            remove_objects(state, [Some(key), Some(thumbnail_key)]).await;
            Err(err)
        }
    }
}

/// The picture, then its thumbnail; if the second fails the first goes.
async fn store(
    state: &AppState,
    key: &str,
    thumbnail_key: &str,
    processed: Processed,
) -> AppResult<()> {
    let content_type = processed.format.content_type();
    state
        .storage
        .put(key, processed.bytes, content_type)
        .await?;
    if let Err(err) = state
        .storage
        .put(thumbnail_key, processed.thumbnail, content_type)
        .await
    {
        remove_objects(state, [Some(key.to_string()), None]).await;
        return Err(err.into());
    }
    Ok(())
}

async fn record(
    state: &AppState,
    caller: CurrentUser,
    model: media::ActiveModel,
    uploaded_size: usize,
) -> AppResult<media::Model> {
    let txn = db::begin_write(&state.db).await?;
    let model = model.insert(&txn).await?;
    let details = json!({
        "contentType": model.content_type,
        "size": model.size,
        "uploadedSize": uploaded_size,
        "relatedId": model.related_id,
    });
    audit::record(
        &txn,
        Some(caller.id),
        "media.upload",
        &audit::target("media", model.id),
        details,
        model.created_at,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(media.id = %model.id, size = model.size, "media uploaded");
    Ok(model)
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<media::Model>> {
    Ok(media::Entity::find_by_id(id).one(db).await?)
}

/// The stored bytes of a media (or of its thumbnail) and their type.
pub async fn read(state: &AppState, id: Uuid, thumbnail: bool) -> AppResult<(String, Vec<u8>)> {
    let found = get(&state.db, id)
        .await?
        .ok_or(AppError::NotFound("Media"))?;
    let key = match thumbnail {
        true => found.thumbnail_key.as_deref().unwrap_or(&found.storage_key),
        false => &found.storage_key,
    };
    let bytes =
        state.storage.get(key).await?.ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("media {id} has no object at {key}"))
        })?;
    Ok((found.content_type, bytes))
}

/// Newest first.
pub async fn list(db: &impl ConnectionTrait, page: &PageRequest) -> AppResult<Page<media::Model>> {
    keyset_page::<media::Entity>(
        db,
        Condition::all(),
        page,
        (media::Column::CreatedAt, media::Column::Id),
        Direction::Descending,
        |row| Cursor::new(row.created_at, row.id),
    )
    .await
}

/// Removes the row (with its audit entry), then the stored objects. A media
/// that is some event's banner stays: the foreign key would refuse it anyway,
/// and the check first gives the caller a clear CONFLICT.
pub async fn delete(state: &AppState, caller: CurrentUser, id: Uuid) -> AppResult<bool> {
    let txn = db::begin_write(&state.db).await?;
    let found = get(&txn, id).await?.ok_or(AppError::NotFound("Media"))?;
    let in_use = event::Entity::find()
        .filter(event::Column::BannerId.eq(id))
        .count(&txn)
        .await?;
    if in_use > 0 {
        return Err(banner_in_use());
    }

    // A banner set by a concurrent transaction after the check meets the
    // foreign key (events_banner_id_fkey, ON DELETE RESTRICT).
    if let Err(err) = media::Entity::delete_by_id(id).exec(&txn).await {
        return Err(match err.sql_err() {
            Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => banner_in_use(),
            _ => err.into(),
        });
    }
    let details = json!({ "contentType": found.content_type, "size": found.size });
    audit::record(
        &txn,
        Some(caller.id),
        "media.delete",
        &audit::target("media", id),
        details,
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;

    // After the commit: a failure here leaves an orphan object, never a row
    // without its file.
    remove_objects(state, [Some(found.storage_key), found.thumbnail_key]).await;
    Ok(true)
}

fn banner_in_use() -> AppError {
    AppError::conflict("this media is an event's banner; change the banner first")
}

async fn remove_objects(state: &AppState, keys: [Option<String>; 2]) {
    for key in keys.into_iter().flatten() {
        if let Err(err) = state.storage.delete(&key).await {
            tracing::error!(key, error = format!("{err:#}"), "removing a stored object");
        }
    }
}
