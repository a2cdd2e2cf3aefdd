//! Payment rules: starting a payment, applying what providers report (once,
//! and only forward), manual confirmation and refunds.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::entity::{PaymentProvider, PaymentStatus, payment, refund};
use super::gateways::{CheckoutRequest, GatewayError};
use crate::accounts::{CurrentUser, Role};
use crate::app::AppState;
use crate::audit;
use crate::db;
use crate::email::notices;
use crate::error::{AppError, AppResult};
use crate::events::entity as event;
use crate::graphql::pagination::{Cursor, Direction, Page, PageRequest, keyset_page};
use crate::money::Money;
use crate::tickets::entity::{self as ticket, TicketStatus};
use crate::tickets::service::{confirm_after_payment, effective_status, mark_refunded};

pub struct Initiated {
    pub payment: payment::Model,
    pub redirect_url: Option<String>,
    pub client_secret: Option<String>,
}

/// What a provider reported about a payment, in our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded {
        provider_payment_id: Option<String>,
    },
    Failed,
    Cancelled,
    /// The total refunded so far, in minor units.
    Refunded {
        total_minor: i64,
    },
}

fn money_of(p: &payment::Model) -> AppResult<Money> {
    Money::from_minor(p.amount_minor, &p.currency).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!("payment {} has an unknown currency", p.id))
    })
}

fn provider_error(err: GatewayError) -> AppError {
    tracing::warn!(error = %err, "payment provider failed");
    AppError::PaymentProvider(match err {
        GatewayError::Refused(message) => message,
        GatewayError::Unavailable(_) => "the provider could not be reached; try again".into(),
    })
}

/// A `returnUrl` must lead back to one of our own frontends: anything else
/// would make the checkout an open redirect.
fn check_return_url(state: &AppState, return_url: Option<&str>) -> AppResult<String> {
    let Some(url) = return_url else {
        return Ok(state
            .config
            .cors_origins
            .first()
            .cloned()
            .unwrap_or_else(|| state.config.public_url()));
    };
    let allowed = state.config.cors_origins.iter().any(|origin| {
        url == origin
            || url
                .strip_prefix(origin.as_str())
                .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
    });
    if !allowed {
        return Err(AppError::bad_input(
            "returnUrl",
            "must be on one of the configured origins (CORS_ORIGINS)",
        ));
    }
    Ok(url.to_string())
}

pub async fn initiate(
    state: &AppState,
    caller: CurrentUser,
    ticket_id: Uuid,
    provider: PaymentProvider,
    return_url: Option<&str>,
) -> AppResult<Initiated> {
    let now = state.clock.now();
    let ticket = ticket::Entity::find_by_id(ticket_id)
        .one(&state.db)
        .await?
        .filter(|t| t.user_id == caller.id)
        .ok_or(AppError::NotFound("Ticket"))?;
    if effective_status(&ticket, now) != TicketStatus::Pending {
        return Err(AppError::conflict(
            "only a ticket waiting for payment can be paid",
        ));
    }
    let (Some(minor), Some(currency)) = (ticket.price_minor, ticket.currency.as_deref()) else {
        return Err(AppError::conflict("this ticket is free"));
    };
    let amount = Money::from_minor(minor, currency)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("bad ticket currency")))?;
    let return_url = check_return_url(state, return_url)?;
    let enabled = match provider {
        PaymentProvider::Stripe => state.gateways.stripe.is_some(),
        PaymentProvider::Mercadopago => state.gateways.mercadopago.is_some(),
        PaymentProvider::Manual => true,
    };
    if !enabled {
        return Err(AppError::bad_input(
            "provider",
            format!("{} is not configured on this server", provider.as_str()),
        ));
    }

    let payment = create_pending(state, &ticket, provider, amount, now).await?;
    if provider == PaymentProvider::Manual {
        return Ok(Initiated {
            payment,
            redirect_url: None,
            client_secret: None,
        });
    }

    let event = event::Entity::find_by_id(ticket.event_id)
        .one(&state.db)
        .await?
        .ok_or(AppError::NotFound("Event"))?;
    let user = crate::accounts::service::find(&state.db, caller.id)
        .await?
        .ok_or(AppError::NotFound("User"))?;
    let request = CheckoutRequest {
        payment_id: payment.id,
        title: &event.title,
        amount,
        // The checkout closes with the hold on the seat (for Stripe, no
        // sooner than it allows; see `gateways::stripe_expiry`).
        now,
        expires_at: ticket.expires_at.unwrap_or(now + Duration::minutes(30)),
        return_url: &return_url,
        notification_url: format!(
            "{}/api/payments/webhook/mercadopago",
            state.config.public_url()
        ),
        customer_email: &user.email,
    };
    let created = match provider {
        PaymentProvider::Stripe => match &state.gateways.stripe {
            Some(stripe) => stripe.create_checkout(&request).await,
            None => unreachable_provider(),
        },
        _ => match &state.gateways.mercadopago {
            Some(mercadopago) => mercadopago.create_checkout(&request).await,
            None => unreachable_provider(),
        },
    };
    let checkout = match created {
        Ok(checkout) => checkout,
        Err(err) => {
            set_status(&state.db, payment.id, PaymentStatus::Failed, now).await?;
            return Err(provider_error(err));
        }
    };

    let mut model: payment::ActiveModel = payment.into();
    model.reference = Set(Some(checkout.reference));
    model.updated_at = Set(now);
    let payment = model.update(&state.db).await?;
    tracing::info!(payment.id = %payment.id, payment.provider = provider.as_str(), "payment initiated");
    Ok(Initiated {
        payment,
        redirect_url: checkout.redirect_url,
        client_secret: checkout.client_secret,
    })
}

