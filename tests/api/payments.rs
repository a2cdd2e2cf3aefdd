//! Payments against local stand-ins of Stripe and MercadoPago: the whole
//! flow, webhooks applied exactly once and only forward, late successes,
//! refunds that never exceed what was paid.

use chrono::Duration;
use serde_json::{Value, json};
use spanglish::accounts::Role;
use spanglish::clock::Clock;
use spanglish::payments::signatures::{sign_mercadopago, sign_stripe};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::events::{create_event, event_input};
use crate::support::{Backend, Member, TestApp, error_code, error_field, on_both_databases};

const ORIGIN: &str = "https://spanglish.example";
const STRIPE_SECRET: &str = "whsec_test_secret";
const MP_SECRET: &str = "mp-webhook-secret";
const INITIATE: &str = "mutation($t: ID!, $p: PaymentProvider!, $r: String) { initiatePayment(ticketId: $t, provider: $p, returnUrl: $r) { redirectUrl payment { id status provider amount { amount currency } reference } } }";
const TICKET: &str = "query($id: ID!) { ticket(id: $id) { status code payment { status refundedAmount { amount } } } }";

/// A Checkout Session as Stripe answers one (only what the client needs).
fn checkout_session(id: &str) -> Value {
    json!({
        "id": id, "object": "checkout.session", "created": 1_700_000_000, "expires_at": 1_700_001_800,
        "livemode": false, "mode": "payment", "payment_method_types": ["card"], "payment_status": "unpaid",
        "status": "open", "url": format!("https://checkout.stripe.test/{id}"),
        "automatic_tax": { "enabled": false, "liability": null, "provider": null, "status": null },
        "custom_fields": [], "custom_text": { "after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null },
        "shipping_options": [], "metadata": {}, "client_secret": null
    })
}

fn stripe_refund(amount: i64) -> Value {
    json!({ "id": "re_test_1", "object": "refund", "amount": amount, "created": 1_700_000_000, "currency": "pyg", "status": "succeeded", "metadata": {} })
}

struct Providers {
    stripe: MockServer,
    mercadopago: MockServer,
}

async fn providers() -> Providers {
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(checkout_session("cs_test_1")))
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(|request: &Request| {
            let form = decoded(request);
            let amount = form
                .split('&')
                .find_map(|kv| kv.strip_prefix("amount="))
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            ResponseTemplate::new(200).set_body_json(stripe_refund(amount))
        })
        .mount(&stripe)
        .await;
    let mercadopago = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/checkout/preferences"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({ "id": "pref-1", "init_point": "https://mercadopago.test/checkout/pref-1" }),
        ))
        .mount(&mercadopago)
        .await;
    Providers {
        stripe,
        mercadopago,
    }
}

fn decoded(request: &Request) -> String {
    String::from_utf8_lossy(&request.body)
        .replace("%5B", "[")
        .replace("%5D", "]")
}

async fn spawn(backend: Backend, providers: &Providers) -> TestApp {
    let stripe = providers.stripe.uri();
    let mercadopago = providers.mercadopago.uri();
    TestApp::spawn_with(backend, move |c| {
        c.cors_origins = vec![ORIGIN.into()];
        c.stripe_secret_key = Some(spanglish::config::Secret::new("sk_test_123"));
        c.stripe_webhook_secret = Some(spanglish::config::Secret::new(STRIPE_SECRET));
        c.stripe_api_base = Some(stripe);
        c.mercadopago_access_token = Some(spanglish::config::Secret::new("APP_USR-test"));
        c.mercadopago_webhook_secret = Some(spanglish::config::Secret::new(MP_SECRET));
        c.mercadopago_api_base = Some(mercadopago);
    })
    .await
}

