//! Reconciliation, for the webhook that never arrived and the refund that
//! was interrupted: asks the providers what became of every payment still
//! PENDING after a few minutes, retries refunds left half-done, and gives
//! back money taken for tickets that did not stand. Safe to run on every
//! replica at once: each change goes through the same locked, forward-only
//! paths as a webhook.

use chrono::Duration;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::entity::{PaymentProvider, PaymentStatus, payment, refund};
use super::gateways::{GatewayError, RemotePayment};
use super::service::{self, Outcome};
use super::webhooks::mercadopago_outcomes;
use crate::app::AppState;
use crate::db;
use crate::error::AppResult;
use crate::tickets::entity::{self as ticket, TicketStatus};

/// How long a payment may stay PENDING before its provider is asked.
pub const GRACE: i64 = 5 * 60;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub checked: usize,
    pub changed: usize,
    pub refunds: usize,
    pub failures: usize,
}

pub async fn run(state: &AppState) -> AppResult<Report> {
    let mut report = Report::default();
    settle_pending(state, &mut report).await?;
    retry_interrupted_refunds(state, &mut report).await?;
    refund_tickets_that_did_not_stand(state, None, &mut report).await?;
    tracing::info!(
        checked = report.checked,
        changed = report.changed,
        refunds = report.refunds,
        failures = report.failures,
        "payments reconciled"
    );
    Ok(report)
}

async fn settle_pending(state: &AppState, report: &mut Report) -> AppResult<()> {
    let cutoff = state.clock.now() - Duration::seconds(GRACE);
    let pending = payment::Entity::find()
        .filter(payment::Column::Status.eq(PaymentStatus::Pending))
        .filter(payment::Column::Provider.ne(PaymentProvider::Manual))
        .filter(payment::Column::CreatedAt.lte(cutoff))
        .all(&state.db)
        .await?;

    for payment in pending {
        report.checked += 1;
        let outcomes = match remote_outcomes(state, &payment).await {
            Ok(outcomes) => outcomes,
            Err(err) => {
                report.failures += 1;
                tracing::warn!(payment.id = %payment.id, error = %err, "provider not reachable while reconciling");
                continue;
            }
        };
        if outcomes.is_empty() {
            continue;
        }
        let now = state.clock.now();
        let txn = db::begin_write(&state.db).await?;
        let mut refund_due = false;
        for outcome in outcomes {
            let applied =
                service::apply_outcome(state, &txn, payment.id, outcome, now, None).await?;
            report.changed += usize::from(applied.changed);
            refund_due |= applied.refund_due;
        }
        txn.commit().await?;
        if refund_due {
            service::refund_unseated(state, payment.id).await;
        }
    }
    Ok(())
}

async fn remote_outcomes(
    state: &AppState,
    payment: &payment::Model,
) -> Result<Vec<Outcome>, GatewayError> {
    match payment.provider {
        PaymentProvider::Stripe => {
            let (Some(stripe), Some(reference)) = (&state.gateways.stripe, &payment.reference)
            else {
                return Ok(Vec::new());
            };
            let session = stripe.fetch_session(reference).await?;
            Ok(match (session.paid, session.expired) {
                (true, _) => vec![Outcome::Succeeded {
                    provider_payment_id: session.payment_intent,
                }],
                (false, true) => vec![Outcome::Cancelled],
                _ => Vec::new(),
            })
        }
        PaymentProvider::Mercadopago => {
            let Some(mercadopago) = &state.gateways.mercadopago else {
                return Ok(Vec::new());
            };
            let found: Vec<RemotePayment> = mercadopago
                .search_by_reference(&payment.id.to_string())
                .await?;
            // The attempt that went furthest decides: an approval wins over
            // earlier rejections of the same checkout.
            let best = found
                .iter()
                .find(|r| {
                    matches!(
                        r.status.as_str(),
                        "approved" | "authorized" | "refunded" | "charged_back"
                    )
                })
                .or_else(|| found.first());
            match best {
                Some(remote) => mercadopago_outcomes(state, payment.id, remote)
                    .await
                    .map(Option::unwrap_or_default)
                    .map_err(|e| GatewayError::Unavailable(e.to_string())),
                None => Ok(Vec::new()),
            }
        }
        PaymentProvider::Manual => Ok(Vec::new()),
    }
}

/// A refund reserved but never answered (the process stopped, or the
/// provider was down) is asked again with the same idempotency key.
async fn retry_interrupted_refunds(state: &AppState, report: &mut Report) -> AppResult<()> {
    let cutoff = state.clock.now() - Duration::seconds(GRACE);
    let stuck = refund::Entity::find()
        .filter(refund::Column::Status.eq("PENDING"))
        .filter(refund::Column::CreatedAt.lte(cutoff))
        .all(&state.db)
        .await?;
    for reserved in stuck {
        let Some(payment) = payment::Entity::find_by_id(reserved.payment_id)
            .one(&state.db)
            .await?
        else {
            continue;
        };
        match service::send_refund(state, &payment, &reserved, None).await {
            Ok(()) => report.refunds += 1,
            Err(_) => report.failures += 1,
        }
    }
    Ok(())
}

/// Money kept for a ticket that is not confirmed (cancelled with its event,
/// or paid after its hold lapsed with no seat left) goes back; cash is
/// flagged for an organizer instead. `event` narrows it to one event.
pub async fn refund_tickets_that_did_not_stand(
    state: &AppState,
    event: Option<uuid::Uuid>,
    report: &mut Report,
) -> AppResult<()> {
    let mut tickets = ticket::Entity::find()
        .filter(ticket::Column::Status.is_in([TicketStatus::Cancelled, TicketStatus::Expired]));
    if let Some(event) = event {
        tickets = tickets.filter(ticket::Column::EventId.eq(event));
    }
    let ids: Vec<uuid::Uuid> = tickets
        .all(&state.db)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let owed = payment::Entity::find()
        .filter(payment::Column::TicketId.is_in(ids))
        .filter(
            payment::Column::Status
                .is_in([PaymentStatus::Succeeded, PaymentStatus::PartiallyRefunded]),
        )
        .filter(payment::Column::ManualRefundRequired.eq(false))
        .all(&state.db)
        .await?;
    for payment in owed {
        match service::refund(state, None, payment.id, None).await {
            Ok(_) => report.refunds += 1,
            Err(err) => {
                report.failures += 1;
                tracing::warn!(payment.id = %payment.id, error = %err, "refund of an unconfirmed ticket failed");
            }
        }
    }
    Ok(())
}