fn unreachable_provider() -> Result<super::gateways::Checkout, GatewayError> {
    Err(GatewayError::Refused("provider not configured".into()))
}

/// A new PENDING payment for the ticket; earlier attempts still pending are
/// cancelled, so one ticket never has two live checkouts.
async fn create_pending(
    state: &AppState,
    ticket: &ticket::Model,
    provider: PaymentProvider,
    amount: Money,
    now: DateTime<Utc>,
) -> AppResult<payment::Model> {
    let txn = db::begin_write(&state.db).await?;
    payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Cancelled),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::TicketId.eq(ticket.id))
        .filter(payment::Column::Status.eq(PaymentStatus::Pending))
        .exec(&txn)
        .await?;
    let created = payment::ActiveModel {
        id: Set(Uuid::now_v7()),
        ticket_id: Set(ticket.id),
        user_id: Set(ticket.user_id),
        provider: Set(provider),
        status: Set(PaymentStatus::Pending),
        amount_minor: Set(amount.minor),
        currency: Set(amount.code().to_string()),
        refunded_minor: Set(0),
        reference: Set(None),
        provider_payment_id: Set(None),
        manual_refund_required: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(created)
}

async fn set_status(
    db: &impl ConnectionTrait,
    id: Uuid,
    status: PaymentStatus,
    now: DateTime<Utc>,
) -> AppResult<()> {
    payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(status))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

async fn lock_payment(txn: &DatabaseTransaction, id: Uuid) -> AppResult<Option<payment::Model>> {
    let mut query = payment::Entity::find_by_id(id);
    if db::is_postgres(txn) {
        query = query.lock_exclusive();
    }
    Ok(query.one(txn).await?)
}

/// The status that money paid and refunded so far add up to.
fn paid_status(p: &payment::Model) -> PaymentStatus {
    match p.refunded_minor {
        0 => PaymentStatus::Succeeded,
        r if r >= p.amount_minor => PaymentStatus::Refunded,
        _ => PaymentStatus::PartiallyRefunded,
    }
}

/// What applying an outcome led to, for the caller to finish outside the
/// transaction (a refund must not hold a database transaction open while a
/// provider answers).
#[derive(Debug, Default)]
pub struct Applied {
    pub changed: bool,
    /// The payment succeeded but its ticket could not be confirmed.
    pub refund_due: bool,
}

