//! The `Event` type and the event queries and mutations.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object};

use super::entity::{self as event, EventStatus};
use super::service::{self, EventFields, EventFilter as ServiceFilter};
use crate::accounts::auth::viewer;
use crate::accounts::{Role, RoleGuard};
use crate::app::AppState;
use crate::error::AppError;
use crate::graphql::loaders;
use crate::graphql::pagination::{CountedConnection, PageRequest, parse_id};
use crate::graphql::scalars::DateTimeScalar;
use crate::media::graphql::MediaObject;
use crate::media::service as media;
use crate::money::{MoneyInput, MoneyObject};
use crate::tickets::entity::TicketStatus;
use crate::tickets::graphql::{TicketConnection, TicketObject, prefetch};
use crate::tickets::service as tickets;

pub struct EventObject(pub event::Model);

#[Object(name = "Event")]
impl EventObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn slug(&self) -> &str {
        &self.0.slug
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    async fn starts_at(&self) -> DateTimeScalar {
        self.0.starts_at.into()
    }

    async fn ends_at(&self) -> DateTimeScalar {
        self.0.ends_at.into()
    }

    /// IANA name, e.g. "America/Asuncion".
    async fn timezone(&self) -> &str {
        &self.0.timezone
    }

    async fn location(&self) -> &str {
        &self.0.location
    }

    /// Null for a free event.
    async fn price(&self) -> Option<MoneyObject> {
        self.0.price().map(MoneyObject::from)
    }

    async fn capacity(&self) -> i32 {
        self.0.capacity
    }

    /// Capacity minus PENDING (unexpired) and CONFIRMED tickets.
    async fn tickets_remaining(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        let taken = loaders::seats_in_use(ctx, self.0.id).await?;
        Ok((i64::from(self.0.capacity) - taken).max(0) as i32)
    }

    #[graphql(
        guard = "RoleGuard::new(Role::Staff)",
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity"
    )]
    async fn tickets(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<TicketStatus>,
    ) -> async_graphql::Result<TicketConnection> {
        let state = ctx.data_unchecked::<AppState>();
        let page = PageRequest::new(ctx, first, after)?;
        let condition = tickets::of_event(self.0.id, status, state.clock.now());
        let page = tickets::list(&state.db, condition, &page).await?;
        prefetch(ctx, &page.models()).await?;
        Ok(page.map(TicketObject).into())
    }

    async fn status(&self) -> EventStatus {
        self.0.status
    }

    /// The banner's file, `PUBLIC_URL/api/media/{id}`.
    async fn banner_url(&self, ctx: &Context<'_>) -> Option<String> {
        let state = ctx.data_unchecked::<AppState>();
        self.0.banner_id.map(|id| media::url(state, id))
    }

    async fn banner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<MediaObject>> {
        let Some(id) = self.0.banner_id else {
            return Ok(None);
        };
        Ok(loaders::media(ctx, id).await?.map(MediaObject))
    }

    async fn created_at(&self) -> DateTimeScalar {
        self.0.created_at.into()
    }

    async fn updated_at(&self) -> DateTimeScalar {
        self.0.updated_at.into()
    }
}

/// Loads the banners and seat counts a page of events will ask for, one
/// batch each, so the page costs the same number of queries at any size.
async fn prefetch_events(ctx: &Context<'_>, events: &[event::Model]) -> Result<(), AppError> {
    let node = ctx.look_ahead().field("edges").field("node");
    if node.field("banner").exists() {
        loaders::media_many(ctx, events.iter().filter_map(|e| e.banner_id)).await?;
    }
    if node.field("ticketsRemaining").exists() {
        loaders::seats(ctx, events.iter().map(|e| e.id)).await?;
    }
    Ok(())
}

#[derive(InputObject)]
pub struct CreateEventInput {
    pub title: String,
    pub description: String,
    pub starts_at: DateTimeScalar,
    pub ends_at: DateTimeScalar,
    pub timezone: Option<String>,
    pub location: String,
    pub price: Option<MoneyInput>,
    pub capacity: i32,
    pub status: Option<EventStatus>,
    pub banner_id: Option<ID>,
    pub slug: Option<String>,
}

/// Every field is optional; an explicit `null` for `price` makes the event
/// free and for `bannerId` removes the banner.
#[derive(InputObject)]
pub struct UpdateEventInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub starts_at: Option<DateTimeScalar>,
    pub ends_at: Option<DateTimeScalar>,
    pub timezone: Option<String>,
    pub location: Option<String>,
    pub price: MaybeUndefined<MoneyInput>,
    pub capacity: Option<i32>,
    pub status: Option<EventStatus>,
    pub banner_id: MaybeUndefined<ID>,
    pub slug: Option<String>,
}

