//! The `Email` type, the outbox for admins, and organizers' announcements.

use std::collections::BTreeSet;

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};
use serde_json::json;
use uuid::Uuid;

use super::entity::{self as email, EmailStatus};
use super::outbox::{self, Notice};
use super::templates::Kind;
use crate::accounts::auth::viewer;
use crate::accounts::entity::user;
use crate::accounts::graphql::UserObject;
use crate::accounts::{Role, RoleGuard};
use crate::app::AppState;
use crate::audit;
use crate::db;
use crate::error::{AppError, AppResult};
use crate::graphql::loaders;
use crate::graphql::pagination::{
    CountedConnection, Cursor, Direction, Page, PageRequest, keyset_page, parse_id,
};
use crate::graphql::scalars::DateTimeScalar;
use crate::text;
use crate::tickets::entity::{self as ticket, TicketStatus};

pub struct EmailObject(pub email::Model);

#[Object(name = "Email")]
impl EmailObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<UserObject>> {
        let Some(id) = self.0.user_id else {
            return Ok(None);
        };
        Ok(loaders::user(ctx, id).await?.map(UserObject::from))
    }

    async fn to(&self) -> &str {
        &self.0.to_address
    }

    async fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The plain-text part. A password-reset link is a live credential, so
    /// its token is never shown back.
    async fn body(&self) -> String {
        match self.0.template.as_deref() {
            Some("password_reset") => redact_token(&self.0.body),
            _ => self.0.body.clone(),
        }
    }

    async fn status(&self) -> EmailStatus {
        self.0.status
    }

    async fn attempts(&self) -> i32 {
        self.0.attempts
    }

    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    async fn sent_at(&self) -> Option<DateTimeScalar> {
        self.0.sent_at.map(DateTimeScalar)
    }

    async fn created_at(&self) -> DateTimeScalar {
        self.0.created_at.into()
    }
}

#[derive(InputObject, Default)]
pub struct EmailFilter {
    pub status: Option<EmailStatus>,
    pub user_id: Option<ID>,
}

/// Recipients: the listed users and the event's CONFIRMED attendees, each
/// once.
#[derive(InputObject)]
pub struct SendEmailInput {
    pub subject: String,
    pub body: String,
    pub user_ids: Option<Vec<ID>>,
    pub event_id: Option<ID>,
}

#[derive(SimpleObject)]
pub struct SendEmailPayload {
    pub queued: i32,
}

#[derive(Default)]
pub struct EmailQuery;

#[Object]
impl EmailQuery {
    /// Newest first.
    #[graphql(
        guard = "RoleGuard::new(Role::Admin)",
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity"
    )]
    async fn emails(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<EmailFilter>,
    ) -> async_graphql::Result<CountedConnection<EmailObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let page = PageRequest::new(ctx, first, after)?;
        let filter = filter.unwrap_or_default();
        let mut condition = Condition::all();
        if let Some(status) = filter.status {
            condition = condition.add(email::Column::Status.eq(status));
        }
        if let Some(user_id) = &filter.user_id {
            condition = condition.add(email::Column::UserId.eq(parse_id(user_id, "userId")?));
        }
        Ok(list(state, condition, &page).await?.map(EmailObject).into())
    }
}

async fn list(
    state: &AppState,
    condition: Condition,
    page: &PageRequest,
) -> AppResult<Page<email::Model>> {
    keyset_page::<email::Entity>(
        &state.db,
        condition,
        page,
        (email::Column::CreatedAt, email::Column::Id),
        Direction::Descending,
        |row| Cursor::new(row.created_at, row.id),
    )
    .await
}

#[derive(Default)]
pub struct EmailMutation;

#[Object]
impl EmailMutation {
    #[graphql(guard = "RoleGuard::new(Role::Organizer)")]
    async fn send_email(
        &self,
        ctx: &Context<'_>,
        input: SendEmailInput,
    ) -> async_graphql::Result<SendEmailPayload> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let queued = send_announcement(state, caller.id, input).await?;
        Ok(SendEmailPayload {
            queued: queued as i32,
        })
    }
}

/// Queues one row per recipient, in their language, in one transaction
/// with its audit entry.
async fn send_announcement(
    state: &AppState,
    caller: Uuid,
    input: SendEmailInput,
) -> AppResult<usize> {
    let subject = input.subject.trim();
    let body = input.body.trim();
    text::check_clean("subject", subject, false)?;
    text::check_clean("body", body, true)?;
    if subject.is_empty() || subject.chars().count() > 200 {
        return Err(AppError::bad_input(
            "subject",
            "must be 1 to 200 characters",
        ));
    }
    if body.is_empty() || body.chars().count() > 20_000 {
        return Err(AppError::bad_input("body", "must be 1 to 20000 characters"));
    }

    let mut ids = BTreeSet::new();
    for id in input.user_ids.unwrap_or_default() {
        ids.insert(parse_id(&id, "userIds")?);
    }
    let event_id = input
        .event_id
        .as_ref()
        .map(|id| parse_id(id, "eventId"))
        .transpose()?;
    if let Some(event_id) = event_id {
        crate::events::entity::Entity::find_by_id(event_id)
            .one(&state.db)
            .await?
            .ok_or(AppError::NotFound("Event"))?;
        let attendees: Vec<Uuid> = ticket::Entity::find()
            .select_only()
            .column(ticket::Column::UserId)
            .filter(ticket::Column::EventId.eq(event_id))
            .filter(ticket::Column::Status.eq(TicketStatus::Confirmed))
            .into_tuple()
            .all(&state.db)
            .await?;
        ids.extend(attendees);
    }
    let recipients = user::Entity::find()
        .filter(user::Column::Id.is_in(ids.iter().copied()))
        .all(&state.db)
        .await?;
    if recipients.len() < ids.len() && input.event_id.is_none() {
        return Err(AppError::bad_input("userIds", "some users do not exist"));
    }
    if recipients.is_empty() {
        return Err(AppError::bad_input("userIds", "nobody to write to"));
    }

    let now = state.clock.now();
    let batch = Uuid::now_v7();
    let txn = db::begin_write(&state.db).await?;
    for recipient in &recipients {
        let context =
            minijinja::context! { name => &recipient.name, subject => subject, body => body };
        let notice = Notice {
            to: recipient,
            kind: Kind::Announcement,
            context,
            trusted_html: None,
            dedupe_key: Some(format!("announcement:{batch}:{}", recipient.id)),
        };
        outbox::enqueue(&txn, notice, now).await?;
    }
    let details = json!({ "subject": subject, "recipients": recipients.len(), "event": event_id.map(|e| e.to_string()) });
    audit::record(
        &txn,
        Some(caller),
        "email.send",
        &audit::target("email_batch", batch),
        details,
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(recipients.len())
}

fn redact_token(body: &str) -> String {
    body.split_whitespace()
        .map(|word| match word.split_once("token=") {
            Some((before, _)) => format!("{before}token=[redacted]"),
            None => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