/// Applies a provider's outcome inside `txn`. States only move forward: a
/// late failure after success changes nothing, and a refund reported before
/// the success is kept and counted once the success arrives.
pub async fn apply_outcome(
    state: &AppState,
    txn: &DatabaseTransaction,
    payment_id: Uuid,
    outcome: Outcome,
    now: DateTime<Utc>,
    actor: Option<Uuid>,
) -> AppResult<Applied> {
    let Some(current) = lock_payment(txn, payment_id).await? else {
        return Ok(Applied::default());
    };
    let mut model: payment::ActiveModel = current.clone().into();
    let mut applied = Applied::default();
    let paid = current.status.is_paid() || current.status == PaymentStatus::Refunded;
    // Which notice the change calls for, sent once the row is written.
    enum Kind {
        Paid,
        Refunded,
    }
    let mut outcome_kind = None;

    match outcome {
        Outcome::Succeeded {
            provider_payment_id,
        } => {
            if paid {
                return Ok(applied);
            }
            if let Some(id) = provider_payment_id {
                model.provider_payment_id = Set(Some(id));
            }
            let next = payment::Model {
                status: PaymentStatus::Succeeded,
                ..current.clone()
            };
            let status = paid_status(&next);
            // Money for a ticket another payment already paid (an abandoned
            // checkout completed after all) is not kept: it goes back.
            let paid_twice = ticket_paid_by_another(txn, &current).await?;
            // A refund reported before this success already gave all the
            // money back: the ticket ends refunded, not confirmed.
            let confirmed = match status {
                _ if paid_twice => false,
                PaymentStatus::Refunded => {
                    mark_refunded(txn, current.ticket_id, now).await?;
                    true
                }
                _ => confirm_after_payment(state, txn, current.ticket_id, now).await?,
            };
            model.status = Set(status);
            outcome_kind = Some(Kind::Paid);
            applied = Applied {
                changed: true,
                refund_due: !confirmed && current.refunded_minor < current.amount_minor,
            };
            let details =
                json!({ "ticketConfirmed": confirmed, "provider": current.provider.as_str() });
            audit::record(
                txn,
                None,
                "payment.succeed",
                &audit::target("payment", payment_id),
                details,
                now,
            )
            .await?;
            if paid_twice {
                tracing::warn!(payment.id = %payment_id, "the ticket was already paid; refunding this payment");
            } else if !confirmed {
                tracing::warn!(payment.id = %payment_id, "paid after the hold lapsed with no seat left; refunding");
            }
        }
        Outcome::Failed | Outcome::Cancelled => {
            if current.status != PaymentStatus::Pending {
                return Ok(applied);
            }
            model.status = Set(if outcome == Outcome::Failed {
                PaymentStatus::Failed
            } else {
                PaymentStatus::Cancelled
            });
            applied.changed = true;
        }
        Outcome::Refunded { total_minor } => {
            let total = total_minor.clamp(0, current.amount_minor);
            if total <= current.refunded_minor {
                return Ok(applied);
            }
            model.refunded_minor = Set(total);
            outcome_kind = Some(Kind::Refunded);
            let next = payment::Model {
                refunded_minor: total,
                ..current.clone()
            };
            if paid {
                model.status = Set(paid_status(&next));
                // The seat goes only if no other payment still pays for it.
                if total >= current.amount_minor && !ticket_paid_by_another(txn, &current).await? {
                    mark_refunded(txn, current.ticket_id, now).await?;
                }
            }
            applied.changed = true;
            let details =
                json!({ "refundedMinor": total, "previousMinor": current.refunded_minor });
            audit::record(
                txn,
                actor,
                "payment.refund",
                &audit::target("payment", payment_id),
                details,
                now,
            )
            .await?;
        }
    }
    model.updated_at = Set(now);
    let updated = model.update(txn).await?;
    if updated.status != current.status {
        let labels = [
            ("provider", updated.provider.as_str()),
            ("status", updated.status.as_str()),
        ];
        metrics::counter!("payments_total", &labels).increment(1);
    }
    match outcome_kind {
        Some(Kind::Paid) => notices::payment_received(txn, &updated, now).await?,
        Some(Kind::Refunded)
            if updated.status.is_paid() || updated.status == PaymentStatus::Refunded =>
        {
            notices::refund(
                txn,
                &updated,
                current.refunded_minor,
                updated.refunded_minor,
                now,
            )
            .await?
        }
        _ => {}
    }
    Ok(applied)
}

/// Whether some other payment of the same ticket has taken money already.
async fn ticket_paid_by_another(
    txn: &DatabaseTransaction,
    current: &payment::Model,
) -> AppResult<bool> {
    let others = payment::Entity::find()
        .filter(payment::Column::TicketId.eq(current.ticket_id))
        .filter(payment::Column::Id.ne(current.id))
        .filter(
            payment::Column::Status
                .is_in([PaymentStatus::Succeeded, PaymentStatus::PartiallyRefunded]),
        )
        .count(txn)
        .await?;
    Ok(others > 0)
}

