//! Batch loaders, one set per request, so that a list of N items with related
//! objects costs a bounded number of queries rather than N.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::Context;
use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use chrono::{DateTime, Utc};
use sea_orm::QuerySelect;

use crate::accounts::entity::user;
use crate::db::Db;
use crate::error::AppError;
use crate::events::entity as event;
use crate::media::entity as media;
use crate::payments::entity::payment;
use crate::tickets::entity as ticket;
use crate::tickets::service::holding_seat;

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

pub struct EventLoader {
    db: Db,
}

impl Loader<Uuid> for EventLoader {
    type Value = event::Model;
    type Error = Arc<sea_orm::DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = event::Entity::find()
            .filter(event::Column::Id.is_in(keys.iter().copied()))
            .all(&self.db)
            .await
            .map_err(Arc::new)?;
        Ok(rows.into_iter().map(|e| (e.id, e)).collect())
    }
}

pub struct MediaLoader {
    db: Db,
}

impl Loader<Uuid> for MediaLoader {
    type Value = media::Model;
    type Error = Arc<sea_orm::DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = media::Entity::find()
            .filter(media::Column::Id.is_in(keys.iter().copied()))
            .all(&self.db)
            .await
            .map_err(Arc::new)?;
        Ok(rows.into_iter().map(|m| (m.id, m)).collect())
    }
}

/// Seats in use per event, as of the start of the request: one grouped
/// count for a whole page of events.
pub struct SeatsLoader {
    db: Db,
    now: DateTime<Utc>,
}

impl Loader<Uuid> for SeatsLoader {
    type Value = i64;
    type Error = Arc<sea_orm::DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows: Vec<(Uuid, i64)> = ticket::Entity::find()
            .select_only()
            .column(ticket::Column::EventId)
            .column_as(ticket::Column::Id.count(), "seats")
            .filter(ticket::Column::EventId.is_in(keys.iter().copied()))
            .filter(holding_seat(self.now))
            .group_by(ticket::Column::EventId)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(Arc::new)?;
        // Every key gets an answer, zero included: a key left out would not
        // be cached, and each later load of it would query again.
        let counts: HashMap<Uuid, i64> = rows.into_iter().collect();
        Ok(keys
            .iter()
            .map(|k| (*k, counts.get(k).copied().unwrap_or(0)))
            .collect())
    }
}

/// The latest payment of each ticket (by creation time, then id, as
/// `payments::service::latest_for_ticket` orders them), or none: one query
/// for a whole page of tickets.
pub struct LatestPaymentLoader {
    db: Db,
}

impl Loader<Uuid> for LatestPaymentLoader {
    type Value = Option<payment::Model>;
    type Error = Arc<sea_orm::DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        // A ticket has few payments (one per attempt), so reading them all
        // and keeping the first of each is cheaper than a per-ticket limit.
        let rows = payment::Entity::find()
            .filter(payment::Column::TicketId.is_in(keys.iter().copied()))
            .order_by_desc(payment::Column::CreatedAt)
            .order_by_desc(payment::Column::Id)
            .all(&self.db)
            .await
            .map_err(Arc::new)?;
        let mut latest: HashMap<Uuid, Self::Value> = keys.iter().map(|k| (*k, None)).collect();
        for row in rows {
            let slot = latest.entry(row.ticket_id).or_default();
            if slot.is_none() {
                *slot = Some(row);
            }
        }
        // Tickets without a payment keep their `None`, so that they are
        // cached too and never queried again in this request.
        Ok(latest)
    }
}

/// The loaders of one request. Their caches live as long as the request, so
/// nobody sees another request's data.
pub struct Loaders {
    pub users: DataLoader<UserLoader, HashMapCache>,
    pub events: DataLoader<EventLoader, HashMapCache>,
    pub seats: DataLoader<SeatsLoader, HashMapCache>,
    pub media: DataLoader<MediaLoader, HashMapCache>,
    pub payments: DataLoader<LatestPaymentLoader, HashMapCache>,
}

impl Loaders {
    pub fn new(db: &Db, now: DateTime<Utc>) -> Self {
        Self {
            users: DataLoader::with_cache(
                UserLoader { db: db.clone() },
                tokio::spawn,
                HashMapCache::default(),
            ),
            events: DataLoader::with_cache(
                EventLoader { db: db.clone() },
                tokio::spawn,
                HashMapCache::default(),
            ),
            seats: DataLoader::with_cache(
                SeatsLoader {
                    db: db.clone(),
                    now,
                },
                tokio::spawn,
                HashMapCache::default(),
            ),
            media: DataLoader::with_cache(
                MediaLoader { db: db.clone() },
                tokio::spawn,
                HashMapCache::default(),
            ),
            payments: DataLoader::with_cache(
                LatestPaymentLoader { db: db.clone() },
                tokio::spawn,
                HashMapCache::default(),
            ),
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

pub async fn media(ctx: &Context<'_>, id: Uuid) -> Result<Option<media::Model>, AppError> {
    loaders(ctx)?.media.load_one(id).await.map_err(load_error)
}

pub async fn event(ctx: &Context<'_>, id: Uuid) -> Result<Option<event::Model>, AppError> {
    loaders(ctx)?.events.load_one(id).await.map_err(load_error)
}

/// Seats held right now (confirmed, or pending and unexpired) for an event.
pub async fn seats_in_use(ctx: &Context<'_>, event_id: Uuid) -> Result<i64, AppError> {
    Ok(loaders(ctx)?
        .seats
        .load_one(event_id)
        .await
        .map_err(load_error)?
        .unwrap_or(0))
}

/// The latest payment of a ticket, whoever may see it: callers check.
pub async fn latest_payment(
    ctx: &Context<'_>,
    ticket_id: Uuid,
) -> Result<Option<payment::Model>, AppError> {
    Ok(loaders(ctx)?
        .payments
        .load_one(ticket_id)
        .await
        .map_err(load_error)?
        .flatten())
}

pub async fn users(ctx: &Context<'_>, ids: impl Iterator<Item = Uuid>) -> Result<(), AppError> {
    loaders(ctx)?
        .users
        .load_many(ids)
        .await
        .map_err(load_error)?;
    Ok(())
}

pub async fn events(ctx: &Context<'_>, ids: impl Iterator<Item = Uuid>) -> Result<(), AppError> {
    loaders(ctx)?
        .events
        .load_many(ids)
        .await
        .map_err(load_error)?;
    Ok(())
}

pub async fn seats(ctx: &Context<'_>, ids: impl Iterator<Item = Uuid>) -> Result<(), AppError> {
    loaders(ctx)?
        .seats
        .load_many(ids)
        .await
        .map_err(load_error)?;
    Ok(())
}

pub async fn media_many(
    ctx: &Context<'_>,
    ids: impl Iterator<Item = Uuid>,
) -> Result<(), AppError> {
    loaders(ctx)?
        .media
        .load_many(ids)
        .await
        .map_err(load_error)?;
    Ok(())
}

pub async fn latest_payments(
    ctx: &Context<'_>,
    ticket_ids: impl Iterator<Item = Uuid>,
) -> Result<(), AppError> {
    loaders(ctx)?
        .payments
        .load_many(ticket_ids)
        .await
        .map_err(load_error)?;
    Ok(())
}
