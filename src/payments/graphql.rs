//! The `Payment` type and the payment operations.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use sea_orm::{ColumnTrait, Condition};

use super::entity::{PaymentProvider, PaymentStatus, payment};
use super::service;
use crate::accounts::auth::viewer;
use crate::accounts::{Role, RoleGuard};
use crate::app::AppState;
use crate::error::AppError;
use crate::graphql::pagination::{CountedConnection, PageRequest, parse_id};
use crate::graphql::scalars::DateTimeScalar;
use crate::money::{DecimalScalar, Money, MoneyObject};
use crate::tickets::graphql::TicketObject;

pub struct PaymentObject(pub payment::Model);

impl PaymentObject {
    fn money(&self, minor: i64) -> async_graphql::Result<MoneyObject> {
        Money::from_minor(minor, &self.0.currency)
            .map(MoneyObject::from)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown currency")).into())
    }
}

#[Object(name = "Payment")]
impl PaymentObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn ticket(&self, ctx: &Context<'_>) -> async_graphql::Result<TicketObject> {
        let state = ctx.data_unchecked::<AppState>();
        let ticket = crate::tickets::entity::Entity::find_by_id(self.0.ticket_id)
            .one(&state.db)
            .await
            .map_err(AppError::from)?
            .ok_or(AppError::NotFound("Ticket"))?;
        Ok(TicketObject(ticket))
    }

    async fn provider(&self) -> PaymentProvider {
        self.0.provider
    }

    async fn amount(&self) -> async_graphql::Result<MoneyObject> {
        self.money(self.0.amount_minor)
    }

    async fn refunded_amount(&self) -> async_graphql::Result<MoneyObject> {
        self.money(self.0.refunded_minor)
    }

    async fn status(&self) -> PaymentStatus {
        self.0.status
    }

    /// The provider's id (Checkout Session, MercadoPago preference), or the
    /// manual note.
    async fn reference(&self) -> Option<&str> {
        self.0.reference.as_deref()
    }

    /// An automatic refund could not be sent (cash): an organizer must give
    /// the money back by hand.
    async fn manual_refund_required(&self) -> bool {
        self.0.manual_refund_required
    }

    async fn created_at(&self) -> DateTimeScalar {
        self.0.created_at.into()
    }

    async fn updated_at(&self) -> DateTimeScalar {
        self.0.updated_at.into()
    }
}

use sea_orm::EntityTrait;

#[derive(SimpleObject)]
pub struct PaymentSession {
    pub payment: PaymentObject,
    /// Where to send the payer (Stripe Checkout, MercadoPago).
    pub redirect_url: Option<String>,
    pub client_secret: Option<String>,
}

#[derive(InputObject, Default)]
pub struct PaymentFilter {
    pub status: Option<PaymentStatus>,
    pub provider: Option<PaymentProvider>,
    pub event_id: Option<ID>,
}

#[derive(Default)]
pub struct PaymentQuery;

#[Object]
impl PaymentQuery {
    /// The payer or an ADMIN; NOT_FOUND otherwise.
    async fn payment(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<PaymentObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        Ok(Some(PaymentObject(
            service::get_visible(&state.db, caller, parse_id(&id, "id")?).await?,
        )))
    }

    #[graphql(
        guard = "RoleGuard::new(Role::Admin)",
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity"
    )]
    async fn payments(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<PaymentFilter>,
    ) -> async_graphql::Result<CountedConnection<PaymentObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let page = PageRequest::new(ctx, first, after)?;
        let filter = filter.unwrap_or_default();
        let mut condition = Condition::all();
        if let Some(status) = filter.status {
            condition = condition.add(payment::Column::Status.eq(status));
        }
        if let Some(provider) = filter.provider {
            condition = condition.add(payment::Column::Provider.eq(provider));
        }
        if let Some(event_id) = &filter.event_id {
            let event_id = parse_id(event_id, "eventId")?;
            let tickets = sea_orm::sea_query::Query::select()
                .column(crate::tickets::entity::Column::Id)
                .from(crate::tickets::entity::Entity)
                .and_where(crate::tickets::entity::Column::EventId.eq(event_id))
                .to_owned();
            condition = condition.add(payment::Column::TicketId.in_subquery(tickets));
        }
        let page = service::list(&state.db, condition, &page).await?;
        Ok(page.map(PaymentObject).into())
    }
}

#[derive(Default)]
pub struct PaymentMutation;

#[Object]
impl PaymentMutation {
    /// For the ticket's owner. `returnUrl` must be on a CORS_ORIGINS origin.
    async fn initiate_payment(
        &self,
        ctx: &Context<'_>,
        ticket_id: ID,
        provider: PaymentProvider,
        return_url: Option<String>,
    ) -> async_graphql::Result<PaymentSession> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let ticket_id = parse_id(&ticket_id, "ticketId")?;
        let started =
            service::initiate(state, caller, ticket_id, provider, return_url.as_deref()).await?;
        Ok(PaymentSession {
            payment: PaymentObject(started.payment),
            redirect_url: started.redirect_url,
            client_secret: started.client_secret,
        })
    }

    /// Cash or a bank transfer was received.
    #[graphql(guard = "RoleGuard::new(Role::Organizer)")]
    async fn confirm_manual_payment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reference: Option<String>,
    ) -> async_graphql::Result<PaymentObject> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        Ok(PaymentObject(
            service::confirm_manual(state, caller, parse_id(&id, "id")?, reference).await?,
        ))
    }

    /// The whole remainder when `amount` is omitted.
    #[graphql(guard = "RoleGuard::new(Role::Admin)")]
    async fn refund_payment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        amount: Option<DecimalScalar>,
    ) -> async_graphql::Result<PaymentObject> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let refunded = service::refund(
            state,
            Some(caller),
            parse_id(&id, "id")?,
            amount.map(|a| a.0),
        )
        .await?;
        Ok(PaymentObject(refunded))
    }
}