/// An organizer received cash or a transfer for a manual payment.
pub async fn confirm_manual(
    state: &AppState,
    caller: CurrentUser,
    id: Uuid,
    reference: Option<String>,
) -> AppResult<payment::Model> {
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let current = lock_payment(&txn, id)
        .await?
        .ok_or(AppError::NotFound("Payment"))?;
    if current.provider != PaymentProvider::Manual {
        return Err(AppError::conflict(
            "only a MANUAL payment is confirmed by hand",
        ));
    }
    if current.status != PaymentStatus::Pending {
        return Err(AppError::conflict(format!(
            "the payment is {}",
            current.status.as_str()
        )));
    }
    let note = reference
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if let Some(note) = &note {
        crate::text::check_clean("reference", note, false)?;
        if note.chars().count() > 500 {
            return Err(AppError::bad_input(
                "reference",
                "must be at most 500 characters",
            ));
        }
    }

    let success = Outcome::Succeeded {
        provider_payment_id: None,
    };
    let applied = apply_outcome(state, &txn, id, success, now, Some(caller.id)).await?;
    if applied.refund_due {
        return Err(AppError::SoldOut);
    }
    if let Some(note) = note {
        payment::Entity::update_many()
            .col_expr(payment::Column::Reference, Expr::value(note))
            .filter(payment::Column::Id.eq(id))
            .exec(&txn)
            .await?;
    }
    audit::record(
        &txn,
        Some(caller.id),
        "payment.confirm_manual",
        &audit::target("payment", id),
        json!({}),
        now,
    )
    .await?;
    txn.commit().await?;
    payment::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or(AppError::NotFound("Payment"))
}

/// Refunds `amount` (the whole remainder when `None`). Under the payment's
/// lock the amount is reserved as a PENDING refund, so two refunds at the
/// same instant can never add up to more than was paid; the provider is then
/// asked once, with the refund's id as idempotency key.
pub async fn refund(
    state: &AppState,
    caller: Option<CurrentUser>,
    id: Uuid,
    amount: Option<Decimal>,
) -> AppResult<payment::Model> {
    let now = state.clock.now();
    if caller.is_none() && flag_manual_refund(state, id, now).await? {
        return payment::Entity::find_by_id(id)
            .one(&state.db)
            .await?
            .ok_or(AppError::NotFound("Payment"));
    }
    let (current, reserved) = reserve_refund(state, caller, id, amount, now).await?;
    send_refund(state, &current, &reserved, caller.map(|c| c.id)).await?;
    payment::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or(AppError::NotFound("Payment"))
}

/// Asks the provider for a reserved refund (keyed by the refund's id, so a
/// retry cannot refund twice) and records the answer.
pub(crate) async fn send_refund(
    state: &AppState,
    current: &payment::Model,
    reserved: &refund::Model,
    actor: Option<Uuid>,
) -> AppResult<()> {
    let money = money_of(current).map(|m| Money {
        minor: reserved.amount_minor,
        ..m
    })?;
    let key = reserved.id.to_string();
    let result = match current.provider {
        PaymentProvider::Manual => Ok(None),
        PaymentProvider::Stripe => match (&state.gateways.stripe, &current.provider_payment_id) {
            (Some(stripe), Some(intent)) => stripe.refund(intent, money, &key).await.map(Some),
            _ => Err(GatewayError::Refused(
                "Stripe is not configured or the payment has no PaymentIntent".into(),
            )),
        },
        PaymentProvider::Mercadopago => {
            match (&state.gateways.mercadopago, &current.provider_payment_id) {
                (Some(mp), Some(mp_id)) => mp.refund(mp_id, money, &key).await.map(Some),
                _ => Err(GatewayError::Refused(
                    "MercadoPago is not configured or the payment has no MercadoPago id".into(),
                )),
            }
        }
    };

    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    match result {
        Ok(reference) => {
            finish_refund(&txn, reserved, "SUCCEEDED", reference, now).await?;
            let total = refunded_total(&txn, current.id).await?;
            let refunded = Outcome::Refunded { total_minor: total };
            apply_outcome(state, &txn, current.id, refunded, now, actor).await?;
            txn.commit().await?;
            Ok(())
        }
        // Unreachable now, perhaps not later: leave it PENDING for the
        // reconciler, which asks again with the same key.
        Err(GatewayError::Unavailable(why)) => {
            drop(txn);
            Err(provider_error(GatewayError::Unavailable(why)))
        }
        Err(err) => {
            finish_refund(&txn, reserved, "FAILED", None, now).await?;
            txn.commit().await?;
            Err(provider_error(err))
        }
    }
}

