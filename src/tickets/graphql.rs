//! The `Ticket` type, booking and door operations.

use async_graphql::{Context, ID, Object, SimpleObject};

use super::entity::{self as ticket, TicketStatus};
use super::service::{self, effective_status};
use crate::accounts::auth::viewer;
use crate::accounts::graphql::UserObject;
use crate::accounts::{Role, RoleGuard};
use crate::app::AppState;
use crate::error::AppError;
use crate::events::graphql::EventObject;
use crate::graphql::loaders;
use crate::graphql::pagination::{CountedConnection, PageRequest, parse_id};
use crate::graphql::scalars::DateTimeScalar;

pub struct TicketObject(pub ticket::Model);

#[Object(name = "Ticket")]
impl TicketObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn event(&self, ctx: &Context<'_>) -> async_graphql::Result<EventObject> {
        let event = loaders::event(ctx, self.0.event_id)
            .await?
            .ok_or(AppError::NotFound("Event"))?;
        Ok(EventObject(event))
    }

    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<UserObject> {
        let user = loaders::user(ctx, self.0.user_id)
            .await?
            .ok_or(AppError::NotFound("User"))?;
        Ok(UserObject::from(user))
    }

    /// EXPIRED as soon as a hold lapses, before any sweeper runs.
    async fn status(&self, ctx: &Context<'_>) -> TicketStatus {
        effective_status(&self.0, ctx.data_unchecked::<AppState>().clock.now())
    }

    /// The check-in code, for the owner and STAFF+; only a confirmed ticket
    /// has a usable one.
    async fn code(&self, ctx: &Context<'_>) -> Option<&str> {
        let viewer = viewer(ctx);
        let allowed = viewer.is(self.0.user_id) || viewer.has_role(Role::Staff);
        let confirmed = self.0.status == TicketStatus::Confirmed;
        (allowed && confirmed)
            .then_some(self.0.code.as_deref())
            .flatten()
    }

    /// While PENDING: when the held seat is released.
    async fn expires_at(&self) -> Option<DateTimeScalar> {
        match self.0.status {
            TicketStatus::Pending => self.0.expires_at.map(DateTimeScalar),
            _ => None,
        }
    }

    /// The latest payment for this ticket, to its owner and STAFF+.
    async fn payment(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<crate::payments::graphql::PaymentObject>> {
        if !may_see_payment(ctx, &self.0) {
            return Ok(None);
        }
        let latest = loaders::latest_payment(ctx, self.0.id).await?;
        Ok(latest.map(crate::payments::graphql::PaymentObject))
    }

    async fn checked_in_at(&self) -> Option<DateTimeScalar> {
        self.0.checked_in_at.map(DateTimeScalar)
    }

    async fn created_at(&self) -> DateTimeScalar {
        self.0.created_at.into()
    }
}

/// A ticket's payment is its owner's and STAFF+'s to see.
fn may_see_payment(ctx: &Context<'_>, ticket: &ticket::Model) -> bool {
    let viewer = viewer(ctx);
    viewer.is(ticket.user_id) || viewer.has_role(Role::Staff)
}

/// Loads the users, events, seat counts and payments that a page of tickets
/// will ask for, in one batch each, before the nodes resolve one by one.
/// Left to the nodes alone, the batches would depend on timing.
pub async fn prefetch(ctx: &Context<'_>, tickets: &[ticket::Model]) -> Result<(), AppError> {
    let node = ctx.look_ahead().field("edges").field("node");
    if node.field("user").exists() {
        loaders::users(ctx, tickets.iter().map(|t| t.user_id)).await?;
    }
    if node.field("payment").exists() {
        let visible = tickets.iter().filter(|t| may_see_payment(ctx, t));
        loaders::latest_payments(ctx, visible.map(|t| t.id)).await?;
    }
    let event = node.field("event");
    if event.exists() {
        let ids: Vec<_> = tickets.iter().map(|t| t.event_id).collect();
        loaders::events(ctx, ids.iter().copied()).await?;
        if event.field("ticketsRemaining").exists() {
            loaders::seats(ctx, ids.into_iter()).await?;
        }
    }
    Ok(())
}

#[derive(SimpleObject)]
pub struct CheckInResult {
    pub ticket: TicketObject,
    pub already_checked_in: bool,
}

#[derive(Default)]
pub struct TicketQuery;

#[Object]
impl TicketQuery {
    /// The owner or STAFF+; NOT_FOUND otherwise.
    async fn ticket(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<TicketObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let found = service::get_visible(&state.db, caller, parse_id(&id, "id")?).await?;
        Ok(Some(TicketObject(found)))
    }

    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn my_tickets(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<CountedConnection<TicketObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let page = PageRequest::new(ctx, first, after)?;
        let page = service::list(&state.db, service::of_user(caller.id), &page).await?;
        prefetch(ctx, &page.models()).await?;
        Ok(page.map(TicketObject).into())
    }
}

#[derive(Default)]
pub struct TicketMutation;

#[Object]
impl TicketMutation {
    #[graphql(guard = "RoleGuard::new(Role::Member)")]
    async fn book_ticket(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
    ) -> async_graphql::Result<TicketObject> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let booked = service::book(state, caller, parse_id(&event_id, "eventId")?).await?;
        Ok(TicketObject(booked))
    }

    /// The owner (PENDING, or CONFIRMED and free, before the start) or ORGANIZER+.
    async fn cancel_ticket(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<TicketObject> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        Ok(TicketObject(
            service::cancel(state, caller, parse_id(&id, "id")?).await?,
        ))
    }

    #[graphql(guard = "RoleGuard::new(Role::Organizer)")]
    async fn update_ticket(
        &self,
        ctx: &Context<'_>,
        id: ID,
        status: TicketStatus,
    ) -> async_graphql::Result<TicketObject> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        Ok(TicketObject(
            service::update_status(state, caller, parse_id(&id, "id")?, status).await?,
        ))
    }

    #[graphql(guard = "RoleGuard::new(Role::Staff)")]
    async fn check_in(
        &self,
        ctx: &Context<'_>,
        code: String,
    ) -> async_graphql::Result<CheckInResult> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let result = service::check_in(state, caller, &code).await?;
        Ok(CheckInResult {
            ticket: TicketObject(result.ticket),
            already_checked_in: result.already_checked_in,
        })
    }

    #[graphql(guard = "RoleGuard::new(Role::Staff)")]
    async fn undo_check_in(
        &self,
        ctx: &Context<'_>,
        ticket_id: ID,
    ) -> async_graphql::Result<TicketObject> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        Ok(TicketObject(
            service::undo_check_in(state, caller, parse_id(&ticket_id, "ticketId")?).await?,
        ))
    }
}

/// Lets `ComplexObject` users elsewhere name the connection type.
pub type TicketConnection = CountedConnection<TicketObject>;
