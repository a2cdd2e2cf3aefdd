//! Email: the outbox delivers once per recipient, in their language, over
//! SMTP (a real sink started by .ci/run) or the HTTP providers; password
//! reset goes through it.

use std::path::PathBuf;

use chrono::Duration;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{Value, json};
use spanglish::accounts::Role;
use spanglish::clock::Clock;
use spanglish::email::entity::{self as email, EmailStatus};
use spanglish::email::worker;
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::events::{create_event, event_input};
use crate::support::{Backend, Member, TestApp, error_code, error_field, on_both_databases};

fn smtp_url() -> String {
    std::env::var("TEST_SMTP_URL").unwrap_or_else(|_| "smtp://127.0.0.1:2525".into())
}

fn sink_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("TEST_SMTP_DIR").unwrap_or_else(|_| "/tmp/spanglish-smtp-sink".into()),
    )
}

/// What the sink received for `address`, oldest first.
fn received(address: &str) -> Vec<String> {
    let prefix = format!("{}--", address.to_lowercase());
    let mut files: Vec<_> = std::fs::read_dir(sink_dir())
        .expect("the SMTP sink folder (start .ci/smtp_sink.py, see README)")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

async fn smtp_app(backend: Backend) -> TestApp {
    let url = smtp_url();
    let host = url.trim_start_matches("smtp://").to_string();
    assert!(
        std::net::TcpStream::connect(&host).is_ok(),
        "the SMTP sink must be running on {host} (see README)"
    );
    TestApp::spawn_with(backend, move |c| {
        c.email_transport = "smtp".into();
        c.smtp_url = Some(spanglish::config::Secret::new(url));
        c.email_from = Some("Spanglish <hola@spanglish.example>".into());
    })
    .await
}

/// A member with a unique address the sink can be searched by.
async fn member(app: &TestApp, prefix: &str, locale: &str) -> Member {
    let mut m = app.members(1).await.pop().unwrap();
    let address = format!("{prefix}-{}@example.org", Uuid::new_v4().simple());
    let id = Uuid::parse_str(&m.id).unwrap();
    let found = spanglish::accounts::entity::user::Entity::find_by_id(id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut model: spanglish::accounts::entity::user::ActiveModel = found.into();
    model.email = Set(address.clone());
    model.email_key = Set(address.clone());
    model.locale = Set(locale.into());
    model.update(&app.state.db).await.unwrap();
    m.email = address;
    m
}

async fn free_event(app: &TestApp, organizer: &Member) -> String {
    let mut input = event_input("Noche de juegos");
    input["status"] = json!("PUBLISHED");
    create_event(app, &organizer.token, input).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn deliver_all(app: &TestApp) {
    while worker::run_once(&app.state).await.unwrap() > 0 {}
}

async fn attendees_get_one_email_each_in_their_language(backend: Backend) {
    let app = smtp_app(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let event = free_event(&app, &organizer).await;
    let ana = member(&app, "ana", "es").await;
    let bob = member(&app, "bob", "en").await;
    for m in [&ana, &bob] {
        app.gql(
            Some(&m.token),
            "mutation($e: ID!) { bookTicket(eventId: $e) { id } }",
            json!({ "e": event }),
        )
        .await;
    }

    let send = "mutation($input: SendEmailInput!) { sendEmail(input: $input) { queued } }";
    let input = json!({ "subject": "Cambio de sala", "body": "Nos vemos en la sala 2 <b>arriba</b>.", "eventId": event, "userIds": [ana.id] });
    let answer = app
        .gql(Some(&organizer.token), send, json!({ "input": input }))
        .await;
    assert_eq!(
        answer["data"]["sendEmail"]["queued"], 2,
        "each person once: {answer}"
    );
    deliver_all(&app).await;

    let to_ana = received(&ana.email);
    let to_bob = received(&bob.email);
    assert_eq!(
        (to_ana.len(), to_bob.len()),
        (2, 2),
        "a ticket confirmation and the announcement each"
    );
    assert!(
        to_ana[0].contains("Tu entrada") || to_ana[0].contains("=?utf-8?"),
        "Spanish confirmation: {}",
        to_ana[0]
    );
    assert!(to_ana[1].contains("Hola"), "{}", to_ana[1]);
    assert!(to_bob[0].contains("Your ticket for"), "{}", to_bob[0]);
    assert!(to_bob[1].contains("Hi "), "{}", to_bob[1]);
    let announcement = email::Entity::find()
        .filter(email::Column::ToAddress.eq(bob.email.clone()))
        .filter(email::Column::Template.eq("announcement"))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let html = announcement.body_html.unwrap_or_default();
    assert!(
        html.contains("&lt;b&gt;arriba") && !html.contains("<b>arriba"),
        "what an organizer typed is escaped in HTML: {html}"
    );
    assert!(
        to_bob[0].contains("SPG1."),
        "the confirmation carries the check-in code"
    );
    assert!(
        app.audit_actions(&format!("event:{event}"))
            .await
            .contains(&"event.create".to_string())
    );
}

async fn a_failed_recipient_is_retried_without_resending_to_the_others(backend: Backend) {
    let app = smtp_app(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let ok = member(&app, "ok", "es").await;
    let flaky = member(&app, "fail-once", "es").await;
    let broken = member(&app, "fail-always", "en").await;

    let send = "mutation($input: SendEmailInput!) { sendEmail(input: $input) { queued } }";
    let input =
        json!({ "subject": "Hola", "body": "Mensaje", "userIds": [ok.id, flaky.id, broken.id] });
    assert_eq!(
        app.gql(Some(&organizer.token), send, json!({ "input": input }))
            .await["data"]["sendEmail"]["queued"],
        3
    );
    deliver_all(&app).await;
    assert_eq!(
        (received(&ok.email).len(), received(&flaky.email).len()),
        (1, 0)
    );

    for _ in 0..6 {
        app.clock.advance(Duration::minutes(20));
        deliver_all(&app).await;
    }
    assert_eq!(received(&ok.email).len(), 1, "never sent twice");
    assert_eq!(
        received(&flaky.email).len(),
        1,
        "retried once it was accepted"
    );

    let rows = email::Entity::find()
        .filter(email::Column::ToAddress.eq(broken.email.clone()))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, EmailStatus::Failed);
    assert_eq!(rows[0].attempts, worker::MAX_ATTEMPTS);
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("451"),
        "{:?}",
        rows[0].last_error
    );

    let admin = app.user_with_role(Role::Admin).await;
    let admin = Member {
        token: app.fresh_token(&admin),
        ..admin
    };
    let listed = app.gql(Some(&admin.token), "{ emails(filter: { status: FAILED }) { totalCount edges { node { to lastError attempts } } } }", json!({})).await;
    assert_eq!(listed["data"]["emails"]["totalCount"], 1, "{listed}");
    let organizer_now = app.fresh_token(&organizer);
    assert_eq!(
        error_code(
            &app.gql(Some(&organizer_now), "{ emails { totalCount } }", json!({}))
                .await
        ),
        "FORBIDDEN"
    );
}

async fn header_injection_is_refused_and_user_text_stays_in_its_place(backend: Backend) {
    let app = smtp_app(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let target = member(&app, "target", "en").await;
    let send = "mutation($input: SendEmailInput!) { sendEmail(input: $input) { queued } }";

    let nowhere =
        json!({ "subject": "s", "body": "b", "eventId": "00000000-0000-4000-8000-000000000000" });
    assert_eq!(
        error_code(
            &app.gql(Some(&organizer.token), send, json!({ "input": nowhere }))
                .await
        ),
        "NOT_FOUND"
    );

    let injected =
        json!({ "subject": "Hi\r\nBcc: victim@example.org", "body": "x", "userIds": [target.id] });
    let answer = app
        .gql(Some(&organizer.token), send, json!({ "input": injected }))
        .await;
    assert_eq!(
        (error_code(&answer), error_field(&answer)),
        ("BAD_USER_INPUT", "subject"),
        "{answer}"
    );

    let accented = json!({ "subject": "Año nuevo: ¿venís?", "body": "Bcc: victim@example.org\nhello", "userIds": [target.id] });
    app.gql(Some(&organizer.token), send, json!({ "input": accented }))
        .await;
    deliver_all(&app).await;
    let mail = &received(&target.email)[0];
    let headers = mail.split("\r\n\r\n").next().unwrap();
    assert!(
        !headers.to_lowercase().contains("bcc:"),
        "no extra header: {headers}"
    );
    assert_eq!(headers.matches("Subject:").count(), 1);
}

async fn the_http_providers_are_called_in_their_documented_format(backend: Backend) {
    let resend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("authorization", "Bearer re_test_key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "re-1" })))
        .mount(&resend)
        .await;
    let uri = resend.uri();
    let app = TestApp::spawn_with(backend, move |c| {
        c.email_transport = "resend".into();
        c.resend_api_key = Some(spanglish::config::Secret::new("re_test_key"));
        c.email_api_base = Some(uri);
        c.email_from = Some("hola@spanglish.example".into());
    })
    .await;
    let user = app.register("Ana", "ana@example.org").await;
    app.gql(
        None,
        "mutation { requestPasswordReset(email: \"ana@example.org\") }",
        json!({}),
    )
    .await;
    deliver_all(&app).await;
    let sent: Value =
        serde_json::from_slice(&resend.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["from"], "hola@spanglish.example");
    assert_eq!(sent["to"], json!([user.email]));
    assert!(sent["subject"].as_str().unwrap().contains("contraseña"));
    assert!(
        sent["html"]
            .as_str()
            .unwrap()
            .contains("reset-password?token=")
    );
    assert!(
        sent["text"]
            .as_str()
            .unwrap()
            .contains("reset-password?token=")
    );

    let postmark = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(header("x-postmark-server-token", "pm-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ErrorCode": 0 })))
        .mount(&postmark)
        .await;
    let uri = postmark.uri();
    let app = TestApp::spawn_with(backend, move |c| {
        c.email_transport = "postmark".into();
        c.postmark_server_token = Some(spanglish::config::Secret::new("pm-token"));
        c.email_api_base = Some(uri);
        c.email_from = Some("hola@spanglish.example".into());
    })
    .await;
    app.register("Bea", "bea@example.org").await;
    app.gql(
        None,
        "mutation { requestPasswordReset(email: \"bea@example.org\") }",
        json!({}),
    )
    .await;
    deliver_all(&app).await;
    let sent: Value =
        serde_json::from_slice(&postmark.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["From"], "hola@spanglish.example");
    assert_eq!(sent["To"], "bea@example.org");
    assert_eq!(sent["MessageStream"], "outbound");
    assert!(sent["HtmlBody"].as_str().is_some() && sent["TextBody"].as_str().is_some());
}

async fn password_reset_works_once_within_the_hour(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.register("Ana", "ana@example.org").await;
    let request = "mutation($e: String!) { requestPasswordReset(email: $e) }";
    assert_eq!(
        app.gql(None, request, json!({ "e": "nobody@example.org" }))
            .await["data"]["requestPasswordReset"],
        true
    );
    assert_eq!(
        app.gql(None, request, json!({ "e": "ANA@example.org" }))
            .await["data"]["requestPasswordReset"],
        true
    );
    assert_eq!(
        app.gql(None, request, json!({ "e": "ana@example.org" }))
            .await["data"]["requestPasswordReset"],
        true
    );

    let mails = email::Entity::find()
        .filter(email::Column::Template.eq("password_reset"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        mails.len(),
        1,
        "one mail per address per few minutes, none for unknown ones"
    );
    let token = mails[0]
        .body
        .split("token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let stored: Vec<String> = spanglish::accounts::entity::password_reset::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.token_hash)
        .collect();
    assert!(!stored.contains(&token), "only a hash of the token is kept");

    let reset = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }";
    assert_eq!(
        error_field(
            &app.gql(None, reset, json!({ "t": "forged", "p": "a new password" }))
                .await
        ),
        "token"
    );
    assert_eq!(
        app.gql(None, reset, json!({ "t": token, "p": "a new password" }))
            .await["data"]["resetPassword"],
        true
    );
    assert_eq!(
        error_field(
            &app.gql(None, reset, json!({ "t": token, "p": "another one!" }))
                .await
        ),
        "token",
        "single use"
    );

    let login =
        "mutation($p: String!) { login(email: \"ana@example.org\", password: $p) { accessToken } }";
    assert!(app.gql(None, login, json!({ "p": "a new password" })).await["errors"].is_null());
    let refresh = app
        .gql(
            None,
            "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }",
            json!({ "t": ana.refresh }),
        )
        .await;
    assert_eq!(
        error_code(&refresh),
        "UNAUTHENTICATED",
        "a reset ends every session"
    );

    // A link older than an hour no longer works.
    app.clock.advance(Duration::minutes(6));
    app.gql(None, request, json!({ "e": "ana@example.org" }))
        .await;
    let mails = email::Entity::find()
        .filter(email::Column::Template.eq("password_reset"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(mails.len(), 2);
    let late = mails
        .iter()
        .map(|m| {
            m.body
                .split("token=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        })
        .find(|t| *t != token)
        .unwrap();
    app.clock.advance(Duration::minutes(61));
    assert_eq!(
        error_field(
            &app.gql(None, reset, json!({ "t": late, "p": "too late pass" }))
                .await
        ),
        "token"
    );
}

async fn a_replayed_payment_webhook_queues_one_email(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let mut input = event_input("Paid");
    input["status"] = json!("PUBLISHED");
    input["price"] = json!({ "amount": "50000", "currency": "PYG" });
    let event = create_event(&app, &organizer.token, input).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let m = member(&app, "payer", "es").await;
    let ticket = app
        .gql(
            Some(&m.token),
            "mutation($e: ID!) { bookTicket(eventId: $e) { id } }",
            json!({ "e": event }),
        )
        .await["data"]["bookTicket"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let payment = app.gql(Some(&m.token), "mutation($t: ID!) { initiatePayment(ticketId: $t, provider: MANUAL) { payment { id } } }", json!({ "t": ticket })).await["data"]["initiatePayment"]["payment"]["id"].as_str().unwrap().to_string();
    app.gql(
        Some(&organizer.token),
        "mutation($id: ID!) { confirmManualPayment(id: $id) { status } }",
        json!({ "id": payment }),
    )
    .await;

    // Applying the same success again (as a replayed delivery would) queues nothing new.
    let txn = spanglish::db::begin_write(&app.state.db).await.unwrap();
    let outcome = spanglish::payments::service::Outcome::Succeeded {
        provider_payment_id: None,
    };
    spanglish::payments::service::apply_outcome(
        &app.state,
        &txn,
        Uuid::parse_str(&payment).unwrap(),
        outcome,
        app.clock.now(),
        None,
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();

    let to_payer = email::Entity::find()
        .filter(email::Column::ToAddress.eq(m.email.clone()))
        .all(&app.state.db)
        .await
        .unwrap();
    let mut kinds: Vec<String> = to_payer.iter().filter_map(|e| e.template.clone()).collect();
    kinds.sort();
    assert_eq!(kinds, vec!["payment_received", "ticket_confirmed"]);
}

async fn cancellation_notices(app: &TestApp, address: &str) -> Vec<email::Model> {
    email::Entity::find()
        .filter(email::Column::ToAddress.eq(address))
        .filter(email::Column::Template.eq("event_cancelled"))
        .all(&app.state.db)
        .await
        .unwrap()
}

async fn cancelling_an_event_tells_each_attendee_in_their_language(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let event = free_event(&app, &organizer).await;
    let ana = member(&app, "ana", "es").await;
    let bob = member(&app, "bob", "en").await;
    for m in [&ana, &bob] {
        app.gql(
            Some(&m.token),
            "mutation($e: ID!) { bookTicket(eventId: $e) { id } }",
            json!({ "e": event }),
        )
        .await;
    }
    let cancel =
        "mutation($id: ID!) { cancelEvent(id: $id, reason: \"Lluvia <fuerte>\") { status } }";
    assert_eq!(
        app.gql(Some(&organizer.token), cancel, json!({ "id": event }))
            .await["data"]["cancelEvent"]["status"],
        "CANCELLED"
    );

    let to_ana = cancellation_notices(&app, &ana.email).await;
    let to_bob = cancellation_notices(&app, &bob.email).await;
    assert_eq!((to_ana.len(), to_bob.len()), (1, 1));
    assert!(
        to_ana[0].subject.starts_with("Cancelado"),
        "{}",
        to_ana[0].subject
    );
    assert!(
        to_bob[0].subject.starts_with("Cancelled"),
        "{}",
        to_bob[0].subject
    );
    assert!(to_bob[0].body.contains("Lluvia <fuerte>"));
    assert!(
        to_bob[0]
            .body_html
            .as_deref()
            .unwrap_or_default()
            .contains("Lluvia &lt;fuerte&gt;")
    );
}

on_both_databases!(
    cancelling_an_event_tells_each_attendee_in_their_language,
    attendees_get_one_email_each_in_their_language,
    a_failed_recipient_is_retried_without_resending_to_the_others,
    header_injection_is_refused_and_user_text_stays_in_its_place,
    the_http_providers_are_called_in_their_documented_format,
    password_reset_works_once_within_the_hour,
    a_replayed_payment_webhook_queues_one_email,
);