/// Cash cannot be sent back by an API: an automatic refund of a MANUAL
/// payment flags it for an organizer instead. `true` when it was flagged.
async fn flag_manual_refund(state: &AppState, id: Uuid, now: DateTime<Utc>) -> AppResult<bool> {
    let txn = db::begin_write(&state.db).await?;
    let Some(current) = lock_payment(&txn, id).await? else {
        return Err(AppError::NotFound("Payment"));
    };
    if current.provider != PaymentProvider::Manual || !current.status.is_paid() {
        return Ok(false);
    }
    payment::Entity::update_many()
        .col_expr(payment::Column::ManualRefundRequired, Expr::value(true))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        None,
        "payment.flag_manual_refund",
        &audit::target("payment", id),
        json!({}),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

async fn reserve_refund(
    state: &AppState,
    caller: Option<CurrentUser>,
    id: Uuid,
    amount: Option<Decimal>,
    now: DateTime<Utc>,
) -> AppResult<(payment::Model, refund::Model)> {
    let txn = db::begin_write(&state.db).await?;
    let current = lock_payment(&txn, id)
        .await?
        .ok_or(AppError::NotFound("Payment"))?;
    if !current.status.is_paid() {
        return Err(AppError::conflict(format!(
            "a {} payment cannot be refunded",
            current.status.as_str()
        )));
    }
    let committed: i64 = refund::Entity::find()
        .filter(refund::Column::PaymentId.eq(id))
        .filter(refund::Column::Status.is_in(["PENDING", "SUCCEEDED"]))
        .all(&txn)
        .await?
        .iter()
        .map(|r| r.amount_minor)
        .sum();
    let available = current.amount_minor - committed.max(current.refunded_minor);
    let wanted = match amount {
        None => available,
        Some(amount) => Money::from_decimal(amount, &current.currency, "amount")?.minor,
    };
    if amount.is_some() && wanted <= 0 {
        return Err(AppError::bad_input(
            "amount",
            "the amount must be more than zero",
        ));
    }
    if wanted <= 0 || wanted > available {
        let shown = money_of(&current)
            .map(|m| {
                Money {
                    minor: available,
                    ..m
                }
                .amount()
                .to_string()
            })
            .unwrap_or_default();
        return Err(AppError::bad_input(
            "amount",
            format!("at most {shown} {} can be refunded", current.currency),
        ));
    }

    let reserved = refund::ActiveModel {
        id: Set(Uuid::now_v7()),
        payment_id: Set(id),
        amount_minor: Set(wanted),
        status: Set("PENDING".into()),
        provider_reference: Set(None),
        requested_by: Set(caller.map(|c| c.id)),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok((current, reserved))
}

async fn finish_refund(
    txn: &DatabaseTransaction,
    reserved: &refund::Model,
    status: &str,
    reference: Option<String>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let mut model: refund::ActiveModel = reserved.clone().into();
    model.status = Set(status.to_string());
    model.provider_reference = Set(reference);
    model.updated_at = Set(now);
    model.update(txn).await?;
    Ok(())
}

async fn refunded_total(txn: &DatabaseTransaction, id: Uuid) -> AppResult<i64> {
    Ok(refund::Entity::find()
        .filter(refund::Column::PaymentId.eq(id))
        .filter(refund::Column::Status.eq("SUCCEEDED"))
        .all(txn)
        .await?
        .iter()
        .map(|r| r.amount_minor)
        .sum())
}

/// The payment, if the caller may know it exists: its payer or an admin.
pub async fn get_visible(
    db: &impl ConnectionTrait,
    caller: CurrentUser,
    id: Uuid,
) -> AppResult<payment::Model> {
    payment::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|p| p.user_id == caller.id || caller.role >= Role::Admin)
        .ok_or(AppError::NotFound("Payment"))
}

pub async fn latest_for_ticket(
    db: &impl ConnectionTrait,
    ticket_id: Uuid,
) -> AppResult<Option<payment::Model>> {
    Ok(payment::Entity::find()
        .filter(payment::Column::TicketId.eq(ticket_id))
        .order_by_desc(payment::Column::CreatedAt)
        .order_by_desc(payment::Column::Id)
        .one(db)
        .await?)
}

pub async fn list(
    db: &impl ConnectionTrait,
    condition: Condition,
    page: &PageRequest,
) -> AppResult<Page<payment::Model>> {
    keyset_page::<payment::Entity>(
        db,
        condition,
        page,
        (payment::Column::CreatedAt, payment::Column::Id),
        Direction::Ascending,
        |row| Cursor::new(row.created_at, row.id),
    )
    .await
}

/// After a webhook committed a success that found no seat: give the money
/// back. A failure here is logged; `payments reconcile` tries again.
pub async fn refund_unseated(state: &AppState, payment_id: Uuid) {
    if let Err(err) = refund(state, None, payment_id, None).await {
        tracing::error!(payment.id = %payment_id, error = %err, "automatic refund failed; reconcile will retry");
    }
}
