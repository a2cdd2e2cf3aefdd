//! Webhook signatures, verified the way each provider signs, in constant
//! time.
//!
//! - Stripe: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, each
//!   `v1` an HMAC-SHA256 of `"<t>.<raw body>"` with the endpoint's secret;
//!   the timestamp must be within five minutes of now.
//! - MercadoPago: `x-signature: ts=<ms>,v1=<hex>` and `x-request-id`; the
//!   HMAC-SHA256 covers the manifest `id:<data.id>;request-id:<x-request-id>;ts:<ts>;`
//!   where `data.id` comes from the query string, lower-cased when
//!   alphanumeric. Parts absent from the request are left out of the manifest.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const STRIPE_TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    Stale,
    Mismatch,
}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key"))
}

/// `verify_slice` compares in constant time.
fn matches(secret: &str, message: &[u8], hex_signature: &str) -> bool {
    let Ok(expected) = hex::decode(hex_signature) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(message);
    mac.verify_slice(&expected).is_ok()
}

pub fn verify_stripe(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // `abs_diff` because the timestamp is the sender's: a subtraction from
    // it can overflow.
    if now.timestamp().abs_diff(timestamp) > STRIPE_TOLERANCE_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }

    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    if signatures.iter().any(|s| matches(secret, &message, s)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Signs like Stripe does; for tests and local tools.
pub fn sign_stripe(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

pub fn mercadopago_manifest(data_id: Option<&str>, request_id: Option<&str>, ts: &str) -> String {
    let mut manifest = String::new();
    if let Some(id) = data_id {
        let id = if id.chars().all(|c| c.is_ascii_alphanumeric()) {
            id.to_lowercase()
        } else {
            id.to_string()
        };
        manifest.push_str(&format!("id:{id};"));
    }
    if let Some(request_id) = request_id {
        manifest.push_str(&format!("request-id:{request_id};"));
    }
    manifest.push_str(&format!("ts:{ts};"));
    manifest
}

pub fn verify_mercadopago(
    secret: &str,
    signature: Option<&str>,
    request_id: Option<&str>,
    data_id: Option<&str>,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?;
    let mut ts = None;
    let mut v1 = None;
    for part in signature.split(',') {
        match part.trim().split_once('=') {
            Some(("ts", value)) => ts = Some(value.trim()),
            Some(("v1", value)) => v1 = Some(value.trim()),
            _ => {}
        }
    }
    let (ts, v1) = (
        ts.ok_or(SignatureError::Malformed)?,
        v1.ok_or(SignatureError::Malformed)?,
    );
    let manifest = mercadopago_manifest(data_id, request_id, ts);
    if matches(secret, manifest.as_bytes(), v1) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Signs like MercadoPago does; for tests and local tools.
pub fn sign_mercadopago(secret: &str, data_id: &str, request_id: &str, ts: &str) -> String {
    let mut mac = mac(secret);
    mac.update(mercadopago_manifest(Some(data_id), Some(request_id), ts).as_bytes());
    format!("ts={ts},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1"}"#;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn stripe_signature_matches_a_vector_computed_by_hand() {
        // HMAC-SHA256("whsec_test_secret", "1700000000.{\"id\":\"evt_1\"}"),
        // computed outside this code.
        let header =
            "t=1700000000,v1=248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a";
        assert_eq!(
            verify_stripe("whsec_test_secret", Some(header), BODY, at(1_700_000_100)),
            Ok(())
        );
        assert_eq!(
            sign_stripe("whsec_test_secret", 1_700_000_000, BODY),
            header
        );
    }

    #[test]
    fn stripe_refuses_altered_bodies_wrong_secrets_and_stale_timestamps() {
        let header = sign_stripe("whsec_test_secret", 1_700_000_000, BODY);
        let now = at(1_700_000_000);
        assert_eq!(
            verify_stripe(
                "whsec_test_secret",
                Some(&header),
                br#"{"id":"evt_2"}"#,
                now
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_stripe("whsec_other", Some(&header), BODY, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_stripe("whsec_test_secret", Some(&header), BODY, at(1_700_000_301)),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_stripe("whsec_test_secret", None, BODY, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_stripe("whsec_test_secret", Some("v1=abc"), BODY, now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn stripe_accepts_any_of_several_v1_signatures() {
        let good = sign_stripe("whsec_test_secret", 1_700_000_000, BODY);
        let v1 = good.split("v1=").nth(1).unwrap();
        let rolled = format!("t=1700000000,v1={},v1={v1}", "00".repeat(32));
        assert_eq!(
            verify_stripe("whsec_test_secret", Some(&rolled), BODY, at(1_700_000_000)),
            Ok(())
        );
    }

    #[test]
    fn mercadopago_manifest_signature_matches_a_vector_computed_by_hand() {
        // HMAC-SHA256("mp-secret-for-tests",
        //   "id:123456789;request-id:bb56a2f1-6aae-46ac-982e-9dcd3581d08e;ts:1742505638683;"),
        // computed outside this code.
        let signature =
            "ts=1742505638683,v1=7eb9d3469cdd64c70e390074b80c0016c6d755f22b2b652d19d950bb2e49820a";
        let request_id = Some("bb56a2f1-6aae-46ac-982e-9dcd3581d08e");
        assert_eq!(
            verify_mercadopago(
                "mp-secret-for-tests",
                Some(signature),
                request_id,
                Some("123456789")
            ),
            Ok(())
        );
        assert_eq!(
            verify_mercadopago(
                "mp-secret-for-tests",
                Some(signature),
                request_id,
                Some("123456780")
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            sign_mercadopago(
                "mp-secret-for-tests",
                "123456789",
                "bb56a2f1-6aae-46ac-982e-9dcd3581d08e",
                "1742505638683"
            ),
            signature
        );
    }

    #[test]
    fn mercadopago_lowercases_alphanumeric_ids_in_the_manifest() {
        assert_eq!(
            mercadopago_manifest(Some("ABC123"), Some("r"), "1"),
            "id:abc123;request-id:r;ts:1;"
        );
        assert_eq!(mercadopago_manifest(None, None, "1"), "ts:1;");
    }
}