/// A published event tomorrow, priced as given, and a member's pending ticket.
async fn pending_ticket(
    app: &TestApp,
    capacity: i64,
    amount: &str,
    currency: &str,
) -> (Member, String, String) {
    let organizer = app.user_with_role(Role::Organizer).await;
    let starts = app.clock.now() + Duration::days(1);
    let mut input = event_input("Paid meetup");
    input["startsAt"] = json!(starts.to_rfc3339());
    input["endsAt"] = json!((starts + Duration::hours(3)).to_rfc3339());
    input["capacity"] = json!(capacity);
    input["status"] = json!("PUBLISHED");
    input["price"] = json!({ "amount": amount, "currency": currency });
    let event = create_event(app, &organizer.token, input).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let member = app.members(1).await.pop().unwrap();
    let booked = app
        .gql(
            Some(&member.token),
            "mutation($e: ID!) { bookTicket(eventId: $e) { id status } }",
            json!({ "e": event }),
        )
        .await;
    assert_eq!(
        booked["data"]["bookTicket"]["status"], "PENDING",
        "{booked}"
    );
    let ticket = booked["data"]["bookTicket"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (member, event, ticket)
}

async fn initiate(app: &TestApp, member: &Member, ticket: &str, provider: &str) -> Value {
    app.gql(
        Some(&member.token),
        INITIATE,
        json!({ "t": ticket, "p": provider, "r": format!("{ORIGIN}/tickets") }),
    )
    .await
}

/// Starts a payment for `ticket` and returns the payment's id.
async fn start_payment(app: &TestApp, member: &Member, ticket: &str, provider: &str) -> String {
    let started = initiate(app, member, ticket, provider).await;
    let id = started["data"]["initiatePayment"]["payment"]["id"].as_str();
    id.unwrap_or_else(|| panic!("initiatePayment failed: {started}"))
        .to_string()
}

async fn stripe_event(app: &TestApp, event: &Value) -> reqwest::StatusCode {
    let body = serde_json::to_vec(event).unwrap();
    let signature = sign_stripe(STRIPE_SECRET, app.clock.now().timestamp(), &body);
    app.client
        .post(app.url("/api/payments/webhook/stripe"))
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

fn completed(event_id: &str, payment_id: &str) -> Value {
    json!({ "id": event_id, "type": "checkout.session.completed", "data": { "object": {
        "id": "cs_test_1", "object": "checkout.session", "payment_status": "paid", "payment_intent": "pi_test_1",
        "amount_total": 50000, "currency": "pyg",
        "metadata": { "payment_id": payment_id } } } })
}

async fn ticket_state(app: &TestApp, member: &Member, ticket: &str) -> Value {
    app.gql(
        Some(&app.fresh_token(member)),
        TICKET,
        json!({ "id": ticket }),
    )
    .await["data"]["ticket"]
        .clone()
}

async fn book_initiate_and_pay_through_stripe(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;

    let started = initiate(&app, &member, &ticket, "STRIPE").await;
    let session = &started["data"]["initiatePayment"];
    assert_eq!(
        session["redirectUrl"], "https://checkout.stripe.test/cs_test_1",
        "{started}"
    );
    assert_eq!(session["payment"]["reference"], "cs_test_1");
    assert_eq!(
        session["payment"]["amount"],
        json!({ "amount": "50000", "currency": "PYG" })
    );
    let payment_id = session["payment"]["id"].as_str().unwrap().to_string();

    let sent = &providers.stripe.received_requests().await.unwrap()[0];
    let form = decoded(sent);
    assert!(
        form.contains("line_items[0][price_data][unit_amount]=50000"),
        "PYG goes to Stripe as is: {form}"
    );
    assert!(
        form.contains("line_items[0][price_data][currency]=pyg"),
        "{form}"
    );
    assert!(
        form.contains(&format!("metadata[payment_id]={payment_id}")),
        "{form}"
    );
    assert_eq!(
        sent.headers
            .get("idempotency-key")
            .unwrap()
            .to_str()
            .unwrap(),
        payment_id
    );
    let expires: i64 = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("expires_at="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        expires <= (app.clock.now() + Duration::minutes(31)).timestamp(),
        "the checkout closes with the 15-minute hold, or as soon as Stripe allows"
    );

    assert_eq!(
        stripe_event(&app, &completed("evt_1", &payment_id)).await,
        200
    );
    let state = ticket_state(&app, &member, &ticket).await;
    assert_eq!(state["status"], "CONFIRMED", "{state}");
    assert!(state["code"].as_str().unwrap().starts_with("SPG1."));
    assert_eq!(state["payment"]["status"], "SUCCEEDED");
    assert_eq!(
        app.audit_actions(&format!("payment:{payment_id}")).await,
        vec!["payment.succeed"]
    );
}

async fn dollars_go_to_stripe_in_cents(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let (member, _, ticket) = pending_ticket(&app, 10, "12.50", "USD").await;
    initiate(&app, &member, &ticket, "STRIPE").await;
    let form = decoded(&providers.stripe.received_requests().await.unwrap()[0]);
    assert!(form.contains("unit_amount]=1250"), "{form}");
}

async fn the_same_delivery_twice_and_three_times_at_once_applies_once(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let payment_id = start_payment(&app, &member, &ticket, "STRIPE").await;
    let event = completed("evt_dup", &payment_id);

    assert_eq!(stripe_event(&app, &event).await, 200);
    assert_eq!(stripe_event(&app, &event).await, 200);
    let (a, b, c) = tokio::join!(
        stripe_event(&app, &event),
        stripe_event(&app, &event),
        stripe_event(&app, &event)
    );
    assert_eq!([a, b, c], [200, 200, 200]);

    assert_eq!(
        ticket_state(&app, &member, &ticket).await["status"],
        "CONFIRMED"
    );
    assert_eq!(
        app.audit_actions(&format!("payment:{payment_id}")).await,
        vec!["payment.succeed"],
        "one confirmation"
    );
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let receipts = spanglish::email::entity::Entity::find()
        .filter(spanglish::email::entity::Column::Template.eq("payment_received"))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(receipts, 1, "one email");
    let inbox = spanglish::payments::entity::webhook_event::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(inbox, 1, "the delivery is stored once");

    // A concurrent burst of a fresh delivery also applies once.
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let payment_id = start_payment(&app, &member, &ticket, "STRIPE").await;
    let event = completed("evt_burst", &payment_id);
    let (a, b, c) = tokio::join!(
        stripe_event(&app, &event),
        stripe_event(&app, &event),
        stripe_event(&app, &event)
    );
    assert_eq!([a, b, c], [200, 200, 200]);
    assert_eq!(
        app.audit_actions(&format!("payment:{payment_id}")).await,
        vec!["payment.succeed"]
    );
}

async fn bad_signatures_altered_bodies_and_stale_timestamps_change_nothing(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let payment_id = start_payment(&app, &member, &ticket, "STRIPE").await;
    let body = serde_json::to_vec(&completed("evt_x", &payment_id)).unwrap();
    let now = app.clock.now().timestamp();

    let post = |signature: String, body: Vec<u8>| {
        app.client
            .post(app.url("/api/payments/webhook/stripe"))
            .header("stripe-signature", signature)
            .body(body)
            .send()
    };
    let wrong_secret = sign_stripe("whsec_someone_else", now, &body);
    assert_eq!(
        post(wrong_secret, body.clone()).await.unwrap().status(),
        400
    );
    let mut altered = body.clone();
    altered.extend_from_slice(b" ");
    assert_eq!(
        post(sign_stripe(STRIPE_SECRET, now, &body), altered)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post(sign_stripe(STRIPE_SECRET, now - 301, &body), body.clone())
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post(String::new(), body.clone()).await.unwrap().status(),
        400
    );
    // Timestamps at the ends of the integer range are stale like any other,
    // not an overflow in the age arithmetic.
    for timestamp in [i64::MIN, i64::MAX] {
        assert_eq!(
            post(sign_stripe(STRIPE_SECRET, timestamp, &body), body.clone())
                .await
                .unwrap()
                .status(),
            400,
            "t={timestamp}"
        );
    }

    assert_eq!(
        ticket_state(&app, &member, &ticket).await["status"],
        "PENDING"
    );
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        spanglish::payments::entity::webhook_event::Entity::find()
            .count(&app.state.db)
            .await
            .unwrap(),
        0
    );
}

async fn events_out_of_order_still_end_in_the_right_state(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let payment_id = start_payment(&app, &member, &ticket, "STRIPE").await;

    // The refund is delivered before the success it refunds.
    let refunded = json!({ "id": "evt_refund", "type": "charge.refunded", "data": { "object": {
        "id": "ch_1", "object": "charge", "payment_intent": "pi_test_1", "amount_refunded": 50000, "currency": "pyg",
        "metadata": { "payment_id": payment_id } } } });
    assert_eq!(stripe_event(&app, &refunded).await, 200);
    assert_eq!(
        stripe_event(&app, &completed("evt_paid", &payment_id)).await,
        200
    );
    let state = ticket_state(&app, &member, &ticket).await;
    assert_eq!(state["payment"]["status"], "REFUNDED", "{state}");
    assert_eq!(state["status"], "REFUNDED", "a full refund frees the seat");

    // A late failure after success changes nothing.
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let payment_id = start_payment(&app, &member, &ticket, "STRIPE").await;
    assert_eq!(
        stripe_event(&app, &completed("evt_ok", &payment_id)).await,
        200
    );
    let failed = json!({ "id": "evt_late_fail", "type": "checkout.session.async_payment_failed", "data": { "object": { "metadata": { "payment_id": payment_id } } } });
    assert_eq!(stripe_event(&app, &failed).await, 200);
    assert_eq!(
        ticket_state(&app, &member, &ticket).await["payment"]["status"],
        "SUCCEEDED"
    );

    // An event about a payment we do not know is answered 2xx so it stops.
    let unknown = completed("evt_unknown", "0192a0f0-0000-7000-8000-000000000000");
    assert_eq!(stripe_event(&app, &unknown).await, 200);
}

async fn a_late_success_confirms_if_a_seat_is_free_and_is_refunded_otherwise(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;

    // With a seat still free: confirmed.
    let (member, _, ticket) = pending_ticket(&app, 2, "50000", "PYG").await;
    let payment_id = start_payment(&app, &member, &ticket, "STRIPE").await;
    app.clock.advance(Duration::seconds(901));
    assert_eq!(
        ticket_state(&app, &member, &ticket).await["status"],
        "EXPIRED"
    );
    assert_eq!(
        stripe_event(&app, &completed("evt_late_ok", &payment_id)).await,
        200
    );
    assert_eq!(
        ticket_state(&app, &member, &ticket).await["status"],
        "CONFIRMED"
    );

    // With the seat taken by someone else meanwhile: refunded.
    let (member, event, ticket) = pending_ticket(&app, 1, "50000", "PYG").await;
    let payment_id = start_payment(&app, &member, &ticket, "STRIPE").await;
    app.clock.advance(Duration::seconds(901));
    let other = app.members(1).await.pop().unwrap();
    let taken = app
        .gql(
            Some(&other.token),
            "mutation($e: ID!) { bookTicket(eventId: $e) { status } }",
            json!({ "e": event }),
        )
        .await;
    assert_eq!(taken["data"]["bookTicket"]["status"], "PENDING", "{taken}");
    assert_eq!(
        stripe_event(&app, &completed("evt_late_full", &payment_id)).await,
        200
    );

    let state = ticket_state(&app, &member, &ticket).await;
    assert_eq!(
        state["status"], "REFUNDED",
        "never confirmed, money back: {state}"
    );
    assert_eq!(state["code"], Value::Null);
    assert_eq!(state["payment"]["status"], "REFUNDED");
    let refunds: Vec<String> = providers
        .stripe
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/refunds")
        .map(decoded)
        .collect();
    assert_eq!(refunds.len(), 1);
    assert!(
        refunds[0].contains("payment_intent=pi_test_1") && refunds[0].contains("amount=50000"),
        "{refunds:?}"
    );
    assert_eq!(
        app.audit_actions(&format!("payment:{payment_id}")).await,
        vec!["payment.succeed", "payment.refund"]
    );
}

async fn cash_refunds_partial_full_excessive_and_concurrent(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let admin = app.user_with_role(Role::Admin).await;
    let (member, _, ticket) = pending_ticket(&app, 10, "90000", "PYG").await;

    let started = initiate(&app, &member, &ticket, "MANUAL").await;
    let payment_id = started["data"]["initiatePayment"]["payment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        started["data"]["initiatePayment"]["redirectUrl"],
        Value::Null
    );
    let confirm = "mutation($id: ID!) { confirmManualPayment(id: $id, reference: \"cash at the door\") { status reference } }";
    assert_eq!(
        error_code(
            &app.gql(Some(&member.token), confirm, json!({ "id": payment_id }))
                .await
        ),
        "FORBIDDEN"
    );
    let confirmed = app
        .gql(Some(&organizer.token), confirm, json!({ "id": payment_id }))
        .await;
    assert_eq!(
        confirmed["data"]["confirmManualPayment"],
        json!({ "status": "SUCCEEDED", "reference": "cash at the door" }),
        "{confirmed}"
    );
    assert_eq!(
        ticket_state(&app, &member, &ticket).await["status"],
        "CONFIRMED"
    );

    let refund = "mutation($id: ID!, $a: Decimal) { refundPayment(id: $id, amount: $a) { status refundedAmount { amount } } }";
    assert_eq!(
        error_code(
            &app.gql(
                Some(&organizer.token),
                refund,
                json!({ "id": payment_id, "a": "10000" })
            )
            .await
        ),
        "FORBIDDEN"
    );
    let partial = app
        .gql(
            Some(&admin.token),
            refund,
            json!({ "id": payment_id, "a": "30000" }),
        )
        .await;
    assert_eq!(
        partial["data"]["refundPayment"],
        json!({ "status": "PARTIALLY_REFUNDED", "refundedAmount": { "amount": "30000" } }),
        "{partial}"
    );
    let excessive = app
        .gql(
            Some(&admin.token),
            refund,
            json!({ "id": payment_id, "a": "60001" }),
        )
        .await;
    assert_eq!(
        (error_code(&excessive), error_field(&excessive)),
        ("BAD_USER_INPUT", "amount"),
        "{excessive}"
    );
    assert_eq!(
        excessive["errors"][0]["message"], "at most 60000 PYG can be refunded",
        "{excessive}"
    );
    // Nothing to refund is a mistake of its own, not one of "at most".
    let zero = app
        .gql(
            Some(&admin.token),
            refund,
            json!({ "id": payment_id, "a": "0" }),
        )
        .await;
    assert_eq!(
        (error_code(&zero), error_field(&zero)),
        ("BAD_USER_INPUT", "amount"),
        "{zero}"
    );
    assert_eq!(
        zero["errors"][0]["message"], "the amount must be more than zero",
        "{zero}"
    );

    // Two refunds of the whole remainder at the same instant: one goes through.
    let (a, b) = tokio::join!(
        app.gql(
            Some(&admin.token),
            refund,
            json!({ "id": payment_id, "a": "60000" })
        ),
        app.gql(
            Some(&admin.token),
            refund,
            json!({ "id": payment_id, "a": "60000" })
        )
    );
    let through = [&a, &b].iter().filter(|r| r["errors"].is_null()).count();
    assert_eq!(through, 1, "{a} / {b}");
    let state = ticket_state(&app, &member, &ticket).await;
    assert_eq!(
        state["payment"],
        json!({ "status": "REFUNDED", "refundedAmount": { "amount": "90000" } })
    );
    assert_eq!(state["status"], "REFUNDED", "a full refund frees the seat");
    let actions = app.audit_actions(&format!("payment:{payment_id}")).await;
    assert_eq!(
        actions,
        vec![
            "payment.succeed",
            "payment.confirm_manual",
            "payment.refund",
            "payment.refund"
        ]
    );
}

async fn stripe_refunds_go_through_the_provider_with_an_idempotency_key(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let admin = app.user_with_role(Role::Admin).await;
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let payment_id = start_payment(&app, &member, &ticket, "STRIPE").await;
    stripe_event(&app, &completed("evt_p", &payment_id)).await;

    let refund = "mutation($id: ID!) { refundPayment(id: $id) { status } }";
    let answer = app
        .gql(Some(&admin.token), refund, json!({ "id": payment_id }))
        .await;
    assert_eq!(
        answer["data"]["refundPayment"]["status"], "REFUNDED",
        "{answer}"
    );
    let sent: Vec<Request> = providers
        .stripe
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v1/refunds")
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].headers.get("idempotency-key").is_some());
    assert!(decoded(&sent[0]).contains("amount=50000"));
    assert_eq!(
        ticket_state(&app, &member, &ticket).await["status"],
        "REFUNDED"
    );
}