#[derive(InputObject, Default)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    /// Events starting at or after this instant.
    pub starts_after: Option<DateTimeScalar>,
    /// Events starting strictly before this instant.
    pub starts_before: Option<DateTimeScalar>,
    pub search: Option<String>,
}

fn money_parts(input: MoneyInput) -> (rust_decimal::Decimal, String) {
    (input.amount.0, input.currency)
}

fn banner(id: Option<ID>) -> Result<Option<uuid::Uuid>, AppError> {
    id.map(|id| parse_id(&id, "bannerId")).transpose()
}

impl TryFrom<CreateEventInput> for EventFields {
    type Error = AppError;

    fn try_from(input: CreateEventInput) -> Result<Self, AppError> {
        Ok(EventFields {
            title: Some(input.title),
            description: Some(input.description),
            starts_at: Some(input.starts_at.0),
            ends_at: Some(input.ends_at.0),
            timezone: input.timezone,
            location: Some(input.location),
            price: Some(input.price.map(money_parts)),
            capacity: Some(input.capacity),
            status: input.status,
            banner_id: Some(banner(input.banner_id)?),
            slug: input.slug,
        })
    }
}

impl TryFrom<UpdateEventInput> for EventFields {
    type Error = AppError;

    fn try_from(input: UpdateEventInput) -> Result<Self, AppError> {
        let banner_id = match input.banner_id {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(id) => Some(banner(Some(id))?),
        };
        let price = match input.price {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(money) => Some(Some(money_parts(money))),
        };
        Ok(EventFields {
            title: input.title,
            description: input.description,
            starts_at: input.starts_at.map(|t| t.0),
            ends_at: input.ends_at.map(|t| t.0),
            timezone: input.timezone,
            location: input.location,
            price,
            capacity: input.capacity,
            status: input.status,
            banner_id,
            slug: input.slug,
        })
    }
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// Ordered by startsAt, then id.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<EventFilter>,
    ) -> async_graphql::Result<CountedConnection<EventObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let page = PageRequest::new(ctx, first, after)?;
        let filter = filter.unwrap_or_default();
        let filter = ServiceFilter {
            status: filter.status,
            starts_after: filter.starts_after.map(|t| t.0),
            starts_before: filter.starts_before.map(|t| t.0),
            search: filter.search,
        };
        let page = service::list(&state.db, &viewer(ctx), filter, &page).await?;
        prefetch_events(ctx, &page.models()).await?;
        Ok(page.map(EventObject).into())
    }

    /// By id or by slug.
    async fn event(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        slug: Option<String>,
    ) -> async_graphql::Result<Option<EventObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let viewer = viewer(ctx);
        let found = match (id, slug) {
            (Some(id), _) => service::get(&state.db, &viewer, parse_id(&id, "id")?).await?,
            (None, Some(slug)) => service::get_by_slug(&state.db, &viewer, &slug).await?,
            (None, None) => return Err(AppError::bad_input("id", "give an id or a slug").into()),
        };
        Ok(Some(EventObject(found)))
    }
}

#[derive(Default)]
pub struct EventMutation;

#[Object]
impl EventMutation {
    #[graphql(guard = "RoleGuard::new(Role::Organizer)")]
    async fn create_event(
        &self,
        ctx: &Context<'_>,
        input: CreateEventInput,
    ) -> async_graphql::Result<EventObject> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let created = service::create(state, caller, input.try_into()?).await?;
        Ok(EventObject(created))
    }

    #[graphql(guard = "RoleGuard::new(Role::Organizer)")]
    async fn update_event(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateEventInput,
    ) -> async_graphql::Result<EventObject> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let id = parse_id(&id, "id")?;
        let updated = service::update(state, caller, id, input.try_into()?).await?;
        Ok(EventObject(updated))
    }

    /// Cancels the event and every active ticket for it.
    #[graphql(guard = "RoleGuard::new(Role::Organizer)")]
    async fn cancel_event(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> async_graphql::Result<EventObject> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let id = parse_id(&id, "id")?;
        let cancelled = tickets::cancel_event(state, caller, id, reason).await?;
        // The cancellation stands on its own; refunds follow it, and any that
        // fail now are retried by the reconciler.
        let mut report = crate::payments::reconcile::Report::default();
        if let Err(err) = crate::payments::reconcile::refund_tickets_that_did_not_stand(
            state,
            Some(id),
            &mut report,
        )
        .await
        {
            tracing::error!(event.id = %id, error = %err, "refunding a cancelled event");
        }
        Ok(EventObject(cancelled))
    }

    /// Refused with CONFLICT once the event has tickets.
    #[graphql(guard = "RoleGuard::new(Role::Organizer)")]
    async fn delete_event(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        Ok(service::delete(state, caller, parse_id(&id, "id")?).await?)
    }
}
