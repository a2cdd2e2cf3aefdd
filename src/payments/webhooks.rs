//! Provider webhooks. Each accepted delivery is stored raw in the inbox,
//! unique by (provider, event id), in the same transaction as the state
//! change it causes; a repeated delivery finds its row taken and changes
//! nothing. Answers: 2xx once recorded (or known), 400 for a bad signature
//! or body, 5xx for a transient failure so the provider tries again.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::Value;
use uuid::Uuid;

use super::entity::{payment, webhook_event};
use super::gateways::{GatewayError, RemotePayment};
use super::service::{self, Outcome};
use super::signatures::{self, SignatureError};
use super::units;
use crate::app::AppState;
use crate::db;
use crate::error::{AppError, unique_violation};
use crate::graphql::pagination::parse_uuid;
use crate::money::Money;

/// How a delivery ended, for the inbox row, the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Applied,
    Unchanged,
    Duplicate,
    Ignored,
    UnknownObject,
    Mismatch,
}

impl Delivery {
    fn as_str(self) -> &'static str {
        match self {
            Delivery::Applied => "applied",
            Delivery::Unchanged => "unchanged",
            Delivery::Duplicate => "duplicate",
            Delivery::Ignored => "ignored",
            Delivery::UnknownObject => "unknown_object",
            Delivery::Mismatch => "mismatch",
        }
    }
}

fn bad_request(provider: &str, why: &str) -> Response {
    metrics::counter!("webhook_deliveries_total", "provider" => provider.to_string(), "outcome" => "rejected").increment(1);
    tracing::warn!(webhook.provider = provider, reason = why, "webhook refused");
    AppError::bad_input("body", why).into_response()
}

fn retry_later(provider: &str, err: impl std::fmt::Display) -> Response {
    metrics::counter!("webhook_deliveries_total", "provider" => provider.to_string(), "outcome" => "retry").increment(1);
    tracing::error!(webhook.provider = provider, error = %err, "webhook failed; the provider will retry");
    (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response()
}

fn accepted(provider: &str, event_id: &str, delivery: Delivery) -> Response {
    metrics::counter!("webhook_deliveries_total", "provider" => provider.to_string(), "outcome" => delivery.as_str()).increment(1);
    tracing::info!(
        webhook.provider = provider,
        webhook.event = event_id,
        outcome = delivery.as_str(),
        "webhook recorded"
    );
    (StatusCode::OK, delivery.as_str()).into_response()
}

fn signature_problem(err: SignatureError) -> &'static str {
    match err {
        SignatureError::Missing => "missing signature",
        SignatureError::Malformed => "malformed signature",
        SignatureError::Stale => "stale signature timestamp",
        SignatureError::Mismatch => "signature mismatch",
    }
}

pub async fn stripe(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    const PROVIDER: &str = "STRIPE";
    let Some(secret) = state.config.stripe_webhook_secret.as_ref() else {
        return bad_request(PROVIDER, "Stripe webhooks are not configured");
    };
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(err) = signatures::verify_stripe(secret.expose(), header, &body, state.clock.now()) {
        return bad_request(PROVIDER, signature_problem(err));
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return bad_request(PROVIDER, "the body is not JSON");
    };
    let Some(event_id) = event["id"].as_str() else {
        return bad_request(PROVIDER, "the event has no id");
    };

    let object = &event["data"]["object"];
    let outcomes = stripe_outcomes(event["type"].as_str().unwrap_or_default(), object);
    let target = match outcomes.is_empty() {
        true => Target::None,
        false => stripe_target(object),
    };
    let raw = String::from_utf8_lossy(&body).into_owned();
    let claimed = stripe_claim(object);
    let incoming = Incoming {
        target,
        outcomes,
        claimed,
        ..Incoming::new(PROVIDER, event_id, raw)
    };
    record(&state, incoming).await
}

/// The amount and currency a success event says was paid, in Stripe's units
/// (a Checkout Session's `amount_total`, a PaymentIntent's `amount`).
fn stripe_claim(object: &Value) -> Option<Claim> {
    let amount = object["amount_total"]
        .as_i64()
        .or_else(|| object["amount"].as_i64())?;
    let currency = object["currency"].as_str()?.to_uppercase();
    Some(Claim { amount, currency })
}

/// Which of our payments an event is about: the id we put in the metadata,
/// or, for objects that do not carry it (a refunded charge), the
/// PaymentIntent we learnt when the payment succeeded.
enum Target {
    None,
    Payment(Uuid),
    ProviderPayment(String),
}

fn stripe_target(object: &Value) -> Target {
    if let Some(id) = object["metadata"]["payment_id"]
        .as_str()
        .and_then(parse_uuid)
    {
        return Target::Payment(id);
    }
    match object["payment_intent"]
        .as_str()
        .or_else(|| object["id"].as_str())
    {
        Some(intent) => Target::ProviderPayment(intent.to_string()),
        None => Target::None,
    }
}