async fn mercadopago_is_read_back_before_anything_changes(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let started = initiate(&app, &member, &ticket, "MERCADOPAGO").await;
    let session = &started["data"]["initiatePayment"];
    assert_eq!(
        session["redirectUrl"], "https://mercadopago.test/checkout/pref-1",
        "{started}"
    );
    let payment_id = session["payment"]["id"].as_str().unwrap().to_string();
    let preference: Value =
        serde_json::from_slice(&providers.mercadopago.received_requests().await.unwrap()[0].body)
            .unwrap();
    assert_eq!(preference["external_reference"], payment_id.as_str());
    assert_eq!(preference["items"][0]["unit_price"], 50000);
    assert_eq!(preference["items"][0]["currency_id"], "PYG");
    assert!(
        preference["notification_url"]
            .as_str()
            .unwrap()
            .ends_with("/api/payments/webhook/mercadopago")
    );

    let mp_payment = |id: &str, amount: i64| json!({ "id": id.parse::<i64>().unwrap(), "status": "approved", "external_reference": payment_id, "transaction_amount": amount, "currency_id": "PYG", "transaction_amount_refunded": 0 });
    Mock::given(method("GET"))
        .and(path("/v1/payments/555"))
        .respond_with(ResponseTemplate::new(200).set_body_json(mp_payment("555", 49000)))
        .mount(&providers.mercadopago)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payments/777"))
        .respond_with(ResponseTemplate::new(200).set_body_json(mp_payment("777", 50000)))
        .mount(&providers.mercadopago)
        .await;

    let notify = |data_id: &'static str, notification: &'static str, secret: &'static str| {
        let signature = sign_mercadopago(secret, data_id, "req-1", "1742505638683");
        app.client
            .post(app.url(&format!("/api/payments/webhook/mercadopago?data.id={data_id}&type=payment")))
            .header("x-signature", signature)
            .header("x-request-id", "req-1")
            .json(&json!({ "id": notification, "type": "payment", "action": "payment.updated", "data": { "id": data_id } }))
            .send()
    };
    assert_eq!(
        notify("777", "n-0", "not-the-secret")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(notify("555", "n-1", MP_SECRET).await.unwrap().status(), 200);
    assert_eq!(
        ticket_state(&app, &member, &ticket).await["status"],
        "PENDING",
        "an amount that does not match changes nothing"
    );
    assert_eq!(notify("777", "n-2", MP_SECRET).await.unwrap().status(), 200);
    assert_eq!(
        ticket_state(&app, &member, &ticket).await["status"],
        "CONFIRMED"
    );
}

