//! Operations: health, the REST auth mirror, the CLI and the committed schema.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Backend, TestApp, TestDb, on_both_databases};

fn spanglish() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spanglish"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

#[test]
fn schema_graphql_is_what_export_schema_prints() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert_eq!(
        committed,
        spanglish::graphql::sdl(),
        "run `cargo run -- export-schema > schema.graphql`"
    );
    let output = spanglish().arg("export-schema").output().unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), committed);
}

#[test]
fn production_refuses_to_start_without_a_strong_jwt_secret_or_public_url() {
    let cases = [
        (vec![], "JWT_SECRET"),
        (vec![("JWT_SECRET", "too-short")], "JWT_SECRET"),
        (
            vec![("JWT_SECRET", "0123456789abcdef0123456789abcdef")],
            "PUBLIC_URL",
        ),
    ];
    for (env, setting) in cases {
        let output = spanglish()
            .env("APP_ENV", "production")
            .envs(env)
            .arg("migrate")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(setting), "expected {setting} in: {stderr}");
    }
}

async fn health_and_readiness_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    app.state.db.clone().close().await.unwrap();
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn the_rest_mirror_logs_in_refreshes_and_logs_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("Ana", "ana@example.org").await;
    let post = |path: &'static str, body: Value| app.client.post(app.url(path)).json(&body).send();

    let bad = post(
        "/api/auth/login",
        json!({ "email": "ana@example.org", "password": "nope nope nope" }),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["code"],
        "UNAUTHENTICATED"
    );

    let login: Value = post(
        "/api/auth/login",
        json!({ "email": "ana@example.org", "password": "correct horse battery" }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(login["expiresIn"], 900);
    let access = login["accessToken"].as_str().unwrap();
    assert!(app.gql(Some(access), "{ me { id } }", json!({})).await["data"]["me"].is_object());

    let refreshed = post(
        "/api/auth/refresh",
        json!({ "refreshToken": login["refreshToken"] }),
    )
    .await
    .unwrap();
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    let again = post(
        "/api/auth/refresh",
        json!({ "refreshToken": login["refreshToken"] }),
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 401, "a rotated token is spent");

    let logout = post(
        "/api/auth/logout",
        json!({ "refreshToken": refreshed["refreshToken"] }),
    )
    .await
    .unwrap();
    assert_eq!(logout.status(), 204);
}

async fn create_admin_creates_or_promotes_and_migrate_is_idempotent(backend: Backend) {
    let db = TestDb::create(backend).await;
    let run = |args: &[&str]| {
        spanglish()
            .env("DATABASE_URL", &db.url)
            .env("ADMIN_PASSWORD", "admin password 1")
            .env("DATA_DIR", std::env::temp_dir())
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["migrate"]).status.success());
    assert!(run(&["migrate"]).status.success());
    let created = run(&[
        "create-admin",
        "--email",
        "Boss@Example.org",
        "--name",
        "Boss",
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let again = run(&[
        "create-admin",
        "--email",
        "boss@example.org",
        "--name",
        "Boss",
    ]);
    assert!(
        again.status.success(),
        "the same email, in another case, is promoted, not duplicated"
    );
}

/// SIGTERM ends the server cleanly (in-flight requests get the grace period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_cleanly() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let server = crate::support::ServerProcess::start(&app).await;
    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("the server stops within ten seconds");
    assert!(exit.success(), "{exit:?}");
}

on_both_databases!(
    health_and_readiness_answer,
    the_rest_mirror_logs_in_refreshes_and_logs_out,
    create_admin_creates_or_promotes_and_migrate_is_idempotent,
);