fn stripe_outcomes(kind: &str, object: &Value) -> Vec<Outcome> {
    let intent = object["payment_intent"].as_str().map(str::to_string);
    match kind {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            match object["payment_status"].as_str() {
                Some("paid") | Some("no_payment_required") => vec![Outcome::Succeeded {
                    provider_payment_id: intent,
                }],
                _ => Vec::new(),
            }
        }
        "checkout.session.async_payment_failed" => vec![Outcome::Failed],
        "checkout.session.expired" => vec![Outcome::Cancelled],
        "payment_intent.succeeded" => vec![Outcome::Succeeded {
            provider_payment_id: object["id"].as_str().map(str::to_string),
        }],
        "payment_intent.payment_failed" => vec![Outcome::Failed],
        "charge.refunded" => {
            let currency = object["currency"]
                .as_str()
                .unwrap_or_default()
                .to_uppercase();
            match (
                object["amount_refunded"].as_i64(),
                iso_currency::Currency::from_code(&currency),
            ) {
                (Some(refunded), Some(currency)) => {
                    vec![Outcome::Refunded {
                        total_minor: units::from_stripe(refunded, currency),
                    }]
                }
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

pub async fn mercadopago(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    const PROVIDER: &str = "MERCADOPAGO";
    let Some(secret) = state.config.mercadopago_webhook_secret.as_ref() else {
        return bad_request(PROVIDER, "MercadoPago webhooks are not configured");
    };
    let notification: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let data_id = query
        .get("data.id")
        .cloned()
        .or_else(|| id_text(&notification["data"]["id"]));
    let signature = headers.get("x-signature").and_then(|v| v.to_str().ok());
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    if let Err(err) =
        signatures::verify_mercadopago(secret.expose(), signature, request_id, data_id.as_deref())
    {
        return bad_request(PROVIDER, signature_problem(err));
    }
    let kind = query
        .get("type")
        .cloned()
        .or_else(|| notification["type"].as_str().map(str::to_string))
        .unwrap_or_default();
    let Some(data_id) = data_id else {
        return bad_request(PROVIDER, "the notification names no payment");
    };
    let event_id = id_text(&notification["id"])
        .unwrap_or_else(|| format!("{kind}:{data_id}:{}", request_id.unwrap_or_default()));
    let raw = String::from_utf8_lossy(&body).into_owned();
    if kind != "payment" {
        return record(&state, Incoming::new(PROVIDER, &event_id, raw)).await;
    }

    // The notification is only a trigger: what happened is read back from
    // MercadoPago itself.
    let Some(gateway) = state.gateways.mercadopago.as_ref() else {
        return bad_request(PROVIDER, "MercadoPago is not configured");
    };
    let remote = match gateway.fetch_payment(&data_id).await {
        Ok(Some(remote)) => remote,
        Ok(None) => {
            return record(&state, Incoming::new(PROVIDER, &event_id, raw)).await;
        }
        Err(GatewayError::Refused(why)) | Err(GatewayError::Unavailable(why)) => {
            return retry_later(PROVIDER, why);
        }
    };
    let Some(payment_id) = remote.external_reference.as_deref().and_then(parse_uuid) else {
        return record(&state, Incoming::new(PROVIDER, &event_id, raw)).await;
    };
    match mercadopago_outcomes(&state, payment_id, &remote).await {
        Ok(Some(outcomes)) => {
            let target = Target::Payment(payment_id);
            record(
                &state,
                Incoming {
                    target,
                    outcomes,
                    ..Incoming::new(PROVIDER, &event_id, raw)
                },
            )
            .await
        }
        Ok(None) => {
            let forced = Some(Delivery::Mismatch);
            record(
                &state,
                Incoming {
                    forced,
                    ..Incoming::new(PROVIDER, &event_id, raw)
                },
            )
            .await
        }
        Err(err) => retry_later(PROVIDER, err),
    }
}

fn id_text(value: &Value) -> Option<String> {
    value
        .as_str()
        .map(str::to_string)
        .or_else(|| value.as_i64().map(|i| i.to_string()))
}

/// The outcomes a MercadoPago payment implies, or `None` when its amount or
/// currency does not match ours (then nothing is applied).
pub async fn mercadopago_outcomes(
    state: &AppState,
    payment_id: Uuid,
    remote: &RemotePayment,
) -> Result<Option<Vec<Outcome>>, AppError> {
    let Some(ours) = payment::Entity::find_by_id(payment_id)
        .one(&state.db)
        .await?
    else {
        return Ok(Some(Vec::new()));
    };
    let paid = Money::from_decimal(remote.amount, &remote.currency, "amount").ok();
    if remote.currency != ours.currency || paid.map(|m| m.minor) != Some(ours.amount_minor) {
        tracing::warn!(payment.id = %payment_id, "MercadoPago reports another amount or currency; ignored");
        return Ok(None);
    }
    let refunded = Money::from_decimal(remote.refunded, &remote.currency, "amount")
        .map(|m| m.minor)
        .unwrap_or(0);
    let success = Outcome::Succeeded {
        provider_payment_id: Some(remote.provider_payment_id.clone()),
    };
    Ok(Some(match remote.status.as_str() {
        "approved" | "authorized" if refunded > 0 => vec![
            success,
            Outcome::Refunded {
                total_minor: refunded,
            },
        ],
        "approved" | "authorized" => vec![success],
        "refunded" | "charged_back" => vec![
            success,
            Outcome::Refunded {
                total_minor: ours.amount_minor.max(refunded),
            },
        ],
        "rejected" => vec![Outcome::Failed],
        "cancelled" => vec![Outcome::Cancelled],
        _ => Vec::new(),
    }))
}

/// One accepted delivery, on its way to the inbox.
struct Incoming<'a> {
    provider: &'a str,
    event_id: &'a str,
    raw: String,
    target: Target,
    outcomes: Vec<Outcome>,
    /// An outcome decided before looking (a mismatch already found).
    forced: Option<Delivery>,
    /// What the event says was paid, checked against the payment.
    claimed: Option<Claim>,
}

impl<'a> Incoming<'a> {
    fn new(provider: &'a str, event_id: &'a str, raw: String) -> Self {
        Self {
            provider,
            event_id,
            raw,
            target: Target::None,
            outcomes: Vec::new(),
            forced: None,
            claimed: None,
        }
    }
}

/// Stores the delivery and applies its outcomes in one transaction; then,
/// outside it, gives back money that could not be kept.
async fn record(state: &AppState, incoming: Incoming<'_>) -> Response {
    let (provider, event_id) = (incoming.provider, incoming.event_id);
    match apply(state, incoming).await {
        Ok((delivery, refund_due)) => {
            if let Some(payment_id) = refund_due {
                service::refund_unseated(state, payment_id).await;
            }
            accepted(provider, event_id, delivery)
        }
        Err(err) => retry_later(provider, err),
    }
}

/// What a provider's event says was paid.
struct Claim {
    amount: i64,
    currency: String,
}

/// A success counts only for the amount and currency we asked for.
async fn claim_matches(
    txn: &sea_orm::DatabaseTransaction,
    payment_id: Uuid,
    claim: &Claim,
) -> Result<bool, AppError> {
    let Some(ours) = payment::Entity::find_by_id(payment_id).one(txn).await? else {
        return Ok(true);
    };
    let expected = Money::from_minor(ours.amount_minor, &ours.currency).and_then(units::to_stripe);
    Ok(claim.currency == ours.currency && expected == Some(claim.amount))
}

async fn apply(
    state: &AppState,
    incoming: Incoming<'_>,
) -> Result<(Delivery, Option<Uuid>), AppError> {
    let Incoming {
        provider,
        event_id,
        raw,
        target,
        outcomes,
        forced,
        claimed,
    } = incoming;
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let inbox = webhook_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        provider: Set(provider.to_string()),
        provider_event_id: Set(event_id.to_string()),
        payload: Set(raw),
        received_at: Set(now),
        processed_at: Set(None),
        outcome: Set(None),
    };
    let stored = match inbox.insert(&txn).await {
        Ok(stored) => stored,
        Err(err)
            if unique_violation(
                &err,
                "webhook_events_provider_event_key",
                "webhook_events.provider",
            ) =>
        {
            return Ok((Delivery::Duplicate, None));
        }
        Err(err) => return Err(err.into()),
    };

    let payment_id = match target {
        Target::None => None,
        Target::Payment(id) => payment::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .map(|p| p.id),
        Target::ProviderPayment(reference) => payment::Entity::find()
            .filter(payment::Column::ProviderPaymentId.eq(reference))
            .one(&txn)
            .await?
            .map(|p| p.id),
    };
    let mut delivery = match (&payment_id, outcomes.is_empty()) {
        (_, true) => Delivery::Ignored,
        (None, false) => Delivery::UnknownObject,
        (Some(_), false) => Delivery::Unchanged,
    };
    let mut refund_due = None;
    let mut forced = forced;
    if let (Some(id), Some(claim)) = (payment_id, &claimed)
        && !claim_matches(&txn, id, claim).await?
    {
        tracing::warn!(payment.id = %id, "the provider reports another amount or currency; ignored");
        forced = Some(Delivery::Mismatch);
    }
    if let Some(id) = payment_id.filter(|_| forced.is_none()) {
        for outcome in outcomes {
            let applied = service::apply_outcome(state, &txn, id, outcome, now, None).await?;
            if applied.changed {
                delivery = Delivery::Applied;
            }
            if applied.refund_due {
                refund_due = Some(id);
            }
        }
    }
    let delivery = forced.unwrap_or(delivery);

    let mut stored: webhook_event::ActiveModel = stored.into();
    stored.processed_at = Set(Some(now));
    stored.outcome = Set(Some(delivery.as_str().to_string()));
    stored.update(&txn).await?;
    txn.commit().await?;
    Ok((delivery, refund_due))
}
