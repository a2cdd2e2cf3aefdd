//! The payment providers behind one interface: Stripe through async-stripe,
//! MercadoPago through its REST API. A provider without credentials is off.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use stripe::StripeRequest;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, ProductData, RetrieveCheckoutSession,
};
use stripe_checkout::{CheckoutSessionPaymentStatus, CheckoutSessionStatus};
use stripe_core::refund::CreateRefund;

use super::units;
use crate::config::{Config, Secret};
use crate::money::Money;

const STRIPE_API: &str = "https://api.stripe.com/";
const MERCADOPAGO_API: &str = "https://api.mercadopago.com";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The provider refused the request; retrying will not help.
    #[error("refused: {0}")]
    Refused(String),
    /// The provider could not be reached or failed; a retry may work.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

pub struct CheckoutRequest<'a> {
    pub payment_id: uuid::Uuid,
    pub now: DateTime<Utc>,
    pub title: &'a str,
    pub amount: Money,
    pub expires_at: DateTime<Utc>,
    pub return_url: &'a str,
    pub notification_url: String,
    pub customer_email: &'a str,
}

pub struct Checkout {
    /// The provider's id of what was created (Checkout Session, preference).
    pub reference: String,
    pub redirect_url: Option<String>,
    pub client_secret: Option<String>,
}

/// What a provider says of a payment when asked.
#[derive(Debug, Clone)]
pub struct RemotePayment {
    pub provider_payment_id: String,
    pub status: String,
    pub external_reference: Option<String>,
    pub amount: Decimal,
    pub currency: String,
    pub refunded: Decimal,
}

/// A Checkout Session as Stripe reports it.
#[derive(Debug, Clone)]
pub struct RemoteSession {
    pub paid: bool,
    pub expired: bool,
    pub payment_intent: Option<String>,
}

pub struct Gateways {
    pub stripe: Option<StripeGateway>,
    pub mercadopago: Option<MercadoPagoGateway>,
}

impl Gateways {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let stripe = config
            .stripe_secret_key
            .as_ref()
            .map(|key| StripeGateway::new(key, config.stripe_api_base.as_deref()))
            .transpose()?;
        let mercadopago = config
            .mercadopago_access_token
            .as_ref()
            .map(|token| MercadoPagoGateway::new(token, config.mercadopago_api_base.as_deref()))
            .transpose()?;
        Ok(Self {
            stripe,
            mercadopago,
        })
    }
}

pub struct StripeGateway {
    client: stripe::Client,
}

