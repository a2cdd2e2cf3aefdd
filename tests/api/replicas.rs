//! Two server processes on one PostgreSQL database, every background job
//! running in both: each hold expires once, each email goes out once, each
//! webhook applies once.

use std::time::Duration;

use serde_json::{Value, json};
use spanglish::accounts::Role;
use spanglish::payments::signatures::sign_stripe;

use crate::events::{create_event, event_input};
use crate::support::{Backend, ServerProcess, TestApp};

const WEBHOOK_SECRET: &str = "whsec_replicas";

fn sink_files(prefix: &str) -> usize {
    let dir = std::env::var("TEST_SMTP_DIR").unwrap_or_else(|_| "/tmp/spanglish-smtp-sink".into());
    std::fs::read_dir(dir)
        .expect("the SMTP sink (see README)")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .count()
}

async fn metric(app: &TestApp, server: &ServerProcess, name: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

async fn gql(
    app: &TestApp,
    server: &ServerProcess,
    token: &str,
    query: &str,
    variables: Value,
) -> Value {
    let body = json!({ "query": query, "variables": variables });
    app.client
        .post(format!("{}/graphql", server.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_every_job_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let smtp = std::env::var("TEST_SMTP_URL").unwrap_or_else(|_| "smtp://127.0.0.1:2525".into());
    let settings = [
        ("TICKET_HOLD_SECONDS", "1".to_string()),
        ("EMAIL_TRANSPORT", "smtp".to_string()),
        ("SMTP_URL", smtp),
        ("EMAIL_FROM", "hola@spanglish.example".to_string()),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
    ];
    let replicas = [
        ServerProcess::start_with(&app, &settings).await,
        ServerProcess::start_with(&app, &settings).await,
    ];

    // Holds: five bookings of a paid event, through both replicas, lapse after a second.
    let organizer = app.user_with_role(Role::Organizer).await;
    let mut input = event_input("Replicated");
    input["status"] = json!("PUBLISHED");
    input["price"] = json!({ "amount": "50000", "currency": "PYG" });
    let event = create_event(&app, &organizer.token, input).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let members = app.members(5).await;
    for (i, m) in members.iter().enumerate() {
        let booked = gql(
            &app,
            &replicas[i % 2],
            &m.token,
            "mutation($e: ID!) { bookTicket(eventId: $e) { status } }",
            json!({ "e": event }),
        )
        .await;
        assert_eq!(
            booked["data"]["bookTicket"]["status"], "PENDING",
            "{booked}"
        );
    }

    // Emails: one announcement to eight people with their own addresses.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut ids = Vec::new();
    for i in 0..8 {
        let m = app
            .register(
                &format!("Reader {i}"),
                &format!("replica-{tag}-{i}@example.org"),
            )
            .await;
        ids.push(m.id);
    }
    let send = "mutation($input: SendEmailInput!) { sendEmail(input: $input) { queued } }";
    let input = json!({ "subject": "Hola", "body": "Nos vemos", "userIds": ids });
    assert_eq!(
        gql(
            &app,
            &replicas[0],
            &organizer.token,
            send,
            json!({ "input": input })
        )
        .await["data"]["sendEmail"]["queued"],
        8
    );

    // A webhook for an unknown payment, delivered to both at once, is stored once.
    let body = serde_json::to_vec(&json!({ "id": format!("evt_{tag}"), "type": "checkout.session.completed", "data": { "object": { "payment_status": "paid", "metadata": { "payment_id": "0192a0f0-0000-7000-8000-000000000000" } } } })).unwrap();
    let signature = sign_stripe(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &body);
    let deliver = |server: &ServerProcess| {
        app.client
            .post(format!("{}/api/payments/webhook/stripe", server.base))
            .header("stripe-signature", signature.clone())
            .body(body.clone())
            .send()
    };
    let (a, b) = tokio::join!(deliver(&replicas[0]), deliver(&replicas[1]));
    assert_eq!(
        (a.unwrap().status(), b.unwrap().status()),
        (reqwest::StatusCode::OK, reqwest::StatusCode::OK)
    );

    // Give the jobs time to run in both processes: the sweeper every 15 s,
    // the mail worker every 2 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let expired = metric(&app, &replicas[0], "ticket_holds_expired_total").await
            + metric(&app, &replicas[1], "ticket_holds_expired_total").await;
        let mailed = sink_files(&format!("replica-{tag}-"));
        if (expired >= 5.0 && mailed >= 8) || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let expired = metric(&app, &replicas[0], "ticket_holds_expired_total").await
        + metric(&app, &replicas[1], "ticket_holds_expired_total").await;
    assert_eq!(expired, 5.0, "each hold expires once, in one of the two");
    for i in 0..8 {
        assert_eq!(
            sink_files(&format!("replica-{tag}-{i}@")),
            1,
            "reader {i} got exactly one email"
        );
    }
    use sea_orm::{EntityTrait, PaginatorTrait};
    let inbox = spanglish::payments::entity::webhook_event::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(inbox, 1, "the delivery is recorded once");
}
