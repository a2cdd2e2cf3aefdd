//! The README's five-minute walk-through, step by step: create an admin with
//! the CLI, log in, create and publish an event priced in PYG, list events
//! anonymously.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Backend, TestApp, on_both_databases};

async fn the_readme_walkthrough_works(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    // 1. spanglish create-admin --email admin@spanglish.example --name "Ada Admin"
    let output = Command::new(env!("CARGO_BIN_EXE_spanglish"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", &app.db.url)
        .env("ADMIN_PASSWORD", "change-me-please")
        .env("DATA_DIR", std::env::temp_dir())
        .args([
            "create-admin",
            "--email",
            "admin@spanglish.example",
            "--name",
            "Ada Admin",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // 2. curl -X POST /api/auth/login
    let login: Value = app
        .client
        .post(app.url("/api/auth/login"))
        .json(&json!({ "email": "admin@spanglish.example", "password": "change-me-please" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().expect("a token");
    let audit = app
        .gql(
            Some(token),
            "{ auditLogs(filter: { action: \"user.create_admin\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        audit["data"]["auditLogs"]["totalCount"], 1,
        "the CLI's act is on record: {audit}"
    );

    // 3. createEvent, priced in guaraníes, published at once.
    let created = app
        .gql(
            Some(token),
            r#"mutation {
              createEvent(input: {
                title: "Intercambio de Idiomas"
                description: "Spanish and English, one hour each"
                startsAt: "2027-01-15T19:00:00-03:00"
                endsAt: "2027-01-15T22:00:00-03:00"
                timezone: "America/Asuncion"
                location: "Café Literario, Asunción"
                price: { amount: "50000", currency: "PYG" }
                capacity: 40
                status: PUBLISHED
              }) { id slug status price { amount currency } }
            }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        created["data"]["createEvent"]["slug"], "intercambio-de-idiomas",
        "{created}"
    );

    // 4. Anyone lists the published events.
    let listed = app
        .gql(None, "{ events(first: 10) { totalCount edges { node { title startsAt price { amount currency } } } } }", json!({}))
        .await;
    let node = &listed["data"]["events"]["edges"][0]["node"];
    assert_eq!(node["title"], "Intercambio de Idiomas");
    assert_eq!(node["startsAt"], "2027-01-15T22:00:00Z");
    assert_eq!(
        node["price"],
        json!({ "amount": "50000", "currency": "PYG" })
    );
}

on_both_databases!(the_readme_walkthrough_works);
