//! Ticket rules: booking without overselling, holds that lapse on time,
//! cancellation, and check-in at the door.
//!
//! Capacity is guarded by locking the event's row for the length of the
//! booking transaction (`SELECT … FOR UPDATE` on PostgreSQL; on SQLite the
//! write transaction itself is exclusive). Inside the lock the seats in use
//! are counted as of now, so a hold stops counting the instant it expires,
//! whether or not the sweeper has run. See docs/architecture.md.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QuerySelect, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::entity::{self as ticket, TicketStatus};
use crate::accounts::{CurrentUser, Role};
use crate::app::AppState;
use crate::audit;
use crate::db;
use crate::email::notices;
use crate::error::{AppError, AppResult, unique_violation};
use crate::events::entity::{self as event, EventStatus};
use crate::graphql::pagination::{Cursor, Direction, Page, PageRequest, keyset_page};

/// What a ticket is at `now`: a pending hold past its expiry is expired,
/// even before the sweeper writes it down.
pub fn effective_status(ticket: &ticket::Model, now: DateTime<Utc>) -> TicketStatus {
    match (ticket.status, ticket.expires_at) {
        (TicketStatus::Pending, Some(expires)) if expires <= now => TicketStatus::Expired,
        (status, _) => status,
    }
}

/// Tickets holding a seat at `now`.
pub fn holding_seat(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(ticket::Column::Status.eq(TicketStatus::Confirmed))
        .add(
            Condition::all()
                .add(ticket::Column::Status.eq(TicketStatus::Pending))
                .add(ticket::Column::ExpiresAt.gt(now)),
        )
}

/// Filters a list by the status a reader sees (expired holds read EXPIRED).
fn status_condition(status: TicketStatus, now: DateTime<Utc>) -> Condition {
    match status {
        TicketStatus::Pending => Condition::all()
            .add(ticket::Column::Status.eq(TicketStatus::Pending))
            .add(ticket::Column::ExpiresAt.gt(now)),
        TicketStatus::Expired => Condition::any()
            .add(ticket::Column::Status.eq(TicketStatus::Expired))
            .add(
                Condition::all()
                    .add(ticket::Column::Status.eq(TicketStatus::Pending))
                    .add(ticket::Column::ExpiresAt.lte(now)),
            ),
        other => Condition::all().add(ticket::Column::Status.eq(other)),
    }
}

/// Loads an event and, on PostgreSQL, locks its row until the transaction
/// ends, so concurrent bookings of one event take turns (across processes
/// too). SQLite's write transaction is already exclusive.
pub(crate) async fn lock_event(
    txn: &DatabaseTransaction,
    id: Uuid,
) -> AppResult<Option<event::Model>> {
    let mut query = event::Entity::find_by_id(id);
    if db::is_postgres(txn) {
        query = query.lock_exclusive();
    }
    Ok(query.one(txn).await?)
}