async fn providers_that_are_off_and_foreign_return_urls_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.cors_origins = vec![ORIGIN.into()]).await;
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let off = app
        .gql(
            Some(&member.token),
            INITIATE,
            json!({ "t": ticket, "p": "STRIPE" }),
        )
        .await;
    assert_eq!(
        (error_code(&off), error_field(&off)),
        ("BAD_USER_INPUT", "provider"),
        "{off}"
    );
    let foreign = app
        .gql(
            Some(&member.token),
            INITIATE,
            json!({ "t": ticket, "p": "MANUAL", "r": "https://evil.example/phish" }),
        )
        .await;
    assert_eq!(
        (error_code(&foreign), error_field(&foreign)),
        ("BAD_USER_INPUT", "returnUrl"),
        "{foreign}"
    );
    let lookalike = app
        .gql(
            Some(&member.token),
            INITIATE,
            json!({ "t": ticket, "p": "MANUAL", "r": format!("{ORIGIN}.evil.example/") }),
        )
        .await;
    assert_eq!(error_field(&lookalike), "returnUrl");

    let other = app.members(1).await.pop().unwrap();
    let not_yours = app
        .gql(
            Some(&other.token),
            INITIATE,
            json!({ "t": ticket, "p": "MANUAL" }),
        )
        .await;
    assert_eq!(error_code(&not_yours), "NOT_FOUND");
    let manual = app
        .gql(
            Some(&member.token),
            INITIATE,
            json!({ "t": ticket, "p": "MANUAL" }),
        )
        .await;
    let payment_id = manual["data"]["initiatePayment"]["payment"]["id"].clone();
    let peek = app
        .gql(
            Some(&other.token),
            "query($id: ID!) { payment(id: $id) { id } }",
            json!({ "id": payment_id }),
        )
        .await;
    assert_eq!(error_code(&peek), "NOT_FOUND");
    assert_eq!(
        error_code(
            &app.gql(
                Some(&member.token),
                "{ payments { totalCount } }",
                json!({})
            )
            .await
        ),
        "FORBIDDEN"
    );
}

