//! The transactional emails, queued from the transactions of the changes
//! that cause them. Each has a dedupe key, so a replayed cause (a webhook
//! delivered twice) queues one email.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::context;
use sea_orm::{ConnectionTrait, EntityTrait};

use super::outbox::{self, Notice};
use super::templates::{self, Kind};
use crate::accounts::entity::user;
use crate::error::AppResult;
use crate::events::entity as event;
use crate::money::Money;
use crate::payments::entity::payment;
use crate::tickets::entity as ticket;

fn when(event: &event::Model) -> String {
    let tz: Tz = event
        .timezone
        .parse()
        .unwrap_or(chrono_tz::America::Asuncion);
    event
        .starts_at
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M")
        .to_string()
        + &format!(" ({})", event.timezone)
}

fn money(minor: i64, currency: &str) -> String {
    Money::from_minor(minor, currency)
        .map(|m| format!("{} {}", m.code(), m.amount()))
        .unwrap_or_default()
}

async fn load(
    db: &impl ConnectionTrait,
    user_id: uuid::Uuid,
    event_id: uuid::Uuid,
) -> AppResult<Option<(user::Model, event::Model)>> {
    let user = user::Entity::find_by_id(user_id).one(db).await?;
    let event = event::Entity::find_by_id(event_id).one(db).await?;
    Ok(user.zip(event))
}

/// The payer and the event of a payment.
async fn load_for_payment(
    db: &impl ConnectionTrait,
    payment: &payment::Model,
) -> AppResult<Option<(user::Model, event::Model)>> {
    let Some(ticket) = ticket::Entity::find_by_id(payment.ticket_id)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    load(db, payment.user_id, ticket.event_id).await
}

pub async fn ticket_confirmed(
    db: &impl ConnectionTrait,
    ticket: &ticket::Model,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let (Some(code), Some((user, event))) = (
        &ticket.code,
        load(db, ticket.user_id, ticket.event_id).await?,
    ) else {
        return Ok(());
    };
    let context = context! { name => &user.name, event => &event.title, starts => when(&event), location => &event.location, code => code };
    let notice = Notice {
        to: &user,
        kind: Kind::TicketConfirmed,
        context,
        trusted_html: templates::qr_table(code),
        dedupe_key: Some(format!("ticket_confirmed:{}", ticket.id)),
    };
    outbox::enqueue(db, notice, now).await
}

pub async fn payment_received(
    db: &impl ConnectionTrait,
    payment: &payment::Model,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let Some((user, event)) = load_for_payment(db, payment).await? else {
        return Ok(());
    };
    let context = context! { name => &user.name, event => &event.title, amount => money(payment.amount_minor, &payment.currency), provider => payment.provider.as_str() };
    let notice = Notice {
        to: &user,
        kind: Kind::PaymentReceived,
        context,
        trusted_html: None,
        dedupe_key: Some(format!("payment_received:{}", payment.id)),
    };
    outbox::enqueue(db, notice, now).await
}

/// `total_minor` is what has been refunded in all, after this refund.
pub async fn refund(
    db: &impl ConnectionTrait,
    payment: &payment::Model,
    previous_minor: i64,
    total_minor: i64,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let Some((user, event)) = load_for_payment(db, payment).await? else {
        return Ok(());
    };
    let context = context! {
        name => &user.name, event => &event.title,
        amount => money(total_minor - previous_minor, &payment.currency), total => money(total_minor, &payment.currency),
    };
    let notice = Notice {
        to: &user,
        kind: Kind::Refund,
        context,
        trusted_html: None,
        dedupe_key: Some(format!("refund:{}:{total_minor}", payment.id)),
    };
    outbox::enqueue(db, notice, now).await
}

pub async fn event_cancelled(
    db: &impl ConnectionTrait,
    event: &event::Model,
    attendees: &[user::Model],
    now: DateTime<Utc>,
) -> AppResult<()> {
    for user in attendees {
        let context = context! { name => &user.name, event => &event.title, starts => when(event), reason => event.cancel_reason.clone().unwrap_or_default() };
        let notice = Notice {
            to: user,
            kind: Kind::EventCancelled,
            context,
            trusted_html: None,
            dedupe_key: Some(format!("event_cancelled:{}:{}", event.id, user.id)),
        };
        outbox::enqueue(db, notice, now).await?;
    }
    Ok(())
}

pub async fn password_reset(
    db: &impl ConnectionTrait,
    user: &user::Model,
    link: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let context = context! { name => &user.name, link => link };
    let notice = Notice {
        to: user,
        kind: Kind::PasswordReset,
        context,
        trusted_html: None,
        dedupe_key: None,
    };
    outbox::enqueue(db, notice, now).await
}