pub(crate) async fn seats_in_use(
    txn: &impl ConnectionTrait,
    event_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<u64> {
    Ok(ticket::Entity::find()
        .filter(ticket::Column::EventId.eq(event_id))
        .filter(holding_seat(now))
        .count(txn)
        .await?)
}

/// Writes down the holds of one event that have lapsed, so the one-active-
/// ticket index lets their holders book again.
pub(crate) async fn expire_event_holds(
    txn: &impl ConnectionTrait,
    event_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<u64> {
    let result = ticket::Entity::update_many()
        .col_expr(ticket::Column::Status, Expr::value(TicketStatus::Expired))
        .col_expr(ticket::Column::UpdatedAt, Expr::value(now))
        .filter(ticket::Column::EventId.eq(event_id))
        .filter(ticket::Column::Status.eq(TicketStatus::Pending))
        .filter(ticket::Column::ExpiresAt.lte(now))
        .exec(txn)
        .await?;
    Ok(result.rows_affected)
}

/// Marks every lapsed hold EXPIRED. Safe on many processes at once: each
/// row changes once, in whichever process gets to it first.
pub async fn expire_holds(db: &impl ConnectionTrait, now: DateTime<Utc>) -> AppResult<u64> {
    let result = ticket::Entity::update_many()
        .col_expr(ticket::Column::Status, Expr::value(TicketStatus::Expired))
        .col_expr(ticket::Column::UpdatedAt, Expr::value(now))
        .filter(ticket::Column::Status.eq(TicketStatus::Pending))
        .filter(ticket::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Audits a ticket act when the caller is staff or above; a member's own
/// booking or cancellation is not a privileged act.
async fn audit_if_privileged(
    txn: &impl ConnectionTrait,
    caller: CurrentUser,
    action: &str,
    ticket_id: Uuid,
    details: serde_json::Value,
    now: DateTime<Utc>,
) -> AppResult<()> {
    if caller.role >= Role::Staff {
        audit::record(
            txn,
            Some(caller.id),
            action,
            &audit::target("ticket", ticket_id),
            details,
            now,
        )
        .await?;
    }
    Ok(())
}

pub async fn book(
    state: &AppState,
    caller: CurrentUser,
    event_id: Uuid,
) -> AppResult<ticket::Model> {
    let now = state.clock.now();
    refuse_if_full(state, event_id, now).await?;

    let txn = db::begin_write(&state.db).await?;
    let event = lock_event(&txn, event_id)
        .await?
        .filter(|e| e.status != EventStatus::Draft || caller.role >= Role::Staff)
        .ok_or(AppError::NotFound("Event"))?;
    if event.status != EventStatus::Published {
        return Err(AppError::conflict("this event is not open for booking"));
    }
    if event.ends_at <= now {
        return Err(AppError::conflict("this event has ended"));
    }

    expire_event_holds(&txn, event_id, now).await?;
    let held = ticket::Entity::find()
        .filter(ticket::Column::EventId.eq(event_id))
        .filter(ticket::Column::UserId.eq(caller.id))
        .filter(holding_seat(now))
        .count(&txn)
        .await?;
    if held > 0 {
        return Err(AppError::conflict(
            "you already hold a ticket for this event",
        ));
    }
    if seats_in_use(&txn, event_id, now).await? >= event.capacity.max(0) as u64 {
        metrics::counter!("tickets_sold_out_total").increment(1);
        return Err(AppError::SoldOut);
    }

    let id = Uuid::now_v7();
    let free = event.price_minor.is_none();
    let hold = Duration::seconds(state.config.ticket_hold_seconds as i64);
    let model = ticket::ActiveModel {
        id: Set(id),
        event_id: Set(event_id),
        user_id: Set(caller.id),
        status: Set(if free {
            TicketStatus::Confirmed
        } else {
            TicketStatus::Pending
        }),
        code: Set(free.then(|| state.signer.code(id, event_id))),
        price_minor: Set(event.price_minor),
        currency: Set(event.currency.clone()),
        expires_at: Set((!free).then_some(now + hold)),
        checked_in_at: Set(None),
        checked_in_by: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let booked = model.insert(&txn).await.map_err(|err| {
        if unique_violation(
            &err,
            "tickets_one_active_key",
            "tickets.event_id, tickets.user_id",
        ) {
            AppError::conflict("you already hold a ticket for this event")
        } else {
            err.into()
        }
    })?;

    if booked.status == TicketStatus::Confirmed {
        notices::ticket_confirmed(&txn, &booked, now).await?;
    }
    let details = json!({ "event": event_id.to_string(), "status": status_name(booked.status) });
    audit_if_privileged(&txn, caller, "ticket.book", id, details, now).await?;
    txn.commit().await?;
    metrics::counter!("tickets_booked_total").increment(1);
    tracing::info!(ticket.id = %id, event.id = %event_id, "ticket booked");
    Ok(booked)
}

/// In a rush most requests come after the last seat went. Telling them so
/// without queueing for the event's lock keeps the lock for those who can
/// still get a seat. (A seat freed a moment later is not promised to anyone:
/// the answer was true when given.)
async fn refuse_if_full(state: &AppState, event_id: Uuid, now: DateTime<Utc>) -> AppResult<()> {
    let Some(event) = event::Entity::find_by_id(event_id).one(&state.db).await? else {
        return Ok(());
    };
    let full = seats_in_use(&state.db, event_id, now).await? >= event.capacity.max(0) as u64;
    if event.status == EventStatus::Published && full {
        metrics::counter!("tickets_sold_out_total").increment(1);
        return Err(AppError::SoldOut);
    }
    Ok(())
}

/// The ticket, if the caller may know it exists: its owner or staff.
pub async fn get_visible(
    db: &impl ConnectionTrait,
    caller: CurrentUser,
    id: Uuid,
) -> AppResult<ticket::Model> {
    ticket::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|t| t.user_id == caller.id || caller.role >= Role::Staff)
        .ok_or(AppError::NotFound("Ticket"))
}

pub async fn list(
    db: &impl ConnectionTrait,
    condition: Condition,
    page: &PageRequest,
) -> AppResult<Page<ticket::Model>> {
    keyset_page::<ticket::Entity>(
        db,
        condition,
        page,
        (ticket::Column::CreatedAt, ticket::Column::Id),
        Direction::Ascending,
        |row| Cursor::new(row.created_at, row.id),
    )
    .await
}

pub fn of_user(user_id: Uuid) -> Condition {
    Condition::all().add(ticket::Column::UserId.eq(user_id))
}

pub fn of_event(event_id: Uuid, status: Option<TicketStatus>, now: DateTime<Utc>) -> Condition {
    let condition = Condition::all().add(ticket::Column::EventId.eq(event_id));
    match status {
        Some(status) => condition.add(status_condition(status, now)),
        None => condition,
    }
}

async fn load_for_update(txn: &DatabaseTransaction, id: Uuid) -> AppResult<ticket::Model> {
    let mut query = ticket::Entity::find_by_id(id);
    if db::is_postgres(txn) {
        query = query.lock_exclusive();
    }
    query.one(txn).await?.ok_or(AppError::NotFound("Ticket"))
}

async fn set_status(
    txn: &DatabaseTransaction,
    current: ticket::Model,
    status: TicketStatus,
    now: DateTime<Utc>,
) -> AppResult<ticket::Model> {
    let mut model: ticket::ActiveModel = current.into();
    model.status = Set(status);
    model.updated_at = Set(now);
    if status != TicketStatus::Pending {
        model.expires_at = Set(None);
    }
    model.update(txn).await.map_err(|err| {
        if unique_violation(
            &err,
            "tickets_one_active_key",
            "tickets.event_id, tickets.user_id",
        ) {
            AppError::conflict("the holder already has another active ticket for this event")
        } else {
            err.into()
        }
    })
}

/// The owner may cancel a hold, or a confirmed ticket that cost nothing, until
/// the event starts; organizers may cancel any active ticket.
pub async fn cancel(state: &AppState, caller: CurrentUser, id: Uuid) -> AppResult<ticket::Model> {
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let current = load_for_update(&txn, id).await?;
    let is_organizer = caller.role >= Role::Organizer;
    if current.user_id != caller.id && !is_organizer {
        return Err(if caller.role >= Role::Staff {
            AppError::Forbidden
        } else {
            AppError::NotFound("Ticket")
        });
    }

    let status = effective_status(&current, now);
    if !matches!(status, TicketStatus::Pending | TicketStatus::Confirmed) {
        return Err(AppError::conflict(format!(
            "a {} ticket cannot be cancelled",
            status_name(status)
        )));
    }
    if !is_organizer {
        let event = event::Entity::find_by_id(current.event_id)
            .one(&txn)
            .await?
            .ok_or(AppError::NotFound("Event"))?;
        if event.starts_at <= now {
            return Err(AppError::conflict("the event has started"));
        }
        if status == TicketStatus::Confirmed && current.price_minor.is_some() {
            return Err(AppError::conflict(
                "a paid ticket is cancelled through a refund",
            ));
        }
    }

    let cancelled = set_status(&txn, current, TicketStatus::Cancelled, now).await?;
    audit_if_privileged(
        &txn,
        caller,
        "ticket.cancel",
        id,
        json!({ "from": status_name(status) }),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(cancelled)
}

/// An organizer's correction of a ticket's status. Making a ticket active
/// again takes a seat, so it obeys capacity and the one-ticket rule.
pub async fn update_status(
    state: &AppState,
    caller: CurrentUser,
    id: Uuid,
    status: TicketStatus,
) -> AppResult<ticket::Model> {
    if !matches!(status, TicketStatus::Confirmed | TicketStatus::Cancelled) {
        return Err(AppError::bad_input(
            "status",
            "a ticket can be set to CONFIRMED or CANCELLED; refunds and expiry happen by themselves",
        ));
    }
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let probe = ticket::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound("Ticket"))?;
    let event = lock_event(&txn, probe.event_id)
        .await?
        .ok_or(AppError::NotFound("Event"))?;
    let current = load_for_update(&txn, id).await?;
    let from = effective_status(&current, now);
    if from == status {
        return Err(AppError::conflict(format!(
            "the ticket is already {}",
            status_name(status)
        )));
    }

    if status == TicketStatus::Confirmed && from != TicketStatus::Pending {
        if event.status == EventStatus::Cancelled {
            return Err(AppError::conflict("the event is cancelled"));
        }
        expire_event_holds(&txn, event.id, now).await?;
        if seats_in_use(&txn, event.id, now).await? >= event.capacity.max(0) as u64 {
            return Err(AppError::SoldOut);
        }
    }

    let code = current.code.clone();
    let mut updated = set_status(&txn, current, status, now).await?;
    if status == TicketStatus::Confirmed && code.is_none() {
        let mut model: ticket::ActiveModel = updated.into();
        model.code = Set(Some(state.signer.code(id, event.id)));
        updated = model.update(&txn).await?;
    }
    if status == TicketStatus::Confirmed {
        notices::ticket_confirmed(&txn, &updated, now).await?;
    }

    let details = json!({ "from": status_name(from), "to": status_name(status) });
    audit::record(
        &txn,
        Some(caller.id),
        "ticket.update",
        &audit::target("ticket", id),
        details,
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(updated)
}

pub struct CheckIn {
    pub ticket: ticket::Model,
    pub already_checked_in: bool,
}

/// Lets a ticket holder in. Of two scans at the same instant, the
/// conditional update lets one record the entry; the other reads it back.
pub async fn check_in(state: &AppState, caller: CurrentUser, code: &str) -> AppResult<CheckIn> {
    let (ticket_id, _event_id) = state
        .signer
        .verify(code)
        .ok_or(AppError::NotFound("Ticket"))?;
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;

    let entered = ticket::Entity::update_many()
        .col_expr(ticket::Column::CheckedInAt, Expr::value(now))
        .col_expr(ticket::Column::CheckedInBy, Expr::value(caller.id))
        .col_expr(ticket::Column::UpdatedAt, Expr::value(now))
        .filter(ticket::Column::Id.eq(ticket_id))
        .filter(ticket::Column::Status.eq(TicketStatus::Confirmed))
        .filter(ticket::Column::CheckedInAt.is_null())
        .exec(&txn)
        .await?;
    let current = ticket::Entity::find_by_id(ticket_id)
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound("Ticket"))?;

    if entered.rows_affected == 1 {
        audit::record(
            &txn,
            Some(caller.id),
            "ticket.check_in",
            &audit::target("ticket", ticket_id),
            json!({ "event": current.event_id.to_string() }),
            now,
        )
        .await?;
        txn.commit().await?;
        tracing::info!(ticket.id = %ticket_id, "checked in");
        return Ok(CheckIn {
            ticket: current,
            already_checked_in: false,
        });
    }
    txn.commit().await?;

    let status = effective_status(&current, now);
    if status != TicketStatus::Confirmed {
        return Err(AppError::conflict(format!(
            "the ticket is {}",
            status_name(status)
        )));
    }
    Ok(CheckIn {
        ticket: current,
        already_checked_in: true,
    })
}

pub async fn undo_check_in(
    state: &AppState,
    caller: CurrentUser,
    id: Uuid,
) -> AppResult<ticket::Model> {
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let current = load_for_update(&txn, id).await?;
    let Some(entered_at) = current.checked_in_at else {
        return Err(AppError::conflict("the ticket was not checked in"));
    };

    let mut model: ticket::ActiveModel = current.into();
    model.checked_in_at = Set(None);
    model.checked_in_by = Set(None);
    model.updated_at = Set(now);
    let updated = model.update(&txn).await?;
    let details = json!({ "checkedInAt": entered_at.to_rfc3339() });
    audit::record(
        &txn,
        Some(caller.id),
        "ticket.undo_check_in",
        &audit::target("ticket", id),
        details,
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(updated)
}

/// Cancels an event and every ticket still active for it, and queues a
/// notice to each holder. Refunds follow the commit (see
/// `payments::reconcile::refund_tickets_that_did_not_stand`).
pub async fn cancel_event(
    state: &AppState,
    caller: CurrentUser,
    event_id: Uuid,
    reason: Option<String>,
) -> AppResult<event::Model> {
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let current = lock_event(&txn, event_id)
        .await?
        .ok_or(AppError::NotFound("Event"))?;
    if current.status == EventStatus::Cancelled {
        return Err(AppError::conflict("the event is already cancelled"));
    }
    let reason = reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 2_000) {
        return Err(AppError::bad_input(
            "reason",
            "must be at most 2000 characters",
        ));
    }

    let holders: Vec<Uuid> = ticket::Entity::find()
        .select_only()
        .column(ticket::Column::UserId)
        .filter(ticket::Column::EventId.eq(event_id))
        .filter(ticket::Column::Status.is_in([TicketStatus::Pending, TicketStatus::Confirmed]))
        .into_tuple()
        .all(&txn)
        .await?;
    let attendees = crate::accounts::entity::user::Entity::find()
        .filter(crate::accounts::entity::user::Column::Id.is_in(holders))
        .all(&txn)
        .await?;

    let cancelled_tickets = ticket::Entity::update_many()
        .col_expr(ticket::Column::Status, Expr::value(TicketStatus::Cancelled))
        .col_expr(
            ticket::Column::ExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(ticket::Column::UpdatedAt, Expr::value(now))
        .filter(ticket::Column::EventId.eq(event_id))
        .filter(ticket::Column::Status.is_in([TicketStatus::Pending, TicketStatus::Confirmed]))
        .exec(&txn)
        .await?
        .rows_affected;

    let mut model: event::ActiveModel = current.into();
    model.status = Set(EventStatus::Cancelled);
    model.cancel_reason = Set(reason.clone());
    model.updated_at = Set(now);
    let updated = model.update(&txn).await?;
    notices::event_cancelled(&txn, &updated, &attendees, now).await?;

    let details = json!({ "reason": reason, "ticketsCancelled": cancelled_tickets });
    audit::record(
        &txn,
        Some(caller.id),
        "event.cancel",
        &audit::target("event", event_id),
        details,
        now,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(event.id = %event_id, tickets = cancelled_tickets, "event cancelled");
    Ok(updated)
}

pub fn status_name(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::Pending => "PENDING",
        TicketStatus::Confirmed => "CONFIRMED",
        TicketStatus::Cancelled => "CANCELLED",
        TicketStatus::Refunded => "REFUNDED",
        TicketStatus::Expired => "EXPIRED",
    }
}

/// Confirms the ticket of a payment that went through. A hold that lapsed
/// before the money arrived is confirmed only if a seat is still free (and
/// the holder has not booked again meanwhile). `false` means the ticket
/// could not be confirmed and the money must go back.
pub(crate) async fn confirm_after_payment(
    state: &AppState,
    txn: &DatabaseTransaction,
    ticket_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let Some(probe) = ticket::Entity::find_by_id(ticket_id).one(txn).await? else {
        return Ok(false);
    };
    let Some(event) = lock_event(txn, probe.event_id).await? else {
        return Ok(false);
    };
    let current = load_for_update(txn, ticket_id).await?;
    match effective_status(&current, now) {
        TicketStatus::Confirmed => return Ok(true),
        TicketStatus::Cancelled | TicketStatus::Refunded => return Ok(false),
        TicketStatus::Pending => {}
        TicketStatus::Expired => {
            if event.status == EventStatus::Cancelled {
                return Ok(false);
            }
            expire_event_holds(txn, event.id, now).await?;
            if seats_in_use(txn, event.id, now).await? >= event.capacity.max(0) as u64 {
                return Ok(false);
            }
        }
    }

    let code = current
        .code
        .clone()
        .unwrap_or_else(|| state.signer.code(ticket_id, event.id));
    let mut model: ticket::ActiveModel = current.into();
    model.status = Set(TicketStatus::Confirmed);
    model.expires_at = Set(None);
    model.code = Set(Some(code));
    model.updated_at = Set(now);
    match model.update(txn).await {
        Ok(confirmed) => {
            notices::ticket_confirmed(txn, &confirmed, now).await?;
            Ok(true)
        }
        Err(err)
            if unique_violation(
                &err,
                "tickets_one_active_key",
                "tickets.event_id, tickets.user_id",
            ) =>
        {
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}

/// A fully refunded ticket gives its seat back.
pub(crate) async fn mark_refunded(
    txn: &DatabaseTransaction,
    ticket_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<()> {
    ticket::Entity::update_many()
        .col_expr(ticket::Column::Status, Expr::value(TicketStatus::Refunded))
        .col_expr(
            ticket::Column::ExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(ticket::Column::UpdatedAt, Expr::value(now))
        .filter(ticket::Column::Id.eq(ticket_id))
        .exec(txn)
        .await?;
    Ok(())
}