async fn cancelling_an_event_refunds_card_payments_and_flags_cash(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let (card_member, event, card_ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let card = start_payment(&app, &card_member, &card_ticket, "STRIPE").await;
    stripe_event(&app, &completed("evt_card", &card)).await;

    let cash_member = app.members(1).await.pop().unwrap();
    let booked = app
        .gql(
            Some(&cash_member.token),
            "mutation($e: ID!) { bookTicket(eventId: $e) { id } }",
            json!({ "e": event }),
        )
        .await;
    let cash_ticket = booked["data"]["bookTicket"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cash = start_payment(&app, &cash_member, &cash_ticket, "MANUAL").await;
    app.gql(
        Some(&organizer.token),
        "mutation($id: ID!) { confirmManualPayment(id: $id) { status } }",
        json!({ "id": cash }),
    )
    .await;

    let cancel = app
        .gql(
            Some(&organizer.token),
            "mutation($id: ID!) { cancelEvent(id: $id) { status } }",
            json!({ "id": event }),
        )
        .await;
    assert_eq!(
        cancel["data"]["cancelEvent"]["status"], "CANCELLED",
        "{cancel}"
    );

    let card_state = ticket_state(&app, &card_member, &card_ticket).await;
    assert_eq!(card_state["payment"]["status"], "REFUNDED", "{card_state}");
    assert_eq!(card_state["status"], "REFUNDED");
    let query = "query($id: ID!) { payment(id: $id) { status manualRefundRequired } }";
    let cash_state = app
        .gql(
            Some(&app.fresh_token(&cash_member)),
            query,
            json!({ "id": cash }),
        )
        .await;
    assert_eq!(
        cash_state["data"]["payment"],
        json!({ "status": "SUCCEEDED", "manualRefundRequired": true }),
        "{cash_state}"
    );
}

async fn reconcile_settles_payments_whose_webhook_never_came(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    initiate(&app, &member, &ticket, "STRIPE").await;
    let (mp_member, _, mp_ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let mp_payment = start_payment(&app, &mp_member, &mp_ticket, "MERCADOPAGO").await;

    let mut paid = checkout_session("cs_test_1");
    paid["payment_status"] = json!("paid");
    paid["status"] = json!("complete");
    paid["payment_intent"] = json!("pi_reconciled");
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions/cs_test_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(paid))
        .mount(&providers.stripe)
        .await;
    let found = json!({ "results": [{ "id": 4242, "status": "approved", "external_reference": mp_payment, "transaction_amount": 50000, "currency_id": "PYG", "transaction_amount_refunded": 0 }] });
    Mock::given(method("GET"))
        .and(path("/v1/payments/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(found))
        .mount(&providers.mercadopago)
        .await;

    // Too early: a webhook may still come.
    let early = spanglish::payments::reconcile::run(&app.state)
        .await
        .unwrap();
    assert_eq!(early.checked, 0);

    // Six minutes later (the binary reads the real clock, so the payments
    // are made older instead), from the command line, as an operator would.
    use sea_orm::{EntityTrait, sea_query::Expr};
    use spanglish::payments::entity::payment;
    payment::Entity::update_many()
        .col_expr(
            payment::Column::CreatedAt,
            Expr::value(app.clock.now() - Duration::minutes(6)),
        )
        .exec(&app.state.db)
        .await
        .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spanglish"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", &app.db.url)
        .env(
            "JWT_SECRET",
            app.state.config.jwt_secret.as_ref().unwrap().expose(),
        )
        .env("DATA_DIR", std::env::temp_dir())
        .env("STRIPE_SECRET_KEY", "sk_test_123")
        .env("STRIPE_API_BASE", providers.stripe.uri())
        .env("MERCADOPAGO_ACCESS_TOKEN", "APP_USR-test")
        .env("MERCADOPAGO_API_BASE", providers.mercadopago.uri())
        .args(["payments", "reconcile"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("checked 2 pending payments, changed 2"),
        "{stdout}"
    );
    assert_eq!(
        ticket_state(&app, &member, &ticket).await["status"],
        "CONFIRMED"
    );
    assert_eq!(
        ticket_state(&app, &mp_member, &mp_ticket).await["status"],
        "CONFIRMED"
    );
}

async fn a_price_change_does_not_change_what_a_pending_ticket_owes(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;
    let (member, event, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let raise = "mutation($id: ID!) { updateEvent(id: $id, input: { price: { amount: \"80000\", currency: \"PYG\" } }) { id } }";
    app.gql(Some(&organizer.token), raise, json!({ "id": event }))
        .await;
    let started = initiate(&app, &member, &ticket, "MANUAL").await;
    assert_eq!(
        started["data"]["initiatePayment"]["payment"]["amount"]["amount"], "50000",
        "{started}"
    );
}

async fn a_success_for_another_amount_or_a_second_payment_is_not_kept(backend: Backend) {
    let providers = providers().await;
    let app = spawn(backend, &providers).await;

    // Stripe says another amount was paid: nothing changes.
    let (member, _, ticket) = pending_ticket(&app, 10, "50000", "PYG").await;
    let payment_id = start_payment(&app, &member, &ticket, "STRIPE").await;
    let mut cheap = completed("evt_cheap", &payment_id);
    cheap["data"]["object"]["amount_total"] = json!(1);
    cheap["data"]["object"]["currency"] = json!("jpy");
    assert_eq!(stripe_event(&app, &cheap).await, 200);
    assert_eq!(
        ticket_state(&app, &member, &ticket).await["status"],
        "PENDING"
    );

    // Two checkouts for one ticket both paid: the second payment goes back.
    let first = payment_id;
    let second = start_payment(&app, &member, &ticket, "STRIPE").await;
    assert_eq!(
        stripe_event(&app, &completed("evt_second", &second)).await,
        200
    );
    assert_eq!(
        stripe_event(&app, &completed("evt_first", &first)).await,
        200
    );
    let state = ticket_state(&app, &member, &ticket).await;
    assert_eq!(state["status"], "CONFIRMED", "{state}");
    let query = "query($id: ID!) { payment(id: $id) { status } }";
    let token = app.fresh_token(&member);
    assert_eq!(
        app.gql(Some(&token), query, json!({ "id": second })).await["data"]["payment"]["status"],
        "SUCCEEDED"
    );
    assert_eq!(
        app.gql(Some(&token), query, json!({ "id": first })).await["data"]["payment"]["status"],
        "REFUNDED"
    );
    let refunds = providers
        .stripe
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/refunds")
        .count();
    assert_eq!(refunds, 1);

    // Refusals answer in the API's error shape.
    let refused = app
        .client
        .post(app.url("/api/payments/webhook/stripe"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["code"],
        "BAD_USER_INPUT"
    );
    let nowhere = app
        .client
        .get(app.url("/api/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404);
    assert_eq!(nowhere.json::<Value>().await.unwrap()["code"], "NOT_FOUND");
}

on_both_databases!(
    a_success_for_another_amount_or_a_second_payment_is_not_kept,
    cancelling_an_event_refunds_card_payments_and_flags_cash,
    reconcile_settles_payments_whose_webhook_never_came,
    a_price_change_does_not_change_what_a_pending_ticket_owes,
    book_initiate_and_pay_through_stripe,
    dollars_go_to_stripe_in_cents,
    the_same_delivery_twice_and_three_times_at_once_applies_once,
    bad_signatures_altered_bodies_and_stale_timestamps_change_nothing,
    events_out_of_order_still_end_in_the_right_state,
    a_late_success_confirms_if_a_seat_is_free_and_is_refunded_otherwise,
    cash_refunds_partial_full_excessive_and_concurrent,
    stripe_refunds_go_through_the_provider_with_an_idempotency_key,
    mercadopago_is_read_back_before_anything_changes,
    providers_that_are_off_and_foreign_return_urls_are_refused,
);