impl StripeGateway {
    fn new(key: &Secret, base: Option<&str>) -> anyhow::Result<Self> {
        let mut base = base.unwrap_or(STRIPE_API).to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let client = stripe::ClientBuilder::new(key.expose())
            .url(base)
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| anyhow::anyhow!("STRIPE_SECRET_KEY / STRIPE_API_BASE: {e}"))?;
        Ok(Self { client })
    }

    /// A Checkout Session for one ticket. The payment id travels in the
    /// metadata of the session and of its PaymentIntent, so every webhook
    /// about it can be matched; the idempotency key is the payment id, so a
    /// retried request cannot create a second session.
    pub async fn create_checkout(
        &self,
        request: &CheckoutRequest<'_>,
    ) -> Result<Checkout, GatewayError> {
        let amount = units::to_stripe(request.amount).ok_or_else(|| {
            GatewayError::Refused("Stripe cannot charge this amount in this currency".into())
        })?;
        let currency = request
            .amount
            .code()
            .to_lowercase()
            .parse::<stripe_types::Currency>()
            .map_err(|_| GatewayError::Refused("Stripe does not take this currency".into()))?;
        let metadata = HashMap::from([("payment_id".to_string(), request.payment_id.to_string())]);

        let mut price = CreateCheckoutSessionLineItemsPriceData::new(currency);
        price.unit_amount = Some(amount);
        price.product_data = Some(ProductData::new(request.title));
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price_data = Some(price);
        item.quantity = Some(1);
        let mut intent = CreateCheckoutSessionPaymentIntentData::new();
        intent.metadata = Some(metadata.clone());

        let session = CreateCheckoutSession::new()
            .mode(stripe_checkout::CheckoutSessionMode::Payment)
            .line_items(vec![item])
            .metadata(metadata)
            .payment_intent_data(intent)
            .client_reference_id(request.payment_id.to_string())
            .customer_email(request.customer_email)
            .expires_at(stripe_expiry(request.now, request.expires_at).timestamp())
            .success_url(request.return_url)
            .cancel_url(request.return_url)
            .customize()
            .request_strategy(idempotent(&request.payment_id.to_string())?)
            .send(&self.client)
            .await
            .map_err(stripe_error)?;

        Ok(Checkout {
            reference: session.id.to_string(),
            redirect_url: session.url,
            client_secret: session.client_secret,
        })
    }

    /// The state of a Checkout Session, for payments whose webhook never came.
    pub async fn fetch_session(&self, reference: &str) -> Result<RemoteSession, GatewayError> {
        let session = RetrieveCheckoutSession::new(reference)
            .send(&self.client)
            .await
            .map_err(stripe_error)?;
        Ok(RemoteSession {
            paid: matches!(
                session.payment_status,
                CheckoutSessionPaymentStatus::Paid
                    | CheckoutSessionPaymentStatus::NoPaymentRequired
            ),
            expired: matches!(session.status, Some(CheckoutSessionStatus::Expired)),
            payment_intent: session.payment_intent.map(|intent| intent.id().to_string()),
        })
    }

    pub async fn refund(
        &self,
        payment_intent: &str,
        amount: Money,
        key: &str,
    ) -> Result<String, GatewayError> {
        let amount = units::to_stripe(amount).ok_or_else(|| {
            GatewayError::Refused("amount not refundable in this currency".into())
        })?;
        let refund = CreateRefund::new()
            .payment_intent(payment_intent)
            .amount(amount)
            .customize()
            .request_strategy(idempotent(key)?)
            .send(&self.client)
            .await
            .map_err(stripe_error)?;
        Ok(refund.id.to_string())
    }
}

/// Stripe closes a Checkout Session no sooner than 30 minutes after it is
/// created. A shorter hold is honoured on our side: a payment that lands
/// after the hold lapsed confirms the ticket only if a seat is still free,
/// and is refunded otherwise.
pub fn stripe_expiry(now: DateTime<Utc>, hold_ends: DateTime<Utc>) -> DateTime<Utc> {
    hold_ends.max(now + chrono::Duration::minutes(31))
}

fn idempotent(key: &str) -> Result<stripe::RequestStrategy, GatewayError> {
    let key = stripe::IdempotencyKey::new(key)
        .map_err(|e| GatewayError::Refused(format!("idempotency key: {e:?}")))?;
    Ok(stripe::RequestStrategy::Idempotent(key))
}

fn stripe_error(err: stripe::StripeError) -> GatewayError {
    match err {
        stripe::StripeError::Stripe(api, status) if status < 500 => {
            GatewayError::Refused(format!("{status}: {}", api.message.unwrap_or_default()))
        }
        other => GatewayError::Unavailable(other.to_string()),
    }
}

pub struct MercadoPagoGateway {
    http: reqwest::Client,
    token: Secret,
    base: String,
}

impl MercadoPagoGateway {
    fn new(token: &Secret, base: Option<&str>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()?;
        let base = base
            .unwrap_or(MERCADOPAGO_API)
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            http,
            token: token.clone(),
            base,
        })
    }

    /// A checkout preference whose `external_reference` is the payment id;
    /// notifications come to `notification_url`.
    pub async fn create_checkout(
        &self,
        request: &CheckoutRequest<'_>,
    ) -> Result<Checkout, GatewayError> {
        let unit_price = units::to_mercadopago(request.amount);
        let body = json!({
            "items": [{
                "id": request.payment_id.to_string(),
                "title": request.title,
                "quantity": 1,
                "currency_id": request.amount.code(),
                "unit_price": decimal_json(unit_price),
            }],
            "external_reference": request.payment_id.to_string(),
            "notification_url": request.notification_url,
            "back_urls": { "success": request.return_url, "failure": request.return_url, "pending": request.return_url },
            "expires": true,
            "expiration_date_to": request.expires_at.to_rfc3339(),
            "payer": { "email": request.customer_email },
        });
        let answer = self
            .send(
                self.http
                    .post(format!("{}/checkout/preferences", self.base))
                    .json(&body),
                &request.payment_id.to_string(),
            )
            .await?;
        let reference = answer["id"]
            .as_str()
            .ok_or_else(|| GatewayError::Unavailable("preference without id".into()))?;
        let url = answer["init_point"].as_str().map(str::to_string);
        Ok(Checkout {
            reference: reference.to_string(),
            redirect_url: url,
            client_secret: None,
        })
    }

    /// The payment as MercadoPago knows it: notifications are only triggers,
    /// never trusted for state.
    pub async fn fetch_payment(&self, id: &str) -> Result<Option<RemotePayment>, GatewayError> {
        let response = self
            .http
            .get(format!("{}/v1/payments/{}", self.base, urlencode(id)))
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = read(response).await?;
        Ok(Some(remote_payment(&body)?))
    }

    /// Payments made against a preference, found by our payment id.
    pub async fn search_by_reference(
        &self,
        external_reference: &str,
    ) -> Result<Vec<RemotePayment>, GatewayError> {
        let response = self
            .http
            .get(format!(
                "{}/v1/payments/search?external_reference={}",
                self.base,
                urlencode(external_reference)
            ))
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        let body = read(response).await?;
        body["results"]
            .as_array()
            .map(|r| r.iter().map(remote_payment).collect())
            .unwrap_or(Ok(Vec::new()))
    }

    pub async fn refund(
        &self,
        payment_id: &str,
        amount: Money,
        key: &str,
    ) -> Result<String, GatewayError> {
        let body = json!({ "amount": decimal_json(units::to_mercadopago(amount)) });
        let request = self
            .http
            .post(format!(
                "{}/v1/payments/{}/refunds",
                self.base,
                urlencode(payment_id)
            ))
            .json(&body);
        let answer = self.send(request, key).await?;
        Ok(answer["id"]
            .as_i64()
            .map(|id| id.to_string())
            .or_else(|| answer["id"].as_str().map(str::to_string))
            .unwrap_or_default())
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        idempotency_key: &str,
    ) -> Result<Value, GatewayError> {
        let response = request
            .bearer_auth(self.token.expose())
            .header("X-Idempotency-Key", idempotency_key)
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        read(response).await
    }
}

async fn read(response: reqwest::Response) -> Result<Value, GatewayError> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = format!("{status}: {}", body["message"].as_str().unwrap_or_default());
    if status.is_server_error() {
        Err(GatewayError::Unavailable(message))
    } else {
        Err(GatewayError::Refused(message))
    }
}

fn remote_payment(body: &Value) -> Result<RemotePayment, GatewayError> {
    let decimal = |v: &Value| -> Decimal { v.to_string().parse().unwrap_or_default() };
    let id = body["id"]
        .as_i64()
        .map(|i| i.to_string())
        .or_else(|| body["id"].as_str().map(str::to_string));
    Ok(RemotePayment {
        provider_payment_id: id
            .ok_or_else(|| GatewayError::Unavailable("payment without id".into()))?,
        status: body["status"].as_str().unwrap_or_default().to_string(),
        external_reference: body["external_reference"].as_str().map(str::to_string),
        amount: decimal(&body["transaction_amount"]),
        currency: body["currency_id"].as_str().unwrap_or_default().to_string(),
        refunded: decimal(&body["transaction_amount_refunded"]),
    })
}

/// A decimal as an exact JSON number (no trip through a float).
fn decimal_json(amount: Decimal) -> Value {
    serde_json::from_str(&amount.normalize().to_string()).unwrap_or(Value::Null)
}

fn urlencode(segment: &str) -> String {
    segment
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_closes_with_the_hold_but_not_before_stripe_allows() {
        let now = Utc::now();
        let long_hold = now + chrono::Duration::hours(2);
        assert_eq!(stripe_expiry(now, long_hold), long_hold);
        let short_hold = now + chrono::Duration::minutes(15);
        assert_eq!(
            stripe_expiry(now, short_hold),
            now + chrono::Duration::minutes(31)
        );
    }
}
